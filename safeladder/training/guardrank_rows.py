"""The GuardRank input schema (``GuardRankRow``) and reading a file of rows into scored items.

One row per model answer. Fields (any other key is an error naming the row; put extras under
``meta``):

- ``dimension`` (required): ``privacy | bias | toxicity | legality | hallucination |
  noise-injection | position-swapping`` (case, ``_`` and spaces do not matter).
- ``prompt``: the question (a string or chat messages); required on judged rows and used by
  the A / B normaliser on paired rows.
- ``response``: the model's answer; required unless a judged row carries its ``score``.
  On paired rows null is ``No Answer``.
- ``score``: judged rows only: the gold or already-judged score, an integer 0–3 (hallucination
  0–1), 0 = best. **Absent**: the per-dimension judge scores the row. **null / NaN / empty
  cell**: the row could not be judged; it is counted as unjudged, never as 0.
- ``pair_id``, ``pair_role`` (paired rows, required): the pair's id (string or integer) and
  the row's role: ``clean`` / ``noisy`` (noise-injection) or ``original`` / ``swapped``
  (position-swapping). Each pair has exactly one row of each role.
- ``reference``: noise-injection only: the right option, ``A`` or ``B``; on the clean row, the
  noisy row, or both (then equal).
- ``images``: image references (paths relative to the input file's folder, data URLs) passed to
  a vision-language judge; ``lang``: ``en`` / ``zh`` (picks the judge template; default en);
  ``id``: echoed in the per-row output; ``meta``: free-form, ignored.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from safeladder.errors import InputError
from safeladder.training.guardrank import JUDGED, MAX_SCORE, NO_ANSWER, canonical_dimension
from safeladder.training.guardrank_choice import normalize_choice, normalize_reference
from safeladder.types import prompt_text

#: pair roles of each paired dimension: (first, second).
PAIR_ROLES: dict[str, tuple[str, str]] = {
    "noise-injection": ("clean", "noisy"),
    "position-swapping": ("original", "swapped"),
}
#: how many bad rows one error message lists.
MAX_LISTED = 10


class GuardRankRow(BaseModel):
    """One input row of ``safeladder eval --metrics guardrank`` (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dimension: str = Field(description="Row dimension (judged or paired part), canonicalised.")
    prompt: str | list[dict[str, Any]] | None = Field(
        default=None, description="The question: a string or chat messages."
    )
    response: str | None = Field(default=None, description="The model's answer.")
    score: int | None = Field(
        default=None,
        description="Judged rows: gold / judged score 0-3 (hallucination 0-1), 0 = best; "
        "null = could not be judged; absent = judge it.",
    )
    pair_id: str | int | None = Field(default=None, description="Paired rows: the pair's id.")
    pair_role: str | None = Field(
        default=None,
        description="Paired rows: clean / noisy (noise-injection), original / swapped "
        "(position-swapping).",
    )
    reference: str | None = Field(
        default=None, description="Noise-injection: the right option, A or B."
    )
    images: list[Any] | str | None = Field(
        default=None, description="Image references for a vision-language judge."
    )
    lang: Literal["en", "zh"] | None = Field(
        default=None, description="Language of the judge template (default en)."
    )
    id: str | int | None = Field(default=None, description="Echoed in the per-row output.")
    meta: dict[str, Any] | None = Field(default=None, description="Free-form; ignored.")

    @model_validator(mode="before")
    @classmethod
    def _missing_cells(cls, data: Any) -> Any:
        # A missing cell reads as NaN from Parquet / pandas-made files and as None from CSV:
        # both are "no value" (on ``score``: not judged), never a value.
        if isinstance(data, Mapping):
            return {
                k: None if isinstance(v, float) and math.isnan(v) else v for k, v in data.items()
            }
        return data

    @field_validator("dimension", mode="before")
    @classmethod
    def _dimension(cls, value: Any) -> str:
        return canonical_dimension(value)

    @field_validator("score", mode="before")
    @classmethod
    def _score(cls, value: Any) -> int | None:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        if isinstance(value, bool):
            raise ValueError(f"expected an integer 0-3, got {value!r}")
        if isinstance(value, str):
            text = value.strip()
            if text.lower() in ("", "nan", "null", "none"):
                return None
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"expected an integer 0-3, got {value!r:.40}") from None
        if isinstance(value, (int, float)) and float(value) == int(value) and 0 <= value <= 3:
            return int(value)
        raise ValueError(f"expected an integer 0-3, got {value!r:.40}")

    @field_validator("lang", mode="before")
    @classmethod
    def _lang(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value.strip().lower() or None
        return value

    def needs_judge(self) -> bool:
        """A judged row without a ``score`` key: the judge scores it."""
        return self.dimension in JUDGED and "score" not in self.model_fields_set

    def check(self) -> None:
        """Per-dimension rules the field types cannot say (ValueError naming the field)."""
        d = self.dimension
        if d in JUDGED:
            for key in ("pair_id", "pair_role", "reference"):
                if getattr(self, key) is not None:
                    raise ValueError(
                        f"{key}: only noise-injection / position-swapping rows have it"
                    )
            if self.score is not None and self.score > MAX_SCORE[d]:
                raise ValueError(f"score: {self.score} is outside 0..{MAX_SCORE[d]} for {d}")
            if self.needs_judge():
                if self.response is None:
                    raise ValueError("response: required when the row has no score (to judge)")
                if self.prompt is None:
                    raise ValueError("prompt: required when the row has no score (to judge)")
            return
        if self.score is not None:  # an empty cell (a CSV's score column) is no score
            raise ValueError(f"score: {d} rows are scored by rule from their response; drop it")
        if "response" not in self.model_fields_set:
            raise ValueError("response: required (null means No Answer)")
        if self.pair_id is None:
            raise ValueError("pair_id: required on noise-injection / position-swapping rows")
        roles = PAIR_ROLES[d]
        if self.pair_role not in roles:
            raise ValueError(f"pair_role: expected {' or '.join(roles)}, got {self.pair_role!r}")
        if self.reference is not None:
            if d != "noise-injection":
                raise ValueError("reference: only noise-injection rows have one")
            normalize_reference(self.reference)


@dataclass(frozen=True)
class RowItem:
    """A validated row with where it came from (``line``) and, for paired rows, its choice."""

    line: int
    row: GuardRankRow
    choice: str | None = None  # A / B / No Answer (paired rows)


def parse_row(line: int, data: Mapping[str, Any]) -> RowItem:
    """Validate one decoded row. Raises InputError naming ``row <line>`` and the field."""
    try:
        row = GuardRankRow.model_validate(dict(data))
        row.check()
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "row"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = (
                "unknown field (known: "
                + ", ".join(GuardRankRow.model_fields)
                + "; put extras under meta)"
            )
        raise InputError(f"row {line}: {loc}: {msg}", row=line, field=loc) from None
    except ValueError as exc:
        field = str(exc).split(":", 1)[0]
        raise InputError(f"row {line}: {exc}", row=line, field=field) from None
    choice = None
    if row.dimension not in JUDGED:
        choice = (
            normalize_choice(row.response, prompt_text(row.prompt or ""))
            if row.response
            else NO_ANSWER
        )
    return RowItem(line, row, choice)


@dataclass(frozen=True)
class Pairs:
    """The rule-scored pairs of a file, in file order of their first row."""

    noise: list[tuple[RowItem, RowItem, str]]  # (clean, noisy, reference A/B)
    position: list[tuple[RowItem, RowItem]]  # (original, swapped)


def pair_rows(items: list[RowItem]) -> Pairs:
    """Group paired rows by ``(dimension, pair_id)``.

    Raises:
        InputError: a pair misses its partner, has two rows of one role, or (noise-injection)
            has no reference or two that disagree; the message names the rows.
    """
    groups: dict[tuple[str, str], dict[str, RowItem]] = {}
    for it in items:
        d = it.row.dimension
        if d in JUDGED:
            continue
        key = (d, str(it.row.pair_id))
        role = str(it.row.pair_role)
        got = groups.setdefault(key, {})
        if role in got:
            raise InputError(
                f"rows {got[role].line} and {it.line}: {d} pair {key[1]!r} has two {role!r} rows",
                row=it.line,
                field="pair_role",
            )
        got[role] = it
    noise: list[tuple[RowItem, RowItem, str]] = []
    position: list[tuple[RowItem, RowItem]] = []
    for (d, pid), got in groups.items():
        first, second = PAIR_ROLES[d]
        for role, other in ((first, second), (second, first)):
            if role not in got:
                line = got[other].line
                raise InputError(
                    f"row {line}: {d} pair {pid!r} has no {role!r} row (its partner is missing)",
                    row=line,
                    field="pair_id",
                )
        a, b = got[first], got[second]
        if d == "position-swapping":
            position.append((a, b))
            continue
        refs = {normalize_reference(x.row.reference) for x in (a, b) if x.row.reference is not None}
        if len(refs) != 1:
            what = "no reference (set it to A or B)" if not refs else "two different references"
            raise InputError(
                f"rows {a.line} and {b.line}: noise-injection pair {pid!r} has {what}",
                row=a.line,
                field="reference",
            )
        noise.append((a, b, refs.pop()))
    return Pairs(noise, position)


def _resolve_images(row: GuardRankRow, base: Path) -> tuple[Any, ...]:
    refs = [row.images] if isinstance(row.images, str) else list(row.images or [])
    out: list[Any] = []
    for ref in refs:
        if isinstance(ref, str) and not ref.startswith(("data:", "http://", "https://")):
            p = Path(ref).expanduser()
            ref = str(p if p.is_absolute() else base / p)
        out.append(ref)
    return tuple(out)


def row_images(item: RowItem, data_file: Path) -> tuple[Any, ...]:
    """The row's image references, relative paths resolved against ``data_file``'s folder."""
    return _resolve_images(item.row, data_file.resolve().parent)


def read_guardrank_rows(
    path: Path, format: str | None = None, limit: int | None = None
) -> list[RowItem]:
    """Every row of ``path``, validated, in file order.

    Raises:
        InputError: any row does not decode or does not fit the schema; the message lists the
            first ``MAX_LISTED`` bad rows with their line and field, and how many there are.
    """
    from safeladder.data import read_rows

    items: list[RowItem] = []
    bad: list[str] = []
    n_bad = 0
    for i, row in enumerate(read_rows(path, format)):
        if limit is not None and i >= limit:
            break
        try:
            if row.error is not None or row.data is None:
                raise InputError(f"row {row.line}: {row.error or 'empty row'}", row=row.line)
            items.append(parse_row(row.line, row.data))
        except InputError as exc:
            n_bad += 1
            if len(bad) < MAX_LISTED:
                bad.append(str(exc))
    if n_bad:
        more = f"\n  ... and {n_bad - len(bad)} more" if n_bad > len(bad) else ""
        raise InputError(f"{path}: {n_bad} bad GuardRank row(s):\n  " + "\n  ".join(bad) + more)
    if not items:
        raise InputError(f"{path}: no rows")
    return items


def iter_judged(items: list[RowItem]) -> Iterator[RowItem]:
    """The judged rows (privacy, bias, toxicity, legality, hallucination), in file order."""
    return (it for it in items if it.row.dimension in JUDGED)


__all__ = [
    "MAX_LISTED",
    "PAIR_ROLES",
    "GuardRankRow",
    "Pairs",
    "RowItem",
    "iter_judged",
    "pair_rows",
    "parse_row",
    "read_guardrank_rows",
    "row_images",
]
