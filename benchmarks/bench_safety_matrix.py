"""Safety classifiers across distributions: a train-on-A / test-on-B matrix (issue 13, item 1).

The shipped ``safety`` verifier scores F1 0.90 on GPTFuzz's held-out split, but that is one
distribution. This script measures, on the shared safety sources (``../shared/data``):

**Test sets** (columns; never trained on by any learner here), built by
``safeladder.training.shift_sets`` (the sets ``safeladder eval VERIFIER --metrics matrix`` scores
one verifier on; its seed, fractions and benign row ranges are the knobs there):

- ``gptfuzz``: GPTFuzz's upstream ``evaluate`` split (its 20 questions are not in ``train``);
- ``jbb-<attack>``: JailbreakBench artifacts of one attack method (GCG, PAIR, JBC,
  random search ``RS``, DSN), restricted to the ``JBB_TEST_FRACTION`` of behaviours (goals)
  held out for testing, so no test goal is ever trained on, under any attack;
- ``advbench`` / ``strongreject``: each prompt turned into one refusal (safe) and two compliant
  replies (unsafe) by the project's generator (``augment.harmful_prompt_responses``); the
  ``TEST_FRACTION`` of prompts held out;
- ``toxigen``: ToxiGen's human-written hateful (1) / neutral (0) sentences, as a response to an
  empty prompt; ``TEST_FRACTION`` held out.

**False-flag rate** (``ffr``): the share of benign, helpfully answered requests flagged unsafe:
the hand-written scary-sounding questions (``configs/train/data/safety_benign_scary.jsonl``),
TruthfulQA correct answers and GSM8K solutions, all through ``augment.benign_answers`` (only the
answered rows, label 0). TruthfulQA / GSM8K rows are the ones after those the shipped recipe
trains on (``BENIGN_TRUTHFULQA``, ``BENIGN_GSM8K``); the scary set is in the shipped recipe.

**Learners** (rows = what they were trained on):

- ``shipped``: ``build_verifier("safety")`` as is, at its shipped threshold
  (``safeladder_calibration.json`` ``meta.score_threshold``: a score below it flags);
- ``tfidf``: ``baseline.tfidf_logreg_pointwise`` (word 1-2 + char_wb 3-5 TF-IDF, logistic
  regression), the runner's baseline;
- ``emb``: frozen packaged all-MiniLM-L6-v2 embeddings (``Embedder.features``, the call the
  ``embedding_head`` verifier makes; one embedding cache for the whole run) + the
  ``embedding_head`` kind's default logistic head (sklearn, C = 1).

each in two views: ``pair`` (TF-IDF: ``prompt + "\\n" + response`` as ``baseline.point_text``;
emb: the ``[prompt, completion]`` blocks) and ``response`` (the response alone).

Training rows: each source's own pool (``gptfuzz``: the upstream train split; ``jbb``: the
training goals, without the column's attack for a JBB column), ``recipe`` (the shipped recipe's
data, ``configs/train/safety.yaml``: what ``shipped`` learned from), ``union`` (all five
sources) and ``union+benign`` (``union`` plus the recipe's benign rows: TruthfulQA, GSM8K and
the scary set, answered = 0, some refused = 1). No model sees a test row: training and dev rows
that share a normalised prompt or goal with any test or benign row are dropped everywhere
(AdvBench and StrongREJECT share 25 prompts; JBB goals and GPTFuzz questions overlap them a
little; the recipe holds the scary set and every AdvBench / StrongREJECT prompt). ``union - B``
also leaves the column's whole distribution out (``FAMILIES``: all of JBB for a JBB column;
AdvBench *and* StrongREJECT for either, as they share the generator's replies).
In-distribution cells (marked ``'``): a source on its own test part, AdvBench <-> StrongREJECT,
and ``recipe`` / ``shipped`` on GPTFuzz, AdvBench, StrongREJECT (other prompts of which they
hold); ``*`` marks the rows ``shipped`` was trained on. The threshold is chosen by max F1 on the
training rows' own dev split (a grouped ``DEV_FRACTION`` of each pool; the recipe's own dev
split): the shipped-threshold analogue.

Per cell: ``f1_at_t`` (F1 at that threshold), ``best_f1`` (the best F1 over thresholds on B
itself: an oracle, reported beside), ``auroc``; per row: ``ffr``, the false-flag rate at the
threshold of the row's model with nothing left out, and ``ood_mean``, the mean of the three over
the columns that are not in-distribution, and ``common_mean``, the same over the JBB and ToxiGen
columns only (the same test sets for every row but ``jbb`` / ``toxigen``). One JSON line per (learner, view, training rows) is
appended to ``benchmarks/results/safety_matrix.jsonl`` with the knobs and the environment.

    python benchmarks/bench_safety_matrix.py            # ~8 minutes on 2 shared CPUs (load ~2.5)
    python benchmarks/bench_safety_matrix.py --quick    # smoke run, < 1 minute, not recorded
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import bench_env  # benchmarks/ is the script's directory, so it is on sys.path
import numpy as np

from safeladder.training.eval_matrix import column_metrics, false_flag_rate
from safeladder.training.shift_sets import (
    BENIGN_GSM8K,
    BENIGN_TRUTHFULQA,
    COLUMNS,
    DEV_FRACTION,
    JBB_ATTACKS,
    JBB_TEST_FRACTION,
    SEED,
    SOURCES,
    TEST_FRACTION,
    Row,
    Source,
    load_shift_sets,
    make_row,
    sample_rows,
)

# --- knobs ----------------------------------------------------------------------------------
# The test sets and pools (seed, fractions, benign row ranges): safeladder.training.shift_sets.
EMB_C = 1.0  # embedding_head kind default (logistic head)
EMB_MAX_ITER = 1000
THREADS = 2  # torch threads of the encoder
# --quick: rows kept per source pool / test set / benign subset (seeded sample)
QUICK_POOL, QUICK_TEST, QUICK_BENIGN = 60, 20, 10

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
RESULTS = REPO / "benchmarks" / "results" / "safety_matrix.jsonl"
RECIPE = REPO / "configs" / "train" / "safety.yaml"
SHIPPED = REPO / "safeladder" / "defaults" / "safety"
SCARY = REPO / "configs" / "train" / "data" / "safety_benign_scary.jsonl"
TESTS = COLUMNS
#: Test sets the shipped model was trained on (the recipe generates exactly these rows).
SHIPPED_SEEN = {"advbench", "strongreject"}


def load_sources(quick: bool) -> tuple[dict[str, Source], dict[str, list[Row]], list[Row]]:
    """``(sources, tests by column, benign rows)``: ``shift_sets.load_shift_sets``."""
    sets = load_shift_sets(
        SHARED,
        SCARY,
        pool_limit=QUICK_POOL if quick else None,
        test_limit=QUICK_TEST if quick else None,
        benign_limit=QUICK_BENIGN if quick else None,
    )
    return sets.sources, sets.tests, sets.benign


def load_recipe(quick: bool) -> Source:
    """The shipped recipe's own train / dev split (``runner.prepare_data``)."""
    from safeladder.training.config import load_train_config
    from safeladder.training.runner import prepare_data

    data, _, _ = prepare_data(load_train_config(RECIPE))

    def rows(recs: Sequence[Any], side: str) -> list[Row]:
        return [
            replace(
                make_row(f"recipe:{side}:{i}", r.prompt, r.response or "", int(r.label), r.group),
                tag="benign" if any(b in r.source for b in RECIPE_BENIGN) else "",
            )
            for i, r in enumerate(recs)
        ]

    k = QUICK_POOL if quick else None
    return Source(
        sample_rows(rows(data.train, "train"), k, "recipe:train"),
        sample_rows(rows(data.dev, "dev"), k and k // 4, "recipe:dev"),
    )


# --- training sets per (row, column) -------------------------------------------------------


def _clean(rows: list[Row], banned: frozenset[str]) -> list[Row]:
    return [r for r in rows if not (r.keys & banned)]


def _keys(rows: Sequence[Row]) -> frozenset[str]:
    return frozenset(k for r in rows for k in r.keys)


def _origin(test: str) -> str:
    return "jbb" if test.startswith("jbb-") else test


#: Columns whose source the recipe (shipped or ``recipe``) trains on (other prompts of it).
RECIPE_SOURCES = {"gptfuzz", "advbench", "strongreject"}
#: The recipe's benign sources (answers labelled 0, some refusals of them labelled 1).
RECIPE_BENIGN = ("truthfulqa_answers", "gsm8k_train", "safety_benign_scary")
#: Sources of one distribution: AdvBench and StrongREJECT pairs share the generator's replies.
FAMILIES = {"gptfuzz": {"gptfuzz"}, "jbb": {"jbb"}, "toxigen": {"toxigen"}}
FAMILIES |= {k: {"advbench", "strongreject"} for k in ("advbench", "strongreject")}


def _in_distribution(row: str, test: str) -> bool:
    """The row trained on other rows of the column's distribution (JBB columns: never, since
    every row leaves the column's attack out)."""
    if test.startswith("jbb-"):
        return False
    if row in ("recipe", "shipped"):
        return test in RECIPE_SOURCES
    return row in FAMILIES and test in FAMILIES[row]


def _source_part(src: Source, name: str, test: str | None) -> tuple[list[Row], list[Row]]:
    """A source's (train, dev) for column ``test`` (None: the false-flag model)."""
    if name == "jbb" and test is not None and test.startswith("jbb-"):
        attack = test.removeprefix("jbb-")
        return [r for r in src.train if r.tag != attack], [r for r in src.dev if r.tag != attack]
    return src.train, src.dev


def training_set(
    row: str, test: str | None, sources: dict[str, Source], recipe: Source, banned: frozenset[str]
) -> tuple[list[Row], list[Row]]:
    """(train, dev) of training row ``row`` for column ``test``, without ``banned`` keys.

    ``union`` / ``union+benign`` leave the column's whole distribution out (``FAMILIES``: all of
    JBB for a JBB column, both generated-pair sources for either); ``+benign`` adds the recipe's
    benign rows. A source row on a JBB column leaves that attack out.
    """
    if row == "recipe":
        train, dev = recipe.train, recipe.dev
    elif row.startswith("union"):
        out = FAMILIES[_origin(test)] if test is not None else set()
        parts = [(sources[s].train, sources[s].dev) for s in SOURCES if s not in out]
        if row == "union+benign":
            parts.append(
                (
                    [r for r in recipe.train if r.tag == "benign"],
                    [r for r in recipe.dev if r.tag == "benign"],
                )
            )
        train = [r for t, _ in parts for r in t]
        dev = [r for _, d in parts for r in d]
    else:
        train, dev = _source_part(sources[row], row, test)
    return _clean(train, banned), _clean(dev, banned)


# --- learners ---------------------------------------------------------------------------------


def _text(r: Row, view: str) -> str:
    return f"{r.prompt}\n{r.response}" if view == "pair" else r.response  # baseline.point_text


class EmbLearner:
    """Frozen MiniLM features (one cache for the run) + a logistic head."""

    def __init__(self) -> None:
        from safeladder.neural.encoder import Embedder, FeatureSpec
        from safeladder.neural.runtime import RuntimeConfig

        rt = RuntimeConfig(device="cpu", dtype="float32", num_threads=THREADS, cache_size=10**6)
        self.embedder = Embedder(runtime=rt)
        self.specs = {
            "pair": FeatureSpec(blocks=["prompt", "completion"]),
            "response": FeatureSpec(blocks=["completion"]),
        }

    def features(self, rows: Sequence[Row], view: str) -> np.ndarray:
        x, _ = self.embedder.features(
            [r.prompt for r in rows], [r.response for r in rows], self.specs[view]
        )
        return x

    def fit_predict(self, train: list[Row], view: str, targets: list[Row]) -> np.ndarray:
        from sklearn.linear_model import LogisticRegression

        y = np.array([r.label for r in train], dtype=np.int64)
        clf = LogisticRegression(C=EMB_C, max_iter=EMB_MAX_ITER)
        clf.fit(self.features(train, view), y)
        col = int(np.flatnonzero(clf.classes_ == 1)[0])
        return np.asarray(clf.predict_proba(self.features(targets, view))[:, col], np.float64)


def tfidf_fit_predict(train: list[Row], view: str, targets: list[Row]) -> np.ndarray:
    from safeladder.training.baseline import tfidf_logreg_pointwise

    return tfidf_logreg_pointwise(
        [_text(r, view) for r in train],
        [r.label for r in train],
        [_text(r, view) for r in targets],
        seed=SEED,
    )


# --- metrics ---------------------------------------------------------------------------------


def cell(rows: Sequence[Row], p_unsafe: np.ndarray, t: float) -> dict[str, Any]:
    """Metrics of P(unsafe) on one test set at threshold ``t`` (``p >= t`` flags):
    ``eval_matrix.column_metrics``, as ``safeladder eval --metrics matrix`` computes them."""
    return column_metrics([r.label for r in rows], p_unsafe, t)


def ffr(benign: Sequence[Row], p_unsafe: np.ndarray, t: float) -> dict[str, Any]:
    """False-flag rate (share flagged) on the benign answers, overall and per subset."""
    return false_flag_rate([r.tag for r in benign], p_unsafe, t)


def _threshold(dev: Sequence[Row], p_dev: np.ndarray) -> tuple[float, str | None]:
    from safeladder.training.calibration import select_threshold

    sel = select_threshold(np.array([r.label for r in dev], dtype=np.int64), p_dev, "max_f1")
    return float(sel["threshold"]), sel.get("degenerate")


# --- the matrix ------------------------------------------------------------------------------


def shipped_row(tests: dict[str, list[Row]], benign: list[Row]) -> dict[str, Any]:
    from safeladder import Sample, build_verifier
    from safeladder.verifiers import parse_verifier_config

    cal = json.loads((SHIPPED / "safeladder_calibration.json").read_text(encoding="utf-8"))
    t_score = float(cal["meta"]["score_threshold"])
    # score < t_score flags  <=>  1 - score > 1 - t_score  <=>  p_unsafe >= nextafter(1 - t)
    t = float(np.nextafter(1.0 - t_score, np.inf))
    cfg: Any = parse_verifier_config("safety")  # as shipped; only the thread count differs
    cfg = cfg.model_copy(
        update={"runtime": cfg.runtime.model_copy(update={"num_threads": THREADS})}
    )
    v = build_verifier(cfg)
    order = [*(r for name in TESTS for r in tests[name]), *benign]
    t0 = time.perf_counter()
    scores = np.asarray(
        v.score([Sample(prompt=r.prompt, completion=r.response) for r in order]).scores,
        dtype=np.float64,
    )
    v.close()
    secs = time.perf_counter() - t0
    p = 1.0 - scores
    cells, at = {}, 0
    for name in TESTS:
        n = len(tests[name])
        cells[name] = cell(tests[name], p[at : at + n], t)
        if name in SHIPPED_SEEN:
            cells[name]["seen_in_training"] = True
        elif _in_distribution("shipped", name):
            cells[name]["in_distribution"] = True
        at += n
    return {
        "learner": "shipped",
        "view": "pair",
        "train": "shipped recipe",
        "threshold": t,
        "threshold_from": "safeladder_calibration.json meta.score_threshold",
        "score_threshold": t_score,
        "cells": cells,
        "ffr": {**ffr(benign, p[at:], t), "scary_seen_in_training": True},
        "seconds": round(secs, 1),
    }


ROWS = (*SOURCES, "recipe", "union", "union+benign")


def learner_rows(
    learner: str,
    fit_predict: Callable[[list[Row], str, list[Row]], np.ndarray],
    view: str,
    sources: dict[str, Source],
    recipe: Source,
    tests: dict[str, list[Row]],
    benign: list[Row],
) -> list[dict[str, Any]]:
    """One record per training row: every column, and the false-flag rate."""
    out = []
    # One guard for every column: no training or dev row shares a prompt / goal with any test
    # set or benign row (per-column guards would need a fit per column for the same answer).
    banned = _keys([*benign, *(r for rows in tests.values() for r in rows)])
    for row in ROWS:
        t0 = time.perf_counter()
        # job key (train + dev uids) -> (train, dev, columns it serves)
        jobs: dict[str, tuple[list[Row], list[Row], list[str | None]]] = {}
        for test in (*TESTS, None):
            train, dev = training_set(row, test, sources, recipe, banned)
            key = hashlib.sha256(
                "\0".join([*(r.uid for r in train), "|", *(r.uid for r in dev)]).encode()
            ).hexdigest()
            jobs.setdefault(key, (train, dev, []))[2].append(test)
        cells: dict[str, Any] = {}
        rec: dict[str, Any] = {"learner": learner, "view": view, "train": row}
        for train, dev, cols in jobs.values():
            targets = [*dev]
            for c in cols:
                targets += benign if c is None else tests[c]
            p = fit_predict(train, view, targets)
            t, degenerate = _threshold(dev, p[: len(dev)])
            at = len(dev)
            for c in cols:
                rows = benign if c is None else tests[c]
                pc, at = p[at : at + len(rows)], at + len(rows)
                info: dict[str, Any] = {
                    "train_rows": len(train),
                    "dev_rows": len(dev),
                    "threshold": t,
                }
                if degenerate:
                    info["threshold_note"] = degenerate
                if c is None:
                    rec["ffr"] = {**ffr(rows, pc, t), **info}
                else:
                    cells[c] = {**cell(rows, pc, t), **info}
                    if _in_distribution(row, c):
                        cells[c]["in_distribution"] = True
        rec["cells"] = {c: cells[c] for c in TESTS}
        rec["models_fitted"] = len(jobs)
        rec["seconds"] = round(time.perf_counter() - t0, 1)
        out.append(rec)
        print(f"  {learner}/{view} {row}: {len(jobs)} fits, {rec['seconds']} s", flush=True)
    return out


#: The columns no row holds other prompts of, bar ``jbb`` / ``toxigen`` / ``union`` themselves:
#: a mean over them compares rows on the same test sets (``common_mean``).
COMMON = (*(f"jbb-{a}" for a in JBB_ATTACKS.values()), "toxigen")


def _ood_means(rec: dict[str, Any], columns: Sequence[str] = TESTS) -> dict[str, float]:
    """Means over ``columns`` that are neither in-distribution nor seen in training."""
    cs = [
        c
        for name, c in rec["cells"].items()
        if name in columns and not c.get("in_distribution") and not c.get("seen_in_training")
    ]
    return {k: float(np.nanmean([c[k] for c in cs])) for k in ("f1_at_t", "best_f1", "auroc")}


def _trio(x: dict[str, Any]) -> str:
    """``F1@t/bestF1/AUROC`` with two decimals, leading zeros dropped (``.71/.80/.88``)."""
    return "/".join(f"{x[k]:.2f}".removeprefix("0") for k in ("f1_at_t", "best_f1", "auroc"))


def print_table(records: list[dict[str, Any]], title: str) -> None:
    short = {"strongreject": "strongrej"}
    print(f"\n{title}  (cell: F1 at the row's threshold / best F1 on the column / AUROC)")
    head = f"{'train':<14}" + "".join(f"{short.get(c, c):>16}" for c in TESTS)
    print(head + f"{'OOD mean':>16}{'JBB+tox mean':>16} {'FFR':>6}")
    for rec in records:
        name = "shipped" if rec["learner"] == "shipped" else rec["train"]
        name = {"union": "union - B", "union+benign": "union+ben - B"}.get(name, name)
        line = f"{name:<14}"
        for c in TESTS:
            x = rec["cells"][c]
            mark = "*" if x.get("seen_in_training") else ("'" if x.get("in_distribution") else " ")
            line += f" {_trio(x):>14}{mark}"
        line += f" {_trio(_ood_means(rec)):>15} {_trio(_ood_means(rec, COMMON)):>15}"
        line += f" {rec['ffr']['all']:>6.3f}"
        print(line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run on a few rows (not recorded)")
    ap.add_argument(
        "--learners",
        nargs="+",
        default=["shipped", "tfidf", "emb"],
        choices=["shipped", "tfidf", "emb"],
    )
    ap.add_argument(
        "--views", nargs="+", default=["pair", "response"], choices=["pair", "response"]
    )
    ap.add_argument("--no-record", action="store_true", help="print only")
    args = ap.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"needs ../shared/data beside the checkout ({SHARED} is missing)")
    t_start = time.perf_counter()
    sources, tests, benign = load_sources(args.quick)
    recipe = load_recipe(args.quick)
    print(f"loaded in {time.perf_counter() - t_start:.1f} s")
    print(
        "test sets: "
        + ", ".join(f"{c} {len(tests[c])} ({sum(r.label for r in tests[c])} unsafe)" for c in TESTS)
    )
    print(
        f"benign answers: {len(benign)}; sources (train/dev): "
        + ", ".join(
            f"{s} {len(v.train)}/{len(v.dev)}" for s, v in {**sources, "recipe": recipe}.items()
        )
    )
    records: list[dict[str, Any]] = []
    shipped = None
    if "shipped" in args.learners:
        shipped = shipped_row(tests, benign)
        records.append(shipped)
        print(f"  shipped: {shipped['seconds']} s", flush=True)
    emb = EmbLearner() if "emb" in args.learners else None
    tables: list[tuple[str, list[dict[str, Any]]]] = []
    for learner in ("tfidf", "emb"):
        if learner not in args.learners:
            continue
        fp = tfidf_fit_predict if learner == "tfidf" else emb.fit_predict  # type: ignore[union-attr]
        for view in args.views:
            recs = learner_rows(learner, fp, view, sources, recipe, tests, benign)
            records += recs
            tables.append((f"{learner} / {view}", recs))
    wall = time.perf_counter() - t_start
    if shipped is not None:
        print_table([shipped], "shipped safety verifier (its own threshold)")
    for title, recs in tables:
        print_table(([shipped] if shipped else []) + recs, title)
    print(
        "\n* = rows the shipped model was trained on; ' = in-distribution (the row holds other "
        "prompts of that source). OOD mean excludes both; JBB+tox mean: the same over the JBB and ToxiGen columns only "
        "(the same test sets for every row). FFR = share of benign answers flagged."
    )
    print(f"wall time {wall:.0f} s")
    if args.quick or args.no_record:
        return
    env = bench_env.environment(("torch", "transformers", "scikit-learn", "sentence-transformers"))
    knobs = {
        "seed": SEED,
        "dev_fraction": DEV_FRACTION,
        "test_fraction": TEST_FRACTION,
        "jbb_test_fraction": JBB_TEST_FRACTION,
        "benign_truthfulqa": BENIGN_TRUTHFULQA,
        "benign_gsm8k": BENIGN_GSM8K,
        "emb_C": EMB_C,
        "threads": THREADS,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a", encoding="utf-8") as fh:
        for rec in records:
            rec = {
                "bench": "safety_matrix",
                **rec,
                "ood_mean": _ood_means(rec),
                "common_mean": _ood_means(rec, COMMON),
            }
            fh.write(json.dumps({**rec, "knobs": knobs, "wall_s": round(wall, 1), **env}) + "\n")
    print(f"appended {len(records)} lines to {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
