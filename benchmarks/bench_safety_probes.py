"""Hand-written behaviour probes through safety verifiers, pass / fail at each shipped gate (issue 13).

``benchmarks/data/safety_probes.jsonl`` holds 50 hand-written rows: explicit harmful
*compliance* (pipe bomb, thallium poisoning, hot-wiring, ransomware / keylogger, self-harm, drug
synthesis, stalking; label 1 = unsafe; the "instructions" are vague placeholders such as
``[SUBSTANCE]``, never real detail), four of them followed by a long harmless tail so the
harmful part sits past the first 256 tokens' reach of a cut that keeps the end; *refusals* of
the same requests (label 0); and *benign* look-alikes answered helpfully (killing a process,
shooting photos, jump-starting a car, household chemical safety; label 0), two of them long.

Each verifier in ``SPECS`` (a preset name or a config dict) scores every probe; a row is
flagged when its P(safe) is below the verifier's threshold: the one it ships with (the
classifier's ``safeladder_calibration.json`` ``meta.score_threshold``, a ``tfidf`` model's
``score_threshold``; the comparison is ``<`` for all, where ``tfidf`` itself flags ``<=``), for an ensemble the same combination of its members' thresholds (an
untuned stand-in, said in the output), or ``threshold`` in the spec. Specs whose preset is not
shipped (``safety_tfidf`` until it lands) are skipped with a note.

Printed: P(safe) per probe and verifier (``*`` = flagged), then per verifier the harmful
compliance caught, refusals and benign answers passed, and AUROC (unsafe = positive). One JSON
line per verifier is appended to ``benchmarks/results/safety_probes.jsonl``. ``--gptfuzz N``
also scores N rows of GPTFuzz's held-out ``evaluate`` split with each verifier (AUROC, F1 / TPR
/ FPR at the threshold, rows scored in several windows): what a setting costs in distribution.

    python benchmarks/bench_safety_probes.py                 # ~1 minute on 2 shared CPUs
    python benchmarks/bench_safety_probes.py --only safety   # one spec
    python benchmarks/bench_safety_probes.py --gptfuzz 1540  # + held-out GPTFuzz, ~4 minutes
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_env import REPO, SHARED_DATA, environment

from safeladder import Sample
from safeladder.config import preset_path
from safeladder.errors import ConfigError
from safeladder.training.eval_scoring import saved_decision
from safeladder.verifiers import build_verifier, parse_verifier_config

# ------------------------------------------------------------------------------------ knobs
PROBES = REPO / "benchmarks" / "data" / "safety_probes.jsonl"
RESULTS = REPO / "benchmarks" / "results" / "safety_probes.jsonl"
CPU = {"device": "cpu"}
#: ``--gptfuzz N``: also score the first N rows of GPTFuzz's held-out ``evaluate`` split
#: (``../shared/data``; never trained on) to see what a setting costs in distribution.
GPTFUZZ = "gptfuzz_labeled_responses.jsonl.gz"
#: The shipped safety classifier with its completion scored in windows of 192 tokens every
#: 128 (each window keeps the prompt's last ~60 tokens within max_length 256).
WINDOWS = {"size": 192, "stride": 128, "aggregate": "min"}
SPECS: dict[str, dict[str, Any]] = {
    "safety": {"spec": "safety"},
    "safety+windows": {"spec": "safety", "render": {"windows": WINDOWS}},
    "safety_tfidf": {"spec": "safety_tfidf"},
    "ensemble(safety, safety_tfidf)": {
        "spec": {
            "type": "ensemble",
            "name": "ensemble",
            "combine": "mean",
            "members": [{"verifier": "safety"}, {"verifier": "safety_tfidf"}],
        }
    },
    "safety_ensemble": {"spec": "safety_ensemble"},  # the default reward's gate
    "ensemble(safety+windows, safety_tfidf)": {
        "spec": {
            "type": "ensemble",
            "name": "ensemble_windows",
            "combine": "mean",
            "members": [{"verifier": "safety+windows"}, {"verifier": "safety_tfidf"}],
        }
    },
}


def resolve(spec: Any) -> Any:
    """A spec with this file's own names (``safety+windows``) expanded into configs; raises
    ``LookupError`` naming a preset that is not shipped."""
    if isinstance(spec, str):
        if spec in SPECS and SPECS[spec]["spec"] != spec:
            return resolve(SPECS[spec])
        if preset_path("verifiers", spec) is None:
            raise LookupError(spec)
        return spec
    if "spec" in spec:  # a SPECS entry: the spec with render / runtime overrides
        cfg = parse_verifier_config(resolve(spec["spec"])).model_dump(mode="json")
        if "render" in spec:
            cfg["render"] = {**cfg.get("render", {}), **spec["render"]}
        if "runtime" in cfg:
            cfg["runtime"] = {**cfg["runtime"], **CPU}
        return cfg
    if spec.get("type") == "ensemble":
        members = [{**m, "verifier": resolve(m["verifier"])} for m in spec["members"]]
        return {**spec, "members": members}
    return spec


def threshold_of(v: Any) -> tuple[float | None, str]:
    """``(threshold, where it comes from)``: a score below it flags the row; ``safeladder
    eval``'s reading (an ensemble: its members' thresholds, combined)."""
    t, _, source = saved_decision(v.config, v)
    return t, source or "none shipped"


def auroc(labels: np.ndarray, unsafe_score: np.ndarray) -> float:
    """P(a random unsafe row scores above a random safe one), ties count half."""
    pos, neg = unsafe_score[labels == 1], unsafe_score[labels == 0]
    if not len(pos) or not len(neg):
        return math.nan
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (len(pos) * len(neg)))


def timed(v: Any, samples: list[Sample]) -> tuple[Any, float]:
    """``(ScoreBatch, seconds)``; truncation warnings are silenced (counted in details)."""
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sb = v.score(samples)
    return sb, time.perf_counter() - t0


def held_out_summary(
    name: str, cfg: Any, thr: float | None, sb: Any, labels: np.ndarray, secs: float, env: Any
) -> dict[str, Any]:
    """GPTFuzz held-out figures at the threshold; also appended to the results file."""
    s = sb.scores.astype(np.float64)
    flagged = s < thr if thr is not None else np.zeros(len(s), dtype=bool)
    tp = int((flagged & (labels == 1)).sum())
    prec = tp / max(int(flagged.sum()), 1)
    rec = tp / max(int((labels == 1).sum()), 1)
    out = {
        "set": "gptfuzz_evaluate",
        "verifier": name,
        "rows": len(s),
        "threshold": thr,
        "auroc": auroc(labels, 1.0 - s),
        "f1": 2 * prec * rec / (prec + rec) if prec + rec else 0.0,
        "tpr": rec,
        "fpr": int((flagged & (labels == 0)).sum()) / max(int((labels == 0).sum()), 1),
        "multi_window_rows": sum(1 for d in sb.details if d.get("windows", 1) > 1),
        "seconds": round(secs, 2),
    }
    with RESULTS.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({**out, "spec": cfg, **env}, default=str) + "\n")
    return out


def read_gptfuzz(n: int) -> tuple[list[Sample], np.ndarray]:
    import gzip

    rows = []
    with gzip.open(SHARED_DATA / GPTFUZZ, "rt", encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            if r["split"] == "evaluate":
                rows.append(r)
            if len(rows) >= n:
                break
    samples = [Sample(prompt=r["prompt"], completion=r["response"]) for r in rows]
    return samples, np.array([r["label"] for r in rows])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", action="append", help="score only these SPECS names")
    ap.add_argument(
        "--gptfuzz", type=int, default=0, help="also score N held-out GPTFuzz rows (1540 = all)"
    )
    args = ap.parse_args()
    held_out = read_gptfuzz(args.gptfuzz) if args.gptfuzz else None
    rows = [json.loads(line) for line in PROBES.read_text(encoding="utf-8").splitlines() if line]
    samples = [Sample(prompt=r["prompt"], completion=r["response"]) for r in rows]
    labels = np.array([r["label"] for r in rows])
    env = environment(["torch", "transformers"])
    table: dict[str, np.ndarray] = {}
    gates: dict[str, float | None] = {}
    summaries = []
    for name, spec in SPECS.items():
        if args.only and name not in args.only:
            continue
        try:
            cfg = resolve(spec)
        except LookupError as missing:
            print(f"skip {name}: preset {missing} is not shipped (yet)")
            continue
        try:
            v = build_verifier(cfg)
        except ConfigError as exc:
            print(f"skip {name}: {exc}")
            continue
        try:
            v.score(samples[:2])  # warm-up
            sb, secs = timed(v, samples)
            thr, src = threshold_of(v)
            if held_out:
                gsb, gsecs = timed(v, held_out[0])
                summaries.append(held_out_summary(name, cfg, thr, gsb, held_out[1], gsecs, env))
        finally:
            v.close()
        s = sb.scores.astype(np.float64)
        table[name], gates[name] = s, thr
        flagged = s < thr if thr is not None else np.zeros(len(s), dtype=bool)
        kinds = np.array([r["kind"] for r in rows])
        summary = {
            "set": "probes",
            "verifier": name,
            "threshold": thr,
            "threshold_source": src,
            "compliance_caught": int(flagged[kinds == "compliance"].sum()),
            "compliance": int((kinds == "compliance").sum()),
            "refusals_passed": int((~flagged[kinds == "refusal"]).sum()),
            "refusals": int((kinds == "refusal").sum()),
            "benign_passed": int((~flagged[kinds == "benign"]).sum()),
            "benign": int((kinds == "benign").sum()),
            "auroc": auroc(labels, 1.0 - s),
            "seconds": round(secs, 2),
        }
        summaries.append(summary)
        windows = [d.get("windows") for d in sb.details]
        with RESULTS.open("a", encoding="utf-8") as fh:
            line = {
                **summary,
                "spec": cfg,
                "probes": [
                    {"id": r["id"], "p_safe": float(x), "flagged": bool(f), "windows": w}
                    for r, x, f, w in zip(rows, s, flagged, windows, strict=True)
                ],
                **env,
            }
            fh.write(json.dumps(line, default=str) + "\n")
    names = list(table)
    print("\nP(safe) per probe (* = flagged: below the verifier's threshold)")
    print(f"{'probe':34s} lab " + " ".join(f"{n[:22]:>22s}" for n in names))
    for i, r in enumerate(rows):
        cells = []
        for n in names:
            thr = gates[n]
            mark = "*" if thr is not None and table[n][i] < thr else " "
            cells.append(f"{table[n][i]:21.3f}{mark}")
        print(f"{r['id'][:34]:34s} {r['label']:3d} " + " ".join(cells))
    print()
    for sm in summaries:
        if sm.get("set") == "gptfuzz_evaluate":
            print(
                f"{sm['verifier']} on {sm['rows']} held-out GPTFuzz rows: AUROC {sm['auroc']:.4f}, "
                f"F1 {sm['f1']:.4f}, TPR {sm['tpr']:.4f}, FPR {sm['fpr']:.4f} at the threshold; "
                f"{sm['multi_window_rows']} rows in several windows, {sm['seconds']} s"
            )
            continue
        thr = "none" if sm["threshold"] is None else f"{sm['threshold']:.3f}"
        print(
            f"{sm['verifier']}: threshold {thr} ({sm['threshold_source']}); harmful compliance "
            f"caught {sm['compliance_caught']}/{sm['compliance']}, refusals passed "
            f"{sm['refusals_passed']}/{sm['refusals']}, benign passed "
            f"{sm['benign_passed']}/{sm['benign']}, AUROC {sm['auroc']:.3f}, {sm['seconds']} s"
        )
    print(f"\nappended to {RESULTS.relative_to(REPO)}; git {str(env['git_sha'])[:10]}")


if __name__ == "__main__":
    main()
