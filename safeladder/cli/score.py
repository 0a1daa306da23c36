"""The engine of ``safeladder score``: stream rows → batches → ``Reward.score`` → JSONL.

Files, for ``--output OUT``:

- ``OUT``: one JSON line per good input row, in input order: the row's fields plus the
  reward's columns (``reward``, ``reward/<term>``, ``status/<term>``, ``gated``, ...).
- ``OUT.errors.jsonl``: one line per bad row, ``{"line", "error", "raw"}``, in input order:
  rows that do not decode or do not map to a ``Sample`` (a missing completion, or a missing
  prompt unless ``allow_missing_prompt``), rows the reward rejects by raising ``InputError``
  naming the row (e.g. a data source it refuses), and rows a verifier raised on (``Reward``
  isolates them, so the rest of their chunk is scored). Any other exception from the reward is
  fatal, naming the chunk's input lines.
- ``OUT.progress.json``: the checkpoint that makes ``--resume`` exact (below).
- ``OUT.summary.json``: the summary, computed at the end by streaming over ``OUT``.

Resuming. Rows are consumed in chunks of ``batch_size`` input rows and each chunk is appended
to both output files. At a checkpoint (after the chunk that ends ``checkpoint_every_s``
seconds after the last one, on Ctrl-C, and at the end) both files are flushed and fsync'ed,
and only then is the checkpoint replaced atomically: ``{next input line, byte sizes of OUT and
the errors file, fingerprints}``, always at a chunk boundary. A process killed at any instant
therefore leaves a checkpoint that names bytes that are on disk;
``--resume`` truncates both files back to those sizes (dropping a half-written chunk) and reads
on from the recorded line, so every input row ends up in exactly one file, exactly once, in
order. It refuses when the input file, the reward config or the field options changed.

Memory is bounded by one chunk: rows are never collected, and the summary is a streaming pass.

Engines: this module scores in-process (``--engine local``); ``--engine ray``
(``safeladder.cli.ray_engine``) scores the same chunks in a Ray actor pool and writes the same
files, through the same ``_Scorer`` (``_open_reward`` / ``_score_rows`` / ``_score_chunk``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safeladder.cli.errors import EXIT_FAILURE, EXIT_USAGE, CliError
from safeladder.cli.summary import summarize_output
from safeladder.data import FieldMap, JsonlWriter, Row, read_rows, to_sample, truncate
from safeladder.data.readers import count_rows, detect_format
from safeladder.data.writers import write_json_atomic
from safeladder.errors import InputError, SafeladderError
from safeladder.types import Sample

PROGRESS_VERSION = 1


@dataclass(frozen=True)
class ScoreJob:
    """Everything ``safeladder score`` was asked to do (the CLI flags, one field each)."""

    input: Path
    output: Path
    config: str | Path | Mapping[str, Any] | None = None
    overrides: tuple[str, ...] = ()
    fields: FieldMap = field(default_factory=FieldMap)
    format: str | None = None
    json_columns: tuple[str, ...] = ()
    split: str | None = None
    batch_size: int = 256
    fail_on_error: bool = False
    resume: bool = False
    overwrite: bool = False
    limit: int | None = None
    progress: bool = True
    checkpoint_every_s: float = 1.0
    # --engine ray (safeladder.cli.ray_engine); the local engine refuses the Ray knobs.
    engine: str = "local"
    num_workers: int | None = None
    gpus_per_worker: float = 0.0


@dataclass(frozen=True)
class SidePaths:
    """The files written next to ``OUT``."""

    output: Path
    errors: Path
    progress: Path
    summary: Path

    @classmethod
    def of(cls, output: Path) -> SidePaths:
        return cls(
            output=output,
            errors=output.with_name(output.name + ".errors.jsonl"),
            progress=output.with_name(output.name + ".progress.json"),
            summary=output.with_name(output.name + ".summary.json"),
        )


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def input_fingerprint(path: Path) -> dict[str, Any]:
    """Size and modification time of the input (every file of a dataset directory)."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        entries = [
            [str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns] for p in files
        ]
        return {"kind": "dir", "files": _sha(entries)}
    st = path.stat()
    return {"kind": "file", "size": st.st_size, "mtime_ns": st.st_mtime_ns}


@dataclass
class Progress:
    """The checkpoint stored in ``OUT.progress.json``."""

    input: str
    input_fingerprint: dict[str, Any]
    settings_fingerprint: str
    reward_fingerprint: str
    next_line: int = 1
    rows_read: int = 0
    output_bytes: int = 0
    errors_bytes: int = 0
    elapsed_s: float = 0.0
    runs: int = 0
    status: str = "running"
    version: int = PROGRESS_VERSION

    def save(self, path: Path) -> None:
        write_json_atomic(path, self.__dict__, indent=None)

    @classmethod
    def load(cls, path: Path) -> Progress:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("version") != PROGRESS_VERSION:
                raise ValueError(f"version {data.get('version')!r}, expected {PROGRESS_VERSION}")
            return cls(**data)
        except (OSError, ValueError, TypeError) as exc:
            raise CliError(f"cannot resume: {path} is unreadable: {exc}", EXIT_USAGE) from exc


def _settings_fingerprint(job: ScoreJob, fmt: str, config_dump: Any) -> str:
    # Anything that changes what a row's output line is; batch size, limit and progress
    # display do not, so a run may resume with different values of those.
    return _sha(
        {
            "config": config_dump,
            "fields": job.fields.describe(),
            "format": fmt,
            "json_columns": sorted(job.json_columns),
            "split": job.split,
        }
    )


def _check_resume(job: ScoreJob, prog: Progress, fingerprints: dict[str, Any]) -> None:
    changed = [
        what
        for what, key in (
            ("the input path", "input"),
            ("the input file (size or modification time)", "input_fingerprint"),
            ("the reward config or the field / format options", "settings_fingerprint"),
        )
        if getattr(prog, key) != fingerprints[key]
    ]
    if changed:
        raise CliError(
            f"cannot resume {job.output}: {' and '.join(changed)} changed since the interrupted "
            "run; start over with --overwrite (or restore the original input and options)",
            EXIT_USAGE,
        )


class _RowRejected(Exception):
    """The reward raised ``InputError`` naming one row of the batch (0-based ``index``)."""

    def __init__(self, index: int, message: str):
        super().__init__(message)
        self.index = index
        self.message = message


def _usage(message: str) -> CliError:
    return CliError(message, EXIT_USAGE)


class _Scorer:
    """One run of the score command; ``run()`` returns the summary dict."""

    def __init__(self, job: ScoreJob):
        self.job = job
        self.paths = SidePaths.of(job.output)
        self._warned_collision = False

    def run(self) -> dict[str, Any]:
        job, paths = self.job, self.paths
        if job.resume and job.overwrite:
            raise _usage("--resume and --overwrite exclude each other; pick one")
        if job.batch_size < 1:
            raise _usage(f"--batch-size must be >= 1, got {job.batch_size}")
        if job.checkpoint_every_s < 0:
            raise _usage(f"--checkpoint-every must be >= 0, got {job.checkpoint_every_s}")
        if job.limit is not None and job.limit < 1:
            raise _usage(f"--limit must be >= 1, got {job.limit}")
        if not job.input.exists():
            raise _usage(f"input not found: {job.input}")
        if job.input.resolve() == job.output.resolve():
            raise _usage("--output must differ from --input")
        try:
            fmt = job.format or detect_format(job.input)
        except InputError as exc:
            raise _usage(str(exc)) from exc

        from safeladder.rewards import parse_reward_config

        cfg = parse_reward_config(job.config, job.overrides)  # ConfigError → exit 2
        fingerprints: dict[str, Any] = {
            "input": str(job.input.resolve()),
            "input_fingerprint": input_fingerprint(job.input),
            "settings_fingerprint": _settings_fingerprint(job, fmt, cfg.model_dump(mode="json")),
        }

        prog: Progress | None = None
        if job.resume:
            if not paths.progress.exists():
                raise _usage(
                    f"cannot resume: no checkpoint {paths.progress} (was the run started with "
                    f"--output {job.output}?)"
                )
            prog = Progress.load(paths.progress)
            _check_resume(job, prog, fingerprints)
        elif paths.output.exists() and not job.overwrite:
            raise _usage(
                f"{paths.output} exists; pass --overwrite to replace it, or --resume to continue "
                "an interrupted run"
            )

        # Fail on config problems before touching any file (building may load models).
        reward = self._open_reward(cfg, prog)
        try:
            reward_fp = str(getattr(reward, "fingerprint", ""))
            if prog is not None:
                # "" = not known yet: a Ray run learns it from its first scored chunk.
                if prog.reward_fingerprint not in ("", reward_fp):
                    raise _usage(
                        f"cannot resume {job.output}: a verifier changed (its checkpoint or "
                        "code fingerprint differs); start over with --overwrite"
                    )
                prog.reward_fingerprint = prog.reward_fingerprint or reward_fp
                if prog.status != "complete":
                    self._rewind(prog)
            else:
                prog = Progress(
                    input=fingerprints["input"],
                    input_fingerprint=fingerprints["input_fingerprint"],
                    settings_fingerprint=fingerprints["settings_fingerprint"],
                    reward_fingerprint=reward_fp,
                )
                for p in (paths.output, paths.errors, paths.summary):
                    p.unlink(missing_ok=True)
                paths.output.parent.mkdir(parents=True, exist_ok=True)
                paths.output.touch()
                paths.errors.touch()
                prog.save(paths.progress)
            if prog.status != "complete":
                self._score_rows(reward, prog, fmt)
        finally:
            reward.close()

        summary = summarize_output(
            paths.output, paths.errors, reward.term_names, dict(reward.weights), prefix="reward"
        )
        summary.update(
            {
                "engine": job.engine,
                "input": str(job.input),
                "output": str(paths.output),
                "errors_file": str(paths.errors),
                "reward": getattr(reward, "name", None),
                "reward_fingerprint": prog.reward_fingerprint,
                "wall_time_s": prog.elapsed_s,
                "throughput_rows_per_s": (
                    summary["rows_scored"] / prog.elapsed_s if prog.elapsed_s > 0 else None
                ),
                "runs": prog.runs,
                "rows_read": prog.rows_read,
            }
        )
        write_json_atomic(paths.summary, summary)
        return summary

    def _open_reward(self, cfg: Any, prog: Progress | None) -> Any:
        """The reward that scores the rows (the Ray engine returns a stand-in; see ray_engine)."""
        from safeladder.rewards import Reward

        return Reward(cfg)

    def _rewind(self, prog: Progress) -> None:
        """Cut both output files back to the last checkpoint (drops a half-written chunk)."""
        for path, size in (
            (self.paths.output, prog.output_bytes),
            (self.paths.errors, prog.errors_bytes),
        ):
            actual = path.stat().st_size if path.exists() else 0
            if actual < size:
                raise CliError(
                    f"cannot resume: {path} holds {actual} bytes but the checkpoint records "
                    f"{size}; it was modified after the run; start over with --overwrite",
                    EXIT_FAILURE,
                )
            truncate(path, size)

    def _score_rows(self, reward: Any, prog: Progress, fmt: str) -> None:
        job, paths = self.job, self.paths
        try:
            rows = read_rows(
                job.input, fmt, start=prog.next_line, json_columns=job.json_columns, split=job.split
            )
            total = count_rows(job.input, fmt, job.split)
        except InputError as exc:
            raise _usage(str(exc)) from exc
        if job.limit is not None:
            total = job.limit if total is None else min(total, job.limit)
        if job.limit is not None and prog.rows_read >= job.limit:
            prog.status = "complete"
            prog.save(paths.progress)
            return

        prog.runs += 1
        bar = progress_bar(job, total, prog.rows_read, "scoring")
        started = time.perf_counter()
        elapsed_before = prog.elapsed_s
        last_checkpoint = started

        with JsonlWriter(paths.output, "a") as out, JsonlWriter(paths.errors, "a") as errs, bar:

            def checkpoint(status: str = "running") -> None:
                # Data first, then the checkpoint that names it: a kill between the two leaves
                # the previous checkpoint, which names fewer bytes, and resume truncates.
                out.sync()
                errs.sync()
                prog.elapsed_s = elapsed_before + time.perf_counter() - started
                prog.status = status
                prog.save(paths.progress)

            chunk: list[Row] = []
            try:
                for row in rows:
                    chunk.append(row)
                    done = job.limit is not None and prog.rows_read + len(chunk) >= job.limit
                    if len(chunk) >= job.batch_size or done:
                        self._chunk(reward, chunk, out, errs, prog)
                        bar.update(len(chunk))
                        chunk = []
                        now = time.perf_counter()
                        if now - last_checkpoint >= job.checkpoint_every_s:
                            checkpoint()
                            last_checkpoint = now
                    if done:
                        break
                if chunk:
                    self._chunk(reward, chunk, out, errs, prog)
                    bar.update(len(chunk))
            except BaseException as exc:
                # Ctrl-C, a failed reward, a bad row under --fail-on-error: keep every finished
                # chunk (``prog`` only ever describes whole chunks), so --resume redoes little.
                # If even that fails (a full disk), the previous checkpoint stays valid.
                with contextlib.suppress(Exception):
                    checkpoint()
                if isinstance(exc, InputError):  # the input is unreadable past some point
                    raise CliError(str(exc), EXIT_FAILURE) from exc  # it names the file
                if isinstance(exc, OSError):
                    raise CliError(
                        f"I/O error while scoring {job.input}: {exc}", EXIT_FAILURE
                    ) from exc
                raise
            checkpoint("complete")

    def _chunk(
        self, reward: Any, chunk: list[Row], out: JsonlWriter, errs: JsonlWriter, prog: Progress
    ) -> None:
        """Score one chunk, append it to both files, and advance ``prog`` past it (in memory)."""
        job = self.job
        scored, bad = self._score_chunk(reward, chunk)
        if bad and job.fail_on_error:  # the chunk's first bad row in input order
            line, error, _ = bad[0]
            raise CliError(
                f"{job.input}: line {line}: {error} (without --fail-on-error it would go to "
                f"{self.paths.errors})",
                EXIT_FAILURE,
            )
        out.write_many(self._merge(row.data or {}, rec) for row, rec in scored)
        errs.write_many({"line": ln, "error": e, "raw": r} for ln, e, r in bad)
        prog.next_line = chunk[-1].line + 1
        prog.rows_read += len(chunk)
        prog.output_bytes = out.tell()
        prog.errors_bytes = errs.tell()

    def _score_chunk(
        self, reward: Any, chunk: list[Row]
    ) -> tuple[list[tuple[Row, dict[str, Any]]], list[tuple[int, str, str]]]:
        """Map and score one chunk: ``([(row, reward record)], [(line, error, raw)])``, both in
        input order. Writes nothing (the Ray engine runs this in its workers)."""
        job = self.job
        good: list[tuple[Row, Sample]] = []
        bad: list[tuple[int, str, str]] = []  # (line, error, raw)
        for row in chunk:
            error = row.error
            if error is None:
                assert row.data is not None
                try:
                    good.append((row, to_sample(row.data, job.fields)))
                    continue
                except InputError as exc:
                    error = str(exc)
            bad.append((row.line, error, row.raw))

        records: list[dict[str, Any]] = []
        row_errors: list[str | None] = []
        while good:
            try:
                records, row_errors = self._score(reward, good)
                break
            except _RowRejected as rej:
                # The reward named one row it cannot take (e.g. meta lacks the routing key):
                # that row is bad like any other; score the rest of the chunk again.
                row = good.pop(rej.index)[0]
                bad.append((row.line, rej.message, row.raw))
        scored: list[tuple[Row, dict[str, Any]]] = []
        for (row, _), rec, err in zip(good, records, row_errors, strict=True):
            if err is None:
                scored.append((row, rec))
            else:  # a verifier raised on this row: it goes to the errors file, the rest on
                bad.append((row.line, err, row.raw))
        bad.sort()
        return scored, bad

    def _score(
        self, reward: Any, good: list[tuple[Row, Sample]]
    ) -> tuple[list[dict[str, Any]], list[str | None]]:
        """The reward's records for ``good``, and per row the message of a verifier that
        raised on it (None for rows scored normally)."""
        try:
            result = reward.score([s for _, s in good])
            records: list[dict[str, Any]] = result.to_records()
            row_errors: list[str | None] = list(result.row_errors)
        except InputError as exc:
            if exc.row is not None and 0 <= exc.row < len(good):
                raise _RowRejected(exc.row, str(exc).removeprefix(f"row {exc.row}: ")) from exc
            raise self._reward_failed(good, exc) from exc
        except Exception as exc:
            raise self._reward_failed(good, exc) from exc
        return records, row_errors

    def _reward_failed(self, good: list[tuple[Row, Sample]], exc: Exception) -> CliError:
        first, last = good[0][0].line, good[-1][0].line
        where = f"lines {first}-{last}" if first != last else f"line {first}"
        return CliError(
            f"the reward failed on input {where} of {self.job.input}: {type(exc).__name__}: {exc}",
            EXIT_FAILURE,
            show_cause=not isinstance(exc, SafeladderError),
        )

    def _merge(self, data: dict[str, Any], rec: dict[str, Any]) -> dict[str, Any]:
        if not self._warned_collision:
            clash = sorted(k for k in rec if k in data)
            if clash:
                self._warned_collision = True
                print(
                    f"warning: input rows already have column(s) {', '.join(clash)}; "
                    "the new scores replace them in the output",
                    file=sys.stderr,
                )
        return {**data, **rec}


def progress_bar(job: ScoreJob, total: int | None, initial: int, desc: str) -> Any:
    """The tqdm bar on stderr that both engines show (disabled with --no-progress)."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="row",
        file=sys.stderr,
        disable=not job.progress,
        dynamic_ncols=True,
        desc=desc,
    )


def run_score(job: ScoreJob) -> dict[str, Any]:
    """Run ``safeladder score``; returns the summary (also written to ``OUT.summary.json``).

    Raises:
        CliError: with the exit code for the command (2: usage, 1: the run failed).
        safeladder.errors.ConfigError: the reward config is invalid (exit code 2).
    """
    if job.engine == "ray":
        from safeladder.cli.ray_engine import RayScorer

        return RayScorer(job).run()
    if job.engine != "local":
        raise _usage(f"unknown engine {job.engine!r}; expected 'local' or 'ray'")
    if job.num_workers is not None or job.gpus_per_worker:
        raise _usage("--num-workers and --gpus-per-worker apply to --engine ray only")
    return _Scorer(job).run()


__all__ = ["Progress", "ScoreJob", "SidePaths", "input_fingerprint", "run_score"]
