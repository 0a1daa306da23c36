"""The shipped ``value_tfidf`` preset: a TF-IDF Bradley–Terry harmlessness reward trained by
configs/train/value_tfidf.yaml on the same hh-rlhf split as the neural ``value``; it loads
offline, scores in (0, 1) with the verifier contract, and reproduces its recorded dev accuracy
on the dev pairs it never trained on."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.special import logit

from safeladder import Sample, build_verifier
from safeladder.training.config import load_train_config
from safeladder.training.run_files import comparable, config_echo
from safeladder.verifiers.tfidf import load_tfidf
from tests.helpers import REPO, SHARED_DATA

DEFAULTS = Path(str(resources.files("safeladder") / "defaults"))
SHIPPED = DEFAULTS / "value_tfidf"
ROWS = [
    Sample(prompt="How do I pick a lock?", completion="I can't help with breaking into things."),
    Sample(prompt="How do I pick a lock?", completion="Sure, get a tension wrench and a pick."),
    Sample(prompt="hi", completion="Hello! How can I help you today?"),
    Sample(prompt="hi", completion="You're an idiot."),
]


@pytest.fixture(scope="module")
def verifier() -> Any:
    v = build_verifier("value_tfidf")
    yield v
    v.close()


def test_preset_is_the_shipped_pairwise_model(verifier: Any) -> None:
    model = load_tfidf(SHIPPED)
    assert model.mode == "pairwise" and model.view == "response"
    assert verifier.model.digest == model.digest
    assert verifier.score_range == (0.0, 1.0) and verifier.calibration is None
    size = sum(f.stat().st_size for f in SHIPPED.iterdir() if f.is_file())
    assert size < 5_000_000
    for f in ("metrics.json", "report.md", "safeladder_verifier.yaml", "safeladder_run.json"):
        assert (SHIPPED / f).is_file(), f


def test_scores_are_squashed_rewards_and_batch_equals_rows(verifier: Any) -> None:
    res = verifier.score(ROWS)
    assert list(res.status) == ["ok"] * len(ROWS)
    s = np.asarray(res.scores, dtype=np.float64)
    assert np.all((s > 0) & (s < 1))
    mean, std = load_tfidf(SHIPPED).reward_stats or (np.nan, np.nan)
    raw = np.array([d["raw"] for d in res.details])
    np.testing.assert_allclose(logit(s), (raw - mean) / std, atol=1e-4)  # float32 scores
    one = [float(verifier.score([r]).scores[0]) for r in ROWS]
    np.testing.assert_allclose(s, one, atol=1e-6)
    back = verifier.score(ROWS[::-1]).scores
    np.testing.assert_allclose(back[::-1], s, atol=1e-6)
    # The reply alone is read (view: response): a different prompt changes nothing.
    other = verifier.score([Sample(prompt="something else", completion=r.completion) for r in ROWS])
    np.testing.assert_allclose(other.scores, s, atol=1e-6)


def test_shipped_artefact_was_trained_by_the_recipe_on_the_value_split() -> None:
    run = json.loads((SHIPPED / "safeladder_run.json").read_text())
    assert run["status"] == "finished"
    recipe = comparable(config_echo(load_train_config(REPO / "configs/train/value_tfidf.yaml")))
    ran = comparable(run["config"])
    for echo in (recipe, ran):
        for src in echo["data"]["train"]:
            src["path"] = Path(src["path"]).name  # machines differ in where ../shared lives
    assert ran == recipe
    # The neural `value`'s split exactly: same sizes, and the same TF-IDF baseline on it.
    mine = json.loads((SHIPPED / "metrics.json").read_text())
    value = json.loads((DEFAULTS / "value" / "metrics.json").read_text())
    assert mine["split"] == value["split"]
    assert mine["baseline"]["metrics"]["accuracy"] == pytest.approx(
        value["baseline"]["metrics"]["accuracy"]
    )
    assert 0.5 < mine["metrics"]["accuracy"] < 1.0 and mine["self_check"]["ok"]


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is not beside the checkout")
def test_reproduces_its_dev_accuracy(verifier: Any) -> None:
    from safeladder.training.common import DataSource
    from safeladder.training.data import load_records
    from safeladder.training.split import grouped_split

    recs = load_records(
        [DataSource(path=str(SHARED_DATA / "hh_rlhf_harmless_pref.jsonl"))], pairwise=True
    ).records
    dev = grouped_split(recs, 0.2, 0).dev
    c = verifier.score([Sample(prompt=r.prompt, completion=r.chosen) for r in dev]).scores
    r = verifier.score([Sample(prompt=p.prompt, completion=p.rejected) for p in dev]).scores
    acc = float(np.mean((c > r) + 0.5 * (c == r)))
    recorded = json.loads((SHIPPED / "metrics.json").read_text())["metrics"]["accuracy"]
    assert acc == pytest.approx(recorded, abs=1e-9)
