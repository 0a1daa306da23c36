"""A process pool whose tasks have a hard wall-clock limit, usable from any thread.

Rule verifiers call code that can hang on hostile input (sympy on ``9^{9^{9}}``, a regex, a
solution under test). Signal-based timeouts (``signal.alarm``, what math-verify uses by
default) only work on the main thread of the main interpreter, so they break inside trainer
threads and web servers. ``TimeoutPool`` runs each task in a worker process instead; when a
task runs past its deadline the worker is killed (SIGKILL), reaped and replaced, and the task's
outcome is a distinct ``timeout`` -- never an exception dressed up as a wrong answer.

Design:
- one dispatcher thread per pool owns the worker processes; callers (any thread, any number
  at once) only append tasks to a FIFO queue and wait for their own results;
- each worker has its own pipe, so the dispatcher always knows which task a worker runs and
  whom to kill; a task's deadline starts when it is handed to a ready worker (worker start-up
  and the ``initializer`` are not counted);
- workers start lazily (at most ``workers`` running tasks, no more than there are tasks), are
  replaced after being killed or dying, and are shut down by ``close()``, the context manager,
  or at exit; ``spares`` more are kept started and idle, so a killed worker's place is taken at
  once instead of after a fresh interpreter's start-up (seconds when the initializer imports
  a heavy library);
- a ``map`` call may carry a ``budget_s``: when the call's wall-clock budget is spent, its
  tasks still queued or running end as ``expired`` (running ones are killed), whatever their
  own ``timeout_s``; tasks run in the order given, so callers put cheap tasks first;
- ``memory_limit_mb`` caps each worker's address space (``RLIMIT_AS``, Linux); a task that
  runs out of it ends as ``memory`` and the worker is replaced, the caller is unaffected;
- workers are fresh interpreters that die with their parent; how they are started and what
  they say over their socket is ``safeladder.timeout_worker``'s job. The parent's ``sys.path``
  is sent to each worker first, so functions defined in any importable module can run there.

Functions and items must be picklable (module-level functions, builtins).

Example::

    import time
    from safeladder.timeout_pool import TimeoutPool

    with TimeoutPool(workers=2) as pool:
        out = pool.map(time.sleep, [0.0, 30.0], timeout_s=0.5)
    [o.status for o in out]  # ['ok', 'timeout']
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, Literal

from safeladder.timeout_worker import (
    Outcome,
    OutcomeStatus,
    WorkerProcess,
    send_setup,
    start_worker,
)

# Outcome lives with the worker protocol; it is re-exported here, where callers meet it.
__all__ = ["Outcome", "OutcomeStatus", "TimeoutPool"]


class _Call:
    """The results of one ``map`` call, filled in by the dispatcher (or by ``close``)."""

    def __init__(self, n: int, budget_s: float | None = None):
        self.results: list[Outcome | None] = [None] * n
        self.remaining = n
        self.done = threading.Event()
        self._lock = threading.Lock()
        self.budget_s = budget_s
        # Set by the dispatcher when the call's first task reaches a worker.
        self.deadline = math.inf

    def set(self, index: int, outcome: Outcome) -> None:
        with self._lock:
            if self.results[index] is not None:
                return
            self.results[index] = outcome
            self.remaining -= 1
            if self.remaining == 0:
                self.done.set()


@dataclass
class _Task:
    call: _Call
    index: int
    fn: Callable[[Any], Any]
    item: Any
    timeout_s: float


@dataclass
class _Worker:
    proc: WorkerProcess
    conn: Connection
    state: Literal["starting", "idle", "busy"] = "starting"
    task: _Task | None = None
    since: float = field(default_factory=time.monotonic)
    deadline: float = math.inf


_LIVE_POOLS: weakref.WeakSet[TimeoutPool] = weakref.WeakSet()


@atexit.register
def _close_all_pools() -> None:
    for pool in list(_LIVE_POOLS):
        with contextlib.suppress(Exception):
            pool.close()


class TimeoutPool:
    """A pool of worker processes running ``fn(item)`` with a hard per-task time limit.

    Args:
        workers: how many tasks run at once, each in its own worker process (started lazily).
        spares: worker processes kept started and idle beyond ``workers`` (after the first
            ``map``), ready to take the place of a killed or dead worker at once.
        memory_limit_mb: address-space cap of each worker in MiB (``RLIMIT_AS``; Linux), or
            None for no cap. Must leave room for the interpreter and what ``initializer``
            imports.
        initializer: optional picklable callable run once in each worker before its first task
            (e.g. to import a heavy library); if it raises, the queued tasks fail with an
            ``error`` outcome naming the exception.
        initargs: arguments for ``initializer``.
        start_timeout_s: how long a worker may take to start and initialize before it is
            killed and the queued tasks fail.

    Thread-safe: any number of threads may call ``map`` at once; tasks run in arrival order.
    Attributes ``processes_started``, ``timeouts`` and ``expired`` count worker starts, tasks
    killed at their own deadline, and tasks ended by their call's budget.
    """

    def __init__(
        self,
        workers: int = 2,
        *,
        spares: int = 0,
        memory_limit_mb: int | None = None,
        initializer: Callable[..., Any] | None = None,
        initargs: Sequence[Any] = (),
        start_timeout_s: float = 120.0,
    ):
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
        if not isinstance(spares, int) or isinstance(spares, bool) or spares < 0:
            raise ValueError(f"spares must be an integer >= 0, got {spares!r}")
        if memory_limit_mb is not None and (
            not isinstance(memory_limit_mb, int)
            or isinstance(memory_limit_mb, bool)
            or memory_limit_mb < 1
        ):
            raise ValueError(
                f"memory_limit_mb must be an integer >= 1 or None, got {memory_limit_mb!r}"
            )
        if not start_timeout_s > 0:
            raise ValueError(f"start_timeout_s must be > 0, got {start_timeout_s!r}")
        self.max_workers = workers
        self.spares = spares
        self.memory_limit_mb = memory_limit_mb
        self.start_timeout_s = float(start_timeout_s)
        self._initializer = initializer
        self._initargs = tuple(initargs)
        self.processes_started = 0
        self.timeouts = 0
        self.expired = 0
        self._closed = False
        self._fresh_state()
        _LIVE_POOLS.add(self)

    def _fresh_state(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._queue: deque[_Task] = deque()
        self._workers: list[_Worker] = []
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = -1, -1
        self._crash = ""
        self._budgeted: list[_Call] = []  # calls whose budget clock runs (dispatcher only)
        # After a start-up failure no spare is started until a worker becomes ready again, so a
        # broken initializer does not restart forever.
        self._start_failed = False

    # ------------------------------------------------------------------ public API

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def started(self) -> bool:
        """True once a worker process has been started."""
        return self.processes_started > 0

    def worker_pids(self) -> list[int]:
        """PIDs of the worker processes alive right now (for diagnostics and tests)."""
        return [w.proc.pid for w in list(self._workers) if w.proc.pid is not None]

    def map(
        self,
        fn: Callable[[Any], Any],
        items: Iterable[Any],
        timeout_s: float,
        *,
        budget_s: float | None = None,
    ) -> list[Outcome]:
        """Run ``fn(item)`` for every item, each with its own ``timeout_s`` deadline.

        ``budget_s`` (seconds, optional) bounds the whole call: its clock starts when the first
        item reaches a worker (worker start-up is not counted); when it runs out, items still
        queued or running get an ``expired`` outcome. Items are handed out in the given order.

        Returns one ``Outcome`` per item, in the order of ``items``. Blocks until all are done.
        Raises ``RuntimeError`` if the pool is closed, ``ValueError`` for a bad ``timeout_s`` or
        ``budget_s``.
        """
        if not (isinstance(timeout_s, (int, float)) and timeout_s > 0 and math.isfinite(timeout_s)):
            raise ValueError(f"timeout_s must be a finite number > 0, got {timeout_s!r}")
        if budget_s is not None and not (
            isinstance(budget_s, (int, float)) and budget_s > 0 and math.isfinite(budget_s)
        ):
            raise ValueError(f"budget_s must be a finite number > 0 or None, got {budget_s!r}")
        items = list(items)
        if not items:
            return []
        call = _Call(len(items), None if budget_s is None else float(budget_s))
        with self._lock_for_caller():
            if self._closed:
                raise RuntimeError("TimeoutPool is closed")
            self._ensure_dispatcher()
            for i, item in enumerate(items):
                self._queue.append(_Task(call, i, fn, item, float(timeout_s)))
            self._wake()
        while not call.done.wait(0.5):
            thread = self._thread
            if thread is None or not thread.is_alive():
                # The dispatcher is gone (closed or crashed meanwhile): what is left will not run.
                why = self._crash or "pool closed before the task ran"
                for i in range(len(items)):
                    call.set(i, Outcome("error", message=why))
        return [o if o is not None else Outcome("error", message="lost") for o in call.results]

    def run(self, fn: Callable[[Any], Any], item: Any, timeout_s: float) -> Outcome:
        """``map`` for one item."""
        return self.map(fn, [item], timeout_s)[0]

    def idle_workers(self) -> int:
        """How many started workers are waiting for a task right now (diagnostics, tests)."""
        return sum(1 for w in list(self._workers) if w.state == "idle")

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the workers (graceful, then SIGKILL) and the dispatcher. Idempotent.

        Tasks still queued or running get an ``error`` outcome ("pool closed").
        """
        with self._lock_for_caller():
            if self._closed:
                return
            self._closed = True
            pending = list(self._queue)
            self._queue.clear()
            thread = self._thread
            self._wake()
        for task in pending:
            task.call.set(task.index, Outcome("error", message="pool closed before the task ran"))
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
        if thread is None or not thread.is_alive():
            self._shutdown_workers()
            # Only now: the dispatcher no longer reads the pipe, and callers see ``_closed``
            # under the same lock before they write to it, so no fd number is reused under us.
            with self._lock:
                self._close_wake_pipe()
        _LIVE_POOLS.discard(self)

    def __enter__(self) -> TimeoutPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._workers)} running"
        return f"TimeoutPool(workers={self.max_workers}, {state})"

    # ------------------------------------------------------------------ caller side

    def _lock_for_caller(self) -> threading.Lock:
        if os.getpid() != self._pid:
            # We are in a forked child: the parent's workers and dispatcher are not ours.
            self._fresh_state()
        return self._lock

    def _ensure_dispatcher(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        if self._wake_r < 0:
            self._wake_r, self._wake_w = os.pipe()
            os.set_blocking(self._wake_r, False)
            os.set_blocking(self._wake_w, False)
        self._thread = threading.Thread(
            target=self._dispatch, name="safeladder-timeout-pool", daemon=True
        )
        self._thread.start()

    def _wake(self) -> None:
        """Nudge the dispatcher; call with ``self._lock`` held."""
        if self._wake_w >= 0:
            # A full pipe already holds a pending wake-up; a closed one means we are shutting down.
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(self._wake_w, b"x")

    def _close_wake_pipe(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._wake_r, self._wake_w = -1, -1

    # ------------------------------------------------------------------ dispatcher thread

    def _dispatch(self) -> None:
        try:
            while True:
                with self._lock:
                    if self._closed:
                        return
                    queued = len(self._queue)
                self._start_workers(queued)
                self._assign_tasks()
                self._wait_and_collect()
                self._expire_budgets(time.monotonic())
        except BaseException as exc:  # a bug here must not leave callers waiting forever
            self._crash = f"timeout pool dispatcher crashed: {type(exc).__name__}: {exc}"
            self._fail_everything(self._crash)
        finally:
            if self._closed:
                self._shutdown_workers()

    def _start_workers(self, queued: int) -> None:
        busy = sum(1 for w in self._workers if w.state == "busy")
        wanted = min(self.max_workers, busy + queued)
        if not self._start_failed:
            wanted += self.spares
        limit = None if self.memory_limit_mb is None else self.memory_limit_mb * 1024 * 1024
        for _ in range(wanted - len(self._workers)):
            proc, conn = start_worker(limit)
            self.processes_started += 1
            worker = _Worker(proc=proc, conn=conn)
            self._workers.append(worker)
            try:
                send_setup(conn, self._initializer, self._initargs)
            except Exception as exc:  # e.g. an initializer that cannot be pickled
                self._kill(worker)
                self._start_failed = True
                self._fail_queued(f"worker could not be initialized: {type(exc).__name__}: {exc}")

    def _next_task(self, now: float) -> _Task | None:
        """Pop the next task to run; tasks whose call's budget already ran out end here."""
        while True:
            with self._lock:
                if not self._queue:
                    return None
                task = self._queue.popleft()
            call = task.call
            if now < call.deadline:
                if call.budget_s is not None and call.deadline == math.inf:
                    call.deadline = now + call.budget_s
                    self._budgeted.append(call)
                return task
            self.expired += 1
            call.set(task.index, _expired(call, ran=False))

    def _assign_tasks(self) -> None:
        busy = sum(1 for w in self._workers if w.state == "busy")
        for w in self._workers:
            if busy >= self.max_workers:
                return
            if w.state != "idle":
                continue
            task = self._next_task(time.monotonic())
            if task is None:
                return
            try:
                w.conn.send((task.fn, task.item))
            except (BrokenPipeError, ConnectionResetError, EOFError):
                # The worker died while idle; retry the task on a fresh one.
                with self._lock:
                    self._queue.appendleft(task)
                self._discard(w)
                return
            except Exception as exc:  # the function or item cannot be pickled; nothing was sent
                task.call.set(
                    task.index,
                    Outcome(
                        "error", message=f"task could not be sent: {type(exc).__name__}: {exc}"
                    ),
                )
                continue
            w.state, w.task = "busy", task
            w.since = time.monotonic()
            w.deadline = w.since + task.timeout_s
            busy += 1

    def _wait_and_collect(self) -> None:
        now = time.monotonic()
        deadlines = [w.deadline for w in self._workers if w.state == "busy"]
        deadlines += [
            w.since + self.start_timeout_s for w in self._workers if w.state == "starting"
        ]
        deadlines += [c.deadline for c in self._budgeted]
        timeout = max(0.0, min(deadlines) - now) if deadlines else None
        watched: list[Any] = [self._wake_r]
        # A dead worker closes its end of the socket, so EOF on w.conn also reports deaths.
        watched += [w.conn for w in self._workers]
        ready = set(wait(watched, timeout))
        if self._wake_r in ready:
            with contextlib.suppress(BlockingIOError, OSError):
                while os.read(self._wake_r, 4096):
                    pass
        now = time.monotonic()
        for w in list(self._workers):
            if w.conn in ready:
                self._receive(w, now)
        now = time.monotonic()
        for w in list(self._workers):
            if w.state == "busy" and now >= w.deadline:
                task = w.task
                self._kill(w)
                self.timeouts += 1
                assert task is not None
                task.call.set(
                    task.index,
                    Outcome(
                        "timeout",
                        message=f"killed after {task.timeout_s:g} s",
                        elapsed_s=now - w.since,
                    ),
                )
            elif w.state == "starting" and now >= w.since + self.start_timeout_s:
                self._kill(w)
                self._start_failed = True
                self._fail_queued(f"worker did not start within {self.start_timeout_s:g} s")

    def _expire_budgets(self, now: float) -> None:
        """End the queued and running tasks of every call whose budget has run out."""
        if not self._budgeted:
            return
        ended = {c for c in self._budgeted if c.done.is_set() or now >= c.deadline}
        if not ended:
            return
        self._budgeted = [c for c in self._budgeted if c not in ended]
        spent = {c for c in ended if not c.done.is_set()}
        if not spent:
            return
        with self._lock:
            dropped = [t for t in self._queue if t.call in spent]
            if dropped:
                self._queue = deque(t for t in self._queue if t.call not in spent)
        for task in dropped:
            self.expired += 1
            task.call.set(task.index, _expired(task.call, ran=False))
        for w in list(self._workers):
            running = w.task
            if w.state == "busy" and running is not None and running.call in spent:
                self._kill(w)
                self.expired += 1
                running.call.set(
                    running.index, _expired(running.call, ran=True, elapsed_s=now - w.since)
                )

    def _receive(self, w: _Worker, now: float) -> None:
        try:
            kind, payload = w.conn.recv()
        except (EOFError, OSError):
            self._on_death(w)
            return
        if kind == "ready":
            w.state = "idle"
            self._start_failed = False
        elif kind == "init_error":
            self._kill(w)
            self._start_failed = True
            self._fail_queued(f"worker initializer failed: {payload}")
        elif w.state == "busy" and w.task is not None:
            task = w.task
            w.state, w.task, w.deadline = "idle", None, math.inf
            if kind == "ok":
                task.call.set(task.index, Outcome("ok", value=payload, elapsed_s=now - w.since))
            elif kind == "memory":
                # The worker exits after this reply; retire it now so no task is sent to it.
                self._kill(w)
                task.call.set(
                    task.index, Outcome("memory", message=str(payload), elapsed_s=now - w.since)
                )
            else:
                task.call.set(
                    task.index, Outcome("error", message=str(payload), elapsed_s=now - w.since)
                )

    def _on_death(self, w: _Worker) -> None:
        task = w.task if w.state == "busy" else None
        code = self._kill(w)
        if task is not None:
            task.call.set(
                task.index,
                Outcome(
                    "error",
                    message=f"worker process died (exit code {code})",
                    elapsed_s=time.monotonic() - w.since,
                ),
            )
        elif w.state == "starting":
            self._start_failed = True
            self._fail_queued(f"worker process died while starting (exit code {code})")

    def _kill(self, w: _Worker) -> int | None:
        """SIGKILL (if still alive), reap, and forget one worker; returns its exit code."""
        with contextlib.suppress(Exception):
            if w.proc.is_alive():
                w.proc.kill()
        code = None
        with contextlib.suppress(Exception):
            w.proc.join(5.0)
            code = w.proc.exitcode
        self._discard(w)
        return code

    def _discard(self, w: _Worker) -> None:
        with contextlib.suppress(Exception):
            w.conn.close()
        with contextlib.suppress(Exception):
            if not w.proc.is_alive():
                w.proc.close()
        if w in self._workers:
            self._workers.remove(w)

    def _fail_queued(self, message: str) -> None:
        with self._lock:
            pending = list(self._queue)
            self._queue.clear()
        for task in pending:
            task.call.set(task.index, Outcome("error", message=message))

    def _fail_everything(self, message: str) -> None:
        self._fail_queued(message)
        for w in list(self._workers):
            if w.task is not None:
                w.task.call.set(w.task.index, Outcome("error", message=message))
            self._kill(w)

    def _shutdown_workers(self) -> None:
        workers = list(self._workers)
        for w in workers:
            if w.task is not None:
                w.task.call.set(
                    w.task.index, Outcome("error", message="pool closed while the task ran")
                )
            if w.state == "idle":
                with contextlib.suppress(Exception):
                    w.conn.send(None)
            else:
                with contextlib.suppress(Exception):
                    w.proc.kill()
        for w in workers:
            with contextlib.suppress(Exception):
                w.proc.join(1.0)
            self._kill(w)


def _expired(call: _Call, *, ran: bool, elapsed_s: float = 0.0) -> Outcome:
    where = "while the task ran" if ran else "before the task ran"
    return Outcome(
        "expired",
        message=f"call budget of {call.budget_s:g} s ran out {where}",
        elapsed_s=elapsed_s,
    )
