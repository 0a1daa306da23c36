"""The batching engine: micro-batch plans, padding, dedup, cache, OOM halving, replicas."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from safeladder.neural.batching import (
    cache_info,
    clear_caches,
    last_token_index,
    pad_right,
    plan_microbatches,
    run_batched,
)
from safeladder.neural.runtime import LoadedModel, RuntimeConfig

torch.set_num_threads(1)


# --- plan_microbatches ---------------------------------------------------------------------


def test_plan_hand_example() -> None:
    # Sorted longest first: 100 | 7, 6 (2 x 7 = 14 <= 20; adding 5 would make 3 x 7 = 21) | 5.
    assert plan_microbatches([5, 100, 7, 6], max_tokens=20, max_batch=8) == [[1], [2, 3], [0]]


def test_plan_max_batch_caps_rows() -> None:
    assert plan_microbatches([1] * 5, max_tokens=1000, max_batch=2) == [[0, 1], [2, 3], [4]]


def test_plan_empty() -> None:
    assert plan_microbatches([], max_tokens=10, max_batch=2) == []


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 300), max_size=60),
    max_tokens=st.integers(1, 1000),
    max_batch=st.integers(1, 16),
)
def test_plan_properties(lengths: list[int], max_tokens: int, max_batch: int) -> None:
    plan = plan_microbatches(lengths, max_tokens, max_batch)
    flat = [i for b in plan for i in b]
    assert sorted(flat) == list(range(len(lengths)))  # every row exactly once
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)  # longest first
    for b in plan:
        assert 1 <= len(b) <= max_batch
        padded = len(b) * max(lengths[i] for i in b)
        assert padded <= max_tokens or len(b) == 1  # only a lone over-long row may exceed


# --- padding -------------------------------------------------------------------------------


def test_pad_right_and_last_token_index() -> None:
    ids, mask = pad_right([[5, 6, 7], [8], [9, 10]], pad_id=0)
    assert ids.dtype == torch.long and mask.dtype == torch.long
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0], [9, 10, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0], [1, 1, 0]]
    assert last_token_index(mask).tolist() == [2, 0, 1]


# --- run_batched with a fake model -----------------------------------------------------------


def fake_loaded(n_replicas: int = 1) -> LoadedModel:
    return LoadedModel(
        path="/fake",
        kind="sequence_classification",
        replicas=[f"replica{i}" for i in range(n_replicas)],
        devices=["cpu"] * n_replicas,
        tokenizer=None,
        config=None,
        fingerprint="fake",
        dtype=torch.float32,
        pad_id=0,
        runtime=RuntimeConfig(device="cpu"),
    )


class Recorder:
    """A forward that returns [sum(ids), len(ids)] per row and records each call."""

    def __init__(self, oom_above: int | None = None, sleep: float = 0.0):
        self.calls: list[tuple[str, int]] = []
        self.oom_above = oom_above
        self.sleep = sleep
        self.inference_mode: list[bool] = []
        self.lock = threading.Lock()

    def __call__(self, batch: list[list[int]], model: str, device: torch.device) -> np.ndarray:
        with self.lock:
            self.inference_mode.append(torch.is_inference_mode_enabled())
        if self.oom_above is not None and len(batch) > self.oom_above:
            raise torch.cuda.OutOfMemoryError("fake OOM")
        if self.sleep:
            time.sleep(self.sleep)
        with self.lock:
            self.calls.append((model, len(batch)))
        return np.array([[sum(r), len(r)] for r in batch], dtype=np.float32)

    @property
    def rows(self) -> int:
        return sum(n for _, n in self.calls)


def expected(ids: list[list[int]]) -> np.ndarray:
    return np.array([[sum(r), len(r)] for r in ids], dtype=np.float32)


IDS = [[1] * 3, [2] * 40, [3, 4], [5] * 17, [6] * 9, [7] * 40, [8]]


def test_original_order_restored_across_microbatches() -> None:
    fwd = Recorder()
    rt = RuntimeConfig(device="cpu", max_tokens_per_batch=50, max_batch_size=3)
    st_: dict[str, int] = {}
    out = run_batched(IDS, fwd, fake_loaded(), rt, stats=st_)
    assert out.dtype == np.float32 and out.shape == (len(IDS), 2)
    np.testing.assert_array_equal(out, expected(IDS))
    assert len(fwd.calls) == st_["microbatches"] > 1
    assert all(fwd.inference_mode)


def test_duplicates_are_forwarded_once() -> None:
    ids = [[1, 2], [3], [1, 2], [1, 2], [3], [4, 5, 6]]
    fwd = Recorder()
    st_: dict[str, int] = {}
    out = run_batched(ids, fwd, fake_loaded(), RuntimeConfig(device="cpu"), stats=st_)
    np.testing.assert_array_equal(out, expected(ids))
    assert fwd.rows == 3 and st_["unique"] == 3


def test_lru_cache_hits_across_calls() -> None:
    clear_caches()
    rt = RuntimeConfig(device="cpu", cache_size=4)
    fwd = Recorder()
    run_batched([[1], [2], [3]], fwd, fake_loaded(), rt, cache_key="k1")
    assert fwd.rows == 3
    out = run_batched([[3], [2], [9]], fwd, fake_loaded(), rt, cache_key="k1")
    np.testing.assert_array_equal(out, expected([[3], [2], [9]]))
    assert fwd.rows == 4  # only [9] was new
    assert cache_info("k1")["hits"] == 2
    # another fingerprint never sees k1's entries
    run_batched([[3]], fwd, fake_loaded(), rt, cache_key="k2")
    assert fwd.rows == 5


def test_lru_cache_evicts_least_recent() -> None:
    clear_caches()
    rt = RuntimeConfig(device="cpu", cache_size=2)
    fwd = Recorder()
    for row in ([1], [2], [1], [3]):  # [2] is the least recently used when [3] arrives
        run_batched([row], fwd, fake_loaded(), rt, cache_key="ev")
    assert fwd.rows == 3
    run_batched([[1]], fwd, fake_loaded(), rt, cache_key="ev")
    assert fwd.rows == 3
    run_batched([[2]], fwd, fake_loaded(), rt, cache_key="ev")
    assert fwd.rows == 4


def test_cache_off_by_default() -> None:
    clear_caches()
    fwd = Recorder()
    for _ in range(2):
        run_batched([[1]], fwd, fake_loaded(), RuntimeConfig(device="cpu"), cache_key="off")
    assert fwd.rows == 2


def test_oom_halves_the_microbatch() -> None:
    fwd = Recorder(oom_above=2)
    # padding cap off: the rows differ in length on purpose, so all 8 form one micro-batch
    rt = RuntimeConfig(
        device="cpu", max_tokens_per_batch=10_000, max_batch_size=8, cpu_max_padding=0.99
    )
    ids = [[i] * (i + 1) for i in range(8)]
    st_: dict[str, int] = {}
    out = run_batched(ids, fwd, fake_loaded(), rt, stats=st_)
    np.testing.assert_array_equal(out, expected(ids))
    assert max(n for _, n in fwd.calls) <= 2 and fwd.rows == 8
    assert st_["oom_splits"] == 3  # 8 -> 4 + 4 -> (2 + 2) + (2 + 2)


def test_oom_on_a_single_row_is_raised() -> None:
    fwd = Recorder(oom_above=0)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        run_batched([[1], [2]], fwd, fake_loaded(), RuntimeConfig(device="cpu"))


def test_other_errors_are_not_retried() -> None:
    calls = []

    def bad(batch, model, device):  # type: ignore[no-untyped-def]
        calls.append(len(batch))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run_batched([[1], [2]], bad, fake_loaded(), RuntimeConfig(device="cpu"))
    assert calls == [2]


def test_two_replicas_share_the_work_and_agree() -> None:
    ids = [[i % 7] * (1 + i % 13) for i in range(40)]
    rt = RuntimeConfig(device=["cpu", "cpu"], max_tokens_per_batch=30, max_batch_size=4)
    fwd = Recorder(sleep=0.01)
    out = run_batched(ids, fwd, fake_loaded(2), rt)
    np.testing.assert_array_equal(out, expected(ids))
    assert {m for m, _ in fwd.calls} == {"replica0", "replica1"}
    assert all(fwd.inference_mode)  # entered in each worker thread


def test_replica_errors_propagate() -> None:
    fwd = Recorder(oom_above=0)
    rt = RuntimeConfig(device=["cpu", "cpu"], max_batch_size=1)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        run_batched([[1], [2], [3]], fwd, fake_loaded(2), rt)


def test_empty_input_and_empty_rows() -> None:
    fwd = Recorder()
    out = run_batched([], fwd, fake_loaded(), RuntimeConfig(device="cpu"), out_dim=2)
    assert out.shape == (0, 2) and out.dtype == np.float32 and not fwd.calls
    with pytest.raises(ValueError, match="row 1 has no tokens"):
        run_batched([[1], []], fwd, fake_loaded(), RuntimeConfig(device="cpu"))


def test_wrong_forward_shape_is_an_error() -> None:
    def short(batch, model, device):  # type: ignore[no-untyped-def]
        return np.zeros((len(batch) - 1, 1), dtype=np.float32)

    with pytest.raises(ValueError, match="expected"):
        run_batched([[1], [2]], short, fake_loaded(), RuntimeConfig(device="cpu"))


def test_cpu_padding_cap_never_pads_more_than_allowed() -> None:
    # Hand check: lengths 100, 96, 60, 58, 57 with a 5 % cap → [100, 96] (4/200 = 2 %),
    # 60 would make 100·3 − 256 = 44 of 300 padded → new batch [60, 58, 57] (5/180 = 2.8 %).
    assert plan_microbatches(
        [60, 100, 57, 96, 58], max_tokens=10_000, max_batch=8, max_padding=0.05
    ) == [
        [1, 3],
        [0, 4, 2],
    ]
    rng = np.random.default_rng(0)
    lengths = [int(x) for x in rng.integers(1, 500, size=200)]
    for mb in plan_microbatches(lengths, max_tokens=4096, max_batch=64, max_padding=0.05):
        width = max(lengths[i] for i in mb)
        assert width * len(mb) - sum(lengths[i] for i in mb) <= 0.05 * width * len(mb)
    assert RuntimeConfig(device="cpu").padding_cap(["cpu"]) == 0.05
