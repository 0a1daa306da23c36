"""Transport-level behaviour over a real uvicorn on loopback, with raw sockets: clients that
disconnect, clients that stall mid-body, and a full queue refusing before the body is read.

Socket timeouts here are failure guards (a server that holds the connection forever would hang
the test), not speed assertions."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from safeladder.rewards import Reward
from tests.helpers import PROBE_GATES, probe_reward
from tests.serving.support import metric, metric_values, running_server

uvicorn = pytest.importorskip("uvicorn")

GUARD_S = 15.0  # longest any socket read may block before the test fails


@contextmanager
def serving_on_port(reward: Reward, **settings: Any) -> Iterator[tuple[int, Any]]:
    """``running_server``, yielding (port, app) for raw sockets."""
    with running_server(reward, **settings) as (url, _server, app):
        yield int(url.rsplit(":", 1)[1]), app


def connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=GUARD_S)
    s.settimeout(GUARD_S)
    return s


def head(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def read_response(s: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one HTTP/1.1 response (Content-Length framed)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    raw_head, body = data.split(b"\r\n\r\n", 1)
    lines = raw_head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = s.recv(65536)
        assert chunk, "connection closed mid-body"
        body += chunk
    return status, headers, body


def closed_by_server(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


def wait_until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + GUARD_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def payload(completion: str) -> bytes:
    return json.dumps({"query": ["P" + completion], "prompts": ["P"], "labels": [None]}).encode()


def get_metrics(port: int) -> Any:
    return metric_values(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=GUARD_S).text)


# ---------------------------------------------------------------------------- disconnects
def test_disconnected_clients_are_499_not_500_and_their_queued_rows_are_never_scored() -> None:
    PROBE_GATES["gone"] = gate = threading.Event()
    reward = probe_reward(gate="gone")
    try:
        with serving_on_port(reward, max_batch_size=1, max_wait_ms=0) as (port, app):
            batcher = app.state.batcher
            holder = connect(port)  # its row runs and holds the scoring thread at the gate
            holder.sendall(head("/get_reward", len(payload("a"))) + payload("a"))
            wait_until(lambda: batcher.running_rows == 1, "the first batch to start")
            leavers = []
            for i in range(10):  # complete requests, queued behind the gate, then abandoned
                s = connect(port)
                body = payload("x" * (i + 2))
                s.sendall(head("/get_reward", len(body)) + body)
                leavers.append(s)
            wait_until(lambda: batcher.queue_rows == 10, "10 queued requests")
            half = connect(port)  # leaves in the middle of its body
            half.sendall(head("/get_reward", 100) + b'{"query": [')
            time.sleep(0.1)
            for s in [*leavers, half]:
                s.close()
            wait_until(lambda: batcher.queue_rows == 0, "the abandoned rows to leave the queue")
            gate.set()
            status, _headers, _body = read_response(holder)
            holder.close()
            wait_until(
                lambda: (
                    metric(
                        get_metrics(port),
                        "safeladder_requests_total",
                        endpoint="/get_reward",
                        status="499",
                    )
                    == 11
                ),
                "the disconnects to be counted",
            )
            values = get_metrics(port)
    finally:
        gate.set()
    assert status == 200
    assert reward.verifier("chars").calls == [1]  # only the row that was running
    assert metric(values, "safeladder_requests_total", endpoint="/get_reward", status="500") == 0
    assert metric(values, "safeladder_dropped_rows_total", reason="disconnect") == 10


# ---------------------------------------------------------------------------- slow clients
def test_a_client_that_stalls_mid_body_gets_408_and_is_let_go() -> None:
    with serving_on_port(probe_reward(), body_timeout_s=0.5) as (port, _app):
        stalled = [connect(port) for _ in range(20)]
        for s in stalled:
            s.sendall(head("/get_reward", 200) + b'{"query": ["P')  # and nothing more
        answers = [read_response(s) for s in stalled]
        closed = [closed_by_server(s) for s in stalled]
        for s in stalled:
            s.close()
        values = get_metrics(port)
    for status, headers, body in answers:
        assert status == 408
        assert headers["connection"] == "close"
        assert json.loads(body)["detail"][0]["type"] == "body_timeout"
    assert all(closed)
    assert metric(values, "safeladder_requests_total", endpoint="/get_reward", status="408") == 20


# ---------------------------------------------------------------------------- 503 before body
def test_a_full_queue_refuses_before_reading_the_body() -> None:
    PROBE_GATES["full_early"] = gate = threading.Event()
    reward = probe_reward(gate="full_early")
    try:
        with serving_on_port(
            reward, max_batch_size=1, max_wait_ms=0, max_queue=1, max_request_samples=1
        ) as (port, app):
            batcher = app.state.batcher
            running, queued = connect(port), connect(port)
            running.sendall(head("/get_reward", len(payload("a"))) + payload("a"))
            wait_until(lambda: batcher.running_rows == 1, "the first batch to start")
            queued.sendall(head("/get_reward", len(payload("bb"))) + payload("bb"))
            wait_until(lambda: batcher.queue_rows == 1, "a full queue")
            big = connect(port)
            # 8 MB announced, not one byte of it sent: the answer must not wait for it.
            big.sendall(head("/get_reward", 8 * 1024 * 1024))
            status, headers, body = read_response(big)
            closed = closed_by_server(big)
            big.close()
            gate.set()
            answered = [read_response(s)[0] for s in (running, queued)]
            for s in (running, queued):
                s.close()
    finally:
        gate.set()
    assert status == 503
    assert headers["retry-after"] == "1" and headers["connection"] == "close"
    assert json.loads(body)["detail"][0]["type"] == "queue_full"
    assert closed
    assert answered == [200, 200]
