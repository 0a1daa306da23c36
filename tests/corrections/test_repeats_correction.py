"""``repeats_correction`` on hand-made rows: follows the correction → near 1, repeats the
mistake → near 0, nothing near → abstain; the score is the documented formula of its details."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from safeladder.errors import ConfigError
from safeladder.verifiers import build_verifier
from safeladder.verifiers.base import Verifier
from tests.corrections.fakes import ROWS, minilm_store

MUL = ROWS[0]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return minilm_store(tmp_path_factory.mktemp("rc") / "store.db")


@pytest.fixture(scope="module")
def verifier(store: Path) -> Iterator[Verifier]:
    v = build_verifier({"type": "repeats_correction", "store": str(store), "top_k": 1})
    yield v
    v.close()


def _formula(detail: dict[str, Any], temperature: float = 0.05) -> float:
    """The module docstring's score, recomputed from the reported similarities."""
    used = detail["corrections"]
    w = [u["prompt_similarity"] for u in used]
    s = [1 / (1 + math.exp(-(u["sim_corrected"] - u["sim_wrong"]) / temperature)) for u in used]
    return sum(a * b for a, b in zip(w, s, strict=True)) / sum(w)


def test_repeating_the_wrong_step_scores_low_following_the_fix_high(verifier: Verifier) -> None:
    similar = "Q: Ann has 6 bags with 9 cards in each bag. How many cards does Ann have?"
    rows = [
        {
            "prompt": similar,
            "completion": "Ann has 6 and 9, so I add them: 6 + 9 = 15. The answer is 15.",
        },
        {
            "prompt": similar,
            "completion": "Each of the 6 bags holds 9 cards, so multiply: 6 * 9 = 54. The answer is 54.",
        },
        {"prompt": MUL["prompt"], "completion": MUL["wrong"]},
        {"prompt": MUL["prompt"], "completion": MUL["corrected"]},
    ]
    sb = verifier.score(rows)
    assert list(sb.status) == ["ok"] * 4
    assert sb.scores[0] < 0.2 < 0.8 < sb.scores[1]
    assert sb.scores[2] < 0.05 and sb.scores[3] > 0.95
    for i in range(4):
        (used,) = sb.details[i]["corrections"]
        assert used["id"] == "mul-by-adding" and used["prompt_similarity"] >= 0.6
        assert sb.scores[i] == pytest.approx(_formula(sb.details[i]), abs=1e-5)
    # verbatim texts: cosine 1 with the stored text they copy
    assert sb.details[2]["corrections"][0]["sim_wrong"] == pytest.approx(1.0, abs=1e-5)
    assert sb.details[3]["corrections"][0]["sim_corrected"] == pytest.approx(1.0, abs=1e-5)


def test_abstains_when_no_stored_correction_is_near(verifier: Verifier) -> None:
    sb = verifier.score(
        [
            {"prompt": "Write a haiku about autumn leaves.", "completion": "Red leaves fall."},
            {"prompt": MUL["prompt"], "completion": "   "},
        ]
    )
    assert np.isnan(sb.scores).all()
    assert list(sb.status) == ["abstain", "abstain"]
    assert "no stored correction within prompt similarity 0.6 (nearest: " in sb.details[0]["reason"]
    assert sb.details[1]["reason"] == "empty completion"


def test_weights_several_corrections_by_prompt_similarity(store: Path) -> None:
    v = build_verifier(
        {
            "type": "repeats_correction",
            "store": str(store),
            "top_k": 3,
            "min_prompt_similarity": -1.0,
        }
    )
    try:
        sb = v.score([{"prompt": MUL["prompt"], "completion": MUL["corrected"]}])
    finally:
        v.close()
    used = sb.details[0]["corrections"]
    assert used[0]["id"] == "mul-by-adding" and len(used) == 3
    assert sb.scores[0] == pytest.approx(_formula(sb.details[0]), abs=1e-5)


def test_a_missing_store_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nowhere\.db.*does not exist"):
        build_verifier({"type": "repeats_correction", "store": str(tmp_path / "nowhere.db")})
    assert not (tmp_path / "nowhere.db").exists()
