"""A handed-over reference is used: each trainer's exact call, the *default* reward, no options.

Right answers must outscore wrong ones (issue 10, item 1). Before the routing rule, verl's
``compute_score(data_source="openai/gsm8k", ...)`` gave both the same score (0 of 40) and
OpenRLHF's labels were ignored (0 of 32 rows differed).
"""

from __future__ import annotations

import math
import re
import warnings

import pytest

from safeladder.errors import InputError, SafeladderWarning
from safeladder.integrations.openrlhf import reward_func
from safeladder.integrations.trl import as_trl
from safeladder.integrations.verl import compute_score, compute_score_batch
from safeladder.rewards import load_reward
from tests.helpers import read_shared

pytestmark = pytest.mark.usefixtures("default_reward_env")


def gsm8k_pairs(n: int) -> list[tuple[str, str, str]]:
    """(right solution, wrong solution, answer): the wrong one ends in answer + 1."""
    out = []
    for row in read_shared("gsm8k_train.jsonl.gz", n):
        answer = row["answer"]
        wrong = row["solution"].rsplit("####", 1)[0] + f"#### {int(answer.replace(',', '')) + 1}"
        out.append((row["solution"], wrong, answer))
    return out


def math_pairs(n: int) -> list[tuple[str, str, str]]:
    out = []
    for row in read_shared("math_train.jsonl.gz", 200):
        if "\\boxed{" not in row["solution"] or row["answer"] == "4242":
            continue
        wrong = re.sub(r"\\boxed\{.*\}", r"\\boxed{4242}", row["solution"], flags=re.S)
        out.append((row["solution"], wrong, row["answer"]))
        if len(out) == n:
            break
    return out


def test_verl_naive_call_gsm8k_right_beats_wrong_for_every_row() -> None:
    pairs = gsm8k_pairs(40)
    right = [
        compute_score(data_source="openai/gsm8k", solution_str=r, ground_truth=a)
        for r, _, a in pairs
    ]
    wrong = [
        compute_score(data_source="openai/gsm8k", solution_str=w, ground_truth=a)
        for _, w, a in pairs
    ]
    assert sum(r["score"] > w["score"] for r, w in zip(right, wrong, strict=True)) == 40
    assert all(r["math_correct"] == 1.0 and r["reference_unread"] == 0.0 for r in right)


@pytest.mark.slow
def test_verl_batch_call_math_variants_right_beats_wrong() -> None:
    pairs = math_pairs(12)
    sources = ["lighteval/MATH", "DigitalLearningGmbH/MATH-lighteval", "HuggingFaceH4/MATH-500"]
    ds = [sources[i % 3] for i in range(len(pairs))]
    right = compute_score_batch(ds, [r for r, _, _ in pairs], [a for *_, a in pairs])
    wrong = compute_score_batch(ds, [w for _, w, _ in pairs], [a for *_, a in pairs])
    assert [r["score"] > w["score"] for r, w in zip(right, wrong, strict=True)] == [True] * 12


def test_verl_unknown_source_with_a_ground_truth_is_still_checked() -> None:
    right = compute_score(
        data_source="my/dataset", solution_str="So the answer is 12.", ground_truth="12"
    )
    wrong = compute_score(
        data_source="my/dataset", solution_str="So the answer is 13.", ground_truth="12"
    )
    assert right["answer_correct"] == 1.0 and wrong["answer_correct"] == 0.0
    assert right["score"] > wrong["score"]
    text = compute_score(
        data_source="searchR1_nq", solution_str="<answer>Paris</answer>", ground_truth=["Paris"]
    )
    assert text["qa_exact"] == 1.0


def test_verl_code_sources_are_refused_with_a_reason() -> None:
    with pytest.raises(InputError, match="data_source 'apps': a code task"):
        compute_score(data_source="apps", solution_str="print(1)", ground_truth='{"inputs": []}')


def test_verl_math_row_without_a_readable_reference_is_never_a_plausible_number() -> None:
    for gt in (None, "", float("nan")):
        with pytest.raises(InputError, match="required term 'math_correct': abstain"):
            compute_score(data_source="openai/gsm8k", solution_str="#### 72", ground_truth=gt)
    out = compute_score(
        data_source="openai/gsm8k", solution_str="#### 72", ground_truth=None, nan_score=-1.0
    )
    assert out["score"] == -1.0 and out["unscorable"] == 1.0


CHAT = "<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"


def test_openrlhf_reward_func_uses_the_labels() -> None:
    pairs = gsm8k_pairs(32)
    prompts = [CHAT.format(q=f"question {i}") for i in range(32)]
    right = reward_func(
        [p + r + "<|im_end|>" for p, (r, _, _) in zip(prompts, pairs, strict=True)],
        prompts,
        [a for *_, a in pairs],
    )
    wrong = reward_func(
        [p + w + "<|im_end|>" for p, (_, w, _) in zip(prompts, pairs, strict=True)],
        prompts,
        [a for *_, a in pairs],
    )
    assert int((right["rewards"] > wrong["rewards"]).sum()) == 32
    one = reward_func(["2+2? The answer is 4."], ["2+2? "], ["4"])
    assert one["rewards"].item() == 1.0 and one["extra_logs"]["answer_correct"].item() == 1.0
    assert one["extra_logs"]["reference_unread"].item() == 0.0


def test_trl_default_reward_reads_the_answer_column_and_data_source() -> None:
    fn = as_trl(load_reward(None))
    pairs = gsm8k_pairs(8)
    completions = [r for r, _, _ in pairs] + [w for _, w, _ in pairs]
    answers = [a for *_, a in pairs] * 2
    # TRL passes every dataset column as a keyword, one value per completion
    values = fn(
        prompts=["q"] * 16,
        completions=completions,
        answer=answers,
        data_source=["openai/gsm8k"] * 16,
    )
    assert all(values[i] > values[i + 8] for i in range(8))  # type: ignore[operator]
    assert all(v is not None and v > 0.9 for v in values[:8])
    # no data_source column: the answer check still reads the reference
    values = fn(prompts=["q"] * 16, completions=completions, answer=answers)
    assert all(values[i] > values[i + 8] for i in range(8))  # type: ignore[operator]


def test_a_reference_no_term_reads_is_reported_in_every_adapter() -> None:
    kw = {"data_source": "x", "solution_str": "Sure, here you go.", "ground_truth": "42"}
    # a safety row (task from extra_info) with a reference: the safety terms do not read it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = compute_score(**kw, extra_info={"task": "safety", "prompt": "hi"})
    assert out["reference_unread"] == 1.0
    assert any(
        issubclass(w.category, SafeladderWarning) and "no term reads" in str(w.message)
        for w in caught
    )
    assert not math.isnan(out["score"])
