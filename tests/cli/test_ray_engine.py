"""``safeladder score --engine ray``: the same files as the local engine, on a 2-CPU local Ray.

The expectation is independent of the Ray code: every Ray run is compared byte for byte with
a local-engine run of the same command (the local engine's own tests pin its output). One
Ray instance serves the module (starting one costs ~6 s); each Ray run costs 3-7 s.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.cli.fixtures_rewards import reward_config
from tests.cli.support import invoke, term, write_jsonl, write_yaml
from tests.helpers import local_ray_cluster

try:
    import ray  # noqa: F401

    HAVE_RAY = True
except ImportError:
    HAVE_RAY = False
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="Ray is an optional extra (safeladder[ray])")


# Every kind of row the local engine handles, across chunk boundaries (batch size 2):
#   line 1  good                      line 6  good, a column the reward replaces
#   line 2  broken JSON               line 7  no completion (a mapping error)
#   line 3  good, chat prompt, é      line 8  task names no recipe (the reward rejects it)
#   line 4  blank (not a row)         line 9  good, empty completion (abstains, gated)
#   line 5  good, math recipe         line 10 good
MIXED_CONFIG = {
    "terms": [
        term("words", "word_count_or_abstain"),
        term("len_gate", "word_count", 0.0, gate={"below": 2, "value": -1}),
    ],
    "routes": {"key": "task", "recipes": {"chat": ["words", "len_gate"], "math": ["len_gate"]}},
}
MIXED_ROWS = [
    {"id": 1, "prompt": "p", "completion": "a b", "task": "chat"},
    '{"id": 2, "completion": ',
    {
        "id": 3,
        "prompt": [{"role": "user", "content": "ça va ?"}],
        "completion": "très bien merci",
        "task": "chat",
    },
    "",
    {"id": 5, "prompt": "p", "completion": "x y z", "task": "math"},
    {"id": 6, "prompt": "p", "completion": "one two three", "reward": 99, "task": "chat"},
    {"id": 7, "prompt": "p", "task": "chat"},
    {"id": 8, "prompt": "p", "completion": "a b", "task": "poetry"},
    {"id": 9, "prompt": "p", "completion": "", "task": "chat"},
    {"id": 10, "prompt": "p", "completion": "the end of it", "task": "chat"},
]


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    """One 2-CPU Ray on loopback for the module, in its own temp dir; stopped at the end."""
    if not HAVE_RAY:
        pytest.skip("Ray is an optional extra (safeladder[ray])")

    with local_ray_cluster() as ray:
        yield ray


def files(out: Path) -> tuple[bytes, bytes]:
    return out.read_bytes(), out.with_name(out.name + ".errors.jsonl").read_bytes()


def summary(out: Path) -> dict[str, Any]:
    s = json.loads(out.with_name(out.name + ".summary.json").read_text())
    for key in ("engine", "output", "errors_file", "wall_time_s", "throughput_rows_per_s"):
        s.pop(key)
    return s


@needs_ray
@pytest.mark.slow
def test_same_output_errors_and_summary_as_the_local_engine(local_ray: Any, tmp_path: Path) -> None:
    cfg = write_yaml(tmp_path / "r.yaml", MIXED_CONFIG)
    inp = write_jsonl(tmp_path / "in.jsonl", MIXED_ROWS)
    args = ("score", cfg, "-i", inp, "--batch-size", 2, "--no-progress")
    res = invoke(*args, "-o", tmp_path / "local.jsonl")
    assert res.exit_code == 0, res.stderr
    res = invoke(*args, "-o", tmp_path / "ray.jsonl", "--engine", "ray", "--num-workers", 2)
    assert res.exit_code == 0, res.stderr

    assert files(tmp_path / "ray.jsonl") == files(tmp_path / "local.jsonl")
    assert summary(tmp_path / "ray.jsonl") == summary(tmp_path / "local.jsonl")
    assert "already have column(s) reward" in res.stderr
    assert "rows scored: 6" in res.stdout and "bad rows: 3" in res.stdout
    # what the comparison stands on: every row once, in input order
    out_ids = [json.loads(x)["id"] for x in (tmp_path / "ray.jsonl").read_text().splitlines()]
    errors = (tmp_path / "ray.jsonl.errors.jsonl").read_text().splitlines()
    assert out_ids == [1, 3, 5, 6, 9, 10]
    assert [json.loads(e)["line"] for e in errors] == [2, 7, 8]
    s = json.loads((tmp_path / "ray.jsonl.summary.json").read_text())
    assert s["engine"] == "ray" and len(s["reward_fingerprint"]) == 16


@needs_ray
@pytest.mark.slow
def test_resume_with_ray_finishes_a_run_started_locally(local_ray: Any, tmp_path: Path) -> None:
    cfg = write_yaml(tmp_path / "r.yaml", MIXED_CONFIG)
    inp = write_jsonl(tmp_path / "in.jsonl", MIXED_ROWS)
    full, part = tmp_path / "full.jsonl", tmp_path / "part.jsonl"
    base = ("score", cfg, "-i", inp, "--batch-size", 2, "--no-progress")
    assert invoke(*base, "-o", full).exit_code == 0
    # A local run stopped after 2 chunks (4 input rows) leaves a checkpoint at a chunk
    # boundary; marking it unfinished is what an interrupted run looks like.
    assert invoke(*base, "-o", part, "--limit", 4).exit_code == 0
    progress = part.with_name("part.jsonl.progress.json")
    state = json.loads(progress.read_text())
    assert (state["rows_read"], state["status"]) == (4, "complete")
    progress.write_text(json.dumps({**state, "status": "running"}))

    res = invoke(*base, "-o", part, "--resume", "--engine", "ray", "--num-workers", 2)
    assert res.exit_code == 0, res.stderr
    assert files(part) == files(full)
    s = json.loads(part.with_name("part.jsonl.summary.json").read_text())
    assert (s["runs"], s["rows_read"], s["rows_scored"]) == (2, 9, 6)


@needs_ray
@pytest.mark.slow
def test_failures_stop_where_the_local_engine_stops(local_ray: Any, tmp_path: Path) -> None:
    # A verifier that raises on line 5 only: that row goes to the errors file in both engines.
    # A broken verifier (a ConfigError on every row): chunk [1,2] fails, exit 1, nothing written.
    inp = write_jsonl(
        tmp_path / "in.jsonl",
        [{"prompt": "p", "completion": f"w{i}" + (" boom" if i == 5 else "")} for i in range(1, 8)],
    )
    runs = {}
    for engine, target in (
        ("local", "explode_on"),
        ("ray", "explode_on"),
        ("local-broken", "broken_model"),
        ("ray-broken", "broken_model"),
    ):
        boom = write_yaml(tmp_path / f"{target}.yaml", reward_config(target))
        out = tmp_path / f"boom-{engine}.jsonl"
        res = invoke(
            "score",
            boom,
            "-i",
            inp,
            "-o",
            out,
            "--batch-size",
            2,
            "--no-progress",
            "--engine",
            engine.removesuffix("-broken"),
        )
        # Only safeladder's own message lines: under load Ray may log warnings of its own.
        ours = [
            line.replace(out.name, "OUT")
            for line in res.stderr.splitlines()
            if line.startswith(("error", "hint", "  "))
        ]
        runs[engine] = (res.exit_code, "\n".join(ours), files(out))
    assert runs["ray"] == runs["local"]
    assert runs["ray"][0] == 0
    errors = [json.loads(line) for line in runs["ray"][2][1].splitlines()]
    assert [(e["line"], e["error"]) for e in errors] == [
        (5, "term 'score': ValueError: cannot handle 'boom'")
    ]
    assert runs["ray-broken"] == runs["local-broken"]
    assert runs["ray-broken"][0] == 1
    assert "the reward failed on input lines 1-2" in runs["ray-broken"][1]
    assert "Traceback" not in runs["ray-broken"][1]

    # --fail-on-error: the first bad row (line 3) stops the run, naming the row.
    words = write_yaml(tmp_path / "words.yaml", reward_config("word_count"))
    inp = write_jsonl(
        tmp_path / "in2.jsonl",
        [
            {"prompt": "p", "completion": "a"},
            {"prompt": "p", "completion": "b"},
            {"prompt": "p", "response": None},
        ],
    )
    res = invoke(
        "score",
        words,
        "-i",
        inp,
        "-o",
        tmp_path / "f.jsonl",
        "--no-progress",
        "--fail-on-error",
        "--engine",
        "ray",
        "--num-workers",
        1,
        "--batch-size",
        2,
    )
    assert res.exit_code == 1
    assert "line 3" in res.stderr and "field 'response'" in res.stderr
    assert (tmp_path / "f.jsonl").read_text().count("\n") == 2  # the chunk before it


def test_without_ray_the_error_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    cfg = write_yaml(tmp_path / "r.yaml", reward_config("word_count"))
    inp = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "p", "completion": "a"}])
    out = tmp_path / "o.jsonl"
    res = invoke("score", cfg, "-i", inp, "-o", out, "--no-progress", "--engine", "ray")
    assert res.exit_code == 2
    assert "pip install 'safeladder[ray]'" in res.stderr
    assert "Traceback" not in res.stderr and "ImportError" not in res.stderr
    assert not out.exists()  # nothing was touched


@pytest.mark.parametrize("flag", [["--num-workers", "2"], ["--gpus-per-worker", "1"]])
def test_the_local_engine_refuses_ray_options(tmp_path: Path, flag: list[str]) -> None:
    cfg = write_yaml(tmp_path / "r.yaml", reward_config("word_count"))
    inp = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "p", "completion": "a"}])
    res = invoke("score", cfg, "-i", inp, "-o", tmp_path / "o.jsonl", "--no-progress", *flag)
    assert res.exit_code == 2 and "apply to --engine ray only" in res.stderr


def test_worker_count_follows_the_cluster() -> None:
    from safeladder.errors import ScoringJobError
    from safeladder.scoring.ray_cluster import plan_workers

    cluster = SimpleNamespace(cluster_resources=lambda: {"CPU": 16.0, "GPU": 8.0})
    assert plan_workers(cluster, None, 1.0) == 8  # one per GPU
    assert plan_workers(cluster, None, 0.5) == 16  # two per GPU
    assert plan_workers(cluster, None, 0.0) == 16  # one per CPU
    assert plan_workers(cluster, 3, 1.0) == 3
    cpu_only = SimpleNamespace(cluster_resources=lambda: {"CPU": 4.0})
    with pytest.raises(ScoringJobError, match="has 0 GPUs"):
        plan_workers(cpu_only, None, 1.0)


class FakeRay:
    """Records ray.init / ray.shutdown calls."""

    def __init__(self, initialized: bool = False):
        self.initialized = initialized
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.data = SimpleNamespace()

    def is_initialized(self) -> bool:
        return self.initialized

    def init(self, **kwargs: Any) -> None:
        self.calls.append(("init", kwargs))
        self.initialized = True

    def shutdown(self) -> None:
        self.calls.append(("shutdown", {}))
        self.initialized = False


@pytest.mark.parametrize("case", ["private", "cluster", "connected"])
def test_ray_session_starts_and_stops_only_its_own_ray(
    monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    from safeladder.scoring.ray_cluster import RaySession

    fake = FakeRay(initialized=case == "connected")
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.delenv("RAY_TMPDIR", raising=False)
    if case == "cluster":
        monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    else:
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
    session = RaySession("test")
    with session:
        temp = session.temp_dir
        assert session.private == (case == "private")
        if case == "private":
            assert temp is not None and Path(temp).is_dir() and temp.startswith("/tmp/")
    inits = [kw for name, kw in fake.calls if name == "init"]
    if case == "connected":  # someone else's Ray: neither started nor stopped
        assert fake.calls == []
        return
    assert [name for name, _ in fake.calls] == ["init", "shutdown"]
    if case == "private":
        assert inits[0]["address"] == "local" and inits[0]["_temp_dir"] == temp
        assert inits[0]["_node_ip_address"] == "127.0.0.1"
        assert inits[0]["include_dashboard"] is False
        assert temp is not None and not Path(temp).exists()  # removed after shutdown
    else:  # ray.init reads $RAY_ADDRESS itself; the cluster's settings are not ours
        assert inits[0] == {"address": None, "logging_level": inits[0]["logging_level"]}


def _png(colour: tuple[int, int, int]) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buf, format="PNG")
    return buf.getvalue()


IMAGE_CONFIG = {"name": "img", "terms": [{"name": "img", "verifier": {"type": "image_safety"}}]}


@needs_ray
@pytest.mark.slow
def test_image_columns_relative_paths_data_urls_and_parquet_binary(
    local_ray: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import base64

    import pyarrow as pa
    import pyarrow.parquet as pq

    data = tmp_path / "data"
    (data / "img").mkdir(parents=True)
    (data / "img" / "red.png").write_bytes(_png((255, 0, 0)))
    url = "data:image/png;base64," + base64.b64encode(_png((0, 160, 0))).decode()
    rows = [
        {"id": 1, "prompt": "p", "completion": "a", "images": ["img/red.png"]},
        {"id": 2, "prompt": "p", "completion": "b", "image": url},
        {"id": 3, "prompt": "p", "completion": "c", "images": ["img/red.png", url]},
    ]
    write_jsonl(data / "in.jsonl", rows)
    pq.write_table(
        pa.table({"prompt": ["p"], "completion": ["d"], "images": [[_png((0, 0, 255))]]}),
        data / "in.parquet",
    )
    cfg = write_yaml(tmp_path / "r.yaml", IMAGE_CONFIG)
    # The input is named relative to the working directory, which Ray's workers do not share:
    # the image paths must still resolve against the input's folder on every worker.
    monkeypatch.chdir(tmp_path)
    for name in ("in.jsonl", "in.parquet"):
        args = ("score", cfg, "-i", Path("data") / name, "--batch-size", 2, "--no-progress")
        res = invoke(*args, "-o", tmp_path / f"local-{name}.jsonl")
        assert res.exit_code == 0, res.stderr
        res = invoke(*args, "-o", tmp_path / f"ray-{name}.jsonl", "--engine", "ray")
        assert res.exit_code == 0, res.stderr
        ray_out = tmp_path / f"ray-{name}.jsonl"
        assert files(ray_out) == files(tmp_path / f"local-{name}.jsonl")
        records = [json.loads(x) for x in ray_out.read_text().splitlines()]
        assert all(r["status/img"] == "ok" for r in records), records
        assert all(0.0 <= r["reward"] <= 1.0 for r in records)


def test_a_run_reads_ahead_in_small_blocks_and_restores_the_context() -> None:
    # Ray Data's read-ahead is a byte budget counted in blocks: 1 MiB blocks keep the input
    # read ahead of the actors to a few thousand rows (bench_ray_scaling.py's backpressure).
    ray = pytest.importorskip("ray")
    from safeladder.scoring.ray_engine import READ_BLOCK_BYTES, _data_context

    ctx = ray.data.DataContext.get_current()
    before = (ctx.target_max_block_size, ctx.execution_options.preserve_order)
    with _data_context(ray) as inside:
        assert inside.target_max_block_size == READ_BLOCK_BYTES == 1 << 20
        assert inside.execution_options.preserve_order
    assert (ctx.target_max_block_size, ctx.execution_options.preserve_order) == before
