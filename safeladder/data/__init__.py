"""Input rows → ``Sample``; results → JSON Lines.

Layer: above ``types`` / ``errors`` / ``config``, below everything else; it imports only those
(plus pyarrow / datasets, inside the readers that need them), never another subpackage.
Every row → ``Sample`` mapping in safeladder (scoring, training data, eval) goes through
``to_sample``.

- ``read_rows(path, format=None)`` streams ``Row``s (line, data, raw, error) from JSONL (also
  gzipped), JSON, CSV, Parquet and saved Hugging Face dataset directories; bad rows are
  yielded with their error, never raised or dropped.
- ``to_sample(row, FieldMap(...))`` maps a row to a ``Sample`` (other fields → ``meta``);
  ``get_path`` / ``value_matches`` read dotted paths and ``where`` filters.
  An ``images`` column (paths, data URLs, Parquet bytes, HF ``Image`` cells) becomes
  ``Sample.images`` (``read_images``); relative paths resolve against ``base_dir``.
- ``JsonlWriter`` / ``write_json_atomic`` write results durably; a binary cell is written as
  ``binary_ref`` (``{"sha256", "bytes"}``), never as its content.

>>> from safeladder.data import FieldMap, to_sample
>>> to_sample({"question": "2+2?", "response": "4"}, FieldMap.from_flags(prompt="question")).prompt
'2+2?'
"""

from safeladder.data.fields import (
    MISSING,
    FieldMap,
    FieldValueError,
    completion_text,
    get_path,
    pick_field,
    read_images,
    to_sample,
    value_matches,
)
from safeladder.data.readers import FORMATS, Row, count_rows, detect_format, read_rows
from safeladder.data.writers import JsonlWriter, binary_ref, dumps, truncate, write_json_atomic

__all__ = [
    "FORMATS",
    "MISSING",
    "FieldMap",
    "FieldValueError",
    "JsonlWriter",
    "Row",
    "binary_ref",
    "completion_text",
    "count_rows",
    "detect_format",
    "dumps",
    "get_path",
    "pick_field",
    "read_images",
    "read_rows",
    "to_sample",
    "truncate",
    "value_matches",
    "write_json_atomic",
]
