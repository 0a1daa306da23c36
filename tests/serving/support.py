"""Helpers shared by the server tests (not a test module): the app in-process with a client,
a real uvicorn on loopback, a loop runner, OpenRLHF's payload, strict JSON, and parsed
/metrics."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
import pytest

from safeladder.rewards import Reward
from safeladder.serving import ServeSettings, create_app

MetricValues = dict[tuple[str, frozenset[tuple[str, str]]], float]


@asynccontextmanager
async def serving(
    reward: Reward, close_reward: bool = False, **settings: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan (so shutdown drains the batcher), and a client for it."""
    app = create_app(reward, ServeSettings(**settings), close_reward=close_reward)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c,
    ):
        c.app = app  # type: ignore[attr-defined]
        yield c


@contextmanager
def running_server(reward: Reward, **settings: Any) -> Iterator[tuple[str, Any, Any]]:
    """uvicorn in a thread on a free loopback port; yields (base url, server, app)."""
    import uvicorn

    app = create_app(reward, ServeSettings(**settings))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", server, app
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        assert not thread.is_alive(), "uvicorn did not stop"


def run(fn: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(asyncio.wait_for(fn(), timeout=30))


def openrlhf(prompt: str, completion: str, label: Any = None) -> dict[str, Any]:
    """One-sample payload exactly as OpenRLHF's SingleTurnAgentExecutor sends it."""
    return {"query": [prompt + completion], "prompts": [prompt], "labels": [label]}


def strict(text: str) -> Any:
    """Parse JSON refusing the non-standard NaN / Infinity tokens."""
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON token {c}"))


def metric_values(text: str) -> MetricValues:
    """Every sample of a Prometheus text exposition, parsed by prometheus_client's own parser
    (which raises on malformed text): ``(name, labels) -> value``."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def metric(values: MetricValues, name: str, **labels: str) -> float:
    """One sample's value; 0 when the series was never created (a counter never incremented)."""
    return values.get((name, frozenset(labels.items())), 0.0)
