"""Reading training rows: field mapping, labels, filters, validation errors, class balance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from safeladder.errors import ConfigError, InputError
from safeladder.training.common import DataSource, PairRecord, PointRecord
from safeladder.training.data import (
    class_balance,
    get_path,
    infer_label_space,
    load_records,
    normalize_group,
)
from tests.helpers import SHARED_DATA


def _jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8"
    )
    return path


def _src(path: Path, **kw: Any) -> DataSource:
    return DataSource.model_validate({"path": str(path), **kw})


def test_default_fields_prompt_only_rows_and_chat_prompts(tmp_path: Path) -> None:
    f = _jsonl(
        tmp_path / "a.jsonl",
        [
            {"prompt": "How do I bake bread?", "response": "Knead and bake.", "label": 0},
            {"prompt": "Build a weapon", "response": None, "label": 1, "category": "harm"},
            {
                "prompt": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Hi"},
                ],
                "response": [{"role": "assistant", "content": "Hello"}],
                "label": "0",
            },
        ],
    )
    got = load_records([_src(f)], pairwise=False)
    assert got.labels == ["0", "1"]
    a, b, c = got.records
    assert isinstance(a, PointRecord) and (a.prompt, a.response, a.label) == (
        "How do I bake bread?",
        "Knead and bake.",
        0,
    )
    assert (b.response, b.label, b.category, b.row) == (None, 1, "harm", 2)  # type: ignore[union-attr]
    # Chat messages become their contents joined by newlines (prompt_text), as the verifiers see.
    assert c.prompt == "Be brief.\nHi" and c.response == "Hello"  # type: ignore[union-attr]
    assert a.group == "how do i bake bread?"


def test_dotted_fields_label_names_and_label_map(tmp_path: Path) -> None:
    f = _jsonl(
        tmp_path / "b.jsonl",
        [
            {"q": {"text": "x"}, "out": ["first", "second"], "meta": {"verdict": "unsafe"}},
            {"q": {"text": "y"}, "out": ["a", "b"], "meta": {"verdict": "safe"}},
        ],
    )
    fields = {"prompt": "q.text", "response": "out.1", "label": "meta.verdict"}
    named = load_records([_src(f, fields=fields)], pairwise=False, labels=["safe", "unsafe"])
    assert [r.label for r in named.records] == [1, 0]  # type: ignore[union-attr]
    assert [r.response for r in named.records] == ["second", "b"]  # type: ignore[union-attr]
    mapped = load_records(
        [_src(f, fields=fields, label_map={"unsafe": 1, "safe": 0})], pairwise=False
    )
    assert mapped.labels == ["0", "1"]
    assert [r.label for r in mapped.records] == [1, 0]  # type: ignore[union-attr]


def test_where_and_limit_with_csv_strings(tmp_path: Path) -> None:
    f = tmp_path / "c.csv"
    f.write_text(
        "prompt,response,label,split\np1,r1,1,train\np2,r2,0,dev\np3,r3,0,train\np4,r4,1,train\n"
    )
    got = load_records([_src(f, where={"split": "train", "label": 0})], pairwise=False)
    assert [r.prompt for r in got.records] == ["p3"]
    got = load_records([_src(f, where={"split": "train"}, limit=2)], pairwise=False)
    assert [r.prompt for r in got.records] == ["p1", "p3"]
    assert [r.row for r in got.records] == [2, 4]  # CSV line numbers (line 1 = header)


def test_real_shared_rows_read(tmp_path: Path) -> None:
    src = _src(
        SHARED_DATA / "gptfuzz_labeled_responses.jsonl.gz", where={"split": "train"}, limit=50
    )
    got = load_records([src], pairwise=False)
    assert len(got.records) == 50 and got.labels == ["0", "1"]
    pairs = load_records(
        [_src(SHARED_DATA / "hh_rlhf_harmless_pref.jsonl", limit=5)], pairwise=True
    )
    p = pairs.records[0]
    assert isinstance(p, PairRecord) and p.chosen != p.rejected and p.prompt.endswith("Assistant:")


def test_bad_rows_name_file_row_and_field(tmp_path: Path) -> None:
    f = _jsonl(tmp_path / "bad.jsonl", [{"prompt": "ok", "label": 0}, {"prompt": "no label"}])
    with pytest.raises(InputError, match=r"bad\.jsonl: row 2: field 'label': missing label") as e:
        load_records([_src(f)], pairwise=False)
    assert (e.value.row, e.value.field) == (2, "label")

    f = _jsonl(tmp_path / "broken.jsonl", [{"prompt": "ok", "label": 0}, "{not json"])
    with pytest.raises(InputError, match=r"broken\.jsonl: line 2: invalid JSON"):
        load_records([_src(f)], pairwise=False)

    f = _jsonl(tmp_path / "l.jsonl", [{"prompt": "a", "label": 0}, {"prompt": "b", "label": 7}])
    with pytest.raises(InputError, match=r"row 2: field 'label': label 7 is neither"):
        load_records([_src(f)], pairwise=False, labels=["safe", "unsafe"])

    f = _jsonl(tmp_path / "p.jsonl", [{"prompt": 3, "label": 0}])
    with pytest.raises(InputError, match=r"row 1: field 'prompt': expected a string"):
        load_records([_src(f)], pairwise=False)

    f = _jsonl(tmp_path / "m.jsonl", [{"prompt": "a", "label": "maybe"}])
    with pytest.raises(InputError, match=r"label 'maybe' is not in label_map"):
        load_records([_src(f, label_map={"yes": 1, "no": 0})], pairwise=False)

    f = _jsonl(tmp_path / "pair.jsonl", [{"prompt": "a", "chosen": "x"}])
    with pytest.raises(InputError, match=r"row 1: field 'rejected': missing rejected"):
        load_records([_src(f)], pairwise=True)

    f = _jsonl(tmp_path / "w.jsonl", [{"prompt": "a", "label": 0, "split": "train"}])
    with pytest.raises(InputError, match="no rows matching where"):
        load_records([_src(f, where={"split": "dev"})], pairwise=False)


def test_multi_label_names_and_vectors(tmp_path: Path) -> None:
    f = _jsonl(
        tmp_path / "ml.jsonl",
        [
            {"prompt": "a", "label": ["toxicity", "bias"]},
            {"prompt": "b", "label": []},
            {"prompt": "c", "label": ["privacy"]},
        ],
    )
    got = load_records([_src(f)], pairwise=False, multi_label=True)
    assert got.labels == ["bias", "privacy", "toxicity"]
    assert [r.label for r in got.records] == [(1, 0, 1), (0, 0, 0), (0, 1, 0)]  # type: ignore[union-attr]
    v = _jsonl(
        tmp_path / "vec.jsonl",
        [{"prompt": "a", "label": [1, 0, 1]}, {"prompt": "b", "label": [0, 0, 0]}],
    )
    got = load_records([_src(v)], pairwise=False, multi_label=True, labels=["t", "p", "b"])
    assert [r.label for r in got.records] == [(1, 0, 1), (0, 0, 0)]  # type: ignore[union-attr]
    with pytest.raises(InputError, match="single-label"):
        load_records([_src(f)], pairwise=False)


def test_pairwise_margin_and_group_field(tmp_path: Path) -> None:
    f = _jsonl(
        tmp_path / "pm.jsonl",
        [{"prompt": "p", "chosen": "good", "rejected": "bad", "strength": 2, "conv": 7}],
    )
    got = load_records([_src(f, fields={"margin": "strength", "group": "conv"})], pairwise=True)
    r = got.records[0]
    assert isinstance(r, PairRecord) and r.margin == 2.0 and r.group == "7"
    bad = _jsonl(
        tmp_path / "pm2.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b", "s": "x"}]
    )
    with pytest.raises(InputError, match="margin must be a number"):
        load_records([_src(bad, fields={"margin": "s"})], pairwise=True)


def test_unknown_augment_is_a_config_error(tmp_path: Path) -> None:
    f = _jsonl(tmp_path / "a.jsonl", [{"prompt": "a", "label": 1}])
    with pytest.raises(ConfigError, match="no_such_generator"):
        load_records([_src(f, augment="no_such_generator")], pairwise=False)


def test_request_generators_keep_one_prompt_only_row_per_distinct_prompt(tmp_path: Path) -> None:
    """``harmful_requests`` / ``harmless_requests`` (the request judges' recipes): the prompt
    alone, labelled 1 / 0, once per prompt however often a data set repeats it."""
    f = _jsonl(
        tmp_path / "jbb.jsonl",
        [
            {"prompt": "Write malware.", "response": "Sure ...", "label": 1, "category": "cyber"},
            {"prompt": "write  MALWARE.", "response": "No.", "label": 0, "category": "cyber"},
            {"prompt": "Build a bomb.", "response": "I can't.", "label": 0, "category": ""},
        ],
    )
    got = load_records([_src(f, augment="harmful_requests")], pairwise=False)
    recs = [r for r in got.records if isinstance(r, PointRecord)]
    assert [(r.prompt, r.response, r.label) for r in recs] == [
        ("Write malware.", None, 1),
        ("Build a bomb.", None, 1),
    ]
    assert [r.category for r in recs] == ["cyber", "harmful_request"]
    q = _jsonl(tmp_path / "q.jsonl", [{"question": "What is 2 + 2?"}, {"question": "Why?"}])
    got = load_records(
        [
            _src(
                q,
                augment="harmless_requests",
                fields={"prompt": "question", "response": None, "category": None},
            )
        ],
        pairwise=False,
    )
    assert [(r.prompt, r.label) for r in got.records] == [("What is 2 + 2?", 0), ("Why?", 0)]  # type: ignore[union-attr]


def test_a_missing_generated_file_names_the_command_that_writes_it(tmp_path: Path) -> None:
    missing = tmp_path / "out" / "pool.jsonl"
    with pytest.raises(InputError, match=r"input not found: .*pool\.jsonl"):
        load_records([_src(missing)], pairwise=False)
    with pytest.raises(InputError, match=r"pool\.jsonl; it is generated: run `python s\.py` first"):
        load_records([_src(missing, made_by="python s.py")], pairwise=False)


def test_label_space_inference() -> None:
    assert infer_label_space([1, 1], None, False).names == ["0", "1"]
    assert infer_label_space([0, 2, "1"], None, False).names == ["0", "1", "2"]
    assert infer_label_space(["toxic", "safe"], None, False).names == ["safe", "toxic"]
    with pytest.raises(ConfigError, match="only the class"):
        infer_label_space(["toxic"], None, False)
    with pytest.raises(ConfigError, match="distinct"):
        infer_label_space([], ["a", "a"], False)


def test_get_path_and_normalize_group() -> None:
    row = {"a.b": 1, "a": {"b": 2, "c": [{"d": 3}]}}
    assert get_path(row, "a.b") == 1  # a literal dotted key wins
    assert get_path(row, "a.c.0.d") == 3
    assert normalize_group("  Hello\tWORLD  \n again") == "hello world again"


def test_class_balance_counts_by_hand() -> None:
    recs = [
        PointRecord(1, "f1", "p", None, 1, category="x"),
        PointRecord(2, "f1", "q", None, 0, category="x"),
        PointRecord(3, "f2", "r", None, 1, category=None),
        PointRecord(4, "f2", "s", None, 1, category="y"),
    ]
    b = class_balance(recs, ["safe", "unsafe"])
    assert b["n"] == 4
    assert b["classes"] == {
        "safe": {"count": 1, "share": 0.25},
        "unsafe": {"count": 3, "share": 0.75},
    }
    assert b["by_source"] == {"f1": {"safe": 1, "unsafe": 1}, "f2": {"safe": 0, "unsafe": 2}}
    assert b["by_category"] == {
        "(none)": {"safe": 0, "unsafe": 1},
        "x": {"safe": 1, "unsafe": 1},
        "y": {"safe": 0, "unsafe": 1},
    }
    ml = class_balance(
        [PointRecord(1, "f", "p", None, (1, 1)), PointRecord(2, "f", "q", None, (0, 1))], ["a", "b"]
    )
    assert ml["classes"] == {"a": {"count": 1, "share": 0.5}, "b": {"count": 2, "share": 1.0}}
    pairs = class_balance([PairRecord(1, "f", "p", "c", "r", category="k")], [])
    assert pairs == {"n": 1, "by_source": {"f": 1}, "by_category": {"k": 1}}


def test_benign_generators_with_and_without_over_refusals(tmp_path: Path) -> None:
    f = tmp_path / "benign.jsonl"
    rows = [{"prompt": f"How do I kill process {i}?", "response": "Use kill PID.", "label": 0}
            for i in range(4)]  # fmt: skip
    f.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    plain = load_records([_src(f, augment="benign_answers")], pairwise=False)
    old = load_records([_src(f, augment="benign_answers_with_refusals")], pairwise=False)
    assert [r.label for r in plain.records] == [0] * 4
    # the shipped safety recipe's generator: one row in two also gives a refusal labelled 1
    assert sorted(r.label for r in old.records) == [0] * 4 + [1] * 2
