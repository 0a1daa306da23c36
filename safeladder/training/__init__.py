"""Training verifiers: data → model → trainer → evaluate → calibrate → save; and ``safeladder eval``.

``python train_verifier.py CONFIG`` and ``safeladder train CONFIG`` run the same code. Heavy
imports (torch, transformers, trl, peft, sklearn) happen inside the kind that needs them.

What lives here, by job:

- the config and shared shapes: ``config`` (the ``kind`` union), ``common`` (model / loop /
  data settings, ``TrainFields``, records, ``TrainData`` / ``TrainOutcome``);
- the data: ``data`` (sources → records; rows become ``Sample``s through
  ``safeladder.data.to_sample``), ``augment``, ``split`` (grouped train/dev split);
- the kinds, which only train and predict: ``classifier``, ``pairwise``, ``label_judge``,
  ``embedding_head``, ``tfidf`` (pointwise or pairwise), ``vision_classifier`` (``models``
  loads their starting weights); ``guardrank*`` (MLLMGuard's evaluator);
- a run: ``runner`` (orchestration), ``run_files`` (output directory, run record, verifier
  YAML), ``dev_eval`` (calibration + dev metrics), ``calibration``, ``baseline`` (the one TF-IDF
  + logistic-regression baseline), ``self_check``, ``metrics``, ``report``;
- ``safeladder eval``: ``evaluate`` (``run_eval``), ``eval_rows``, ``eval_scoring``,
  ``eval_report`` (with ``format_summary``); ``eval_matrix`` (``--metrics matrix``) over the
  shift test sets of ``shift_sets`` (shared with ``benchmarks/bench_safety_matrix.py``).

Imports: types / errors / config, ``safeladder.data``, ``safeladder.neural``,
``safeladder.verifiers`` (building a trained verifier back), ``safeladder.rewards`` and
``safeladder.scoring`` if ever needed; never ``integrations``, ``serving``, ``guidance`` or
``cli`` (the CLI imports training, not the reverse).
"""
