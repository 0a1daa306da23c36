"""``safeladder eval`` input: the job, and reading a labelled file into items to score.

See ``safeladder.training.evaluate`` for the row formats and filters. Each row's prompt and
reply become a ``Sample`` through ``safeladder.data.to_sample`` (the one row → ``Sample``
mapping); rows that do not decode or do not fit are bad rows, returned with their line.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safeladder.data.fields import MISSING, FieldMap, get_path, pick_field, to_sample, value_matches
from safeladder.errors import ConfigError, InputError
from safeladder.types import Sample


@dataclass(frozen=True)
class EvalFields:
    """Input field names; the first candidate present in a row is used."""

    prompt: tuple[str, ...] = ("prompt", "question")
    #: Empty: the rows carry no response (a judge of the request), scored with an empty one.
    response: tuple[str, ...] = ("response", "completion", "answer")
    label: str = "label"
    chosen: str = "chosen"
    rejected: str = "rejected"
    category: str | None = "category"

    def sample_fields(self, reply: str) -> FieldMap:
        """The core field map of a row whose reply is field ``reply`` (prompt candidates as
        given, no reference)."""
        return FieldMap(prompt=self.prompt, completion=(reply,), reference=(), require_prompt=True)


@dataclass(frozen=True)
class EvalJob:
    """Everything ``safeladder eval`` was asked to do."""

    verifier: str | Path | Mapping[str, Any]
    data: Path
    baseline: str | Path | Mapping[str, Any] | None = None
    output: Path | None = None
    fields: EvalFields = field(default_factory=EvalFields)
    format: str | None = None
    split: str | None = None
    where: Mapping[str, Any] = field(default_factory=dict)
    pairwise: bool | None = None
    # None: the direction saved when the verifier was trained, else 1.
    score_means: int | None = None
    threshold: float | None = None
    limit: int | None = None
    batch_size: int = 64
    progress: bool = True
    seed: int = 0


@dataclass
class PointItem:
    """A labelled row to score: its line, the ``Sample``, the 0/1 label, the category."""

    line: int
    sample: Sample
    label: int
    category: str | None


@dataclass
class PairItem:
    """A preference pair to score: its line, both replies as ``Sample``s, the category."""

    line: int
    chosen: Sample
    rejected: Sample
    category: str | None


# --------------------------------------------------------------------------- reading rows


def parse_label(value: Any, fieldname: str) -> int:
    """0 / 1 from an int, bool, float 0.0 / 1.0 or the strings 0 / 1 / true / false."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value in (0, 1):
        return int(value)
    if isinstance(value, str) and value.strip().lower() in ("0", "1", "true", "false"):
        return 1 if value.strip().lower() in ("1", "true") else 0
    raise InputError(
        f"field {fieldname!r} (label): expected 0 or 1, got {value!r:.60}", field=fieldname
    )


def _sample(row: Mapping[str, Any], fields: EvalFields, response: Any, rname: str) -> Sample:
    # Only the prompt and the reply are mapped (the rest of the row would become meta); a
    # null reply is a prompt-only row, scored with an empty completion.
    flat = {n: row[n] for n in fields.prompt if n in row}
    flat[rname] = "" if response is None else response
    return to_sample(flat, fields.sample_fields(rname))


def _category(row: Mapping[str, Any], fields: EvalFields) -> str | None:
    if fields.category is None:
        return None
    v = row.get(fields.category)
    return None if v is None else str(v)


def _parse_point(line: int, row: Mapping[str, Any], fields: EvalFields) -> PointItem:
    if fields.response:
        rname, response = pick_field(row, fields.response)
    else:
        rname, response = "response", None
    if rname is None:
        raise InputError(
            f"missing field 'response' (looked for: {', '.join(fields.response)})",
            field=fields.response[0],
        )
    if fields.label not in row:
        raise InputError(f"missing field {fields.label!r} (label)", field=fields.label)
    label = parse_label(row[fields.label], fields.label)
    return PointItem(line, _sample(row, fields, response, rname), label, _category(row, fields))


def _parse_pair(line: int, row: Mapping[str, Any], fields: EvalFields) -> PairItem:
    for name in (fields.chosen, fields.rejected):
        if name not in row:
            raise InputError(f"missing field {name!r}", field=name)
        if not isinstance(row[name], str):
            raise InputError(
                f"field {name!r}: expected a string, got {type(row[name]).__name__}", field=name
            )
    return PairItem(
        line,
        _sample(row, fields, row[fields.chosen], fields.chosen),
        _sample(row, fields, row[fields.rejected], fields.rejected),
        _category(row, fields),
    )


SPLIT_FIELD = "split"


def row_filter(job: EvalJob) -> tuple[str | None, dict[str, Any]]:
    """(the split ``read_rows`` reads, the field filters rows must pass) for ``job``.

    An HF dataset directory holds its splits itself; any other file marks a row's split in its
    ``split`` field, so ``split`` becomes one more filter there.
    """
    from safeladder.data import detect_format

    where = dict(job.where)
    fmt = job.format or detect_format(job.data)
    if job.split is None or fmt == "hf":
        return job.split, where
    if SPLIT_FIELD in where and where[SPLIT_FIELD] != job.split:
        raise ConfigError(
            f"--split {job.split!r} and --where {SPLIT_FIELD}={where[SPLIT_FIELD]!r} disagree"
        )
    where[SPLIT_FIELD] = job.split
    return None, where


def _no_match_error(
    job: EvalJob, where: Mapping[str, Any], seen: Mapping[str, Counter[str]]
) -> str:
    """Why no row passed the filters: for each field, the values the file does have."""
    parts = []
    for key, want in where.items():
        values = seen[key]
        if not values:
            parts.append(f"no row has a field {key!r}")
        else:
            common = ", ".join(f"{v!r} ({n})" for v, n in values.most_common(8))
            parts.append(f"{key} = {want!r} matches no row; values seen: {common}")
    return f"{job.data}: no rows pass the filters: " + "; ".join(parts)


def read_items(job: EvalJob) -> tuple[bool, list[Any], list[dict[str, Any]]]:
    """(pairwise?, good items in file order, bad rows ``{"line", "error"}``).

    Rows that fail ``job.split`` / ``job.where`` are skipped (neither good nor bad).

    Raises:
        InputError: the filters match no row (naming the values the file holds).
    """
    from safeladder.data import read_rows

    items: list[Any] = []
    bad: list[dict[str, Any]] = []
    pairwise = job.pairwise
    seen = 0
    read_split, where = row_filter(job)
    values: dict[str, Counter[str]] = {k: Counter() for k in where}
    matched = 0
    for row in read_rows(job.data, job.format, split=read_split):
        if job.limit is not None and seen >= job.limit:
            break
        if row.error is not None or row.data is None:
            seen += 1
            bad.append({"line": row.line, "error": row.error or "empty row"})
            continue
        if where:
            got = {k: get_path(row.data, k) for k in where}
            for k, v in got.items():
                if v is not MISSING:
                    values[k][str(v)] += 1
            if not all(value_matches(got[k], want) for k, want in where.items()):
                continue
        seen += 1
        matched += 1
        if pairwise is None:
            pairwise = job.fields.chosen in row.data and job.fields.rejected in row.data
        try:
            if pairwise:
                items.append(_parse_pair(row.line, row.data, job.fields))
            else:
                items.append(_parse_point(row.line, row.data, job.fields))
        except InputError as exc:
            bad.append({"line": row.line, "error": str(exc)})
    if where and not matched:
        raise InputError(_no_match_error(job, where, values))
    return bool(pairwise), items, bad


__all__ = [
    "SPLIT_FIELD",
    "EvalFields",
    "EvalJob",
    "PairItem",
    "PointItem",
    "parse_label",
    "read_items",
    "row_filter",
]
