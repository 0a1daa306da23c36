"""One real uvicorn on loopback: many concurrent one-sample clients, then a graceful shutdown."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import pytest

from tests.helpers import PROBE_GATES, probe_reward
from tests.serving.support import running_server

uvicorn = pytest.importorskip("uvicorn")


def test_64_concurrent_single_sample_clients_all_answered_correctly() -> None:
    reward = probe_reward(delay_s=0.002)  # a little per-call cost, as a batched model has
    clients, per_client = 64, 2

    async def client(c: httpx.AsyncClient, k: int) -> list[tuple[float | None, float]]:
        out = []
        for j in range(per_client):
            completion = "x" * (1 + (k * per_client + j) % 97)
            r = await c.post(
                "/get_reward",
                json={"query": ["Q? " + completion], "prompts": ["Q? "], "labels": [None]},
            )
            assert r.status_code == 200, r.text
            out.append((r.json()["rewards"][0], float(len(completion))))
        return out

    async def main(url: str) -> list[list[tuple[float | None, float]]]:
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as c:
            return await asyncio.gather(*(client(c, k) for k in range(clients)))

    with running_server(reward, max_batch_size=64, max_wait_ms=5) as (url, _server, _app):
        results = asyncio.run(main(url))
    pairs = [p for per in results for p in per]
    assert len(pairs) == clients * per_client
    assert all(got == want for got, want in pairs)
    calls = reward.verifier("chars").calls
    assert sum(calls) == clients * per_client
    # Requests from different connections shared calls (httpx's client is too slow here to
    # promise more: tests/serving/test_app.py checks how much coalescing happens).
    assert len(calls) < clients * per_client


def test_graceful_shutdown_answers_in_flight_requests() -> None:
    PROBE_GATES["shutdown"] = gate = threading.Event()
    reward = probe_reward(gate="shutdown")
    n = 12

    async def main(url: str, server: Any, app: Any) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as c:
            tasks = [
                asyncio.ensure_future(
                    c.post("/get_reward", json={"query": ["P" + "y" * (i + 1)], "prompts": ["P"]})
                )
                for i in range(n)
            ]
            batcher = app.state.batcher
            deadline = time.monotonic() + 10
            # one batch held at the gate, the rest queued behind it
            while batcher.running_rows + batcher.queue_rows < n:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            server.should_exit = True  # what SIGTERM / Ctrl-C does
            await asyncio.sleep(0.2)
            gate.set()
            return await asyncio.gather(*tasks)

    try:
        with running_server(reward, max_batch_size=4, max_wait_ms=0) as (url, server, app):
            responses = asyncio.run(main(url, server, app))
            batcher = app.state.batcher
    finally:
        gate.set()
    assert [r.status_code for r in responses] == [200] * n
    assert [r.json()["rewards"] for r in responses] == [[float(i + 1)] for i in range(n)]
    assert batcher.closing and batcher.queue_rows == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/health", timeout=2)
