"""The text side of a label judge: filling its template and rendering the judge input.

- ``fill_template``: ``{prompt}``, ``{completion}``, ``{reference}`` filled in one pass;
  ``prompt_for_judge`` / ``reference_text``: what fills them.
- ``JudgeRenderer``: the filled template as the judge tokenizer's chat (user message +
  generation prompt + ``response_prefix``) or as plain text after the tokenizer's leading
  special tokens, tokenized with no trailing special token (an EOS between the question and the
  label would change what is scored); ``fit`` cuts an input to a token budget the way the
  verifier and the training kind both do (the prompt first, from its start; then the
  completion's start).

The ``label_judge`` verifier and the ``label_judge`` training kind both build their inputs here,
so a trained judge sees at scoring time exactly the tokens it was trained on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from safeladder.types import Prompt

PLACEHOLDER = re.compile(r"\{(prompt|completion|reference)\}")


def prompt_for_judge(prompt: Prompt) -> str:
    """The text that fills ``{prompt}``: a string as is; chat messages without system messages,
    one message → its content, several → ``role: content`` lines.

    >>> prompt_for_judge([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}])
    'hi'
    """
    if isinstance(prompt, str):
        return prompt
    msgs = [m for m in prompt if m.get("role") != "system"]
    if len(msgs) == 1:
        return str(msgs[0].get("content") or "")
    return "\n".join(f"{m.get('role')}: {m.get('content') or ''}" for m in msgs)


def reference_text(reference: Any) -> str | None:
    """The text that fills ``{reference}``; None when there is none.

    >>> reference_text(["Paris", "paris, France"])
    'Paris; paris, France'
    """
    if reference is None:
        return None
    if isinstance(reference, str):
        return reference if reference.strip() else None
    if isinstance(reference, (list, tuple)):
        parts = [str(r) for r in reference if r is not None and str(r).strip()]
        return "; ".join(parts) if parts else None
    if isinstance(reference, Mapping):
        return json.dumps(reference, ensure_ascii=False, sort_keys=True)
    return str(reference)


def fill_template(template: str, prompt: str, completion: str, reference: str) -> str:
    """Fill ``{prompt}``, ``{completion}``, ``{reference}`` in one pass (text inserted for one
    placeholder is never re-scanned; other braces stay as they are).

    >>> fill_template("Q: {prompt} A: {completion} {x}", "{completion}", "4", "")
    'Q: {completion} A: 4 {x}'
    """
    values = {"prompt": prompt, "completion": completion, "reference": reference}
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def has_chat_template(tokenizer: Any) -> bool:
    """Whether ``tokenizer`` carries a chat template."""
    return bool(getattr(tokenizer, "chat_template", None))


def leading_special_ids(tokenizer: Any) -> list[int]:
    """The special ids the tokenizer puts before a text (BOS), without the trailing ones."""
    plain = list(tokenizer.encode("a", add_special_tokens=False))
    full = list(tokenizer.encode("a", add_special_tokens=True))
    for k in range(len(full) - len(plain) + 1):
        if full[k : k + len(plain)] == plain:
            return full[:k]
    return []


class JudgeRenderer:
    """Filled judge templates → judge input ids (see the module docstring).

    Args:
        tokenizer: the judge's tokenizer.
        chat: render with the tokenizer's chat template (else plain text).
        system_prompt: optional system message (chat) or text put before the template (plain).
        response_prefix: text the judge's answer starts with, after the generation prompt.
    """

    def __init__(self, tokenizer: Any, chat: bool, system_prompt: str | None, response_prefix: str):
        self.tok = tokenizer
        self.chat = chat
        self.system_prompt = system_prompt
        self.response_prefix = response_prefix
        # Plain text gets the tokenizer's leading special tokens (BOS) but not trailing ones:
        # an EOS after the prefix would sit between the question and the label.
        self.lead = [] if chat else leading_special_ids(tokenizer)

    def render(self, user: str) -> str:
        """The judge input text for the filled template (leading special ids excepted)."""
        if self.chat:
            messages: list[dict[str, str]] = []
            if self.system_prompt:
                messages.append({"role": "system", "content": self.system_prompt})
            messages.append({"role": "user", "content": user})
            text = self.tok.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
            return str(text) + self.response_prefix
        head = self.system_prompt + "\n\n" if self.system_prompt else ""
        return head + user + self.response_prefix

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of rendered ``texts``: one tokenizer call for the whole list (the fast
        tokenizer runs it in parallel); chat text already holds its special tokens as text."""
        if not texts:
            return []
        enc = self.tok(list(texts), add_special_tokens=False)["input_ids"]
        return [self.lead + list(ids) for ids in enc]

    def ids(self, template: str, prompt: str, completion: str, reference: str) -> list[int]:
        """The input ids of one row."""
        return self.encode([self.render(fill_template(template, prompt, completion, reference))])[0]

    def fit(
        self,
        template: str,
        prompt: str,
        completion: str,
        reference: str,
        ids: list[int],
        budget: int,
    ) -> tuple[list[int] | None, bool]:
        """``ids`` (the row rendered whole) cut to ``budget`` tokens: the prompt first, from its
        start; then the start of the completion. Returns ``(ids, truncated)``; ids is None when
        the fixed text alone exceeds the budget."""
        if len(ids) <= budget:
            return ids, False
        tok = self.tok
        p_ids = list(tok.encode(prompt, add_special_tokens=False))
        c_ids = list(tok.encode(completion, add_special_tokens=False))
        # Each round removes at least one token and re-renders, since tokens at the seams can
        # merge differently once cut.
        while len(ids) > budget:
            excess = len(ids) - budget
            if p_ids:
                p_ids = p_ids[min(excess, len(p_ids)) :]
                prompt = tok.decode(p_ids) if p_ids else ""
            elif c_ids:
                c_ids = c_ids[min(excess, len(c_ids)) :]
                completion = tok.decode(c_ids) if c_ids else ""
            else:
                return None, True
            ids = self.ids(template, prompt, completion, reference)
        return ids, True
