"""Which verifier should gate the default reward? Candidates on data none of them trained on.

Issue 13, item 2 names the levers for a ``safety`` default that generalises: long completions
judged in windows (worst window), an ensemble with the word/char TF-IDF model, thresholds that
carry over. This script puts them side by side on the shift columns of
``safeladder.training.shift_sets`` (the test sets of ``bench_safety_matrix.py``), the benign
answers (false-flag rate) and the hand-written behaviour probes
(``benchmarks/data/safety_probes.jsonl``).

**Members**, each scored once:

- ``safety``: the shipped MiniLM + LoRA classifier, completion cut at 256 tokens (its preset);
- ``safety+windows``: the same model over the whole completion in windows of 192 tokens every
  128 (``render.windows``; a row gets its worst window);
- ``tfidf``: TF-IDF + logistic regression on the response, trained the way the shipped
  ``safety_tfidf`` is (``configs/train/safety_tfidf.yaml``: the union of the sources plus benign
  answers, no refused benign rows) but *fairly*: refitted per column on the union minus the
  column's whole distribution (all of JailbreakBench for a JBB column; AdvBench and StrongREJECT
  together), without any row sharing a prompt or goal with a test or benign row or a probe
  (``bench_safety_matrix.training_set``, row ``union+benign``). The shipped ``safety_tfidf``
  itself trained on the JBB and ToxiGen rows, so it cannot be tested on those columns.

**Candidates**: each member alone and ensembles of ``safety(+windows)`` with ``tfidf`` by
``mean``, ``logit_mean`` and ``min`` (``ensemble.combine_scores``, the function
``type: ensemble`` calls). Thresholds are not tuned here: a member uses its own (``safety``: its
calibration file's, 0.362 for the model of stop 20, 0.519 for the union-trained one; ``tfidf``: max F1 on its dev split, the shipped-threshold analogue), an ensemble
the same combination of its members' thresholds. A score below the threshold flags.

Since stop 21 the shipped ``safety`` also trains on the JBB pools (PAIR kept out) and ToxiGen's,
so only PAIR stays unseen by it; the recorded run of stop 20 used the earlier model.

Per column: F1 at the threshold / best F1 on the column (oracle) / AUROC. ``safety`` trained on
AdvBench / StrongREJECT (``*``) and other GPTFuzz prompts (in-distribution): the summary means
cover the five JBB columns and ToxiGen, which no member trained on. Speed: rows/s of each
member on one CPU thread over 200 GPTFuzz ``evaluate`` rows, and over 44 long rows of six
such answers joined (~900 tokens; windows cost in proportion to tokens). An ensemble costs the
sum of its members.

    python benchmarks/bench_safety_gate.py          # ~3 minutes on 2 CPU cores (~90 s cached)
    python benchmarks/bench_safety_gate.py --quick  # smoke run on a few rows, not recorded

Member scores are cached in ``out/bench_safety_gate/`` (keyed by the rows and the checkout's
shipped files), so re-running to change the table costs seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import bench_env  # benchmarks/ is the script's directory, so it is on sys.path
import bench_safety_matrix as matrix
import numpy as np

from safeladder.training.eval_matrix import column_metrics, false_flag_rate
from safeladder.training.shift_sets import Row, make_row

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "safety_gate.jsonl"
CACHE = REPO / "out" / "bench_safety_gate"
PROBES = REPO / "benchmarks" / "data" / "safety_probes.jsonl"
WINDOWS = {"size": 192, "stride": 128, "aggregate": "min"}
#: Columns no member trained on (nor on other rows of their distribution).
UNSEEN = ("jbb-GCG", "jbb-PAIR", "jbb-JBC", "jbb-RS", "jbb-DSN", "toxigen")
SPEED_ROWS = 200
#: Long answers for the speed of windows: LONG_JOIN GPTFuzz answers joined per row (~900
#: tokens, about 6.6 windows of 192 tokens every 128).
LONG_ROWS, LONG_JOIN = 44, 6
THREADS = 2


def load_probes() -> list[Row]:
    rows = [json.loads(x) for x in PROBES.read_text(encoding="utf-8").splitlines() if x.strip()]
    return [
        replace(
            make_row(f"probe:{r['id']}", r["prompt"], r["response"], r["label"], ""), tag=r["kind"]
        )
        for r in rows
    ]


def shipped_threshold() -> float:
    cal = json.loads((matrix.SHIPPED / "safeladder_calibration.json").read_text("utf-8"))
    return float(cal["meta"]["score_threshold"])


def safety_config(windows: bool, threads: int) -> Any:
    from safeladder.verifiers import parse_verifier_config

    cfg: Any = parse_verifier_config("safety")
    update: dict[str, Any] = {
        "runtime": cfg.runtime.model_copy(update={"num_threads": threads}),
    }
    if windows:
        render = cfg.render.model_dump()
        render["windows"] = WINDOWS
        update["render"] = type(cfg.render).model_validate(render)
    return cfg.model_copy(update=update)


def neural_scores(rows: Sequence[Row], windows: bool) -> np.ndarray:
    """P(safe) of each row from the shipped ``safety`` (with or without windows), cached."""
    key = hashlib.sha256(
        "\0".join([str(windows), *(r.uid for r in rows)]).encode()
        + (matrix.SHIPPED / "adapter_model.safetensors").read_bytes()
    ).hexdigest()[:16]
    path = CACHE / f"safety{'+windows' if windows else ''}-{key}.npy"
    if path.exists():
        return np.load(path)
    from safeladder import Sample, build_verifier

    v = build_verifier(safety_config(windows, THREADS))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the 256-token cut warns once per batch; it is the point
        s = np.asarray(
            v.score([Sample(prompt=r.prompt, completion=r.response) for r in rows]).scores,
            dtype=np.float64,
        )
    v.close()
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, s)
    return s


def tfidf_scores(
    sources: dict[str, Any],
    recipe: Any,
    tests: dict[str, list[Row]],
    benign: list[Row],
    probes: list[Row],
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """``(P(safe) per column and for "benign" / "probes", score threshold per column)``."""
    banned = matrix._keys([*benign, *probes, *(r for rows in tests.values() for r in rows)])
    # the shipped safety_tfidf recipe: benign answers only (a refused benign request is not
    # harmful, and as label 1 it collides with the generated refusals labelled 0)
    answered = matrix.Source(
        [r for r in recipe.train if not (r.tag == "benign" and r.label == 1)],
        [r for r in recipe.dev if not (r.tag == "benign" and r.label == 1)],
    )
    scores: dict[str, np.ndarray] = {}
    thresholds: dict[str, float] = {}
    fits: dict[str, tuple[np.ndarray, float]] = {}
    for column in (*matrix.TESTS, None):
        train, dev = matrix.training_set("union+benign", column, sources, answered, banned)
        targets = (benign + probes) if column is None else tests[column]
        key = hashlib.sha256("\0".join(r.uid for r in [*train, *dev, *targets]).encode())
        if key.hexdigest() not in fits:
            p = matrix.tfidf_fit_predict(train, "response", [*dev, *targets])
            t, _ = matrix._threshold(dev, p[: len(dev)])
            fits[key.hexdigest()] = (p[len(dev) :], t)
        p_targets, t = fits[key.hexdigest()]
        # P(unsafe) >= t flags  <=>  P(safe) <= 1 - t: the score threshold (strict <) just above
        t_score = float(np.nextafter(1.0 - t, np.inf))
        if column is None:
            scores["benign"], scores["probes"] = (
                1.0 - p_targets[: len(benign)],
                1.0 - p_targets[len(benign) :],
            )
            thresholds["benign"] = thresholds["probes"] = t_score
        else:
            scores[column], thresholds[column] = 1.0 - p_targets, t_score
    return scores, thresholds


def combine(how: str, *members: np.ndarray) -> np.ndarray:
    from safeladder.verifiers.ensemble import combine_scores

    m = np.stack(members, axis=1)
    w = np.ones(m.shape[1])
    return np.array([combine_scores(row, w, how) for row in m])


def probe_summary(rows: list[Row], s: np.ndarray, t: float) -> dict[str, Any]:
    kinds = np.array([r.tag for r in rows])
    flagged = s < t
    y = np.array([r.label for r in rows])
    return {
        "harmful_caught": int(flagged[kinds == "compliance"].sum()),
        "harmful": int((kinds == "compliance").sum()),
        "refusals_passed": int((~flagged[kinds == "refusal"]).sum()),
        "refusals": int((kinds == "refusal").sum()),
        "benign_passed": int((~flagged[kinds == "benign"]).sum()),
        "benign": int((kinds == "benign").sum()),
        "auroc": column_metrics(y, 1.0 - s, 1.0 - t)["auroc"],
    }


def long_rows(rows: Sequence[Row], n: int) -> list[Row]:
    """``n`` rows whose answer is ``LONG_JOIN`` seeded answers of ``rows`` joined."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        pick = rng.choice(len(rows), LONG_JOIN, replace=False)
        text = " ".join(rows[j].response for j in pick)
        out.append(replace(rows[pick[0]], uid=f"long:{i}", response=text))
    return out


def speed(rows: Sequence[Row]) -> dict[str, float]:
    """Rows/s of each member on one thread (a fresh verifier, no cache hits)."""
    from safeladder import Sample, build_verifier

    samples = [Sample(prompt=r.prompt, completion=r.response) for r in rows]
    out = {}
    specs: dict[str, Callable[[], Any]] = {
        "safety": lambda: safety_config(False, 1),
        "safety+windows": lambda: safety_config(True, 1),
        "safety_tfidf": lambda: "safety_tfidf",
    }
    for name, spec in specs.items():
        v = build_verifier(spec())
        v.score(samples[:4])  # load and warm up
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            v.score(samples[4:])
        out[name] = round((len(samples) - 4) / (time.perf_counter() - t0), 1)
        v.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run on a few rows (not recorded)")
    args = ap.parse_args()
    if not matrix.SHARED.is_dir():
        sys.exit(f"needs ../shared/data beside the checkout ({matrix.SHARED} is missing)")
    started = time.monotonic()
    sources, tests, benign = matrix.load_sources(args.quick)
    recipe = matrix.load_recipe(args.quick)
    probes = load_probes()
    order = [*(r for c in matrix.TESTS for r in tests[c]), *benign, *probes]
    parts = {c: len(tests[c]) for c in matrix.TESTS} | {
        "benign": len(benign),
        "probes": len(probes),
    }

    def split(s: np.ndarray) -> dict[str, np.ndarray]:
        out, at = {}, 0
        for name, n in parts.items():
            out[name], at = s[at : at + n], at + n
        return out

    t_safety = shipped_threshold()
    members: dict[str, tuple[dict[str, np.ndarray], dict[str, float]]] = {}
    for name, windows in (("safety", False), ("safety+windows", True)):
        t0 = time.monotonic()
        members[name] = (split(neural_scores(order, windows)), dict.fromkeys(parts, t_safety))
        print(f"{name}: {time.monotonic() - t0:.0f} s", flush=True)
    t0 = time.monotonic()
    members["tfidf"] = tfidf_scores(sources, recipe, tests, benign, probes)
    print(f"tfidf fits: {time.monotonic() - t0:.0f} s", flush=True)

    candidates: dict[str, tuple[dict[str, np.ndarray], dict[str, float]]] = dict(members)
    for neural in ("safety", "safety+windows"):
        a_s, a_t = members[neural]
        b_s, b_t = members["tfidf"]
        for how in ("mean", "logit_mean", "min"):
            candidates[f"{how}({neural}, tfidf)"] = (
                {p: combine(how, a_s[p], b_s[p]) for p in parts},
                {p: float(combine(how, np.array([a_t[p]]), np.array([b_t[p]]))[0]) for p in parts},
            )

    records = []
    for name, (s, t) in candidates.items():
        cells = {}
        for c in matrix.TESTS:
            y = np.array([r.label for r in tests[c]])
            cells[c] = column_metrics(y, 1.0 - s[c], float(np.nextafter(1.0 - t[c], np.inf)))
            cells[c]["threshold"] = t[c]
        unseen = {
            k: float(np.nanmean([cells[c][k] for c in UNSEEN]))
            for k in ("f1_at_t", "best_f1", "auroc")
        }
        ffr = false_flag_rate(
            [r.tag for r in benign],
            1.0 - s["benign"],
            float(np.nextafter(1.0 - t["benign"], np.inf)),
        )
        records.append(
            {
                "candidate": name,
                "cells": cells,
                "unseen_mean": unseen,
                "ffr": ffr,
                "probes": probe_summary(probes, s["probes"], t["probes"]),
            }
        )
    short = matrix.sample_rows(tests["gptfuzz"], SPEED_ROWS, "gate-speed")
    speeds = speed(short)
    speeds_long = speed(long_rows(tests["gptfuzz"], LONG_ROWS))

    def trio(c: dict[str, Any]) -> str:
        return "/".join(f"{c[k]:.2f}".lstrip("0") for k in ("f1_at_t", "best_f1", "auroc"))

    cols = [c for c in matrix.TESTS]
    print("\nF1 at the threshold / best F1 / AUROC; FFR = benign answers flagged")
    print(
        "| candidate | " + " | ".join(cols) + " | unseen mean | FFR | probes caught/24, "
        "benign passed/22, AUROC |"
    )
    print("| --- " * (len(cols) + 4) + "|")
    for rec in records:
        pr = rec["probes"]
        print(
            f"| {rec['candidate']} | "
            + " | ".join(trio(rec["cells"][c]) for c in cols)
            + f" | {trio(rec['unseen_mean'])} | {rec['ffr']['all']:.3f} | "
            f"{pr['harmful_caught']}, {pr['benign_passed']}, {pr['auroc']:.3f} |"
        )
    print(f"\nrows/s on one thread (GPTFuzz rows, after 4 warm-up rows): {speeds}")
    print(f"rows/s on one thread ({LONG_JOIN} GPTFuzz answers joined per row): {speeds_long}")
    if args.quick:
        return
    record = {
        "benchmark": "safety_gate",
        "candidates": records,
        "speed_rows_per_s_one_thread": speeds,
        "speed_rows_per_s_one_thread_long": speeds_long,
        "long_rows": {"rows": LONG_ROWS, "answers_joined": LONG_JOIN},
        "windows": WINDOWS,
        "safety_threshold": t_safety,
        "tfidf_thresholds": members["tfidf"][1],
        "rows": parts,
        "seconds": round(time.monotonic() - started, 1),
        **bench_env.environment(["torch", "transformers", "scikit-learn"]),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a", encoding="utf-8") as f:
        f.write(
            json.dumps(
                record, default=lambda x: None if isinstance(x, float) and math.isnan(x) else x
            )
            + "\n"
        )
    print(f"appended to {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
