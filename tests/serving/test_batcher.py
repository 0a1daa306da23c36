"""DynamicBatcher: coalescing, order, limits, failure isolation, drain on close (no HTTP)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest

from safeladder.serving.batcher import DynamicBatcher, QueueFull, ShuttingDown


class Doubler:
    """score_fn: doubles each row; records call sizes; can be held at a gate or fail on a row."""

    def __init__(self, fail_on: int | None = None, gate: threading.Event | None = None):
        self.calls: list[list[int]] = []
        self.fail_on = fail_on
        self.gate = gate
        self.threads: set[str] = set()

    def __call__(self, rows: list[int]) -> list[int]:
        self.calls.append(list(rows))
        self.threads.add(threading.current_thread().name)
        if self.gate is not None:
            assert self.gate.wait(timeout=10)
        if self.fail_on is not None and self.fail_on in rows:
            raise ValueError(f"row value {self.fail_on} is bad")
        return [2 * r for r in rows]


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, timeout=20))


def test_concurrent_single_row_requests_share_calls_and_get_their_own_rows() -> None:
    fn = Doubler()

    async def main() -> list[list[int]]:
        b = DynamicBatcher(fn, max_batch_size=64, max_wait_s=0.05, max_queue=1000)
        out = await asyncio.gather(*(b.submit([i]) for i in range(40)))
        await b.close()
        return out

    out = run(main())
    assert out == [[2 * i] for i in range(40)]
    assert len(fn.calls) < 40  # coalesced
    assert sorted(r for call in fn.calls for r in call) == list(range(40))
    assert len(fn.threads) == 1 and next(iter(fn.threads)).startswith("safeladder-score")


def test_multi_row_requests_keep_order_and_are_never_split() -> None:
    fn = Doubler()
    requests: list[Sequence[int]] = [[1, 2, 3], [4], [5, 6], [7, 8, 9, 10, 11]]

    async def main() -> list[list[int]]:
        b = DynamicBatcher(fn, max_batch_size=4, max_wait_s=0.02, max_queue=100)
        out = await asyncio.gather(*(b.submit(r) for r in requests))
        await b.close()
        return out

    out = run(main())
    assert out == [[2 * x for x in r] for r in requests]
    for call in fn.calls:  # each call is a concatenation of whole requests
        assert len(call) <= 4 or call == [7, 8, 9, 10, 11]  # the oversized request runs alone
    flat = [x for call in fn.calls for x in call]
    assert sorted(flat) == list(range(1, 12))


def test_coalesce_off_scores_each_request_alone() -> None:
    fn = Doubler()

    async def main() -> None:
        b = DynamicBatcher(fn, max_batch_size=64, max_wait_s=0.01, max_queue=100, coalesce=False)
        await asyncio.gather(*(b.submit([i, i]) for i in range(5)))
        await b.close()

    run(main())
    assert sorted(map(tuple, fn.calls)) == [(i, i) for i in range(5)]


def test_full_queue_raises_and_frees_room_as_batches_run() -> None:
    gate = threading.Event()
    fn = Doubler(gate=gate)

    async def main() -> None:
        b = DynamicBatcher(fn, max_batch_size=2, max_wait_s=0.0, max_queue=3)
        first = asyncio.ensure_future(b.submit([0]))
        while b.running_rows == 0:  # the first request is running (held at the gate)
            await asyncio.sleep(0.005)
        queued = [asyncio.ensure_future(b.submit([i])) for i in (1, 2, 3)]
        await asyncio.sleep(0.01)
        assert b.queue_rows == 3
        with pytest.raises(QueueFull, match="max_queue=3"):
            await b.submit([4])
        gate.set()
        assert await first == [0]
        assert [await q for q in queued] == [[2], [4], [6]]
        assert await b.submit([4]) == [8]
        await b.close()

    run(main())


def test_a_failing_request_does_not_fail_its_batch_neighbours() -> None:
    fn = Doubler(fail_on=13)

    async def main() -> list[object]:
        b = DynamicBatcher(fn, max_batch_size=64, max_wait_s=0.05, max_queue=100)
        out = await asyncio.gather(
            b.submit([1]), b.submit([13, 2]), b.submit([3]), return_exceptions=True
        )
        await b.close()
        return out

    ok1, bad, ok3 = run(main())
    assert ok1 == [2] and ok3 == [6]
    assert isinstance(bad, ValueError) and "13" in str(bad)
    assert fn.calls[0] == [1, 13, 2, 3]  # tried together first, then each alone


def test_close_answers_everything_queued_then_refuses() -> None:
    gate = threading.Event()
    fn = Doubler(gate=gate)

    async def main() -> None:
        b = DynamicBatcher(fn, max_batch_size=2, max_wait_s=0.0, max_queue=100)
        pending = [asyncio.ensure_future(b.submit([i])) for i in range(7)]
        while b.running_rows == 0:
            await asyncio.sleep(0.005)
        closing = asyncio.ensure_future(b.close())
        await asyncio.sleep(0.01)
        with pytest.raises(ShuttingDown):
            await b.submit([99])
        gate.set()
        await closing
        assert [p.result() for p in pending] == [[2 * i] for i in range(7)]
        assert b.queue_rows == 0

    run(main())


def test_a_request_cancelled_while_queued_leaves_the_queue() -> None:
    gate = threading.Event()
    fn = Doubler(gate=gate)

    async def main() -> None:
        b = DynamicBatcher(fn, max_batch_size=1, max_wait_s=0.0, max_queue=10)
        first = asyncio.ensure_future(b.submit([0]))
        while b.running_rows == 0:
            await asyncio.sleep(0.005)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(b.submit([1, 2]), timeout=0.02)
        assert b.queue_rows == 0
        gate.set()
        assert await first == [0]
        await b.close()

    run(main())
    assert [1, 2] not in fn.calls  # the timed-out request was never scored


def test_empty_request_needs_no_call() -> None:
    fn = Doubler()

    async def main() -> list[int]:
        b = DynamicBatcher(fn, max_batch_size=4, max_wait_s=0.0, max_queue=4)
        out = await b.submit([])
        await b.close()
        return out

    assert run(main()) == [] and fn.calls == []


def test_a_full_batch_runs_at_once_without_waiting_out_max_wait() -> None:
    # While a batch fills, the loop is woken only when it is full: it must still run at once.
    fn = Doubler()

    async def main() -> tuple[list[list[int]], float]:
        b = DynamicBatcher(fn, max_batch_size=4, max_wait_s=30.0, max_queue=100)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        out = await asyncio.gather(*(b.submit([i]) for i in range(4)))
        took = loop.time() - t0
        await b.close()
        return out, took

    out, took = run(main())
    assert out == [[0], [2], [4], [6]]
    assert fn.calls == [[0, 1, 2, 3]]
    assert took < 5.0  # nowhere near max_wait_s


def test_a_batch_that_does_not_fill_runs_at_its_deadline_with_every_arrival() -> None:
    fn = Doubler()

    async def main() -> list[list[int]]:
        b = DynamicBatcher(fn, max_batch_size=64, max_wait_s=0.2, max_queue=100)
        first = asyncio.ensure_future(b.submit([1]))
        await asyncio.sleep(0.05)  # arrives while the first waits for the batch to fill
        second = asyncio.ensure_future(b.submit([2]))
        out = [await first, await second]
        await b.close()
        return out

    assert run(main()) == [[2], [4]]
    assert fn.calls == [[1, 2]]  # one call, at the first request's deadline


def test_enqueue_gives_the_future_and_cancelling_it_drops_the_rows_with_its_reason() -> None:
    gate = threading.Event()
    fn = Doubler(gate=gate)
    dropped: list[tuple[int, str]] = []

    async def main() -> None:
        b = DynamicBatcher(
            fn,
            max_batch_size=1,
            max_wait_s=0.0,
            max_queue=10,
            on_drop=lambda rows, why: dropped.append((rows, why)),
        )
        first = b.enqueue([0])
        while b.running_rows == 0:
            await asyncio.sleep(0.005)
        queued = b.enqueue([1, 2])
        assert b.queue_rows == 2
        queued.cancel("timeout")
        await asyncio.sleep(0)  # done callbacks run on the next loop turn
        assert b.queue_rows == 0
        gate.set()
        assert await first == [0]
        assert await b.enqueue([]) == []
        await b.close()
        with pytest.raises(ShuttingDown):
            b.enqueue([3])

    run(main())
    assert dropped == [(2, "timeout")]
    assert fn.calls == [[0]]


def test_the_next_batch_starts_when_a_call_returns_even_while_the_event_loop_is_busy() -> None:
    # The scoring thread takes its next batch itself: a GPU model is not left idle until a
    # busy event loop gets round to noticing that the previous call ended.
    gate = threading.Event()
    fn = Doubler(gate=gate)

    async def main() -> None:
        b = DynamicBatcher(fn, max_batch_size=1, max_wait_s=0.0, max_queue=10)
        first, second = b.enqueue([1]), b.enqueue([2])
        while b.running_rows == 0:
            await asyncio.sleep(0.005)
        gate.set()
        deadline = time.monotonic() + 5
        while len(fn.calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.005)  # blocks the event loop: only the scoring thread can move on
        assert fn.calls == [[1], [2]]
        assert await first == [2] and await second == [4]
        await b.close()

    run(main())


def test_many_requests_with_cancellations_leave_nothing_behind() -> None:
    # Seeded stress: requests of 1-3 rows arriving while batches run, a third of them given up
    # (timeout) at random moments. Every kept request gets exactly its rows back, every given
    # up one is either scored or dropped (never both), and the queue ends empty.
    import random

    rng = random.Random(0)
    scored: list[int] = []
    dropped: list[int] = []

    def score(rows: list[int]) -> list[int]:
        scored.extend(rows)
        time.sleep(0.002)
        return [2 * r for r in rows]

    async def main() -> None:
        b = DynamicBatcher(
            score,
            max_batch_size=8,
            max_wait_s=0.003,
            max_queue=10_000,
            on_drop=lambda rows, _why: dropped.append(rows),
        )
        kept: list[tuple[list[int], asyncio.Future[list[int]]]] = []
        given_up = []
        next_row = 0
        for _ in range(300):
            rows = list(range(next_row, next_row + rng.randint(1, 3)))
            next_row += len(rows)
            future = b.enqueue(rows)
            if rng.random() < 1 / 3:
                asyncio.get_running_loop().call_later(rng.random() * 0.01, future.cancel, "timeout")
                given_up.append((rows, future))
            else:
                kept.append((rows, future))
            if rng.random() < 0.3:
                await asyncio.sleep(rng.random() * 0.002)
        for rows, future in kept:
            assert await future == [2 * r for r in rows]
        await asyncio.sleep(0.05)
        await b.close()
        assert b.queue_rows == 0 and b.queue_requests == 0 and b.running_rows == 0
        for rows, future in given_up:
            if future.cancelled():
                continue
            assert future.result() == [2 * r for r in rows]  # cancelled too late: scored
        seen = set(scored)
        assert sum(dropped) == sum(1 for rows, _ in given_up for x in rows if x not in seen)

    run(main())
    assert len(scored) == len(set(scored))  # no row scored twice
