"""``reward_model`` presets: Skywork-Reward-V2 on tiny Llama-3 / Qwen3 stand-ins.

The expectation is the model card's own usage code (huggingface.co/Skywork/
Skywork-Reward-V2-Llama-3.1-8B), written out here: render the conversation with
``apply_chat_template(conv, tokenize=False)``, strip a leading BOS string ("remove the
potential duplicate bos token"), tokenize with the tokenizer's special tokens, score =
``rm(**ids).logits[0][0]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from safeladder import ConfigError, Sample, SampleBatch
from safeladder.verifiers.reward_model import RewardModelConfig, load_preset
from tests.helpers import assert_batch_equals_rows, tiny_model_dir
from tests.verifiers.open_rm_fixtures import CARD_PROMPT, CARD_RESPONSE, tiny_open_rm

torch.set_num_threads(1)

FAMILIES = ["skywork_llama", "skywork_qwen3"]

SAMPLES = [
    Sample(prompt=CARD_PROMPT, completion=CARD_RESPONSE),
    Sample(prompt=CARD_PROMPT, completion="1. Jane splits 9 apples among 2 siblings. 4.5 each."),
    Sample(
        prompt=[
            {"role": "system", "content": "You are a careful tutor."},
            {"role": "user", "content": "What is 12 - 4?"},
            {"role": "assistant", "content": "8"},
            {"role": "user", "content": "And then plus 1?"},
        ],
        completion="9.",
    ),
    Sample(prompt="Hi", completion="<think>The user greets me.</think>Hello!"),
    Sample(prompt="Hi", completion=""),
]


def skywork(kind: str, **kw: Any) -> RewardModelConfig:
    return RewardModelConfig(
        preset="skywork_reward_v2",
        path=str(tiny_open_rm(kind)),
        runtime={"device": "cpu", "max_tokens_per_batch": 400},
        **kw,
    )


def card_ids(tok: Any, s: Sample) -> list[int]:
    """The model card's tokenization of one conversation."""
    conv = [{"role": "user", "content": s.prompt}] if isinstance(s.prompt, str) else s.prompt
    text = tok.apply_chat_template(
        [*conv, {"role": "assistant", "content": s.completion}], tokenize=False
    )
    if tok.bos_token is not None and text.startswith(tok.bos_token):
        text = text[len(tok.bos_token) :]
    return list(tok(text)["input_ids"])


def card_scores(d: Path, samples: list[Sample]) -> np.ndarray:
    """The model card's forward, one conversation at a time (no padding)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(d))
    rm = AutoModelForSequenceClassification.from_pretrained(str(d), num_labels=1).eval()
    with torch.no_grad():
        return np.array(
            [float(rm(input_ids=torch.tensor([card_ids(tok, s)])).logits[0][0]) for s in samples]
        )


@pytest.mark.parametrize("kind", FAMILIES)
def test_rendering_is_the_model_cards_token_for_token(kind: str) -> None:
    from transformers import AutoTokenizer

    v = skywork(kind).build()
    tok = AutoTokenizer.from_pretrained(str(tiny_open_rm(kind)))
    prep = v._prepare(SampleBatch.from_samples(SAMPLES))
    assert len(prep.inputs) == len(SAMPLES)
    for s, ids in zip(SAMPLES, prep.inputs, strict=True):
        assert list(ids) == card_ids(tok, s)
    first = list(prep.inputs[0])
    if kind == "skywork_llama":
        # Exactly one BOS, and the Llama 3.1 system header the template always writes.
        assert first[0] == tok.bos_token_id and first.count(tok.bos_token_id) == 1
        assert "Cutting Knowledge Date" in tok.decode(first)
    else:
        assert tok.bos_token is None and tok.decode(first).startswith("<|im_start|>user\n")
        # Qwen3's template renders the last assistant turn with an (empty) think block.
        assert "<think>\n\n</think>\n\n1. Jane" in tok.decode(first)


@pytest.mark.parametrize("kind", FAMILIES)
def test_score_is_the_logit_of_the_model_cards_forward(kind: str) -> None:
    v = skywork(kind).build()
    want = card_scores(tiny_open_rm(kind), SAMPLES)
    got = assert_batch_equals_rows(v, SAMPLES, atol=1e-5)
    assert np.abs(got.scores - want).max() < 1e-4 and np.ptp(want) > 0.01
    assert list(got.status) == ["ok"] * len(SAMPLES)  # an empty answer is an empty turn, scored
    assert [d["raw"] for d in got.details] == pytest.approx(want.tolist(), abs=1e-4)
    assert v.score_range == (-np.inf, np.inf)


def test_preset_fills_render_key_by_key_and_refuses_plain() -> None:
    assert load_preset("skywork_reward_v2") == {"render": {"template": "chat"}}
    cfg = skywork("skywork_qwen3", render={"max_length": 64})
    assert cfg.render.template == "chat" and cfg.render.max_length == 64
    with pytest.raises(ValidationError, match="contradicts preset 'skywork_reward_v2'"):
        skywork("skywork_qwen3", render={"template": "plain"})
    with pytest.raises(ValidationError, match="preset"):
        RewardModelConfig(preset="skywork_v9", path="x")  # type: ignore[arg-type]


def test_truncation_keeps_one_bos_and_the_answer_end() -> None:
    v = skywork("skywork_llama", render={"max_length": 40}).build()
    with pytest.warns(Warning, match="truncated"):
        got = v.score([Sample(prompt=CARD_PROMPT * 3, completion=CARD_RESPONSE)])
    assert got.status[0] == "ok" and got.details[0]["truncated"] is True
    long_row = SampleBatch.from_samples([Sample(prompt=CARD_PROMPT * 3, completion=CARD_RESPONSE)])
    ids = v._prepare(long_row).inputs[0]
    tok = v.loaded.tokenizer
    assert len(ids) == 40 and ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    assert tok.decode(ids).endswith("2. So 8.<|eot_id|>")


def test_preset_needs_a_chat_template() -> None:
    with pytest.raises(ConfigError, match="has none; is this the released checkpoint"):
        RewardModelConfig(
            preset="skywork_reward_v2",
            path=str(tiny_model_dir("bert_reward")),
            runtime={"device": "cpu"},
        ).build()


def test_checkpoint_without_pad_id_scores_the_cards_last_token() -> None:
    # Llama 3.1 Instruct's tokenizer has no pad token and <|eot_id|> (its EOS) ends every
    # rendered conversation. The card's one-row forward, with no pad id in the config, reads
    # the head at that last token; padding with EOS and letting the model pool "the last
    # non-pad token" would read the token before it.
    kind = "skywork_llama_nopad"
    v = skywork(kind).build()
    assert v.pool_last_token
    want = card_scores(tiny_open_rm(kind), SAMPLES)
    got = assert_batch_equals_rows(v, SAMPLES, atol=1e-5)
    assert np.abs(got.scores - want).max() < 1e-4
    pooled_by_model = RewardModelConfig(
        path=str(tiny_open_rm(kind)), render={"template": "chat"}, runtime={"device": "cpu"}
    ).build()
    assert np.abs(pooled_by_model.score(SAMPLES).scores - want).max() > 1e-3
    assert not skywork("skywork_llama").build().pool_last_token  # its config saves a pad id
