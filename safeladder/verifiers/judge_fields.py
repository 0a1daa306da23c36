"""Open guard models as ``label_judge``: their own chat templates, answer fields, categories.

Released guard models (Llama Guard 3 / 4, ShieldGemma, WildGuard, the HarmBench classifier)
each answer in a fixed format. ``label_judge`` scores the label of that answer by its
likelihood, as for any judge; what these models add is handled here:

- **Conversation rendering** (``rendering: conversation``): the judge tokenizer's own chat
  template renders the row as a conversation, ``[{user: prompt}, {assistant: completion}]``
  (the prompt as one user message: ``prompt_for_judge``), with ``add_generation_prompt`` and
  ``chat_template_kwargs`` (Llama Guard's ``categories`` / ``excluded_category_keys``,
  ShieldGemma's ``guideline``); ``message_content: parts`` passes each content as
  ``[{"type": "text", "text": ...}]`` (the Llama Guard 3-1B / 11B-Vision / 4 templates read
  typed parts). ``template`` is not used. ``response_prefix`` is appended after the template's
  text as in the other renderings.
- **Answer fields before the scored label** (``fields``, WildGuard's three lines): field ``k``
  is scored after the prefix text ``base + Σ_{j<k} (prefix_j + answer_j) + prefix_k``, where
  ``answer_j`` is field ``j``'s most likely answer (greedy decoding's path, teacher-forced);
  the scored ``labels`` then come after all fields and ``response_prefix``. One batched pass
  per field plus the label pass; each stage's text is tokenized whole, and a field's answers
  are tokenized in the context of its prefix (``context_ids``), so a SentencePiece tokenizer
  gives them the word-start marker they have after ``"request:"``. Per row,
  ``details["fields"] = {name: {"answer": a, "probs": {answer: p}}}``.
- **Categories after a label** (``categories``, Llama Guard's second line): one more batched
  pass over ``prefix + category_after + category_sep`` (e.g. ``"unsafe" + "\\n"``, tokenized on
  their own like the labels) reads the likelihood of each category code (``"S1"`` ...
  ``"S14"``) as the next label, normalized over the codes: ``details["categories"]`` holds the
  ``top_categories`` most likely codes with their probabilities (in that order) and
  ``details["category"]`` the most likely one. It is P(code | unsafe), whatever the verdict.

Nothing is generated anywhere: every pass is one forward (with the KV cache for multi-token
labels) over fixed prefixes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from safeladder.errors import ConfigError
from safeladder.neural.judge_prompt import JudgeRenderer, fill_template
from safeladder.neural.label_likelihood import label_probabilities
from safeladder.neural.vision import VisionRow
from safeladder.verifiers.base import VerifierConfig

__all__ = [
    "FollowUps",
    "GuardJudgeConfig",
    "GuardRenderer",
    "JudgeField",
    "Staged",
    "context_ids",
]


class JudgeField(BaseModel):
    """One answer line the judge writes before the scored label (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="Key of this field in details['fields'].")
    prefix: str = Field(
        description="Text before this field's answer, e.g. 'Harmful request:' or "
        "'\\nResponse refusal:'."
    )
    labels: list[str] = Field(
        description="The possible answers as written after the prefix, e.g. [' yes', ' no'].",
        min_length=2,
    )


class GuardJudgeConfig(VerifierConfig):
    """The ``label_judge`` fields that say how the judge input is rendered and answered
    (``LabelJudgeConfig`` extends it)."""

    rendering: Literal["auto", "chat", "plain", "conversation"] = Field(
        default="auto",
        description=(
            "'chat': the judge tokenizer's chat template with the generation prompt; 'plain': "
            "the filled template as raw text; 'auto': chat when the tokenizer has a template; "
            "'conversation': no template, the tokenizer's chat template renders prompt (user) "
            "and completion (assistant) itself (guard models: Llama Guard, ShieldGemma)."
        ),
    )
    system_prompt: str | None = Field(
        default=None,
        description="Optional system message (chat rendering) or text put before the template.",
    )
    response_prefix: str = Field(
        default="",
        description=(
            "Text the judge's answer starts with, appended after the generation prompt "
            "(e.g. 'Label:'); the labels are scored after it."
        ),
    )
    label_prefix: str = Field(
        default="",
        description=(
            "Text put before every label when it is tokenized, e.g. ' ' when the prompt ends with "
            "'Answer:' and the model answers ' yes'."
        ),
    )
    chat_template_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "Extra arguments to the judge tokenizer's chat template (chat and conversation "
            "renderings), e.g. {'guideline': ...} for ShieldGemma or {'categories': {...}, "
            "'excluded_category_keys': [...]} for Llama Guard 3-1B / 4."
        ),
    )
    message_content: Literal["string", "parts"] = Field(
        default="string",
        description=(
            "rendering: conversation: each message's content as a string, or as typed parts "
            "[{'type': 'text', 'text': ...}] (the Llama Guard 3-1B / 11B / 4 templates)."
        ),
    )
    add_bos: bool = Field(
        default=True,
        description=(
            "rendering: plain: put the tokenizer's leading special tokens (BOS) before the "
            "text; false when the template writes them itself (WildGuard's '<s>')."
        ),
    )
    labels_in_context: bool = Field(
        default=False,
        description=(
            "Tokenize each label as the ids it adds to response_prefix (response_prefix + "
            "label_prefix + label) instead of on its own: right for SentencePiece tokenizers, "
            "whose label alone may get another word-start marker."
        ),
    )
    fields: list[JudgeField] = Field(
        default_factory=list,
        description=(
            "Answer lines the judge writes before the scored labels (WildGuard): each is "
            "scored in turn after the earlier ones' most likely answers; the labels come after "
            "all of them and response_prefix. Probabilities in details['fields']."
        ),
    )
    categories: list[str] = Field(
        default_factory=list,
        description=(
            "Category codes read after category_after + category_sep (Llama Guard's 'S1'.."
            "'S14'): one extra pass; the top codes and their probabilities in "
            "details['categories']."
        ),
    )
    category_after: str | None = Field(
        default=None, description="The label after which categories follow (e.g. 'unsafe')."
    )
    category_sep: str = Field(
        default="\n", description="Text between category_after and the category code."
    )
    top_categories: int = Field(
        default=3, ge=1, description="How many of the most likely categories details keep."
    )

    def _check_guard(self, rendering: str, template: str, system_prompt: str | None) -> None:
        """Cross-field checks (called by ``LabelJudgeConfig``); raises ValueError."""
        if rendering == "conversation":
            if template:
                raise ValueError(
                    "template: not used with rendering: conversation (the judge tokenizer's "
                    "chat template renders the prompt and completion); remove it"
                )
            if system_prompt:
                raise ValueError("system_prompt: not used with rendering: conversation")
        elif not template:
            raise ValueError(
                "template: required; write the judge prompt with {completion} (and {prompt}, "
                "{reference}), or use rendering: conversation, or set a preset"
            )
        if self.categories:
            if self.category_after is None:
                raise ValueError("category_after: required with categories (e.g. 'unsafe')")
            if len(set(self.categories)) != len(self.categories):
                raise ValueError(f"categories: duplicate codes in {self.categories}")
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"fields: duplicate names in {names}")


def context_ids(tok: Any, context: str, text: str) -> list[int]:
    """The ids ``text`` adds after ``context`` when both are tokenized together.

    Raises:
        ConfigError: ``context`` alone does not tokenize to a prefix of ``context + text``
            (the two merge across the seam).
    """
    whole = list(tok.encode(context + text, add_special_tokens=False))
    if not context:
        return whole
    head = list(tok.encode(context, add_special_tokens=False))
    if whole[: len(head)] != head:
        raise ConfigError(
            f"labels: {text!r} merges with the text before it ({context!r}) when tokenized; "
            "move the shared characters into the label or the prefix"
        )
    return whole[len(head) :]


class GuardRenderer(JudgeRenderer):
    """``JudgeRenderer`` with chat-template arguments, conversation rendering and ``add_bos``."""

    def __init__(
        self,
        tokenizer: Any,
        chat: bool,
        system_prompt: str | None,
        response_prefix: str,
        processor: Any = None,
        *,
        conversation: bool = False,
        template_kwargs: dict[str, Any] | None = None,
        parts: bool = False,
        add_bos: bool = True,
    ):
        super().__init__(tokenizer, chat or conversation, system_prompt, response_prefix, processor)
        self.conversation = conversation
        self.template_kwargs = dict(template_kwargs or {})
        self.parts = parts
        if not add_bos:
            self.lead = []

    def _content(self, text: str) -> Any:
        return [{"type": "text", "text": text}] if self.parts else text

    def _apply(self, messages: list[dict[str, Any]]) -> str:
        text = self.tok.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, **self.template_kwargs
        )
        return str(text) + self.response_prefix

    def render(self, user: str, images: int = 0) -> str:
        if self.processor is None and self.chat and self.template_kwargs:
            messages: list[dict[str, Any]] = []
            if self.system_prompt:
                messages.append({"role": "system", "content": self.system_prompt})
            messages.append({"role": "user", "content": user})
            return self._apply(messages)
        return super().render(user, images)

    def conversation_text(self, prompt: str, completion: str) -> str:
        """The row as the checkpoint's own conversation format (plus ``response_prefix``)."""
        return self._apply(
            [
                {"role": "user", "content": self._content(prompt)},
                {"role": "assistant", "content": self._content(completion)},
            ]
        )

    def row_text(self, template: str, prompt: str, completion: str, reference: str) -> str:
        """The judge input text of one row (leading special ids excepted)."""
        if self.conversation:
            return self.conversation_text(prompt, completion)
        return self.render(fill_template(template, prompt, completion, reference))

    def ids(
        self, template: str, prompt: str, completion: str, reference: str, images: int = 0
    ) -> list[int]:
        if self.conversation:
            return self.encode([self.conversation_text(prompt, completion)])[0]
        return super().ids(template, prompt, completion, reference, images)


class Staged(NamedTuple):
    """A row whose answer fields are yet to be scored: its base text and ids."""

    text: str
    ids: list[int]


#: ``score(prefixes, label_ids, tag) -> [rows, m]`` label log-likelihoods (one batched pass).
ScorePass = Callable[[list[Any], list[list[int]], str], np.ndarray]


class FollowUps:
    """The passes of a label judge beyond the label pass: answer fields and categories.

    ``run`` returns ``[rows, m + Σ_fields n_f + c]``: the label log-likelihoods, each field's
    answer probabilities, the category log-likelihoods; ``split`` cuts them apart again.
    """

    def __init__(
        self,
        cfg: GuardJudgeConfig,
        renderer: JudgeRenderer,
        label_names: Sequence[str],
        label_ids: Sequence[Sequence[int]],
        response_prefix: str,
    ):
        tok = renderer.tok
        self.renderer = renderer
        self.response_prefix = response_prefix
        self.label_ids = [list(x) for x in label_ids]
        self.m = len(label_ids)
        self.fields = list(cfg.fields)
        self.field_ids = [[context_ids(tok, f.prefix, a) for a in f.labels] for f in self.fields]
        for f, ids in zip(self.fields, self.field_ids, strict=True):
            if any(not x for x in ids) or len({tuple(x) for x in ids}) != len(ids):
                raise ConfigError(
                    f"fields.{f.name}.labels: every answer needs its own non-empty token ids"
                )
        self.categories = list(cfg.categories)
        self.top = cfg.top_categories
        self.cat_ids = [list(tok.encode(c, add_special_tokens=False)) for c in self.categories]
        self.cat_head: list[int] = []
        if self.categories:
            after_name = str(cfg.category_after)
            if after_name not in label_names:
                raise ConfigError(
                    f"category_after: {cfg.category_after!r} is not one of the labels "
                    f"{list(label_names)}"
                )
            after = list(label_ids[list(label_names).index(after_name)])
            self.cat_head = after + list(tok.encode(cfg.category_sep, add_special_tokens=False))
            if any(not x for x in self.cat_ids):
                raise ConfigError("categories: a code tokenizes to no tokens")

    @property
    def active(self) -> bool:
        return bool(self.fields or self.categories)

    def allowance(self) -> int:
        """Tokens the fields add after the base text at most (taken off the truncation budget)."""
        tok = self.renderer.tok
        extra = sum(
            len(tok.encode(f.prefix, add_special_tokens=False)) + max(map(len, ids)) + 1
            for f, ids in zip(self.fields, self.field_ids, strict=True)
        )
        if self.fields:
            extra += len(tok.encode(self.response_prefix, add_special_tokens=False)) + 1
        if self.categories:
            extra += len(self.cat_head) + max(map(len, self.cat_ids))
        return extra

    def run(self, rows: list[Any], score: ScorePass) -> np.ndarray:
        """All passes for ``rows`` (``Staged`` with fields, else prefix ids / ``VisionRow``)."""
        cols: list[np.ndarray] = []
        if self.fields:
            texts = [r.text for r in rows]
            for f, ids in zip(self.fields, self.field_ids, strict=True):
                stage = self.renderer.encode([t + f.prefix for t in texts])
                probs = label_probabilities(score(stage, ids, f"field:{f.name}"))
                cols.append(probs)
                best = np.argmax(probs, axis=1)
                texts = [t + f.prefix + f.labels[int(k)] for t, k in zip(texts, best, strict=True)]
            prefixes = self.renderer.encode([t + self.response_prefix for t in texts])
        else:
            prefixes = list(rows)
        main = score(prefixes, self.label_ids, "labels")
        cols.insert(0, main)
        if self.categories:
            heads = [
                p.extended(self.cat_head) if isinstance(p, VisionRow) else [*p, *self.cat_head]
                for p in prefixes
            ]
            cols.append(score(heads, self.cat_ids, "categories"))
        return np.concatenate([np.asarray(c, dtype=np.float64) for c in cols], axis=1)

    def split(self, outputs: np.ndarray) -> tuple[np.ndarray, list[np.ndarray], np.ndarray | None]:
        """``run``'s columns → (label log-likelihoods, per-field probabilities, categories)."""
        main, at = outputs[:, : self.m], self.m
        fields = []
        for ids in self.field_ids:
            fields.append(outputs[:, at : at + len(ids)])
            at += len(ids)
        cats = outputs[:, at:] if self.categories else None
        return main, fields, cats

    def details(self, fields: list[np.ndarray], cats: np.ndarray | None, i: int) -> dict[str, Any]:
        """Row ``i``'s ``fields`` / ``categories`` / ``category`` details."""
        out: dict[str, Any] = {}
        if self.fields:
            out["fields"] = {
                f.name: {
                    "answer": f.labels[int(np.argmax(p[i]))],
                    "probs": {a: float(v) for a, v in zip(f.labels, p[i], strict=True)},
                }
                for f, p in zip(self.fields, fields, strict=True)
            }
        if cats is not None and np.isfinite(cats[i]).any():
            p = label_probabilities(cats[i : i + 1])[0]
            order = np.argsort(-p, kind="stable")[: self.top]
            out["categories"] = {self.categories[int(k)]: float(p[k]) for k in order}
            out["category"] = self.categories[int(order[0])]
        return out
