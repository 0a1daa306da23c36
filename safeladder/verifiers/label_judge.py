"""``label_judge``: a causal LM judge scored by the likelihood of each allowed label.

The judge reads a prompt built from a template (``{prompt}``, ``{completion}``, ``{reference}``)
and "answers" with one of a fixed set of labels, each mapped to a reward
(``labels: {label_text: reward}``). Nothing is generated: every label is scored by its
log-likelihood after the judge prompt, in one batched pass, and the distribution is restricted
to the allowed labels::

    ll_i  = Σ_t log p(label_i[t] | prefix, label_i[:t])      (``length_normalize``: mean over t)
    p_i   = softmax(ll)_i                                     over the allowed labels only
    score = Σ_i p_i · r_i                                     (``aggregate: expected``)
          = r_argmax                                          (``aggregate: argmax``; ties → the
                                                               label listed first)
          = (P(TRUE) + 1 − P(FALSE)) / 2                      (``aggregate: true_false``)

``true_false`` is SafeWork's knowledge rule (papers.md §1.1: P(TRUE) and P(FALSE) under decoding
constrained to the two labels). With exactly two labels P(FALSE) = 1 − P(TRUE), so it equals
P(TRUE); with more labels (e.g. an extra "UNSURE") it is the mean of P(TRUE) and 1 − P(FALSE).
Its range is [0, 1] and the label rewards are not used. For ``expected`` / ``argmax`` the range
is [min reward, max reward].

Rendering. The template, filled in, is the judge's user message, rendered with the judge
tokenizer's chat template plus the generation prompt when it has one (``rendering: auto``), else
used as plain text; ``system_prompt`` and ``response_prefix`` (text the assistant turn starts
with, e.g. ``"Label:"``) are optional. Labels are tokenized on their own (``label_prefix`` +
label, no special tokens) and appended to the prefix ids, so a label's tokens are exactly what
the model would generate after the prefix. A chat prompt (a list of messages) fills ``{prompt}``
with its non-system messages (one message: its content; several: ``role: content`` lines).
``judge_final_answer`` drops everything up to the last ``</think>`` (SafeWork judges only the
final answer). Inputs longer than ``max_length`` tokens (label included) are cut: the prompt
first, from its start; then the completion, keeping its end; each such row has
``details["truncated"] = True`` and ``truncated_rows`` counts them.

Compute. ``scoring: shared_prefix`` (default) runs each row's prefix once with the KV cache;
the first token of every label is read from the prefix's last logits, and the remaining tokens
of each multi-token label in one small pass over the cached prefix (the cache is cropped back
after each label). ``scoring: duplicate`` runs ``prefix + label`` for every (row, label) pair
in one forward (simpler; m times the tokens). Both give the same probabilities (tests check
1e-4). Micro-batching, dedup of identical inputs, the optional LRU cache and multi-device
replicas come from the shared engine (``safeladder.neural``).

Details per scored row: ``label`` (the most likely label), ``label_probs`` ({label: p}),
``template`` when a ``templates`` entry was used, ``truncated`` when cut.

Rows that abstain (NaN): the template uses ``{reference}`` and the row has none; the judge
prompt is empty; fixed text alone exceeds ``max_length``. With ``empty_score`` set, an empty
(final) completion scores that value without running the model (SafeWork's knowledge verifier
gives an empty answer 0).

Presets (``safeladder/presets/label_judge/``; templates written after papers.md §1.1, not
SafeWork's exact prompts): ``safework_safety``, ``safework_value``, ``safework_knowledge``.
A preset fills every field it sets that the config does not set explicitly.

Example::

    {"type": "label_judge", "preset": "safework_safety", "path": "/models/qwen2.5-7b-instruct"}
    {"type": "label_judge", "path": "/models/judge",
     "template": "Is this answer polite?\\n{completion}\\nAnswer yes or no.",
     "labels": {"yes": 1.0, "no": 0.0}, "label_prefix": ""}
"""

from __future__ import annotations

import inspect
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
from pydantic import Field, model_validator

from safeladder.config import load_yaml, preset_path
from safeladder.errors import ConfigError, VerifierError
from safeladder.neural.rendering import (
    DEFAULT_CHARS_PER_TOKEN,
    char_bound,
    check_encodable,
    final_answer,
    keep_end,
)
from safeladder.neural.runtime import RuntimeConfig
from safeladder.types import Prompt, SampleBatch, ScoreBatch
from safeladder.verifiers.base import RowResult, Verifier, VerifierConfig, abstain, ok

if TYPE_CHECKING:
    import torch

PRESETS = ("safework_safety", "safework_value", "safework_knowledge")
#: Fields a preset file may set (everything about what is asked and how it is scored; never
#: the model path, runtime or name).
_PRESET_FIELDS = frozenset(
    {
        "template",
        "templates",
        "template_by_meta",
        "system_prompt",
        "labels",
        "label_prefix",
        "response_prefix",
        "aggregate",
        "true_label",
        "false_label",
        "length_normalize",
        "judge_final_answer",
        "empty_score",
    }
)
_PLACEHOLDER = re.compile(r"\{(prompt|completion|reference)\}")


def load_preset(name: str) -> dict[str, Any]:
    """The fields of a shipped label-judge preset (``safeladder/presets/label_judge/<name>.yaml``).

    >>> sorted(load_preset("safework_value")["labels"])
    ['bad', 'good']
    """
    path = preset_path("label_judge", name)
    if path is None:
        raise ConfigError(
            f"preset: unknown label_judge preset {name!r}; known: {', '.join(PRESETS)}"
        )
    data = load_yaml(path)
    unknown = sorted(set(data) - _PRESET_FIELDS)
    if unknown:
        raise ConfigError(f"{path}: keys {unknown} cannot be set by a preset")
    return data


class LabelJudgeConfig(VerifierConfig):
    """Config of a causal-LM judge scored by label likelihoods (see the module docstring)."""

    type: Literal["label_judge"] = "label_judge"
    path: str = Field(
        description=(
            "Local directory of the judge: a Hugging Face causal LM (config.json, weights, "
            "tokenizer). Never downloaded."
        )
    )
    preset: Literal["safework_safety", "safework_value", "safework_knowledge"] | None = Field(
        default=None,
        description=(
            "Shipped judge preset: safework_safety (six-label safety taxonomy, SafeWork's "
            "reward map, stricter template for meta task 'jailbreak'), safework_value "
            "(good/bad, score P(good)), safework_knowledge (TRUE/FALSE against the reference, "
            "(P(TRUE)+1-P(FALSE))/2). It fills every template/label/scoring field not set here."
        ),
    )
    template: str = Field(
        default="",
        description=(
            "The judge's user message; {prompt}, {completion} and {reference} are filled in "
            "(other braces are left as they are). Must contain {completion}."
        ),
    )
    templates: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Alternative templates by the value of meta[template_by_meta] "
            "(e.g. {'jailbreak': '...'}); rows with another or no value use 'template'."
        ),
    )
    template_by_meta: str | None = Field(
        default=None, description="Meta key whose value selects an entry of 'templates'."
    )
    system_prompt: str | None = Field(
        default=None,
        description="Optional system message (chat rendering) or text put before the template.",
    )
    labels: dict[str, float] = Field(
        default_factory=dict,
        description=(
            "Allowed labels and their rewards, e.g. {'good': 1.0, 'bad': 0.0}; at least two. "
            "The label text is what the judge would answer."
        ),
    )
    label_prefix: str = Field(
        default="",
        description=(
            "Text put before every label when it is tokenized, e.g. ' ' when the prompt ends with "
            "'Answer:' and the model answers ' yes'."
        ),
    )
    response_prefix: str = Field(
        default="",
        description=(
            "Text the judge's answer starts with, appended after the generation prompt "
            "(e.g. 'Label:'); the labels are scored after it."
        ),
    )
    aggregate: Literal["expected", "argmax", "true_false"] = Field(
        default="expected",
        description=(
            "'expected': sum of p(label) * reward; 'argmax': the reward of the most likely label; "
            "'true_false': (P(true_label) + 1 - P(false_label)) / 2 in [0, 1] (rewards unused)."
        ),
    )
    true_label: str = Field(
        default="TRUE", description="The label read as P(TRUE) by aggregate: true_false."
    )
    false_label: str = Field(
        default="FALSE", description="The label read as P(FALSE) by aggregate: true_false."
    )
    length_normalize: bool = Field(
        default=False,
        description=(
            "Score a multi-token label by its mean token log-probability instead of the sum "
            "(removes the bias against longer labels; the sum is the true likelihood)."
        ),
    )
    judge_final_answer: bool = Field(
        default=False,
        description="Judge only the text after the last </think> of the completion.",
    )
    empty_score: float | None = Field(
        default=None,
        description=(
            "Score given without running the judge when the (final) completion is empty or "
            "whitespace; null judges it like any other text."
        ),
    )
    rendering: Literal["auto", "chat", "plain"] = Field(
        default="auto",
        description=(
            "'chat': the judge tokenizer's chat template with the generation prompt; 'plain': "
            "the filled template as raw text; 'auto': chat when the tokenizer has a template."
        ),
    )
    max_length: int = Field(
        default=4096,
        ge=8,
        description=(
            "Token limit of judge input + label; longer rows are cut (prompt first, then the "
            "start of the completion) and counted as truncated."
        ),
    )
    chars_per_token: int | None = Field(
        default=DEFAULT_CHARS_PER_TOKEN,
        ge=1,
        description=(
            "Before tokenizing, the prompt and the completion each keep at most max_length x "
            "this many characters (their ends, as the token cut keeps them; raised to the "
            "tokenizer's longest vocabulary entry): megabyte rows cost no more than max_length "
            "tokens; cut rows count as truncated. null tokenizes whole texts."
        ),
    )
    scoring: Literal["shared_prefix", "duplicate"] = Field(
        default="shared_prefix",
        description=(
            "'shared_prefix': run each row's prefix once and score the labels over its KV cache; "
            "'duplicate': one forward over prefix + label for every (row, label) pair."
        ),
    )
    runtime: RuntimeConfig = Field(
        default_factory=RuntimeConfig,
        description="Device, dtype, attention kernel and batching settings of the judge model.",
    )

    @model_validator(mode="before")
    @classmethod
    def _fill_from_preset(cls, data: Any) -> Any:
        # Explicit fields win over the preset's: the preset only fills what is not given.
        if not isinstance(data, Mapping) or not data.get("preset"):
            return data
        name = data["preset"]
        if name not in PRESETS:
            return data  # the Literal check reports it, naming the key
        merged = dict(load_preset(str(name)))
        merged.update(data)
        return merged

    @model_validator(mode="after")
    def _check(self) -> LabelJudgeConfig:
        if not self.template:
            raise ValueError(
                "template: required; write the judge prompt with {completion} (and {prompt}, "
                f"{{reference}}), or set preset: one of {', '.join(PRESETS)}"
            )
        for key, tpl in [("template", self.template)] + [
            (f"templates.{k}", v) for k, v in self.templates.items()
        ]:
            if "{completion}" not in tpl:
                raise ValueError(f"{key}: must contain {{completion}} (the text being judged)")
        if self.templates and not self.template_by_meta:
            raise ValueError(
                "templates: set template_by_meta (the meta key whose value picks a template)"
            )
        if len(self.labels) < 2:
            raise ValueError(
                f"labels: need at least two labels mapped to rewards, got {len(self.labels)} "
                "(e.g. {'good': 1.0, 'bad': 0.0})"
            )
        for label, reward in self.labels.items():
            if not label.strip():
                raise ValueError("labels: a label is empty; every label needs text")
            if not math.isfinite(reward):
                raise ValueError(f"labels.{label}: reward must be a finite number, got {reward}")
        if self.aggregate == "true_false":
            for key in ("true_label", "false_label"):
                if getattr(self, key) not in self.labels:
                    raise ValueError(
                        f"{key}: {getattr(self, key)!r} is not one of the labels "
                        f"{sorted(self.labels)} (needed by aggregate: true_false)"
                    )
            if self.true_label == self.false_label:
                raise ValueError("false_label: must differ from true_label")
        if self.empty_score is not None:
            lo, hi = self.score_bounds()
            if not lo <= self.empty_score <= hi:
                raise ValueError(
                    f"empty_score: {self.empty_score} is outside the score range [{lo}, {hi}]"
                )
        return self

    def score_bounds(self) -> tuple[float, float]:
        """``[min, max]`` of the scores this config can produce."""
        if self.aggregate == "true_false":
            return (0.0, 1.0)
        rewards = list(self.labels.values())
        return (float(min(rewards)), float(max(rewards)))

    def build(self) -> Verifier:
        return LabelJudge(self)


# --- the model side (plain torch; the engine calls these per micro-batch) -------------------------


def _left_pad(
    seqs: Sequence[Sequence[int]], pad_id: int, device: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-pad ``seqs`` → ``(input_ids, attention_mask, position_ids)``, each ``[b, L]``.

    Left padding puts every row's last token in the last column, so the logits needed (the last
    one, or the last k) are the same columns for every row and ``logits_to_keep`` applies;
    explicit position ids keep each row's positions 0..n-1 as if it were alone.
    """
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, width - len(s) :] = torch.tensor(list(s), dtype=torch.long)
            mask[i, width - len(s) :] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), pos.to(device)


def _accepts_logits_to_keep(model: Any) -> bool:
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def label_loglik_duplicate(
    model: Any,
    prefixes: Sequence[Sequence[int]],
    labels: Sequence[Sequence[int]],
    pad_id: int,
    device: Any,
) -> np.ndarray:
    """Summed label log-likelihoods from one forward over every ``prefix + label`` pair.

    Args:
        model: a causal LM (``model(input_ids, attention_mask, position_ids).logits``).
        prefixes: ``b`` token-id lists (each non-empty).
        labels: ``m`` non-empty token-id lists.

    Returns:
        float32 ``[b, m]``: ``Σ_t log p(label_j[t] | prefix_i, label_j[:t])``.
    """
    import torch

    k = max(len(lab) for lab in labels)
    seqs = [list(p) + list(lab) for p in prefixes for lab in labels]
    ids, mask, pos = _left_pad(seqs, pad_id, device)
    kwargs: dict[str, Any] = {"attention_mask": mask, "position_ids": pos, "use_cache": False}
    if _accepts_logits_to_keep(model):
        kwargs["logits_to_keep"] = k + 1
    logits = model(input_ids=ids, **kwargs).logits[:, -(k + 1) : -1].float()  # [b*m, k, V]
    logp = torch.log_softmax(logits, dim=-1)
    # Column c of ``logp`` predicts the token at column width - k + c of ``ids``; label j fills
    # the last n_j columns, i.e. columns k - n_j .. k - 1. One gather, one mask, one sum.
    tok_lp = logp.gather(-1, ids[:, -k:].unsqueeze(-1)).squeeze(-1)  # [b*m, k]
    n = torch.tensor([len(lab) for lab in labels], device=ids.device).repeat(len(prefixes))
    keep = torch.arange(k, device=ids.device)[None, :] >= (k - n)[:, None]
    # where, not multiply: columns before a short label may sit on padding (NaN-prone logits).
    ll = torch.where(keep, tok_lp, torch.zeros_like(tok_lp)).double().sum(-1)
    return ll.view(len(prefixes), len(labels)).detach().cpu().numpy().astype(np.float32)


def label_loglik_shared_prefix(
    model: Any,
    prefixes: Sequence[Sequence[int]],
    labels: Sequence[Sequence[int]],
    pad_id: int,
    device: Any,
) -> np.ndarray:
    """Summed label log-likelihoods, running each prefix once and the labels over its KV cache.

    Same contract as ``label_loglik_duplicate`` (float32 ``[b, m]``). The first token of every
    label is read from the prefix's last logits; each multi-token label's remaining tokens take
    one small pass of ``[b, n - 1]`` tokens over the cached prefix, after which the cache is
    cropped back to the prefix. Falls back to ``label_loglik_duplicate`` when the model returns
    no croppable cache.
    """
    import torch

    b = len(prefixes)
    multi = any(len(lab) > 1 for lab in labels)
    ids, mask, pos = _left_pad(prefixes, pad_id, device)
    # Single-token labels need only the prefix's last logits: no cache to keep.
    kwargs: dict[str, Any] = {"attention_mask": mask, "position_ids": pos, "use_cache": multi}
    if _accepts_logits_to_keep(model):
        kwargs["logits_to_keep"] = 1
    out = model(input_ids=ids, **kwargs)
    cache: Any = getattr(out, "past_key_values", None)
    if multi and (cache is None or not getattr(cache, "is_croppable", False)):
        return label_loglik_duplicate(model, prefixes, labels, pad_id, device)
    first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # [b, V]
    heads = torch.tensor([lab[0] for lab in labels], dtype=torch.long, device=first.device)
    ll = first[:, heads].double()  # [b, m]: every label's first token, from the prefix pass
    lengths = mask.sum(-1, keepdim=True)  # [b, 1] real prefix tokens
    for j, lab in enumerate(labels):
        n = len(lab)
        if n == 1:
            continue
        step = torch.tensor(lab[:-1], dtype=torch.long, device=ids.device).expand(b, n - 1)
        step_mask = torch.cat([mask, torch.ones_like(step)], dim=-1)
        step_pos = lengths + torch.arange(n - 1, device=ids.device)
        res = model(
            input_ids=step,
            attention_mask=step_mask,
            position_ids=step_pos,
            past_key_values=cache,
            use_cache=True,
        )
        logp = torch.log_softmax(res.logits.float(), dim=-1)  # [b, n-1, V]
        tgt = torch.tensor(lab[1:], dtype=torch.long, device=logp.device)
        ll[:, j] += logp[:, torch.arange(n - 1, device=logp.device), tgt].double().sum(-1)
        # Back to the prefix for the next label. A negative argument removes that many tokens in
        # transformers 5 and means "keep all but that many" in 4.x: the same cut in both.
        cache.crop(-(n - 1))
    return ll.detach().cpu().numpy().astype(np.float32)


def label_probabilities(loglik: np.ndarray, lengths: Sequence[int] | None = None) -> np.ndarray:
    """Softmax over the allowed labels: ``[b, m]`` log-likelihoods → ``[b, m]`` probabilities.

    ``lengths`` (tokens per label) turns sums into per-token means first (``length_normalize``).

    >>> label_probabilities(np.log(np.array([[1.0, 3.0]]))).round(2).tolist()
    [[0.25, 0.75]]
    """
    x = np.asarray(loglik, dtype=np.float64)
    if lengths is not None:
        x = x / np.asarray(lengths, dtype=np.float64)[None, :]
    x = x - x.max(axis=1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=1, keepdims=True)


def aggregate_scores(
    probs: np.ndarray,
    rewards: np.ndarray,
    mode: str,
    true_index: int | None = None,
    false_index: int | None = None,
) -> np.ndarray:
    """``[b, m]`` label probabilities → ``[b]`` scores (see the module docstring for the modes).

    >>> p = np.array([[0.25, 0.75]]); r = np.array([1.0, 0.0])
    >>> aggregate_scores(p, r, "expected").tolist(), aggregate_scores(p, r, "argmax").tolist()
    ([0.25], [0.0])
    >>> aggregate_scores(p, r, "true_false", 0, 1).tolist()
    [0.25]
    """
    if mode == "expected":
        return probs @ rewards
    if mode == "argmax":
        return rewards[np.argmax(probs, axis=1)]
    if mode == "true_false":
        assert true_index is not None and false_index is not None
        return (probs[:, true_index] + 1.0 - probs[:, false_index]) / 2.0
    raise ValueError(f"aggregate: unknown mode {mode!r}")


# --- text side -------------------------------------------------------------------------------------


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
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


class _RowText(NamedTuple):
    """A row's pieces before rendering: template, prompt text, completion text, reference text."""

    template: str
    prompt: str
    completion: str
    reference: str
    used: str | None  # the ``templates`` key, when an alternative template was chosen
    cut: bool = False  # the prompt or completion lost characters to the character bound


class _Prepared(NamedTuple):
    """A row ready for the judge: prefix ids, whether they were cut, the alternative template used."""

    ids: list[int]
    truncated: bool
    template: str | None


class LabelJudge(Verifier):
    """A causal LM judge; see the module docstring. Built from ``LabelJudgeConfig``."""

    def __init__(self, config: LabelJudgeConfig):
        super().__init__(config)
        from safeladder.neural.runtime import load_model

        self.cfg = config
        self.score_range = config.score_bounds()  # type: ignore[misc]
        self._loaded: Any = load_model(config.path, "causal_lm", config.runtime)
        tok = self._loaded.tokenizer
        self._tok = tok
        self.label_names: list[str] = list(config.labels)
        self.label_ids: list[list[int]] = [
            list(tok.encode(config.label_prefix + name, add_special_tokens=False))
            for name in self.label_names
        ]
        seen: dict[tuple[int, ...], str] = {}
        for name, ids in zip(self.label_names, self.label_ids, strict=True):
            if not ids:
                raise ConfigError(f"labels.{name}: tokenizes to no tokens")
            if tuple(ids) in seen:
                raise ConfigError(
                    f"labels.{name}: tokenizes exactly like {seen[tuple(ids)]!r}; labels must "
                    "differ as token ids"
                )
            seen[tuple(ids)] = name
        self._rewards = np.array([config.labels[n] for n in self.label_names], dtype=np.float64)
        self._lengths = [len(ids) for ids in self.label_ids]
        self._max_label = max(self._lengths)
        has_chat = bool(getattr(tok, "chat_template", None))
        if config.rendering == "chat" and not has_chat:
            raise ConfigError(
                f"rendering: 'chat' but the tokenizer in {config.path!r} has no chat template; "
                "use rendering: plain (or auto)"
            )
        self._chat = config.rendering == "chat" or (config.rendering == "auto" and has_chat)
        self._lead = self._leading_special_ids() if not self._chat else []
        # Characters kept per text part before tokenizing (rendering.char_bound).
        self._bound = char_bound(tok, config.max_length, config.chars_per_token)
        #: Rows cut to fit ``max_length`` since this verifier was built.
        self.truncated_rows = 0

    def _fingerprint_extra(self) -> str:
        return "" if self._loaded is None else self._loaded.fingerprint

    def _leading_special_ids(self) -> list[int]:
        # Plain text gets the tokenizer's leading special tokens (BOS) but not trailing ones: an
        # EOS after the prefix would sit between the question and the label.
        plain = list(self._tok.encode("a", add_special_tokens=False))
        full = list(self._tok.encode("a", add_special_tokens=True))
        for k in range(len(full) - len(plain) + 1):
            if full[k : k + len(plain)] == plain:
                return full[:k]
        return []

    def _render(self, user: str) -> str:
        """The judge input text for the filled template (leading special ids excepted)."""
        cfg = self.cfg
        if self._chat:
            messages: list[dict[str, str]] = []
            if cfg.system_prompt:
                messages.append({"role": "system", "content": cfg.system_prompt})
            messages.append({"role": "user", "content": user})
            text = self._tok.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
            return str(text) + cfg.response_prefix
        return (
            (cfg.system_prompt + "\n\n" if cfg.system_prompt else "") + user + cfg.response_prefix
        )

    def _encode(self, texts: list[str]) -> list[list[int]]:
        # One tokenizer call for the whole batch (the fast tokenizer runs it in parallel). Chat
        # text already holds its special tokens as text; no trailing special tokens either way.
        if not texts:
            return []
        enc = self._tok(texts, add_special_tokens=False)["input_ids"]
        return [self._lead + list(ids) for ids in enc]

    def _row_text(self, batch: SampleBatch, i: int) -> _RowText | RowResult:
        cfg = self.cfg
        template, used = cfg.template, None
        if cfg.template_by_meta is not None:
            key = batch.metas[i].get(cfg.template_by_meta)
            if isinstance(key, str) and key in cfg.templates:
                template, used = cfg.templates[key], key
        completion = batch.completions[i]
        if cfg.judge_final_answer:
            completion = final_answer(completion)
        if cfg.empty_score is not None and not completion.strip():
            return ok(cfg.empty_score, reason="empty completion", label=None)
        ref = ""
        if "{reference}" in template:
            got = reference_text(batch.references[i])
            if got is None:
                return abstain("no reference: the judge template uses {reference}")
            if self._bound is not None and len(got) > self._bound:
                # The reference is fixed text (never cut): past the bound it cannot fit.
                return abstain(
                    f"the reference has {len(got)} characters, more than max_length="
                    f"{self.cfg.max_length} tokens can hold ({self._bound} characters)"
                )
            check_encodable(i, "reference", got)
            ref = got
        # Bound the texts before anything tokenizes them, keeping the ends that _fit keeps.
        completion, completion_cut = keep_end(completion, self._bound)
        prompt, prompt_cut = keep_end(prompt_for_judge(batch.prompts[i]), self._bound)
        check_encodable(i, "prompt", prompt)
        check_encodable(i, "completion", completion)
        return _RowText(template, prompt, completion, ref, used, completion_cut or prompt_cut)

    @property
    def reads_reference(self) -> bool:
        templates = [self.cfg.template, *self.cfg.templates.values()]
        return any("{reference}" in t for t in templates)

    def _fit(self, row: _RowText, ids: list[int]) -> _Prepared | RowResult:
        """Cut ``row`` to ``max_length`` (with the longest label): the prompt first, from its
        start; then the start of the completion. Abstains when the fixed text alone is too long."""
        budget = self.cfg.max_length - self._max_label
        truncated = row.cut
        if len(ids) > budget:
            truncated = True
            tok = self._tok
            prompt, completion = row.prompt, row.completion
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
                    return abstain(
                        f"judge input exceeds max_length={self.cfg.max_length} tokens even with "
                        "the prompt and completion removed"
                    )
                filled = fill_template(row.template, prompt, completion, row.reference)
                ids = self._encode([self._render(filled)])[0]
        if not ids:
            return abstain("empty judge input (template renders to no tokens)")
        return _Prepared(ids, truncated, row.used)

    def _prepare(self, batch: SampleBatch) -> list[_Prepared | RowResult]:
        """Per row: the prefix ids to judge, or the row's result when it is decided without the model."""
        rows: list[Any] = [self._guard(i, self._row_text, batch, i) for i in range(len(batch))]
        todo = [i for i, r in enumerate(rows) if isinstance(r, _RowText)]
        texts = [
            self._render(fill_template(r.template, r.prompt, r.completion, r.reference))
            for r in (rows[i] for i in todo)
        ]
        for i, ids in zip(todo, self._encode(texts), strict=True):
            rows[i] = self._guard(i, self._fit, rows[i], ids)
        return rows

    def _row_input(self, batch: SampleBatch, i: int) -> _Prepared | RowResult:
        """``_prepare`` for one row (for inspection and tests)."""
        return self._prepare(batch.take([i]))[0]

    def _forward(self, batch_ids: list[list[int]], model: Any, device: Any) -> np.ndarray:
        fn = (
            label_loglik_shared_prefix
            if self.cfg.scoring == "shared_prefix"
            else label_loglik_duplicate
        )
        return fn(model, batch_ids, self.label_ids, self._loaded.pad_id, device)

    def _score_batch(self, batch: SampleBatch, context: Mapping[str, ScoreBatch]) -> ScoreBatch:
        if self._loaded is None:
            raise RuntimeError(f"{self.name}: the verifier was closed")
        rows: list[RowResult | None] = [None] * len(batch)
        pending: list[tuple[int, _Prepared]] = []
        for i, got in enumerate(self._prepare(batch)):
            if isinstance(got, _Prepared):
                pending.append((i, got))
            else:
                rows[i] = got
        if pending:
            try:
                judged = self._judge([p.ids for _, p in pending])
            except Exception as exc:
                if self.cfg.on_error == "raise":
                    raise VerifierError(
                        f"{self.name}: judge forward failed on {len(pending)} rows: "
                        f"{type(exc).__name__}: {exc}"
                    ) from exc
                reason = f"{type(exc).__name__}: {exc}"
                judged = [(float("nan"), "error", {"reason": reason}) for _ in pending]
            for (idx, prep), row in zip(pending, judged, strict=True):
                if row[1] == "ok":
                    if prep.truncated:
                        row[2]["truncated"] = True
                        self.truncated_rows += 1
                    if prep.template is not None:
                        row[2]["template"] = prep.template
                rows[idx] = row
        return ScoreBatch.from_rows(self.name, [r for r in rows if r is not None])

    def _judge(self, prefixes: list[list[int]]) -> list[RowResult]:
        from safeladder.neural.batching import run_batched

        runtime = self.cfg.runtime
        if "cudnn_attention" not in runtime.model_fields_set:
            # Many small cached passes of new shapes: cuDNN's per-shape planning costs more
            # than it saves here (see RuntimeConfig.cudnn_attention).
            runtime = runtime.model_copy(update={"cudnn_attention": False})
        if self.cfg.scoring == "duplicate":
            # The engine budgets by prefix length; each prefix becomes m sequences here.
            m = len(self.label_ids)
            runtime = runtime.model_copy(
                update={
                    "max_tokens_per_batch": max(1, runtime.max_tokens_per_batch // m),
                    "max_batch_size": max(1, runtime.max_batch_size // m),
                }
            )
        ll = run_batched(prefixes, self._forward, self._loaded, runtime, cache_key=self.fingerprint)
        probs = label_probabilities(ll, self._lengths if self.cfg.length_normalize else None)
        names = self.label_names
        ti = names.index(self.cfg.true_label) if self.cfg.true_label in names else None
        fi = names.index(self.cfg.false_label) if self.cfg.false_label in names else None
        scores = aggregate_scores(probs, self._rewards, self.cfg.aggregate, ti, fi)
        lo, hi = self.score_range
        # Σ p·r can overshoot max(r) by a rounding error; the declared range is exact.
        scores = np.clip(scores, lo, hi)
        # A model that overflows (e.g. fp16) can give NaN or all -inf label log-likelihoods: that
        # row has no distribution, which is an error, never a score.
        bad = np.isnan(ll).any(axis=1) | ~np.isfinite(ll).any(axis=1)
        if bad.any() and self.cfg.on_error == "raise":
            raise VerifierError(
                f"{self.name}: non-finite label log-likelihoods for {int(bad.sum())} rows "
                f"(first: {ll[int(np.argmax(bad))].tolist()}); try runtime.dtype: float32"
            )
        out: list[RowResult] = []
        for s, p, row_bad, row_ll in zip(scores, probs, bad, ll, strict=True):
            if row_bad:
                reason = f"non-finite label log-likelihoods {row_ll.tolist()}"
                out.append((float("nan"), "error", {"reason": reason}))
                continue
            out.append(
                ok(
                    float(s),
                    label=names[int(np.argmax(p))],
                    label_probs={n: float(v) for n, v in zip(names, p, strict=True)},
                )
            )
        return out

    def close(self) -> None:
        # The engine's cache keeps a model alive only while someone references it.
        self._loaded = None
