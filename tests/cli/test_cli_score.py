"""``safeladder score`` in process (typer's CliRunner): outputs, summary, errors, exit codes."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import pytest

from safeladder.cli.app import app
from safeladder.config import preset_path
from tests.cli.fixtures_rewards import reward_config
from tests.cli.support import invoke, read_jsonl, runner, term, write_jsonl, write_yaml

# The hand-computed example: 4 good rows, 1 bad row.
#   words     = word count, abstains on an empty completion (weight 1)
#   len_gate  = word count, metric only (weight 0), gate: below 2 → total -1
#
#   row  completion   words   len_gate  total  gated
#   1    "a b"        2       2         2      no
#   2    (bad JSON)   -- goes to the errors file, line 2
#   3    "a b c d"    4       4         4      no
#   4    ""           abst.   0         -1     yes (0 < 2)
#   5    "x"          1       1         -1     yes (1 < 2)
#
#   words:    mean (2+4+1)/3 = 2.3333, std sqrt(((−1/3)²+(5/3)²+(−4/3)²)/3) = 1.2472, abstain 1/4
#   len_gate: mean (2+4+0+1)/4 = 1.75, std sqrt((.0625+5.0625+3.0625+.5625)/4) = 1.4790
#   total:    mean (2+4−1−1)/4 = 1.0,  std sqrt((1+9+4+4)/4) = 2.1213
HAND_CONFIG = {
    "terms": [
        term("words", "word_count_or_abstain"),
        term("len_gate", "word_count", 0.0, gate={"below": 2, "value": -1}),
    ]
}
HAND_ROWS = [
    {"id": 1, "prompt": "p", "completion": "a b"},
    '{"id": 2, "completion": ',
    {"id": 3, "prompt": "p", "completion": "a b c d"},
    {"id": 4, "prompt": "p", "completion": ""},
    {"id": 5, "prompt": "p", "completion": "x", "task": "math"},
]


@pytest.fixture()
def hand(tmp_path: Path) -> tuple[Path, Path, Path]:
    cfg = write_yaml(tmp_path / "reward.yaml", HAND_CONFIG)
    inp = write_jsonl(tmp_path / "in.jsonl", HAND_ROWS)
    return cfg, inp, tmp_path / "out.jsonl"


def test_hand_computed_example_outputs_and_summary(hand: tuple[Path, Path, Path]) -> None:
    cfg, inp, out = hand
    res = invoke("score", cfg, "--input", inp, "--output", out, "--no-progress", "--batch-size", 2)
    assert res.exit_code == 0, res.stderr

    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == [1, 3, 4, 5]
    assert rows[0] == {
        "id": 1,
        "prompt": "p",
        "completion": "a b",
        "reward": 2.0,
        "reward/words": 2.0,
        "reward/len_gate": 2.0,
        "status/words": "ok",
        "status/len_gate": "ok",
        "gated": False,
    }
    assert rows[2]["reward/words"] is None and rows[2]["status/words"] == "abstain"
    assert rows[2]["reward"] == -1.0 and rows[2]["gated"] is True
    assert rows[2]["gated_by"] == "len_gate"
    assert rows[3]["task"] == "math"  # every input field is carried through

    errors = read_jsonl(out.with_name("out.jsonl.errors.jsonl"))
    assert len(errors) == 1
    assert errors[0]["line"] == 2
    assert errors[0]["raw"] == '{"id": 2, "completion": '
    assert errors[0]["error"].startswith("invalid JSON")

    s = json.loads(out.with_name("out.jsonl.summary.json").read_text())
    assert (s["rows_scored"], s["bad_rows"], s["gated_rows"], s["unscorable_rows"]) == (4, 1, 2, 0)
    words, gate = s["terms"]["words"], s["terms"]["len_gate"]
    assert words["mean"] == pytest.approx(7 / 3)
    assert words["std"] == pytest.approx(1.247219, abs=1e-6)
    assert words["count"] == 3
    assert (words["abstain_rate"], words["timeout_rate"], words["error_rate"]) == (0.25, 0.0, 0.0)
    assert gate["mean"] == pytest.approx(1.75)
    assert gate["std"] == pytest.approx(math.sqrt(8.75 / 4))
    assert (gate["weight"], words["weight"]) == (0.0, 1.0)
    assert s["total"]["mean"] == pytest.approx(1.0)
    assert s["total"]["std"] == pytest.approx(math.sqrt(4.5))
    assert s["throughput_rows_per_s"] > 0 and s["wall_time_s"] > 0

    # the table on stdout carries the same numbers
    assert "words" in res.stdout and "2.3333" in res.stdout and "1.2472" in res.stdout
    assert "25.0%" in res.stdout
    assert (
        "rows scored: 4" in res.stdout
        and "bad rows: 1" in res.stdout
        and "gated rows: 2" in res.stdout
    )
    assert "rows/s" in res.stdout and "wall time" in res.stdout
    # the checkpoint says the run is complete
    prog = json.loads(out.with_name("out.jsonl.progress.json").read_text())
    assert prog["status"] == "complete" and prog["next_line"] == 6


def test_bad_rows_are_reported_with_the_field(tmp_path: Path) -> None:
    cfg = write_yaml(tmp_path / "r.yaml", reward_config("word_count"))
    inp = write_jsonl(
        tmp_path / "in.jsonl",
        [
            {"prompt": "no completion"},
            {"prompt": "q", "completion": 5},
            {"prompt": 3, "completion": "x"},
            {"prompt": "q", "completion": "fine"},
        ],
    )
    out = tmp_path / "o.jsonl"
    res = invoke("score", cfg, "-i", inp, "-o", out, "--no-progress")
    assert res.exit_code == 0, res.stderr
    errors = read_jsonl(tmp_path / "o.jsonl.errors.jsonl")
    assert [e["line"] for e in errors] == [1, 2, 3]
    assert errors[0]["error"] == "missing field 'completion' (looked for: completion, response)"
    assert "field 'completion'" in errors[1]["error"]
    assert "field 'prompt'" in errors[2]["error"]
    assert json.loads(errors[0]["raw"]) == {"prompt": "no completion"}
    assert [r["completion"] for r in read_jsonl(out)] == ["fine"]


def test_fail_on_error_stops_at_the_first_bad_row(tmp_path: Path) -> None:
    cfg = write_yaml(tmp_path / "r.yaml", reward_config("word_count"))
    inp = write_jsonl(
        tmp_path / "in.jsonl",
        [
            {"prompt": "q", "completion": "a"},
            {"prompt": "q", "completion": "b"},
            {"prompt": "q", "response": None},
        ],
    )
    res = invoke(
        "score", cfg, "-i", inp, "-o", tmp_path / "o.jsonl", "--no-progress", "--fail-on-error"
    )
    assert res.exit_code == 1
    assert "line 3" in res.stderr and "field 'response'" in res.stderr
    assert "Traceback" not in res.stderr


def test_field_mapping_flags(tmp_path: Path) -> None:
    cfg = write_yaml(tmp_path / "r.yaml", reward_config("matches_reference"))
    inp = write_jsonl(
        tmp_path / "in.jsonl",
        [
            {"question": "2+2?", "output": "4", "gold": "4", "answer": "5"},
            {"question": "3+3?", "output": "7", "gold": "6"},
            {"question": "1+1?", "output": "2"},  # no gold: bad, since the flag names it
        ],
    )
    out = tmp_path / "o.jsonl"
    res = invoke(
        "score", cfg, "-i", inp, "-o", out, "--no-progress",
        "--prompt-field", "question", "--completion-field", "output", "--reference-field", "gold",
    )  # fmt: skip
    assert res.exit_code == 0, res.stderr
    assert [r["reward"] for r in read_jsonl(out)] == [1.0, 0.0]
    assert read_jsonl(out)[0]["answer"] == "5"  # unused fields still come through
    [err] = read_jsonl(tmp_path / "o.jsonl.errors.jsonl")
    assert err["line"] == 3 and "missing field 'reference' (looked for: gold)" in err["error"]


def test_meta_routes_rows_to_terms(tmp_path: Path) -> None:
    config = {
        "terms": [term("is_math", "is_math_task"), term("words", "word_count")],
        "routes": {"key": "task", "recipes": {"math": ["is_math"], "chat": ["words"]}},
    }
    cfg = write_yaml(tmp_path / "r.yaml", config)
    inp = write_jsonl(
        tmp_path / "in.jsonl",
        [
            {"prompt": "q", "completion": "a b c", "task": "math"},
            {"prompt": "q", "completion": "a b c", "task": "chat"},
        ],
    )
    out = tmp_path / "o.jsonl"
    res = invoke("score", cfg, "-i", inp, "-o", out, "--no-progress")
    assert res.exit_code == 0, res.stderr
    a, b = read_jsonl(out)
    assert (a["reward"], a["status/words"], a["route"]) == (1.0, "skipped", "math")
    assert (b["reward"], b["status/is_math"], b["route"]) == (3.0, "skipped", "chat")
    s = json.loads((tmp_path / "o.jsonl.summary.json").read_text())
    assert s["terms"]["words"]["routed_rows"] == 1 and s["terms"]["words"]["skipped_rows"] == 1


def test_a_row_the_reward_rejects_is_a_bad_row(tmp_path: Path) -> None:
    # routes without a default: a row whose task names no recipe is a data error of that row
    config = {
        "terms": [term("words", "word_count")],
        "routes": {"key": "task", "recipes": {"chat": ["words"]}},
    }
    cfg = write_yaml(tmp_path / "r.yaml", config)
    rows = [
        {"prompt": "q", "completion": "a", "task": "chat"},
        {"prompt": "q", "completion": "a b", "task": "poetry"},
        '{"completion": ',
        {"prompt": "q", "completion": "a b c", "task": "chat"},
    ]
    inp = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "o.jsonl"
    res = invoke("score", cfg, "-i", inp, "-o", out, "--no-progress")
    assert res.exit_code == 0, res.stderr
    assert [r["reward"] for r in read_jsonl(out)] == [1.0, 3.0]
    errors = read_jsonl(tmp_path / "o.jsonl.errors.jsonl")
    assert [e["line"] for e in errors] == [2, 3]  # in input order, whatever found them
    assert errors[0]["error"].startswith("meta['task'] = 'poetry' names no recipe")
    res = invoke(
        "score", cfg, "-i", inp, "-o", out, "--no-progress", "--overwrite", "--fail-on-error"
    )
    assert res.exit_code == 1 and "line 2: meta['task'] = 'poetry'" in res.stderr


def test_set_override_and_limit(tmp_path: Path) -> None:
    cfg = write_yaml(tmp_path / "r.yaml", reward_config("word_count"))
    inp = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "q", "completion": "a b"}] * 5)
    out = tmp_path / "o.jsonl"
    res = invoke(
        "score",
        cfg,
        "-i",
        inp,
        "-o",
        out,
        "--no-progress",
        "--set",
        "terms.0.weight=0.5",
        "--limit",
        3,
    )
    assert res.exit_code == 0, res.stderr
    assert [r["reward"] for r in read_jsonl(out)] == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("fmt", ["json", "csv", "parquet", "hf", "jsonl.gz"])
def test_every_input_format_gives_the_same_output(tmp_path: Path, fmt: str) -> None:
    rows = [
        {"prompt": "p1", "completion": "one two", "task": "a"},
        {"prompt": "p2", "completion": "three", "task": "b"},
    ]
    cfg = write_yaml(tmp_path / "r.yaml", reward_config("word_count"))
    ref = tmp_path / "ref.jsonl"
    assert (
        invoke(
            "score", cfg, "-i", write_jsonl(tmp_path / "in.jsonl", rows), "-o", ref, "--no-progress"
        ).exit_code
        == 0
    )
    if fmt == "json":
        inp = tmp_path / "in.json"
        inp.write_text(json.dumps(rows))
    elif fmt == "csv":
        inp = tmp_path / "in.csv"
        with open(inp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        inp = tmp_path / "in.parquet"
        pq.write_table(pa.Table.from_pylist(rows), inp)
    elif fmt == "hf":
        import datasets

        inp = tmp_path / "ds"
        datasets.Dataset.from_list(rows).save_to_disk(str(inp))
    else:
        import gzip

        inp = tmp_path / "in.jsonl.gz"
        with gzip.open(inp, "wt") as fh:
            fh.write("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "o.jsonl"
    res = invoke("score", cfg, "-i", inp, "-o", out, "--no-progress")
    assert res.exit_code == 0, res.stderr
    assert read_jsonl(out) == read_jsonl(ref)


def test_format_flag_overrides_the_extension(tmp_path: Path) -> None:
    cfg = write_yaml(tmp_path / "r.yaml", reward_config("word_count"))
    inp = write_jsonl(tmp_path / "rows.txt", [{"prompt": "q", "completion": "a"}])
    assert (
        invoke("score", cfg, "-i", inp, "-o", tmp_path / "o.jsonl", "--no-progress").exit_code == 2
    )
    res = invoke(
        "score", cfg, "-i", inp, "-o", tmp_path / "o.jsonl", "--no-progress", "--format", "jsonl"
    )
    assert res.exit_code == 0, res.stderr


def test_csv_json_column_flag(tmp_path: Path) -> None:
    cfg = write_yaml(tmp_path / "r.yaml", reward_config("word_count"))
    inp = tmp_path / "in.csv"
    with open(inp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["prompt", "completion"])
        w.writerow([json.dumps([{"role": "user", "content": "hi"}]), "a b"])
    out = tmp_path / "o.jsonl"
    res = invoke("score", cfg, "-i", inp, "-o", out, "--no-progress", "--json-column", "prompt")
    assert res.exit_code == 0, res.stderr
    assert read_jsonl(out)[0]["prompt"] == [{"role": "user", "content": "hi"}]


def test_refuses_to_overwrite_without_the_flag(tmp_path: Path) -> None:
    cfg = write_yaml(tmp_path / "r.yaml", reward_config("word_count"))
    inp = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "q", "completion": "a"}])
    out = tmp_path / "o.jsonl"
    out.write_text("precious\n")
    res = invoke("score", cfg, "-i", inp, "-o", out, "--no-progress")
    assert res.exit_code == 2
    assert "--overwrite" in res.stderr and out.read_text() == "precious\n"
    res = invoke("score", cfg, "-i", inp, "-o", out, "--no-progress", "--overwrite")
    assert res.exit_code == 0, res.stderr
    assert read_jsonl(out)[0]["reward"] == 1.0


def test_config_error_exits_2_naming_the_key(tmp_path: Path) -> None:
    bad = reward_config("word_count")
    bad["terms"][0]["wieght"] = 1.0
    cfg = write_yaml(tmp_path / "r.yaml", bad)
    inp = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "q", "completion": "a"}])
    res = invoke("score", cfg, "-i", inp, "-o", tmp_path / "o.jsonl", "--no-progress")
    assert res.exit_code == 2
    assert "terms.0.wieght" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "o.jsonl").exists()


def test_a_row_a_verifier_raises_on_goes_to_the_errors_file_and_the_run_goes_on(
    tmp_path: Path,
) -> None:
    cfg = write_yaml(tmp_path / "r.yaml", reward_config("explode_on"))
    rows = [{"prompt": "q", "completion": "ok"}] * 3 + [{"prompt": "q", "completion": "boom"}]
    inp = write_jsonl(tmp_path / "in.jsonl", [*rows, {"prompt": "q", "completion": "ok"}])
    res = invoke(
        "score", cfg, "-i", inp, "-o", tmp_path / "o.jsonl", "--no-progress", "--batch-size", 2
    )
    assert res.exit_code == 0, res.stderr
    assert len(read_jsonl(tmp_path / "o.jsonl")) == 4
    errors = read_jsonl(tmp_path / "o.jsonl.errors.jsonl")
    assert [e["line"] for e in errors] == [4]
    assert errors[0]["error"] == "term 'score': ValueError: cannot handle 'boom'"
    assert json.loads(errors[0]["raw"])["completion"] == "boom"
    assert "bad rows: 1" in res.stdout and "o.jsonl.errors.jsonl" in res.stdout


def test_a_broken_verifier_is_fatal_and_names_the_lines(tmp_path: Path) -> None:
    cfg = write_yaml(tmp_path / "r.yaml", reward_config("broken_model"))
    inp = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "q", "completion": "ok"}] * 3)
    res = invoke(
        "score", cfg, "-i", inp, "-o", tmp_path / "o.jsonl", "--no-progress", "--batch-size", 2
    )
    assert res.exit_code == 1
    assert "lines 1-2" in res.stderr and "/nowhere does not exist" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize(
    ("rows", "why"),
    [([], "the input has no rows"), ([{"completion": "no prompt"}] * 2, "every row was bad")],
)
def test_nothing_scored_exits_1_with_the_first_errors(
    tmp_path: Path, rows: list[Any], why: str
) -> None:
    cfg = write_yaml(tmp_path / "r.yaml", reward_config("word_count"))
    inp = write_jsonl(tmp_path / "in.jsonl", rows)
    res = invoke("score", cfg, "-i", inp, "-o", tmp_path / "o.jsonl", "--no-progress")
    assert res.exit_code == 1
    assert f"error: no row was scored: {why}" in res.stderr
    if rows:
        assert "line 1: missing field 'prompt' (looked for: prompt)" in res.stderr
    assert f"output: {tmp_path / 'o.jsonl'}" in res.stdout


def test_missing_prompts_are_bad_rows_unless_allowed(tmp_path: Path) -> None:
    cfg = write_yaml(tmp_path / "r.yaml", reward_config("word_count"))
    inp = write_jsonl(
        tmp_path / "in.jsonl",
        [
            {"prompt": "q", "completion": "a b"},
            {"completion": "a"},
            {"prompt": None, "completion": "a"},
        ],
    )
    res = invoke("score", cfg, "-i", inp, "-o", tmp_path / "o.jsonl", "--no-progress")
    assert res.exit_code == 0
    assert [e["line"] for e in read_jsonl(tmp_path / "o.jsonl.errors.jsonl")] == [2, 3]
    res = invoke(
        "score",
        cfg,
        "-i",
        inp,
        "-o",
        tmp_path / "o.jsonl",
        "--no-progress",
        "--overwrite",
        "--allow-missing-prompt",
    )
    assert res.exit_code == 0
    assert [r["reward"] for r in read_jsonl(tmp_path / "o.jsonl")] == [2.0, 1.0, 1.0]


def test_corrupt_parquet_exits_1_without_traceback(tmp_path: Path) -> None:
    cfg = write_yaml(tmp_path / "r.yaml", reward_config("word_count"))
    inp = tmp_path / "in.parquet"
    inp.write_bytes(b"PAR1 but not really")
    res = invoke("score", cfg, "-i", inp, "-o", tmp_path / "o.jsonl", "--no-progress")
    assert res.exit_code == 1
    assert "cannot read as Parquet" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--input", "missing.jsonl"], "input not found"),
        (["--batch-size", "0"], "batch-size"),
        (["--resume", "--overwrite"], "exclude each other"),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    cfg = write_yaml(tmp_path / "r.yaml", reward_config("word_count"))
    inp = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "q", "completion": "a"}])
    base = ["score", str(cfg), "-o", str(tmp_path / "o.jsonl"), "--no-progress"]
    if "--input" not in args:
        base += ["-i", str(inp)]
    res = runner.invoke(
        app, base + [a if a != "missing.jsonl" else str(tmp_path / a) for a in args]
    )
    assert res.exit_code == 2
    assert message in res.stderr


def test_resume_refusals_and_complete_run(tmp_path: Path) -> None:
    cfg = write_yaml(tmp_path / "r.yaml", reward_config("word_count"))
    inp = write_jsonl(
        tmp_path / "in.jsonl",
        [{"prompt": "q", "completion": "a b"}, {"prompt": "q", "completion": "c"}],
    )
    out = tmp_path / "o.jsonl"
    res = invoke("score", cfg, "-i", inp, "-o", out, "--no-progress", "--resume")
    assert res.exit_code == 2 and "no checkpoint" in res.stderr

    assert invoke("score", cfg, "-i", inp, "-o", out, "--no-progress").exit_code == 0
    before = out.read_bytes()
    # resuming a finished run rewrites nothing and prints the same summary
    res = invoke("score", cfg, "-i", inp, "-o", out, "--no-progress", "--resume")
    assert res.exit_code == 0, res.stderr
    assert out.read_bytes() == before and "rows scored: 2" in res.stdout

    res = invoke(
        "score", cfg, "-i", inp, "-o", out, "--no-progress", "--resume", "--set", "terms.0.weight=2"
    )
    assert res.exit_code == 2 and "reward config" in res.stderr
    res = invoke(
        "score", cfg, "-i", inp, "-o", out, "--no-progress", "--resume", "--completion-field", "x"
    )
    assert res.exit_code == 2 and "field" in res.stderr
    with open(inp, "a") as fh:
        fh.write(json.dumps({"prompt": "q", "completion": "new"}) + "\n")
    res = invoke("score", cfg, "-i", inp, "-o", out, "--no-progress", "--resume")
    assert res.exit_code == 2 and "input file" in res.stderr


def test_existing_reward_columns_are_replaced_with_a_warning(tmp_path: Path) -> None:
    cfg = write_yaml(tmp_path / "r.yaml", reward_config("word_count"))
    inp = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "q", "completion": "a b", "reward": 9.0}])
    out = tmp_path / "o.jsonl"
    res = invoke("score", cfg, "-i", inp, "-o", out, "--no-progress")
    assert res.exit_code == 0
    assert read_jsonl(out)[0]["reward"] == 2.0
    assert "already have column(s) reward" in res.stderr


def test_without_config_the_default_reward_is_used(tmp_path: Path) -> None:
    if preset_path("rewards", "default") is None:
        pytest.skip("the shipped default reward (presets/rewards/default.yaml) is not there yet")
    inp = write_jsonl(
        tmp_path / "in.jsonl", [{"prompt": "2+2?", "completion": "4", "reference": "4"}]
    )
    out = tmp_path / "o.jsonl"
    res = invoke("score", "-i", inp, "-o", out, "--no-progress")
    assert res.exit_code == 0, res.stderr
    assert "reward" in read_jsonl(out)[0]


@pytest.mark.slow
def test_a_lone_surrogate_row_with_the_default_reward_is_isolated_and_resume_works(
    tmp_path: Path,
) -> None:
    """A JSON lone surrogate made the tokenizer raise: score stopped at its chunk, forever."""
    inp = tmp_path / "in.jsonl"
    lines = [
        json.dumps({"prompt": "How do I bake bread?", "completion": f"Knead the dough {i}."})
        for i in range(6)
    ]
    lines[3] = '{"prompt": "hi", "completion": "bad \\ud800 text"}'
    inp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "o.jsonl"
    res = invoke("score", "-i", inp, "-o", out, "--no-progress", "--batch-size", 4)
    assert res.exit_code == 0, res.stderr
    assert len(read_jsonl(out)) == 5
    errors = read_jsonl(tmp_path / "o.jsonl.errors.jsonl")
    assert [e["line"] for e in errors] == [4]
    assert "term 'safe'" in errors[0]["error"] and "surrogate" in errors[0]["error"]
    res = invoke("score", "-i", inp, "-o", out, "--no-progress", "--resume")
    assert res.exit_code == 0, res.stderr
    assert len(read_jsonl(out)) == 5


def test_the_readme_math_grpo_example_scores_the_shipped_demo(tmp_path: Path) -> None:
    """It rejected every demo row (no prompt_id) and exited 0 with a table of dashes."""
    out = tmp_path / "o.jsonl"
    cfg = Path(__file__).resolve().parents[2] / "configs" / "reward" / "math_grpo.yaml"
    res = invoke("score", cfg, "-o", out, "--no-progress")
    assert res.exit_code == 0, res.stderr
    rows = read_jsonl(out)
    assert len(rows) == 29 and not (tmp_path / "o.jsonl.errors.jsonl").read_text()
    math_rows = [r for r in rows if r.get("task") == "math"]
    assert math_rows and all(r["status/correct"] == "ok" for r in math_rows)
    res = invoke(
        "score", cfg, "-o", out, "--no-progress", "--overwrite", "--set", "terms.1.normalize=none"
    )
    assert res.exit_code == 0, res.stderr
