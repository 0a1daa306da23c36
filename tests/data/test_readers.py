"""Readers: every format streams rows with 1-based positions; bad rows are yielded, not raised."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from safeladder.data import Row, count_rows, detect_format, read_rows
from safeladder.errors import InputError

ROWS = [
    {"prompt": "1+1?", "completion": "2", "task": "math"},
    {"prompt": "Capital of France?", "completion": "Paris", "task": "qa"},
    {"prompt": "你好", "completion": "こんにちは", "task": "chat"},
]


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def good(rows: list[Row]) -> list[dict]:
    return [r.data for r in rows if r.ok]  # type: ignore[misc]


# ---------------------------------------------------------------- format detection


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.jsonl", "jsonl"),
        ("a.JSONL.gz", "jsonl"),
        ("a.ndjson", "jsonl"),
        ("a.json", "json"),
        ("a.csv", "csv"),
        ("a.csv.gz", "csv"),
        ("a.parquet", "parquet"),
        ("a.pq", "parquet"),
    ],
)
def test_detect_format_from_extension(name: str, fmt: str) -> None:
    assert detect_format(name) == fmt


def test_detect_format_directory_is_hf(tmp_path: Path) -> None:
    assert detect_format(tmp_path) == "hf"


def test_unknown_extension_names_the_flag(tmp_path: Path) -> None:
    p = tmp_path / "rows.txt"
    p.write_text("{}\n")
    with pytest.raises(InputError, match="--format"):
        read_rows(p)
    # ... and --format makes it readable
    assert [r.line for r in read_rows(p, "jsonl")] == [1]


def test_missing_input_raises_before_iteration(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="input not found"):
        read_rows(tmp_path / "nope.jsonl")


# ---------------------------------------------------------------- JSONL


def test_jsonl_rows_and_bad_lines_with_1_based_line_numbers(tmp_path: Path) -> None:
    p = write_jsonl(
        tmp_path / "in.jsonl",
        [
            json.dumps(ROWS[0]),
            '{"prompt": "broken", ',  # line 2: truncated JSON
            "",  # line 3: blank, not a row
            json.dumps(ROWS[1]),
            "[1, 2]",  # line 5: JSON but not an object
            json.dumps(ROWS[2], ensure_ascii=False),
        ],
    )
    rows = list(read_rows(p))
    assert [(r.line, r.ok) for r in rows] == [
        (1, True),
        (2, False),
        (4, True),
        (5, False),
        (6, True),
    ]
    assert good(rows) == ROWS
    assert rows[1].raw == '{"prompt": "broken", '
    assert rows[1].error is not None and rows[1].error.startswith("invalid JSON")
    assert rows[3].error == "expected a JSON object, got an array"
    assert rows[1].data is None


def test_jsonl_gz_and_crlf_and_bom(tmp_path: Path) -> None:
    p = tmp_path / "in.jsonl.gz"
    body = "\ufeff" + json.dumps(ROWS[0]) + "\r\n" + json.dumps(ROWS[1]) + "\r\n"
    with gzip.open(p, "wb") as fh:
        fh.write(body.encode("utf-8"))
    rows = list(read_rows(p))
    assert good(rows) == ROWS[:2]
    assert [r.line for r in rows] == [1, 2]


def test_jsonl_line_separator_inside_string_is_not_a_line_break(tmp_path: Path) -> None:
    # U+2028 is legal unescaped inside JSON strings; str.splitlines would cut the line there.
    row = {"completion": "a\u2028b"}
    p = tmp_path / "in.jsonl"
    p.write_bytes(json.dumps(row, ensure_ascii=False).encode() + b"\n")
    assert good(list(read_rows(p))) == [row]


def test_jsonl_invalid_utf8_line_is_a_bad_row(tmp_path: Path) -> None:
    p = tmp_path / "in.jsonl"
    p.write_bytes(b'{"completion": "\xff"}\n' + json.dumps(ROWS[0]).encode() + b"\n")
    rows = list(read_rows(p))
    assert [(r.line, r.ok) for r in rows] == [(1, False), (2, True)]
    assert "UTF-8" in (rows[0].error or "")


def test_jsonl_start_skips_earlier_lines(tmp_path: Path) -> None:
    p = write_jsonl(
        tmp_path / "in.jsonl", [json.dumps({"i": i, "completion": ""}) for i in range(10)]
    )
    rows = list(read_rows(p, start=8))
    assert [r.line for r in rows] == [8, 9, 10]
    assert [r.data["i"] for r in rows] == [7, 8, 9]  # type: ignore[index]


# ---------------------------------------------------------------- JSON


def test_json_array_and_data_wrapper(tmp_path: Path) -> None:
    a = tmp_path / "a.json"
    a.write_text(json.dumps(ROWS))
    b = tmp_path / "b.json"
    b.write_text(json.dumps({"data": ROWS, "version": 1}))
    assert good(list(read_rows(a))) == ROWS
    rows = list(read_rows(b, start=2))
    assert [r.line for r in rows] == [2, 3]
    assert good(rows) == ROWS[1:]


def test_json_non_object_items_are_bad_rows(tmp_path: Path) -> None:
    p = tmp_path / "a.json"
    p.write_text(json.dumps([ROWS[0], "oops", ROWS[1]]))
    rows = list(read_rows(p))
    assert [(r.line, r.ok) for r in rows] == [(1, True), (2, False), (3, True)]
    assert rows[1].raw == '"oops"'


def test_json_file_holding_jsonl_is_read_as_jsonl(tmp_path: Path) -> None:
    p = write_jsonl(tmp_path / "a.json", [json.dumps(r) for r in ROWS])
    assert good(list(read_rows(p))) == ROWS


def test_json_unparseable_document_raises(tmp_path: Path) -> None:
    p = tmp_path / "a.json"
    p.write_text('[{"a": 1},')
    with pytest.raises(InputError, match="invalid JSON"):
        list(read_rows(p))
    p.write_text('{"rows": []}')
    with pytest.raises(InputError, match="data"):
        list(read_rows(p))


# ---------------------------------------------------------------- CSV


def test_csv_line_numbers_count_the_header_and_multiline_cells(tmp_path: Path) -> None:
    p = tmp_path / "in.csv"
    p.write_text(
        "prompt,completion,task\n"  # line 1
        "1+1?,2,math\n"  # line 2
        '"a\nmultiline prompt","x, y",qa\n'  # lines 3-4
        "too,many,fields,here\n"  # line 5: bad
        "\n"  # line 6: empty, not a row
        "last,row,chat\n",  # line 7
        encoding="utf-8",
    )
    rows = list(read_rows(p))
    assert [(r.line, r.ok) for r in rows] == [(2, True), (3, True), (5, False), (7, True)]
    assert rows[1].data == {"prompt": "a\nmultiline prompt", "completion": "x, y", "task": "qa"}
    assert rows[1].raw == '"a\nmultiline prompt","x, y",qa'
    assert rows[2].error == "the row has 4 fields, the header has 3"
    assert rows[2].raw == "too,many,fields,here"
    assert [r.line for r in read_rows(p, start=4)] == [5, 7]


def test_csv_json_columns_decode_chat_prompts(tmp_path: Path) -> None:
    chat = [{"role": "user", "content": "hi, there"}]
    p = tmp_path / "in.csv"
    import csv

    with open(p, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["prompt", "completion", "answer"])
        w.writerow([json.dumps(chat), "hello", '["a", "b"]'])
        w.writerow(["not json", "x", ""])
        w.writerow([json.dumps(chat), "y", ""])
    rows = list(read_rows(p, json_columns=["prompt", "answer"]))
    assert rows[0].data == {"prompt": chat, "completion": "hello", "answer": ["a", "b"]}
    assert not rows[1].ok and "column 'prompt': invalid JSON" in (rows[1].error or "")
    assert rows[2].data == {"prompt": chat, "completion": "y", "answer": None}
    # without the option, cells stay strings
    assert next(iter(read_rows(p))).data["answer"] == '["a", "b"]'  # type: ignore[index]


def test_csv_empty_cell_is_none_not_an_empty_reference(tmp_path: Path) -> None:
    p = tmp_path / "in.csv"
    p.write_text('completion,reference,note\nx,,""\n')
    assert good(list(read_rows(p))) == [{"completion": "x", "reference": None, "note": None}]


def test_csv_json_column_missing_from_header_raises(tmp_path: Path) -> None:
    p = tmp_path / "in.csv"
    p.write_text("completion\nx\n")
    with pytest.raises(InputError, match="not in the CSV header"):
        read_rows(p, json_columns=["prompt"])  # raised before iterating: a usage error


def test_csv_with_bom_and_gzip(tmp_path: Path) -> None:
    p = tmp_path / "in.csv.gz"
    with gzip.open(p, "wt", encoding="utf-8-sig") as fh:
        fh.write("completion,task\nhello,qa\n")
    assert good(list(read_rows(p))) == [{"completion": "hello", "task": "qa"}]


def test_json_columns_only_for_csv(tmp_path: Path) -> None:
    p = write_jsonl(tmp_path / "in.jsonl", ["{}"])
    with pytest.raises(InputError, match="CSV"):
        read_rows(p, json_columns=["prompt"])


# ---------------------------------------------------------------- Parquet


def test_parquet_streams_batches_and_skips_row_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import safeladder.data.readers as readers

    monkeypatch.setattr(readers, "ARROW_BATCH_ROWS", 3)  # several batches per row group
    rows = [
        {"i": i, "completion": f"c{i}", "score": float("nan") if i == 4 else 0.5} for i in range(20)
    ]
    p = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(rows), p, row_group_size=7)
    assert pq.ParquetFile(p).metadata.num_row_groups == 3
    got = list(read_rows(p))
    assert [r.line for r in got] == list(range(1, 21))
    assert [r.data["i"] for r in got] == list(range(20))  # type: ignore[index]
    assert got[4].data["score"] is None  # type: ignore[index]  # NaN → None: JSON has no NaN
    assert json.loads(got[0].raw) == {"i": 0, "completion": "c0", "score": 0.5}
    tail = list(read_rows(p, start=16))
    assert [r.line for r in tail] == [16, 17, 18, 19, 20]
    assert [r.data["i"] for r in tail] == [15, 16, 17, 18, 19]  # type: ignore[index]
    assert count_rows(p) == 20


def test_parquet_corrupt_file_raises(tmp_path: Path) -> None:
    p = tmp_path / "in.parquet"
    p.write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match="Parquet"):
        list(read_rows(p))


# ---------------------------------------------------------------- Hugging Face dataset dirs


def test_hf_dataset_dir(tmp_path: Path) -> None:
    import datasets

    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "ds"))
    rows = list(read_rows(tmp_path / "ds"))
    assert good(rows) == ROWS
    assert [r.line for r in rows] == [1, 2, 3]
    assert [r.line for r in read_rows(tmp_path / "ds", start=3)] == [3]
    assert count_rows(tmp_path / "ds") == 3


def test_hf_dataset_dict_needs_a_split(tmp_path: Path) -> None:
    import datasets

    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list(ROWS[:2]),
            "test": datasets.Dataset.from_list(ROWS[2:]),
        }
    )
    dd.save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(InputError, match="--split"):
        read_rows(tmp_path / "dd")
    assert good(list(read_rows(tmp_path / "dd", split="test"))) == ROWS[2:]
    with pytest.raises(InputError, match="no split 'dev'"):
        list(read_rows(tmp_path / "dd", split="dev"))


def test_directory_that_is_not_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a saved Hugging Face dataset"):
        list(read_rows(tmp_path))
