"""Ray scaling on simulated GPUs: ``score --engine ray`` and ``serve --ray`` against the ideal.

Run from anywhere (no data needed: the rows are generated)::

    python benchmarks/bench_ray_scaling.py            # about 5.5 minutes on 2 CPUs
    python benchmarks/bench_ray_scaling.py --quick    # a smoke run, about 1 minute (--no-serve: 50 s)

**Simulated, not a model.** The reward is one ``custom`` term, ``sim_gpu_verifier:SimGpuModel``
(``benchmarks/sim_gpu_verifier.py``): each forward pass sleeps ``OVERHEAD_MS`` plus
``PER_ROW_MS`` per row, at most ``MAX_ROWS`` rows a pass (a GPU memory limit; a bigger batch
is cut into passes). The sleep releases the GIL and uses no CPU, so a 2-core machine can host
``CLUSTER_GPUS`` simulated GPUs: what is measured is safeladder's Ray plumbing (reading,
shipping chunks, actor scheduling, ordered writing, HTTP proxying) around a GPU-bound model.

The cluster: this script starts a local Ray (loopback, its own temp dir) declaring
``CLUSTER_CPUS`` logical CPUs and ``CLUSTER_GPUS`` GPUs; Ray schedules on the declared
resources and gives each ``num_gpus=1`` actor its own ``CUDA_VISIBLE_DEVICES``, exactly as on
a GPU machine, so ``--gpus-per-worker 1`` runs unchanged. Every command under test is the real
CLI in a subprocess, reaching this cluster through ``$RAY_ADDRESS`` (as on a cluster node).

Parts, each one JSON line per run in ``benchmarks/results/ray_scaling.jsonl``:

- ``offline``: ``Reward.score`` in this process on chunks of each batch size (no Ray): the
  per-worker rate. ``ideal`` for W workers is W times it.
- ``score``: ``safeladder score --engine ray --gpus-per-worker 1 --num-workers W --batch-size
  B`` for each W in ``WORKERS`` and B in ``BATCH_SIZES``, on ``W x rate x SCORE_SECONDS``
  rows. From the model's own call log: the scoring span (first call's start to last call's
  end), the steady rate (rows / span), the start-up (process start to the first call) and the
  tail (last call to exit); the efficiency is the steady rate over the ideal. The distinct
  ``CUDA_VISIBLE_DEVICES`` seen by the actors show one actor per GPU; the hash of the
  output's first lines (the rows every run at one B scores) is the same for every W. Also the
  CPU the actors spend between model calls per chunk, the driver's CPU time, and how busy the
  machine's cores were (other tenants included).
- ``ceiling``: the same command with a model that costs nothing, ``CEILING_WORKERS`` workers,
  ``CEILING_ROWS`` rows: the rate of the Ray plumbing itself on this machine, which caps every
  ``score`` run whatever the number of GPUs.
- ``cold``: one run with no cluster (``$RAY_ADDRESS`` unset): the CLI starts and stops its own
  private Ray, the start-up a user pays on one machine.
- ``backpressure``: 1 worker on an input of ``BP_ROWS`` rows of about ``BP_ROW_BYTES`` bytes,
  stopped with SIGTERM after ``BP_SECONDS`` (the checkpoint path). Sampled every
  ``SAMPLE_S``: rows read by the Ray Data read task (its file offset, from /proc/PID/fdinfo),
  rows scored (the call log), rows written (lines in OUT), and the RSS of the driver and the
  reader. Read-ahead = rows read - rows scored: the rows in flight between the file and the
  actors (Ray's object store, the actor's queue).
- ``serve``: ``safeladder serve --ray --replicas R --gpus-per-replica 1 --max-batch-size
  SERVE_MAX_BATCH`` for R in ``SERVE_REPLICAS``; ``SERVE_CLIENTS`` closed-loop clients post
  ``SERVE_SAMPLES_PER_REQUEST`` samples per ``/get_reward`` request; rewards/s against R times
  the offline rate at ``SERVE_MAX_BATCH``.

Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import hashlib
import itertools
import json
import logging
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bench_env  # benchmarks/ is the script's directory, so it is on sys.path

# ----------------------------------------------------------------------------- knobs
OVERHEAD_MS = 20.0  # simulated forward pass: fixed cost ...
PER_ROW_MS = 1.0  # ... plus this per row ...
MAX_ROWS = 128  # ... at most this many rows a pass (GPU memory)
CLUSTER_CPUS = 8  # logical CPUs the local Ray declares (each actor reserves 1)
CLUSTER_GPUS = 4  # simulated GPUs the local Ray declares
WORKERS = (1, 2, 4)
BATCH_SIZES = (32, 128)  # --batch-size: input rows per Reward.score call
SCORE_SECONDS = 8.0  # ideal scoring time per run: rows = W x offline rate x this
ROW_BYTES = 300  # about this many bytes per input row (score runs)
OFFLINE_CALLS = 15  # timed Reward.score calls per batch size (after 2 warm-up calls)
COLD_ROWS = 2000  # rows of the cold run (1 worker, batch 128; 0: no cold run)
CEILING_ROWS = 20_000  # ceiling runs: a model that costs nothing, on this many rows ...
CEILING_WORKERS = 2  # ... with this many workers
BP_ROWS = 150_000  # backpressure: input rows ...
BP_ROW_BYTES = 2000  # ... of about this many bytes
BP_BATCH = 32
BP_SECONDS = 20.0  # ... stopped (SIGTERM) after this long
SAMPLE_S = 0.2
SERVE_REPLICAS = (1, 2, 4)
SERVE_MAX_BATCH = 64  # serve --max-batch-size
SERVE_ROWS_PER_REPLICA = 128  # rows in flight per replica: clients = this x R / samples per request
SERVE_SAMPLES_PER_REQUEST = (1, 16)  # 1: OpenRLHF's one sample per request
SERVE_SECONDS = 5.0  # timed traffic per (replicas, samples per request), after a warm-up
QUICK = dict(
    WORKERS=(1, 2),
    BATCH_SIZES=(32,),
    SCORE_SECONDS=1.5,
    COLD_ROWS=0,
    OFFLINE_CALLS=5,
    CEILING_ROWS=2000,
    BP_ROWS=40_000,
    BP_SECONDS=6.0,
    SERVE_REPLICAS=(1,),
    SERVE_SAMPLES_PER_REQUEST=(16,),
    SERVE_SECONDS=2.0,
)

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
RESULTS = BENCH / "results" / "ray_scaling.jsonl"
TARGET = "sim_gpu_verifier:SimGpuModel"
log = logging.getLogger("bench_ray_scaling")


# ----------------------------------------------------------------------------- helpers
def reward_config(path: Path, log_dir: Path | None, free: bool = False) -> Path:
    """The simulated reward; ``free``: a model that costs nothing (the plumbing ceiling)."""
    kwargs: dict[str, Any] = {
        "overhead_ms": 0.0 if free else OVERHEAD_MS,
        "per_row_ms": 0.0 if free else PER_ROW_MS,
        "max_rows": MAX_ROWS,
    }
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        kwargs["log_dir"] = str(log_dir)
    cfg = {
        "name": "sim_gpu",
        "terms": [
            {
                "name": "sim",
                "verifier": {
                    "type": "custom",
                    "target": TARGET,
                    "kwargs": kwargs,
                    "score_range": [0.0, 1.0],
                    "reads_reference": False,
                    "reads_images": False,
                },
            }
        ],
    }
    path.write_text(json.dumps(cfg), encoding="utf-8")  # JSON is YAML
    return path


def write_rows(path: Path, n: int, row_bytes: int) -> list[int]:
    """``n`` JSONL rows of about ``row_bytes`` bytes; returns each line's end offset."""
    ends: list[int] = []
    pos = 0
    filler = "lorem ipsum dolor sit amet " * (row_bytes // 27 + 1)
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            k = row_bytes - 60 + (i * 7919) % 40  # varied lengths, so varied scores
            line = json.dumps({"id": i, "prompt": f"q{i}", "completion": filler[:k]}) + "\n"
            fh.write(line)
            pos += len(line)
            ends.append(pos)
    return ends


def env_for_cli(address: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(BENCH), env.get("PYTHONPATH", "")])
    env.pop("RAY_ADDRESS", None)
    if address is not None:
        env["RAY_ADDRESS"] = address
    return env


def read_calls(log_dir: Path) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    for f in sorted(log_dir.glob("calls-*.jsonl")):
        for line in f.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(json.JSONDecodeError):  # a line being written
                calls.append(json.loads(line))
    return calls


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def prefix_sha256(path: Path, lines: int) -> str:
    with path.open("rb") as fh:
        return hashlib.sha256(b"".join(itertools.islice(fh, lines))).hexdigest()


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def readers_of(path: Path, exclude: set[int]) -> list[tuple[int, int]]:
    """``(pid, fd)`` of this user's processes (but ``exclude``) that have ``path`` open."""
    target = str(path)
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) in exclude:
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) == target:
                        found.append((int(proc.name), int(fd.name)))
    return found


def fd_pos(pid: int, fd: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/fdinfo/{fd}").read_text().splitlines():
            if line.startswith("pos:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of all cores since boot (``/proc/stat``)."""
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def run_with_rusage(cmd: list[str], env: dict[str, str]) -> tuple[int, str, float, float]:
    """Run ``cmd``; (exit code, stderr tail, wall seconds, its own CPU seconds (user + sys))."""
    t0 = time.time()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.time() - t0
        err.seek(0)
        tail = err.read()[-3000:].decode(errors="replace")
    return proc.returncode, tail, wall, usage.ru_utime + usage.ru_stime


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen[bytes], timeout: float = 60) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


# ----------------------------------------------------------------------------- parts
def offline_rates(work: Path) -> tuple[dict[int, float], list[dict[str, Any]]]:
    """Rows/s of ``Reward.score`` in this process (no Ray), per batch size in use."""
    from safeladder.rewards import Reward, parse_reward_config
    from safeladder.types import Sample

    cfg = parse_reward_config(str(reward_config(work / "offline.json", None)))
    reward = Reward(cfg)
    rates: dict[int, float] = {}
    records: list[dict[str, Any]] = []
    sizes = sorted({*BATCH_SIZES, SERVE_MAX_BATCH, BP_BATCH, 128})
    for b in sizes:
        batch = [Sample(prompt=f"q{i}", completion="x" * (i % 50)) for i in range(b)]
        for _ in range(2):
            reward.score(batch)
        times = []
        for _ in range(OFFLINE_CALLS):
            t0 = time.perf_counter()
            reward.score(batch)
            times.append(time.perf_counter() - t0)
        rates[b] = b / statistics.median(times)
        model_only = b / (
            -(-b // MAX_ROWS) * OVERHEAD_MS / 1000 + b * PER_ROW_MS / 1000
        )  # the sleeps alone
        log.info("offline b=%d: %.0f rows/s (sleeps alone %.0f)", b, rates[b], model_only)
        records.append(
            {"batch_size": b, "rows_per_s": rates[b], "model_only_rows_per_s": model_only}
        )
    reward.close()
    return rates, records


def score_run(
    work: Path,
    name: str,
    rows_file: Path,
    n: int,
    workers: int,
    batch: int,
    address: str | None,
    *,
    gpus: bool = True,
    free: bool = False,
    prefix_rows: int | None = None,
) -> dict[str, Any]:
    """One ``safeladder score --engine ray`` subprocess; timings from the model's call log.

    ``prefix_rows``: also hash the output's first lines (the same rows in every run at one
    batch size, so the hashes must match)."""
    log_dir = work / f"{name}-calls"
    cfg = reward_config(work / f"{name}.json", log_dir, free)
    out = work / f"{name}.out.jsonl"
    cmd = [
        sys.executable, "-m", "safeladder.cli.app", "score", str(cfg),
        "-i", str(rows_file), "-o", str(out), "--limit", str(n),
        "--engine", "ray", "--num-workers", str(workers), "--batch-size", str(batch),
        "--overwrite", "--no-progress",
    ]  # fmt: skip
    if gpus:
        cmd += ["--gpus-per-worker", "1"]
    load = os.getloadavg()[0]
    busy0, total0 = machine_cpu()
    t0 = time.time()
    code, err, wall, driver_cpu = run_with_rusage(cmd, env_for_cli(address))
    t1 = t0 + wall
    busy1, total1 = machine_cpu()
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {code}:\n{err}")
    calls = read_calls(log_dir)
    first = min(c["t0"] for c in calls)
    last = max(c["t1"] for c in calls)
    rows = sum(c["rows"] for c in calls)
    per_actor: dict[int, int] = {}
    for c in calls:
        per_actor[c["pid"]] = per_actor.get(c["pid"], 0) + c["rows"]
    # CPU an actor spends between two model calls: receiving a chunk, mapping rows to
    # Samples, encoding the output lines, Ray Data's task handling.
    between = 0.0
    for pid in per_actor:
        mine = sorted((c for c in calls if c["pid"] == pid), key=lambda c: c["t0"])
        between += sum(b["cpu0"] - a["cpu1"] for a, b in itertools.pairwise(mine))
    return {
        "rows": n,
        "rows_scored": rows,
        "workers": workers,
        "batch_size": batch,
        "gpus_per_worker": 1 if gpus else 0,
        "wall_s": t1 - t0,
        "startup_s": first - t0,
        "scoring_span_s": last - first,
        "tail_s": t1 - last,
        "rows_per_s_wall": n / (t1 - t0),
        "rows_per_s_steady": rows / (last - first),
        "calls": len(calls),
        "actors": len(per_actor),
        "rows_per_actor": sorted(per_actor.values()),
        "cuda_visible_devices": sorted({str(c["gpu"]) for c in calls}),
        "model_busy_share": sum(c["t1"] - c["t0"] for c in calls) / (workers * (last - first)),
        "driver_cpu_s": driver_cpu,
        "actor_cpu_ms_per_chunk_between_calls": 1000 * between / max(1, len(calls) - workers),
        "machine_cpu_busy": (busy1 - busy0) / (total1 - total0),
        "loadavg_1m_before": load,
        "output_sha256": sha256(out),
        "prefix_rows": prefix_rows,
        "output_prefix_sha256": None if prefix_rows is None else prefix_sha256(out, prefix_rows),
    }


def backpressure_run(work: Path, address: str) -> dict[str, Any]:
    """1 worker on a big input, stopped by SIGTERM after ``BP_SECONDS``; see the docstring."""
    rows_file = work / "bp.jsonl"
    ends = write_rows(rows_file, BP_ROWS, BP_ROW_BYTES)
    log_dir = work / "bp-calls"
    cfg = reward_config(work / "bp.json", log_dir)
    out = work / "bp.out.jsonl"
    cmd = [
        sys.executable, "-m", "safeladder.cli.app", "score", str(cfg),
        "-i", str(rows_file), "-o", str(out), "--engine", "ray", "--num-workers", "1",
        "--gpus-per-worker", "1", "--batch-size", str(BP_BATCH), "--overwrite", "--no-progress",
    ]  # fmt: skip
    t0 = time.time()
    proc = subprocess.Popen(
        cmd, env=env_for_cli(address), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    samples: list[dict[str, Any]] = []
    reader: tuple[int, int] | None = None
    read = 0  # rows wholly read by the reader (its buffered file offset; it only grows)
    reader_closed = False
    written = out_pos = 0
    while time.time() - t0 < BP_SECONDS and proc.poll() is None:
        time.sleep(SAMPLE_S)
        pos = fd_pos(*reader) if reader else None
        if pos is None and not reader_closed:
            if reader is not None:  # it had the file open and closed it: it read it all
                reader_closed = True
                read = BP_ROWS
            else:
                found = readers_of(rows_file, {os.getpid(), proc.pid})
                reader = found[0] if found else None
                pos = fd_pos(*reader) if reader else None
        if pos is not None:
            read = max(read, bisect.bisect_right(ends, pos))
        if out.exists():
            with out.open("rb") as fh:
                fh.seek(out_pos)
                chunk = fh.read()
            written += chunk.count(b"\n")
            out_pos += len(chunk)
        calls = read_calls(log_dir) if log_dir.exists() else []
        samples.append(
            {
                "t": round(time.time() - t0, 2),
                "rows_read": read,
                "rows_scored": sum(c["rows"] for c in calls),
                "rows_written": written,
                "driver_rss_mb": rss_mb(proc.pid),
                "reader_rss_mb": rss_mb(reader[0]) if reader and not reader_closed else None,
            }
        )
    code = stop(proc)
    calls = read_calls(log_dir) if log_dir.exists() else []
    first = min((c["t0"] for c in calls), default=None)
    live = [s for s in samples if s["rows_scored"] > 0]
    ahead = [s["rows_read"] - s["rows_scored"] for s in live]
    before_first = [s for s in samples if first is None or s["t"] <= first - t0]
    per_row = ends[-1] / BP_ROWS
    return {
        "rows": BP_ROWS,
        "row_bytes": round(per_row),
        "input_mb": ends[-1] / 2**20,
        "batch_size": BP_BATCH,
        "workers": 1,
        "seconds": BP_SECONDS,
        "exit_code": code,
        "checkpoint_saved": out.with_name(out.name + ".progress.json").exists(),
        "first_score_s": None if first is None else first - t0,
        "rows_read_before_first_score": max((s["rows_read"] for s in before_first), default=0),
        "rows_scored_at_stop": samples[-1]["rows_scored"] if samples else 0,
        "rows_written_at_stop": written,
        "reader_read_whole_input": reader_closed or read >= BP_ROWS,
        "max_rows_read": max((s["rows_read"] for s in samples), default=0),
        "max_rows_read_ahead": max(ahead, default=None),
        "min_rows_read_ahead": min(ahead, default=None),
        "max_mb_read_ahead": max(ahead, default=0) * per_row / 2**20,
        "max_driver_rss_mb": max((s["driver_rss_mb"] or 0 for s in samples), default=None),
        "max_reader_rss_mb": max((s["reader_rss_mb"] or 0 for s in samples), default=None),
        "ray_data_target_max_block_size_mb": target_block_mb(),
        "samples": samples,
    }


def target_block_mb() -> float | None:
    import ray.data

    size = ray.data.DataContext.get_current().target_max_block_size
    return None if size is None else size / 2**20


async def serve_traffic(
    url: str, per_request: int, seconds: float, clients: int
) -> tuple[int, int, float]:
    """``clients`` closed-loop clients for ``seconds``: (requests, rewards, seconds)."""
    import httpx

    payload = {
        "query": [f"q{i} a completion of some length {i}" for i in range(per_request)],
        "prompts": [f"q{i}" for i in range(per_request)],
        "labels": [None] * per_request,
    }
    done = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:
        end = time.perf_counter() + seconds

        async def one_client() -> None:
            nonlocal done
            while time.perf_counter() < end:
                r = await client.post(url, json=payload)
                r.raise_for_status()
                assert len(r.json()["rewards"]) == per_request
                done += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        elapsed = time.perf_counter() - t0
    return done, done * per_request, elapsed


def batch_stats(base: str) -> tuple[float, float]:
    """(rows, calls) of the ``Reward.score`` calls of the replica that answers ``/metrics``."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as r:
        text = r.read().decode()
    values = dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    return float(values["safeladder_batch_rows_sum"]), float(values["safeladder_batch_rows_count"])


def serve_run(work: Path, address: str, replicas: int, port: int) -> list[dict[str, Any]]:
    """One ``serve --ray`` subprocess on ``port``. The port is the same for every call: on a
    cluster it did not start, ``serve --ray`` leaves Ray Serve (and its HTTP proxy, on the
    first port it was given) running, and a later ``serve.start`` keeps that proxy."""
    cfg = reward_config(work / f"serve{replicas}.json", None)
    cmd = [
        sys.executable, "-m", "safeladder.cli.app", "serve", str(cfg), "--ray",
        "--replicas", str(replicas), "--gpus-per-replica", "1", "--port", str(port),
        "--max-batch-size", str(SERVE_MAX_BATCH), "--log-level", "warning",
    ]  # fmt: skip
    env = env_for_cli(address)
    env.pop("SAFELADDER_API_KEY", None)
    t0 = time.time()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"serve --ray exited {proc.returncode}: {err[-2000:]}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{base}/health", timeout=1) as r,
        ):
            if r.status == 200:
                break
        if time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError("serve --ray did not become healthy in 120 s")
        time.sleep(0.3)
    ready_s = time.time() - t0
    records = []
    try:
        for k in SERVE_SAMPLES_PER_REQUEST:
            clients = -(-SERVE_ROWS_PER_REPLICA * replicas // k)
            asyncio.run(serve_traffic(f"{base}/get_reward", k, 1.0, clients))  # warm-up
            busy0, total0 = machine_cpu()
            rows0, calls0 = batch_stats(base)
            requests, rewards, secs = asyncio.run(
                serve_traffic(f"{base}/get_reward", k, SERVE_SECONDS, clients)
            )
            busy1, total1 = machine_cpu()
            rows1, calls1 = batch_stats(base)
            # /metrics is one replica's (the one that answers): only meaningful with one.
            mean_batch = (
                (rows1 - rows0) / (calls1 - calls0) if calls1 > calls0 and replicas == 1 else None
            )
            records.append(
                {
                    "replicas": replicas,
                    "max_batch_size": SERVE_MAX_BATCH,
                    "clients": clients,
                    "samples_per_request": k,
                    "ready_s": ready_s,
                    "seconds": secs,
                    "requests": requests,
                    "requests_per_s": requests / secs,
                    "rewards_per_s": rewards / secs,
                    "mean_batch_rows": mean_batch,
                    "machine_cpu_busy": (busy1 - busy0) / (total1 - total0),
                }
            )
            log.info(
                "serve R=%d k=%d: %.0f rewards/s, mean batch %s", replicas, k, rewards / secs,
                mean_batch,
            )  # fmt: skip
    finally:
        code = stop(proc)
    for r in records:
        r["exit_code"] = code
    return records


# ----------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="A smoke run (about 1 minute).")
    ap.add_argument("--no-serve", action="store_true", help="Skip the serve --ray part.")
    ap.add_argument("--results", type=Path, default=RESULTS, help="JSON lines appended here.")
    args = ap.parse_args()
    if args.quick:
        globals().update(QUICK)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    sys.path[:0] = [str(REPO), str(BENCH)]
    # The Ray workers (started by the local Ray below) import the model from here.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), str(BENCH), os.environ.get("PYTHONPATH", "")]
    )
    os.environ.pop("RAY_ADDRESS", None)
    import ray

    env = bench_env.environment(["ray", "pyarrow", "httpx"])
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    common = {
        "bench": "ray_scaling",
        "time": stamp,
        "quick": args.quick,
        "simulated": True,
        "model": {"overhead_ms": OVERHEAD_MS, "per_row_ms": PER_ROW_MS, "max_rows": MAX_ROWS},
        "cluster": {"cpus": CLUSTER_CPUS, "gpus": CLUSTER_GPUS, "gpus_simulated": True},
        **env,
    }
    records: list[dict[str, Any]] = []

    def emit(part: str, rec: dict[str, Any]) -> None:
        records.append({**common, "part": part, **rec})

    work = Path(tempfile.mkdtemp(prefix="bench-ray-", dir="/tmp"))
    t_start = time.time()
    try:
        rates, offline = offline_rates(work)
        for rec in offline:
            emit("offline", rec)

        # Cold: the CLI's own private Ray (started and stopped by the command), no GPUs.
        rows_file = work / "rows.jsonl"
        biggest = max(
            COLD_ROWS,
            CEILING_ROWS,
            *(int(w * rates[b] * SCORE_SECONDS) for w in WORKERS for b in BATCH_SIZES),
        )
        write_rows(rows_file, biggest, ROW_BYTES)
        if COLD_ROWS:
            rec = score_run(work, "cold", rows_file, COLD_ROWS, 1, 128, None, gpus=False)
            rec["offline_rows_per_s"] = rates[128]
            log.info("cold: wall %.1fs, start-up %.1fs", rec["wall_s"], rec["startup_s"])
            emit("cold", rec)

        t0 = time.time()
        ray.init(
            address="local",
            num_cpus=CLUSTER_CPUS,
            num_gpus=CLUSTER_GPUS,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            _temp_dir=str(work / "ray"),
            logging_level=logging.WARNING,
        )
        cluster_start_s = time.time() - t0
        address = ray.get_runtime_context().gcs_address
        log.info("local Ray at %s (%.1fs)", address, cluster_start_s)
        try:
            for b in BATCH_SIZES:
                for w in WORKERS:
                    n = int(w * rates[b] * SCORE_SECONDS)
                    prefix = int(min(WORKERS) * rates[b] * SCORE_SECONDS)
                    rec = score_run(
                        work, f"score-w{w}-b{b}", rows_file, n, w, b, address, prefix_rows=prefix
                    )
                    ideal = w * rates[b]
                    rec |= {
                        "offline_rows_per_s": rates[b],
                        "ideal_rows_per_s": ideal,
                        "efficiency_steady": rec["rows_per_s_steady"] / ideal,
                        "efficiency_wall": rec["rows_per_s_wall"] / ideal,
                        "cluster_start_s": cluster_start_s,
                    }
                    log.info(
                        "score W=%d B=%d: %.0f rows/s steady (ideal %.0f, %.0f%%), wall %.1fs "
                        "(start-up %.1fs), GPUs %s",
                        w, b, rec["rows_per_s_steady"], ideal,
                        100 * rec["efficiency_steady"], rec["wall_s"], rec["startup_s"],
                        rec["cuda_visible_devices"],
                    )  # fmt: skip
                    emit("score", rec)
            # The plumbing's own ceiling: the same runs with a model that costs nothing.
            for b in BATCH_SIZES:
                rec = score_run(
                    work, f"ceiling-b{b}", rows_file, CEILING_ROWS, CEILING_WORKERS, b, address,
                    free=True,
                )  # fmt: skip
                log.info("ceiling B=%d: %.0f rows/s steady", b, rec["rows_per_s_steady"])
                emit("ceiling", rec)
            rec = backpressure_run(work, address)
            log.info(
                "backpressure: max read-ahead %s rows (%.1f MB) of %d, driver RSS %.0f MB",
                rec["max_rows_read_ahead"], rec["max_mb_read_ahead"], rec["rows"],
                rec["max_driver_rss_mb"] or 0,
            )  # fmt: skip
            emit("backpressure", rec)
            if not args.no_serve:
                port = free_port()
                for r in SERVE_REPLICAS:
                    for rec in serve_run(work, address, r, port):
                        rec["ideal_rewards_per_s"] = r * rates[SERVE_MAX_BATCH]
                        rec["efficiency"] = rec["rewards_per_s"] / rec["ideal_rewards_per_s"]
                        emit("serve", rec)
        finally:
            ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    total = time.time() - t_start
    args.results.parent.mkdir(parents=True, exist_ok=True)
    with args.results.open("a", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps({**rec, "bench_seconds": round(total, 1)}) + "\n")
    print_table(records)
    log.info("done in %.0fs; %d lines appended to %s", total, len(records), args.results)


def print_table(records: list[dict[str, Any]]) -> None:
    print(
        "\n| run | workers | batch | rows | rows/s steady | ideal | efficiency | wall s | start-up s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in records:
        if r["part"] in ("score", "cold", "ceiling"):
            ideal = r.get("ideal_rows_per_s")
            eff = r.get("efficiency_steady")
            print(
                f"| {r['part']} | {r['workers']} | {r['batch_size']} | {r['rows']} "
                f"| {r['rows_per_s_steady']:.0f} "
                f"| {'' if ideal is None else format(ideal, '.0f')} "
                f"| {'' if eff is None else format(eff, '.0%')} "
                f"| {r['wall_s']:.1f} | {r['startup_s']:.1f} |"
            )
    for r in records:
        if r["part"] == "backpressure":
            print(
                f"backpressure: {r['rows']} rows ({r['input_mb']:.0f} MB); read ahead of the "
                f"actor at most {r['max_rows_read_ahead']} rows ({r['max_mb_read_ahead']:.0f} MB); "
                f"driver RSS <= {r['max_driver_rss_mb']:.0f} MB, reader RSS <= "
                f"{r['max_reader_rss_mb']:.0f} MB; exit {r['exit_code']}, checkpoint "
                f"{r['checkpoint_saved']}"
            )
        if r["part"] == "serve":
            print(
                f"serve: {r['replicas']} replicas, {r['samples_per_request']} samples/request, "
                f"{r['clients']} clients: {r['rewards_per_s']:.0f} rewards/s (ideal "
                f"{r['ideal_rewards_per_s']:.0f}, {r['efficiency']:.0%})"
            )


if __name__ == "__main__":
    main()
