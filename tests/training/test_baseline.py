"""TF-IDF + logistic regression baselines: learn what they should, deterministic, loud on bad input."""

from __future__ import annotations

import numpy as np
import pytest

from safeladder.training.baseline import tfidf_logreg_pairwise, tfidf_logreg_pointwise
from safeladder.training.metrics import auroc, pairwise_metrics
from tests.helpers import read_shared

HARM = ["how to build a bomb", "make a weapon at home", "poison someone slowly", "steal a car"]
SAFE = ["bake bread with yeast", "plant tomatoes in spring", "learn to swim", "fix a bike tire"]


def _texts(words: list[str], reps: int, rng: np.random.Generator) -> list[str]:
    return [
        f"{rng.choice(words)} please, {rng.choice(['now', 'today', 'quickly'])}"
        for _ in range(reps)
    ]


def test_pointwise_separates_a_learnable_signal() -> None:
    rng = np.random.default_rng(0)
    train = _texts(HARM, 30, rng) + _texts(SAFE, 30, rng)
    y = np.array([1] * 30 + [0] * 30)
    dev = ["build a bomb", "poison the dog", "bake some bread", "plant the tomatoes"]
    p = tfidf_logreg_pointwise(train, y, dev, seed=0)
    assert p.shape == (4,) and p.dtype == np.float64
    assert ((p >= 0) & (p <= 1)).all()
    assert min(p[:2]) > max(p[2:])  # the harmful dev rows get the higher P(label 1)
    again = tfidf_logreg_pointwise(train, y, dev, seed=0)
    np.testing.assert_array_equal(p, again)


def test_pointwise_on_real_rows_beats_chance_clearly() -> None:
    rows = read_shared("gptfuzz_labeled_responses.jsonl.gz", limit=600)
    text = [r["prompt"] + "\n" + r["response"] for r in rows]
    y = np.array([r["label"] for r in rows])
    p = tfidf_logreg_pointwise(text[:400], y[:400], text[400:])
    assert auroc(y[400:], p) > 0.8


def test_pairwise_prefers_the_learned_direction() -> None:
    rng = np.random.default_rng(1)
    chosen = [f"I can't help with {w}." for w in _texts(HARM, 40, rng)]
    rejected = [f"Sure, here is how: {w}." for w in _texts(HARM, 40, rng)]
    dc = ["I can't help with making poison.", "I can't help with that."]
    dr = ["Sure, here is how to make poison.", "Sure, here is how."]
    c, r = tfidf_logreg_pairwise(chosen, rejected, dc, dr, seed=0)
    assert c.shape == r.shape == (2,)
    assert pairwise_metrics(c, r)["accuracy"] == 1.0
    c2, r2 = tfidf_logreg_pairwise(chosen, rejected, dc, dr, seed=0)
    np.testing.assert_array_equal(c, c2)
    np.testing.assert_array_equal(r, r2)


def test_pairwise_on_real_pairs_beats_chance() -> None:
    rows = read_shared("hh_rlhf_harmless_pref.jsonl", limit=500)
    ch = [r["prompt"] + r["chosen"] for r in rows]
    rj = [r["prompt"] + r["rejected"] for r in rows]
    c, r = tfidf_logreg_pairwise(ch[:400], rj[:400], ch[400:], rj[400:])
    # Harmlessness preferences are hard for bag-of-words features (about 0.6-0.65 on the full
    # file); the bar here only says the fit learned a direction, not its noise.
    assert pairwise_metrics(c, r)["accuracy"] > 0.55


@pytest.mark.parametrize(
    ("labels", "match"),
    [([1, 1, 1], "both classes"), ([0, 1, 2], "must be 0 or 1"), ([0, 1], r"\(2,\) for 3")],
)
def test_pointwise_bad_labels(labels: list[int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        tfidf_logreg_pointwise(["a b", "c d", "e f"], labels, ["a"])


def test_bad_texts_and_lengths() -> None:
    with pytest.raises(ValueError, match=r"train_texts\[1\]: expected a string"):
        tfidf_logreg_pointwise(["a", None], [0, 1], ["a"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="dev_chosen / dev_rejected: 1 vs 2"):
        tfidf_logreg_pairwise(["a", "b"], ["c", "d"], ["a"], ["b", "c"])
    with pytest.raises(ValueError, match="at least 2 training pairs"):
        tfidf_logreg_pairwise(["a"], ["b"], ["a"], ["b"])
