"""/get_reward's fast path: the guard answers a body sent as plain ``application/json`` itself,
without FastAPI's layers. Every answer must be the one the FastAPI route gives for the same
body (the route still answers any other body: ``application/<x>+json``, which FastAPI also
parses as JSON, reaches it untouched)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from safeladder.serving.schemas import GetRewardRequest
from safeladder.serving.wire import json_request
from tests.helpers import probe_reward
from tests.serving.support import metric, metric_values, run, serving, strict

FAST = "application/json"
ROUTE = "application/vnd.safeladder+json"  # JSON to FastAPI, not to the fast path

#: (what, body): bodies whose answers come from every stage of /get_reward.
BODIES: list[tuple[str, bytes]] = [
    ("one sample", b'{"query": ["Q: hi\\nA: hello"], "prompts": ["Q: hi\\nA:"], "labels": [null]}'),
    (
        "two samples with labels",
        json.dumps(
            {
                "query": ["Q: 1+1?\nA: 2", "Q: x\nA: <think>y</think> z"],
                "prompts": ["Q: 1+1?\nA:", "Q: x\nA:"],
                "labels": ["2", 3],
            }
        ).encode(),
    ),
    ("empty lists", b'{"query": [], "prompts": [], "labels": []}'),
    ("no prompts (422)", b'{"query": ["abc"]}'),
    ("prompt not a prefix (422)", b'{"query": ["abc"], "prompts": ["xyz"]}'),
    ("lengths differ (422)", b'{"query": ["abc", "abd"], "prompts": ["a"]}'),
    ("labels' length differs (422)", b'{"query": ["abc"], "prompts": ["a"], "labels": [1, 2]}'),
    ("too many samples (413)", b'{"query": ["a", "b", "c"], "prompts": ["", "", ""]}'),
    ("lone surrogate (422)", b'{"query": ["a\\ud800"], "prompts": ["a"]}'),
    (
        "lone surrogate in UTF-16 (422)",
        '{"query": ["a\\ud800"], "prompts": ["a"]}'.encode("utf-16-le"),
    ),
    ("raw surrogate bytes (422)", b'{"query": ["a\xed\xa0\x80"], "prompts": ["a"]}'),
    ("wrong type (422)", b'{"query": [1], "prompts": ["a"]}'),
    ("unknown key (422)", b'{"query": ["a"], "prompts": ["a"], "extra": 1}'),
    ("not JSON (422)", b'{"query": ['),
    ("not UTF-8 (400)", b'{"query": ["\xff"]}'),
    ("a bad image (422)", b'{"query": ["a"], "prompts": ["a"], "images": [["http://x/y.png"]]}'),
]


def _both(body: bytes, **settings: Any) -> tuple[httpx.Response, httpx.Response]:
    async def main() -> tuple[httpx.Response, httpx.Response]:
        async with serving(probe_reward(), max_request_samples=2, **settings) as c:
            fast = await c.post("/get_reward", content=body, headers={"content-type": FAST})
            route = await c.post("/get_reward", content=body, headers={"content-type": ROUTE})
            return fast, route

    out: tuple[httpx.Response, httpx.Response] = run(main)
    return out


@pytest.mark.parametrize(("what", "body"), BODIES, ids=[w for w, _ in BODIES])
def test_the_fast_path_answers_exactly_as_the_fastapi_route(what: str, body: bytes) -> None:
    fast, route = _both(body)
    expected = int(what[-4:-1]) if what.endswith(")") else 200  # "... (422)"
    assert fast.status_code == route.status_code == expected, (what, fast.text, route.text)
    assert strict(fast.text) == strict(route.text), what
    assert fast.headers["content-type"] == route.headers["content-type"] == "application/json"
    assert fast.headers["content-length"] == str(len(fast.content))


def test_the_fast_path_follows_the_unscorable_and_missing_log_settings_too() -> None:
    body = b'{"query": ["Q: hi\\nA: hello"], "prompts": ["Q: hi\\nA:"]}'
    fast, route = _both(body, unscorable_reward=-1.0, log_missing_as="nan")
    assert fast.status_code == route.status_code == 200
    assert fast.text == route.text


def test_a_json_body_sent_as_another_type_still_gets_fastapis_answer() -> None:
    # FastAPI does not parse a text/plain body as JSON: the model refuses the raw bytes (422).
    async def main() -> httpx.Response:
        async with serving(probe_reward()) as c:
            return await c.post(
                "/get_reward",
                content=b'{"query": ["ab"], "prompts": ["a"]}',
                headers={"content-type": "text/plain"},
            )

    r = run(main)
    assert r.status_code == 422
    assert strict(r.text)["detail"][0]["loc"] == ["body"]


def test_requests_answered_by_the_fast_path_are_counted_in_metrics() -> None:
    async def main() -> str:
        async with serving(probe_reward()) as c:
            for _ in range(3):
                r = await c.post("/get_reward", json={"query": ["ab"], "prompts": ["a"]})
                assert r.status_code == 200
            r = await c.post("/get_reward", json={"query": ["ab"], "prompts": ["x"]})
            assert r.status_code == 422
            return (await c.get("/metrics")).text

    values = metric_values(run(main))
    assert metric(values, "safeladder_requests_total", endpoint="/get_reward", status="200") == 3
    assert metric(values, "safeladder_requests_total", endpoint="/get_reward", status="422") == 1
    assert metric(values, "safeladder_rows_total") == 3


@pytest.mark.parametrize(
    ("content_type", "parsed"),
    [
        (b"application/json", True),
        (b"Application/JSON; charset=utf-8", True),
        (b"application/vnd.safeladder+json", False),  # left to FastAPI, which parses it too
        (b"text/plain", False),
        (None, False),
    ],
)
def test_json_request_takes_only_plain_json_bodies(
    content_type: bytes | None, parsed: bool
) -> None:
    headers = [(b"content-type", content_type)] if content_type else []
    got = json_request({"headers": headers}, b'{"query": ["a"]}', GetRewardRequest)
    assert (got == GetRewardRequest(query=["a"])) if parsed else got is None


@pytest.mark.parametrize("body", [b"", b"{", b'{"query": "a"}', b"[1]", b'{"query": ["\xff"]}'])
def test_json_request_leaves_bodies_it_cannot_take_to_fastapi(body: bytes) -> None:
    assert (
        json_request({"headers": [(b"content-type", b"application/json")]}, body, GetRewardRequest)
        is None
    )
