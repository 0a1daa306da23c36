"""``safeladder.scoring`` as a library: ``run_score`` raises domain errors (no exit codes),
``score_chunk`` encodes the same bytes ``JsonlWriter`` writes, ``iter_chunks`` cuts the input
like the local engine always has. The CLI's exit codes and files are pinned in tests/cli."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from safeladder.data import FieldMap, JsonlWriter, Row, to_sample
from safeladder.errors import ConfigError, SafeladderError, ScoringError, ScoringJobError
from safeladder.rewards import Reward, parse_reward_config
from safeladder.scoring import ScoreJob, iter_chunks, run_score, score_chunk
from safeladder.types import Sample
from tests.cli.fixtures_rewards import reward_config
from tests.cli.support import write_jsonl


def job(tmp_path: Path, rows: list[Any], target: str = "word_count", **kw: Any) -> ScoreJob:
    inp = write_jsonl(tmp_path / "in.jsonl", rows)
    return ScoreJob(
        input=inp,
        output=tmp_path / "out.jsonl",
        config=reward_config(target),
        progress=False,
        **kw,
    )


def test_job_errors_are_scoring_job_errors_and_touch_nothing(tmp_path: Path) -> None:
    j = job(tmp_path, [{"prompt": "p", "completion": "a b"}], resume=True, overwrite=True)
    with pytest.raises(ScoringJobError, match="--resume and --overwrite exclude each other"):
        run_score(j)
    with pytest.raises(ScoringJobError, match="unknown engine 'spark'"):
        run_score(job(tmp_path, [{"completion": "a"}], engine="spark"))
    with pytest.raises(ScoringJobError, match="no checkpoint"):
        run_score(job(tmp_path, [{"completion": "a"}], resume=True))
    assert not (tmp_path / "out.jsonl").exists()
    # A job error is a scoring error and a ValueError; a run failure is neither a job error
    # nor a ValueError.
    assert issubclass(ScoringJobError, ScoringError) and issubclass(ScoringJobError, ValueError)
    assert issubclass(ScoringError, SafeladderError) and not issubclass(ScoringError, ValueError)


def config_error_on_boom(sample: Sample) -> float:
    """A reward target that fails like a missing model, on completions holding "boom"."""
    if "boom" in sample.completion:
        raise ConfigError("model directory /nowhere does not exist")
    return 1.0


def test_a_failed_run_raises_scoring_error_after_checkpointing(tmp_path: Path) -> None:
    rows = [{"prompt": "p", "completion": w} for w in ("one", "two", "boom", "four")]
    inp = write_jsonl(tmp_path / "in.jsonl", rows)
    cfg = {
        "terms": [
            {
                "name": "score",
                "verifier": {"type": "custom", "target": f"{__name__}:config_error_on_boom"},
            }
        ]
    }
    j = ScoreJob(input=inp, output=tmp_path / "out.jsonl", config=cfg, progress=False, batch_size=2)
    with pytest.raises(ScoringError) as info:
        run_score(j)
    exc = info.value
    assert not isinstance(exc, ScoringJobError)
    assert "the reward failed on input lines 3-4 of" in str(exc)
    assert not exc.show_cause  # safeladder's own error: its message says it all
    prog = json.loads((tmp_path / "out.jsonl.progress.json").read_text())
    assert prog["next_line"] == 3 and prog["rows_read"] == 2  # the first chunk is kept
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 2


class BuggyReward:
    """A reward whose ``score`` has a bug (not a safeladder error)."""

    def score(self, samples: Any) -> Any:
        raise RuntimeError("index out of range")


def test_a_reward_bug_keeps_its_cause_for_the_traceback() -> None:
    rows = [Row(line=7, data={"prompt": "p", "completion": "a"}, raw="r")]
    with pytest.raises(ScoringError) as info:
        score_chunk(BuggyReward(), rows, ScoreJob(input=Path("in"), output=Path("out")))
    assert str(info.value) == (
        "the reward failed on input line 7 of in: RuntimeError: index out of range"
    )
    assert info.value.show_cause and isinstance(info.value.__cause__, RuntimeError)


def test_fail_on_error_names_the_line(tmp_path: Path) -> None:
    rows = [{"prompt": "p", "completion": "a"}, "{not json", {"prompt": "p", "completion": "b"}]
    with pytest.raises(ScoringError, match=r"in\.jsonl: line 2: .*without --fail-on-error"):
        run_score(job(tmp_path, rows, fail_on_error=True))


def test_iter_chunks_cuts_by_batch_size_and_limit() -> None:
    rows = [Row(line=i, data={}, raw="{}") for i in range(1, 8)]
    lines = lambda chunks: [[r.line for r in c] for c in chunks]  # noqa: E731
    assert lines(iter_chunks(rows, 3, None)) == [[1, 2, 3], [4, 5, 6], [7]]
    assert lines(iter_chunks(rows, 3, 5)) == [[1, 2, 3], [4, 5]]
    assert lines(iter_chunks(rows, 10, 1)) == [[1]]
    assert lines(iter_chunks([], 3, None)) == []


def test_score_chunk_encodes_what_jsonl_writer_writes(tmp_path: Path) -> None:
    rows = [
        Row(line=1, data={"prompt": "p", "completion": "a b c", "reward": 9}, raw="r1"),
        Row(line=2, data=None, raw="{bad", error="not JSON"),
        Row(line=3, data={"prompt": "p", "completion": "é"}, raw="r3"),
    ]
    reward = Reward(parse_reward_config(reward_config("word_count")))
    try:
        chunk = score_chunk(reward, rows, ScoreJob(input=Path("in"), output=Path("out")))
        records = reward.score([to_sample(r.data, FieldMap()) for r in rows if r.data]).to_records()
    finally:
        reward.close()
    assert (chunk.rows, chunk.last_line, chunk.first_bad) == (3, 3, (2, "not JSON"))
    assert chunk.clash == ("reward",)  # row 1 already had a "reward" column
    expected_out, expected_err = tmp_path / "o", tmp_path / "e"
    with JsonlWriter(expected_out) as w:
        w.write_many([{**rows[0].data, **records[0]}, {**rows[2].data, **records[1]}])  # type: ignore[dict-item]
    with JsonlWriter(expected_err) as w:
        w.write({"line": 2, "error": "not JSON", "raw": "{bad"})
    assert chunk.out == expected_out.read_bytes()
    assert chunk.err == expected_err.read_bytes()
    assert json.loads(chunk.out.splitlines()[0])["reward"] == 3.0  # the new score replaced 9


def test_write_lines_appends_bytes_and_counts_them(tmp_path: Path) -> None:
    with JsonlWriter(tmp_path / "o.jsonl", "w") as w:
        w.write({"a": 1})
        w.write_lines(b'{"b": 2}\n')
        assert w.tell() == len(b'{"a": 1}\n{"b": 2}\n')
    assert (tmp_path / "o.jsonl").read_bytes() == b'{"a": 1}\n{"b": 2}\n'
