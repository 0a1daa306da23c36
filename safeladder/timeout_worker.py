"""The worker side of ``TimeoutPool``: the worker process, its wire protocol, and ``Outcome``.

Workers are fresh interpreters (``python -c``) talking over a socket pair, not
``multiprocessing`` children: forking a process that runs threads (or torch) is unsafe, and the
``spawn`` start method re-imports the caller's ``__main__`` in every worker, which fails for
``python -`` / notebooks and re-runs a training script that lacks an
``if __name__ == "__main__":`` guard.

Wire protocol (pickled messages over the socket, ``multiprocessing.connection`` framing):

- parent → worker: the parent's ``sys.path`` (a list of str: unpickling it imports nothing,
  and afterwards functions of any importable module can be unpickled), then
  ``(initializer, initargs)``, then one ``(fn, item)`` per task; ``None`` asks it to exit;
- worker → parent: ``("ready", pid)`` or ``("init_error", message)`` once, then one reply per
  task: ``("ok", value)``, ``("error", "Type: text")`` or ``("memory", "MemoryError: text")``
  (after which the worker exits: its heap may be left fragmented).

Workers die with their parent: on Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` kills a worker the
moment the thread that started it (the pool's dispatcher) or its process dies, even a worker
stuck in C code that holds the GIL; elsewhere a watch thread in the worker notices the new
parent pid within a second (an idle worker also sees its socket close). ``memory_limit_bytes``
caps a worker's address space (``RLIMIT_AS``, Linux).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Literal

__all__ = [
    "Outcome",
    "OutcomeStatus",
    "WorkerProcess",
    "child_entry",
    "die_with_parent",
    "limit_memory",
    "send_setup",
    "serve",
    "start_worker",
]

OutcomeStatus = Literal["ok", "error", "timeout", "expired", "memory"]


@dataclass(frozen=True)
class Outcome:
    """What became of one task.

    Attributes:
        status: ``ok`` (``value`` holds the return value), ``error`` (the function raised, the
            worker died, or the task could not be sent; ``message`` says which), ``timeout``
            (the worker ran past the task's deadline and was killed), ``expired`` (the ``map``
            call's ``budget_s`` ran out before the task finished: it never ran, or its worker
            was killed) or ``memory`` (the function raised ``MemoryError``, e.g. at the
            worker's ``memory_limit_mb``; the worker is replaced).
        value: the function's return value for ``ok``, else None.
        message: ``"ExceptionType: text"`` for ``error`` and ``memory``, a short note for
            ``timeout`` and ``expired``.
        elapsed_s: wall-clock seconds from hand-off to a worker until the outcome (0.0 for
            tasks that never reached a worker).
    """

    status: OutcomeStatus
    value: Any = None
    message: str = ""
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def timed_out(self) -> bool:
        """True for ``timeout`` only (the task's own deadline), not for ``expired``."""
        return self.status == "timeout"


def serve(conn: Connection) -> None:
    """Body of a worker process: take sys.path and the initializer, say ready, run tasks."""
    # Ctrl-C in a terminal reaches the whole process group; the parent decides what stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        sys.path[:] = conn.recv()  # a list of str: unpickling it imports nothing
        initializer, initargs = conn.recv()
        if initializer is not None:
            initializer(*initargs)
    except BaseException as exc:
        with contextlib.suppress(Exception):
            conn.send(("init_error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):  # the parent went away
            return
        if msg is None:
            return
        fn, item = msg
        try:
            reply: tuple[str, Any] = ("ok", fn(item))
        except MemoryError as exc:
            # The heap may be left fragmented or half-built objects cached: report and exit, the
            # pool starts a fresh worker.
            reply = ("memory", f"MemoryError: {exc}")
        except Exception as exc:
            reply = ("error", f"{type(exc).__name__}: {exc}")
        try:
            conn.send(reply)
        except Exception as exc:  # pickling fails before anything is written: the pipe is intact
            conn.send(("error", f"result could not be sent back: {type(exc).__name__}: {exc}"))
        if reply[0] == "memory":
            return


# linux/prctl.h
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Make this worker exit when the process that started it dies, however it dies."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # The parent may have died before prctl took effect: we were re-parented already.
    if os.getppid() != parent_pid:
        os._exit(1)
    # Portable fallback (and a second line on Linux): poll the parent pid. It cannot interrupt C
    # code that holds the GIL; PDEATHSIG can.
    threading.Thread(
        target=_watch_parent, args=(parent_pid,), name="parent-watch", daemon=True
    ).start()


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(1)


def limit_memory(limit_bytes: int) -> None:
    """Cap this process's address space; over it, allocations raise ``MemoryError``."""
    import resource

    with contextlib.suppress(ValueError, OSError, AttributeError):  # not on every platform
        _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        cap = limit_bytes if hard == resource.RLIM_INFINITY else min(limit_bytes, hard)
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


def child_entry(fd: int, parent_pid: int, memory_limit_bytes: int | None = None) -> None:
    """Entry point of ``python -c`` in a new worker: guard, wrap the inherited socket, serve."""
    die_with_parent(parent_pid)
    if memory_limit_bytes is not None:
        limit_memory(memory_limit_bytes)
    serve(Connection(fd))


# The package directory's parent, so the fresh interpreter can import safeladder itself before
# it receives the parent's full sys.path.
_PKG_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class WorkerProcess:
    """A worker interpreter started with ``subprocess``; the subset of ``Process`` the pool uses."""

    def __init__(self, child_fd: int, memory_limit_bytes: int | None = None):
        code = (
            f"import sys; sys.path.insert(0, {_PKG_ROOT!r}); "
            "from safeladder.timeout_worker import child_entry; "
            f"child_entry({child_fd}, {os.getpid()}, {memory_limit_bytes!r})"
        )
        self._popen = subprocess.Popen(
            [sys.executable, "-c", code],
            pass_fds=(child_fd,),
            stdin=subprocess.DEVNULL,
            close_fds=True,
        )
        self.pid: int | None = self._popen.pid

    def is_alive(self) -> bool:
        return self._popen.poll() is None

    def kill(self) -> None:
        self._popen.kill()

    def join(self, timeout: float | None = None) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._popen.wait(timeout)

    @property
    def exitcode(self) -> int | None:
        return self._popen.poll()

    def close(self) -> None:
        return None


def start_worker(memory_limit_bytes: int | None = None) -> tuple[WorkerProcess, Connection]:
    """Start one worker process; returns it and the parent's end of its socket.

    Send it ``send_setup`` next; it answers ``("ready", pid)`` once the initializer ran.
    """
    parent_sock, child_sock = socket.socketpair()
    try:
        proc = WorkerProcess(child_sock.fileno(), memory_limit_bytes)
    finally:
        # Keep only the parent's end open here, so each side sees EOF when the other dies.
        child_sock.close()
    return proc, Connection(parent_sock.detach())


def send_setup(
    conn: Connection, initializer: Callable[..., Any] | None, initargs: tuple[Any, ...]
) -> None:
    """The first two messages to a new worker: ``sys.path``, then the initializer and its args.

    Raises what pickling raises (e.g. an initializer defined in a closure).
    """
    conn.send(list(sys.path))
    conn.send((initializer, initargs))
