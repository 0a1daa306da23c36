"""Run one training config end to end: data → split → kind.train → calibrate → evaluate → save.

``run_training(cfg)`` is what ``safeladder train CONFIG`` and ``python train_verifier.py
CONFIG`` call. It:

1. checks ``output_dir`` (refuses to overwrite a finished run, or to write into a directory
   that is not a safeladder run, unless told) and records the run in ``safeladder_run.json``;
2. seeds python / numpy / torch and sets torch's CPU threads (``train.seed``,
   ``train.num_threads``);
3. loads the data (``safeladder.training.data``) and splits it by group
   (``safeladder.training.split``) unless dev sources are given;
4. calls the kind's ``train(cfg, data, out_dir, progress=...)``;
5. pointwise: fits the calibration on the dev logits (``calibration.calibrate``), saves it
   (``safeladder_calibration.json``, or folded into the head by a kind's ``fold_calibration``),
   and computes the dev metrics of the calibrated P(label 1) at the chosen threshold;
   pairwise: pairwise accuracy / margins, and ``safeladder_reward_stats.json`` (mean / std of
   the train rewards: reward centering for the ``reward_model`` verifier);
6. trains the TF-IDF + logistic-regression baseline on the same train split and scores the
   same dev split (``baseline``), for the "is the neural model worth it" line of the report;
7. writes ``safeladder_verifier.yaml`` (the verifier config, ``path: .``), ``metrics.json`` and
   the report (``report.md`` + ``reliability.png``);
8. self-check: builds the verifier from the output directory, scores the first dev rows, and
   compares with the kind's own (calibrated) dev predictions within ``SELF_CHECK_TOL`` — a
   save / load mismatch (wrong head, lost calibration, different rendering) fails the run here
   instead of in an RL job (rows with images: ``vision_classifier.self_check_images``, which
   scores them with their images).

A kind whose module has ``reads_images(cfg)`` returning True (``classifier`` over a
vision-language base) gets ``ImagePointRecord`` rows, each with its images (step 3). The
baseline (6) sees the rows' text only.

``verifier_config(output_dir)`` reads ``safeladder_verifier.yaml`` back with ``path`` set to the
directory, so ``build_verifier(verifier_config(DIR))`` works from any working directory.

This module is the orchestration; the steps live by job: ``run_files`` (1, 7: the output
directory, the run record, the verifier YAML), ``data`` / ``split`` (3), ``dev_eval`` (5 and the
report), ``baseline`` (6), ``self_check`` (8). Their public names are re-exported here.
"""

from __future__ import annotations

import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from safeladder.errors import SafeladderError, SafeladderWarning
from safeladder.training.baseline import BASELINE_NAME, holdout_baseline
from safeladder.training.baseline import point_text as _point_text  # noqa: F401  (benchmarks)
from safeladder.training.common import TrainConfigBase, TrainData
from safeladder.training.config import is_pairwise, kind_module
from safeladder.training.data import ImagePointRecord, class_balance, load_records
from safeladder.training.dev_eval import (
    DevEvaluation,
    evaluate_pairwise,
    evaluate_pointwise,
    write_train_report,
)
from safeladder.training.run_files import (
    METRICS_FILE,
    RUN_FILE,
    STATS_FILE,
    VERIFIER_FILE,
    config_echo,
    jsonable,
    prepare_output_dir,
    verifier_config,
    write_run,
    write_verifier_yaml,
)
from safeladder.training.self_check import SELF_CHECK_ROWS, SELF_CHECK_TOL, self_check
from safeladder.training.split import Split, check_classes, given_split, grouped_split


@dataclass
class TrainSummary:
    """What a run produced: the numbers the CLI prints and ``metrics.json`` holds."""

    kind: str
    name: str
    output_dir: Path
    split: dict[str, int]
    labels: list[str]
    balance: dict[str, Any]
    metrics: dict[str, Any]
    baseline_metrics: dict[str, Any] | None
    threshold: float | list[float] | None
    calibration: dict[str, Any] | None
    files: dict[str, Path]
    seconds: float
    self_check: dict[str, Any]
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def seed_everything(seed: int, num_threads: int) -> None:
    """Seed python, numpy and torch; torch runs ``num_threads`` intra-op threads on CPU."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    import torch

    torch.manual_seed(seed)
    if torch.get_num_threads() != num_threads:
        torch.set_num_threads(num_threads)


def prepare_data(cfg: TrainConfigBase) -> tuple[TrainData, Split, list[str]]:
    """Load the sources, split train/dev by group, and count the classes.

    Returns ``(data, split, notes)``; ``data.balance`` is ``{"train": ..., "dev": ...}`` from
    ``class_balance``; ``notes`` are the warnings raised (a class missing from dev, ...).
    """
    pairwise = is_pairwise(cfg)
    multi = bool(getattr(cfg, "multi_label", False))
    images = reads_images(cfg)
    train = load_records(
        cfg.data.train,
        pairwise=pairwise,
        labels=cfg.data.labels,
        multi_label=multi,
        images=images,
    )
    labels = train.labels
    if cfg.data.dev is not None:
        dev = load_records(
            cfg.data.dev,
            pairwise=pairwise,
            labels=labels or None,
            multi_label=multi,
            images=images,
        )
        split = given_split(train.records, dev.records)
    else:
        split = grouped_split(train.records, cfg.data.dev_fraction, cfg.data.split_seed)
    notes = check_classes(split, labels)
    balance = {"train": class_balance(split.train, labels), "dev": class_balance(split.dev, labels)}
    return TrainData(split.train, split.dev, labels, balance), split, notes


def reads_images(cfg: TrainConfigBase) -> bool:
    """Whether the kind reads the rows' images (its module's ``reads_images(cfg)``: a
    ``classifier`` over a vision-language base)."""
    check = getattr(kind_module(cfg.kind), "reads_images", None)
    return bool(check(cfg)) if check is not None else False


# --------------------------------------------------------------------------------------------
# The entry point
# --------------------------------------------------------------------------------------------


def _release(out: Path, created: bool) -> None:
    """Undo ``prepare_output_dir``'s claim on ``out`` (its run file; the folder if this run
    made it and nothing else is in it)."""
    (out / RUN_FILE).unlink(missing_ok=True)
    if created and out.is_dir() and not any(out.iterdir()):
        out.rmdir()


def run_training(
    cfg: TrainConfigBase, *, progress: bool = True, overwrite: bool = False
) -> TrainSummary:
    """Train, evaluate, calibrate and save one verifier (see the module docstring).

    Args:
        cfg: a validated kind config (``load_train_config``).
        progress: show progress bars.
        overwrite: replace a previous run in ``cfg.output_dir``.

    Raises:
        ConfigError: the config or the output directory does not allow the run.
        InputError: a data row is malformed (the message names file, row and field).
        SafeladderError: the self-check failed.
    """
    t0 = time.perf_counter()
    created = not Path(cfg.output_dir).expanduser().exists()
    out = prepare_output_dir(cfg, overwrite=overwrite)
    echo = config_echo(cfg)
    seed_everything(cfg.train.seed, cfg.train.num_threads)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SafeladderWarning)
        try:
            data, split, _ = prepare_data(cfg)
        except Exception:
            # Nothing was trained: a fixed config must not meet "an unfinished run" next time.
            if not cfg.resume:
                _release(out, created)
            raise
    for w in caught:  # shown once, and kept for the report
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    notes = [str(w.message) for w in caught if issubclass(w.category, SafeladderWarning)]
    module = kind_module(cfg.kind)
    outcome = module.train(cfg, data, out, progress=progress)
    if is_pairwise(cfg):
        ev = evaluate_pairwise(cfg, data, outcome, out)
    else:
        ev = evaluate_pointwise(cfg, data, outcome, out, module)
    baseline = holdout_baseline(data, cfg.calibration, cfg.train.seed, notes)
    yaml_path = write_verifier_yaml(out, outcome.verifier)
    name = cfg.name or cfg.kind
    summary: dict[str, Any] = {
        "kind": cfg.kind,
        "name": name,
        "labels": list(data.labels),
        "split": split.sizes(),
        "class_balance": data.balance,
        "metrics": ev.metrics,
        "per_category": ev.per_category,
        "threshold": ev.threshold,
        "calibration": ev.calibration,
        "baseline": {"name": BASELINE_NAME, "metrics": baseline},
        "history": outcome.history,
        "extra": outcome.extra,
        "seconds": {"train": outcome.seconds},
        "config": echo,
        "notes": notes,
    }
    files: dict[str, Path] = {"verifier": yaml_path}
    try:
        if any(isinstance(r, ImagePointRecord) for r in data.dev):
            from safeladder.training.vision_classifier import self_check_images

            check = self_check_images(out, data, ev)
        else:
            check = self_check(out, data, ev, outcome)
    except SafeladderError:
        write_run(out, "self_check_failed", echo)
        raise
    summary["self_check"] = check
    if cfg.report:
        files.update(write_train_report(cfg, out, summary, ev, outcome, notes, is_pairwise(cfg)))
    total = time.perf_counter() - t0
    summary["seconds"]["total"] = total
    from safeladder.data.writers import write_json_atomic

    metrics_path = out / METRICS_FILE
    write_json_atomic(metrics_path, jsonable(summary))
    files["metrics"] = metrics_path
    for fname, key in (
        ("safeladder_calibration.json", "calibration"),
        (STATS_FILE, "reward_stats"),
    ):
        if (out / fname).is_file():
            files[key] = out / fname
    write_run(out, "finished", echo, seconds=total)
    return TrainSummary(
        kind=cfg.kind,
        name=name,
        output_dir=out,
        split=split.sizes(),
        labels=list(data.labels),
        balance=data.balance,
        metrics=ev.metrics,
        baseline_metrics=baseline,
        threshold=ev.threshold,
        calibration=ev.calibration,
        files=files,
        seconds=total,
        self_check=check,
        notes=notes,
    )


__all__ = [
    "BASELINE_NAME",
    "METRICS_FILE",
    "RUN_FILE",
    "SELF_CHECK_ROWS",
    "SELF_CHECK_TOL",
    "STATS_FILE",
    "VERIFIER_FILE",
    "DevEvaluation",
    "TrainSummary",
    "prepare_data",
    "prepare_output_dir",
    "reads_images",
    "run_training",
    "seed_everything",
    "self_check",
    "verifier_config",
]
