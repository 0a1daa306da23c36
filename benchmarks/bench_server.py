"""The reward server under OpenRLHF's traffic: dynamic batching vs batching off, same run.

Run from anywhere (data is read from ``../shared/data`` next to the repository)::

    python benchmarks/bench_server.py          # about 1-2 minutes on 2 CPUs

Traffic, as OpenRLHF's ``SingleTurnAgentExecutor`` sends it (``openrlhf/utils/agent.py``,
``_fetch_rewards_via_http``): ``CLIENTS`` concurrent clients, each posting one sample per
request -- ``{"query": [prompt + completion], "prompts": [prompt], "labels": [answer]}`` -- to
``/get_reward`` through a new ``aiohttp.ClientSession`` per request (so a new connection per
request, as there), then the next one as soon as the answer is back (closed loop). The server
is ``safeladder serve`` in a subprocess on loopback, started once per (reward, mode).

Rewards:
- ``rule-default``: the shipped default reward (``load_reward(None)``), rows routed to the math
  recipe (``--meta task=math``: math_answer, think_format, repetition, overlong, over_refusal);
  its cost per row is small, so per-call and per-request overhead matter;
- ``simulated-gpu``: **simulated**, not a model: a custom verifier (``SimulatedBatchModel``
  below) that sleeps ``SIM_FIXED_MS`` per call plus ``SIM_PER_ROW_US`` per row, releasing the
  GIL as a CUDA wait does -- the cost shape of a neural verifier on a GPU, where a batch of 64
  costs little more than a batch of 1.

Modes, per reward, in the same run on the same samples:
- ``batching``: ``--max-batch-size MAX_BATCH --max-wait-ms MAX_WAIT_MS``;
- ``no-batching``: ``--batching off`` (every request is its own ``Reward.score`` call);
- ``offline``: ``Reward.score`` in this process on the same samples in chunks of
  ``MAX_BATCH``, no HTTP: the ceiling.

Measured after ``WARMUP`` requests: ``REQUESTS`` requests' wall time (throughput), per-request
latency p50 / p99 (client side, session creation to parsed answer) and the mean rows per
``Reward.score`` call (from the server's /metrics). Every answer is checked against the
offline reward. One JSON line per (reward, mode) is appended to
``benchmarks/results/server.jsonl`` (fields in ``benchmarks/README.md``).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bench_env  # benchmarks/ is the script's directory, so it is on sys.path

# ----------------------------------------------------------------------------- knobs
CLIENTS = 64  # concurrent clients, one sample per request (OpenRLHF)
REQUESTS = 1536  # timed requests per (reward, mode)
WARMUP = 192  # untimed requests first (process pools, caches, connections)
MAX_BATCH = 64  # server --max-batch-size in batching mode
MAX_WAIT_MS = 5.0  # server --max-wait-ms in batching mode
WRONG_SHARE = 0.3  # share of rows whose completion carries a wrong final answer
SIM_FIXED_MS = 8.0  # simulated model: cost per call ...
SIM_PER_ROW_US = 50.0  # ... plus per row
SEED = 0
TIME_LIMIT_S = 170  # stop starting new (reward, mode) runs past this
REWARDS = ("rule-default", "simulated-gpu")

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "gsm8k_train.jsonl.gz"
RESULTS = REPO / "benchmarks" / "results" / "server.jsonl"
# The repository (for safeladder) and this folder (the server imports bench_server from it).
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]


# ----------------------------------------------------------------------------- the simulated model
from safeladder.types import SampleBatch, ScoreBatch  # noqa: E402  (after the sys.path line)
from safeladder.verifiers.base import Verifier  # noqa: E402


class SimulatedBatchModel(Verifier):
    """SIMULATED neural verifier: sleeps ``fixed_ms + per_row_us * rows`` per call (the GIL is
    released, as during a CUDA wait), then scores each row by a hash of its completion
    (deterministic, in [0, 1)). The server subprocess imports it as
    ``bench_server:SimulatedBatchModel``."""

    score_range = (0.0, 1.0)

    def __init__(self, config: Any):
        super().__init__(config)
        kwargs = dict(getattr(config, "kwargs", {}) or {})
        self.fixed_s = float(kwargs.get("fixed_ms", SIM_FIXED_MS)) / 1000.0
        self.per_row_s = float(kwargs.get("per_row_us", SIM_PER_ROW_US)) / 1e6

    def _score_batch(self, batch: SampleBatch, context: Any) -> ScoreBatch:
        time.sleep(self.fixed_s + self.per_row_s * len(batch))
        rows = [((zlib.crc32(c.encode()) % 1000) / 1000.0, "ok", {}) for c in batch.completions]
        return ScoreBatch.from_rows(self.name, rows)


def sim_config(path: Path) -> Path:
    cfg = {
        "name": "simulated-gpu",
        "terms": [
            {
                "name": "sim_model",
                "verifier": {
                    "type": "custom",
                    "target": "bench_server:SimulatedBatchModel",
                    "kwargs": {"fixed_ms": SIM_FIXED_MS, "per_row_us": SIM_PER_ROW_US},
                },
            }
        ],
    }
    path.write_text(json.dumps(cfg), encoding="utf-8")  # JSON is YAML
    return path


# ----------------------------------------------------------------------------- data
def load_rows(n: int) -> list[dict[str, Any]]:
    """``n`` GSM8K rows as OpenRLHF would send them: prompt, full query, label."""
    rows = bench_env.answered_rows(DATA, n)
    rng = random.Random(SEED)
    out = []
    for row in rows:
        prompt = f"<|im_start|>user\n{row['question']}<|im_end|>\n<|im_start|>assistant\n"
        completion = row["solution"]
        if rng.random() < WRONG_SHARE:
            head, _, answer = completion.rpartition("#### ")
            completion = f"{head}#### {int(float(answer.replace(',', ''))) + 1}"
        out.append(
            {
                "prompt": prompt,
                "completion": completion,
                "query": prompt + completion + "<|im_end|>",  # special tokens kept, as decoded
                "label": row["answer"],
            }
        )
    return out


# ----------------------------------------------------------------------------- server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(config: str | None, mode: str, port: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "safeladder.cli.app", "serve"]
    if config is not None:
        cmd.append(config)
    cmd += ["--port", str(port), "--meta", "task=math", "--log-level", "warning"]
    if mode == "batching":
        cmd += ["--max-batch-size", str(MAX_BATCH), "--max-wait-ms", str(MAX_WAIT_MS)]
    else:
        cmd += ["--batching", "off"]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), str(REPO / "benchmarks"), env.get("PYTHONPATH", "")]
    )
    env.pop("SAFELADDER_API_KEY", None)
    proc = subprocess.Popen(cmd, env=env, cwd=REPO)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {' '.join(cmd)}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not become healthy in 60 s")


def stop_server(proc: subprocess.Popen[bytes]) -> int:
    proc.terminate()  # SIGTERM: graceful shutdown
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def batch_stats(port: int) -> tuple[float, float]:
    """(sum, count) of the server's safeladder_batch_rows histogram."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    values = dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    return float(values["safeladder_batch_rows_sum"]), float(values["safeladder_batch_rows_count"])


# ----------------------------------------------------------------------------- traffic
async def traffic(
    url: str, rows: list[dict[str, Any]], n: int
) -> tuple[float, list[float], list[Any]]:
    """``n`` requests from ``CLIENTS`` closed-loop clients; returns (seconds, latencies, answers)."""
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=180)  # OpenRLHF's
    latencies: list[float] = [0.0] * n
    answers: list[Any] = [None] * n
    next_i = 0

    async def client() -> None:
        nonlocal next_i
        while next_i < n:
            i = next_i
            next_i += 1
            row = rows[i % len(rows)]
            payload = {
                "query": [row["query"]],
                "prompts": [row["prompt"]],
                "labels": [row["label"]],
            }
            t0 = time.perf_counter()
            # A new session (and connection) per request, exactly as OpenRLHF's client does.
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(url, json=payload) as response,
            ):
                response.raise_for_status()
                body = await response.json()
            latencies[i] = time.perf_counter() - t0
            answers[i] = body["rewards"][0]

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return time.perf_counter() - started, latencies, answers


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


# ----------------------------------------------------------------------------- records
def environment() -> dict[str, Any]:
    # uvicorn picks uvloop and httptools when installed (about 2x the requests/s)
    return bench_env.environment(
        ("fastapi", "uvicorn", "starlette", "uvloop", "httptools", "aiohttp", "math-verify")
    )


def main() -> None:
    from safeladder.rewards import load_reward

    try:
        import aiohttp  # noqa: F401
    except ImportError:
        sys.exit("bench_server.py needs aiohttp, the client OpenRLHF uses: pip install aiohttp")

    env = environment()
    rows = load_rows(1000)
    started = time.monotonic()
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        configs = {"rule-default": None, "simulated-gpu": str(sim_config(Path(tmp) / "sim.yaml"))}
        for name in REWARDS:
            config = configs[name]
            # Offline ceiling and expected answers, same samples, in-process.
            reward = load_reward(config)
            samples = [
                {
                    "prompt": r["prompt"],
                    "completion": r["completion"],
                    "reference": r["label"],
                    "meta": {"task": "math"},  # what the server's --meta task=math gives
                }
                for r in rows
            ]
            reward.score(samples[:MAX_BATCH])  # warm-up
            t0 = time.perf_counter()
            totals: list[float] = []
            for k in range(0, len(samples), MAX_BATCH):
                totals += reward.score(samples[k : k + MAX_BATCH]).total.tolist()
            offline_s = time.perf_counter() - t0
            reward.close()
            expected = {i: totals[i] for i in range(len(rows))}
            base = {
                "benchmark": "server",
                "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
                "reward": name,
                "simulated": name == "simulated-gpu",
                **(
                    {"sim_fixed_ms": SIM_FIXED_MS, "sim_per_row_us": SIM_PER_ROW_US}
                    if name == "simulated-gpu"
                    else {"meta": {"task": "math"}}
                ),
                "clients": CLIENTS,
                **env,
            }
            records.append(
                {
                    **base,
                    "mode": "offline",
                    "requests": len(samples),
                    "seconds": offline_s,
                    "samples_per_s": len(samples) / offline_s,
                    "batch_rows": MAX_BATCH,
                }
            )
            for mode in ("batching", "no-batching"):
                if time.monotonic() - started > TIME_LIMIT_S:
                    print(f"time limit reached; skipping {name} {mode}")
                    continue
                port = free_port()
                proc = start_server(config, mode, port)
                try:
                    url = f"http://127.0.0.1:{port}/get_reward"
                    asyncio.run(traffic(url, rows, WARMUP))
                    s0, c0 = batch_stats(port)
                    seconds, lat, answers = asyncio.run(traffic(url, rows, REQUESTS))
                    s1, c1 = batch_stats(port)
                finally:
                    code = stop_server(proc)
                wrong = sum(
                    1
                    for i, a in enumerate(answers)
                    if not (
                        (a is None and expected[i % len(rows)] != expected[i % len(rows)])
                        or (a is not None and abs(a - expected[i % len(rows)]) < 1e-5)
                    )
                )
                records.append(
                    {
                        **base,
                        "mode": mode,
                        "max_batch_size": MAX_BATCH if mode == "batching" else 1,
                        "max_wait_ms": MAX_WAIT_MS if mode == "batching" else None,
                        "requests": REQUESTS,
                        "warmup": WARMUP,
                        "seconds": seconds,
                        "samples_per_s": REQUESTS / seconds,
                        "p50_ms": 1000 * statistics.median(lat),
                        "p99_ms": 1000 * percentile(lat, 99),
                        "mean_batch_rows": (s1 - s0) / (c1 - c0) if c1 > c0 else None,
                        "answers_differing_from_offline": wrong,
                        "server_exit_code": code,
                    }
                )
    by = {(r["reward"], r["mode"]): r for r in records}
    for r in records:
        off = by.get((r["reward"], "offline"))
        nob = by.get((r["reward"], "no-batching"))
        if r["mode"] != "offline" and off:
            r["ratio_vs_offline"] = r["samples_per_s"] / off["samples_per_s"]
        if r["mode"] == "batching" and nob:
            r["ratio_vs_no_batching"] = r["samples_per_s"] / nob["samples_per_s"]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, sort_keys=True) + "\n")

    head = f"{'reward':<14} {'mode':<12} {'samples/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'rows/call':>9} {'vs off':>7} {'vs no-b':>7}"
    print(head)
    print("-" * len(head))

    def f(r: dict[str, Any], key: str, fmt: str) -> str:
        v = r.get(key)
        return format(v, fmt) if v is not None else "-"

    for r in records:
        rows_per_call = f(r, "mean_batch_rows", ".1f") if r["mode"] != "offline" else str(MAX_BATCH)
        print(
            f"{r['reward']:<14} {r['mode']:<12} {r['samples_per_s']:>10.0f} {f(r, 'p50_ms', '.1f'):>8} "
            f"{f(r, 'p99_ms', '.1f'):>8} {rows_per_call:>9} {f(r, 'ratio_vs_offline', '.2f'):>7} "
            f"{f(r, 'ratio_vs_no_batching', '.2f'):>7}"
        )
        if r.get("answers_differing_from_offline"):
            print(f"  !! {r['answers_differing_from_offline']} answers differ from offline")
    print(
        f"\n{CLIENTS} clients, one sample per request, new connection per request (OpenRLHF); "
        f"simulated-gpu is a sleep ({SIM_FIXED_MS:g} ms/call + {SIM_PER_ROW_US:g} us/row), "
        f"not a model.\nappended to {RESULTS.relative_to(REPO)}; git {str(env['git_sha'])[:10]}, "
        f"{env['cpu_count']} CPUs"
    )


if __name__ == "__main__":
    main()
