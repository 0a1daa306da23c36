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

Example::

    enc = encode_pairs(["Hi"], ["Hello!"], tokenizer, RenderConfig(template="plain"))
    enc.ids[0]               # [CLS] Hi Hello ! [SEP]
    enc.completion_start[0]  # index of the first completion token
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from safeladder.errors import ConfigError, InputError
from safeladder.types import Prompt, prompt_text

THINK_CLOSE = "</think>"


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


@dataclass
class Encoded:
    """Token ids of rendered rows.

    Attributes:
        ids: one token-id list per row (possibly empty for an empty text with a tokenizer that
            adds no special tokens).
        truncated: bool array ``(n,)``; True where the row lost tokens to ``max_length``.
        completion_start: per row, the index in ``ids[i]`` of the first completion token
            (``len(ids[i])`` minus trailing special tokens when the completion is empty).
        original_length: per row, the token count before truncation.
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
    k = text.rfind(THINK_CLOSE)
    if k < 0:
        return text
    return text[k + len(THINK_CLOSE) :].strip()


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
) -> Encoded:
    """Render and tokenize rows; see the module docstring for the rules.

    Args:
        prompts: strings or chat-message lists, one per row.
        completions: completion strings, one per row.
        tokenizer: a Hugging Face tokenizer (fast tokenizers give exact prompt/completion
            boundaries via offsets; slow ones tokenize the prompt separately).
        cfg: the render settings.
        max_length: overrides ``cfg.max_length`` (e.g. capped by the model's positions).

    Returns:
        ``Encoded`` with ``n`` rows.
    """
    if len(prompts) != len(completions):
        raise InputError(f"encode_pairs: {len(prompts)} prompts but {len(completions)} completions")
    limit = int(max_length if max_length is not None else cfg.max_length)
    chat = uses_chat(tokenizer, cfg)
    texts: list[str] = []
    heads: list[int] = []
    for i, (p, c) in enumerate(zip(prompts, completions, strict=True)):
        comp = final_answer(c) if cfg.judge_final_answer else c
        if chat:
            try:
                text, k = render_chat(tokenizer, p, comp)
            except Exception as exc:
                raise InputError(
                    f"row {i}: the verifier's chat template failed on this prompt: {exc}", row=i
                ) from exc
        else:
            head = prompt_text(p)
            text, k = head + comp, len(head)
        texts.append(text)
        heads.append(k)
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
        keep_head, prompt_part, comp_part, tail = (
            row[:pre],
            row[pre:cs],
            row[cs : len(row) - suf],
            row[len(row) - suf :],
        )
        budget = max(limit - len(keep_head) - len(tail), 0)
        if len(comp_part) >= budget:
            prompt_part = []
            comp_part = comp_part[len(comp_part) - budget :] if budget else []
        else:
            keep = budget - len(comp_part)
            prompt_part = prompt_part[len(prompt_part) - keep :] if keep else []
        new = [*keep_head, *prompt_part, *comp_part, *tail]
        out_ids.append(new)
        out_start.append(len(keep_head) + len(prompt_part))
    return Encoded(out_ids, truncated, out_start, lengths, chat)


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
