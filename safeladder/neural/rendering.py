"""Turn (prompt, completion) rows into token ids with the verifier's own tokenizer.

The policy being trained and the verifier usually have different tokenizers and chat
templates; a verifier must see text the way it was trained on. ``encode_pairs``:

- ``template: chat`` renders with the verifier tokenizer's chat template:
  ``apply_chat_template(messages + [{"role": "assistant", "content": completion}])``, where a
  string prompt becomes one user message; the prompt part is the rendering of ``messages`` with
  ``add_generation_prompt=True``. The template supplies every special token, so the tokenizer
  adds none.
- ``template: plain`` is ``prompt_text(prompt) + completion`` (TRL's standard text format),
  tokenized with the tokenizer's special tokens (e.g. ``[CLS] ... [SEP]``).
- ``template: auto`` picks chat when the tokenizer has a chat template, else plain.
- ``judge_final_answer`` drops the completion up to and including its last ``</think>``.
- Rows longer than ``max_length`` tokens are truncated: the prompt is trimmed from the left
  first; if the completion alone is too long, the prompt is dropped and the completion's END
  is kept. Special tokens the tokenizer adds around the text (``[CLS]``/``[SEP]``, a leading
  BOS) are always kept. ``Encoded.truncated`` flags the rows that lost tokens.
- ``encode_windows`` renders the same rows as overlapping windows over the completion's
  tokens, each with as much of the prompt as fits (for scoring long completions whole).
- Text is bounded by characters before it is rendered or tokenized (``char_bound``): the
  prompt and the completion each keep at most ``max_length x chars_per_token`` characters, the
  END of each (what the token truncation keeps). A token never spans more characters than that
  factor (it is raised to the tokenizer's longest vocabulary entry), so a part longer than the
  bound has more than ``max_length`` tokens and the cut only removes text the token truncation
  would drop: the ids are the same, without tokenizing megabytes (a 15 MB text spent 31 s in a
  tokenizer). Cut rows are flagged truncated too.
- Text that is not valid Unicode (a lone surrogate such as ``"\\ud800"`` from a JSON escape
  without its pair) raises ``InputError`` naming the row, the field and the position: no
  tokenizer can encode it.

Example::

    enc = encode_pairs(["Hi"], ["Hello!"], tokenizer, RenderConfig(template="plain"))
    enc.ids[0]               # [CLS] Hi Hello ! [SEP]
    enc.completion_start[0]  # index of the first completion token
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from safeladder.answers import THINK_CLOSE, text_after_think
from safeladder.errors import ConfigError, InputError
from safeladder.types import Prompt, prompt_text

#: Characters per token assumed by the character bound. English averages ~4 characters per
#: token; 32 leaves room for code, whitespace runs and long words, and the bound is raised to
#: the tokenizer's longest vocabulary entry anyway (``longest_token_chars``).
DEFAULT_CHARS_PER_TOKEN = 32


class RenderConfig(BaseModel):
    """How a neural verifier turns a row into text and tokens.

    Example (YAML, inside a verifier config)::

        render: {template: chat, judge_final_answer: true, max_length: 1024}
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    template: Literal["auto", "chat", "plain"] = Field(
        default="auto",
        description=(
            "'chat' renders with the verifier tokenizer's chat template (a string prompt becomes "
            "a user message); 'plain' is prompt + completion; 'auto' = chat when the tokenizer "
            "has a chat template, else plain."
        ),
    )
    judge_final_answer: bool = Field(
        default=False,
        description=(
            "Score only the final answer: drop the completion up to and including its last "
            "'</think>' (completions without one are kept whole)."
        ),
    )
    max_length: int = Field(
        default=2048,
        ge=8,
        description=(
            "Tokens per row at most (also capped by the model's position limit); longer rows "
            "are truncated per 'truncation' and counted."
        ),
    )
    truncation: Literal["prompt_first"] = Field(
        default="prompt_first",
        description=(
            "'prompt_first': trim the prompt from the left first; if the completion alone is "
            "too long, drop the prompt and keep the completion's end."
        ),
    )
    chars_per_token: int | None = Field(
        default=DEFAULT_CHARS_PER_TOKEN,
        ge=1,
        description=(
            "Before tokenizing, the prompt and the completion each keep at most max_length x "
            "this many characters (their ends, as truncation keeps them; raised to the "
            "tokenizer's longest vocabulary entry), so megabyte texts cost no more than "
            "max_length tokens; cut rows count as truncated. null tokenizes whole texts."
        ),
    )


@dataclass
class Encoded:
    """Token ids of rendered rows.

    Attributes:
        ids: one token-id list per row (possibly empty for an empty text with a tokenizer that
            adds no special tokens).
        truncated: bool array ``(n,)``; True where the row lost tokens to ``max_length`` or
            characters to the character bound.
        completion_start: per row, the index in ``ids[i]`` of the first completion token
            (``len(ids[i])`` minus trailing special tokens when the completion is empty).
        original_length: per row, the token count before token truncation (of the text as
            the character bound left it).
        chat: whether the chat template was used.
    """

    ids: list[list[int]]
    truncated: np.ndarray
    completion_start: list[int]
    original_length: list[int]
    chat: bool

    def __len__(self) -> int:
        return len(self.ids)


def final_answer(text: str) -> str:
    """The part of ``text`` after its last ``</think>``, stripped; ``text`` itself without one.

    >>> final_answer("<think>a</think> b </think>\\nThe answer is 4.")
    'The answer is 4.'
    >>> final_answer("no reasoning here")
    'no reasoning here'
    """
    # Not safeladder.answers.final_answer: a judge reads the whole final part, <answer> tags
    # and all, only without the reasoning before it.
    return text_after_think(text).strip() if THINK_CLOSE in text else text


_LONGEST: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


def longest_token_chars(tokenizer: Any) -> int:
    """Characters in the tokenizer's longest vocabulary entry (added tokens included); 0 if unknown.

    Byte-level vocabularies spell a token with one character per byte, so this bounds the
    characters of text one token can cover (WordPiece's ``##`` only adds to it).
    """
    try:
        return _LONGEST[tokenizer]
    except (KeyError, TypeError):
        pass
    try:
        n = max((len(t) for t in tokenizer.get_vocab()), default=0)
    except Exception:
        n = 0  # a tokenizer without get_vocab: the configured factor alone
    with contextlib.suppress(TypeError):  # not weak-referenceable: computed again next time
        _LONGEST[tokenizer] = n
    return n


def char_bound(tokenizer: Any, max_length: int, chars_per_token: int | None) -> int | None:
    """Characters kept per text part before tokenizing (None: no bound).

    ``max_length x max(chars_per_token, longest_token_chars(tokenizer))``.
    """
    if chars_per_token is None:
        return None
    return int(max_length) * max(int(chars_per_token), longest_token_chars(tokenizer))


def keep_end(text: str, bound: int | None) -> tuple[str, bool]:
    """``(the last bound characters of text, whether anything was cut)``.

    >>> keep_end("abcdef", 4), keep_end("ab", 4)
    (('cdef', True), ('ab', False))
    """
    if bound is None or len(text) <= bound:
        return text, False
    return text[len(text) - bound :], True


def keep_prompt_end(prompt: Prompt, bound: int | None) -> tuple[Prompt, bool]:
    """The prompt with at most ``bound`` characters of content, its END kept.

    A string keeps its last ``bound`` characters. Chat messages keep their roles; contents
    are cut from the last message backwards: the message where the budget runs out keeps the
    end of its content, earlier messages become empty. Content parts (``[{"type": "text",
    "text": ...}, ...]``) are cut the same way by their ``text``.
    """
    if isinstance(prompt, str):
        return keep_end(prompt, bound)
    if bound is None:
        return prompt, False
    left = bound
    out: list[Any] = []
    cut = False
    for m in reversed(prompt):
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, str):
            new, c = keep_end(content, left)
            left -= len(new)
            if c:
                m = {**m, "content": new}
                cut = True
        elif isinstance(content, list):
            parts: list[Any] = []
            for part in reversed(content):
                text = part.get("text") if isinstance(part, dict) else None
                if isinstance(text, str):
                    new, c = keep_end(text, left)
                    left -= len(new)
                    if c:
                        part = {**part, "text": new}
                        cut = True
                parts.append(part)
            m = {**m, "content": parts[::-1]}
        out.append(m)
    return out[::-1], cut


def check_encodable(row: int, field: str, text: str) -> None:
    """Raise ``InputError`` naming ``row``, ``field`` and the position when ``text`` is not
    valid Unicode (a lone surrogate such as ``"\\ud800"``), which no tokenizer can encode."""
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        ch = text[exc.start]
        raise InputError(
            f"row {row}: the {field} holds a lone surrogate U+{ord(ch):04X} at character "
            f"{exc.start}; it is not valid Unicode text and cannot be tokenized (a JSON "
            "'\\ud800'-style escape without its pair?)",
            row=row,
            field=field,
        ) from None


def _check_prompt(row: int, prompt: Prompt) -> None:
    if isinstance(prompt, str):
        check_encodable(row, "prompt", prompt)
        return
    for j, m in enumerate(prompt):
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, str):
            check_encodable(row, f"prompt[{j}].content", content)
        elif isinstance(content, list):
            for k, part in enumerate(content):
                text = part.get("text") if isinstance(part, dict) else None
                if isinstance(text, str):
                    check_encodable(row, f"prompt[{j}].content[{k}].text", text)


def uses_chat(tokenizer: Any, cfg: RenderConfig) -> bool:
    """Whether ``cfg.template`` resolves to the chat template for this tokenizer."""
    has = bool(getattr(tokenizer, "chat_template", None))
    if cfg.template == "chat" and not has:
        raise ConfigError(
            "render.template: 'chat' but the verifier's tokenizer has no chat template; "
            "use 'plain' or 'auto', or save a chat_template with the tokenizer"
        )
    return cfg.template == "chat" or (cfg.template == "auto" and has)


def render_chat(tokenizer: Any, prompt: Prompt, completion: str) -> tuple[str, int]:
    """``(full_text, prompt_chars)`` of one row under the tokenizer's chat template.

    ``prompt_chars`` is the length of the prompt part (the rendering of the prompt messages with
    the generation prompt); when the full rendering does not start with it (templates that
    rewrite earlier turns), the longest common prefix is used.
    """
    messages: list[dict[str, Any]] = (
        [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    )
    full = tokenizer.apply_chat_template(
        [*messages, {"role": "assistant", "content": completion}], tokenize=False
    )
    head = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if full.startswith(head):
        return full, len(head)
    k = 0
    for a, b in zip(full, head, strict=False):
        if a != b:
            break
        k += 1
    return full, k


def encode_pairs(
    prompts: Sequence[Prompt],
    completions: Sequence[str],
    tokenizer: Any,
    cfg: RenderConfig,
    *,
    max_length: int | None = None,
    first_row: int = 0,
) -> Encoded:
    """Render and tokenize rows; see the module docstring for the rules.

    Args:
        prompts: strings or chat-message lists, one per row.
        completions: completion strings, one per row.
        tokenizer: a Hugging Face tokenizer (fast tokenizers give exact prompt/completion
            boundaries via offsets; slow ones tokenize the prompt separately).
        cfg: the render settings.
        max_length: overrides ``cfg.max_length`` (e.g. capped by the model's positions).
        first_row: the row number errors give the first row (when encoding part of a batch).

    Returns:
        ``Encoded`` with ``n`` rows.

    Raises:
        InputError: a row's text is not valid Unicode, or the chat template failed on it.
    """
    if len(prompts) != len(completions):
        raise InputError(f"encode_pairs: {len(prompts)} prompts but {len(completions)} completions")
    limit = int(max_length if max_length is not None else cfg.max_length)
    chat = uses_chat(tokenizer, cfg)
    bound = char_bound(tokenizer, limit, cfg.chars_per_token)
    texts, heads, cut_rows = _render_texts(
        prompts, completions, tokenizer, cfg, chat, bound, bound, first_row
    )
    if not texts:
        return Encoded([], np.zeros(0, dtype=bool), [], [], chat)
    add_special = not chat
    ids_rows, starts, prefix_n, suffix_n = _tokenize(tokenizer, texts, heads, add_special)
    bos = getattr(tokenizer, "bos_token_id", None)
    out_ids: list[list[int]] = []
    out_start: list[int] = []
    lengths: list[int] = []
    truncated = np.zeros(len(texts), dtype=bool)
    for i, row in enumerate(ids_rows):
        lengths.append(len(row))
        pre, suf = prefix_n[i], suffix_n[i]
        if chat and pre == 0 and bos is not None and row and row[0] == bos:
            pre = 1  # keep a template's leading BOS through truncation
        cs = starts[i]
        if len(row) <= limit:
            out_ids.append(list(row))
            out_start.append(cs)
            continue
        truncated[i] = True
        new, start = _fit(
            row[:pre], row[pre:cs], row[cs : len(row) - suf], row[len(row) - suf :], limit
        )
        out_ids.append(new)
        out_start.append(start)
    truncated[cut_rows] = True
    return Encoded(out_ids, truncated, out_start, lengths, chat)


def _fit(
    head: list[int], prompt: list[int], comp: list[int], tail: list[int], limit: int
) -> tuple[list[int], int]:
    """``(ids, completion start)`` of a row cut to ``limit`` tokens by ``prompt_first``: the
    special tokens at both ends kept, the prompt trimmed from the left, then (completion alone
    too long) the prompt dropped and the completion's end kept."""
    budget = max(limit - len(head) - len(tail), 0)
    if len(comp) >= budget:
        prompt = []
        comp = comp[len(comp) - budget :] if budget else []
    else:
        keep = budget - len(comp)
        prompt = prompt[len(prompt) - keep :] if keep else []
    return [*head, *prompt, *comp, *tail], len(head) + len(prompt)


@dataclass
class Windowed:
    """Rows rendered as windows over their completion (``encode_windows``).

    Attributes:
        ids: per row, one token-id list per window (a row with no tokens: one empty list).
        offsets: per row, the completion-token index where each window's part of the
            completion starts (counted in the whole completion).
        truncated: bool ``(n,)``; True where some window lost prompt tokens, the completion
            lost its start beyond the windows' reach, or a character bound cut text.
    """

    ids: list[list[list[int]]]
    offsets: list[list[int]]
    truncated: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


def encode_windows(
    prompts: Sequence[Prompt],
    completions: Sequence[str],
    tokenizer: Any,
    cfg: RenderConfig,
    *,
    size: int,
    stride: int,
    max_windows: int,
    max_length: int | None = None,
    first_row: int = 0,
) -> Windowed:
    """Render rows as ``encode_pairs`` does, the completion cut into overlapping windows.

    Each window is the row cut to ``max_length`` by ``prompt_first`` with only ``w =
    min(size, room)`` completion tokens (``room``: ``max_length`` minus the special tokens),
    so the prompt keeps its last ``room - w`` tokens. A completion of at most ``w`` tokens is
    one window, exactly ``encode_pairs``' row; a longer one gets windows starting every
    ``min(stride, w)`` tokens, the last one ending at the completion's end. A completion
    longer than ``w + (max_windows - 1) x stride`` tokens keeps its end (flagged truncated).
    Under a chat template the tokens it puts after the completion (an end-of-turn token) count
    as completion tokens, as in ``encode_pairs``' cut: only the last window has them.

    Example: 600 completion tokens, ``size=256, stride=192`` → windows at 0, 192 and 344.
    """
    if len(prompts) != len(completions):
        raise InputError(
            f"encode_windows: {len(prompts)} prompts but {len(completions)} completions"
        )
    limit = int(max_length if max_length is not None else cfg.max_length)
    chat = uses_chat(tokenizer, cfg)
    reach = size + (max_windows - 1) * stride
    texts, heads, cut_rows = _render_texts(
        prompts,
        completions,
        tokenizer,
        cfg,
        chat,
        char_bound(tokenizer, limit, cfg.chars_per_token),
        char_bound(tokenizer, reach, cfg.chars_per_token),
        first_row,
    )
    truncated = np.zeros(len(texts), dtype=bool)
    truncated[cut_rows] = True
    if not texts:
        return Windowed([], [], truncated)
    ids_rows, starts, prefix_n, suffix_n = _tokenize(tokenizer, texts, heads, not chat)
    bos = getattr(tokenizer, "bos_token_id", None)
    out_ids: list[list[list[int]]] = []
    out_offsets: list[list[int]] = []
    for i, row in enumerate(ids_rows):
        pre, suf, cs = prefix_n[i], suffix_n[i], starts[i]
        if chat and pre == 0 and bos is not None and row and row[0] == bos:
            pre = 1  # keep a template's leading BOS, as encode_pairs does
        head, prompt, tail = row[:pre], row[pre:cs], row[len(row) - suf :]
        comp = row[cs : len(row) - suf]
        w = min(size, max(limit - len(head) - len(tail), 0))
        if w == 0 or len(comp) <= w:  # one window: exactly encode_pairs' row
            if len(row) > limit:
                truncated[i] = True
                out_ids.append([_fit(head, prompt, comp, tail, limit)[0]])
            else:
                out_ids.append([list(row)])
            out_offsets.append([0])
            continue
        step = min(stride, w)
        dropped = max(len(comp) - (w + (max_windows - 1) * step), 0)
        if dropped:
            comp, truncated[i] = comp[dropped:], True
        begins = [*range(0, len(comp) - w, step), len(comp) - w]
        if len(head) + len(prompt) + w + len(tail) > limit:
            truncated[i] = True
        out_ids.append([_fit(head, prompt, comp[a : a + w], tail, limit)[0] for a in begins])
        out_offsets.append([a + dropped for a in begins])
    return Windowed(out_ids, out_offsets, truncated)


def _render_texts(
    prompts: Sequence[Prompt],
    completions: Sequence[str],
    tokenizer: Any,
    cfg: RenderConfig,
    chat: bool,
    prompt_bound: int | None,
    completion_bound: int | None,
    first_row: int,
) -> tuple[list[str], list[int], list[int]]:
    """``(texts, prompt_chars, rows cut by the character bounds)`` of rows to tokenize."""
    texts: list[str] = []
    heads: list[int] = []
    cut_rows: list[int] = []
    for i, (p, c) in enumerate(zip(prompts, completions, strict=True)):
        where = first_row + i
        comp = final_answer(c) if cfg.judge_final_answer else c
        comp, comp_cut = keep_end(comp, completion_bound)
        p, prompt_cut = keep_prompt_end(p, prompt_bound)
        if comp_cut or prompt_cut:
            cut_rows.append(i)
        _check_prompt(where, p)
        check_encodable(where, "completion", comp)
        if chat:
            try:
                text, k = render_chat(tokenizer, p, comp)
            except Exception as exc:
                raise InputError(
                    f"row {where}: the verifier's chat template failed on this prompt: {exc}",
                    row=where,
                ) from exc
        else:
            head = prompt_text(p)
            text, k = head + comp, len(head)
        texts.append(text)
        heads.append(k)
    return texts, heads, cut_rows


def _tokenize(
    tokenizer: Any, texts: list[str], heads: list[int], add_special: bool
) -> tuple[list[list[int]], list[int], list[int], list[int]]:
    """Ids per text, the first completion token, and the special-token runs at both ends."""
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(
            texts,
            add_special_tokens=add_special,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
            truncation=False,
            verbose=False,
        )
        ids_rows = [list(r) for r in enc["input_ids"]]
        starts: list[int] = []
        prefix_n: list[int] = []
        suffix_n: list[int] = []
        for row, offs, special, head in zip(
            ids_rows, enc["offset_mapping"], enc["special_tokens_mask"], heads, strict=True
        ):
            pre = suf = 0
            if add_special:
                # Special tokens the tokenizer adds around the text ([CLS] ... [SEP]) have
                # empty offsets; text that merely contains a special token's string does not.
                while pre < len(row) and special[pre] and offs[pre][0] == offs[pre][1]:
                    pre += 1
                while (
                    suf < len(row) - pre
                    and special[len(row) - 1 - suf]
                    and offs[len(row) - 1 - suf][0] == offs[len(row) - 1 - suf][1]
                ):
                    suf += 1
            cs = len(row) - suf
            for j in range(pre, len(row) - suf):
                if offs[j][0] >= head and offs[j][1] > offs[j][0]:
                    cs = j
                    break
            starts.append(cs)
            prefix_n.append(pre)
            suffix_n.append(suf)
        return ids_rows, starts, prefix_n, suffix_n
    # Slow tokenizers have no offsets: tokenize the prompt part on its own to find the boundary.
    ids_rows, starts, prefix_n, suffix_n = [], [], [], []
    for text, head in zip(texts, heads, strict=True):
        row = list(tokenizer(text, add_special_tokens=add_special)["input_ids"])
        bare = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        pre = suf = 0
        if add_special and len(row) > len(bare):
            pre = next((k for k in range(len(row)) if row[k : k + len(bare)] == bare), 0)
            suf = len(row) - len(bare) - pre
        n_head = len(tokenizer(text[:head], add_special_tokens=False)["input_ids"])
        ids_rows.append(row)
        starts.append(min(pre + n_head, len(row) - suf))
        prefix_n.append(pre)
        suffix_n.append(suf)
    return ids_rows, starts, prefix_n, suffix_n
