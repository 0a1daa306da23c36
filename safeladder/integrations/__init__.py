"""Thin adapters from trainers to ``Reward.score``.

- ``safeladder.integrations.trl``: ``as_trl(reward)`` / ``as_trl_terms(reward)`` for TRL's
  ``GRPOTrainer(reward_funcs=...)``.
- ``safeladder.integrations.verl``: module-level ``compute_score`` / ``compute_score_batch`` for
  verl's ``reward.custom_reward_function.path`` (naive / batch reward managers).
- ``safeladder.integrations.openrlhf``: ``reward_func(queries, prompts, labels)`` for
  OpenRLHF's python-file reward mode, and ``split_query`` (query minus its prompt prefix).

Every adapter turns the trainer's call into a ``SampleBatch``, calls ``Reward.score`` once, and
turns the ``RewardResult`` back into the trainer's shape. Nothing here imports torch or a
trainer at import time; each submodule is imported on its own.

Layer: imports ``rewards`` and the layers below it; nothing below imports it (the deprecated
``Reward.as_trl()`` shim aside).
"""
