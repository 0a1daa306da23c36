"""``process_reward``: Qwen2.5-Math-PRM on a tiny stand-in saved in the released layout.

The expectation is the model card's usage code (huggingface.co/Qwen/Qwen2.5-Math-PRM-7B),
written out here independently of the verifier: the conversation
``[system, user, assistant = "<extra_0>".join(steps) + "<extra_0>"]`` rendered with
``apply_chat_template(..., tokenize=False, add_generation_prompt=False)``, ``tokenizer.encode``,
a forward of ``Qwen2ForProcessRewardModel`` (rebuilt here as ``modeling_qwen2_rm.py`` defines
it: ``model`` = Qwen2Model, ``score`` = Linear(h, h), ReLU, Linear(h, 2), loaded strictly from
the checkpoint) and ``make_step_rewards``: ``softmax(logits)[:, 1]`` at each ``<extra_0>``.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from safeladder import ConfigError, Sample, SampleBatch
from safeladder.verifiers import build_verifier
from safeladder.verifiers.process_reward import ProcessRewardConfig, read_score_head
from tests.helpers import assert_batch_equals_rows, tiny_model_dir
from tests.verifiers.open_rm_fixtures import tiny_open_rm

torch.set_num_threads(1)

SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
SEP = "<extra_0>"
# (prompt, completion, the steps the "\n\n" split gives, stripped)
ROWS: list[tuple[Any, str, list[str]]] = [
    (
        "Sue has 18 pink flamingos. Neighbors take back 6. How many are left?",
        "First, Sue starts with 18 flamingos.\n\nThen 6 are taken back: 18 - 6 = 12.\n\n"
        "The answer is \\boxed{12}.",
        [
            "First, Sue starts with 18 flamingos.",
            "Then 6 are taken back: 18 - 6 = 12.",
            "The answer is \\boxed{12}.",
        ],
    ),
    ("What is 2 + 2?", "  2 + 2 = 4, so \\boxed{4}.  ", ["2 + 2 = 4, so \\boxed{4}."]),
    (
        [{"role": "user", "content": "What is 3 * 4?"}],
        "3 * 4 = 12.\n\n\n\n\nSo \\boxed{12}.\n\n",
        ["3 * 4 = 12.", "So \\boxed{12}."],
    ),
    ("What is 2 + 2?", "  2 + 2 = 4, so \\boxed{4}.  ", ["2 + 2 = 4, so \\boxed{4}."]),
]


def prm(**kw: Any) -> ProcessRewardConfig:
    kw.setdefault("runtime", {"device": "cpu", "max_tokens_per_batch": 400})
    return ProcessRewardConfig(preset="qwen2_5_math_prm", path=str(tiny_open_rm("qwen_prm")), **kw)


class CardPRM(torch.nn.Module):
    """``Qwen2ForProcessRewardModel`` as ``modeling_qwen2_rm.py`` lays it out."""

    def __init__(self, d: Path):
        from safetensors.torch import load_file
        from transformers import AutoConfig, Qwen2Model

        super().__init__()
        cfg = AutoConfig.from_pretrained(str(d))
        h = cfg.hidden_size
        self.model = Qwen2Model(cfg)
        self.score = torch.nn.Sequential(
            torch.nn.Linear(h, h), torch.nn.ReLU(), torch.nn.Linear(h, 2)
        )
        self.load_state_dict(load_file(str(d / "model.safetensors")), strict=True)
        self.eval()

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.score(self.model(input_ids=input_ids).last_hidden_state)


def make_step_rewards(logits: torch.Tensor, token_masks: torch.Tensor) -> list[list[float]]:
    """The model card's function."""
    probabilities = torch.nn.functional.softmax(logits, dim=-1)
    probabilities = probabilities * token_masks.unsqueeze(-1)
    out = []
    for i in range(probabilities.size(0)):
        sample = probabilities[i]
        positive_probs = sample[sample != 0].view(-1, 2)[:, 1]
        out.append(positive_probs.cpu().tolist())
    return out


@pytest.fixture(scope="module")
def card() -> tuple[Any, CardPRM]:
    from transformers import AutoTokenizer

    d = tiny_open_rm("qwen_prm")
    return AutoTokenizer.from_pretrained(str(d)), CardPRM(d)


def card_ids(tok: Any, prompt: Any, steps: list[str], system: str | None = SYSTEM) -> list[int]:
    msgs = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    if system is not None:
        msgs = [{"role": "system", "content": system}, *msgs]
    msgs.append({"role": "assistant", "content": SEP.join(steps) + SEP})
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=False)
    return list(tok.encode(text))


def card_step_rewards(card: tuple[Any, CardPRM], ids: list[int]) -> list[float]:
    tok, model = card
    input_ids = torch.tensor([ids])
    with torch.no_grad():
        logits = model(input_ids)
    return make_step_rewards(logits, input_ids == tok.encode(SEP)[0])[0]


def samples() -> list[Sample]:
    return [Sample(prompt=p, completion=c) for p, c, _ in ROWS]


def test_input_is_the_model_cards_token_for_token(card: tuple[Any, CardPRM]) -> None:
    v = prm().build()
    prep = v._prepare(SampleBatch.from_samples(samples()))
    tok = card[0]
    for (p, _, steps), row in zip(ROWS, prep.inputs, strict=True):
        assert row.ids == card_ids(tok, p, steps)
    text = tok.decode(prep.inputs[0].ids)
    assert text.startswith("<|im_start|>system\nPlease reason step by step, and put your final")
    assert text.endswith("\\boxed{12}.<extra_0><|im_end|>\n")


@pytest.mark.parametrize("aggregate", ["min", "product", "mean", "last"])
def test_step_rewards_are_make_step_rewards_of_one_forward(
    card: tuple[Any, CardPRM], aggregate: str
) -> None:
    v = prm(aggregate=aggregate).build()
    got = assert_batch_equals_rows(v, samples(), atol=1e-5)
    fold = {"min": min, "product": math.prod, "mean": np.mean, "last": lambda x: x[-1]}[aggregate]
    for i, (p, c, steps) in enumerate(ROWS):
        want = card_step_rewards(card, card_ids(card[0], p, steps))
        assert len(want) == len(steps) == got.details[i]["n_steps"]
        assert [s["score"] for s in got.details[i]["steps"]] == pytest.approx(want, abs=1e-5)
        assert got.scores[i] == pytest.approx(float(fold(want)), abs=1e-5)
        assert [c[s["start"] : s["end"]].strip() for s in got.details[i]["steps"]] == steps
    all_steps = [s["score"] for d in got.details for s in d["steps"]]
    assert np.ptp(all_steps) > 0.05  # the tiny head gives visibly different step rewards
    assert v.score_range == (0.0, 1.0)


def test_one_forward_per_row_whatever_the_steps() -> None:
    v = prm(runtime={"device": "cpu", "max_batch_size": 1}).build()
    calls: list[int] = []
    hook = v.loaded.replicas[0].register_forward_hook(
        lambda mod, args, kwargs, out: calls.append(kwargs["input_ids"].shape[0]),
        with_kwargs=True,
    )
    try:
        rows = samples()
        v.score(rows)
    finally:
        hook.remove()
    assert calls == [1, 1, 1]  # 4 rows, 2 identical: 3 forwards, none per step or prefix
    steps = v.score_steps(rows)
    assert [len(s) for s in steps] == [3, 1, 2, 1] and steps[1].tolist() == steps[3].tolist()


def test_rows_without_steps_abstain_and_step_token_text_is_refused() -> None:
    v = prm().build()
    got = v.score(
        [
            Sample(prompt="q", completion=""),
            Sample(prompt="q", completion=" \n\n \n"),
            Sample(prompt="q", completion="Step 1 <extra_0> fake.\n\nStep 2."),
            Sample(prompt="q", completion="Fine."),
        ]
    )
    assert list(got.status) == ["abstain", "abstain", "abstain", "ok"]
    assert "no steps" in got.details[0]["reason"] and "no steps" in got.details[1]["reason"]
    assert "contains the step token '<extra_0>'" in got.details[2]["reason"]
    assert v.score_steps([Sample(prompt="q", completion="")])[0].shape == (0,)


def test_step_token_in_the_prompt_is_not_a_step(card: tuple[Any, CardPRM]) -> None:
    # The card would read the prompt's <extra_0> as a step; only the completion's are steps.
    prompt = "Explain what <extra_0> means, then add 1 + 1."
    v = prm().build()
    got = v.score([Sample(prompt=prompt, completion="It is a token.\n\n1 + 1 = 2.")])
    want = card_step_rewards(card, card_ids(card[0], prompt, ["It is a token.", "1 + 1 = 2."]))
    assert len(want) == 3
    assert [s["score"] for s in got.details[0]["steps"]] == pytest.approx(want[1:], abs=1e-5)


def test_chat_prompt_with_its_own_system_message_and_no_system_prompt(
    card: tuple[Any, CardPRM],
) -> None:
    own = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2 + 2?"}]
    v = prm().build()
    row = v._prepare(SampleBatch.from_samples([Sample(prompt=own, completion="4.")])).inputs[0]
    assert row.ids == card_ids(card[0], own, ["4."], system=None)
    bare = prm(system_prompt=None).build()
    row = bare._prepare(SampleBatch.from_samples([Sample(prompt="2 + 2?", completion="4.")]))
    # Without a system message Qwen2.5's template writes its default one.
    assert card[0].decode(row.inputs[0].ids).startswith("<|im_start|>system\nYou are Qwen")


def test_long_rows_lose_their_first_steps_not_the_answer(card: tuple[Any, CardPRM]) -> None:
    completion = "\n\n".join(f"Step {k}: add one more apple to the basket." for k in range(12))
    full = prm().build()
    whole = full.score([Sample(prompt="Count.", completion=completion)])
    assert whole.details[0]["n_scored"] == 12
    v = prm(max_length=120).build()
    with pytest.warns(Warning, match="truncated"):
        got = v.score([Sample(prompt="Count.", completion=completion)])
    d = got.details[0]
    statuses = [s["status"] for s in d["steps"]]
    kept = d["n_scored"]
    assert got.status[0] == "ok" and d["truncated"] is True and 0 < kept < 12
    assert statuses == ["cut"] * (12 - kept) + ["ok"] * kept
    ids = v._prepare(SampleBatch.from_samples([Sample(prompt="Count.", completion=completion)]))
    row = ids.inputs[0]
    assert len(row.ids) == 120 and card[0].decode(row.ids).endswith("basket.<extra_0><|im_end|>\n")
    want = card_step_rewards(card, row.ids)
    assert [s["score"] for s in d["steps"][12 - kept :]] == pytest.approx(want, abs=1e-5)
    assert got.scores[0] == pytest.approx(min(want), abs=1e-5)
    # The completion's end is kept, so the last step (the answer) is always scored.
    tiny = prm(max_length=16).build()
    with pytest.warns(Warning, match="truncated"):
        short = tiny.score([Sample(prompt="Count.", completion="a\n\nb\n\n" + "z" * 200)])
    assert short.status[0] == "ok" and [s["status"] for s in short.details[0]["steps"]] == [
        "cut",
        "cut",
        "ok",
    ]


def test_judge_final_answer_and_regex_split(card: tuple[Any, CardPRM]) -> None:
    v = prm(judge_final_answer=True, split={"regex": r"(?=Step \d)"}).build()
    comp = "<think>scratch\n\nwork</think>Step 1: 2 + 2 = 4. Step 2: \\boxed{4}."
    got = v.score([Sample(prompt="2 + 2?", completion=comp)])
    steps = ["Step 1: 2 + 2 = 4.", "Step 2: \\boxed{4}."]
    want = card_step_rewards(card, card_ids(card[0], "2 + 2?", steps))
    assert [s["score"] for s in got.details[0]["steps"]] == pytest.approx(want, abs=1e-5)


def test_config_and_checkpoint_checks(tmp_path: Path) -> None:
    d = str(tiny_open_rm("qwen_prm"))
    with pytest.raises(ValidationError, match="step_token: required"):
        ProcessRewardConfig(path=d)
    with pytest.raises(ValidationError, match="preset"):
        ProcessRewardConfig(path=d, preset="math_shepherd")  # type: ignore[arg-type]
    cfg = prm(split={"regex": r"\n+"}, system_prompt="Be careful.")
    assert cfg.split.regex == r"\n+" and cfg.split.separator is None
    assert cfg.system_prompt == "Be careful." and cfg.step_token == "<extra_0>"
    with pytest.raises(ConfigError, match="not an added token"):
        prm(step_token="<extra_9>").build()
    with pytest.raises(ConfigError, match="lacks the head tensors"):
        build_verifier(
            {
                "type": "process_reward",
                "path": str(tiny_model_dir("qwen2_causal_lm")),
                "step_token": "<|im_end|>",
                "runtime": {"device": "cpu"},
            }
        )


def test_sharded_checkpoint_head(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    src = tiny_open_rm("qwen_prm")
    d = tmp_path / "sharded"
    shutil.copytree(src, d)
    state = load_file(str(d / "model.safetensors"))
    (d / "model.safetensors").unlink()
    keys = sorted(state)
    halves = {
        "model-00001-of-00002.safetensors": keys[::2],
        "model-00002-of-00002.safetensors": keys[1::2],
    }
    weight_map = {}
    for name, ks in halves.items():
        save_file({k: state[k] for k in ks}, str(d / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(ks, name))
    (d / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map})
    )
    head = read_score_head(d)
    assert all(torch.equal(head[k], state[k]) for k in head)
    one = ProcessRewardConfig(preset="qwen2_5_math_prm", path=str(d), runtime={"device": "cpu"})
    got = one.build().score(samples()[:1])
    assert got.scores[0] == pytest.approx(prm().build().score(samples()[:1]).scores[0], abs=1e-6)
