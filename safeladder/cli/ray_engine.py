"""``safeladder score --engine ray``: the same job as the local engine, scored by a Ray cluster.

Pipeline (Ray Data, streaming)::

    read task (on this node)          actor pool (num_workers, num_gpus each)      this process
    read_rows(IN) → chunks of    ──►  _ChunkScorer: Reward built once per actor ──►  writes OUT and
    batch_size input rows             per chunk: map rows → Sample, Reward.score,    OUT.errors.jsonl
    (one Arrow row per chunk)         rows → JSON lines (the local engine's code)    in input order

What stays exactly as in the local engine (``safeladder.cli.score``), because the same code
does it: the input is read by ``safeladder.data.read_rows`` (so bad rows and their 1-based
line numbers are the same), each chunk of ``batch_size`` input rows is one ``Reward.score``
call (``_Scorer._score_chunk``: the same mapping, row rejections and batch-level
normalization), each output line is ``dumps({**row, **reward record})``, and the driver writes
chunks in input order (``preserve_order``), each row exactly once, with the same checkpoints.
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
job. Ctrl-C and SIGTERM (Ray's driver handler exits) checkpoint the finished chunks first.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
import pickle
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

from safeladder.cli.errors import EXIT_FAILURE, EXIT_USAGE, CliError
from safeladder.cli.score import Progress, ScoreJob, _Scorer, progress_bar
from safeladder.data import Row, count_rows, dumps, read_rows
from safeladder.errors import ConfigError, InputError, SafeladderError

#: How to get Ray, in every message about it missing.
RAY_INSTALL_HINT = "pip install 'safeladder[ray]'"

#: Logical CPUs each scoring actor reserves (GPU actors reserve their GPUs on top).
CPUS_PER_WORKER = 1.0


def import_ray(feature: str, *submodules: str) -> ModuleType:
    """``ray`` (and ``ray.<submodule>``), or a ``ConfigError`` that says how to install it.

    Ray is an optional extra; a missing install must read as a usage problem, not an
    ``ImportError`` traceback.
    """
    import importlib

    try:
        ray = importlib.import_module("ray")
        for sub in submodules:
            importlib.import_module(f"ray.{sub}")
    except ImportError as exc:
        raise ConfigError(
            f"{feature} needs Ray ({exc}); install it with: {RAY_INSTALL_HINT}"
        ) from None
    return ray


class RaySession:
    """Use the connected Ray, else connect to ``$RAY_ADDRESS``, else start a private local Ray.

    Only what this object started (or connected) is shut down by ``close()``; a Ray the caller
    had already initialized is left alone. A local Ray gets its own temp dir (sessions of other
    processes under /tmp/ray are never touched) unless ``$RAY_TMPDIR`` names one.

    Example::

        with RaySession("safeladder score --engine ray") as ray:
            print(ray.cluster_resources())
    """

    def __init__(
        self, feature: str, *, num_cpus: int | None = None, submodules: tuple[str, ...] = ()
    ):
        self.feature = feature
        self.num_cpus = num_cpus
        self.submodules = submodules
        self.owned = False  # this object called ray.init (started or connected)
        self.private = False  # ... and started a Ray instance of its own
        self.temp_dir: str | None = None
        self._ray: ModuleType | None = None

    def start(self) -> ModuleType:
        ray = import_ray(self.feature, *self.submodules)
        self._ray = ray
        if ray.is_initialized():
            return ray
        kwargs: dict[str, Any] = {"logging_level": logging.WARNING}
        if os.environ.get("RAY_ADDRESS"):
            # ray.init reads $RAY_ADDRESS itself ("auto", "host:6379", "ray://..."); the
            # cluster's own settings (temp dir, dashboard) are not ours to pass.
            address = None
        else:
            # "local" always starts a new instance; a bare ray.init() could attach to another
            # process's cluster on this machine.
            address = "local"
            # Loopback: a private instance has no reason to open Ray's ports to the network.
            kwargs.update(
                include_dashboard=False, num_cpus=self.num_cpus, _node_ip_address="127.0.0.1"
            )
            if not os.environ.get("RAY_TMPDIR"):
                # Short path under /tmp: Ray's socket paths must fit in 107 bytes.
                self.temp_dir = tempfile.mkdtemp(prefix="safeladder-ray-", dir="/tmp")
                kwargs["_temp_dir"] = self.temp_dir
        try:
            ray.init(address=address, **kwargs)
        except Exception as exc:
            self._remove_temp_dir()
            where = os.environ.get("RAY_ADDRESS") or "a local Ray"
            raise CliError(
                f"{self.feature}: cannot start or reach {where}: {type(exc).__name__}: {exc}",
                EXIT_FAILURE,
            ) from exc
        self.owned = True
        self.private = address == "local"
        return ray

    def close(self) -> None:
        if self.owned and self._ray is not None:
            self._ray.shutdown()  # stops a private instance; only disconnects from a cluster
            self.owned = self.private = False
        self._remove_temp_dir()

    def _remove_temp_dir(self) -> None:
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            self.temp_dir = None

    def __enter__(self) -> ModuleType:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _fatal_of(exc: BaseException) -> tuple[str, int]:
    """``(message, exit code)`` for a failure inside a Ray worker, sent to the driver as data.

    Failures travel as data, not exceptions: Ray pickles a worker's exception without its
    ``__cause__`` (and ``CliError`` without its exit code), and the driver must see each
    failure at its place in the input order, after the chunks before it were written.
    """
    if isinstance(exc, CliError):
        message, code, cause = str(exc), exc.exit_code, exc.__cause__ if exc.show_cause else None
    elif isinstance(exc, SafeladderError):
        message, cause = str(exc), None
        code = EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FAILURE
    else:  # a bug: keep its traceback
        message, code, cause = f"{type(exc).__name__}: {exc}", EXIT_FAILURE, exc
    if cause is not None:
        tb = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__))
        message += f"\n(traceback from the Ray worker)\n{tb.rstrip()}"
    return message, code


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

    A chunk is ``batch_size`` input rows (good and bad), as the local engine cuts them; at
    most ``limit`` rows are read. Runs as the single Ray Data read task, on the driver's node.
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

    chunk: list[Row] = []
    index = 0
    rows = read_rows(path, fmt, start=start, json_columns=json_columns, split=split)
    try:
        for n, row in enumerate(rows, start=1):
            chunk.append(row)
            done = limit is not None and n >= limit
            if len(chunk) >= batch_size or done:
                yield table(index, chunk)
                index += 1
                chunk = []
            if done:
                return
    except InputError as exc:
        # The file is unreadable past some point (a truncated gzip): as in the local engine,
        # the rows of the unfinished chunk are dropped and the run stops there.
        yield table(index, None, str(exc))
        return
    if chunk:
        yield table(index, chunk)


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
    "fatal": "string",  # why the run must stop at this chunk (exit code below), or null
    "fatal_code": "int64",
}


class _ChunkScorer:
    """The Ray Data actor: builds the reward once (on its first chunk), then scores whole
    chunks. Input batch: Arrow rows from ``_read_chunks``; output: ``_OUT_TYPES`` columns."""

    def __init__(self, config: Any, job: ScoreJob):
        self._config = config
        self._scorer = _Scorer(job)
        self._reward: Any = None
        self._fingerprint = ""
        self._broken: tuple[str, int] | None = None

    def _ensure_reward(self) -> tuple[str, int] | None:
        # Built on the first call rather than in __init__, so that a build failure (a missing
        # checkpoint or module on this node) reaches the driver as a message, in order.
        if self._reward is None and self._broken is None:
            from safeladder.rewards import Reward

            try:
                self._reward = Reward(self._config)
                self._fingerprint = str(self._reward.fingerprint)
            except Exception as exc:
                message, code = _fatal_of(exc)
                self._broken = (f"a Ray worker could not build the reward: {message}", code)
        return self._broken

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        cols: dict[str, list[Any]] = {c: [] for c in _OUT_TYPES}

        def add(index: int, fatal: tuple[str, int] | None = None, **values: Any) -> None:
            values.update(chunk=index, fingerprint=self._fingerprint)
            if fatal is not None:
                values.update(fatal=fatal[0], fatal_code=fatal[1])
            for c in _OUT_TYPES:
                cols[c].append(values.get(c))

        for index, payload, read_error in zip(
            batch.column("chunk").to_pylist(),
            batch.column("rows").to_pylist(),
            batch.column("fatal").to_pylist(),
            strict=True,
        ):
            if read_error is not None:
                add(index, (read_error, EXIT_FAILURE))
                continue
            broken = self._ensure_reward()
            if broken is not None:
                add(index, broken)
                continue
            rows: list[Row] = pickle.loads(payload)
            try:
                scored, bad = self._scorer._score_chunk(self._reward, rows)
            except CliError as exc:  # the reward raised: the local engine's message
                add(index, _fatal_of(exc))
                continue
            clash: set[str] = set()
            lines: list[bytes] = []
            for row, rec in scored:
                data = row.data or {}
                clash.update(k for k in rec if k in data)
                lines.append(dumps({**data, **rec}).encode("utf-8") + b"\n")
            add(
                index,
                rows=len(rows),
                last_line=rows[-1].line,
                out=b"".join(lines),
                err=b"".join(
                    dumps({"line": ln, "error": e, "raw": r}).encode("utf-8") + b"\n"
                    for ln, e, r in bad
                ),
                bad_line=bad[0][0] if bad else None,
                bad_error=bad[0][1] if bad else None,
                clash=",".join(sorted(clash)),
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


def plan_workers(ray: ModuleType, num_workers: int | None, gpus_per_worker: float) -> int:
    """The actor pool size: ``num_workers``, else one per ``gpus_per_worker`` GPUs of the
    cluster, else one per CPU of the cluster.

    >>> from types import SimpleNamespace
    >>> fake = SimpleNamespace(cluster_resources=lambda: {"CPU": 16.0, "GPU": 8.0})
    >>> plan_workers(fake, None, 1.0), plan_workers(fake, None, 0.5), plan_workers(fake, None, 0)
    (8, 16, 16)
    """
    resources = ray.cluster_resources()
    gpus = float(resources.get("GPU", 0.0))
    if num_workers is not None:
        need = num_workers * gpus_per_worker
        if need > gpus + 1e-9:
            print(
                f"warning: {num_workers} workers x {gpus_per_worker:g} GPUs need {need:g} GPUs; "
                f"the cluster has {gpus:g} now, so the run waits for more (an autoscaler)",
                file=sys.stderr,
            )
        return num_workers
    if gpus_per_worker > 0:
        n = int(gpus // gpus_per_worker + 1e-9)
        if n < 1:
            raise CliError(
                f"--gpus-per-worker {gpus_per_worker:g}: the Ray cluster has {gpus:g} GPUs; "
                "pass --num-workers to wait for an autoscaler, or drop --gpus-per-worker",
                EXIT_USAGE,
            )
        return n
    return max(1, int(float(resources.get("CPU", 1.0)) // CPUS_PER_WORKER))


class _LineWriter:
    """Appends ready-made JSON lines (bytes) and syncs, like ``JsonlWriter`` without encoding:
    the workers already encoded each line with the same ``dumps``."""

    def __init__(self, path: Path):
        self._fh = open(path, "ab")  # noqa: SIM115 - closed in __exit__

    def write(self, data: bytes) -> None:
        if data:
            self._fh.write(data)

    def tell(self) -> int:
        return self._fh.tell()

    def sync(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def __enter__(self) -> _LineWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._fh.close()


@contextlib.contextmanager
def _data_context(ray: ModuleType) -> Iterator[Any]:
    """Ray Data settings for one run, restored afterwards (the context is process-global)."""
    ctx = ray.data.DataContext.get_current()
    saved = (ctx.execution_options.preserve_order, ctx.enable_progress_bars)
    # Ray Data logs each run's plan at INFO, and warns once that its bars are off (ours
    # replace them); other warnings (e.g. actors waiting for GPUs) still show.
    quiet = {"ray.data": logging.WARNING, "ray.data._internal.progress": logging.ERROR}
    levels = {name: logging.getLogger(name).level for name in quiet}
    ctx.execution_options.preserve_order = True  # chunks come back in input order
    ctx.enable_progress_bars = False
    for name, level in quiet.items():
        logging.getLogger(name).setLevel(max(levels[name], level))
    try:
        yield ctx
    finally:
        ctx.execution_options.preserve_order, ctx.enable_progress_bars = saved
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


class RayScorer(_Scorer):
    """``_Scorer`` with the rows scored by a Ray Data actor pool (see the module docstring)."""

    def __init__(self, job: ScoreJob):
        super().__init__(job)
        self._resumed_fingerprint = ""  # what the checkpoint being resumed recorded
        self._first_chunk = True

    def _open_reward(self, cfg: Any, prog: Progress | None) -> ClusterReward:
        job = self.job
        if job.num_workers is not None and job.num_workers < 1:
            raise CliError(f"--num-workers must be >= 1, got {job.num_workers}", EXIT_USAGE)
        if job.gpus_per_worker < 0:
            raise CliError(f"--gpus-per-worker must be >= 0, got {job.gpus_per_worker}", EXIT_USAGE)
        session = RaySession("safeladder score --engine ray", submodules=("data",))
        ray = session.start()
        try:
            workers = plan_workers(ray, job.num_workers, job.gpus_per_worker)
        except BaseException:
            session.close()
            raise
        self._resumed_fingerprint = prog.reward_fingerprint if prog is not None else ""
        return ClusterReward(cfg, self._resumed_fingerprint, session, workers)

    def _score_rows(self, reward: ClusterReward, prog: Progress, fmt: str) -> None:
        job, paths = self.job, self.paths
        try:
            del_rows = read_rows(
                job.input, fmt, start=prog.next_line, json_columns=job.json_columns, split=job.split
            )  # checks the options here (exit 2); the read task streams the rows
            del del_rows
            total = count_rows(job.input, fmt, job.split)
        except InputError as exc:
            raise CliError(str(exc), EXIT_USAGE) from exc
        if job.limit is not None:
            total = job.limit if total is None else min(total, job.limit)
        if job.limit is not None and prog.rows_read >= job.limit:
            prog.status = "complete"
            prog.save(paths.progress)
            return
        remaining = None if job.limit is None else job.limit - prog.rows_read

        import ray

        prog.runs += 1
        bar = progress_bar(job, total, prog.rows_read, f"scoring ({reward.workers} Ray workers)")
        started = time.perf_counter()
        elapsed_before = prog.elapsed_s
        last_checkpoint = started

        with (
            _data_context(ray),
            _LineWriter(paths.output) as out,
            _LineWriter(paths.errors) as errs,
            bar,
        ):

            def checkpoint(status: str = "running") -> None:
                # Data first, then the checkpoint that names it (as in the local engine).
                out.sync()
                errs.sync()
                prog.elapsed_s = elapsed_before + time.perf_counter() - started
                prog.status = status
                prog.save(paths.progress)

            batches: Any = None
            try:
                read_fn = functools.partial(
                    _read_chunks,
                    str(job.input.resolve()),
                    fmt,
                    prog.next_line,
                    tuple(job.json_columns),
                    job.split,
                    job.batch_size,
                    remaining,
                )
                ds = ray.data.read_datasource(_rows_datasource(read_fn), **_read_options(ray))
                gpus = job.gpus_per_worker
                ds = ds.map_batches(
                    _ChunkScorer,
                    fn_constructor_kwargs={"config": reward.config, "job": job},
                    batch_size=1,  # one chunk per call: one Reward.score per chunk, as locally
                    batch_format="pyarrow",
                    **_pool_options(ray, reward.workers),
                    num_cpus=CPUS_PER_WORKER,
                    **({"num_gpus": gpus} if gpus > 0 else {}),
                )
                expected = 0
                # iter(): the generator itself, whose close() shuts the executor down
                batches = iter(ds.iter_batches(batch_size=None, batch_format="pyarrow"))
                for table in batches:
                    for rec in table.to_pylist():
                        if (
                            rec["chunk"] != expected
                        ):  # preserve_order broken: never write out of order
                            raise CliError(
                                f"internal error: Ray returned chunk {rec['chunk']} where chunk "
                                f"{expected} was due; nothing after it was written",
                                EXIT_FAILURE,
                            )
                        expected += 1
                        self._write_chunk(rec, reward, prog, out, errs)
                        bar.update(rec["rows"])
                        now = time.perf_counter()
                        if now - last_checkpoint >= job.checkpoint_every_s:
                            checkpoint()
                            last_checkpoint = now
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    checkpoint()
                with contextlib.suppress(Exception):
                    if batches is not None and hasattr(batches, "close"):
                        batches.close()  # runs its finally: the executor and actors stop now
                if isinstance(exc, CliError) or not isinstance(exc, Exception):
                    raise  # ours, or Ctrl-C / SIGTERM (Ray's handler exits): checkpoint saved
                if isinstance(exc, OSError):
                    raise CliError(
                        f"I/O error while scoring {job.input}: {exc}", EXIT_FAILURE
                    ) from exc
                # Not a reward or input failure (those arrive as data): a node or actor died.
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                raise CliError(
                    f"the Ray run failed: {type(exc).__name__}: {first}",
                    EXIT_FAILURE,
                    show_cause=True,
                ) from exc
            checkpoint("complete")

    def _write_chunk(
        self,
        rec: dict[str, Any],
        reward: ClusterReward,
        prog: Progress,
        out: _LineWriter,
        errs: _LineWriter,
    ) -> None:
        job = self.job
        if rec["fatal"] is not None:  # the reward raised, or the input ends in an error
            raise CliError(rec["fatal"], int(rec["fatal_code"]))
        fp = str(rec["fingerprint"])
        if self._first_chunk:
            self._first_chunk = False
            if self._resumed_fingerprint and fp != self._resumed_fingerprint:
                raise CliError(
                    f"cannot resume {job.output}: a verifier changed (its checkpoint or code "
                    "fingerprint differs); start over with --overwrite",
                    EXIT_USAGE,
                )
            reward.fingerprint = prog.reward_fingerprint = fp
        elif fp != reward.fingerprint:
            raise CliError(
                f"Ray workers disagree on the reward (fingerprint {fp} vs {reward.fingerprint}): "
                "a node has a different checkpoint or safeladder version at the same path",
                EXIT_FAILURE,
            )
        if rec["clash"] and not self._warned_collision:
            self._warned_collision = True
            print(
                f"warning: input rows already have column(s) {rec['clash'].replace(',', ', ')}; "
                "the new scores replace them in the output",
                file=sys.stderr,
            )
        if rec["bad_line"] is not None and job.fail_on_error:
            raise CliError(
                f"{job.input}: line {rec['bad_line']}: {rec['bad_error']} (without "
                f"--fail-on-error it would go to {self.paths.errors})",
                EXIT_FAILURE,
            )
        out.write(rec["out"])
        errs.write(rec["err"])
        prog.next_line = int(rec["last_line"]) + 1
        prog.rows_read += int(rec["rows"])
        prog.output_bytes = out.tell()
        prog.errors_bytes = errs.tell()


__all__ = [
    "RAY_INSTALL_HINT",
    "ClusterReward",
    "RayScorer",
    "RaySession",
    "import_ray",
    "plan_workers",
]
