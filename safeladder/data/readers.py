"""Stream input rows from JSONL, JSON, CSV, Parquet files and saved Hugging Face datasets.

Every reader yields ``Row`` objects in input order, one per input row, without holding the
file in memory (JSON is the exception: a top-level array is loaded whole). A row that cannot be
decoded is not an exception that stops the stream: it comes out as a bad row (``error`` set,
``data`` None) with its position and raw text, and the next row follows.

CSV cells are strings, except that an empty cell is None (a missing value, as pandas and
``datasets`` read it); ``json_columns`` names columns whose cells are JSON-decoded.

``Row.line`` is 1-based. For JSONL and CSV it is the physical line of the file where the row
starts (CSV line 1 is the header, so the first data row is line 2); for JSON, Parquet and
Hugging Face datasets it is the row's 1-based index. Blank JSONL lines are not rows: they are
skipped, and the line numbers of the rows after them stay the physical ones.

Example::

    for row in read_rows("data.jsonl"):
        if row.error is None:
            print(row.line, row.data["completion"])
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import zlib
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from safeladder.data.writers import dumps
from safeladder.errors import InputError

Format = Literal["jsonl", "json", "csv", "parquet", "hf"]
FORMATS: tuple[str, ...] = ("jsonl", "json", "csv", "parquet", "hf")

#: Rows per Arrow record batch when streaming Parquet files and HF datasets.
ARROW_BATCH_ROWS = 1024


@dataclass(frozen=True)
class Row:
    """One input row.

    Attributes:
        line: 1-based line (JSONL, CSV) or row index (JSON, Parquet, HF); see the module doc.
        data: the decoded row (a dict), or None for a bad row.
        raw: the row's text as read (a JSONL line without its newline, the CSV record's lines),
            or its JSON encoding for formats that are not text (Parquet, HF, JSON arrays).
        error: why the row could not be decoded, or None.
    """

    line: int
    data: dict[str, Any] | None
    raw: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def detect_format(path: str | Path) -> Format:
    """The format of ``path`` from its extension (``.gz`` is looked through) or directory.

    >>> detect_format("rows.jsonl.gz"), detect_format("t.parquet"), detect_format("a.CSV")
    ('jsonl', 'parquet', 'csv')
    """
    p = Path(path)
    if p.is_dir():
        return "hf"
    name = p.name.lower().removesuffix(".gz")
    for suffixes, fmt in (
        ((".jsonl", ".ndjson"), "jsonl"),
        ((".json",), "json"),
        ((".csv",), "csv"),
        ((".parquet", ".pq"), "parquet"),
    ):
        if name.endswith(suffixes):
            return fmt  # type: ignore[return-value]
    raise InputError(
        f"cannot tell the format of {p} from its name; pass --format (one of {', '.join(FORMATS)})"
    )


def read_rows(
    path: str | Path,
    format: str | None = None,
    *,
    start: int = 1,
    json_columns: Collection[str] = (),
    split: str | None = None,
) -> Iterator[Row]:
    """Stream the rows of ``path``.

    Args:
        path: a file, or a directory written by ``datasets.Dataset.save_to_disk``.
        format: one of ``jsonl | json | csv | parquet | hf``; None detects it from the name.
        start: skip rows whose ``line`` is below this (used to resume); skipped rows are not
            decoded where the format allows it.
        json_columns: CSV only: columns whose cells hold JSON (chat prompts, lists); a cell
            that is not valid JSON makes the row bad. (Every empty CSV cell reads as None; other
            cells stay strings.)
        split: HF only: the split to read when the directory holds a ``DatasetDict``.

    Raises:
        InputError: here, when the path does not exist, the format is unknown, an option does
            not fit the input (a JSON column not in the CSV header, a missing HF split); while
            iterating, when the whole file is unreadable (a JSON document that does not parse,
            a corrupt Parquet footer, a truncated gzip stream).
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"input not found: {p}")
    fmt = format or detect_format(p)
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if json_columns and fmt != "csv":
        raise InputError(f"JSON columns only apply to CSV input, not {fmt}")
    if split is not None and fmt != "hf":
        raise InputError(f"a split only applies to a Hugging Face dataset directory, not {fmt}")
    if fmt != "hf" and p.is_dir():
        raise InputError(f"{p} is a directory; a {fmt} input must be a file")
    if fmt == "jsonl":
        return _read_jsonl(p, start)
    if fmt == "json":
        return _read_json(p, start)
    if fmt == "csv":
        _check_csv(p, frozenset(json_columns))
        return _read_csv(p, start, frozenset(json_columns))
    if fmt == "parquet":
        return _read_parquet(p, start)
    return _read_hf(_load_hf(p, split), start)


def count_rows(path: str | Path, format: str | None = None, split: str | None = None) -> int | None:
    """Number of rows when it is known without reading the data (Parquet, HF), else None.

    Only a hint (for a progress bar): an unreadable file gives None here and its error from
    ``read_rows``.
    """
    p = Path(path)
    fmt = format or detect_format(p)
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return int(pq.ParquetFile(p).metadata.num_rows)
        if fmt == "hf":
            return len(_load_hf(p, split))
    except Exception:
        return None
    return None


def _open_text(path: Path) -> IO[str]:
    # utf-8-sig: spreadsheet exports start CSV files with a byte-order mark.
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _open_binary(path: Path) -> IO[bytes]:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def _decode_object(text: str) -> tuple[dict[str, Any] | None, str | None]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON: {exc}"
    if not isinstance(value, dict):
        return None, f"expected a JSON object, got {_json_kind(value)}"
    return value, None


def _json_kind(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _read_jsonl(path: Path, start: int) -> Iterator[Row]:
    lineno = 0
    # Binary lines end at b"\n" only (a text reader would also split on a lone "\r"), and a
    # line that is not UTF-8 becomes a bad row instead of stopping the stream.
    with _open_binary(path) as fh:
        try:
            for lineno, bline in enumerate(fh, start=1):
                if lineno < start:
                    continue
                if lineno == 1:
                    bline = bline.removeprefix(b"\xef\xbb\xbf")
                bline = bline.removesuffix(b"\n").removesuffix(b"\r")
                try:
                    text = bline.decode("utf-8")
                except UnicodeDecodeError as exc:
                    yield Row(lineno, None, bline.decode("utf-8", "replace"), f"not UTF-8: {exc}")
                    continue
                if not text.strip():
                    continue
                data, error = _decode_object(text)
                yield Row(lineno, data, text, error)
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(f"{path}: cannot read past line {lineno}: {exc}") from exc


def _read_json(path: Path, start: int) -> Iterator[Row]:
    with _open_text(path) as fh:
        text = fh.read()
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":
            # One object per line in a file named .json: read it as JSONL.
            yield from _read_jsonl(path, start)
            return
        raise InputError(f"{path}: invalid JSON: {exc}") from exc
    if isinstance(doc, dict) and isinstance(doc.get("data"), list):
        items = doc["data"]
    elif isinstance(doc, list):
        items = doc
    else:
        raise InputError(
            f'{path}: expected a top-level array of objects or {{"data": [...]}}, '
            f"got {_json_kind(doc) if not isinstance(doc, dict) else 'an object without a data list'}"
        )
    del doc, text
    for i, item in enumerate(items, start=1):
        if i < start:
            continue
        raw = json.dumps(item, ensure_ascii=False, default=str)
        if isinstance(item, dict):
            yield Row(i, item, raw)
        else:
            yield Row(i, None, raw, f"expected a JSON object, got {_json_kind(item)}")


class _LineRecorder:
    """Iterates a text file's lines for ``csv.reader`` and remembers the ones consumed."""

    def __init__(self, fh: IO[str]):
        self._fh = fh
        self.taken: list[str] = []

    def __iter__(self) -> _LineRecorder:
        return self

    def __next__(self) -> str:
        line = self._fh.readline()
        if not line:
            raise StopIteration
        self.taken.append(line)
        return line


#: Largest CSV cell accepted; the stdlib default (128 KiB) is smaller than a long completion.
CSV_FIELD_LIMIT = 1 << 30


def _csv_header(path: Path, reader: Any) -> list[str] | None:
    try:
        header: list[str] = next(reader)
    except StopIteration:
        return None
    except csv.Error as exc:
        raise InputError(f"{path}: line 1: cannot parse the CSV header: {exc}") from exc
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise InputError(f"{path}: the CSV header repeats column(s) {', '.join(dupes)}")
    return header


def _check_csv(path: Path, json_columns: frozenset[str]) -> None:
    """Header problems are the caller's to fix (exit 2), so they surface before streaming."""
    if csv.field_size_limit() < CSV_FIELD_LIMIT:
        csv.field_size_limit(CSV_FIELD_LIMIT)
    with _open_text(path) as fh:
        header = _csv_header(path, csv.reader(fh)) or []
    missing = sorted(json_columns - set(header))
    if missing:
        raise InputError(
            f"{path}: JSON column(s) {', '.join(missing)} not in the CSV header "
            f"({', '.join(header)})"
        )


def _read_csv(path: Path, start: int, json_columns: frozenset[str]) -> Iterator[Row]:
    with _open_text(path) as fh:
        lines = _LineRecorder(fh)
        reader = csv.reader(lines)
        header = _csv_header(path, reader)
        if header is None:
            return
        first_line = 1 + len(lines.taken)
        lines.taken.clear()
        while True:
            try:
                cells = next(reader)
                error = None
            except StopIteration:
                return
            except csv.Error as exc:
                cells, error = [], f"invalid CSV: {exc}"
            raw = "".join(lines.taken).removesuffix("\n").removesuffix("\r")
            lineno = first_line
            first_line += len(lines.taken)
            lines.taken.clear()
            if lineno < start or (error is None and not cells):
                continue  # csv yields [] for an empty line: not a row
            if error is None and len(cells) != len(header):
                error = f"the row has {len(cells)} fields, the header has {len(header)}"
            if error is not None:
                yield Row(lineno, None, raw, error)
                continue
            # An empty cell is a missing value (None), as pandas and `datasets` read CSV: an
            # empty reference must mean "no reference", never a gold answer of "".
            data: dict[str, Any] = {
                h: (c if c != "" else None) for h, c in zip(header, cells, strict=True)
            }
            for col in json_columns:
                cell = data[col]
                if cell is None:
                    continue
                try:
                    data[col] = json.loads(cell)
                except json.JSONDecodeError as exc:
                    error = f"column '{col}': invalid JSON: {exc}"
                    break
            yield Row(lineno, None if error else data, raw, error)


def _jsonable_raw(data: dict[str, Any]) -> str:
    # writers.dumps names binary cells (images) by hash and size instead of copying them.
    return dumps(data)


def _read_arrow_batches(
    batches: Iterator[Any], start: int, convert: Callable[[dict[str, Any]], dict[str, Any]]
) -> Iterator[Row]:
    offset = 0  # rows before the current batch
    for batch in batches:
        n = batch.num_rows
        if offset + n < start:  # the whole batch lies before ``start``: skip without decoding
            offset += n
            continue
        for i, item in enumerate(batch.to_pylist(), start=offset + 1):
            if i >= start:
                data = convert(item)
                yield Row(i, data, _jsonable_raw(data))
        offset += n


def _read_parquet(path: Path, start: int) -> Iterator[Row]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: cannot read as Parquet: {exc}") from exc
    # Whole row groups before ``start`` are skipped without reading them.
    groups, offset = [], 0
    for g in range(pf.metadata.num_row_groups):
        rows = pf.metadata.row_group(g).num_rows
        if offset + rows >= start:
            groups.append(g)
        else:
            offset += rows
    if not groups:
        return
    batches = pf.iter_batches(batch_size=ARROW_BATCH_ROWS, row_groups=groups)
    for row in _read_arrow_batches(batches, start - offset, _plain):
        yield Row(row.line + offset, row.data, row.raw, row.error)


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    # Arrow's to_pylist gives plain Python values already; NaN floats become None so the row
    # round-trips through JSON (JSON has no NaN).
    return {k: _no_nan(v) for k, v in item.items()}


def _no_nan(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, dict):
        return {k: _no_nan(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_no_nan(x) for x in v]
    return v


def _load_hf(path: Path, split: str | None) -> Any:
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - datasets is a dependency
        raise InputError("reading a Hugging Face dataset directory needs `datasets`") from exc
    try:
        ds = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as exc:
        raise InputError(f"{path}: not a saved Hugging Face dataset: {exc}") from exc
    if isinstance(ds, datasets.DatasetDict):
        names = list(ds)
        if split is None:
            if len(names) != 1:
                raise InputError(f"{path} holds splits {', '.join(names)}; pass --split")
            split = names[0]
        if split not in ds:
            raise InputError(f"{path}: no split {split!r}; splits: {', '.join(names)}")
        return ds[split]
    if split is not None:
        raise InputError(f"{path} holds one dataset without splits; drop --split")
    return ds


def _read_hf(ds: Any, start: int) -> Iterator[Row]:
    # The dataset is memory-mapped Arrow; reading its table batch by batch keeps memory flat.
    batches = ds.with_format("arrow").iter(batch_size=ARROW_BATCH_ROWS)
    yield from _read_arrow_batches(_as_record_batches(batches), start, _plain)


def _as_record_batches(tables: Iterator[Any]) -> Iterator[Any]:
    for table in tables:
        yield from table.to_batches()


__all__ = ["FORMATS", "Format", "Row", "count_rows", "detect_format", "read_rows"]
