"""One chunk of input rows → one ``Reward.score`` call → the chunk's output and error lines.

Both engines cut the input the same way (``iter_chunks``) and score a chunk with the same code
(``score_chunk``: in this process for the local engine, in a Ray actor for the Ray engine), so
their files are byte-identical. A ``ScoredChunk`` holds encoded JSON lines, ready to append.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from safeladder.data import Row, dumps, to_sample
from safeladder.errors import InputError, SafeladderError, ScoringError
from safeladder.scoring.job import ScoreJob
from safeladder.types import Sample


@dataclass(frozen=True)
class ScoredChunk:
    """A scored chunk, ready to append to ``OUT`` and ``OUT.errors.jsonl``.

    Attributes:
        rows: input rows in the chunk (good and bad).
        last_line: the line of the chunk's last input row (the next chunk starts after it).
        out: the output JSON lines (UTF-8, newline-terminated), one per scored row, in order.
        err: the errors-file lines ``{"line", "error", "raw"}``, one per bad row, in order.
        first_bad: ``(line, error)`` of the chunk's first bad row, or None.
        clash: input columns the reward's columns replaced in some row, sorted.
    """

    rows: int
    last_line: int
    out: bytes
    err: bytes
    first_bad: tuple[int, str] | None
    clash: tuple[str, ...]


def iter_chunks(rows: Iterable[Row], batch_size: int, limit: int | None) -> Iterator[list[Row]]:
    """``rows`` in lists of ``batch_size`` (the last may be shorter); at most ``limit`` rows.

    >>> from safeladder.data import Row
    >>> rows = [Row(line=i, data={}, raw="{}") for i in range(1, 6)]
    >>> [[r.line for r in c] for c in iter_chunks(rows, 2, 4)]
    [[1, 2], [3, 4]]
    """
    chunk: list[Row] = []
    for n, row in enumerate(rows, start=1):
        chunk.append(row)
        done = limit is not None and n >= limit
        if len(chunk) >= batch_size or done:
            yield chunk
            chunk = []
        if done:
            return
    if chunk:
        yield chunk


def _lines(objs: Iterable[Any]) -> bytes:
    # The bytes JsonlWriter.write_many writes for the same objects.
    return b"".join(dumps(o).encode("utf-8") + b"\n" for o in objs)


def score_chunk(reward: Any, chunk: list[Row], job: ScoreJob) -> ScoredChunk:
    """Map ``chunk`` to samples with ``job.fields``, score them in one ``reward.score`` call and
    encode the lines; writes nothing.

    Bad rows (undecodable, unmappable, rejected by the reward with an ``InputError`` naming
    the row, or a verifier raised on them) go to ``err``; the rest of the chunk is scored.

    Raises:
        ScoringError: the reward failed on the chunk in any other way (naming its input lines).
    """
    scored, bad = _map_and_score(reward, chunk, job)
    clash: set[str] = set()
    out: list[dict[str, Any]] = []
    for row, rec in scored:
        data = row.data or {}
        clash.update(k for k in rec if k in data)
        out.append({**data, **rec})
    return ScoredChunk(
        rows=len(chunk),
        last_line=chunk[-1].line,
        out=_lines(out),
        err=_lines({"line": ln, "error": e, "raw": r} for ln, e, r in bad),
        first_bad=(bad[0][0], bad[0][1]) if bad else None,
        clash=tuple(sorted(clash)),
    )


class _RowRejected(Exception):
    """The reward raised ``InputError`` naming one row of the batch (0-based ``index``)."""

    def __init__(self, index: int, message: str):
        super().__init__(message)
        self.index = index
        self.message = message


def _map_and_score(
    reward: Any, chunk: list[Row], job: ScoreJob
) -> tuple[list[tuple[Row, dict[str, Any]]], list[tuple[int, str, str]]]:
    """``([(row, reward record)], [(line, error, raw)])``, both in input order."""
    good: list[tuple[Row, Sample]] = []
    bad: list[tuple[int, str, str]] = []  # (line, error, raw)
    # Relative image paths in the rows resolve against the input's folder (an HF dataset
    # directory is its own folder), wherever the chunk is scored (Ray workers included).
    src = job.input.resolve()
    base_dir = src if src.is_dir() else src.parent
    for row in chunk:
        error = row.error
        if error is None:
            assert row.data is not None
            try:
                good.append((row, to_sample(row.data, job.fields, base_dir=base_dir)))
                continue
            except InputError as exc:
                error = str(exc)
        bad.append((row.line, error, row.raw))

    records: list[dict[str, Any]] = []
    row_errors: list[str | None] = []
    while good:
        try:
            records, row_errors = _score(reward, good, job)
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
    reward: Any, good: list[tuple[Row, Sample]], job: ScoreJob
) -> tuple[list[dict[str, Any]], list[str | None]]:
    """The reward's records for ``good``, and per row the message of a verifier that raised on
    it (None for rows scored normally)."""
    try:
        result = reward.score([s for _, s in good])
        records: list[dict[str, Any]] = result.to_records()
        row_errors: list[str | None] = list(result.row_errors)
    except InputError as exc:
        if exc.row is not None and 0 <= exc.row < len(good):
            raise _RowRejected(exc.row, str(exc).removeprefix(f"row {exc.row}: ")) from exc
        raise _reward_failed(good, job, exc) from exc
    except Exception as exc:
        raise _reward_failed(good, job, exc) from exc
    return records, row_errors


def _reward_failed(good: list[tuple[Row, Sample]], job: ScoreJob, exc: Exception) -> ScoringError:
    first, last = good[0][0].line, good[-1][0].line
    where = f"lines {first}-{last}" if first != last else f"line {first}"
    return ScoringError(
        f"the reward failed on input {where} of {job.input}: {type(exc).__name__}: {exc}",
        show_cause=not isinstance(exc, SafeladderError),
    )


__all__ = ["ScoredChunk", "iter_chunks", "score_chunk"]
