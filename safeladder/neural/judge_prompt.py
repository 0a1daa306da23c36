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

A vision-language judge (``processor`` given) renders with the processor's chat template, the
row's images as image parts leading the user turn (``render(user, images=k)``); the ids here
are then the text's, each image one placeholder token (the processor expands them later).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from safeladder.images import content_text
from safeladder.neural.vision import VisionRow, process_row, render_vision_text, vision_messages
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
    # content_text: the text parts of a multimodal message (its images reach a VLM judge as
    # images, never as their repr).
    if len(msgs) == 1:
        return content_text(msgs[0].get("content"))
    return "\n".join(f"{m.get('role')}: {content_text(m.get('content'))}" for m in msgs)


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
        processor: a vision-language judge's processor (its chat template places images).
    """

    def __init__(
        self,
        tokenizer: Any,
        chat: bool,
        system_prompt: str | None,
        response_prefix: str,
        processor: Any = None,
    ):
        self.tok = tokenizer
        self.processor = processor
        self.chat = chat
        self.system_prompt = system_prompt
        self.response_prefix = response_prefix
        # Plain text gets the tokenizer's leading special tokens (BOS) but not trailing ones:
        # an EOS after the prefix would sit between the question and the label.
        self.lead = [] if chat else leading_special_ids(tokenizer)

    def render(self, user: str, images: int = 0) -> str:
        """The judge input text for the filled template (leading special ids excepted); with a
        processor, ``images`` image parts lead the user turn."""
        if self.processor is not None:
            msgs = vision_messages(user, images, None)
            if self.system_prompt:
                msgs.insert(0, {"role": "system", "content": self.system_prompt})
            return render_vision_text(self.processor, msgs, True) + self.response_prefix
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

    def ids(
        self, template: str, prompt: str, completion: str, reference: str, images: int = 0
    ) -> list[int]:
        """The input ids of one row."""
        filled = fill_template(template, prompt, completion, reference)
        return self.encode([self.render(filled, images)])[0]

    def fit(
        self,
        template: str,
        prompt: str,
        completion: str,
        reference: str,
        ids: list[int],
        budget: int,
        images: int = 0,
    ) -> tuple[list[int] | None, bool]:
        """``ids`` (the row rendered whole) cut to ``budget`` tokens: the prompt first, from its
        start; then the start of the completion. Returns ``(ids, truncated)``; ids is None when
        the fixed text alone exceeds the budget."""
        got = self.fit_parts(template, prompt, completion, reference, ids, budget, images)
        return (None if got is None else got[2]), got is None or got[3]

    def fit_parts(
        self,
        template: str,
        prompt: str,
        completion: str,
        reference: str,
        ids: list[int],
        budget: int,
        images: int = 0,
    ) -> tuple[str, str, list[int], bool] | None:
        """``fit`` returning ``(prompt, completion, ids, truncated)`` with the cut texts (None:
        the fixed text alone exceeds the budget)."""
        if len(ids) <= budget:
            return prompt, completion, ids, False
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
                return None
            ids = self.ids(template, prompt, completion, reference, images)
        return prompt, completion, ids, True

    def vision_input(
        self,
        template: str,
        prompt: str,
        completion: str,
        reference: str,
        images: Sequence[Any],
        image_keys: Sequence[str],
        budget: int,
        row: int,
    ) -> tuple[VisionRow, bool] | None:
        """A vision-language judge's input for one row: ``(VisionRow, truncated)``.

        The text is cut as ``fit`` cuts it, to ``budget`` tokens minus the row's image tokens
        (images are never cut); None when the fixed text and the images alone exceed it.
        """
        if self.processor is None:
            raise ValueError("vision_input needs a processor")
        k = len(images)
        text = self.render(fill_template(template, prompt, completion, reference), k)
        full = process_row(self.processor, text, images, image_keys, row)
        ids = self.encode([text])[0]
        # Each image is one placeholder in ``ids`` and its image tokens in ``full``.
        image_extra = len(full) - len(ids)
        got = self.fit_parts(template, prompt, completion, reference, ids, budget - image_extra, k)
        if got is None:
            return None
        prompt, completion, _, cut = got
        if cut:
            text = self.render(fill_template(template, prompt, completion, reference), k)
            full = process_row(self.processor, text, images, image_keys, row)
        return full, cut
