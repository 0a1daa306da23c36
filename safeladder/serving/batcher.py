"""Cross-request dynamic batching: coalesce queued requests into one scoring call.

OpenRLHF's client posts one sample per request (``openrlhf/utils/agent.py``,
``SingleTurnAgentExecutor.execute`` → ``_fetch_rewards_via_http([query], [prompt], [label])``),
while GPU verifiers want batches. ``DynamicBatcher.submit(rows)`` (or ``enqueue``) queues a request; one
scoring thread takes queued requests in arrival order, up to ``max_batch_size`` rows, waiting
at most ``max_wait_s`` after the oldest one arrived for the batch to fill, and runs
``score_fn`` on the concatenated rows (so the event loop keeps accepting requests, and the
scoring function is never called from two threads at once). Each request's future gets its
own slice of the results back, in order.

The scoring thread takes its next batch itself, the moment the previous call returns: a
GPU-bound model is never left idle waiting for a busy event loop to notice the call ended,
and requests that arrived during the call (their ``max_wait_s`` already spent) go next. The
loop's part per request is a lock and a future; per batch, one ``call_soon_threadsafe``
resolves every future of the batch.

Rules:
- a request is never split across calls (so a reward that normalizes within a batch sees a
  request's rows together); a request larger than ``max_batch_size`` runs alone;
- with ``coalesce=False`` every request is its own call (rewards whose rows depend on each
  other: batch / group z-score, rank);
- if a coalesced call raises, each request in it is re-scored alone, so one bad row fails only
  its own request, and error row numbers are relative to that request;
- the queue is bounded in rows: ``submit`` raises ``QueueFull`` rather than queueing past
  ``max_queue`` (the server answers 503 with Retry-After);
- a request whose wait is cancelled while it is still queued (its client timed out or
  disconnected) leaves the queue at once and never reaches ``score_fn``; ``on_drop(rows,
  reason)`` is told, with the cancel message as the reason (``"timeout"``, ``"disconnect"``;
  ``"cancelled"`` when none was given);
- ``batch_age_s`` says how long the running call has run, so a health check can report a
  scorer stuck on one batch;
- ``close()`` stops new submissions (``ShuttingDown``) and scores everything already queued
  before returning (graceful shutdown).

Example::

    batcher = DynamicBatcher(lambda rows: [len(r) for r in rows], max_batch_size=64,
                             max_wait_s=0.005, max_queue=4096)
    scores = await batcher.submit(["a", "bc"])   # -> [1, 2]
    await batcher.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

logger = logging.getLogger(__name__)


class QueueFull(Exception):
    """The queue holds ``max_queue`` rows already; try again later."""


class ShuttingDown(Exception):
    """The batcher is closing and takes no new requests."""


@dataclass(eq=False)
class _Pending(Generic[T, R]):
    rows: Sequence[T]
    future: asyncio.Future[list[R]]
    enqueued: float  # time.monotonic()
    taken: bool = False
    dropped: bool = False


#: What the scoring thread hands back per request: its results, or the exception to raise.
_Outcome = tuple[_Pending[Any, Any], "list[Any] | BaseException"]


class DynamicBatcher(Generic[T, R]):
    """Queue requests, run ``score_fn(rows) -> results`` on coalesced batches off the event loop.

    Args:
        score_fn: called with a list of rows (the concatenation of whole requests), must
            return one result per row, in order. Runs in one dedicated scoring thread.
        max_batch_size: most rows per call (a single larger request still runs, alone).
        max_wait_s: longest the oldest queued request waits for the batch to fill.
        max_queue: most rows waiting (not yet running); beyond it ``submit`` raises
            ``QueueFull``.
        coalesce: False scores each request in a call of its own.
        on_drop: called with ``(rows, reason)`` when a queued request is dropped unscored.
    """

    def __init__(
        self,
        score_fn: Callable[[list[T]], Sequence[R]],
        *,
        max_batch_size: int,
        max_wait_s: float,
        max_queue: int,
        coalesce: bool = True,
        thread_name: str = "safeladder-score",
        on_drop: Callable[[int, str], None] | None = None,
    ):
        if max_batch_size < 1 or max_queue < 1 or max_wait_s < 0:
            raise ValueError(
                f"need max_batch_size >= 1, max_queue >= 1, max_wait_s >= 0; got "
                f"{max_batch_size}, {max_queue}, {max_wait_s}"
            )
        self._score_fn = score_fn
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.coalesce = coalesce
        self._thread_name = thread_name
        self._on_drop = on_drop
        # The lock guards the queue, its row count and the flags below; the scoring thread
        # never holds it while scoring.
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[_Pending[T, R]] = deque()
        self._queued_rows = 0
        self._closing = False
        self._idle = False  # the scoring thread waits for a first request
        self._filling = False  # ... or for the batch at the head to fill (until its deadline)
        self._running_rows = 0
        self._running_since: float | None = None  # time.monotonic() when the call started
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Future[None] | None = None  # set when the thread has finished

    # ------------------------------------------------------------------ state
    @property
    def queue_rows(self) -> int:
        """Rows waiting to be scored (not counting the batch running now)."""
        return self._queued_rows

    @property
    def queue_requests(self) -> int:
        with self._cond:
            return sum(1 for p in self._queue if not p.dropped)

    @property
    def running_rows(self) -> int:
        """Rows in the scoring call running now (0 when idle)."""
        return self._running_rows

    @property
    def batch_age_s(self) -> float:
        """Seconds the running scoring call has taken so far; 0.0 when idle."""
        since = self._running_since
        return 0.0 if since is None else time.monotonic() - since

    @property
    def closing(self) -> bool:
        return self._closing

    # ------------------------------------------------------------------ lifecycle
    def _ensure_started(self) -> None:
        loop = asyncio.get_running_loop()
        if self._thread is not None:
            if self._loop is not loop:
                raise RuntimeError("DynamicBatcher is bound to another event loop")
            return
        self._loop = loop
        self._stopped = loop.create_future()
        # A daemon thread: an app that is never shut down must not keep the process alive.
        self._thread = threading.Thread(
            target=self._work, name=f"{self._thread_name}_0", daemon=True
        )
        self._thread.start()

    async def close(self) -> None:
        """Refuse new requests, score every queued one, then stop the scoring thread."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread is None or self._stopped is None:
            return
        await self._stopped  # every queued request has been answered by now
        self._thread.join()

    # ------------------------------------------------------------------ requests
    async def submit(self, rows: Sequence[T]) -> list[R]:
        """Queue ``rows`` (one request) and wait for their results, in order.

        Raises ``QueueFull`` when the queue has no room, ``ShuttingDown`` after ``close()``,
        and whatever ``score_fn`` raised for this request's rows. Cancelling the wait (e.g.
        ``task.cancel("disconnect")``) drops the request from the queue if it has not started.
        """
        return await self.enqueue(rows)

    def enqueue(self, rows: Sequence[T]) -> asyncio.Future[list[R]]:
        """Queue ``rows`` (one request) now; the future gets their results, in order.

        The same as ``submit`` without a coroutine in between (the server awaits this future
        directly: one object per request, no task). Raises ``QueueFull`` / ``ShuttingDown`` at
        once; cancelling the future (``future.cancel("timeout")``) drops the request from the
        queue if it has not started, with the cancel message as ``on_drop``'s reason.
        """
        if self._closing:
            raise ShuttingDown("the server is shutting down")
        n = len(rows)
        if n == 0:
            done: asyncio.Future[list[R]] = asyncio.get_running_loop().create_future()
            done.set_result([])
            return done
        if self._queued_rows + n > self.max_queue:
            raise QueueFull(
                f"{self._queued_rows} rows queued; {n} more would exceed max_queue={self.max_queue}"
            )
        self._ensure_started()
        assert self._loop is not None
        pending: _Pending[T, R] = _Pending(rows, self._loop.create_future(), time.monotonic())
        pending.future.add_done_callback(lambda _f: self._forget(pending))
        with self._cond:
            if self._closing:
                raise ShuttingDown("the server is shutting down")
            self._queue.append(pending)
            self._queued_rows += n
            # Wake the scoring thread only when it has something to do: a first request, or
            # a batch that is now full (its deadline wakes it otherwise).
            if self._idle or (self._filling and self._queued_rows >= self.max_batch_size):
                self._cond.notify()
        return pending.future

    def _forget(self, pending: _Pending[T, R]) -> None:
        # A request cancelled while still queued frees its room at once (event loop thread).
        if not pending.future.cancelled():
            return
        with self._cond:
            if pending.taken:
                return
            if not pending.dropped:
                pending.dropped = True
                self._queued_rows -= len(pending.rows)
        if self._on_drop is not None:
            self._on_drop(len(pending.rows), _cancel_reason(pending.future))

    # ------------------------------------------------------------------ the scoring thread
    def _work(self) -> None:
        try:
            while (batch := self._next_batch()) is not None:
                self._score(batch)
        finally:
            self._to_loop(_set_done, self._stopped)

    def _next_batch(self) -> list[_Pending[T, R]] | None:
        """Wait for the next batch (None: closing and nothing left)."""
        with self._cond:
            while True:
                while self._queue and self._queue[0].dropped:
                    self._queue.popleft()
                if not self._queue:
                    if self._closing:
                        return None
                    self._idle = True
                    self._cond.wait()
                    self._idle = False
                    continue
                # Let the batch fill until max_batch_size rows or max_wait_s after the oldest
                # arrival. Requests that arrived while the previous batch ran are past their
                # deadline already, so they go at once.
                if self.coalesce and not self._closing and self._queued_rows < self.max_batch_size:
                    remaining = self._queue[0].enqueued + self.max_wait_s - time.monotonic()
                    if remaining > 0:
                        self._filling = True
                        self._cond.wait(remaining)
                        self._filling = False
                        continue  # re-check: the head may have left, the batch may be full
                batch = self._take()
                if batch:
                    self._running_rows = sum(len(p.rows) for p in batch)
                    return batch

    def _take(self) -> list[_Pending[T, R]]:
        batch: list[_Pending[T, R]] = []
        rows = 0
        while self._queue:
            p = self._queue[0]
            if p.dropped or p.future.done():  # done while queued: cancelled, being forgotten
                self._queue.popleft()
                if not p.dropped:
                    p.dropped = True
                    self._queued_rows -= len(p.rows)
                continue
            if batch and (not self.coalesce or rows + len(p.rows) > self.max_batch_size):
                break
            self._queue.popleft()
            p.taken = True
            self._queued_rows -= len(p.rows)
            rows += len(p.rows)
            batch.append(p)
        return batch

    def _call(self, rows: list[T]) -> Sequence[R]:
        self._running_since = time.monotonic()
        try:
            results = self._score_fn(rows)
        finally:
            self._running_since = None
        if len(results) != len(rows):
            raise RuntimeError(f"score_fn returned {len(results)} results for {len(rows)} rows")
        return results

    def _score(self, batch: list[_Pending[T, R]]) -> None:
        rows = [r for p in batch for r in p.rows]
        outcomes: list[_Outcome] = []
        try:
            try:
                results = self._call(rows)
            except Exception as exc:
                if len(batch) == 1:
                    outcomes.append((batch[0], exc))
                else:
                    # Isolate: a failure caused by one request's rows must not fail its
                    # neighbours.
                    logger.info(
                        "coalesced batch of %d requests failed; scoring each alone", len(batch)
                    )
                    for p in batch:
                        self._running_rows = len(p.rows)
                        try:
                            outcomes.append((p, list(self._call(list(p.rows)))))
                        except Exception as one_exc:
                            outcomes.append((p, one_exc))
            else:
                start = 0
                for p in batch:
                    end = start + len(p.rows)
                    outcomes.append((p, list(results[start:end])))
                    start = end
        finally:
            self._running_rows = 0
            self._to_loop(_settle, outcomes)

    def _to_loop(self, fn: Callable[[Any], None], arg: Any) -> None:
        """Run ``fn(arg)`` on the event loop (one wake-up of the loop per call)."""
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self._loop.call_soon_threadsafe(fn, arg)


def _cancel_reason(future: asyncio.Future[Any]) -> str:
    # Task.cancel(msg) passes its message on to the future the task was awaiting.
    try:
        future.result()
    except asyncio.CancelledError as exc:
        return str(exc.args[0]) if exc.args and exc.args[0] else "cancelled"
    return "cancelled"


def _settle(outcomes: list[_Outcome]) -> None:
    """Resolve a batch's futures (on the event loop thread); a request whose wait was given
    up (timeout, disconnect) is skipped."""
    for p, out in outcomes:
        if p.future.done():
            continue
        if isinstance(out, BaseException):
            p.future.set_exception(out)
        else:
            p.future.set_result(out)


def _set_done(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)
