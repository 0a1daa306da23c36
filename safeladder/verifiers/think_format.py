"""``think_format``: is the completion laid out as ``<think>…</think><answer>…</answer>``?

Two styles:

``style: strict`` (default) — score ``1.0`` when the layout is right, ``0.0`` when it is not (a
real format failure, never an abstention; the reason is in ``details["reason"]``). Rules:

- each of the four tags occurs exactly once, in the order think-open < think-close <
  answer-open < answer-close; so nothing is nested, repeated or stray, and no tag sits inside
  the think block or the answer;
- tags are case-sensitive, and a case variant anywhere (``<Answer>``, ``</THINK>``) is itself a
  failure: it would otherwise hide a second block from this check while a lenient parser
  downstream reads it;
- the think block and the answer block each hold a non-whitespace character;
- only whitespace between ``</think>`` and ``<answer>``; what may precede the opening tag and
  follow the closing tag is set by ``leading`` / ``trailing`` (``none`` | ``whitespace`` |
  ``any``);
- ``answer_block: none`` is the think-only layout of SafeWork-R1's format rule (papers.md §1.1):
  a non-empty think block, its closing tag, then at least one non-whitespace character (the
  answer tags are not looked for).

These rules close the format-reward hacks reported in huggingface/open-r1 #359 (several
``<think>``/``<answer>`` blocks still scored) and Liuziyu77/Visual-RFT #176 (empty answers
rewarded); see trainer-contracts.md (c).7.

``style: logic_rl`` — Logic-RL's format score, reproduced exactly (Unakar/Logic-RL @ 9d2c457,
``verl/utils/reward_score/kk.py``, ``validate_response_structure``; papers.md §3): ``+1`` when
each of the four tags occurs exactly once (plain substring count) and their first positions are
in order, else ``-1``. Empty blocks, text around or between the blocks and case variants are
all accepted, as upstream. The score set is {-1, +1}.

The opening think tag may be **prefilled** by the prompt (the prompt ends with ``<think>``, as
Logic-RL's and DeepSeek-R1-style templates do). ``prefilled_think: true`` counts that tag as
present just before the completion, so the completion must not open the block again;
``"auto"`` decides per row by whether the prompt text (``safeladder.types.prompt_text``; the
message contents of a chat prompt) ends with the opening tag, ignoring trailing whitespace.

**What Logic-RL's "processed response" is here.** Logic-RL decodes prompt + response together
and scores the text after the first ``"Assistant:"`` or, when there is none, after the first
``"<|im_start|>assistant"``. Its rendered prompts end with that header plus the prefilled tag
(``…<|im_start|>assistant\\n<think>`` or ``…Assistant: <think>``), so the processed response is
``<think>`` + completion. We see prompt and completion separately and rebuild it as:

1. ``open tag + completion`` when the think tag is prefilled, else the completion;
2. except when the completion itself contains ``"Assistant:"`` and the prompt text does not:
   Logic-RL looks for ``"Assistant:"`` first, so the split then falls inside the completion and
   the processed response is the completion after its first ``"Assistant:"`` (the prefilled tag
   and everything before it are cut off). This is what happens under the qwen-instruct
   template of Logic-RL's released data, whose rendered prompt has no ``"Assistant:"``; a prompt
   we cannot see rendered (a plain question, chat messages) is assumed to be of that kind. A
   ``"<|im_start|>assistant"`` inside the completion never moves the split, because a real
   prompt always holds a header before it.

Inputs: ``completion``; ``prompt`` only to decide whether it prefilled the think tag.
Score range: ``strict`` [0, 1] (0 / 1); ``logic_rl`` [-1, 1] (-1 / +1). Never NaN.

Example::

    {"type": "think_format"}                                        # strict, prefill by prompt
    {"type": "think_format", "style": "logic_rl", "prefilled_think": true}  # preset logic_rl_format
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from safeladder.types import Prompt, Sample, prompt_text
from safeladder.verifiers.base import RowResult, RuleVerifier, Verifier, VerifierConfig, ok

Surround = Literal["none", "whitespace", "any"]
PrefillSetting = bool | Literal["auto"]

#: Logic-RL splits the decoded prompt + response after this header (checked first).
LOGIC_RL_HEADER = "Assistant:"
#: The four tags Logic-RL counts, in their required order.
LOGIC_RL_TAGS = ("<think>", "</think>", "<answer>", "</answer>")


def is_prefilled(setting: PrefillSetting, prompt: Prompt, open_tag: str) -> bool:
    """Whether the opening think tag counts as already written by the prompt.

    >>> is_prefilled("auto", "Solve it.<|im_start|>assistant\\n<think>\\n", "<think>")
    True
    >>> is_prefilled("auto", [{"role": "user", "content": "Solve it."}], "<think>")
    False
    """
    if setting == "auto":
        return prompt_text(prompt).rstrip().endswith(open_tag)
    return bool(setting)


def logic_rl_processed(completion: str, prompt: Prompt, prefilled: bool, open_tag: str) -> str:
    """The text Logic-RL would score for this prompt and completion (module docstring, steps 1–2).

    >>> logic_rl_processed("x</think><answer>y</answer>", "", True, "<think>")
    '<think>x</think><answer>y</answer>'
    >>> logic_rl_processed("<think>x Assistant: <answer>y</answer>", "", True, "<think>")
    ' <answer>y</answer>'
    """
    if LOGIC_RL_HEADER in completion and LOGIC_RL_HEADER not in prompt_text(prompt):
        return completion.split(LOGIC_RL_HEADER, 1)[1]
    return open_tag + completion if prefilled else completion


def logic_rl_format_failure(processed: str, tags: tuple[str, str, str, str]) -> str | None:
    """None when Logic-RL's structure check passes on ``processed``, else why it fails.

    Each tag must occur exactly once (``str.count``) and the first positions must be in order;
    an absent tag has position -1, as upstream (it already fails the count).

    >>> logic_rl_format_failure("<think></think><answer></answer>", LOGIC_RL_TAGS) is None
    True
    >>> logic_rl_format_failure("<think><think></think><answer>a</answer>", LOGIC_RL_TAGS)
    "'<think>' appears 2 times (expected once)"
    """
    for tag in tags:
        n = processed.count(tag)
        if n != 1:
            return f"{tag!r} is missing" if n == 0 else f"{tag!r} appears {n} times (expected once)"
    pos = [processed.find(tag) for tag in tags]
    for a in range(3):
        if pos[a] > pos[a + 1]:
            return f"{tags[a + 1]!r} comes before {tags[a]!r}"
    return None


def _surround_failure(text: str, rule: Surround, where: str) -> str | None:
    if rule == "any" or not text:
        return None
    if rule == "none" or text.strip():
        return f"text {where}: {text[:40]!r}"
    return None


class ThinkFormatConfig(VerifierConfig):
    """Config of the think/answer layout check; see the module docstring for the rules."""

    type: Literal["think_format"] = "think_format"
    style: Literal["strict", "logic_rl"] = Field(
        default="strict",
        description=(
            "'strict': 1.0 for exactly one non-empty think block then one non-empty answer block "
            "(no repeats, nesting, stray or case-variant tags), else 0.0. 'logic_rl': Logic-RL's "
            "format score, +1 when each tag occurs once and in order, else -1."
        ),
    )
    think_open: str = Field(default="<think>", description="Opening tag of the reasoning block.")
    think_close: str = Field(default="</think>", description="Closing tag of the reasoning block.")
    answer_open: str = Field(default="<answer>", description="Opening tag of the answer block.")
    answer_close: str = Field(default="</answer>", description="Closing tag of the answer block.")
    prefilled_think: PrefillSetting = Field(
        default="auto",
        description=(
            "Whether the prompt already wrote the opening think tag (the completion starts inside "
            "the think block): true, false, or 'auto' = per row, whether the prompt text ends with "
            "think_open (trailing whitespace ignored)."
        ),
    )
    answer_block: Literal["required", "none"] = Field(
        default="required",
        description=(
            "Strict style only. 'required': think block then answer block. 'none': think-only "
            "layout (SafeWork-R1): non-empty think block, its closing tag, then at least one "
            "non-whitespace character."
        ),
    )
    leading: Surround = Field(
        default="whitespace",
        description=(
            "Strict style only: what may precede the opening think tag when it is not prefilled "
            "('none', 'whitespace' or 'any' text)."
        ),
    )
    trailing: Surround = Field(
        default="whitespace",
        description=(
            "Strict style only: what may follow the closing answer tag ('none', 'whitespace' or "
            "'any' text); not used with answer_block: none."
        ),
    )

    @field_validator("think_open", "think_close", "answer_open", "answer_close")
    @classmethod
    def _tag_shape(cls, value: str) -> str:
        if not value or value != value.strip():
            raise ValueError(
                f"a tag must be non-empty without surrounding whitespace, got {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ThinkFormatConfig:
        names = ("think_open", "think_close", "answer_open", "answer_close")
        tags = [getattr(self, n) for n in names]
        # Counting and case-variant detection need tags that cannot be found inside each other.
        for i, a in enumerate(tags):
            for j, b in enumerate(tags):
                if i != j and a.casefold() in b.casefold():
                    raise ValueError(
                        f"{names[i]} {a!r} occurs inside {names[j]} {b!r} (ignoring case); "
                        "choose tags that do not contain one another"
                    )
        if self.style == "logic_rl":
            strict_only = sorted({"answer_block", "leading", "trailing"} & self.model_fields_set)
            if strict_only:
                raise ValueError(
                    f"{', '.join(strict_only)} only apply to style 'strict'; remove them or set "
                    "style: strict"
                )
        return self

    @property
    def tags(self) -> tuple[str, str, str, str]:
        return (self.think_open, self.think_close, self.answer_open, self.answer_close)

    def build(self) -> Verifier:
        if self.style == "logic_rl":
            return LogicRLFormatVerifier(self)
        return ThinkFormatVerifier(self)


class ThinkFormatVerifier(RuleVerifier):
    """Strict layout check: 1.0 pass, 0.0 fail with ``details["reason"]``.

    Wrong input types cannot reach it (``Sample`` validates prompt and completion); the
    reference is not used.
    """

    score_range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    def __init__(self, config: ThinkFormatConfig):
        super().__init__(config)
        self.cfg = config
        self._tags = config.tags if config.answer_block == "required" else config.tags[:2]
        self._variants = [re.compile(re.escape(t), re.IGNORECASE) for t in self._tags]

    def score_row(self, sample: Sample) -> RowResult:
        prefilled = is_prefilled(self.cfg.prefilled_think, sample.prompt, self.cfg.think_open)
        reason = self.failure(sample.completion, prefilled)
        if reason is None:
            return ok(1.0, prefilled=prefilled)
        return ok(0.0, reason=reason, prefilled=prefilled)

    def failure(self, completion: str, prefilled: bool) -> str | None:
        """None when ``completion`` has the required layout, else the first rule it breaks."""
        cfg = self.cfg
        text = cfg.think_open + completion if prefilled else completion
        for tag, pattern in zip(self._tags, self._variants, strict=True):
            for m in pattern.finditer(text):
                if m.group(0) != tag:
                    return f"{m.group(0)!r} is a case variant of the tag {tag!r} (case-sensitive)"
        for tag in self._tags:
            n = text.count(tag)
            if n == 0:
                return f"{tag!r} is missing"
            if n > 1:
                note = (
                    " (the prompt already opened it)" if prefilled and tag == cfg.think_open else ""
                )
                return f"{tag!r} appears {n} times (expected once){note}"
        pos = [text.find(tag) for tag in self._tags]
        for a in range(len(pos) - 1):
            if pos[a] > pos[a + 1]:
                return f"{self._tags[a + 1]!r} comes before {self._tags[a]!r}"
        ends = [p + len(t) for p, t in zip(pos, self._tags, strict=True)]
        if not prefilled:
            reason = _surround_failure(text[: pos[0]], cfg.leading, f"before {cfg.think_open!r}")
            if reason:
                return reason
        if not text[ends[0] : pos[1]].strip():
            return "the think block is empty"
        if cfg.answer_block == "none":
            if not text[ends[1] :].strip():
                return f"nothing follows {cfg.think_close!r}"
            return None
        between = text[ends[1] : pos[2]]
        if between.strip():
            return f"text between {cfg.think_close!r} and {cfg.answer_open!r}: {between[:40]!r}"
        if not text[ends[2] : pos[3]].strip():
            return "the answer block is empty"
        return _surround_failure(text[ends[3] :], cfg.trailing, f"after {cfg.answer_close!r}")


class LogicRLFormatVerifier(RuleVerifier):
    """Logic-RL's format score: +1 / -1 (never NaN; the reference is not used)."""

    score_range: ClassVar[tuple[float, float]] = (-1.0, 1.0)

    def __init__(self, config: ThinkFormatConfig):
        super().__init__(config)
        self.cfg = config

    def score_row(self, sample: Sample) -> RowResult:
        prefilled = is_prefilled(self.cfg.prefilled_think, sample.prompt, self.cfg.think_open)
        processed = logic_rl_processed(
            sample.completion, sample.prompt, prefilled, self.cfg.think_open
        )
        reason = logic_rl_format_failure(processed, self.cfg.tags)
        detail: dict[str, Any] = {"prefilled": prefilled}
        if reason is None:
            return ok(1.0, **detail)
        return ok(-1.0, reason=reason, **detail)
