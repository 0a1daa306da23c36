"""Scoring in a child process, outside the server's GIL (``ServeSettings.scoring_process``).

The server answers HTTP on its event loop and scores in the batcher's thread. Both share one
GIL, so a rule reward's CPU time competes with request handling: in ``bench_server.py`` the
server can then serve at most about 1 / (CPU per reward) requests per second however many
cores the machine has. With ``scoring_process: true`` the batcher's thread hands each batch
to one child process that holds its own ``Reward`` built from the same config, and waits on a
pipe (the GIL is free meanwhile). What crosses the pipe is the batch's columns and the
per-row ``Row``s back: a few microseconds a row.

Rules:

- CPU rewards only. The server keeps its own reward (for ``/health``), so each model loads
  twice: fine for a small CPU model (the default reward's MiniLM, ~90 MB), refused with a
  ``ConfigError`` for a verifier on an accelerator. A stateful term (an adaptive λ) would
  update in the child where ``/metrics`` cannot read it: refused too.
- One child, started with the first batch (``spawn``: no forked locks or CUDA state). A
  batch the child fails on is that batch's error (``RuntimeError``, the server's 500), with
  the child's own message. If the child dies (SIGKILL, out of memory), the batch in flight
  fails naming its exit code, and the next batch starts a new child.
- ``close()`` asks the child to stop, then terminates it after ``STOP_TIMEOUT_S``.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import threading
from typing import Any

from safeladder.errors import ConfigError
from safeladder.rewards import Reward
from safeladder.serving.wire import Row, WireSample, batch_of, rows_of

STOP_TIMEOUT_S = 5.0


def check_scorable_in_process(reward: Reward, devices: list[str]) -> None:
    """Raise ``ConfigError`` when ``reward`` cannot be scored in a child process."""
    accelerators = [d for d in devices if not d.startswith("cpu")]
    if accelerators:
        raise ConfigError(
            f"scoring_process: reward {reward.name!r} has neural verifiers on {accelerators}; "
            "their models would load twice there. scoring_process is for CPU rewards: drop it"
        )
    if reward.state_metrics():
        raise ConfigError(
            f"scoring_process: reward {reward.name!r} keeps state across batches "
            f"({sorted(reward.state_metrics())}), which would live in the child where "
            "/metrics cannot read it: drop scoring_process"
        )


class ScoringProcess:
    """One child process scoring batches with its own copy of a reward (thread-safe)."""

    def __init__(self, reward: Reward, terms: list[str], devices: list[str]):
        check_scorable_in_process(reward, devices)
        self._config = reward.config
        self._terms = list(terms)
        self._ctx = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._proc: Any = None
        self._conn: Any = None

    def score(self, samples: list[WireSample]) -> list[Row]:
        """The rows of ``samples``, scored in the child, in order."""
        with self._lock:
            if self._proc is None or not self._proc.is_alive():
                self._start()
            try:
                self._conn.send(samples)
                kind, payload = self._conn.recv()
            except (EOFError, OSError) as exc:
                code = self._stop(kill=True)
                raise RuntimeError(
                    f"the scoring process died (exit code {code}) while scoring this batch; "
                    "the next batch starts a new one"
                ) from exc
        if kind != "ok":
            raise RuntimeError(f"in the scoring process: {payload}")
        rows: list[Row] = payload
        return rows

    def close(self) -> None:
        """Stop the child (idempotent)."""
        with self._lock:
            self._stop(kill=False)

    def _start(self) -> None:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(
            target=_child_main,
            args=(child, self._config, self._terms),
            name="safeladder-scoring",
            daemon=True,
        )
        proc.start()
        child.close()
        try:
            kind, payload = parent.recv()
        except EOFError:
            proc.join(STOP_TIMEOUT_S)
            raise RuntimeError(
                f"the scoring process exited (code {proc.exitcode}) before it was ready"
            ) from None
        if kind != "ready":
            proc.join(STOP_TIMEOUT_S)
            raise RuntimeError(f"the scoring process could not build the reward: {payload}")
        self._proc, self._conn = proc, parent

    def _stop(self, *, kill: bool) -> int | None:
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if proc is None:
            return None
        if not kill:
            with contextlib.suppress(OSError):
                conn.send(None)
            proc.join(STOP_TIMEOUT_S)
        if proc.is_alive():
            proc.terminate()
            proc.join(STOP_TIMEOUT_S)
        conn.close()
        code: int | None = proc.exitcode
        return code


def _child_main(conn: Any, config: Any, terms: list[str]) -> None:
    """The child: build the reward, then score each batch received until ``None``."""
    try:
        reward = Reward(config)
    except Exception as exc:  # the parent reports it
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", None))
    try:
        while True:
            try:
                samples = conn.recv()
            except EOFError:  # the server is gone
                return
            if samples is None:
                return
            try:
                conn.send(("ok", rows_of(reward.score(batch_of(samples)), terms)))
            except Exception as exc:  # one batch's failure, reported to the server
                conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        reward.close()
