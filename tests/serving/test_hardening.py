"""The server as production software, in-process (httpx + ASGITransport): one error format for
bodies that do not parse, documented in OpenAPI; strict JSON; text that cannot be encoded is a
422 naming the field; a missing prompt is a bad row; stale queued rows are dropped and counted;
a stuck scorer shows in /health; /docs works without a network.

Transport-level behaviour (disconnects, slow clients, 503 before the body) is in
``test_transport.py``, over a real uvicorn."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest

from safeladder.rewards import Reward, RewardConfig
from tests.helpers import PROBE_GATES, probe_reward
from tests.serving.support import metric, metric_values, openrlhf, run, serving, strict


def post_raw(
    reward: Reward, path: str, bodies: list[bytes], **settings: Any
) -> list[httpx.Response]:
    async def main() -> list[httpx.Response]:
        async with serving(reward, **settings) as c:
            return [
                await c.post(path, content=b, headers={"content-type": "application/json"})
                for b in bodies
            ]

    return run(main)  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------- 400, OpenAPI
def test_unparseable_bodies_are_400_in_the_error_format() -> None:
    deep = b'{"query": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    long_int = b'{"query": ["a"], "prompts": [""], "labels": [' + b"7" * 5000 + b"]}"
    not_utf8 = b'{"query": ["\xff\xfe"], "prompts": [""]}'
    responses = post_raw(probe_reward(), "/get_reward", [not_utf8, deep, long_int])
    causes = ["UnicodeDecodeError", "nested too deeply", "digits"]
    for r, cause in zip(responses, causes, strict=True):
        assert r.status_code == 400, r.text
        body = strict(r.text)
        assert body["detail"] == [
            {"loc": ["body"], "msg": body["detail"][0]["msg"], "type": "invalid_body"}
        ]
        assert body["message"].startswith("the body is not parseable JSON")
        assert cause in body["message"]


def test_openapi_documents_the_error_responses() -> None:
    async def main() -> dict[str, Any]:
        async with serving(probe_reward()) as c:
            return (await c.get("/openapi.json")).json()  # type: ignore[no-any-return]

    spec = run(main)
    error_ref = "#/components/schemas/ErrorResponse"
    for path in ("/get_reward", "/score"):
        responses = spec["paths"][path]["post"]["responses"]
        for code in ("400", "408", "413", "422", "503", "504"):
            assert code in responses, (path, code)
            schema = responses[code]["content"]["application/json"]["schema"]
            assert schema == {"$ref": error_ref}, (path, code, schema)
    assert "503" in spec["paths"]["/health"]["get"]["responses"]


def test_unknown_paths_answer_in_the_error_format() -> None:
    async def main() -> httpx.Response:
        async with serving(probe_reward()) as c:
            return await c.get("/nope")

    r = run(main)
    assert r.status_code == 404 and r.json()["detail"][0]["type"] == "http_error"


# ---------------------------------------------------------------------------- 422
def test_text_that_cannot_be_encoded_is_422_naming_the_field() -> None:
    good = ["Pa", "Pb", "Pc", "Pd"]
    lone = '"P\\ud800"'  # JSON escape of a lone surrogate: json.loads accepts it
    query = (
        b'{"query": ["Pa", "Pb", "Pc", ' + lone.encode() + b'], "prompts": ["P", "P", "P", "P"]}'
    )
    label = b'{"query": ["Pa"], "prompts": ["P"], "labels": [{"x": ["ok", "\\udfff"]}]}'
    sample = (
        b'{"samples": [{"prompt": "p", "completion": "fine"}, '
        b'{"prompt": "p", "completion": "bad \\ud83d end"}]}'
    )
    meta_key = b'{"samples": [{"prompt": "p", "completion": "c", "meta": {"\\udc80": 1}}]}'
    pair = b'{"query": ["P\\ud83d\\ude00"], "prompts": ["P"]}'  # a valid surrogate pair: fine
    reward = probe_reward()

    async def main() -> list[httpx.Response]:
        headers = {"content-type": "application/json"}
        async with serving(reward) as c:
            out = [await c.post("/get_reward", content=b, headers=headers) for b in (query, label)]
            out += [await c.post("/score", content=b, headers=headers) for b in (sample, meta_key)]
            out.append(await c.post("/get_reward", content=pair, headers=headers))
            out.append(await c.post("/get_reward", json={"query": good, "prompts": ["P"] * 4}))
            return out

    q, lab, s, m, ok_pair, after = run(main)
    assert q.status_code == 422, q.text
    assert q.json()["detail"][0]["loc"] == ["body", "query", 3]
    assert q.json()["detail"][0]["type"] == "unencodable_text"
    assert q.json()["message"].startswith("query.3: text cannot be encoded")
    assert lab.status_code == 422 and lab.json()["detail"][0]["loc"] == [
        "body",
        "labels",
        0,
        "x",
        1,
    ]
    assert s.status_code == 422
    assert s.json()["detail"][0]["loc"] == ["body", "samples", 1, "completion"]
    assert m.status_code == 422 and m.json()["detail"][0]["loc"][:4] == [
        "body",
        "samples",
        0,
        "meta",
    ]
    assert ok_pair.status_code == 200 and ok_pair.json()["rewards"] == [1.0]  # one character
    assert after.status_code == 200 and after.json()["rewards"] == [1.0] * 4
    assert reward.verifier("chars").calls == [1, 4]  # the refused requests never reached it


def test_a_score_row_without_a_prompt_is_422_naming_it() -> None:
    (r,) = post_raw(
        probe_reward(),
        "/score",
        [
            json.dumps(
                {"samples": [{"prompt": "p", "completion": "a"}, {"completion": "b"}]}
            ).encode()
        ],
    )
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "samples", 1, "prompt"]


# ---------------------------------------------------------------------------- strict JSON
def _abstaining_reward() -> Reward:
    # Its only term abstains on every row (empty completion): every total is NaN.
    return Reward(
        RewardConfig.model_validate(
            {
                "terms": [
                    {
                        "name": "chars",
                        "verifier": {"type": "custom", "target": "tests.helpers:ProbeVerifier"},
                    }
                ]
            }
        )
    )


def test_every_answer_is_strict_json_and_unscorable_is_null_or_the_chosen_value() -> None:
    reward = _abstaining_reward()

    async def main(**settings: Any) -> list[httpx.Response]:
        async with serving(reward, **settings) as c:
            return [
                await c.post("/get_reward", json=openrlhf("P", "")),
                await c.post("/score", json={"samples": [{"prompt": "P", "completion": ""}]}),
                await c.get("/health"),
                await c.post("/get_reward", json={"query": [1]}),
            ]

    reward_r, score_r, health_r, error_r = run(main)
    got = strict(reward_r.text)
    assert got == {"rewards": [None], "scores": [None], "extra_logs": {"chars": [None]}}
    row = strict(score_r.text)["results"][0]
    assert row["total"] is None and row["terms"]["chars"]["score"] is None
    assert row["unscorable_reason"]
    strict(health_r.text)
    strict(error_r.text)

    (chosen, *_rest) = run(lambda: main(unscorable_reward=-1.0))
    assert strict(chosen.text)["rewards"] == [-1.0]


@pytest.mark.slow
def test_default_reward_never_answers_zero_for_a_math_row_without_a_label() -> None:
    from safeladder import load_reward

    reward = load_reward(None)

    async def main(**settings: Any) -> httpx.Response:
        async with serving(reward, default_meta={"task": "math"}, **settings) as c:
            return await c.post(
                "/get_reward",
                json={"query": ["2+2? The answer is 4."], "prompts": ["2+2?"], "labels": [None]},
            )

    try:
        assert strict(run(main).text)["rewards"] == [None]
        assert strict(run(lambda: main(unscorable_reward=-1.0)).text)["rewards"] == [-1.0]
    finally:
        reward.close()


# ---------------------------------------------------------------------------- stale rows, stuck
def test_queued_rows_of_a_timed_out_request_are_dropped_and_counted() -> None:
    PROBE_GATES["stale"] = gate = threading.Event()
    reward = probe_reward(gate="stale")

    async def main() -> tuple[list[httpx.Response], httpx.Response]:
        async with serving(reward, max_batch_size=1, max_wait_ms=0, request_timeout_s=0.3) as c:
            batcher = c.app.state.batcher  # type: ignore[attr-defined]
            first = asyncio.ensure_future(c.post("/get_reward", json=openrlhf("P", "a")))
            while batcher.running_rows == 0:
                await asyncio.sleep(0.005)
            queued = await c.post("/get_reward", json=openrlhf("P", "bb"))  # waits, times out
            gate.set()
            return [await first, queued], await c.get("/metrics")

    try:
        (first, queued), metrics = run(main)
    finally:
        gate.set()
    assert queued.status_code == 504
    assert reward.verifier("chars").calls == [1]  # "bb" never reached Reward.score
    values = metric_values(metrics.text)
    assert metric(values, "safeladder_dropped_rows_total", reason="timeout") == 1
    assert first.status_code in (200, 504)


def test_health_reports_a_stuck_scorer() -> None:
    PROBE_GATES["stuck"] = gate = threading.Event()
    reward = probe_reward(gate="stuck")

    async def main() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        async with serving(reward, stuck_batch_s=0.05) as c:
            batcher = c.app.state.batcher  # type: ignore[attr-defined]
            pending = asyncio.ensure_future(c.post("/get_reward", json=openrlhf("P", "a")))
            while batcher.batch_age_s <= 0.1:
                await asyncio.sleep(0.01)
            stuck = await c.get("/health")
            metrics = await c.get("/metrics")
            gate.set()
            await pending
            return stuck, metrics, await c.get("/health")

    try:
        stuck, metrics, healthy = run(main)
    finally:
        gate.set()
    assert stuck.status_code == 503
    assert stuck.json()["status"] == "degraded"
    assert stuck.json()["queue"]["batch_age_s"] > 0.05
    assert metric(metric_values(metrics.text), "safeladder_batch_age_seconds") > 0.05
    assert healthy.status_code == 200 and healthy.json()["status"] == "ok"


# ---------------------------------------------------------------------------- /docs offline
_URL_ATTR = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url:\s*["']([^"']+)["']""")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_reference_no_external_url_and_their_assets_are_served(page: str) -> None:
    async def main() -> tuple[httpx.Response, dict[str, httpx.Response]]:
        async with serving(probe_reward()) as c:
            html = await c.get(page)
            refs = {a or b for a, b in _URL_ATTR.findall(html.text)}
            return html, {ref: await c.get(urljoin(f"http://t{page}", ref)) for ref in refs}

    html, assets = run(main)
    assert html.status_code == 200
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html.text, re.I), html.text
    # the page's script, its stylesheet (Swagger UI) and the OpenAPI document are all served
    assert any(ref.endswith(".js") for ref in assets)
    assert any(ref.endswith("openapi.json") for ref in assets) or "openapi.json" in html.text
    for ref, r in assets.items():
        assert r.status_code == 200 and r.content, ref


@pytest.mark.slow
def test_get_reward_with_the_default_reward_uses_the_labels() -> None:
    """OpenRLHF's exact payload, the default reward, no settings: right labels outscore wrong
    ones (before: 0 of 32 rows differed; "2+2? The answer is 4." scored P(safe) = 0.82)."""
    from safeladder import load_reward
    from tests.helpers import read_shared

    rows = read_shared("gsm8k_train.jsonl.gz", 32)
    reward = load_reward(None)

    async def main() -> list[tuple[Any, Any]]:
        async with serving(reward) as c:
            posts = []
            for i, row in enumerate(rows):
                prompt = f"<|im_start|>user\nQ{i}<|im_end|>\n<|im_start|>assistant\n"
                for label in (row["answer"], "123456789"):
                    posts.append(
                        c.post("/get_reward", json=openrlhf(prompt, row["solution"], label))
                    )
            got = [strict(r.text)["rewards"][0] for r in await asyncio.gather(*posts)]
            return list(zip(got[::2], got[1::2], strict=True))

    async def one() -> Any:
        async with serving(reward) as c:
            r = await c.post("/get_reward", json=openrlhf("2+2? ", "The answer is 4.", "4"))
            return strict(r.text)

    try:
        pairs = run(main)
        assert sum(r > w for r, w in pairs) == 32
        body = run(one)
        assert body["rewards"] == [1.0] and body["extra_logs"]["answer_correct"] == [1.0]
    finally:
        reward.close()
