"""Training rows: read the sources of a ``DataConfig`` into ``PointRecord`` / ``PairRecord``.

Per source (``DataSource``), in this order:

1. read every row with ``safeladder.data.read_rows`` (JSONL / JSON / CSV / Parquet / HF dataset
   dirs); a row that does not decode is an ``InputError`` naming the file and line (training
   data is curated: a bad row is a bug to fix, not a row to drop silently);
2. keep rows whose ``where`` fields equal the given values (dotted paths; CSV cells are strings,
   so ``"1"`` also matches ``1``);
3. keep the first ``limit`` of them;
4. ``augment``: ``safeladder.training.augment.apply(name, rows, source)`` may add or rewrite
   rows (e.g. refusal responses for prompt-only harmful prompts);
5. map fields (dotted paths such as ``meta.label`` or ``messages.0.content``) to records; the
   prompt and each reply become a ``Sample`` through ``safeladder.data.to_sample`` (the one
   row → ``Sample`` mapping, which also checks their shapes), then the record's texts.

Texts. A prompt is a string or a list of chat messages; messages become text with
``safeladder.types.prompt_text`` (contents joined by newlines), the text the verifiers' plain
rendering and the embedding head see. A response is a string, or TRL's conversational form (a
list with one assistant message). A missing / null response is a prompt-only row (pointwise
only: a prompt classifier reads the prompt alone).

Labels (pointwise). ``label_map`` (raw value as a string → class index) applies first. Then a
string that names a class (``DataConfig.labels``) is that class; an integer (or a string of
digits, or a bool) is a class index. Without ``labels`` the names are ``['0', '1']`` for indices
in {0, 1}, ``['0', ..., 'K-1']`` for larger indices, and the sorted distinct strings when the
labels are names. Multi-label rows hold a list: of class names, or a 0/1 vector with one entry
per class.

Groups. Rows with the same group never straddle the train/dev split: the group is the value of
``fields.group`` when set, else the prompt text normalised by ``normalize_group`` (with
``images``: plus a hash of the row's image references, so rows that share one instruction but
show different images are not all one group).

Images (``load_records(..., images=True)``: a ``classifier`` over a vision-language base). The
row's ``images`` (else ``image``) cell is read by ``safeladder.data.to_sample`` (the shapes of
``safeladder.data.fields``: paths, data URLs, bytes, a JSON list of them); a relative path
resolves against the data file's folder. The records are ``ImagePointRecord``: the prompt as
the row holds it (string or chat messages, image parts included) and the image references, what
the verifier renders at scoring time. Images are only referenced here; they are decoded when
the rows are rendered for training. Without ``images`` an image cell is ignored, as before.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safeladder.data import read_rows
from safeladder.data.fields import MISSING, FieldValueError, get_path, to_sample, value_matches
from safeladder.errors import ConfigError, InputError
from safeladder.images import ImageRef
from safeladder.training.common import DataSource, PairRecord, PointRecord, Record, TrainFields
from safeladder.types import Sample, prompt_text


def normalize_group(text: str) -> str:
    """The grouping key of a prompt: case-folded, whitespace runs collapsed to one space.

    >>> normalize_group("  How do I\\n make   TEA? ")
    'how do i make tea?'
    """
    return " ".join(text.casefold().split())


@dataclass
class RawRow:
    """A decoded input row with where it came from (``row`` is 1-based, see ``Row.line``);
    ``base_dir``: the folder relative image paths resolve against (the data file's)."""

    source: str
    row: int
    data: dict[str, Any]
    base_dir: Path | None = None


@dataclass(frozen=True)
class ImagePointRecord(PointRecord):
    """A labelled row for a vision-language classifier.

    ``prompt`` stays the prompt's text (grouping, baseline, reports); ``chat`` is the prompt as
    the row holds it (string or chat messages with image parts) and ``images`` the row's image
    references (absolute paths, data URLs, bytes), which the verifier's rendering reads.
    """

    chat: Any = None
    images: tuple[ImageRef, ...] = ()


def read_source(source: DataSource, base_dir: Path | None = None) -> list[RawRow]:
    """Rows of one source after ``where``, ``limit`` and ``augment`` (steps 1-4 above).

    Raises:
        InputError: the file is missing (with ``made_by``, the command that writes it) or
            unreadable, or a row does not decode (names the file and line).
        ConfigError: ``augment`` names a generator that does not exist.
    """
    path = resolve_path(source.path, base_dir)
    shown = str(path)
    if source.made_by and not path.exists():
        raise InputError(f"input not found: {shown}; it is generated: run `{source.made_by}` first")
    folder = path if path.is_dir() else path.parent
    rows: list[RawRow] = []
    for row in read_rows(path):
        if row.data is None:
            raise InputError(f"{shown}: line {row.line}: {row.error}", row=row.line)
        if all(value_matches(get_path(row.data, k), v) for k, v in source.where.items()):
            rows.append(RawRow(shown, row.line, row.data, folder))
            if source.limit is not None and len(rows) >= source.limit:
                break
    if not rows:
        where = f" matching where {source.where}" if source.where else ""
        raise InputError(f"{shown}: no rows{where}")
    if source.augment is not None:
        rows = _augment(source, rows, shown)
    return rows


def _augment(source: DataSource, rows: list[RawRow], shown: str) -> list[RawRow]:
    name = source.augment
    assert name is not None
    try:
        from safeladder.training import augment
    except ImportError as exc:
        raise ConfigError(
            f"data: augment: {name!r}: the augment module is not available ({exc})"
        ) from exc
    apply = getattr(augment, "apply", None)
    if apply is None:
        raise ConfigError(f"data: augment: {name!r}: safeladder.training.augment has no apply()")
    out = apply(name, [r.data for r in rows], source)
    # Generated rows get the 1-based position in the augmented list; the source says so.
    tag = f"{shown} (augment {name})"
    folder = rows[0].base_dir if rows else None
    return [RawRow(tag, i, dict(d), folder) for i, d in enumerate(out, start=1)]


def resolve_path(path: str, base_dir: Path | None) -> Path:
    """``path`` with ``~`` expanded; a relative path is taken from ``base_dir`` when given."""
    p = Path(path).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    return p


# --------------------------------------------------------------------------------------------
# Field mapping
# --------------------------------------------------------------------------------------------


def _bad(raw: RawRow, field: str, message: str) -> InputError:
    return InputError(
        f"{raw.source}: row {raw.row}: field {field!r}: {message}", row=raw.row, field=field
    )


def _prompt_value(raw: RawRow, fields: TrainFields) -> Any:
    value = get_path(raw.data, fields.prompt)
    if value is MISSING or value is None:
        raise _bad(
            raw, fields.prompt, "missing prompt (set data.*.fields.prompt to the prompt's field)"
        )
    return value


def _sample(
    raw: RawRow,
    fields: TrainFields,
    role: str,
    name: str | None,
    value: Any,
    images: bool = False,
) -> Sample:
    """The row's prompt with one reply (``value``, from field ``name``, the ``role`` reply:
    response / chosen / rejected; None = prompt-only) through ``safeladder.data.to_sample``,
    the one row → ``Sample`` mapping; a bad value is reported at its file, row and field.
    ``images``: the row's image cell (``FieldMap``'s default names) is read too."""
    prompt = _prompt_value(raw, fields)
    # Dotted paths are resolved here, so the mapper sees one flat field per role.
    reply = name if name is not None and name != fields.prompt else f"({role})"
    flat = {fields.prompt: prompt, reply: "" if value is None else value}
    fm = fields.sample_fields(reply)
    if images:
        cell = next((k for k in fm.images if k in raw.data and k not in flat), None)
        if cell is not None:
            flat[cell] = raw.data[cell]
    try:
        return to_sample(flat, fm, base_dir=raw.base_dir if images else None)
    except FieldValueError as exc:
        what = exc.reason if exc.role in ("prompt", "images") else f"{role}: {exc.reason}"
        raise _bad(raw, exc.field or reply, what) from None


def _prompt_str(sample: Sample) -> str:
    # Training records hold text: chat messages are joined as the verifiers' plain rendering.
    return sample.prompt if isinstance(sample.prompt, str) else prompt_text(sample.prompt)


def _optional_str(raw: RawRow, field: str | None) -> str | None:
    if field is None:
        return None
    value = get_path(raw.data, field)
    if value is MISSING or value is None:
        return None
    return str(value)


@dataclass
class LabelSpace:
    """Class names in index order, and whether rows carry several labels each."""

    names: list[str]
    multi_label: bool


def _raw_labels(rows: Sequence[RawRow], source: DataSource) -> list[Any]:
    field = source.fields.label
    out = []
    for raw in rows:
        value = get_path(raw.data, field)
        if value is MISSING or value is None:
            raise _bad(raw, field, "missing label")
        if source.label_map is not None and not isinstance(value, list):
            key = str(value).lower() if isinstance(value, bool) else str(value)
            if key not in source.label_map:
                raise _bad(
                    raw,
                    field,
                    f"label {value!r} is not in label_map (keys: {', '.join(source.label_map)})",
                )
            value = source.label_map[key]
        out.append(value)
    return out


def _as_index(value: Any) -> int | None:
    """An integer class index from an int / bool / integral float / digit string, else None."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def infer_label_space(
    values: Iterable[Any], names: Sequence[str] | None, multi_label: bool
) -> LabelSpace:
    """The class names for raw label ``values`` (see the module docstring).

    >>> infer_label_space([0, 1, 1], None, False).names
    ['0', '1']
    >>> infer_label_space(["toxic", "safe"], None, False).names
    ['safe', 'toxic']
    """
    if names is not None:
        if len(set(names)) != len(names) or len(names) < 2:
            raise ConfigError(f"data.labels: {list(names)}: give 2+ distinct class names")
        return LabelSpace(list(names), multi_label)
    flat: list[Any] = []
    width = 0
    for v in values:
        if isinstance(v, list):
            if v and all(_as_index(x) in (0, 1) and not isinstance(x, str) for x in v):
                width = max(width, len(v))  # a 0/1 vector
            else:
                flat.extend(v)
        else:
            flat.append(v)
    if width:
        return LabelSpace([str(i) for i in range(width)], multi_label)
    idx = [_as_index(v) for v in flat]
    if flat and all(i is not None for i in idx):
        top = max(i for i in idx if i is not None)
        return LabelSpace([str(i) for i in range(max(2, top + 1))], multi_label)
    found = sorted({str(v) for v in flat})
    if len(found) < 2:
        raise ConfigError(
            f"data.labels: the rows name only the class(es) {found}; list every class name in "
            "data.labels (index order)"
        )
    return LabelSpace(found, multi_label)


def _label(raw: RawRow, field: str, value: Any, space: LabelSpace) -> int | tuple[int, ...]:
    names = space.names
    if space.multi_label:
        if not isinstance(value, list):
            raise _bad(raw, field, f"multi-label rows need a list of labels, got {value!r:.60}")
        is_vector = (
            len(value) == len(names)
            and all(_as_index(x) in (0, 1) and not isinstance(x, str) for x in value)
            and value
        )
        if is_vector:
            return tuple(int(_as_index(x) or 0) for x in value)
        hot = [0] * len(names)
        for x in value:
            j = _class_index(raw, field, x, names)
            hot[j] = 1
        return tuple(hot)
    if isinstance(value, list):
        raise _bad(
            raw,
            field,
            f"got a list {value!r:.60} but the kind is single-label (multi_label: false)",
        )
    return _class_index(raw, field, value, names)


def _class_index(raw: RawRow, field: str, value: Any, names: Sequence[str]) -> int:
    if isinstance(value, str) and value in names:
        return names.index(value)
    idx = _as_index(value)
    if idx is not None and 0 <= idx < len(names):
        return idx
    raise _bad(
        raw,
        field,
        f"label {value!r:.60} is neither a class name nor an index into {list(names)} "
        "(set data.labels or label_map)",
    )


def _group(raw: RawRow, source: DataSource, prompt: str) -> str:
    field = source.fields.group
    if field is None:
        return normalize_group(prompt)
    value = get_path(raw.data, field)
    if value is MISSING or value is None:
        raise _bad(raw, field, "missing group value (fields.group)")
    return str(value)


def _image_group(group: str, refs: Sequence[ImageRef]) -> str:
    """``group`` plus a hash of the image references (see Groups in the module docstring)."""
    if not refs:
        return group
    h = hashlib.sha256()
    for ref in refs:
        h.update(ref if isinstance(ref, bytes) else str(ref).encode("utf-8", "replace"))
        h.update(b"\0")
    return f"{group}|images:{h.hexdigest()[:16]}"


def to_point_records(
    rows: Sequence[RawRow],
    source: DataSource,
    space: LabelSpace,
    raw_labels: Sequence[Any],
    *,
    images: bool = False,
) -> list[PointRecord]:
    """Pointwise records of one source's rows (``raw_labels`` from ``_raw_labels``);
    ``images``: ``ImagePointRecord`` with the rows' images (see the module docstring)."""
    f = source.fields
    out: list[PointRecord] = []
    for raw, value in zip(rows, raw_labels, strict=True):
        r = MISSING if f.completion is None else get_path(raw.data, f.completion)
        reply = None if r is MISSING else r
        sample = _sample(raw, f, "response", f.completion, reply, images)
        prompt = _prompt_str(sample)
        response = None if reply is None else sample.completion
        label = _label(raw, f.label, value, space)
        group = _group(raw, source, prompt)
        category = _optional_str(raw, f.category)
        if images:
            refs = tuple(sample.images)
            if f.group is None:
                group = _image_group(group, refs)
            out.append(
                ImagePointRecord(
                    row=raw.row,
                    source=raw.source,
                    prompt=prompt,
                    response=response,
                    label=label,
                    category=category,
                    group=group,
                    chat=sample.prompt,
                    images=refs,
                )
            )
            continue
        out.append(
            PointRecord(
                row=raw.row,
                source=raw.source,
                prompt=prompt,
                response=response,
                label=label,
                category=category,
                group=group,
            )
        )
    return out


def to_pair_records(rows: Sequence[RawRow], source: DataSource) -> list[PairRecord]:
    """Preference-pair records of one source's rows."""
    f = source.fields
    out = []
    for raw in rows:
        _prompt_value(raw, f)  # a missing prompt is named before a missing reply
        texts = []
        for field, role in ((f.chosen, "chosen"), (f.rejected, "rejected")):
            value = get_path(raw.data, field)
            if value is MISSING or value is None:
                raise _bad(raw, field, f"missing {role} response")
            texts.append(_sample(raw, f, role, field, value))
        prompt = _prompt_str(texts[0])
        margin: float | None = None
        if f.margin is not None:
            m = get_path(raw.data, f.margin)
            try:
                margin = float(m)
            except (TypeError, ValueError):
                raise _bad(raw, f.margin, f"margin must be a number, got {m!r:.40}") from None
            if not math.isfinite(margin):
                raise _bad(raw, f.margin, f"margin must be finite, got {margin}")
        out.append(
            PairRecord(
                row=raw.row,
                source=raw.source,
                prompt=prompt,
                chosen=texts[0].completion,
                rejected=texts[1].completion,
                category=_optional_str(raw, f.category),
                group=_group(raw, source, prompt),
                margin=margin,
            )
        )
    return out


@dataclass
class LoadedRecords:
    """Records of a list of sources; ``labels`` names the classes (pointwise)."""

    records: list[Record]
    labels: list[str]
    multi_label: bool = False


def load_records(
    sources: Sequence[DataSource],
    *,
    pairwise: bool,
    labels: Sequence[str] | None = None,
    multi_label: bool = False,
    base_dir: Path | None = None,
    images: bool = False,
) -> LoadedRecords:
    """Read and map every source (in order) into records.

    Args:
        sources: the files to read.
        pairwise: build ``PairRecord``s (chosen / rejected) instead of ``PointRecord``s.
        labels: class names in index order (``DataConfig.labels``); None infers them from the
            raw labels of all sources together.
        multi_label: rows hold several labels each (a list).
        base_dir: relative source paths are resolved against it (the config file's directory).
        images: pointwise rows carry their images (``ImagePointRecord``; a vision-language
            base).
    """
    raws = [(s, read_source(s, base_dir)) for s in sources]
    if pairwise:
        pairs: list[Record] = [r for s, rows in raws for r in to_pair_records(rows, s)]
        return LoadedRecords(pairs, [], False)
    raw_labels = [_raw_labels(rows, s) for s, rows in raws]
    space = infer_label_space((v for vs in raw_labels for v in vs), labels, multi_label)
    points: list[Record] = []
    for (s, rows), vals in zip(raws, raw_labels, strict=True):
        points.extend(to_point_records(rows, s, space, vals, images=images))
    return LoadedRecords(points, space.names, multi_label)


# --------------------------------------------------------------------------------------------
# Class balance
# --------------------------------------------------------------------------------------------


def _shares(counts: Mapping[str, int], total: int) -> dict[str, dict[str, float | int]]:
    return {k: {"count": int(v), "share": (v / total if total else 0.0)} for k, v in counts.items()}


def class_balance(records: Sequence[Record], labels: Sequence[str]) -> dict[str, Any]:
    """Counts and shares per class, overall, per source and per category.

    Pointwise single-label: ``{"n", "classes": {name: {"count", "share"}}, "by_source": {src:
    {name: count}}, "by_category": {...}}``; multi-label counts the rows where each label is
    on (shares of rows); pairwise rows have no class, so only ``n`` and the per-source /
    per-category row counts.

    >>> r = [PointRecord(1, "a", "p", None, 1), PointRecord(2, "a", "q", None, 0)]
    >>> class_balance(r, ["0", "1"])["classes"]["1"]
    {'count': 1, 'share': 0.5}
    """
    n = len(records)
    out: dict[str, Any] = {"n": n}
    if not records or isinstance(records[0], PairRecord):
        out["by_source"] = dict(Counter(r.source for r in records))
        out["by_category"] = dict(Counter(r.category or "(none)" for r in records))
        return out

    def names_of(r: PointRecord) -> list[str]:
        if isinstance(r.label, tuple):
            return [labels[j] for j, on in enumerate(r.label) if on]
        return [labels[r.label]]

    total: Counter[str] = Counter({name: 0 for name in labels})
    by_source: dict[str, Counter[str]] = {}
    by_category: dict[str, Counter[str]] = {}
    for r in records:
        assert isinstance(r, PointRecord)
        hit = names_of(r)
        total.update(hit)
        by_source.setdefault(r.source, Counter()).update(hit)
        by_category.setdefault(r.category or "(none)", Counter()).update(hit)
    out["classes"] = _shares({k: total[k] for k in labels}, n)
    out["by_source"] = {s: {k: c[k] for k in labels} for s, c in by_source.items()}
    out["by_category"] = {s: {k: c[k] for k in labels} for s, c in sorted(by_category.items())}
    return out


__all__ = [
    "MISSING",
    "ImagePointRecord",
    "LabelSpace",
    "LoadedRecords",
    "RawRow",
    "class_balance",
    "get_path",
    "infer_label_space",
    "load_records",
    "normalize_group",
    "read_source",
    "resolve_path",
    "to_pair_records",
    "to_point_records",
]
