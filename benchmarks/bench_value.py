"""Harmlessness preference (`value`) learners on hh-rlhf harmless pairs: cheap CPU learners vs
the shipped `value` reward model (issue 13, item 3).

Data: ``../shared/data/hh_rlhf_harmless_pref.jsonl`` (1,312 pairs: prompt, chosen, rejected),
read with the training loader (``load_records``), so a pair's group is its normalised prompt.
The metric is pairwise accuracy: the share of pairs whose chosen reply scores higher (a tie
counts one half).

Two evaluations:

- **CV** (every cheap learner): 5 folds grouped by prompt (``baseline.grouped_folds``, seed 0),
  the same folds for every learner; each learner is fitted on 4 folds and scores the 5th.
  Reported as mean ± sd over the 5 fold accuracies (and the pooled accuracy).
- **dev** (the shipped `value` and, for comparison, every learner): the shipped model's own
  held-out split, rebuilt as its training run made it (``grouped_split``, dev_fraction 0.2,
  seed 0 from ``safeladder/defaults/value/safeladder_run.json``: 1,050 train / 262 dev pairs);
  the other learners are refitted on its 1,050 train pairs. The shipped model is never given a
  CV figure: it was trained on the other 1,050 pairs. Check: the TF-IDF baseline reproduces
  ``metrics.json``'s baseline accuracy (0.5992) on this split.

Learners (scores of a reply; a pair's margin = score(chosen) − score(rejected)):

- ``value (shipped)``: the `value` preset (MiniLM + LoRA Bradley–Terry), dev split only.
- ``tfidf/prompt+resp``: ``baseline.tfidf_logreg_pairwise`` on prompt + reply (as the training
  runs' baseline); ``tfidf/resp``: on the reply alone.
- ``emb/<view>``: frozen all-MiniLM-L6-v2 embeddings (``Embedder.features``, normalised) and a
  linear Bradley–Terry model, logistic regression without intercept on φ(chosen) − φ(rejected)
  (each pair both ways: the ``embedding_head`` kind's ``head: logistic`` pairwise fit), its C
  chosen by a grouped 4-fold CV inside the training folds. Views: ``resp`` ([completion]),
  ``resp+prod`` ([completion, product]: the reply and its elementwise product with the
  dialogue; a plain prompt block cancels in the difference). A ``joined`` view (one embedding
  of dialogue + reply, cut at 256 tokens from its start, so long dialogues lose the reply) was
  0.61 on a 240-pair smoke run vs 0.66 for ``resp`` and costs most of the embedding time: left
  out.
- ``emb-mlp/resp+prompt``: ``configs/train/embedding_head_hh_pairwise.yaml``'s head (torch MLP
  [64] over [completion, prompt], early stopping on 15 % of the training groups).
- ``signals``: Bradley–Terry (standardised logistic regression, no intercept) over the
  differences of the shipped `safety` P(safe) of each (dialogue, reply), the `refusal` verifier
  (0/1) and log reply length; ``safety``, ``refusal``, ``length`` alone as single-signal rows
  (sign learned on the training folds).
- ``stack``: logistic regression (no intercept, on both orientations) over [TF-IDF (reply) margin, emb
  margin (resp+prod), safety diff, refusal diff, log-length diff]; the two model margins are
  out-of-fold predictions inside the training folds (grouped 4-fold), so the stacker never sees
  a margin of a pair its base model trained on; the base models are then refitted on the whole
  training folds to score the test fold.
- ``tfidf/resp+safety-pairs``, ``emb/resp+safety-pairs``: ``tfidf/resp`` and ``emb/resp``
  with extra training pairs made from the shared safety data, never from hh-rlhf: for each
  harmful (label 1) response of GPTFuzz's ``train`` split, a seeded safe (label 0) response to
  the same question is chosen over it (``safety_pairs``; 1,694 pairs). Does more
  harmlessness data of another source lift accuracy on hh-rlhf's pairs? Test folds hold only
  hh-rlhf pairs.
- ``mean-ensemble``: the unweighted mean of the ``ENSEMBLE`` members' margins (tfidf/resp,
  emb/resp+prod, emb-mlp/resp+prompt), each scaled by its RMS margin on the training pairs.

Learning curve: the best CV learner (and the TF-IDF baseline) refitted on 25/50/75/100 % of
each training fold's groups (seeded), scored on the full test fold.

Embeddings, safety and refusal scores are computed once per text for the run.

One JSON line per learner (and one for the learning curve) is appended to
``benchmarks/results/value.jsonl`` with the knobs and the environment.

    python benchmarks/bench_value.py            # ~5 minutes on 2 shared CPUs
    python benchmarks/bench_value.py --quick    # smoke run on 150 pairs, < 1 minute, not recorded
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bench_env  # benchmarks/ is the script's directory, so it is on sys.path
import numpy as np

# --- knobs ----------------------------------------------------------------------------------
SEED = 0
FOLDS = 5
INNER_FOLDS = 4  # C selection and stacking margins inside a training fold
EMB_CS = (0.03, 0.1, 0.3, 1.0, 3.0)  # C grid of the embedding BT logistic heads
STACK_C = 1.0
SHIPPED_DEV_FRACTION = 0.2  # configs/train/value.yaml (as recorded in safeladder_run.json)
SHIPPED_SPLIT_SEED = 0
CURVE = (0.25, 0.5, 0.75, 1.0)
THREADS = 2
QUICK_PAIRS = 150

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
DATA = SHARED / "hh_rlhf_harmless_pref.jsonl"
RESULTS = REPO / "benchmarks" / "results" / "value.jsonl"
SHIPPED = REPO / "safeladder" / "defaults" / "value"
MLP_RECIPE = REPO / "configs" / "train" / "embedding_head_hh_pairwise.yaml"
VIEWS = {"resp": ["completion"], "resp+prod": ["completion", "product"]}
STACK_VIEW = "resp+prod"
#: Members of the ``mean-ensemble`` learner (names of the learners table).
ENSEMBLE = ("tfidf/resp", "emb/resp+prod", "emb-mlp/resp+prompt")


@dataclass
class Pairs:
    prompt: list[str]
    chosen: list[str]
    rejected: list[str]
    group: list[str]

    def __len__(self) -> int:
        return len(self.prompt)


@dataclass
class ExtraPairs:
    """Training-only pairs from another source: texts and their ``resp`` embeddings."""

    chosen: list[str]
    rejected: list[str]
    emb: tuple[np.ndarray, np.ndarray]


@dataclass
class Signals:
    """Per-pair (n, 2) chosen / rejected values, computed once for the run."""

    emb: dict[str, tuple[np.ndarray, np.ndarray]]
    prompt: np.ndarray  # (n, dim) embedding of the dialogue (the MLP recipe's prompt block)
    safety: np.ndarray
    refusal: np.ndarray
    loglen: np.ndarray
    extra: ExtraPairs | None = None


def accuracy(margin: np.ndarray) -> float:
    return float(np.mean((margin > 0) + 0.5 * (margin == 0))) if len(margin) else float("nan")


# --- data -----------------------------------------------------------------------------------


def load_pairs(quick: bool) -> tuple[Pairs, np.ndarray]:
    """All pairs and the shipped model's dev mask (True: in its held-out split)."""
    from safeladder.training.common import DataSource
    from safeladder.training.data import load_records
    from safeladder.training.split import grouped_split

    recs = load_records([DataSource(path=str(DATA))], pairwise=True).records
    split = grouped_split(recs, SHIPPED_DEV_FRACTION, SHIPPED_SPLIT_SEED)
    dev_rows = {r.row for r in split.dev}
    if not quick:
        run = json.loads((SHIPPED / "safeladder_run.json").read_text(encoding="utf-8"))
        data = run["config"]["data"]
        if (data["dev_fraction"], data["split_seed"]) != (SHIPPED_DEV_FRACTION, SHIPPED_SPLIT_SEED):
            sys.exit(f"the shipped value's split knobs changed: {data}")
    if quick:
        idx = np.random.default_rng(SEED).permutation(len(recs))[:QUICK_PAIRS]
        recs = [recs[int(i)] for i in sorted(idx)]
    pairs = Pairs(
        [r.prompt for r in recs],
        [r.chosen for r in recs],
        [r.rejected for r in recs],
        [r.group for r in recs],
    )
    return pairs, np.array([r.row in dev_rows for r in recs], dtype=bool)


def sub(p: Pairs, idx: np.ndarray) -> Pairs:
    return Pairs(
        *([getattr(p, f)[int(i)] for i in idx] for f in ("prompt", "chosen", "rejected", "group"))
    )


def safety_pairs() -> tuple[list[str], list[str]]:
    """(chosen, rejected) from GPTFuzz ``train``: each harmful response, rejected, against a
    seeded safe response to the same question."""
    import gzip
    import random

    by_q: dict[int, tuple[list[str], list[str]]] = {}
    with gzip.open(SHARED / "gptfuzz_labeled_responses.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            if r["split"] == "train":
                by_q.setdefault(int(r["question_index"]), ([], []))[int(r["label"])].append(
                    r["response"]
                )
    rng = random.Random(SEED)
    chosen, rejected = [], []
    for q in sorted(by_q):
        safe, unsafe = by_q[q]
        for u in unsafe if safe else []:
            chosen.append(rng.choice(safe))
            rejected.append(u)
    return chosen, rejected


# --- per-text signals -----------------------------------------------------------------------


def compute_signals(p: Pairs) -> tuple[Signals, dict[str, float]]:
    from safeladder import Sample, build_verifier
    from safeladder.neural.encoder import Embedder, FeatureSpec
    from safeladder.neural.runtime import RuntimeConfig
    from safeladder.verifiers import parse_verifier_config

    secs: dict[str, float] = {}
    t0 = time.perf_counter()
    rt = RuntimeConfig(device="cpu", dtype="float32", num_threads=THREADS, cache_size=10**6)
    embedder = Embedder(runtime=rt)
    emb = {}
    for view, blocks in VIEWS.items():
        spec = FeatureSpec(blocks=blocks)  # type: ignore[arg-type]
        xc, _ = embedder.features(p.prompt, p.chosen, spec)
        xr, _ = embedder.features(p.prompt, p.rejected, spec)
        emb[view] = (xc.astype(np.float64), xr.astype(np.float64))
    prompt, _ = embedder.features(p.prompt, p.chosen, FeatureSpec(blocks=["prompt"]))
    ac, ar = safety_pairs()
    resp = FeatureSpec(blocks=VIEWS["resp"])  # type: ignore[arg-type]
    ec, _ = embedder.features([""] * len(ac), ac, resp)
    er, _ = embedder.features([""] * len(ar), ar, resp)
    extra = ExtraPairs(ac, ar, (ec.astype(np.float64), er.astype(np.float64)))
    secs["embeddings"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    cfg: Any = parse_verifier_config("safety")
    cfg = cfg.model_copy(
        update={"runtime": cfg.runtime.model_copy(update={"num_threads": THREADS})}
    )
    v = build_verifier(cfg)
    samples = [Sample(prompt=q, completion=c) for q, c in zip(p.prompt, p.chosen, strict=True)]
    samples += [Sample(prompt=q, completion=r) for q, r in zip(p.prompt, p.rejected, strict=True)]
    s = np.asarray(v.score(samples).scores, dtype=np.float64)
    v.close()
    n = len(p)
    safety = np.stack([s[:n], s[n:]], axis=1)
    secs["safety"] = time.perf_counter() - t0

    ref = build_verifier("refusal")
    r = np.asarray(
        ref.score([Sample(completion=t) for t in p.chosen + p.rejected]).scores, dtype=np.float64
    )
    refusal = np.stack([r[:n], r[n:]], axis=1)
    loglen = np.log1p(
        np.array(
            [[len(c), len(x)] for c, x in zip(p.chosen, p.rejected, strict=True)], dtype=np.float64
        )
    )
    return Signals(emb, prompt.astype(np.float64), safety, refusal, loglen, extra), secs


def shipped_value_margins(p: Pairs) -> np.ndarray:
    from safeladder import Sample, build_verifier
    from safeladder.verifiers import parse_verifier_config

    cfg: Any = parse_verifier_config("value")  # as shipped; only the thread count differs
    if hasattr(cfg, "runtime"):
        cfg = cfg.model_copy(
            update={"runtime": cfg.runtime.model_copy(update={"num_threads": THREADS})}
        )
    v = build_verifier(cfg)
    n = len(p)
    samples = [Sample(prompt=q, completion=c) for q, c in zip(p.prompt, p.chosen, strict=True)]
    samples += [Sample(prompt=q, completion=r) for q, r in zip(p.prompt, p.rejected, strict=True)]
    s = np.asarray(v.score(samples).scores, dtype=np.float64)
    v.close()
    return s[:n] - s[n:]


# --- learners: fit on train indices, return test margins -------------------------------------
# A learner is f(train_idx, test_idx, pairs, signals) -> margins of the test pairs.
Learner = Callable[[np.ndarray, np.ndarray, Pairs, Signals], np.ndarray]


def _inner_folds(p: Pairs, idx: np.ndarray) -> np.ndarray:
    from safeladder.training.baseline import grouped_folds

    return grouped_folds([p.group[int(i)] for i in idx], seed=SEED + 1, k=INNER_FOLDS)


def _bt_linear(d: np.ndarray, c: float) -> np.ndarray:
    """Weights of a no-intercept logistic BT model on differences d (each pair both ways)."""
    from sklearn.linear_model import LogisticRegression

    x = np.concatenate([d, -d])
    y = np.concatenate([np.ones(len(d)), np.zeros(len(d))])
    clf = LogisticRegression(C=c, fit_intercept=False, max_iter=2000).fit(x, y)
    return np.asarray(clf.coef_[0], dtype=np.float64)


def _pick_c(d: np.ndarray, folds: np.ndarray) -> float:
    best, best_acc = EMB_CS[0], -1.0
    for c in EMB_CS:
        m = np.zeros(len(d))
        for f in range(INNER_FOLDS):
            tr, te = folds != f, folds == f
            m[te] = d[te] @ _bt_linear(d[tr], c)
        acc = accuracy(m)
        if acc > best_acc + 1e-9:
            best, best_acc = c, acc
    return best


def emb_learner(view: str, extra: bool = False) -> Learner:
    def fit(tr: np.ndarray, te: np.ndarray, p: Pairs, s: Signals) -> np.ndarray:
        xc, xr = s.emb[view]
        d = xc - xr
        c = _pick_c(d[tr], _inner_folds(p, tr))  # C chosen on hh-rlhf pairs only
        CHOSEN_C.setdefault(f"emb/{view}" + ("+extra" if extra else ""), []).append(c)
        d_tr = d[tr]
        if extra and s.extra is not None:
            d_tr = np.concatenate([d_tr, s.extra.emb[0] - s.extra.emb[1]])
        return d[te] @ _bt_linear(d_tr, c)

    return fit


CHOSEN_C: dict[str, list[float]] = {}


def tfidf_learner(with_prompt: bool, extra: bool = False) -> Learner:
    def fit(tr: np.ndarray, te: np.ndarray, p: Pairs, s: Signals) -> np.ndarray:
        from safeladder.training.baseline import tfidf_logreg_pairwise

        def texts(idx: np.ndarray, side: str) -> list[str]:
            resp = getattr(p, side)
            # prompt + reply joined as the training runs' holdout baseline joins them
            return [(p.prompt[int(i)] if with_prompt else "") + resp[int(i)] for i in idx]

        more = s.extra if extra else None
        c, r = tfidf_logreg_pairwise(
            texts(tr, "chosen") + (more.chosen if more else []),
            texts(tr, "rejected") + (more.rejected if more else []),
            texts(te, "chosen"),
            texts(te, "rejected"),
            seed=SEED,
        )
        return c - r

    return fit


def _signal_diffs(s: Signals, which: Sequence[str]) -> np.ndarray:
    cols = {
        "safety": s.safety[:, 0] - s.safety[:, 1],
        "refusal": s.refusal[:, 0] - s.refusal[:, 1],
        "length": s.loglen[:, 0] - s.loglen[:, 1],
    }
    return np.stack([cols[w] for w in which], axis=1)


def _standardised_bt(x_tr: np.ndarray, x_te: np.ndarray, c: float) -> np.ndarray:
    scale = np.sqrt(np.mean(x_tr**2, axis=0))  # no centring: a difference's sign matters
    scale[scale == 0] = 1.0
    return (x_te / scale) @ _bt_linear(x_tr / scale, c)


def signals_learner(which: Sequence[str]) -> Learner:
    def fit(tr: np.ndarray, te: np.ndarray, p: Pairs, s: Signals) -> np.ndarray:
        x = _signal_diffs(s, which)
        return _standardised_bt(x[tr], x[te], STACK_C)

    return fit


def stack_learner(tr: np.ndarray, te: np.ndarray, p: Pairs, s: Signals) -> np.ndarray:
    tfidf = tfidf_learner(False)
    emb = emb_learner(STACK_VIEW)
    folds = _inner_folds(p, tr)
    oof = np.zeros((len(tr), 2))
    for f in range(INNER_FOLDS):
        itr, ite = tr[folds != f], tr[folds == f]
        oof[folds == f, 0] = tfidf(itr, ite, p, s)
        oof[folds == f, 1] = emb(itr, ite, p, s)
    test = np.stack([tfidf(tr, te, p, s), emb(tr, te, p, s)], axis=1)
    x = _signal_diffs(s, ("safety", "refusal", "length"))
    return _standardised_bt(np.hstack([oof, x[tr]]), np.hstack([test, x[te]]), STACK_C)


def mean_ensemble(tr: np.ndarray, te: np.ndarray, p: Pairs, s: Signals) -> np.ndarray:
    """Unweighted mean of the ENSEMBLE members' margins, each divided by the RMS of its margins
    on the training pairs (nothing else is fitted, so nothing can overfit the combination)."""
    both = np.concatenate([tr, te])
    out = np.zeros(len(te))
    for name in ENSEMBLE:
        m = MEMBERS[name](tr, both, p, s)
        out += m[len(tr) :] / max(float(np.sqrt(np.mean(m[: len(tr)] ** 2))), 1e-12)
    return out / len(ENSEMBLE)


def mlp_learner(tr: np.ndarray, te: np.ndarray, p: Pairs, s: Signals) -> np.ndarray:
    """The embedding_head_hh_pairwise recipe's torch MLP head ([completion, prompt])."""
    from safeladder.config import load_yaml
    from safeladder.training.embedding_head import EmbeddingHeadTrainConfig, _fit_pairwise
    from safeladder.training.split import grouped_split

    raw = load_yaml(MLP_RECIPE)
    cfg = EmbeddingHeadTrainConfig.model_validate(
        {k: v for k, v in raw.items() if k not in ("data", "output_dir")}
        | {"data": {"train": [{"path": str(DATA)}]}, "output_dir": "unused"}
    )
    xc_resp, xr_resp = s.emb["resp"]
    xc = np.hstack([xc_resp, s.prompt])
    xr = np.hstack([xr_resp, s.prompt])

    @dataclass
    class _G:
        row: int
        group: str

    split = grouped_split(
        [_G(int(i), p.group[int(i)]) for i in tr], cfg.data.dev_fraction, cfg.train.seed
    )
    fit_i = np.array([g.row for g in split.train])
    dev_i = np.array([g.row for g in split.dev])
    zeros = np.zeros
    layers, _ = _fit_pairwise(
        cfg,
        xc[fit_i],
        xr[fit_i],
        zeros(len(fit_i)),
        (xc[dev_i], xr[dev_i], zeros(len(dev_i))),
        False,
    )

    def score(x: np.ndarray) -> np.ndarray:
        h = x
        for j, (w, b) in enumerate(layers):
            h = h @ w + b
            if j < len(layers) - 1:
                h = np.maximum(h, 0.0)
        return h[:, 0]

    return score(xc[te]) - score(xr[te])


def learning_subset(p: Pairs, tr: np.ndarray, frac: float) -> np.ndarray:
    if frac >= 1.0:
        return tr
    groups = sorted({p.group[int(i)] for i in tr})
    rng = np.random.default_rng(SEED + 7)
    keep = set(
        np.array(groups, dtype=object)[
            rng.permutation(len(groups))[: max(2, round(frac * len(groups)))]
        ].tolist()
    )
    return np.array([i for i in tr if p.group[int(i)] in keep], dtype=np.int64)


# --- driver ---------------------------------------------------------------------------------


MEMBERS: dict[str, Learner] = {}


def run_cv(name: str, fit: Learner, p: Pairs, s: Signals, folds: np.ndarray) -> dict[str, Any]:
    t0 = time.perf_counter()
    margins = np.zeros(len(p))
    accs = []
    for f in range(FOLDS):
        tr, te = np.flatnonzero(folds != f), np.flatnonzero(folds == f)
        margins[te] = fit(tr, te, p, s)
        accs.append(accuracy(margins[te]))
    return {
        "learner": name,
        "eval": "cv",
        "fold_acc": [round(a, 4) for a in accs],
        "mean": float(np.mean(accs)),
        "sd": float(np.std(accs, ddof=1)),
        "pooled": accuracy(margins),
        "n": len(p),
        "seconds": round(time.perf_counter() - t0, 1),
        "_margins": margins,
    }


def run_dev(name: str, fit: Learner, p: Pairs, s: Signals, dev: np.ndarray) -> dict[str, Any]:
    t0 = time.perf_counter()
    m = fit(np.flatnonzero(~dev), np.flatnonzero(dev), p, s)
    return {
        "learner": name,
        "eval": "shipped_dev",
        "accuracy": accuracy(m),
        "n": int(dev.sum()),
        "train_pairs": int((~dev).sum()),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help=f"smoke run on {QUICK_PAIRS} pairs (not recorded)"
    )
    ap.add_argument("--no-shipped", action="store_true", help="skip the shipped value model")
    ap.add_argument("--no-record", action="store_true", help="print only")
    args = ap.parse_args()
    if not DATA.is_file():
        sys.exit(f"needs ../shared/data beside the checkout ({DATA} is missing)")
    t_start = time.perf_counter()
    from safeladder.training.baseline import grouped_folds

    p, dev = load_pairs(args.quick)
    folds = grouped_folds(p.group, seed=SEED, k=FOLDS)
    print(f"{len(p)} pairs, {len(set(p.group))} prompts; shipped dev split: {int(dev.sum())} pairs")
    s, secs = compute_signals(p)
    print("signals: " + ", ".join(f"{k} {v:.0f} s" for k, v in secs.items()), flush=True)

    learners: dict[str, Learner] = {
        "tfidf/prompt+resp": tfidf_learner(True),
        "tfidf/resp": tfidf_learner(False),
        "tfidf/resp+safety-pairs": tfidf_learner(False, extra=True),
        **{f"emb/{v}": emb_learner(v) for v in VIEWS},
        "emb/resp+safety-pairs": emb_learner("resp", extra=True),
        "emb-mlp/resp+prompt": mlp_learner,
        "safety": signals_learner(("safety",)),
        "refusal": signals_learner(("refusal",)),
        "length": signals_learner(("length",)),
        "signals": signals_learner(("safety", "refusal", "length")),
        "stack": stack_learner,
        "mean-ensemble": mean_ensemble,
    }
    MEMBERS.update(learners)
    records: list[dict[str, Any]] = []
    cv: dict[str, dict[str, Any]] = {}
    for name, fit in learners.items():
        rec = run_cv(name, fit, p, s, folds)
        cv[name] = rec
        print(
            f"  cv {name:22s} {rec['mean']:.3f} ± {rec['sd']:.3f}  ({rec['seconds']} s)", flush=True
        )
    devrecs: dict[str, dict[str, Any]] = {}
    if not args.no_shipped and dev.any():
        t0 = time.perf_counter()
        sub_idx = np.flatnonzero(dev)
        m = shipped_value_margins(sub(p, sub_idx))
        devrecs["value (shipped)"] = {
            "learner": "value (shipped)",
            "eval": "shipped_dev",
            "accuracy": accuracy(m),
            "n": int(dev.sum()),
            "train_pairs": int((~dev).sum()),
            "seconds": round(time.perf_counter() - t0, 1),
        }
    for name, fit in learners.items():
        devrecs[name] = run_dev(name, fit, p, s, dev)
    best = max((n for n in cv), key=lambda n: cv[n]["mean"])
    curve: dict[str, list[dict[str, Any]]] = {}
    for name in dict.fromkeys([best, "tfidf/prompt+resp", "emb/resp"]):
        pts = []
        for frac in CURVE:

            def fit_frac(
                tr: np.ndarray,
                te: np.ndarray,
                pp: Pairs,
                ss: Signals,
                _f: float = frac,
                _n: str = name,
            ) -> np.ndarray:
                return learners[_n](learning_subset(pp, tr, _f), te, pp, ss)

            rec = run_cv(name, fit_frac, p, s, folds)
            pts.append(
                {
                    "fraction": frac,
                    "train_pairs": round(len(p) * (FOLDS - 1) / FOLDS * frac),
                    "mean": rec["mean"],
                    "sd": rec["sd"],
                }
            )
        curve[name] = pts
    wall = time.perf_counter() - t_start

    print(f"\npairwise accuracy, hh-rlhf harmless ({len(p)} pairs)")
    print(f"{'learner':24s} {'CV 5-fold mean ± sd':>20s} {'pooled':>7s} {'shipped dev':>12s}")
    print(
        f"{'value (shipped)':24s} {'(trained on them)':>20s} {'':>7s} "
        f"{devrecs.get('value (shipped)', {}).get('accuracy', float('nan')):12.3f}"
    )
    for name in learners:
        r = cv[name]
        print(
            f"{name:24s} {r['mean']:13.3f} ± {r['sd']:.3f} {r['pooled']:7.3f} {devrecs[name]['accuracy']:12.3f}"
        )
    print(
        f"\nshipped dev: {int(dev.sum())} pairs (sd of an accuracy ≈ {np.sqrt(0.25 / max(1, dev.sum())):.3f}); "
        f"learners refitted on its {int((~dev).sum())} train pairs"
    )
    print(
        "emb C chosen per fold: " + ", ".join(f"{k} {sorted(set(v))}" for k, v in CHOSEN_C.items())
    )
    print("\nlearning curve (CV mean ± sd vs training pairs per fold)")
    for name, pts in curve.items():
        print(
            f"  {name:22s} "
            + "  ".join(f"{q['train_pairs']}: {q['mean']:.3f}±{q['sd']:.3f}" for q in pts)
        )
    print(f"wall time {wall:.0f} s")
    if args.quick or args.no_record:
        return
    env = bench_env.environment(("torch", "transformers", "scikit-learn", "sentence-transformers"))
    knobs = {
        "seed": SEED,
        "folds": FOLDS,
        "inner_folds": INNER_FOLDS,
        "emb_Cs": list(EMB_CS),
        "stack_C": STACK_C,
        "stack_view": STACK_VIEW,
        "shipped_dev_fraction": SHIPPED_DEV_FRACTION,
        "shipped_split_seed": SHIPPED_SPLIT_SEED,
        "curve": list(CURVE),
        "threads": THREADS,
        "data": DATA.name,
    }
    for name in learners:
        r = {k: v for k, v in cv[name].items() if not k.startswith("_")}
        r["shipped_dev"] = {k: devrecs[name][k] for k in ("accuracy", "n", "train_pairs")}
        records.append(r)
    if "value (shipped)" in devrecs:
        records.append(devrecs["value (shipped)"])
    records.append({"learner": "learning_curve", "eval": "cv", "curve": curve, "best_cv": best})
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a", encoding="utf-8") as fh:
        for rec in records:
            fh.write(
                json.dumps(
                    {"bench": "value", **rec, "knobs": knobs, "wall_s": round(wall, 1), **env}
                )
                + "\n"
            )
    print(f"appended {len(records)} lines to {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
