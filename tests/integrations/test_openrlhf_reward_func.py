"""OpenRLHF python-file reward: ``reward_func(queries, prompts, labels)``.

Contract (OpenRLHF/OpenRLHF): ``openrlhf/utils/agent.py::SingleTurnAgentExecutor`` loads the
file with ``importlib.util.spec_from_file_location("reward_func", path)`` and calls
``self.reward_func(queries[i:j], prompts[i:j], labels[i:j])`` positionally through
``asyncio.to_thread`` with one sample per call; the query is ``hf_tokenizer.decode(
observation_tokens, skip_special_tokens=False)``. It reads ``rewards``, ``scores`` (falling
back to ``rewards``) and ``extra_logs`` (``examples/python/reward_func.py``), and
``samples_generator.py`` keeps ``value.flatten()[0]`` of each extra log.
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
import os
from pathlib import Path
from typing import Any

import pytest

import safeladder.integrations._common as common
from safeladder.errors import ConfigError, InputError
from safeladder.integrations import openrlhf
from safeladder.integrations.openrlhf import reward_func, split_query

torch = pytest.importorskip("torch")

CHATML_PROMPT = "<|im_start|>user\nWhat is 6 times 12?<|im_end|>\n<|im_start|>assistant\n"

REWARD_YAML = """\
name: orl
terms:
  - {name: correct, verifier: {type: math_answer}, weight: 1.0}
  - {name: rep, verifier: {type: repetition, ngram_size: 2}, weight: 0.5}
"""


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    p = tmp_path / "reward.yaml"
    p.write_text(REWARD_YAML)
    monkeypatch.setenv(common.ENV_REWARD_CONFIG, str(p))
    for var in (common.ENV_NAN_SCORE, openrlhf.ENV_STRIP_SUFFIXES, openrlhf.ENV_META):
        monkeypatch.delenv(var, raising=False)
    yield
    common.clear_shared_rewards()


def test_split_query_removes_the_prompt_prefix() -> None:
    assert split_query(CHATML_PROMPT + "72<|im_end|>", CHATML_PROMPT) == "72<|im_end|>"
    assert (
        split_query(CHATML_PROMPT + "72<|im_end|>", CHATML_PROMPT, strip_suffixes=["<|im_end|>"])
        == "72"
    )
    # repeated markers go, text that merely contains a marker's characters stays
    assert (
        split_query("P: 5</s><|endoftext|>", "P: ", strip_suffixes=["</s>", "<|endoftext|>"]) == "5"
    )
    assert split_query("P: 5s>", "P: ", strip_suffixes=["</s>"]) == "5s>"
    assert split_query("P: ", "P: ") == ""


def test_split_query_never_guesses() -> None:
    with pytest.raises(
        InputError, match="row 3: the query does not start with its prompt.*differ at character 6"
    ) as e:
        split_query("Hello world, answer", "Hello there", row=3)
    assert e.value.row == 3 and e.value.field == "query"
    with pytest.raises(InputError, match="ends after 5 characters"):
        split_query("Hello", "Hello world")
    with pytest.raises(InputError, match="must be strings"):
        split_query(b"x", "x")  # type: ignore[arg-type]


def test_reward_func_shapes_and_values() -> None:
    queries = [
        CHATML_PROMPT + "6*12 = 72. The answer is 72<|im_end|>",
        CHATML_PROMPT + "71 71 71<|im_end|>",
    ]
    out = reward_func(queries, [CHATML_PROMPT] * 2, ["72", "72"])
    assert set(out) == {"rewards", "scores", "extra_logs"}
    for t in (out["rewards"], out["scores"], *out["extra_logs"].values()):
        assert isinstance(t, torch.Tensor) and t.shape == (2,) and t.dtype == torch.float32
    # row 0: correct 1, rep 0 → 1; row 1: correct 0 (last number 71),
    # rep: bigrams "71 71", "71 71" → 1 distinct of 2 → -0.5; total 0.5 * -0.5
    assert out["rewards"].tolist() == pytest.approx([1.0, -0.25])
    assert torch.equal(out["scores"], out["rewards"])  # same units; see the module docstring
    assert out["extra_logs"]["correct"].tolist() == [1.0, 0.0]
    assert out["extra_logs"]["rep"].tolist() == pytest.approx([0.0, -0.5])


def test_end_markers_are_stripped_before_scoring(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = Path(os.environ[common.ENV_REWARD_CONFIG]).parent / "em.yaml"
    cfg.write_text("terms:\n  - {name: em, verifier: {type: qa_match}}\n")
    monkeypatch.setenv(common.ENV_REWARD_CONFIG, str(cfg))
    q = "Q: capital of France?\nA: "
    assert reward_func([q + "Paris<|im_end|>"], [q], ["Paris"])["rewards"].tolist() == [1.0]
    monkeypatch.setenv(
        openrlhf.ENV_STRIP_SUFFIXES, ""
    )  # strip nothing: the marker is part of the answer
    assert reward_func([q + "Paris<|im_end|>"], [q], ["Paris"])["rewards"].tolist() == [0.0]
    monkeypatch.setenv(openrlhf.ENV_STRIP_SUFFIXES, "<END>, <|im_end|>")
    assert reward_func([q + "Paris<END>"], [q], ["Paris"])["rewards"].tolist() == [1.0]


def test_query_not_starting_with_its_prompt_names_the_row() -> None:
    with pytest.raises(InputError, match="row 1: the query does not start with its prompt"):
        reward_func(["P1 a", "truncated P2 b"], ["P1 ", "P2 "], ["a", "b"])


def test_misaligned_lists() -> None:
    with pytest.raises(InputError, match="2 queries, 1 prompts and 2 labels"):
        reward_func(["a", "b"], ["a"], ["x", "y"])


def test_unscorable_rows_raise_unless_nan_score_is_set(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = Path(os.environ[common.ENV_REWARD_CONFIG]).parent / "m.yaml"
    cfg.write_text("terms:\n  - {name: correct, verifier: {type: math_answer}}\n")
    monkeypatch.setenv(common.ENV_REWARD_CONFIG, str(cfg))
    with (
        caplog.at_level("ERROR", logger="safeladder.integrations"),
        pytest.raises(
            InputError,
            match=r"row 0: no objective term could score it \[correct: abstain.*SAFELADDER_NAN_SCORE",
        ),
    ):
        reward_func(["Q 5"], ["Q "], [None])
    assert any(
        "SAFELADDER_NAN_SCORE" in r.getMessage() for r in caplog.records
    )  # loud even if swallowed
    monkeypatch.setenv(common.ENV_NAN_SCORE, "-1")
    out = reward_func(["Q 5", "Q 5"], ["Q "] * 2, [None, "5"])
    assert out["rewards"].tolist() == [-1.0, 1.0]
    assert out["extra_logs"]["unscorable"].tolist() == [1.0, 0.0]
    assert math.isnan(out["extra_logs"]["correct"][0].item())
    monkeypatch.setenv(common.ENV_NAN_SCORE, "zero")
    with pytest.raises(ConfigError, match="SAFELADDER_NAN_SCORE: expected a number"):
        reward_func(["Q 5"], ["Q "], [None])


def test_meta_from_environment_routes_the_default_reward(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(common.ENV_REWARD_CONFIG)
    q = "Q: 6 x 12?\nA: "
    general = reward_func([q + "#### 72"], [q], ["72"])["extra_logs"]
    assert math.isnan(general["math_correct"].item())  # no meta: the `general` recipe
    monkeypatch.setenv(openrlhf.ENV_META, '{"task": "math"}')
    assert reward_func([q + "#### 72"], [q], ["72"])["extra_logs"]["math_correct"].tolist() == [1.0]
    monkeypatch.setenv(openrlhf.ENV_META, "[1]")
    with pytest.raises(ConfigError, match="JSON object"):
        reward_func([q + "#### 72"], [q], ["72"])


def test_loaded_from_a_file_and_called_like_openrlhf(tmp_path: Path) -> None:
    """The user's two-line file, loaded and called the way SingleTurnAgentExecutor does."""
    path = tmp_path / "my_reward.py"
    path.write_text("from safeladder.integrations.openrlhf import reward_func  # noqa: F401\n")
    spec = importlib.util.spec_from_file_location("reward_func", str(path))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fn = module.reward_func

    async def fetch(
        queries: list[str], prompts: list[str], labels: list[str]
    ) -> list[dict[str, Any]]:
        tasks = [
            asyncio.to_thread(fn, queries[i : i + 1], prompts[i : i + 1], labels[i : i + 1])
            for i in range(len(queries))
        ]
        return await asyncio.gather(*tasks)

    results = asyncio.run(
        fetch(
            [CHATML_PROMPT + f"#### {n}<|im_end|>" for n in (72, 71, 72)],
            [CHATML_PROMPT] * 3,
            ["72"] * 3,
        )
    )
    info = results[1]
    # what OpenRLHF does with it (agent.py / samples_generator.py)
    scores = info.get("scores") or info.get("rewards")
    assert scores.tolist() == [0.0]
    assert {k: v.flatten()[0].item() for k, v in info["extra_logs"].items()} == {
        "correct": 0.0,
        "rep": 0.0,
        "reference_unread": 0.0,
    }
    assert [r["rewards"].item() for r in results] == [1.0, 0.0, 1.0]
    # the same file loaded directly (the adapter module itself as the reward file)
    spec = importlib.util.spec_from_file_location("reward_func", openrlhf.__file__)
    assert spec is not None and spec.loader is not None
    direct = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(direct)
    assert direct.reward_func([CHATML_PROMPT + "#### 72"], [CHATML_PROMPT], ["72"])[
        "rewards"
    ].tolist() == [1.0]


def test_term_names_may_not_shadow_openrlhf_keys(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("terms:\n  - {name: reward, verifier: {type: qa_match}}\n")
    monkeypatch.setenv(common.ENV_REWARD_CONFIG, str(cfg))
    with pytest.raises(ConfigError, match="clash with OpenRLHF"):
        reward_func(["Q a"], ["Q "], ["a"])
