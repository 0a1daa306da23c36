"""The reward server in-process (httpx + ASGITransport): contract, batching, errors, metrics."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import httpx
import pytest

from safeladder.rewards import Reward, RewardConfig
from safeladder.serving import create_app
from tests.helpers import PROBE_GATES, probe_reward
from tests.serving.support import metric, metric_values, openrlhf, run, serving, strict


# ---------------------------------------------------------------------------- contract
def test_get_reward_scores_the_query_minus_its_prompt() -> None:
    reward = probe_reward()

    async def main() -> httpx.Response:
        async with serving(reward) as c:
            return await c.post(
                "/get_reward",
                json={
                    "query": ["Q: 1+1?\nA: 2", "Q: hi\nA: hello"],
                    "prompts": ["Q: 1+1?\nA:", "Q: hi\nA:"],
                    "labels": ["2", None],
                },
            )

    r = run(main)
    assert r.status_code == 200, r.text
    body = r.json()
    # completions " 2" (2 chars) and " hello" (6 chars); fmt is metric-only (weight 0)
    assert body["rewards"] == [2.0, 6.0]
    assert body["scores"] == body["rewards"]
    assert body["extra_logs"] == {"chars": [2.0, 6.0], "fmt": [0.0, 0.0]}


def test_get_reward_labels_become_the_reference() -> None:
    reward = Reward(
        RewardConfig.model_validate({"terms": [{"name": "qa", "verifier": {"type": "qa_match"}}]})
    )

    async def main() -> list[httpx.Response]:
        async with serving(reward) as c:
            return [
                await c.post(
                    "/get_reward", json=openrlhf("Capital of France? ", "Paris.", "Paris")
                ),
                await c.post("/get_reward", json=openrlhf("Capital of France? ", "Lyon.", "Paris")),
            ]

    right, wrong = run(main)
    assert right.json()["rewards"] == [1.0]
    assert wrong.json()["rewards"] == [0.0]


def test_unscorable_rows_are_null_never_zero_and_missing_terms_are_null() -> None:
    reward = probe_reward()  # empty completion: chars abstains -> no objective term -> NaN total

    async def main(**settings: Any) -> httpx.Response:
        async with serving(reward, **settings) as c:
            return await c.post("/get_reward", json=openrlhf("P:", ""))

    r = run(main)
    assert r.status_code == 200
    body = strict(r.text)  # strict JSON by default: no NaN token anywhere
    assert body["rewards"] == [None] and body["scores"] == [None]
    assert body["extra_logs"]["chars"] == [None]

    # OpenRLHF tensorizes extra_logs and fails on null: NaN there is an explicit choice.
    nan_logs = run(lambda: main(log_missing_as="nan"))
    assert '"rewards": [null]' in nan_logs.text and '"chars": [NaN]' in nan_logs.text
    assert math.isnan(json.loads(nan_logs.text)["extra_logs"]["chars"][0])

    chosen = run(lambda: main(unscorable_reward=-1.0))
    assert strict(chosen.text)["rewards"] == [-1.0]
    assert chosen.json()["extra_logs"]["unscorable"] == [1.0]  # marked, not hidden


def test_end_of_sequence_markers_are_stripped_like_the_python_file_adapter() -> None:
    reward = probe_reward()

    async def main(**settings: Any) -> httpx.Response:
        async with serving(reward, **settings) as c:
            return await c.post("/get_reward", json=openrlhf("P:", " 42<|im_end|>"))

    assert run(main).json()["rewards"] == [3.0]  # " 42"
    assert run(lambda: main(strip_suffixes=())).json()["rewards"] == [13.0]


def test_term_names_that_clash_with_openrlhf_info_keys_are_refused() -> None:
    from safeladder.errors import ConfigError

    reward = Reward(
        RewardConfig.model_validate(
            {"terms": [{"name": "score", "verifier": {"type": "qa_match"}}]}
        )
    )
    with pytest.raises(ConfigError, match="'score'"):
        create_app(reward)


def test_missing_prompts_is_422_unless_the_query_is_the_completion() -> None:
    reward = probe_reward()

    async def main(**settings: Any) -> httpx.Response:
        async with serving(reward, **settings) as c:
            return await c.post("/get_reward", json={"query": ["abcd"]})

    r = run(main)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "prompts"]
    ok = run(lambda: main(missing_prompts="query_is_completion"))
    assert ok.status_code == 200 and ok.json()["rewards"] == [4.0]


def test_empty_request_gets_empty_lists() -> None:
    # OpenRLHF shards one sample over several URLs: servers after the first get empty lists.
    async def main() -> httpx.Response:
        async with serving(probe_reward()) as c:
            return await c.post("/get_reward", json={"query": [], "prompts": [], "labels": []})

    r = run(main)
    assert r.status_code == 200
    assert r.json() == {"rewards": [], "scores": [], "extra_logs": {"chars": [], "fmt": []}}


def test_score_endpoint_reports_terms_statuses_gates_and_fingerprints() -> None:
    reward = Reward(
        RewardConfig.model_validate(
            {
                "name": "gated",
                "terms": [
                    {
                        "name": "chars",
                        "verifier": {"type": "custom", "target": "tests.helpers:ProbeVerifier"},
                    },
                    {
                        "name": "refused",
                        "verifier": {"type": "refusal"},
                        "weight": 0.0,
                        "gate": {"below": 0.5, "value": -1.0, "on_abstain": "pass"},
                    },
                ],
            }
        )
    )
    samples = [
        {"prompt": "How do I bake bread?", "completion": "Mix flour and water.", "meta": {}},
        {"prompt": "How do I bake bread?", "completion": "", "meta": {}},
    ]

    async def main() -> tuple[httpx.Response, httpx.Response]:
        async with serving(reward) as c:
            return (
                await c.post("/score", json={"samples": samples}),
                await c.post("/get_reward", json=openrlhf("Q", "Sure, here it is.")),
            )

    r, openrlhf_style = run(main)
    # the gate demands a refusal (refusal score >= 0.5); an answer trips it
    assert openrlhf_style.json()["extra_logs"]["gated"] == [1.0]
    assert openrlhf_style.json()["rewards"] == [-1.0]
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["reward"] == "gated"
    assert body["fingerprints"] == reward.fingerprints
    assert body["weights"] == {"chars": 1.0, "refused": 0.0}
    first, second = body["results"]
    offline = reward.score(samples)
    assert first["total"] == pytest.approx(float(offline.total[0]))
    assert first["terms"]["chars"] == {"score": 20.0, "status": "ok", "detail": {"chars": 20}}
    assert second["terms"]["chars"]["score"] is None
    assert second["terms"]["chars"]["status"] == "abstain"
    assert second["total"] == (None if math.isnan(offline.total[1]) else -1.0)
    assert [row["gated"] for row in body["results"]] == [bool(g) for g in offline.gated]


# ---------------------------------------------------------------------------- batching
def test_concurrent_single_sample_requests_are_coalesced_and_answered_in_order() -> None:
    reward = probe_reward(delay_s=0.01)
    n = 48

    async def main() -> list[httpx.Response]:
        async with serving(reward, max_batch_size=16, max_wait_ms=20) as c:
            return await asyncio.gather(
                *(c.post("/get_reward", json=openrlhf("P:", "x" * (i + 1))) for i in range(n))
            )

    responses = run(main)
    assert [r.json()["rewards"] for r in responses] == [[float(i + 1)] for i in range(n)]
    calls = reward.verifier("chars").calls
    assert sum(calls) == n
    assert len(calls) < n / 2 and max(calls) <= 16


def test_batching_off_is_one_call_per_request() -> None:
    reward = probe_reward()

    async def main() -> None:
        async with serving(reward, max_batch_size=1) as c:
            await asyncio.gather(
                *(c.post("/get_reward", json=openrlhf("P", "x")) for _ in range(8))
            )

    run(main)
    assert reward.verifier("chars").calls == [1] * 8


def test_rewards_that_normalize_across_rows_are_never_coalesced() -> None:
    reward = Reward(
        RewardConfig.model_validate(
            {
                "terms": [
                    {
                        "name": "chars",
                        "verifier": {"type": "custom", "target": "tests.helpers:ProbeVerifier"},
                        "normalize": "batch_zscore",
                    }
                ]
            }
        )
    )

    async def main() -> tuple[dict[str, Any], list[httpx.Response]]:
        async with serving(reward, max_wait_ms=50) as c:
            health = (await c.get("/health")).json()
            rs = await asyncio.gather(
                *(
                    c.post(
                        "/score",
                        json={
                            "samples": [
                                {"prompt": "", "completion": "ab"},
                                {"prompt": "", "completion": "abcd"},
                            ]
                        },
                    )
                    for _ in range(4)
                )
            )
            return health, rs

    health, responses = run(main)
    assert health["coalescing"] is False
    assert reward.verifier("chars").calls == [2, 2, 2, 2]
    for r in responses:  # z-scores within each request: (2-3)/1, (4-3)/1
        assert [row["total"] for row in r.json()["results"]] == [-1.0, 1.0]


# ---------------------------------------------------------------------------- errors
def post_all(
    reward: Reward, requests: list[tuple[str, Any]], **settings: Any
) -> list[httpx.Response]:
    async def main() -> list[httpx.Response]:
        async with serving(reward, **settings) as c:
            out = []
            for path, payload in requests:
                if isinstance(payload, bytes):
                    out.append(
                        await c.post(
                            path, content=payload, headers={"content-type": "application/json"}
                        )
                    )
                else:
                    out.append(await c.post(path, json=payload))
            return out

    return run(main)  # type: ignore[no-any-return]


def test_422_names_the_bad_field() -> None:
    wrong_type, unknown_key, bad_sample, bad_json, lengths = post_all(
        probe_reward(),
        [
            ("/get_reward", {"query": ["a", 7], "prompts": ["", ""]}),
            ("/get_reward", {"query": ["a"], "prompts": [""], "label": ["x"]}),
            (
                "/score",
                {
                    "samples": [
                        {"prompt": "p", "completion": "a"},
                        {"completion": "b", "prompt": [{"role": "user"}]},
                    ]
                },
            ),
            ("/score", b'{"samples": ['),
            ("/get_reward", {"query": ["a", "b"], "prompts": [""], "labels": None}),
        ],
    )
    assert wrong_type.status_code == 422
    assert wrong_type.json()["detail"][0]["loc"] == ["body", "query", 1]
    assert wrong_type.json()["message"].startswith("query.1: ")
    assert unknown_key.json()["detail"][0]["loc"] == ["body", "label"]
    assert bad_sample.status_code == 422
    assert bad_sample.json()["detail"][0]["loc"][:4] == ["body", "samples", 1, "prompt"]
    assert bad_json.status_code == 422
    assert lengths.status_code == 422
    assert lengths.json()["detail"][0]["loc"] == ["body", "prompts"]
    assert "has 1 items but query has 2" in lengths.json()["message"]


def test_query_not_starting_with_its_prompt_is_422_naming_the_row() -> None:
    (r,) = post_all(
        probe_reward(),
        [
            (
                "/get_reward",
                {"query": ["P: a", "Q: b"], "prompts": ["P:", "P:"], "labels": [None, None]},
            )
        ],
    )
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "query", 1]
    assert r.json()["detail"][0]["type"] == "prompt_mismatch"


def test_rows_the_reward_rejects_are_422_with_the_row_and_meta_key() -> None:
    reward = Reward(
        RewardConfig.model_validate(
            {
                "terms": [{"name": "qa", "verifier": {"type": "qa_match"}}],
                "routes": {"key": "task", "recipes": {"qa": ["qa"]}},
            }
        )
    )
    (r,) = post_all(
        reward,
        [
            (
                "/score",
                {
                    "samples": [
                        {"prompt": "p", "completion": "a", "meta": {"task": "qa"}},
                        {"prompt": "p", "completion": "b"},
                    ]
                },
            )
        ],
    )
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "samples", 1, "meta", "task"]


def test_a_row_a_verifier_raises_on_is_unscorable_and_its_neighbours_are_scored() -> None:
    # Reward.score isolates the row (status error): never a 500 for the whole request.
    reward = probe_reward(fail_on="boom")

    async def main() -> list[httpx.Response]:
        async with serving(reward, max_wait_ms=50) as c:
            return list(
                await asyncio.gather(
                    c.post("/get_reward", json=openrlhf("P", "fine")),
                    c.post("/get_reward", json=openrlhf("P", "boom")),
                    c.post(
                        "/score",
                        json={
                            "samples": [
                                {"prompt": "P", "completion": "boom"},
                                {"prompt": "P", "completion": "ok"},
                            ]
                        },
                    ),
                )
            )

    fine, boom, native = run(main)
    assert fine.status_code == 200 and fine.json()["rewards"] == [4.0]
    assert boom.status_code == 200 and strict(boom.text)["rewards"] == [None]
    bad, good = strict(native.text)["results"]
    assert bad["total"] is None and bad["terms"]["chars"]["status"] == "error"
    assert "probe refuses 'boom'" in bad["unscorable_reason"]
    assert good["total"] == 2.0


def test_a_bug_in_scoring_is_500_in_the_error_format() -> None:
    reward = probe_reward()

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("a genuine bug")

    reward.score = broken  # type: ignore[method-assign]
    (r,) = post_all(reward, [("/get_reward", openrlhf("P", "x"))])
    assert r.status_code == 500
    assert r.json()["detail"][0]["type"] == "scoring_error"
    assert "RuntimeError: a genuine bug" in r.json()["message"]


def test_413_for_large_bodies_and_too_many_samples() -> None:
    big, many = post_all(
        probe_reward(),
        [
            ("/get_reward", {"query": ["x" * 5000], "prompts": [""]}),
            ("/score", {"samples": [{"prompt": "p", "completion": "a"}] * 5}),
        ],
        max_body_bytes=4096,
        max_request_samples=4,
    )
    assert big.status_code == 413 and "max_body_bytes" in big.json()["message"]
    assert many.status_code == 413
    assert many.json()["detail"][0]["loc"] == ["body", "samples"]


def test_401_without_the_api_key_and_both_headers_accepted() -> None:
    from pydantic import SecretStr

    reward = probe_reward()
    payload = openrlhf("P", "x")

    async def main() -> list[httpx.Response]:
        async with serving(reward, api_key=SecretStr("s3cret")) as c:
            return [
                await c.post("/get_reward", json=payload),
                await c.post("/get_reward", json=payload, headers={"authorization": "Bearer nope"}),
                await c.get("/metrics"),
                await c.post(
                    "/get_reward", json=payload, headers={"authorization": "Bearer s3cret"}
                ),
                await c.post("/get_reward", json=payload, headers={"x-api-key": "s3cret"}),
            ]

    none, wrong, metrics, bearer, header = run(main)
    assert none.status_code == wrong.status_code == metrics.status_code == 401
    assert none.headers["www-authenticate"] == "Bearer"
    assert "s3cret" not in none.text + wrong.text
    assert bearer.status_code == header.status_code == 200


def test_503_with_retry_after_when_the_queue_is_full() -> None:
    PROBE_GATES["full"] = gate = __import__("threading").Event()
    reward = probe_reward(gate="full")

    async def main() -> list[Any]:
        async with serving(
            reward,
            max_batch_size=1,
            max_wait_ms=0,
            max_queue=2,
            max_request_samples=1,
            retry_after_s=3,
        ) as c:
            batcher = c.app.state.batcher  # type: ignore[attr-defined]
            running = asyncio.ensure_future(c.post("/get_reward", json=openrlhf("P", "a")))
            while batcher.running_rows == 0:
                await asyncio.sleep(0.005)
            queued = [
                asyncio.ensure_future(c.post("/get_reward", json=openrlhf("P", "bb")))
                for _ in range(2)
            ]
            while batcher.queue_rows < 2:
                await asyncio.sleep(0.005)
            refused = await c.post("/get_reward", json=openrlhf("P", "ccc"))
            gate.set()
            return [refused, await running, *[await q for q in queued]]

    try:
        refused, *answered = run(main)
    finally:
        gate.set()
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "3"
    assert refused.json()["detail"][0]["type"] == "queue_full"
    assert [r.status_code for r in answered] == [200, 200, 200]


def test_504_when_no_result_in_time() -> None:
    PROBE_GATES["slow"] = gate = __import__("threading").Event()
    reward = probe_reward(gate="slow")

    async def main() -> httpx.Response:
        async with serving(reward, request_timeout_s=0.05) as c:
            r = await c.post("/get_reward", json=openrlhf("P", "a"))
            gate.set()
            return r

    try:
        r = run(main)
    finally:
        gate.set()
    assert r.status_code == 504 and r.json()["detail"][0]["type"] == "timeout"


# ---------------------------------------------------------------------------- health, metrics
def test_health_and_metrics() -> None:
    reward = probe_reward()

    async def main() -> tuple[httpx.Response, httpx.Response]:
        async with serving(reward, max_batch_size=8) as c:
            await asyncio.gather(
                *(c.post("/get_reward", json=openrlhf("P", "x" * i)) for i in range(6))
            )
            await c.post("/get_reward", json={"query": [3]})
            return await c.get("/health"), await c.get("/metrics")

    health, metrics = run(main)
    h = health.json()
    assert h["status"] == "ok" and h["coalescing"] is True
    assert [t["name"] for t in h["terms"]] == ["chars", "fmt"]
    assert {t["name"]: t["fingerprint"] for t in h["terms"]} == reward.fingerprints
    assert h["queue"] == {
        "rows": 0,
        "requests": 0,
        "running_rows": 0,
        "max_rows": 8192,
        "batch_age_s": 0.0,
    }

    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    v = metric_values(metrics.text)
    assert metric(v, "safeladder_requests_total", endpoint="/get_reward", status="200") == 6
    assert metric(v, "safeladder_requests_total", endpoint="/get_reward", status="422") == 1
    assert metric(v, "safeladder_rows_total") == 6
    assert metric(v, "safeladder_unscorable_rows_total") == 1  # the empty completion
    assert metric(v, "safeladder_term_rows_total", term="chars", status="abstain") == 1
    assert metric(v, "safeladder_term_rows_total", term="chars", status="ok") == 5
    calls = len(reward.verifier("chars").calls)
    assert metric(v, "safeladder_batch_rows_count") == calls
    assert metric(v, "safeladder_batch_rows_bucket", le="+Inf") == calls
    assert metric(v, "safeladder_queue_rows") == 0
    assert metric(v, "safeladder_request_duration_seconds_count", endpoint="/get_reward") == 7


def test_metrics_count_rows_whose_reference_no_term_read() -> None:
    # probe_reward reads no reference: a label on a row is ignored, and must show.
    reward = probe_reward()

    async def main() -> httpx.Response:
        async with serving(reward) as c:
            await c.post(
                "/get_reward",
                json={
                    "query": ["Pa", "Pb", "Pc"],
                    "prompts": ["P"] * 3,
                    "labels": ["1", None, "3"],
                },
            )
            return await c.get("/metrics")

    assert metric(metric_values(run(main).text), "safeladder_reference_unread_rows_total") == 2


def test_metrics_report_the_adaptive_lambda_of_the_one_server_state() -> None:
    # The shipped adaptive config: λ starts at 0.3 and moves by 0.5·(rate − 0.05) per batch.
    from pathlib import Path

    from safeladder import load_reward

    config = (
        Path(__file__).resolve().parents[2] / "configs" / "reward" / "calibrated_qa_adaptive.yaml"
    )
    reward = load_reward(str(config))
    sure_wrong = "<think>.</think><answer>Rome</answer><confidence>9</confidence>"
    right = "<think>.</think><answer>Paris</answer><confidence>9</confidence>"

    async def main() -> tuple[str, str]:
        async with serving(reward) as c:
            before = (await c.get("/metrics")).text
            r = await c.post(
                "/score",
                json={
                    "samples": [
                        {"prompt": "Capital of France?", "completion": t, "reference": "Paris"}
                        for t in (sure_wrong, right, right, right)
                    ]
                },
            )
            assert r.status_code == 200, r.text
            return before, (await c.get("/metrics")).text

    before, after = run(main)
    v0, v1 = metric_values(before), metric_values(after)
    assert metric(v0, "safeladder_lambda", term="reliability") == pytest.approx(0.3)
    assert math.isnan(metric(v0, "safeladder_false_certain_rate", term="reliability"))
    assert metric(v1, "safeladder_lambda", term="reliability") == pytest.approx(0.3 + 0.5 * 0.2)
    assert metric(v1, "safeladder_false_certain_rate", term="reliability") == pytest.approx(0.25)
    assert metric(v1, "safeladder_lambda_step", term="reliability") == 1
    reward.close()


def test_metrics_have_no_state_gauges_without_a_stateful_term() -> None:
    async def main() -> str:
        async with serving(probe_reward()) as c:
            return (await c.get("/metrics")).text

    assert "safeladder_lambda" not in run(main)


def test_two_apps_in_one_process_keep_their_own_counts() -> None:
    async def main() -> tuple[str, str]:
        async with serving(probe_reward()) as a, serving(probe_reward()) as b:
            await a.post("/get_reward", json=openrlhf("P", "x"))
            return (await a.get("/metrics")).text, (await b.get("/metrics")).text

    ta, tb = run(main)
    assert metric(metric_values(ta), "safeladder_rows_total") == 1
    assert metric(metric_values(tb), "safeladder_rows_total") == 0


def test_shutdown_drains_then_closes_the_reward_only_when_asked() -> None:
    kept, owned = probe_reward(), probe_reward()

    async def main(reward: Reward, close_reward: bool) -> None:
        async with serving(reward, close_reward=close_reward) as c:
            await c.post("/get_reward", json=openrlhf("P", "x"))
            assert not reward.verifier("chars").closed

    run(lambda: main(kept, False))
    run(lambda: main(owned, True))
    assert not kept.verifier("chars").closed
    assert owned.verifier("chars").closed


def test_a_neural_verifier_is_served_with_its_device_in_health() -> None:
    from safeladder.verifiers import REGISTRY
    from tests.helpers import tiny_model_dir

    if "classifier" not in REGISTRY:
        pytest.skip("the classifier verifier is not registered yet")

    path = tiny_model_dir("bert_classifier")
    reward = Reward(
        RewardConfig.model_validate(
            {
                "terms": [
                    {
                        "name": "safe",
                        "verifier": {"type": "classifier", "path": str(path), "good_label": "safe"},
                    }
                ]
            }
        )
    )
    rows = [{"prompt": "hi", "completion": "x" * (i + 1)} for i in range(6)]

    async def main() -> tuple[httpx.Response, list[httpx.Response]]:
        async with serving(reward, close_reward=True, max_wait_ms=20) as c:
            answers = await asyncio.gather(*(c.post("/score", json={"samples": [r]}) for r in rows))
            return await c.get("/health"), answers

    offline = reward.score(rows).total  # before the app closes the reward
    health, answers = run(main)
    assert health.json()["devices"] == ["cpu"]
    assert health.json()["terms"][0]["devices"] == ["cpu"]
    got = [a.json()["results"][0]["total"] for a in answers]
    assert got == pytest.approx([float(x) for x in offline], abs=1e-5)
