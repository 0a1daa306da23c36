"""``label_judge``: a causal LM judge scored by the likelihood of each allowed label.

What it checks: what the judge template asks (safety, value, correctness against a reference).
Inputs: ``Sample.completion`` (``{completion}``), ``Sample.prompt`` (``{prompt}``),
``Sample.reference`` (``{reference}``, only when the template uses it) and ``Sample.meta``
(only ``meta[template_by_meta]``, to pick a template). Score range: [min reward, max reward] of
``labels``; [0, 1] for ``aggregate: true_false``. Example configs are at the end.

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

Compute. ``scoring: shared_prefix`` runs each row's prefix once with the KV cache;
the first token of every label is read from the prefix's last logits, and the remaining tokens
of each multi-token label in one small pass over the cached prefix (the cache is cropped back
after each label). ``scoring: duplicate`` runs ``prefix + label`` for every (row, label) pair
in one forward (simpler; m times the tokens). ``scoring: tree`` (default) runs one forward with
each prefix once and every label after it as siblings under a 4-D mask (1.2-1.9x
shared_prefix on CPU); VLM rows, flash-attention and sliding windows use the cache. All agree
within 1e-4. Micro-batching, dedup, the LRU cache and replicas come from the engine
(``safeladder.neural``).

Details per scored row: ``label`` (the most likely label), ``label_probs`` ({label: p}),
``template`` when a ``templates`` entry was used, ``truncated`` when cut.

Rows that abstain (NaN): the template uses ``{reference}`` and the row has none; the judge
prompt is empty; fixed text alone exceeds ``max_length``. With ``empty_score`` set, an empty
(final) completion scores that value without running the model (SafeWork's knowledge verifier
gives an empty answer 0).

A vision-language ``path`` (Qwen2-VL / Qwen2.5-VL, LLaVA, Idefics3 / SmolVLM; see
``safeladder.neural.vision``) is judged through its processor, the row's images leading the user
turn; image tokens count in ``max_length``; an unreadable image is that row's error.

Guard models (``safeladder.verifiers.judge_fields``): ``rendering: conversation`` renders the
row with the checkpoint's own chat template as a user/assistant conversation
(``chat_template_kwargs``, ``message_content``); ``fields`` scores answer lines written before
the labels (teacher-forced with their most likely answers); ``categories`` reads category codes
after a label (``details["categories"]``); ``labels_in_context``, ``add_bos``.

Presets (``safeladder/presets/label_judge/``, each citing its source; a preset fills every field
the config does not set): ``safework_*`` and ``guardrank_<dimension>`` (wording ours, after
papers.md §1.1 / §4); the released guard models in their own formats: ``llama_guard_3``,
``llama_guard_4``, ``shieldgemma_<harm>``, ``wildguard``, ``harmbench_classifier``.

Example::

    {"type": "label_judge", "preset": "llama_guard_3", "path": "/models/Llama-Guard-3-8B"}
    {"type": "label_judge", "path": "/models/judge",
     "template": "Is this answer polite?\\n{completion}\\nAnswer yes or no.",
     "labels": {"yes": 1.0, "no": 0.0}, "label_prefix": ""}
"""

from __future__ import annotations

import math
from typing import Any, Literal, NamedTuple

import numpy as np
from pydantic import Field, model_validator

from safeladder.errors import ConfigError, InputError, VerifierError
from safeladder.images import ImageLimits, ImageRef, image_key, load_batch_images
from safeladder.neural.batching import Forward, run_batched
from safeladder.neural.judge_prompt import (
    fill_template,
    has_chat_template,
    prompt_for_judge,
    reference_text,
)
from safeladder.neural.label_likelihood import (
    aggregate_scores,
    label_forward,
    label_loglik_duplicate,
    label_loglik_shared_prefix,
    label_probabilities,
)
from safeladder.neural.rendering import (
    DEFAULT_CHARS_PER_TOKEN,
    char_bound,
    check_encodable,
    final_answer,
    keep_end,
)
from safeladder.neural.runtime import RuntimeConfig
from safeladder.neural.vision import row_image_refs
from safeladder.types import SampleBatch
from safeladder.verifiers.base import RowResult, Verifier, abstain, ok
from safeladder.verifiers.judge_fields import (
    FollowUps,
    GuardJudgeConfig,
    GuardRenderer,
    Staged,
    context_ids,
)
from safeladder.verifiers.judge_presets import PRESETS, PresetName, load_preset, merge_preset
from safeladder.verifiers.neural_base import NeuralVerifier, PreparedRows

# The likelihood algorithms and the templating moved to the engine; re-exported here.
__all__ = [
    "PRESETS",
    "LabelJudge",
    "LabelJudgeConfig",
    "aggregate_scores",
    "fill_template",
    "label_loglik_duplicate",
    "label_loglik_shared_prefix",
    "label_probabilities",
    "load_preset",
    "prompt_for_judge",
    "reference_text",
]


class LabelJudgeConfig(GuardJudgeConfig):
    """Config of a causal-LM judge scored by label likelihoods (see the module docstring)."""

    type: Literal["label_judge"] = "label_judge"
    path: str = Field(
        description=(
            "Local directory of the judge: a Hugging Face causal LM (config.json, weights, "
            "tokenizer). Never downloaded."
        )
    )
    preset: PresetName | None = Field(
        default=None,
        description=(
            "Shipped judge preset: safework_safety (six-label safety taxonomy, SafeWork's "
            "reward map, stricter template for meta task 'jailbreak'), safework_value "
            "(good/bad, score P(good)), safework_knowledge (TRUE/FALSE against the reference, "
            "(P(TRUE)+1-P(FALSE))/2); guardrank_<dimension> for privacy, bias, toxicity, "
            "legality, hallucination (MLLMGuard's 0-3 scale as labels '0'..'3', reward "
            "1 - E[s]/3; Chinese template for meta lang 'zh'); released guard models in their "
            "own formats, score = P(safe): llama_guard_3, llama_guard_4 (+ S1-S14 categories), "
            "shieldgemma_<harm> (dangerous_content, harassment, hate_speech, "
            "sexually_explicit; P(No)), wildguard (P(harmful response: no); request and "
            "refusal fields in details), harmbench_classifier (P(No)). It fills every "
            "template/label/scoring field not set here."
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
    labels: dict[str, float] = Field(
        default_factory=dict,
        description=(
            "Allowed labels and their rewards, e.g. {'good': 1.0, 'bad': 0.0}; at least two. "
            "The label text is what the judge would answer."
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
    scoring: Literal["shared_prefix", "duplicate", "tree"] = Field(
        default="tree",
        description=(
            "'shared_prefix': run each row's prefix once and score the labels over its KV cache; "
            "'duplicate': one forward over prefix + label for every (row, label) pair; 'tree': "
            "one forward, each prefix once with every label after it under a block mask."
        ),
    )
    runtime: RuntimeConfig = Field(
        default_factory=RuntimeConfig,
        description="Device, dtype, attention kernel and batching settings of the judge model.",
    )
    image_limits: ImageLimits = Field(
        default_factory=ImageLimits,
        description=(
            "Vision-language judges: limits every image of a row passes before it is decoded "
            "(count, pixels, bytes, root, http); a refused image is that row's error."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _fill_from_preset(cls, data: Any) -> Any:
        return merge_preset(data)

    @model_validator(mode="after")
    def _check(self) -> LabelJudgeConfig:
        self._check_guard(self.rendering, self.template, self.system_prompt)
        for key, tpl in [("template", self.template)] + [
            (f"templates.{k}", v) for k, v in self.templates.items()
        ]:
            if "{completion}" not in tpl and self.rendering != "conversation":
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


class _RowText(NamedTuple):
    """A row's pieces before rendering: template, prompt text, completion text, reference text."""

    template: str
    prompt: str
    completion: str
    reference: str
    used: str | None  # the ``templates`` key, when an alternative template was chosen
    cut: bool = False  # the prompt or completion lost characters to the character bound


class _Prepared(NamedTuple):
    """A row ready for the judge: prefix ids (a ``VisionRow`` for a vision-language judge),
    whether they were cut, the alternative template used."""

    ids: Any
    truncated: bool
    template: str | None


class LabelJudge(NeuralVerifier):
    """A causal LM judge; see the module docstring. Built from ``LabelJudgeConfig``."""

    model_kind = "causal_lm"

    def __init__(self, config: LabelJudgeConfig):
        super().__init__(config)
        self.cfg = config
        self.score_range = config.score_bounds()  # type: ignore[misc]
        self._load(config.path, None, config.runtime)
        tok = self.loaded.tokenizer
        self.label_names: list[str] = list(config.labels)
        context = config.response_prefix if config.labels_in_context else ""
        self.label_ids = [
            context_ids(tok, context, config.label_prefix + n) for n in self.label_names
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
        processor = self.loaded.processor
        has_chat = has_chat_template(processor if processor is not None else tok)
        mode = config.rendering
        if processor is not None and (mode in ("plain", "conversation") or config.fields):
            raise ConfigError(
                f"rendering: {mode!r} / fields: {config.path!r} is a vision-language model; its "
                "images are placed by the processor's chat template (use 'auto' or 'chat')"
            )
        if mode in ("chat", "conversation") and not has_chat:
            raise ConfigError(
                f"rendering: {mode!r} but the tokenizer in {config.path!r} has no chat template; "
                "use rendering: plain (or auto)"
            )
        # With answer fields the renderer stops before them; FollowUps adds response_prefix.
        prefix = "" if config.fields else config.response_prefix
        self._renderer = GuardRenderer(
            tok,
            mode == "chat" or (mode == "auto" and has_chat),
            config.system_prompt,
            prefix,
            processor=processor,
            conversation=mode == "conversation",
            template_kwargs=config.chat_template_kwargs,
            parts=config.message_content == "parts",
            add_bos=config.add_bos,
        )
        self._follow = FollowUps(
            config, self._renderer, self.label_names, self.label_ids, config.response_prefix
        )
        self.max_length = config.max_length
        # Characters kept per text part before tokenizing (rendering.char_bound).
        self._bound = char_bound(tok, config.max_length, config.chars_per_token)

    @property
    def _tok(self) -> Any:
        """The judge tokenizer every text goes through (the renderer's)."""
        return self._renderer.tok

    @_tok.setter
    def _tok(self, tok: Any) -> None:
        self._renderer.tok = tok

    def _fingerprint_extra(self) -> str:
        return self.loaded.fingerprint

    @property
    def reads_reference(self) -> bool:
        templates = [self.cfg.template, *self.cfg.templates.values()]
        return any("{reference}" in t for t in templates)

    # -- text ------------------------------------------------------------------------------------

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

    def _fit(self, row: _RowText, ids: list[int]) -> _Prepared | RowResult:
        """Cut ``row`` to ``max_length`` (with the longest label and any follow-up text): the
        prompt first, from its start; then the start of the completion. Abstains when the fixed
        text alone is too long."""
        budget = self.cfg.max_length - self._max_label - self._follow.allowance()
        r = self._renderer
        got = r.fit_parts(row.template, row.prompt, row.completion, row.reference, ids, budget)
        if got is None:
            return abstain(
                f"judge input exceeds max_length={self.cfg.max_length} tokens even with "
                "the prompt and completion removed"
            )
        prompt, completion, cut_ids, cut = got
        if not cut_ids:
            return abstain("empty judge input (template renders to no tokens)")
        if not self.cfg.fields:
            return _Prepared(cut_ids, row.cut or cut, row.used)
        text = r.row_text(row.template, prompt, completion, row.reference)  # fields append to it
        return _Prepared(Staged(text, cut_ids), row.cut or cut, row.used)

    def _prepare_rows(self, batch: SampleBatch) -> list[_Prepared | RowResult]:
        """Per row: the prefix ids to judge, or the row's result when it is decided without the model."""
        rows: list[Any] = [self._guard(i, self._row_text, batch, i) for i in range(len(batch))]
        if self.loaded.processor is not None:
            return self._prepare_vision_rows(batch, rows)
        todo, texts = [], []
        for i, r in enumerate(rows):
            if isinstance(r, _RowText):  # a chat template may raise on a row: that row's error
                text = self._guard(i, self._renderer.row_text, *r[:4])
                if isinstance(text, str):
                    todo.append(i)
                    texts.append(text)
                else:
                    rows[i] = text
        for i, ids in zip(todo, self._renderer.encode(texts), strict=True):
            rows[i] = self._guard(i, self._fit, rows[i], ids)
        return rows

    def _prepare_vision_rows(self, batch: SampleBatch, rows: list[Any]) -> list[Any]:
        """``_prepare_rows`` for a vision-language judge (images decoded once per batch)."""
        refs: list[list[Any]] = [[] for _ in rows]
        for i, r in enumerate(rows):
            if isinstance(r, _RowText):
                got = self._guard(i, row_image_refs, batch.prompts[i], batch.images[i], i)
                refs[i], rows[i] = (got, r) if isinstance(got, list) else ([], got)
        decoded = load_batch_images(refs, self.image_limits)
        for i, r in enumerate(rows):
            if isinstance(r, _RowText):
                rows[i] = self._guard(i, self._vision_input, r, refs[i], decoded[i], i)
        return rows

    def _vision_input(
        self, row: _RowText, refs: list[ImageRef], images: list[Any] | InputError, i: int
    ) -> _Prepared | RowResult:
        if isinstance(images, InputError):
            raise images
        keys = [image_key(r, self.image_limits) for r in refs]
        budget = self.max_length - self._max_label
        got = self._renderer.vision_input(*row[:4], images, keys, budget, i)
        if got is None:
            return abstain(f"judge input with its images exceeds max_length={self.cfg.max_length}")
        return _Prepared(got[0], row.cut or got[1], row.used)

    def _row_input(self, batch: SampleBatch, i: int) -> _Prepared | RowResult:
        """``_prepare_rows`` for one row (for inspection and tests)."""
        return self._prepare_rows(batch.take([i]))[0]

    # -- the engine steps ------------------------------------------------------------------------

    def _prepare(self, batch: SampleBatch) -> PreparedRows:
        rows = self._prepare_rows(batch)
        prepared = [r if isinstance(r, _Prepared) else None for r in rows]
        return PreparedRows(
            inputs=[p.ids if p is not None else None for p in prepared],
            results=[None if isinstance(r, _Prepared) else r for r in rows],
            truncated=np.array([p is not None and p.truncated for p in prepared], dtype=bool),
            extra=[
                {"template": p.template} if p and p.template is not None else {} for p in prepared
            ],
        )

    def _truncation_how(self) -> str:
        return "the prompt from its start first, then the completion's start"

    def _forward(self) -> Forward:
        return label_forward(self.label_ids, self.loaded.pad_id, self.cfg.scoring)

    def _run(self, inputs: list[Any]) -> np.ndarray:
        if not self._follow.active:
            return super()._run(inputs)

        def score(prefixes: list[Any], labels: list[list[int]], tag: str) -> np.ndarray:
            fwd = label_forward(labels, self.loaded.pad_id, self.cfg.scoring)
            rt = self._batch_runtime(len(labels))
            key = f"{self.fingerprint}|{tag}"
            return run_batched(prefixes, fwd, self.loaded, rt, cache_key=key, out_dim=len(labels))

        return self._follow.run(inputs, score)

    def _batch_runtime(self, m: int | None = None) -> RuntimeConfig:
        runtime = self.cfg.runtime
        if "cudnn_attention" not in runtime.model_fields_set:
            # Many small cached passes of new shapes: cuDNN's per-shape planning costs more
            # than it saves here (see RuntimeConfig.cudnn_attention).
            runtime = runtime.model_copy(update={"cudnn_attention": False})
        if self.cfg.scoring == "duplicate":
            # The engine budgets by prefix length; each prefix becomes m sequences here.
            m = m or len(self.label_ids)
            runtime = runtime.model_copy(
                update={
                    "max_tokens_per_batch": max(1, runtime.max_tokens_per_batch // m),
                    "max_batch_size": max(1, runtime.max_batch_size // m),
                }
            )
        return runtime

    def _rows_from_outputs(self, outputs: np.ndarray) -> list[RowResult]:
        """Label log-likelihoods ``(rows, m)`` (then any follow-up columns) → label
        distribution → the aggregate score."""
        ll, fields, cats = self._follow.split(outputs)
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
        for i, (s, p, row_bad, row_ll) in enumerate(zip(scores, probs, bad, ll, strict=True)):
            if row_bad:
                reason = f"non-finite label log-likelihoods {row_ll.tolist()}"
                out.append((float("nan"), "error", {"reason": reason}))
                continue
            out.append(
                ok(
                    float(s),
                    label=names[int(np.argmax(p))],
                    label_probs={n: float(v) for n, v in zip(names, p, strict=True)},
                    **self._follow.details(fields, cats, i),
                )
            )
        return out
