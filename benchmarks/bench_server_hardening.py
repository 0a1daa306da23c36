"""The reward server against misbehaving clients (issue 10, item 7), on loopback.

Run::

    python benchmarks/bench_server_hardening.py     # about 15 s on 2 CPUs

One uvicorn in this process serves a reward whose only verifier holds its first batch at a
gate (so the queue fills and stays full while we measure), then:

- ``full_queue_503``: ``REFUSED`` requests, each announcing and sending a ``BIG_BODY_MB`` body
  while the queue is full; client-side seconds from connect to the response status line
  (p50 / p99). Before the fix the server read the whole body first (p50 1.3 s per request);
- ``disconnects``: ``LEAVERS`` clients send a whole request, get queued, and hang up; the
  /metrics counts by status (before: +1 "500" each) and how many of their rows reached
  ``Reward.score`` (before: all of them);
- ``half_sent``: ``HALF_SENT`` clients send headers and part of a body, then stall; how many
  connections the server let go (408 + close) within ``body_timeout_s`` + ``GRACE_S`` (before:
  none, ever).

One JSON line per scenario is appended to ``benchmarks/results/server_hardening.jsonl``.
"""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import bench_env  # benchmarks/ is the script's directory, so it is on sys.path

from safeladder.rewards import Reward, RewardConfig
from safeladder.types import ScoreBatch
from safeladder.verifiers.base import Verifier

# ----------------------------------------------------------------------------- knobs
REFUSED = 20
BIG_BODY_MB = 8
LEAVERS = 10
HALF_SENT = 1000
BODY_TIMEOUT_S = 2.0
GRACE_S = 3.0

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "server_hardening.jsonl"
GATE = threading.Event()


class HoldVerifier(Verifier):
    """Scores len(completion); every call waits for ``GATE`` (the benchmark opens it at the end)."""

    calls: ClassVar[list[int]] = []

    def _score_batch(self, batch: Any, context: Any) -> ScoreBatch:
        HoldVerifier.calls.append(len(batch))
        GATE.wait(timeout=120)
        return ScoreBatch.from_rows(
            self.name, [(float(len(c)), "ok", {}) for c in batch.completions]
        )


def head(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def payload(completion: str) -> bytes:
    return json.dumps({"query": ["P" + completion], "prompts": ["P"], "labels": [None]}).encode()


def connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    s.settimeout(60)
    return s


def status_line(s: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            return 0
        data += chunk
    return int(data.split(b" ", 2)[1])


def metrics(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return {
        (x.name, frozenset(x.labels.items())): x.value
        for fam in text_string_to_metric_families(text)
        for x in fam.samples
    }


def main() -> None:
    # The reward imports this file as a module (the custom target), a copy apart from
    # __main__: the gate and the call log are that module's.
    import bench_server_hardening as target
    import uvicorn

    from safeladder.serving import ServeSettings, create_app

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    reward = Reward(
        RewardConfig.model_validate(
            {
                "terms": [
                    {
                        "name": "chars",
                        "verifier": {
                            "type": "custom",
                            "target": "bench_server_hardening:HoldVerifier",
                        },
                    }
                ]
            }
        )
    )
    settings = ServeSettings(
        max_batch_size=1,
        max_wait_ms=0,
        max_queue=LEAVERS + 1,
        max_request_samples=1,
        body_timeout_s=BODY_TIMEOUT_S,
    )
    app = create_app(reward, settings)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", backlog=4096)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    batcher = app.state.batcher
    env = bench_env.environment(["fastapi", "uvicorn", "prometheus-client", "fastapi-offline"])
    rows: list[dict[str, Any]] = []

    def wait_for(cond: Any) -> None:
        deadline = time.monotonic() + 30
        while not cond():
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not reach the expected state")
            time.sleep(0.01)

    # one request holds the scoring thread at the gate
    holder = connect(port)
    holder.sendall(head("/get_reward", len(payload("a"))) + payload("a"))
    wait_for(lambda: batcher.running_rows == 1)

    # --- disconnects: queued, then gone
    leavers = []
    for i in range(LEAVERS):
        s = connect(port)
        s.sendall(head("/get_reward", len(payload("x" * (i + 2)))) + payload("x" * (i + 2)))
        leavers.append(s)
    wait_for(lambda: batcher.queue_rows == LEAVERS)
    for s in leavers:
        s.close()
    wait_for(lambda: batcher.queue_rows == 0)

    # --- half-sent requests (the queue has room: their bodies are awaited, then timed out)
    stalled = []
    started = time.perf_counter()
    for _ in range(HALF_SENT):
        s = connect(port)
        s.sendall(head("/get_reward", 200) + b'{"query": ["P')
        stalled.append(s)
    released = 0
    got_408 = 0
    for s in stalled:
        remaining = BODY_TIMEOUT_S + GRACE_S - (time.perf_counter() - started)
        s.settimeout(max(remaining, 0.01))
        try:
            code = status_line(s)
            got_408 += code == 408
            s.settimeout(1.0)
            while s.recv(65536):
                pass
            released += 1
        except (TimeoutError, OSError):
            pass
        s.close()
    rows.append(
        {
            "scenario": "half_sent",
            "clients": HALF_SENT,
            "body_timeout_s": BODY_TIMEOUT_S,
            "released_within_s": BODY_TIMEOUT_S + GRACE_S,
            "released": released,
            "answered_408": got_408,
        }
    )

    # --- full queue: fill it again (LEAVERS + 1 rows), then send big bodies
    fillers = []
    for i in range(LEAVERS + 1):
        s = connect(port)
        s.sendall(head("/get_reward", len(payload("y" * (i + 2)))) + payload("y" * (i + 2)))
        fillers.append(s)
    wait_for(lambda: batcher.queue_rows == LEAVERS + 1)
    big = b"[" + b" " * (BIG_BODY_MB * 1024 * 1024 - 2) + b"]"
    seconds: list[float] = []
    statuses: list[int] = []
    for _ in range(REFUSED):
        s = connect(port)
        started = time.perf_counter()

        def upload(sock: socket.socket = s) -> None:
            # The server answers and closes without reading it: that is the point.
            with contextlib.suppress(OSError):
                sock.sendall(head("/get_reward", len(big)) + big)

        sender = threading.Thread(target=upload, daemon=True)
        sender.start()
        statuses.append(status_line(s))
        seconds.append(time.perf_counter() - started)
        s.close()
        sender.join(timeout=60)
    rows.append(
        {
            "scenario": "full_queue_503",
            "requests": REFUSED,
            "body_mb": BIG_BODY_MB,
            "statuses": sorted(set(statuses)),
            "p50_s": round(statistics.median(seconds), 4),
            "p99_s": round(max(seconds), 4),
        }
    )

    target.GATE.set()
    for s in [holder, *fillers]:
        status_line(s)
        s.close()
    m = metrics(port)
    count = {
        code: int(
            m.get(
                (
                    "safeladder_requests_total",
                    frozenset({("endpoint", "/get_reward"), ("status", code)}),
                ),
                0,
            )
        )
        for code in ("200", "408", "499", "500", "503")
    }
    dropped = int(
        m.get(("safeladder_dropped_rows_total", frozenset({("reason", "disconnect")})), 0)
    )
    rows.append(
        {
            "scenario": "disconnects",
            "clients": LEAVERS,
            "status_counts": count,
            "rows_scored_of_leavers": sum(target.HoldVerifier.calls) - 1 - (LEAVERS + 1),
            "dropped_disconnect": dropped,
        }
    )
    server.should_exit = True
    thread.join(timeout=30)

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps({**row, **env}) + "\n")
    for row in rows:
        print(json.dumps(row))
    print(f"appended to {RESULTS.relative_to(REPO)}", file=sys.stderr)


if __name__ == "__main__":
    main()
