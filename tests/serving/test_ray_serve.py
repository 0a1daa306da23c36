"""``safeladder serve --ray``: two Ray Serve replicas on a 2-CPU local Ray, on loopback.

The answers are checked against the offline ``Reward.score`` of the same rows (the server's
own tests pin its wire format); starting Ray and two replicas costs ~15 s, so one test does
the whole round trip.
"""

from __future__ import annotations

import math
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from safeladder.cli.app import app
from safeladder.errors import ConfigError
from safeladder.rewards import Reward, parse_reward_config
from safeladder.serving import ServeSettings
from safeladder.types import Sample
from tests.helpers import local_ray_cluster

runner = CliRunner()

try:
    import ray  # noqa: F401
    from ray import serve as _serve  # noqa: F401

    HAVE_RAY_SERVE = True
except ImportError:
    HAVE_RAY_SERVE = False

# Rule verifiers only: nothing to download, no process pools.
CONFIG = {
    "name": "qa_and_format",
    "terms": [
        {"name": "qa", "verifier": {"type": "qa_match", "mode": "exact"}, "weight": 1.0},
        {"name": "fmt", "verifier": {"type": "think_format"}, "weight": 0.5},
    ],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    if not HAVE_RAY_SERVE:
        pytest.skip("Ray Serve is an optional extra (safeladder[ray])")
    with local_ray_cluster() as ray:
        yield ray


def close(a: float | None, b: float) -> bool:
    """Equal within 1e-6; a missing value (null, or NaN in extra_logs) matches NaN."""
    if math.isnan(b):
        return a is None or math.isnan(a)
    return a is not None and abs(a - b) <= 1e-6


@pytest.mark.slow
def test_two_replicas_answer_as_the_offline_reward(local_ray: Any) -> None:
    from ray import serve

    from safeladder.serving.ray_serve import RayServeOptions, start_ray_serve, stop_ray_serve

    cfg = parse_reward_config(CONFIG)
    settings = ServeSettings(port=free_port(), max_wait_ms=2.0)
    options = RayServeOptions(replicas=2)
    url = start_ray_serve(cfg, settings, options)
    try:
        assert url == f"http://127.0.0.1:{settings.port}"
        status = serve.status().applications[options.app_name]
        assert status.deployments["SafeladderReward"].replica_states == {"RUNNING": 2}

        rows = [
            ("Q: capital of France? ", "<think>easy</think>Paris", "Paris"),
            ("Q: capital of Italy? ", "Milan", "Rome"),
            ("Q: 2+2? ", "<think>add</think>4", "4"),
            ("Q: colour of the sky? ", "blue", None),
        ]
        offline = Reward(cfg)
        try:
            expected = offline.score(
                [Sample(prompt=p, completion=c, reference=r) for p, c, r in rows]
            )
            fingerprint = offline.fingerprint
        finally:
            offline.close()

        with httpx.Client(base_url=url, timeout=30.0) as client:
            # OpenRLHF's shape, one sample per request, as its client sends them
            for i, (p, c, r) in enumerate(rows):
                res = client.post(
                    "/get_reward", json={"query": [p + c], "prompts": [p], "labels": [r]}
                )
                assert res.status_code == 200, res.text
                body = res.json()
                assert close(body["rewards"][0], float(expected.total[i]))
                for t in ("qa", "fmt"):
                    assert close(body["extra_logs"][t][0], float(expected.terms[t].scores[i]))
            # the native endpoint, all rows in one request
            res = client.post(
                "/score",
                json={
                    "samples": [{"prompt": p, "completion": c, "reference": r} for p, c, r in rows]
                },
            )
            assert res.status_code == 200, res.text
            body = res.json()
            assert body["reward_fingerprint"] == fingerprint
            for i, result in enumerate(body["results"]):
                assert close(result["total"], float(expected.total[i]))
                assert result["terms"]["qa"]["status"] == str(expected.terms["qa"].status[i])
            # the app's own validation runs inside the replica
            bad = client.post("/get_reward", json={"query": ["A: x"], "prompts": ["Q: "]})
            assert bad.status_code == 422 and "query" in bad.text
            health = client.get("/health").json()
            assert health["reward"] == "qa_and_format" and health["status"] == "ok"
            assert "safeladder_requests_total" in client.get("/metrics").text
        # Ray keeps one proxy address per cluster: another port would never answer.
        other = ServeSettings(port=free_port())
        with pytest.raises(ConfigError, match=f"proxy on 127.0.0.1:{settings.port}, not"):
            start_ray_serve(cfg, other, RayServeOptions(replicas=1, app_name="second"))
        assert "second" not in serve.status().applications
    finally:
        stop_ray_serve(options.app_name, shutdown=True)
    with pytest.raises(httpx.TransportError):  # the proxy is gone
        httpx.get(f"{url}/health", timeout=2.0)


def test_without_ray_serve_the_error_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip("fastapi")
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setitem(sys.modules, "ray.serve", None)
    cfg = tmp_path / "r.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG), encoding="utf-8")
    res = runner.invoke(app, ["serve", str(cfg), "--ray", "--replicas", "2"])
    assert res.exit_code == 2
    assert "pip install 'safeladder[ray]'" in res.stderr
    assert "Traceback" not in res.stderr


def test_replica_options_need_ray(tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    res = runner.invoke(app, ["serve", "--replicas", "2"])
    assert res.exit_code == 2 and "apply to --ray only" in res.stderr


def test_replica_planning_and_per_replica_concurrency() -> None:
    from safeladder.errors import ConfigError
    from safeladder.serving.ray_serve import max_ongoing_requests, plan_replicas

    assert plan_replicas(8.0, None, 1.0) == 8  # one replica per GPU
    assert plan_replicas(8.0, None, 0.5) == 16
    assert plan_replicas(8.0, 3, 1.0) == 3
    assert plan_replicas(0.0, None, 0.0) == 1
    with pytest.raises(ConfigError, match="has 0 GPUs"):
        plan_replicas(0.0, None, 1.0)
    # a replica holds a running batch and a filling one (Ray's default of 5 would cap batches)
    assert max_ongoing_requests(ServeSettings(max_batch_size=64)) == 128
    assert max_ongoing_requests(ServeSettings(max_batch_size=8)) == 64
    small = ServeSettings(max_batch_size=1, max_queue=8, max_request_samples=8)
    assert max_ongoing_requests(small) == 8
