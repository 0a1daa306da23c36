"""The Ray engine (``engine="ray"``, ``safeladder score --engine ray``): the same job as the
local engine, scored by a Ray cluster.

Pipeline (Ray Data, streaming)::

    read task (on this node)          actor pool (num_workers, num_gpus each)      this process
    read_rows(IN) → chunks of    ──►  _ChunkScorer: Reward built once per actor ──►  Scorer's loop
    batch_size input rows             per chunk: score_chunk (map rows → Sample,     writes OUT and
    (one Arrow row per chunk)         Reward.score, rows → JSON lines)               OUT.errors.jsonl

What stays exactly as in the local engine (``safeladder.scoring.engine``), because the same
code does it: the input is read by ``safeladder.data.read_rows`` and cut by ``iter_chunks``
(so bad rows and their 1-based line numbers are the same), each chunk of ``batch_size`` input
rows is one ``Reward.score`` call (``score_chunk``: the same mapping, row rejections and
batch-level normalization, the same encoded lines), and the driver appends the chunks in input
order (``preserve_order``), each row exactly once, in ``Scorer``'s checkpoint loop.
So the output and errors files are byte-identical to a local run, and ``--resume`` works,
even across engines (a run started locally may be resumed with ``--engine ray`` and back).

Why one read task on this node rather than ``ray.data.read_json``: Arrow readers coerce types
(a field missing from a row becomes null, mixed types fail), stop at the first malformed row
and lose line numbers. The single reader streams chunks as it goes (memory stays bounded by
the chunks in flight) and runs where the input file is, so worker nodes need no shared
filesystem; the heavy part, scoring, is what is spread over the cluster.

Where the reward lives: only in the actors. The driver never builds it (a neural verifier
would load its model on the head node for nothing); it knows the term names and weights from
the config and learns the reward fingerprint from the first scored chunk. Every chunk carries
its actor's fingerprint, so a worker node with a different checkpoint at the same path stops
the run instead of mixing two rewards in one file.

Cluster: the Ray this process is already connected to, else ``$RAY_ADDRESS`` (e.g. ``auto``
on a node of a cluster started with ``ray start``), else a private local Ray (on loopback, its
own temp dir under /tmp, no dashboard), shut down at the end. Run the command on a cluster
node (the reader runs on the driver's node; Ray Client ``ray://`` addresses are not for this).
Custom verifier modules and checkpoint paths must exist on every worker node, as for any Ray
job; so must image files named by path (relative paths resolve against the input file's
folder, as locally): data URLs and Parquet binary image columns travel with the rows. Ctrl-C and SIGTERM (Ray's driver handler exits) checkpoint the finished chunks first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import logging
import pickle
import traceback
from collections.abc import Generator, Iterator
from types import ModuleType
from typing import Any

from safeladder.data import Row, read_rows
from safeladder.errors import (
    ConfigError,
    InputError,
    SafeladderError,
    ScoringError,
    ScoringJobError,
)
from safeladder.scoring.checkpoint import Progress
from safeladder.scoring.chunks import ScoredChunk, iter_chunks, score_chunk
from safeladder.scoring.engine import Scorer
from safeladder.scoring.job import ScoreJob
from safeladder.scoring.ray_cluster import (
    CPUS_PER_WORKER,
    RAY_INSTALL_HINT,
    RaySession,
    import_ray,
    plan_workers,
)


def _fatal_of(exc: BaseException) -> tuple[str, bool]:
    """``(message, is_job_error)`` for a failure inside a Ray worker, sent to the driver as data.

    ``is_job_error``: the job is wrong (a ``ScoringJobError`` or ``ConfigError``) rather than
    the run. Failures travel as data, not exceptions: Ray pickles a worker's exception without
    its ``__cause__``, and the driver must see each failure at its place in the input order,
    after the chunks before it were written.
    """
    cause: BaseException | None
    if isinstance(exc, ScoringError):
        message, cause = str(exc), exc.__cause__ if exc.show_cause else None
    elif isinstance(exc, SafeladderError):
        message, cause = str(exc), None
    else:  # a bug: keep its traceback
        message, cause = f"{type(exc).__name__}: {exc}", exc
    if cause is not None:
        tb = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__))
        message += f"\n(traceback from the Ray worker)\n{tb.rstrip()}"
    return message, isinstance(exc, (ScoringJobError, ConfigError))


# ----------------------------------------------------------------------------- workers
def _read_chunks(
    path: str,
    fmt: str,
    start: int,
    json_columns: tuple[str, ...],
    split: str | None,
    batch_size: int,
    limit: int | None,
) -> Iterator[Any]:
    """The input as Arrow tables of one row each: ``{chunk: int64, rows: pickled list[Row],
    fatal: the read error that ends the input, or null}``.

    A chunk is ``batch_size`` input rows (good and bad), cut by ``iter_chunks`` as in the local
    engine; at most ``limit`` rows are read. Runs as the single Ray Data read task, on the
    driver's node.
    """
    import pyarrow as pa

    def table(index: int, rows: list[Row] | None, fatal: str | None = None) -> Any:
        return pa.table(
            {
                "chunk": pa.array([index], pa.int64()),
                "rows": pa.array(
                    [None if rows is None else pickle.dumps(rows, protocol=5)], pa.large_binary()
                ),
                "fatal": pa.array([fatal], pa.string()),
            }
        )

    index = 0
    rows = read_rows(path, fmt, start=start, json_columns=json_columns, split=split)
    try:
        for chunk in iter_chunks(rows, batch_size, limit):
            yield table(index, chunk)
            index += 1
    except InputError as exc:
        # The file is unreadable past some point (a truncated gzip): as in the local engine,
        # the rows of the unfinished chunk are dropped and the run stops there.
        yield table(index, None, str(exc))


#: Ray Data's target block size during a run: it bounds how much input is read ahead.
READ_BLOCK_BYTES = 1 << 20

#: Columns of the scored chunks (one Arrow row per chunk), with their Arrow types.
_OUT_TYPES = {
    "chunk": "int64",  # 0-based chunk index in this run
    "rows": "int64",  # input rows in the chunk (good and bad)
    "last_line": "int64",  # line of the chunk's last input row
    "out": "large_binary",  # the chunk's output JSON lines, newline-terminated
    "err": "large_binary",  # the chunk's errors-file JSON lines
    "bad_line": "int64",  # the chunk's first bad row (for --fail-on-error), or null
    "bad_error": "string",  # its error
    "fingerprint": "string",  # the actor's Reward.fingerprint
    "clash": "string",  # input columns the reward's columns replaced, comma-separated
    "fatal": "string",  # why the run must stop at this chunk, or null
    "fatal_job": "bool_",  # ... because the job is wrong (ScoringJobError), not the run
}


class _ChunkScorer:
    """The Ray Data actor: builds the reward once (on its first chunk), then scores whole
    chunks. Input batch: Arrow rows from ``_read_chunks``; output: ``_OUT_TYPES`` columns."""

    def __init__(self, config: Any, job: ScoreJob):
        self._config = config
        self._job = job
        self._reward: Any = None
        self._fingerprint = ""
        self._broken: tuple[str, bool] | None = None

    def _ensure_reward(self) -> tuple[str, bool] | None:
        # Built on the first call rather than in __init__, so that a build failure (a missing
        # checkpoint or module on this node) reaches the driver as a message, in order.
        if self._reward is None and self._broken is None:
            from safeladder.rewards import Reward

            try:
                self._reward = Reward(self._config)
                self._fingerprint = str(self._reward.fingerprint)
            except Exception as exc:
                message, job_error = _fatal_of(exc)
                self._broken = (f"a Ray worker could not build the reward: {message}", job_error)
        return self._broken

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        cols: dict[str, list[Any]] = {c: [] for c in _OUT_TYPES}

        def add(index: int, fatal: tuple[str, bool] | None = None, **values: Any) -> None:
            values.update(chunk=index, fingerprint=self._fingerprint)
            if fatal is not None:
                values.update(fatal=fatal[0], fatal_job=fatal[1])
            for c in _OUT_TYPES:
                cols[c].append(values.get(c))

        for index, payload, read_error in zip(
            batch.column("chunk").to_pylist(),
            batch.column("rows").to_pylist(),
            batch.column("fatal").to_pylist(),
            strict=True,
        ):
            if read_error is not None:
                add(index, (read_error, False))
                continue
            broken = self._ensure_reward()
            if broken is not None:
                add(index, broken)
                continue
            rows: list[Row] = pickle.loads(payload)
            try:
                scored = score_chunk(self._reward, rows, self._job)
            except ScoringError as exc:  # the reward raised: the local engine's message
                add(index, _fatal_of(exc))
                continue
            first_bad = scored.first_bad
            add(
                index,
                rows=scored.rows,
                last_line=scored.last_line,
                out=scored.out,
                err=scored.err,
                bad_line=first_bad[0] if first_bad else None,
                bad_error=first_bad[1] if first_bad else None,
                clash=",".join(scored.clash),
            )
        return pa.table({c: pa.array(cols[c], getattr(pa, t)()) for c, t in _OUT_TYPES.items()})

    def __del__(self) -> None:
        # Rule verifiers own process pools; release them when Ray ends the actor gracefully.
        with contextlib.suppress(Exception):
            if self._reward is not None:
                self._reward.close()


def _block_metadata() -> Any:
    from ray.data.block import BlockMetadata

    # The constructor's fields changed across Ray versions (schema moved out in 2.4x);
    # everything is unknown up front, so pass None for whatever this version takes.
    params = inspect.signature(BlockMetadata).parameters
    known = ("num_rows", "size_bytes", "schema", "input_files", "exec_stats")
    return BlockMetadata(**{k: None for k in known if k in params})


def _rows_datasource(read_fn: Any) -> Any:
    """A Ray Data ``Datasource`` with one read task that yields ``read_fn()``'s tables."""
    from ray.data import Datasource, ReadTask

    class SafeladderRows(Datasource):
        def get_name(self) -> str:
            return "SafeladderRows"

        def estimate_inmemory_data_size(self) -> int | None:
            return None

        def get_read_tasks(self, parallelism: int, *args: Any, **kwargs: Any) -> list[Any]:
            # One task: rows must come out in input order, and the file is on this node.
            return [ReadTask(read_fn, _block_metadata())]

    return SafeladderRows()


def _ray_version(ray: ModuleType) -> tuple[int, ...]:
    return tuple(int(p) for p in ray.__version__.split(".")[:2] if p.isdigit())


def _read_options(ray: ModuleType) -> dict[str, Any]:
    """``read_datasource`` arguments: no CPU reserved (the actors may hold every CPU, and a
    reader that waits for one would stall the run) and pinned to the driver's node (where
    the input file is).

    Named arguments where this Ray takes them (``ray_remote_args`` is deprecated from 2.5x);
    older Rays read unknown keywords as datasource arguments and drop them silently.
    """
    params = inspect.signature(ray.data.read_datasource).parameters
    node = ray.get_runtime_context().get_node_id()
    named: dict[str, Any] = {}
    remote: dict[str, Any] = {}
    (named if "num_cpus" in params else remote)["num_cpus"] = 0
    if "label_selector" in params:
        named["label_selector"] = {"ray.io/node-id": node}
    else:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        remote["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=False)
    return {**named, **({"ray_remote_args": remote} if remote else {})}


def _pool_options(ray: ModuleType, size: int) -> dict[str, Any]:
    """A fixed-size actor pool for ``map_batches``: Ray 2.9-2.50 prefer ``concurrency=``,
    2.51+ ``compute=ActorPoolStrategy`` (each warns about the other)."""
    if _ray_version(ray) >= (2, 51):
        return {"compute": ray.data.ActorPoolStrategy(size=size)}
    return {"concurrency": size}


# ----------------------------------------------------------------------------- driver
class ClusterReward:
    """The driver's view of a reward that lives in Ray actors: config facts, no verifiers.

    ``fingerprint`` is the one claimed by the checkpoint being resumed ("" for a new run)
    until the first scored chunk reports the real one.
    """

    def __init__(self, config: Any, fingerprint: str, session: RaySession, workers: int):
        self.config = config
        self.name: str = config.name
        self.term_names: list[str] = [t.name for t in config.terms]
        self.weights: dict[str, float] = {t.name: float(t.weight) for t in config.terms}
        self.fingerprint = fingerprint
        self.session = session
        self.workers = workers

    def close(self) -> None:
        self.session.close()


@contextlib.contextmanager
def _data_context(ray: ModuleType) -> Iterator[Any]:
    """Ray Data settings for one run, restored afterwards (the context is process-global)."""
    ctx = ray.data.DataContext.get_current()
    saved = (
        ctx.execution_options.preserve_order,
        ctx.enable_progress_bars,
        ctx.target_max_block_size,
    )
    # Ray Data logs each run's plan at INFO, and warns once that its bars are off (ours
    # replace them); other warnings (e.g. actors waiting for GPUs) still show.
    quiet = {"ray.data": logging.WARNING, "ray.data._internal.progress": logging.ERROR}
    levels = {name: logging.getLogger(name).level for name in quiet}
    ctx.execution_options.preserve_order = True  # chunks come back in input order
    ctx.enable_progress_bars = False
    # The reader runs ahead of the actors by a byte budget counted in blocks: with Ray's
    # 128 MiB default about 64 MB of input (33k rows of 2 KB) was read ahead of scoring; 1 MiB
    # blocks kept it to 4-5k rows (benchmarks/bench_ray_scaling.py, backpressure step).
    ctx.target_max_block_size = READ_BLOCK_BYTES
    for name, level in quiet.items():
        logging.getLogger(name).setLevel(max(levels[name], level))
    try:
        yield ctx
    finally:
        (
            ctx.execution_options.preserve_order,
            ctx.enable_progress_bars,
            ctx.target_max_block_size,
        ) = saved
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


class RayScorer(Scorer):
    """``Scorer`` with the chunks scored by a Ray Data actor pool (see the module docstring)."""

    def __init__(self, job: ScoreJob):
        super().__init__(job)
        self._resumed_fingerprint = ""  # what the checkpoint being resumed recorded
        self._first_chunk = True

    def open_reward(self, cfg: Any, prog: Progress | None) -> ClusterReward:
        job = self.job
        if job.num_workers is not None and job.num_workers < 1:
            raise ScoringJobError(f"--num-workers must be >= 1, got {job.num_workers}")
        if job.gpus_per_worker < 0:
            raise ScoringJobError(f"--gpus-per-worker must be >= 0, got {job.gpus_per_worker}")
        session = RaySession("safeladder score --engine ray", submodules=("data",))
        ray = session.start()
        try:
            workers = plan_workers(ray, job.num_workers, job.gpus_per_worker)
        except BaseException:
            session.close()
            raise
        self._resumed_fingerprint = prog.reward_fingerprint if prog is not None else ""
        return ClusterReward(cfg, self._resumed_fingerprint, session, workers)

    def progress_label(self, reward: ClusterReward) -> str:
        return f"scoring ({reward.workers} Ray workers)"

    def run_failed(self, exc: Exception) -> BaseException:
        # Not a reward or input failure (those arrive as data): a node or actor died.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return ScoringError(f"the Ray run failed: {type(exc).__name__}: {first}", show_cause=True)

    def scored_chunks(
        self,
        reward: ClusterReward,
        rows: Iterator[Row],
        prog: Progress,
        fmt: str,
        limit: int | None,
    ) -> Generator[ScoredChunk, None, None]:
        import ray

        job = self.job
        del rows  # the read task reads the input itself, on this node
        read_fn = functools.partial(
            _read_chunks,
            str(job.input.resolve()),
            fmt,
            prog.next_line,
            tuple(job.json_columns),
            job.split,
            job.batch_size,
            limit,
        )
        with _data_context(ray):
            ds = ray.data.read_datasource(_rows_datasource(read_fn), **_read_options(ray))
            gpus = job.gpus_per_worker
            # The actors resolve relative image paths against the input's folder; their working
            # directory is not this process's, so they get the input as an absolute path.
            actor_job = dataclasses.replace(job, input=job.input.resolve())
            ds = ds.map_batches(
                _ChunkScorer,
                fn_constructor_kwargs={"config": reward.config, "job": actor_job},
                batch_size=1,  # one chunk per call: one Reward.score per chunk, as locally
                batch_format="pyarrow",
                **_pool_options(ray, reward.workers),
                num_cpus=CPUS_PER_WORKER,
                **({"num_gpus": gpus} if gpus > 0 else {}),
            )
            # iter(): the generator itself, whose close() shuts the executor down
            batches = iter(ds.iter_batches(batch_size=None, batch_format="pyarrow"))
            try:
                expected = 0
                for table in batches:
                    for rec in table.to_pylist():
                        if rec["chunk"] != expected:  # preserve_order broken: never write it
                            raise ScoringError(
                                f"internal error: Ray returned chunk {rec['chunk']} where chunk "
                                f"{expected} was due; nothing after it was written"
                            )
                        expected += 1
                        yield self._chunk_of(rec, reward, prog)
            finally:
                with contextlib.suppress(Exception):
                    if hasattr(batches, "close"):
                        batches.close()  # runs its finally: the executor and actors stop now

    def _chunk_of(self, rec: dict[str, Any], reward: ClusterReward, prog: Progress) -> ScoredChunk:
        """The ``ScoredChunk`` an actor sent; raises the failure it carries, and checks that
        every actor scores with the same reward."""
        job = self.job
        if rec["fatal"] is not None:  # the reward raised, or the input ends in an error
            if rec["fatal_job"]:
                raise ScoringJobError(rec["fatal"])
            raise ScoringError(rec["fatal"])
        fp = str(rec["fingerprint"])
        if self._first_chunk:
            self._first_chunk = False
            if self._resumed_fingerprint and fp != self._resumed_fingerprint:
                raise ScoringJobError(
                    f"cannot resume {job.output}: a verifier changed (its checkpoint or code "
                    "fingerprint differs); start over with --overwrite"
                )
            reward.fingerprint = prog.reward_fingerprint = fp
        elif fp != reward.fingerprint:
            raise ScoringError(
                f"Ray workers disagree on the reward (fingerprint {fp} vs {reward.fingerprint}): "
                "a node has a different checkpoint or safeladder version at the same path"
            )
        bad_line = rec["bad_line"]
        return ScoredChunk(
            rows=int(rec["rows"]),
            last_line=int(rec["last_line"]),
            out=rec["out"],
            err=rec["err"],
            first_bad=None if bad_line is None else (int(bad_line), str(rec["bad_error"])),
            clash=tuple(rec["clash"].split(",")) if rec["clash"] else (),
        )


__all__ = [
    "RAY_INSTALL_HINT",
    "ClusterReward",
    "RayScorer",
    "RaySession",
    "import_ray",
    "plan_workers",
]
