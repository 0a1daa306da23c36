"""The scoring run: stream rows → chunks → ``Reward.score`` → JSONL, resumable.

Files, for ``output=OUT``:

- ``OUT``: one JSON line per good input row, in input order: the row's fields plus the
  reward's columns (``reward``, ``reward/<term>``, ``status/<term>``, ``gated``, ...).
- ``OUT.errors.jsonl``: one line per bad row, ``{"line", "error", "raw"}``, in input order:
  rows that do not decode or do not map to a ``Sample`` (a missing completion, or a missing
  prompt unless ``allow_missing_prompt``), rows the reward rejects by raising ``InputError``
  naming the row (e.g. a data source it refuses), and rows a verifier raised on (``Reward``
  isolates them, so the rest of their chunk is scored). Any other exception from the reward is
  fatal, naming the chunk's input lines.
- ``OUT.progress.json``: the checkpoint that makes resuming exact (below).
- ``OUT.summary.json``: the summary, computed at the end by streaming over ``OUT``.

Resuming. Rows are consumed in chunks of ``batch_size`` input rows and each chunk is appended
to both output files. At a checkpoint (after the chunk that ends ``checkpoint_every_s``
seconds after the last one, on Ctrl-C, and at the end) both files are flushed and fsync'ed,
and only then is the checkpoint replaced atomically: ``{next input line, byte sizes of OUT and
the errors file, fingerprints}``, always at a chunk boundary. A process killed at any instant
therefore leaves a checkpoint that names bytes that are on disk; resuming truncates both files
back to those sizes (dropping a half-written chunk) and reads on from the recorded line, so
every input row ends up in exactly one file, exactly once, in order. It refuses when the input
file, the reward config or the field options changed.

Memory is bounded by one chunk: rows are never collected, and the summary is a streaming pass.

Engines. ``Scorer`` owns everything above (checks, resume, the one checkpoint loop, the
writers, the summary); an engine supplies the reward and the stream of ``ScoredChunk``s:
``LocalScorer`` scores in this process, ``safeladder.scoring.ray_engine.RayScorer`` in a Ray
actor pool, both with ``score_chunk``, so their files are the same.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Generator, Iterator
from typing import Any

from safeladder.data import JsonlWriter, Row, count_rows, read_rows
from safeladder.data.readers import detect_format
from safeladder.data.writers import write_json_atomic
from safeladder.errors import InputError, ScoringError, ScoringJobError
from safeladder.scoring.checkpoint import (
    Progress,
    check_resume,
    input_fingerprint,
    rewind,
    settings_fingerprint,
)
from safeladder.scoring.chunks import ScoredChunk, iter_chunks, score_chunk
from safeladder.scoring.job import ScoreJob, SidePaths
from safeladder.scoring.summary import summarize_output


class Scorer:
    """One scoring run of ``job``; ``run()`` returns the summary dict.

    An engine overrides ``open_reward`` (what scores: a ``Reward`` or a stand-in with its
    ``term_names``, ``weights``, ``name``, ``fingerprint`` and ``close()``), ``scored_chunks``
    (the input's ``ScoredChunk``s, in input order) and, optionally, ``progress_label`` and
    ``run_failed``.
    """

    def __init__(self, job: ScoreJob):
        self.job = job
        self.paths = SidePaths.of(job.output)
        self._warned_collision = False

    # ------------------------------------------------------------------ engine hooks
    def open_reward(self, cfg: Any, prog: Progress | None) -> Any:
        """The reward for ``cfg`` (``prog``: the checkpoint being resumed, else None)."""
        raise NotImplementedError

    def scored_chunks(
        self, reward: Any, rows: Iterator[Row], prog: Progress, fmt: str, limit: int | None
    ) -> Generator[ScoredChunk, None, None]:
        """The chunks of ``rows`` (the input from ``prog.next_line`` on, at most ``limit``
        rows), scored, in input order. Raising ends the run after a checkpoint."""
        raise NotImplementedError

    def progress_label(self, reward: Any) -> str:
        return "scoring"

    def run_failed(self, exc: Exception) -> BaseException:
        """What an exception from ``scored_chunks`` that is not a ``ScoringError`` or an
        ``OSError`` becomes (re-raised as is by default)."""
        if isinstance(exc, InputError):  # the input is unreadable past some point
            return ScoringError(str(exc))  # it names the file
        return exc

    # ------------------------------------------------------------------ the run
    def run(self) -> dict[str, Any]:
        """Score the job; returns the summary (also written to ``OUT.summary.json``).

        Raises:
            ScoringJobError: the job cannot run as asked; nothing was scored.
            ScoringError: the run failed; finished chunks are checkpointed.
            safeladder.errors.ConfigError: the reward config is invalid.
        """
        job, paths = self.job, self.paths
        if job.resume and job.overwrite:
            raise ScoringJobError("--resume and --overwrite exclude each other; pick one")
        if job.batch_size < 1:
            raise ScoringJobError(f"--batch-size must be >= 1, got {job.batch_size}")
        if job.checkpoint_every_s < 0:
            raise ScoringJobError(f"--checkpoint-every must be >= 0, got {job.checkpoint_every_s}")
        if job.limit is not None and job.limit < 1:
            raise ScoringJobError(f"--limit must be >= 1, got {job.limit}")
        if not job.input.exists():
            raise ScoringJobError(f"input not found: {job.input}")
        if job.input.resolve() == job.output.resolve():
            raise ScoringJobError("--output must differ from --input")
        try:
            fmt = job.format or detect_format(job.input)
        except InputError as exc:
            raise ScoringJobError(str(exc)) from exc

        from safeladder.rewards import parse_reward_config

        cfg = parse_reward_config(job.config, job.overrides)  # ConfigError
        fingerprints: dict[str, Any] = {
            "input": str(job.input.resolve()),
            "input_fingerprint": input_fingerprint(job.input),
            "settings_fingerprint": settings_fingerprint(job, fmt, cfg.model_dump(mode="json")),
        }

        prog: Progress | None = None
        if job.resume:
            if not paths.progress.exists():
                raise ScoringJobError(
                    f"cannot resume: no checkpoint {paths.progress} (was the run started with "
                    f"--output {job.output}?)"
                )
            prog = Progress.load(paths.progress)
            check_resume(job, prog, fingerprints)
        elif paths.output.exists() and not job.overwrite:
            raise ScoringJobError(
                f"{paths.output} exists; pass --overwrite to replace it, or --resume to continue "
                "an interrupted run"
            )

        # Fail on config problems before touching any file (building may load models).
        reward = self.open_reward(cfg, prog)
        try:
            reward_fp = str(getattr(reward, "fingerprint", ""))
            if prog is not None:
                # "" = not known yet: a Ray run learns it from its first scored chunk.
                if prog.reward_fingerprint not in ("", reward_fp):
                    raise ScoringJobError(
                        f"cannot resume {job.output}: a verifier changed (its checkpoint or "
                        "code fingerprint differs); start over with --overwrite"
                    )
                prog.reward_fingerprint = prog.reward_fingerprint or reward_fp
                if prog.status != "complete":
                    rewind(paths, prog)
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

    def _score_rows(self, reward: Any, prog: Progress, fmt: str) -> None:
        """The checkpoint loop: append each scored chunk to both files, checkpoint on time,
        on any exit (Ctrl-C included) and at the end."""
        job, paths = self.job, self.paths
        try:
            rows = read_rows(
                job.input, fmt, start=prog.next_line, json_columns=job.json_columns, split=job.split
            )
            total = count_rows(job.input, fmt, job.split)
        except InputError as exc:
            raise ScoringJobError(str(exc)) from exc
        if job.limit is not None:
            total = job.limit if total is None else min(total, job.limit)
        if job.limit is not None and prog.rows_read >= job.limit:
            prog.status = "complete"
            prog.save(paths.progress)
            return
        remaining = None if job.limit is None else job.limit - prog.rows_read

        prog.runs += 1
        bar = progress_bar(job, total, prog.rows_read, self.progress_label(reward))
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

            chunks = self.scored_chunks(reward, rows, prog, fmt, remaining)
            try:
                for chunk in chunks:
                    self._append(chunk, out, errs, prog)
                    bar.update(chunk.rows)
                    now = time.perf_counter()
                    if now - last_checkpoint >= job.checkpoint_every_s:
                        checkpoint()
                        last_checkpoint = now
            except BaseException as exc:
                # Ctrl-C, a failed reward, a bad row under fail_on_error: keep every finished
                # chunk (``prog`` only ever describes whole chunks), so resuming redoes little.
                # If even that fails (a full disk), the previous checkpoint stays valid.
                with contextlib.suppress(Exception):
                    checkpoint()
                with contextlib.suppress(Exception):
                    chunks.close()  # runs the engine's cleanup now (the Ray engine's executor)
                if isinstance(exc, ScoringError) or not isinstance(exc, Exception):
                    raise
                if isinstance(exc, OSError):
                    raise ScoringError(f"I/O error while scoring {job.input}: {exc}") from exc
                failure = self.run_failed(exc)
                if failure is exc:
                    raise
                raise failure from exc
            checkpoint("complete")

    def _append(
        self, chunk: ScoredChunk, out: JsonlWriter, errs: JsonlWriter, prog: Progress
    ) -> None:
        """Append one chunk to both files and advance ``prog`` past it (in memory)."""
        job = self.job
        if chunk.first_bad is not None and job.fail_on_error:
            line, error = chunk.first_bad
            raise ScoringError(
                f"{job.input}: line {line}: {error} (without --fail-on-error it would go to "
                f"{self.paths.errors})"
            )
        if chunk.clash and not self._warned_collision:
            self._warned_collision = True
            print(
                f"warning: input rows already have column(s) {', '.join(chunk.clash)}; "
                "the new scores replace them in the output",
                file=sys.stderr,
            )
        out.write_lines(chunk.out)
        errs.write_lines(chunk.err)
        prog.next_line = chunk.last_line + 1
        prog.rows_read += chunk.rows
        prog.output_bytes = out.tell()
        prog.errors_bytes = errs.tell()


class LocalScorer(Scorer):
    """The local engine: scores every chunk in this process, with one ``Reward``."""

    def open_reward(self, cfg: Any, prog: Progress | None) -> Any:
        from safeladder.rewards import Reward

        return Reward(cfg)

    def scored_chunks(
        self, reward: Any, rows: Iterator[Row], prog: Progress, fmt: str, limit: int | None
    ) -> Generator[ScoredChunk, None, None]:
        for chunk in iter_chunks(rows, self.job.batch_size, limit):
            yield score_chunk(reward, chunk, self.job)


def progress_bar(job: ScoreJob, total: int | None, initial: int, desc: str) -> Any:
    """The tqdm bar on stderr that both engines show (disabled with ``progress=False``)."""
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
    """Score ``job.input`` into ``job.output`` with the engine ``job.engine`` (``local`` |
    ``ray``); returns the summary (also written to ``OUT.summary.json``).

    Raises:
        ScoringJobError: the job cannot run as asked (the CLI exits 2); nothing was scored.
        ScoringError: the run failed (the CLI exits 1); finished chunks are checkpointed, and
            the same job with ``resume=True`` continues.
        safeladder.errors.ConfigError: the reward config is invalid (the CLI exits 2).
    """
    if job.engine == "ray":
        from safeladder.scoring.ray_engine import RayScorer

        return RayScorer(job).run()
    if job.engine != "local":
        raise ScoringJobError(f"unknown engine {job.engine!r}; expected 'local' or 'ray'")
    if job.num_workers is not None or job.gpus_per_worker:
        raise ScoringJobError("--num-workers and --gpus-per-worker apply to --engine ray only")
    return LocalScorer(job).run()


__all__ = ["LocalScorer", "Scorer", "progress_bar", "run_score"]
