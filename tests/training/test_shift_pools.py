"""``scripts/write_shift_pools.py``: the union recipe's JailbreakBench and ToxiGen rows hold no
behaviour or sentence of a matrix test column, and no PAIR row, so every column stays a fair
test of a model trained on them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from safeladder.training.config import load_train_config
from safeladder.training.shift_sets import load_shift_sets, normalize
from tests.helpers import REPO, SHARED_DATA


def test_pools_hold_no_test_row_and_feed_the_union_recipe(tmp_path: Path) -> None:
    out = tmp_path / "pools"
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "write_shift_pools.py"), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    jbb = [json.loads(x) for x in (out / "jbb_pool.jsonl").read_text("utf-8").splitlines()]
    tox = [json.loads(x) for x in (out / "toxigen_pool.jsonl").read_text("utf-8").splitlines()]
    sets = load_shift_sets(SHARED_DATA)
    test_goals = {r.group for c, rows in sets.tests.items() if c.startswith("jbb-") for r in rows}
    test_sentences = {normalize(r.response) for r in sets.tests["toxigen"]}
    assert jbb and tox
    assert {r["attack"] for r in jbb} == {"GCG", "JBC", "RS", "DSN"}  # PAIR kept out
    assert not {r["goal"] for r in jbb} & test_goals
    assert not {normalize(r["response"]) for r in tox} & test_sentences
    assert {r["label"] for r in jbb} == {r["label"] for r in tox} == {0, 1}
    # the recipe reads exactly these files (relative to configs/train/)
    cfg = load_train_config(REPO / "configs" / "train" / "safety.yaml")
    names = {Path(str(s.path)).name for s in cfg.data.train}
    assert {"jbb_pool.jsonl", "toxigen_pool.jsonl"} <= names
    assert not any("jailbreakbench" in n or "toxigen_demo" in n for n in names)


def test_a_model_trained_on_the_pools_marks_their_columns_as_source() -> None:
    """``safeladder eval --metrics matrix`` must not call the JBB and ToxiGen columns unseen
    for a model that trained on the pools (other rows of those files)."""
    from safeladder.training.shift_sets import POOL_FILES, SPECS, training_overlap

    sources = [{"path": f"/x/out/union_data/{name}"} for name in POOL_FILES.values()]
    marks = {c: training_overlap(spec, sources) for c, spec in SPECS.items()}
    assert {c for c, m in marks.items() if m == "source"} == {
        *(c for c in SPECS if c.startswith("jbb-")),
        "toxigen",
    }
    assert marks["gptfuzz"] is None and marks["advbench"] is None
