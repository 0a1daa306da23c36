"""``benchmarks/bench_value_neural.py``: one fold of the fine-tuned `value` recipe (about 20 s).

What the figures rest on: the recipe trains on the training pairs only (no dev split, so no
checkpoint is picked on the test fold), the test and training margins come back with one
entry per pair, and a finished fold is read back from its cache without training again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data" / "hh_rlhf_harmless_pref.jsonl"


@pytest.mark.slow
@pytest.mark.skipif(not DATA.is_file(), reason="needs ../shared/data beside the checkout")
def test_one_fold_trains_without_a_dev_split_and_is_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import bench_value_neural as bench
    from bench_value import load_pairs

    import safeladder.training.pairwise as pairwise

    monkeypatch.setattr(bench, "CACHE", tmp_path)
    p, _ = load_pairs(quick=True)
    tr, te = np.arange(0, 24), np.arange(24, 30)
    seen: list[Any] = []
    real_train = pairwise.train

    def spy(cfg: Any, data: Any, out: Path, *, progress: bool = True) -> Any:
        seen.append(data)
        return real_train(cfg, data, out, progress=progress)

    monkeypatch.setattr(pairwise, "train", spy)
    test, train_m, seconds = bench.train_fold(p, tr, te, "reply", "t-fold0")

    (data,) = seen
    assert data.dev == []
    assert [r.row for r in data.train] == tr.tolist()
    assert {r.prompt for r in data.train} == {""}  # the reply view never reads the dialogue
    assert test.shape == (6,) and train_m.shape == (24,) and seconds > 0
    assert np.isfinite(test).all() and np.isfinite(train_m).all()
    assert (tmp_path / "t-fold0.npz").is_file()

    def no_training(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a cached fold was trained again")

    monkeypatch.setattr(pairwise, "train", no_training)
    again = bench.train_fold(p, tr, te, "reply", "t-fold0")
    np.testing.assert_array_equal(again[0], test)
    np.testing.assert_array_equal(again[1], train_m)
