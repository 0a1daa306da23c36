"""A policy's power towers against the reward server (issue 10, item 4).

One ~3 KB ``/score`` request of 30 rows like ``\\boxed{9^{9^{9^{9^{5}}}}}`` (varied) goes in
with 40 honest one-sample ``/get_reward`` clients (GSM8K solutions) right behind it, all at once,
against the app with the shipped default reward. Before issue 10 the hostile request held the
only scoring thread for 139 s, every other client got 504 and ``/health`` said ok. Records the
hostile request's latency, the honest clients' latencies and statuses, and ``/health`` while
they run. Prints a table and appends one JSON line to
``benchmarks/results/server_hostile_math.jsonl``.

    python benchmarks/bench_server_hostile_math.py [tower|polynomial]
"""

from __future__ import annotations

import asyncio
import gzip
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_env import REPO, environment

# --- knobs
HOSTILE_ROWS = 30
HONEST_CLIENTS = 40
OUT = REPO / "benchmarks" / "results" / "server_hostile_math.jsonl"
DATA = REPO.parent / "shared" / "data" / "gsm8k_train.jsonl.gz"


def honest_rows(n: int) -> list[dict[str, Any]]:
    out = []
    with gzip.open(DATA, "rt", encoding="utf-8") as fh:
        for line in fh:
            out.append(json.loads(line))
            if len(out) == n:
                break
    return out


def tower(k: int) -> str:
    b = 2 + k % 8
    return f"\\boxed{{{b}^{{{b}^{{{b}^{{{b}^{{{5 + k}}}}}}}}}}}"


def polynomial(k: int) -> str:
    """sympy expands it for minutes: only the per-call budget ends it."""
    return f"\\boxed{{(x+{k + 1})^{{{3000 + k}}}}}"


#: ``python bench_server_hostile_math.py polynomial`` runs the second kind of hostile row.
KIND = sys.argv[1] if len(sys.argv) > 1 else "tower"
HOSTILE = {"tower": tower, "polynomial": polynomial}[KIND]


async def run() -> dict[str, Any]:
    from safeladder import load_reward
    from safeladder.serving import ServeSettings, create_app

    reward = load_reward(None)
    app = create_app(reward, ServeSettings(), close_reward=True)
    hostile = {
        "samples": [
            {
                "prompt": "Compute it.",
                "completion": HOSTILE(k),
                "reference": "3",
                "meta": {"task": "math"},
            }
            for k in range(HOSTILE_ROWS)
        ]
    }
    honest = honest_rows(HONEST_CLIENTS)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t", timeout=300
        ) as c,
    ):
        # warm-up: the math workers and the first call's imports are not what is measured
        await c.post(
            "/get_reward", json={"query": ["Q #### 1"], "prompts": ["Q "], "labels": ["1"]}
        )

        async def timed(coro: Any) -> tuple[float, httpx.Response]:
            t0 = time.perf_counter()
            r = await coro
            return time.perf_counter() - t0, r

        hostile_task = asyncio.ensure_future(timed(c.post("/score", json=hostile)))
        await asyncio.sleep(0)
        honest_tasks = [
            asyncio.ensure_future(
                timed(
                    c.post(
                        "/get_reward",
                        json={
                            "query": [f"Q{i} " + row["solution"]],
                            "prompts": [f"Q{i} "],
                            "labels": [row["answer"]],
                        },
                    )
                )
            )
            for i, row in enumerate(honest)
        ]
        health = await c.get("/health")
        hostile_s, hostile_r = await hostile_task
        honest_done = await asyncio.gather(*honest_tasks)
    body = hostile_r.json()
    statuses = [row["terms"]["math_correct"]["status"] for row in body["results"]]
    lat = [s for s, _ in honest_done]
    return {
        "bench": "server_hostile_math",
        "hostile_kind": KIND,
        "hostile_rows": HOSTILE_ROWS,
        "hostile_request_bytes": len(json.dumps(hostile)),
        "hostile_request_s": hostile_s,
        "hostile_status_code": hostile_r.status_code,
        "hostile_row_statuses": {s: statuses.count(s) for s in set(statuses)},
        "honest_clients": HONEST_CLIENTS,
        "honest_status_codes": sorted({r.status_code for _, r in honest_done}),
        "honest_answers_correct": sum(
            r.json()["extra_logs"]["answer_correct"][0] == 1.0 for _, r in honest_done
        ),
        "honest_p50_s": statistics.median(lat),
        "honest_max_s": max(lat),
        "health_during": health.json().get("status"),
        **environment(["math-verify", "fastapi"]),
    }


def main() -> None:
    rec = asyncio.run(run())
    print(
        f"hostile /score ({rec['hostile_rows']} rows, {rec['hostile_request_bytes']} B): "
        f"{rec['hostile_request_s']:.2f} s, HTTP {rec['hostile_status_code']}, "
        f"rows {rec['hostile_row_statuses']}"
    )
    print(
        f"honest /get_reward x{rec['honest_clients']}: HTTP {rec['honest_status_codes']}, "
        f"answer_correct 1.0 for {rec['honest_answers_correct']}, p50 {rec['honest_p50_s']:.2f} s, "
        f"max {rec['honest_max_s']:.2f} s; /health during: {rec['health_during']}"
    )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
