"""The reward server under OpenRLHF's traffic, against the bare HTTP rate and the offline ceiling.

Run from anywhere (data is read from ``../shared/data`` next to the repository)::

    python benchmarks/bench_server.py          # about 1-2 minutes on 2 CPUs

Traffic: ``CLIENTS`` concurrent closed-loop clients, each posting one sample per request --
``{"query": [prompt + completion], "prompts": [prompt], "labels": [answer]}`` -- to
``/get_reward``, as OpenRLHF's ``SingleTurnAgentExecutor`` does (``openrlhf/utils/agent.py``,
``_fetch_rewards_via_http``). ``CONNECTION``: ``"keep-alive"`` (default) gives each client one
``aiohttp.ClientSession`` it reuses, so the server's own cost per request is what is measured;
``"new"`` opens a new session (and connection) per request, exactly as OpenRLHF's client does.
The server is ``safeladder serve`` in a subprocess on loopback, started once per (reward, mode).

Rewards:
- ``rule-default``: the shipped default reward (``load_reward(None)``), rows routed to the math
  recipe (``--meta task=math``: math_answer, think_format, repetition, overlong, over_refusal);
  its cost per row is small, so per-call and per-request overhead matter;
- ``simulated-gpu``: **simulated**, not a model: a custom verifier (``SimulatedBatchModel``
  below) that sleeps ``SIM_FIXED_MS`` per call plus ``SIM_PER_ROW_US`` per row, releasing the
  GIL as a CUDA wait does -- the cost shape of a neural verifier on a GPU, where a batch of 64
  costs little more than a batch of 1.

Modes, per reward, in the same run on the same samples:
- ``batching``: ``--max-batch-size MAX_BATCH --max-wait-ms MAX_WAIT_MS``; the same server's
  bare HTTP rate is measured too (``GET /health`` from the same ``CLIENTS`` clients),
  interleaved with the ``/get_reward`` traffic in ``ROUNDS`` rounds so both see the same
  machine load; ``simulated-gpu`` runs again with ``SIM_DEEP_CLIENTS`` clients, its ratios
  taken against that ``CLIENTS``-client HTTP rate;
- ``no-batching``: ``--batching off`` (every request is its own ``Reward.score`` call);
- ``offline``: ``Reward.score`` in this process on the same samples in chunks of
  ``MAX_BATCH``, no HTTP: the ceiling.

The two ratios issue 14 asks for, both from one run: ``rule-default`` rewards/s over the
bare HTTP rate (``ratio_vs_health``, target >= 0.70), and ``simulated-gpu`` rewards/s over
min(bare HTTP rate, offline rate) (``ratio_vs_ceiling``, target >= 0.8).

Measured after ``WARMUP`` requests: wall time of the timed requests (throughput), per-request
latency p50 / p99 (client side), the mean rows per ``Reward.score`` call and the share of the
wall time the scorer was busy (from the server's /metrics), and the server process's CPU time
per request (``/proc``, Linux). Every answer is checked against the offline reward. One JSON
line per (reward, mode) is appended to ``benchmarks/results/server.jsonl`` (fields in
``benchmarks/README.md``).
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
# simulated-gpu also runs batching with this many clients (0: not): more requests in flight
# than one batch holds, so a batch can run while the previous one's clients turn around.
SIM_DEEP_CLIENTS = 256
CONNECTION = "keep-alive"  # "keep-alive": one session per client; "new": one per request
REQUESTS = 2048  # timed /get_reward requests per (reward, mode) over ROUNDS; >= 8 per client
HEALTH_REQUESTS = 2048  # timed GET /health requests per batching server, split over ROUNDS
ROUNDS = 2  # /health and /get_reward traffic alternate this many times
WARMUP = 192  # untimed requests first (process pools, caches, connections)
MAX_BATCH = 64  # server --max-batch-size in batching mode
MAX_WAIT_MS = 5.0  # server --max-wait-ms in batching mode
WRONG_SHARE = 0.3  # share of rows whose completion carries a wrong final answer
SIM_FIXED_MS = 8.0  # simulated model: cost per call ...
SIM_PER_ROW_US = 50.0  # ... plus per row
SEED = 0
TIME_LIMIT_S = 170  # stop starting new (reward, mode) runs past this
TARGET_VS_HEALTH = 0.70  # issue 14: rule reward rewards/s over the bare HTTP rate
TARGET_VS_CEILING = 0.8  # issue 14: slow model rewards/s over min(HTTP rate, offline rate)
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
    if mode.startswith("batching"):
        cmd += ["--max-batch-size", str(MAX_BATCH), "--max-wait-ms", str(MAX_WAIT_MS)]
    else:
        cmd += ["--batching", "off"]
    if mode == "batching-process":
        cmd.append("--scoring-process")
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


def server_stats(port: int) -> tuple[float, float, float]:
    """(rows, calls, seconds) so far: the server's safeladder_batch_rows histogram's sum and
    count, and the summed wall time of its Reward.score calls."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    values = dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    return (
        float(values["safeladder_batch_rows_sum"]),
        float(values["safeladder_batch_rows_count"]),
        float(values["safeladder_batch_duration_seconds_sum"]),
    )


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process and its live child processes (the scoring process
    of ``--scoring-process``; Linux ``/proc``); None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            children = task.read_text().split()
        except OSError:
            continue
        total += sum(cpu_seconds(int(c)) or 0.0 for c in children)
    return total


# ----------------------------------------------------------------------------- traffic
async def traffic(
    url: str, rows: list[dict[str, Any]], n: int, *, health: bool = False, clients: int = CLIENTS
) -> tuple[float, list[float], list[Any]]:
    """``n`` requests from ``clients`` closed-loop clients (``GET`` when ``health``, else one
    sample per ``POST``); returns (seconds, latencies, answers)."""
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=180)  # OpenRLHF's
    latencies: list[float] = [0.0] * n
    answers: list[Any] = [None] * n
    next_i = 0

    async def one(session: aiohttp.ClientSession, i: int) -> Any:
        if health:
            async with session.get(url) as response:
                response.raise_for_status()
                await response.read()
                return None
        row = rows[i % len(rows)]
        payload = {"query": [row["query"]], "prompts": [row["prompt"]], "labels": [row["label"]]}
        async with session.post(url, json=payload) as response:
            response.raise_for_status()
            return (await response.json())["rewards"][0]

    async def client() -> None:
        nonlocal next_i
        keep: aiohttp.ClientSession | None = None
        if CONNECTION == "keep-alive":
            keep = aiohttp.ClientSession(timeout=timeout)
        try:
            while next_i < n:
                i = next_i
                next_i += 1
                t0 = time.perf_counter()
                if keep is not None:
                    answers[i] = await one(keep, i)
                else:
                    # A new session (and connection) per request, exactly as OpenRLHF's client.
                    async with aiohttp.ClientSession(timeout=timeout) as session:
                        answers[i] = await one(session, i)
                latencies[i] = time.perf_counter() - t0
        finally:
            if keep is not None:
                await keep.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - started, latencies, answers


def measure(
    port: int, pid: int, rows: list[dict[str, Any]], with_health: bool, clients: int
) -> dict[str, Any]:
    """Warm up, then ``ROUNDS`` rounds of (``GET /health`` traffic if ``with_health``, then
    ``/get_reward`` traffic); totals over the rounds."""
    base = f"http://127.0.0.1:{port}"
    warmup = max(WARMUP, 2 * clients)  # at least two requests per client
    asyncio.run(traffic(f"{base}/get_reward", rows, warmup, clients=clients))
    if with_health:
        asyncio.run(traffic(f"{base}/health", rows, warmup, health=True, clients=clients))
    out: dict[str, Any] = {"seconds": 0.0, "health_seconds": 0.0, "busy_seconds": 0.0}
    out |= {"latencies": [], "answers": []}
    cpu = {"get": 0.0, "health": 0.0}
    rows0, calls0, _ = server_stats(port)
    # At least 8 requests per client and round: with many clients, fewer would time mostly
    # the start and the tail of a round.
    per_round = max(REQUESTS // ROUNDS, 8 * clients)
    health_per_round = HEALTH_REQUESTS // ROUNDS
    for _ in range(ROUNDS):
        if with_health:
            c0 = cpu_seconds(pid)
            seconds, _, _ = asyncio.run(
                traffic(f"{base}/health", rows, health_per_round, health=True, clients=clients)
            )
            c1 = cpu_seconds(pid)
            out["health_seconds"] += seconds
            if c0 is not None and c1 is not None:
                cpu["health"] += c1 - c0
        s0 = server_stats(port)
        c0 = cpu_seconds(pid)
        seconds, lat, answers = asyncio.run(
            traffic(f"{base}/get_reward", rows, per_round, clients=clients)
        )
        c1 = cpu_seconds(pid)
        s1 = server_stats(port)
        out["seconds"] += seconds
        out["busy_seconds"] += s1[2] - s0[2]
        out["latencies"] += lat
        out["answers"] += [(i % len(rows), a) for i, a in enumerate(answers)]  # (row, reward)
        if c0 is not None and c1 is not None:
            cpu["get"] += c1 - c0
    rows1, calls1, _ = server_stats(port)
    out["requests"] = per_round * ROUNDS
    out["health_requests"] = health_per_round * ROUNDS if with_health else 0
    out["mean_batch_rows"] = (rows1 - rows0) / (calls1 - calls0) if calls1 > calls0 else None
    out["scorer_busy"] = out["busy_seconds"] / out["seconds"]
    out["server_cpu_us_per_request"] = 1e6 * cpu["get"] / out["requests"] if cpu["get"] else None
    out["health_server_cpu_us_per_request"] = (
        1e6 * cpu["health"] / out["health_requests"] if cpu["health"] else None
    )
    return out


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
            expected: list[float] = []
            for k in range(0, len(samples), MAX_BATCH):
                expected += reward.score(samples[k : k + MAX_BATCH]).total.tolist()
            offline_s = time.perf_counter() - t0
            reward.close()
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
                "connection": CONNECTION,
                **env,
            }
            records.append(
                {
                    **base,
                    "mode": "offline",
                    "clients": None,
                    "requests": len(samples),
                    "seconds": offline_s,
                    "samples_per_s": len(samples) / offline_s,
                    "batch_rows": MAX_BATCH,
                }
            )
            runs = [("batching", CLIENTS), ("no-batching", CLIENTS)]
            if name == "rule-default":
                runs.append(("batching-process", CLIENTS))  # scoring outside the loop's GIL
            if name == "simulated-gpu" and SIM_DEEP_CLIENTS:
                runs.append(("batching", SIM_DEEP_CLIENTS))
            for mode, clients in runs:
                if time.monotonic() - started > TIME_LIMIT_S:
                    print(f"time limit reached; skipping {name} {mode} ({clients} clients)")
                    continue
                port = free_port()
                proc = start_server(config, mode, port)
                try:
                    # The bare HTTP rate is measured with CLIENTS clients (the deep run reuses it).
                    health = mode.startswith("batching") and clients == CLIENTS
                    m = measure(port, proc.pid, rows, health, clients)
                finally:
                    code = stop_server(proc)
                wrong = sum(
                    1
                    for i, a in m["answers"]
                    if not (
                        (a is None and expected[i] != expected[i])
                        or (a is not None and abs(a - expected[i]) < 1e-5)
                    )
                )
                lat = m["latencies"]
                record = {
                    **base,
                    "mode": mode,
                    "clients": clients,
                    "max_batch_size": MAX_BATCH if mode.startswith("batching") else 1,
                    "max_wait_ms": MAX_WAIT_MS if mode.startswith("batching") else None,
                    "requests": m["requests"],
                    "warmup": max(WARMUP, 2 * clients),
                    "rounds": ROUNDS,
                    "seconds": m["seconds"],
                    "samples_per_s": m["requests"] / m["seconds"],
                    "p50_ms": 1000 * statistics.median(lat),
                    "p99_ms": 1000 * percentile(lat, 99),
                    "mean_batch_rows": m["mean_batch_rows"],
                    "scorer_busy": m["scorer_busy"],
                    "server_cpu_us_per_request": m["server_cpu_us_per_request"],
                    "answers_differing_from_offline": wrong,
                    "server_exit_code": code,
                }
                if m["health_requests"]:
                    record |= {
                        "health_requests": m["health_requests"],
                        "health_per_s": m["health_requests"] / m["health_seconds"],
                        "health_server_cpu_us_per_request": m["health_server_cpu_us_per_request"],
                    }
                records.append(record)
    by = {(r["reward"], r["mode"], r["clients"]): r for r in records}
    for r in records:
        off = by.get((r["reward"], "offline", None))
        nob = by.get((r["reward"], "no-batching", r["clients"]))
        if r["mode"] != "offline" and off:
            r["ratio_vs_offline"] = r["samples_per_s"] / off["samples_per_s"]
        batching = r["mode"].startswith("batching")
        if batching and nob:
            r["ratio_vs_no_batching"] = r["samples_per_s"] / nob["samples_per_s"]
        # A server's own /health rate; the deep run reuses the 64-client thread server's.
        http = r.get("health_per_s") or by.get((r["reward"], "batching", CLIENTS), {}).get(
            "health_per_s"
        )
        if batching and http:
            r["ratio_vs_health"] = r["samples_per_s"] / http
            if off:
                r["ceiling_per_s"] = min(http, off["samples_per_s"])
                r["ratio_vs_ceiling"] = r["samples_per_s"] / r["ceiling_per_s"]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, sort_keys=True) + "\n")

    def f(r: dict[str, Any], key: str, fmt: str) -> str:
        v = r.get(key)
        return format(v, fmt) if v is not None else "-"

    head = (
        f"{'reward':<14} {'mode':<16} {'clients':>7} {'samples/s':>10} {'health/s':>9} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'rows/call':>9} {'busy':>5} {'cpu us':>7} "
        f"{'vs health':>9} {'vs ceil':>7} {'vs off':>7} {'vs no-b':>7}"
    )
    print(head)
    print("-" * len(head))
    for r in records:
        rows_per_call = f(r, "mean_batch_rows", ".1f") if r["mode"] != "offline" else str(MAX_BATCH)
        print(
            f"{r['reward']:<14} {r['mode']:<16} {f(r, 'clients', 'd'):>7} "
            f"{r['samples_per_s']:>10.0f} {f(r, 'health_per_s', '.0f'):>9} "
            f"{f(r, 'p50_ms', '.1f'):>8} {f(r, 'p99_ms', '.1f'):>8} {rows_per_call:>9} "
            f"{f(r, 'scorer_busy', '.2f'):>5} {f(r, 'server_cpu_us_per_request', '.0f'):>7} "
            f"{f(r, 'ratio_vs_health', '.2f'):>9} {f(r, 'ratio_vs_ceiling', '.2f'):>7} "
            f"{f(r, 'ratio_vs_offline', '.2f'):>7} {f(r, 'ratio_vs_no_batching', '.2f'):>7}"
        )
        if r.get("answers_differing_from_offline"):
            print(f"  !! {r['answers_differing_from_offline']} answers differ from offline")
    print()
    for mode in ("batching", "batching-process"):
        rule = by.get(("rule-default", mode, CLIENTS), {})
        if "ratio_vs_health" in rule:
            print(
                f"rule-default {mode}, {CLIENTS} clients: {rule['samples_per_s']:.0f} rewards/s "
                f"over {rule['health_per_s']:.0f} GET /health/s = {rule['ratio_vs_health']:.2f} "
                f"(target >= {TARGET_VS_HEALTH}); server CPU "
                f"{f(rule, 'server_cpu_us_per_request', '.0f')} us per reward vs "
                f"{f(rule, 'health_server_cpu_us_per_request', '.0f')} us per /health"
            )
    off = by.get(("simulated-gpu", "offline", None), {})
    for clients in (CLIENTS, SIM_DEEP_CLIENTS):
        sim = by.get(("simulated-gpu", "batching", clients), {})
        if "ratio_vs_ceiling" in sim:
            http = by[("simulated-gpu", "batching", CLIENTS)]["health_per_s"]
            print(
                f"simulated-gpu, {clients} clients: {sim['samples_per_s']:.0f} rewards/s over "
                f"min({http:.0f} GET /health/s with {CLIENTS} clients, {off['samples_per_s']:.0f} "
                f"offline/s) = {sim['ratio_vs_ceiling']:.2f} (target >= {TARGET_VS_CEILING})"
            )
    print(
        f"\nOne sample per request, connection {CONNECTION!r}, {ROUNDS} rounds; simulated-gpu is "
        f"a sleep ({SIM_FIXED_MS:g} ms/call + {SIM_PER_ROW_US:g} us/row), not a model.\n"
        f"appended to {RESULTS.relative_to(REPO)}; git {str(env['git_sha'])[:10]}, "
        f"{env['cpu_count']} CPUs"
    )


if __name__ == "__main__":
    main()
