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
   instead of in an RL job.

``verifier_config(output_dir)`` reads ``safeladder_verifier.yaml`` back with ``path`` set to the
directory, so ``build_verifier(verifier_config(DIR))`` works from any working directory.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from safeladder.config import load_yaml
from safeladder.errors import ConfigError, SafeladderError, SafeladderWarning
from safeladder.training.common import PairRecord, PointRecord, TrainConfigBase, TrainData
from safeladder.training.config import is_pairwise, kind_module
from safeladder.training.data import class_balance, load_records
from safeladder.training.split import Split, check_classes, given_split, grouped_split

RUN_FILE = "safeladder_run.json"
VERIFIER_FILE = "safeladder_verifier.yaml"
METRICS_FILE = "metrics.json"
STATS_FILE = "safeladder_reward_stats.json"  # = safeladder.verifiers.reward_model.STATS_FILE
#: Verifier scores of reloaded dev rows must match the kind's predictions this closely.
SELF_CHECK_TOL = 1e-4
#: Dev rows scored by the self-check (a few: it loads the model once more).
SELF_CHECK_ROWS = 8
BASELINE_NAME = "tfidf_logreg"


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
# Output directory
# --------------------------------------------------------------------------------------------


def _config_echo(cfg: TrainConfigBase) -> dict[str, Any]:
    return dict(cfg.model_dump(mode="json"))


def _comparable(echo: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in echo.items() if k not in ("resume", "output_dir", "report")}


def prepare_output_dir(cfg: TrainConfigBase, *, overwrite: bool = False) -> Path:
    """Check ``cfg.output_dir`` and record this run in it (``safeladder_run.json``).

    - missing or empty: created;
    - a finished run: refused unless ``overwrite`` (which deletes it first);
    - an unfinished run: refused unless ``cfg.resume`` (continue; the config must be the same
      but for ``resume``) or ``overwrite``;
    - any other non-empty directory: refused, whatever the flags (nothing of ours to replace).
    """
    out = Path(cfg.output_dir).expanduser()
    echo = _config_echo(cfg)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output_dir: {str(out)!r} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        run_file = out / RUN_FILE
        if not run_file.is_file():
            raise ConfigError(
                f"output_dir: {str(out)!r} is not empty and holds no {RUN_FILE}; it is not a "
                "safeladder training run, so nothing there is replaced: choose another output_dir"
            )
        try:
            run = json.loads(run_file.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ConfigError(f"{run_file}: unreadable ({exc}); delete the directory") from exc
        status = run.get("status")
        if overwrite:
            shutil.rmtree(out)
        elif status == "finished":
            raise ConfigError(
                f"output_dir: {str(out)!r} holds a finished run; pass --overwrite to replace it "
                "(or set another output_dir)"
            )
        elif not cfg.resume:
            raise ConfigError(
                f"output_dir: {str(out)!r} holds an unfinished run (status {status!r}); pass "
                "--resume to continue it or --overwrite to start again"
            )
        elif _comparable(run.get("config", {})) != _comparable(echo):
            old, new = _comparable(run.get("config", {})), _comparable(echo)
            keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise ConfigError(
                f"resume: the config differs from the run in {str(out)!r} in {', '.join(keys)}; "
                "resume with the same config, or --overwrite to start again"
            )
    out.mkdir(parents=True, exist_ok=True)
    _write_run(out, "running", echo)
    return out


def _write_run(out: Path, status: str, echo: dict[str, Any], **extra: Any) -> None:
    from safeladder.data.writers import write_json_atomic

    write_json_atomic(out / RUN_FILE, {"status": status, "config": echo, **extra})


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
    train = load_records(
        cfg.data.train, pairwise=pairwise, labels=cfg.data.labels, multi_label=multi
    )
    labels = train.labels
    if cfg.data.dev is not None:
        dev = load_records(
            cfg.data.dev, pairwise=pairwise, labels=labels or None, multi_label=multi
        )
        split = given_split(train.records, dev.records)
    else:
        split = grouped_split(train.records, cfg.data.dev_fraction, cfg.data.split_seed)
    notes = check_classes(split, labels)
    balance = {"train": class_balance(split.train, labels), "dev": class_balance(split.dev, labels)}
    return TrainData(split.train, split.dev, labels, balance), split, notes


def _good_index(cfg: TrainConfigBase, labels: list[str]) -> int | None:
    g = getattr(cfg, "good_label", None)
    if g is None:
        return None
    if isinstance(g, str) and g in labels:
        return labels.index(g)
    if isinstance(g, int) or (isinstance(g, str) and g.isdigit()):
        idx = int(g)
        if 0 <= idx < max(2, len(labels)):
            return idx
    raise ConfigError(f"good_label: {g!r} is neither a class name nor an index of {labels}")


def _point_text(r: PointRecord) -> str:
    return r.prompt if r.response is None else f"{r.prompt}\n{r.response}"


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


@dataclass
class _Evaluation:
    metrics: dict[str, Any]
    per_category: dict[str, Any]
    threshold: float | list[float] | None
    calibration: dict[str, Any] | None
    calibration_file: dict[str, Any] | None
    reliability: tuple[np.ndarray, np.ndarray] | None  # (labels, probs) for the diagram
    expected_scores: np.ndarray | None  # what the rebuilt verifier should score, dev order
    expected_probs: np.ndarray | None = None  # multi-label: (n, C) calibrated per-label probs


def _evaluate_pointwise(
    cfg: TrainConfigBase, data: TrainData, outcome: Any, out: Path, module: Any
) -> _Evaluation:
    from safeladder.training.calibration import apply_calibration, calibrate, write_calibration
    from safeladder.training.metrics import multilabel_metrics, per_category, pointwise_metrics

    if outcome.dev_logits is None:
        raise SafeladderError(f"kind {cfg.kind!r} returned no dev_logits for a pointwise run")
    logits = np.asarray(outcome.dev_logits, dtype=np.float64)
    dev: list[PointRecord] = data.dev
    if outcome.dev_labels is not None:
        y = np.asarray(outcome.dev_labels)
    else:
        y = np.array([r.label for r in dev])
    if logits.shape[0] != len(dev) or y.shape[0] != len(dev):
        raise SafeladderError(
            f"kind {cfg.kind!r} returned {logits.shape[0]} dev logits and {y.shape[0]} labels "
            f"for {len(dev)} dev rows"
        )
    names = list(data.labels)
    good = _good_index(cfg, names)
    categories = [r.category for r in dev]
    metrics: dict[str, Any]
    if y.ndim == 2:  # multi-label
        cal = calibrate(logits, y, cfg.calibration, names=names)
        thresholds = cal.threshold
        metrics = multilabel_metrics(y, cal.probs_after, names, thresholds)
        _save_calibration(module, cfg, out, cal, write_calibration)
        probs = apply_calibration(logits, cal.file, multi_label=True, names=names)
        return _Evaluation(
            metrics, {}, thresholds, cal.summary, cal.file, None, None, expected_probs=probs
        )
    cal = calibrate(logits, y, cfg.calibration, positive=1, good=good, names=names)
    assert not isinstance(cal.threshold, list)  # single-label: one threshold
    t = float(cal.threshold)
    metrics = {
        **pointwise_metrics(cal.labels, cal.probs_after, threshold=t),
        "ece_before_calibration": cal.summary.get("ece_before"),
    }
    if logits.ndim == 2 and logits.shape[1] > 2:
        metrics["multiclass_accuracy"] = float(np.mean(np.argmax(logits, axis=1) == y))
    cats = per_category(
        categories,
        lambda yy, pp: pointwise_metrics(yy, pp, threshold=t),
        cal.labels,
        cal.probs_after,
    )
    _save_calibration(module, cfg, out, cal, write_calibration)
    expected = None
    if good is not None:
        expected = apply_calibration(logits, cal.file, good=good)[:, good]
    return _Evaluation(
        metrics, cats, t, cal.summary, cal.file, (cal.labels, cal.probs_after), expected
    )


def _save_calibration(module: Any, cfg: TrainConfigBase, out: Path, cal: Any, write: Any) -> None:
    fold = getattr(module, "fold_calibration", None)
    if fold is not None:
        fold(cfg, out, cal.file)  # the kind's verifier reads no calibration file
    else:
        write(out, cal)


def _evaluate_pairwise(
    cfg: TrainConfigBase, data: TrainData, outcome: Any, out: Path
) -> _Evaluation:
    from safeladder.data.writers import write_json_atomic
    from safeladder.training.metrics import pairwise_metrics, pairwise_reliability, per_category

    if outcome.dev_chosen is None or outcome.dev_rejected is None:
        raise SafeladderError(f"kind {cfg.kind!r} returned no dev_chosen / dev_rejected rewards")
    c = np.asarray(outcome.dev_chosen, dtype=np.float64).reshape(-1)
    r = np.asarray(outcome.dev_rejected, dtype=np.float64).reshape(-1)
    if c.shape[0] != len(data.dev) or r.shape[0] != len(data.dev):
        raise SafeladderError(
            f"kind {cfg.kind!r} returned {c.shape[0]} / {r.shape[0]} dev rewards for "
            f"{len(data.dev)} dev pairs"
        )
    metrics = pairwise_metrics(c, r)
    cats = per_category([p.category for p in data.dev], pairwise_metrics, c, r)
    if outcome.train_rewards is not None:
        tr = np.asarray(outcome.train_rewards, dtype=np.float64).reshape(-1)
        std = float(tr.std())
        stats = {"mean": float(tr.mean()), "std": std if std > 0 else 1.0, "count": int(tr.size)}
        write_json_atomic(out / STATS_FILE, stats)
        metrics["train_reward_mean"], metrics["train_reward_std"] = stats["mean"], stats["std"]
    return _Evaluation(metrics, cats, None, None, None, pairwise_reliability(c, r), c)


def _baseline(cfg: TrainConfigBase, data: TrainData, notes: list[str]) -> dict[str, Any] | None:
    """TF-IDF + logistic regression on the same split (binary pointwise, or pairwise)."""
    from safeladder.training.baseline import tfidf_logreg_pairwise, tfidf_logreg_pointwise
    from safeladder.training.calibration import select_threshold
    from safeladder.training.metrics import pairwise_metrics, pointwise_metrics

    seed = cfg.train.seed
    try:
        if data.train and isinstance(data.train[0], PairRecord):
            tc, trj = (
                [p.prompt + p.chosen for p in data.train],
                [p.prompt + p.rejected for p in data.train],
            )
            dc, drj = (
                [p.prompt + p.chosen for p in data.dev],
                [p.prompt + p.rejected for p in data.dev],
            )
            bc, br = tfidf_logreg_pairwise(tc, trj, dc, drj, seed=seed)
            return pairwise_metrics(bc, br)
        if len(data.labels) != 2 or any(isinstance(r.label, tuple) for r in data.train):
            notes.append("baseline: TF-IDF baseline skipped (binary single-label data only)")
            return None
        ytr = [int(r.label) for r in data.train]
        ydv = np.array([int(r.label) for r in data.dev])
        p = tfidf_logreg_pointwise(
            [_point_text(r) for r in data.train], ytr, [_point_text(r) for r in data.dev], seed=seed
        )
        # The same threshold rule as the model, on the baseline's own dev probabilities.
        t = select_threshold(ydv, p, cfg.calibration.threshold, cfg.calibration.target_fpr)
        return pointwise_metrics(ydv, p, threshold=float(t["threshold"]))
    except ValueError as exc:
        notes.append(f"baseline: skipped ({exc})")
        return None


# --------------------------------------------------------------------------------------------
# Saving and the self-check
# --------------------------------------------------------------------------------------------


def verifier_config(output_dir: str | Path) -> dict[str, Any]:
    """The verifier config saved with a trained run, its ``path`` resolved to ``output_dir``.

    ``build_verifier(verifier_config(DIR))`` rebuilds the trained verifier from any working
    directory (the YAML stores ``path: .``, relative to its own directory).
    """
    d = Path(output_dir).expanduser()
    f = d / VERIFIER_FILE
    data = load_yaml(f)
    rel = Path(str(data.get("path", ".")))
    data["path"] = str(rel if rel.is_absolute() else (d / rel).resolve())
    return data


def _write_verifier_yaml(out: Path, verifier: dict[str, Any]) -> Path:
    import yaml

    if "type" not in verifier:
        raise SafeladderError(f"the kind's verifier dict has no 'type': {verifier}")
    body = {
        "type": verifier["type"],
        "path": ".",
        **{k: v for k, v in verifier.items() if k != "type"},
    }
    head = (
        "# Written by safeladder train. `path: .` is this directory: build it with\n"
        "# safeladder.training.runner.verifier_config(DIR), or {type: ..., path: DIR}.\n"
    )
    path = out / VERIFIER_FILE
    path.write_text(head + yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return path


def _samples(data: TrainData, k: int) -> list[Any]:
    from safeladder.types import Sample

    out = []
    for r in data.dev[:k]:
        if isinstance(r, PairRecord):
            out.append(Sample(prompt=r.prompt, completion=r.chosen))
        else:
            out.append(Sample(prompt=r.prompt, completion=r.response or ""))
    return out


def _verifier_fields(kind: Any) -> set[str]:
    from safeladder.verifiers import REGISTRY

    cls = REGISTRY.get(str(kind))
    return set(cls.model_fields) if cls is not None else set()


def self_check(
    out: Path, data: TrainData, ev: _Evaluation, outcome: Any, *, tol: float = SELF_CHECK_TOL
) -> dict[str, Any]:
    """Rebuild the verifier from ``out`` and compare its scores on the first dev rows.

    Pointwise: the verifier's score against the calibrated P(good) of the kind's dev logits
    (multi-label: ``details[i]["probs"]`` against the calibrated per-label probabilities);
    pairwise: the raw reward of the chosen reply (``details[i]["raw"]`` when the verifier
    normalizes) against ``dev_chosen``. A kind may give ``outcome.extra["dev_scores"]`` — the
    verifier's expected scores — when the runner cannot derive them (e.g. a label judge).

    Returns ``{"rows", "max_abs_diff", "ok"}``, or ``{"skipped": reason}``.

    Raises:
        SafeladderError: a score differs by more than ``tol``.
    """
    from safeladder.verifiers import build_verifier

    given = outcome.extra.get("dev_scores") if isinstance(outcome.extra, dict) else None
    expected = np.asarray(given, dtype=np.float64) if given is not None else ev.expected_scores
    probs = ev.expected_probs if given is None else None
    if expected is None and probs is None:
        return {"skipped": "no expected verifier scores for this kind"}
    k = min(SELF_CHECK_ROWS, len(data.dev))
    samples = _samples(data, k)
    vcfg = verifier_config(out)
    if "runtime" in _verifier_fields(vcfg.get("type")):
        # The kinds predict the dev split in float32; the verifier's default dtype is bf16 on
        # CUDA, whose rounding (~1e-3) would fail the check without any save/load mismatch.
        vcfg = {**vcfg, "runtime": {**(vcfg.get("runtime") or {}), "dtype": "float32"}}
    verifier = build_verifier(vcfg)
    try:
        with warnings.catch_warnings():
            # Truncation notices here repeat what training already saw on the same rows.
            warnings.simplefilter("ignore", SafeladderWarning)
            result = verifier.score(samples)
    finally:
        verifier.close()
    diffs: list[float] = []
    for i in range(k):
        d = result.details[i] if result.details else {}
        if probs is not None:
            got = d.get("probs", {}) if isinstance(d, dict) else {}
            names = list(data.labels)
            diffs.append(
                max(abs(float(got.get(n, math.nan)) - probs[i, j]) for j, n in enumerate(names))
            )
        else:
            assert expected is not None
            is_pair = isinstance(data.dev[i], PairRecord)
            raw = d.get("raw") if isinstance(d, dict) and is_pair else None
            got_v = float(raw) if raw is not None else float(result.scores[i])
            diffs.append(abs(got_v - float(expected[i])))
    worst = max(diffs) if diffs else 0.0
    report = {"rows": k, "max_abs_diff": float(worst), "ok": bool(worst <= tol)}
    if not worst <= tol:  # NaN fails too
        i = int(np.nanargmax(diffs)) if not all(math.isnan(x) for x in diffs) else 0
        r = data.dev[i]
        raise SafeladderError(
            f"self-check failed: the verifier rebuilt from {str(out)!r} differs from the "
            f"training predictions by {worst:.3g} (> {tol:g}) on dev row {i} ({r.source} row "
            f"{r.row}); the saved model, its calibration or its rendering does not match what "
            "was trained"
        )
    return report


def _write_report(
    cfg: TrainConfigBase,
    out: Path,
    summary: dict[str, Any],
    ev: _Evaluation,
    outcome: Any,
    notes: list[str],
    pairwise: bool,
) -> dict[str, Path]:
    """``report.md`` + ``reliability.png`` through ``safeladder.training.report``."""
    from safeladder.training.metrics import reliability_bins
    from safeladder.training.report import EvalReport, write_report

    kind = (
        "pairwise" if pairwise else ("multilabel" if ev.expected_probs is not None else "pointwise")
    )
    bins = reliability_bins(*ev.reliability) if ev.reliability is not None else []
    note = (
        "P(chosen preferred) = sigmoid(r_chosen - r_rejected), each pair counted both ways"
        if pairwise
        else "calibrated P(label 1) on the dev split"
    )
    report = EvalReport(
        title=summary["name"],
        kind=kind,
        verifier_name=f"{cfg.kind} (dev)",
        metrics=ev.metrics,
        baseline_name=BASELINE_NAME if summary["baseline"]["metrics"] is not None else None,
        baseline_metrics=summary["baseline"]["metrics"],
        per_category=ev.per_category,
        reliability=bins,
        reliability_note=note if bins else None,
        calibration=ev.calibration,
        data={
            "sources": [s.path for s in cfg.data.train] + [s.path for s in (cfg.data.dev or [])],
            "split": summary["split"],
            "labels": summary["labels"],
            "class_balance": summary["class_balance"],
        },
        history=list(outcome.history),
        notes=list(notes),
    )
    return dict(write_report(report, out))


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        v = float(x)
        return v if math.isfinite(v) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, Path):
        return str(x)
    return x


# --------------------------------------------------------------------------------------------
# The entry point
# --------------------------------------------------------------------------------------------


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
    out = prepare_output_dir(cfg, overwrite=overwrite)
    echo = _config_echo(cfg)
    seed_everything(cfg.train.seed, cfg.train.num_threads)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SafeladderWarning)
        data, split, _ = prepare_data(cfg)
    for w in caught:  # shown once, and kept for the report
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    notes = [str(w.message) for w in caught if issubclass(w.category, SafeladderWarning)]
    module = kind_module(cfg.kind)
    outcome = module.train(cfg, data, out, progress=progress)
    if is_pairwise(cfg):
        ev = _evaluate_pairwise(cfg, data, outcome, out)
    else:
        ev = _evaluate_pointwise(cfg, data, outcome, out, module)
    baseline = _baseline(cfg, data, notes)
    yaml_path = _write_verifier_yaml(out, outcome.verifier)
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
        check = self_check(out, data, ev, outcome)
    except SafeladderError:
        _write_run(out, "self_check_failed", echo)
        raise
    summary["self_check"] = check
    if cfg.report:
        files.update(_write_report(cfg, out, summary, ev, outcome, notes, is_pairwise(cfg)))
    total = time.perf_counter() - t0
    summary["seconds"]["total"] = total
    from safeladder.data.writers import write_json_atomic

    metrics_path = out / METRICS_FILE
    write_json_atomic(metrics_path, _jsonable(summary))
    files["metrics"] = metrics_path
    for fname, key in (
        ("safeladder_calibration.json", "calibration"),
        (STATS_FILE, "reward_stats"),
    ):
        if (out / fname).is_file():
            files[key] = out / fname
    _write_run(out, "finished", echo, seconds=total)
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
    "METRICS_FILE",
    "RUN_FILE",
    "VERIFIER_FILE",
    "TrainSummary",
    "prepare_data",
    "prepare_output_dir",
    "run_training",
    "seed_everything",
    "self_check",
    "verifier_config",
]
