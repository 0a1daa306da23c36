"""Input rows → ``Sample``; results → JSON Lines.

- ``read_rows(path, format=None)`` streams ``Row``s (line, data, raw, error) from JSONL (also
  gzipped), JSON, CSV, Parquet and saved Hugging Face dataset directories; bad rows are
  yielded with their error, never raised or dropped.
- ``to_sample(row, FieldMap(...))`` maps a row to a ``Sample`` (other fields → ``meta``).
- ``JsonlWriter`` / ``write_json_atomic`` write results durably.

>>> from safeladder.data import FieldMap, to_sample
>>> to_sample({"question": "2+2?", "response": "4"}, FieldMap.from_flags(prompt="question")).prompt
'2+2?'
"""

from safeladder.data.fields import FieldMap, to_sample
from safeladder.data.readers import FORMATS, Row, count_rows, detect_format, read_rows
from safeladder.data.writers import JsonlWriter, dumps, truncate, write_json_atomic

__all__ = [
    "FORMATS",
    "FieldMap",
    "JsonlWriter",
    "Row",
    "count_rows",
    "detect_format",
    "dumps",
    "read_rows",
    "to_sample",
    "truncate",
    "write_json_atomic",
]
