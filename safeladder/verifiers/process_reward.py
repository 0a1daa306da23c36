"""``process_reward``: a process reward model that scores every step of a row in ONE forward.

What it checks: each step of the completion, as the PRM judges it in context, aggregated per
row. Inputs: ``Sample.prompt`` (the question: a string becomes the user message; a chat list is
used as it is) and ``Sample.completion`` (cut into steps); ``reference``, ``meta`` and images
are not read. Score range: [0, 1] (per-step probabilities and their aggregate).

The format is the Qwen2.5-Math-PRM one (``preset: qwen2_5_math_prm``; model card of
Qwen/Qwen2.5-Math-PRM-7B, "Hugging Face Transformers" usage): the completion is split into
steps (``split``, "\\n\\n" by default as the card recommends; each step stripped of surrounding
whitespace), the steps are joined with the ``step_token`` and one more is put after the last
(``"<extra_0>".join(steps) + "<extra_0>"``), and the conversation ``[system_prompt (when set
and the prompt has no system message), user prompt, assistant steps]`` is rendered with the
checkpoint's own chat template and tokenized without added special tokens (Qwen2's tokenizer
adds none, so these are the ids of the card's ``tokenizer.encode``). One forward gives the
head's two logits at every token; the reward of step ``k`` is ``softmax(logits at the k-th
step token)[1]``, as the card's ``make_step_rewards`` reads it. No prefix is ever re-scored.

Model: the released checkpoints name ``Qwen2ForProcessRewardModel`` from the remote code
``modeling_qwen2_rm.py`` (``trust_remote_code``); transformers has no native class for it (as of
5.x), and remote code is never run here. The checkpoint is loaded the documented way instead:
its backbone with ``AutoModel`` (``model_type: qwen2`` gives a native ``Qwen2Model``, which
takes the ``model.*`` tensors; transformers reports the ``score.*`` tensors as unexpected, since
this verifier reads them itself), and the head rebuilt from the ``score.*`` tensors as that file
defines it (and as vLLM and SGLang re-implement it): ``score = Sequential(Linear(h, h), ReLU(),
Linear(h, 2))`` on the last hidden states. The head is per token, so it is applied at the step
tokens only (the same numbers, without an ``h x h`` matmul over every position); it runs in the
backbone's dtype and the softmax in float32. Weights must be safetensors (one file or an index).

Aggregation (``aggregate``) over a row's scored steps: ``min`` (default: a solution is as good
as its worst step), ``product``, ``mean`` or ``last`` (the last step's probability).

Rows that are not scored by the model: an empty / whitespace-only completion (no steps)
abstains; so does a completion whose steps contain the ``step_token`` text itself (its steps
could not be told apart from the separators); a split regex past ``split.timeout_s`` is status
``timeout``. Rows longer than ``max_length`` tokens are cut as every neural verifier cuts them
(prompt first, then the completion's start): the steps whose step token was cut are reported
with status ``cut`` and left out of the aggregate, the row is flagged ``truncated``. The
completion's end is always kept, so the last step (the answer) is always scored.

``details[i]``: ``aggregate``, ``n_steps``, ``n_scored`` and ``steps`` = one dict per step with
``start``, ``end`` (character offsets into the completion, or into its final answer with
``judge_final_answer``), ``score`` (None when not scored) and ``status`` (``ok`` | ``cut``).
``score_steps(batch)`` returns the per-step probabilities per row (step-level search).

Example::

    {"type": "process_reward", "preset": "qwen2_5_math_prm",
     "path": "/models/Qwen2.5-Math-PRM-7B", "aggregate": "min"}
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import regex
from pydantic import Field, model_validator

from safeladder.config import load_yaml, preset_path
from safeladder.errors import ConfigError
from safeladder.neural.batching import Forward, pad_right, run_batched
from safeladder.neural.rendering import DEFAULT_CHARS_PER_TOKEN, RenderConfig, final_answer
from safeladder.neural.runtime import ModelKind, RuntimeConfig
from safeladder.types import Prompt, Sample, SampleBatch
from safeladder.verifiers.base import RowResult, VerifierConfig, abstain, ok, timed_out
from safeladder.verifiers.neural_base import NeuralVerifier, PreparedRows
from safeladder.verifiers.step_scorer import Span, StepSplit, split_steps

__all__ = ["PRESETS", "ProcessRewardConfig", "ProcessRewardVerifier", "read_score_head"]

#: Shipped presets (``safeladder/presets/process_reward/<name>.yaml``).
PRESETS = ("qwen2_5_math_prm",)
_PRESET_FIELDS = frozenset(["system_prompt", "step_token", "split"])
#: The head tensors of ``Qwen2ForProcessRewardModel`` (``modeling_qwen2_rm.py``).
HEAD_KEYS = ("score.0.weight", "score.0.bias", "score.2.weight", "score.2.bias")
#: Index of the "correct step" class in the head's two logits (``make_step_rewards``: ``[:, 1]``).
POSITIVE = 1


def load_preset(name: str) -> dict[str, Any]:
    """The fields of a shipped process-reward preset.

    >>> load_preset("qwen2_5_math_prm")["step_token"]
    '<extra_0>'
    """
    path = preset_path("process_reward", name)
    if path is None:
        raise ConfigError(
            f"preset: unknown process_reward preset {name!r}; known: {', '.join(PRESETS)}"
        )
    data = load_yaml(path)
    unknown = sorted(set(data) - _PRESET_FIELDS)
    if unknown:
        raise ConfigError(f"{path}: keys {unknown} cannot be set by a preset")
    return data


class ProcessRewardConfig(VerifierConfig):
    """Config of a one-forward process reward model (see the module docstring)."""

    type: Literal["process_reward"] = "process_reward"
    path: str = Field(
        description=(
            "Local directory of the PRM: a Qwen2ForProcessRewardModel checkpoint (model.* "
            "backbone + score.0 / score.2 head, safetensors) with its tokenizer. Never downloaded."
        )
    )
    preset: Literal["qwen2_5_math_prm"] | None = Field(
        default=None,
        description=(
            "Shipped preset: qwen2_5_math_prm (Qwen2.5-Math-PRM-7B/72B: system prompt 'Please "
            "reason step by step, and put your final answer within \\boxed{}.', step token "
            "<extra_0>, steps split at blank lines). Fills every field it sets not set here."
        ),
    )
    step_token: str = Field(
        default="",
        description=(
            "The token put after every step, at which the head is read (one added token of "
            "the tokenizer, e.g. '<extra_0>'). Required unless a preset sets it."
        ),
    )
    system_prompt: str | None = Field(
        default=None,
        description=(
            "System message put before the prompt when the prompt has none; null: no system "
            "message (the chat template may add its default)."
        ),
    )
    split: StepSplit = Field(
        default_factory=StepSplit,
        description="How to cut the completion into steps: {separator: '\\n\\n'} or {regex: '...'}.",
    )
    aggregate: Literal["min", "product", "mean", "last"] = Field(
        default="min",
        description="Row score from its step probabilities: min, product, mean or last.",
    )
    judge_final_answer: bool = Field(
        default=False,
        description="Score only the text after the last </think> of the completion.",
    )
    max_length: int = Field(
        default=4096,
        ge=8,
        description=(
            "Tokens per row at most (also capped by the model's positions); longer rows are "
            "cut (prompt first, then the completion's start) and their cut steps not scored."
        ),
    )
    chars_per_token: int | None = Field(
        default=DEFAULT_CHARS_PER_TOKEN,
        ge=1,
        description=(
            "Before tokenizing, the prompt and the completion each keep at most max_length x "
            "this many characters (their ends); null tokenizes whole texts."
        ),
    )
    runtime: RuntimeConfig = Field(
        default_factory=RuntimeConfig, description="Device, dtype, batching and caching."
    )

    @model_validator(mode="before")
    @classmethod
    def _fill_from_preset(cls, data: Any) -> Any:
        # Explicit fields win over the preset's (split as a whole: separator and regex exclude
        # each other).
        if not isinstance(data, Mapping) or not data.get("preset"):
            return data
        if data["preset"] not in PRESETS:
            return data  # the Literal check reports it, naming the key
        return {**load_preset(str(data["preset"])), **data}

    @model_validator(mode="after")
    def _check(self) -> ProcessRewardConfig:
        if not self.path.strip():
            raise ValueError("path: give the local directory of the process reward model")
        if not self.step_token:
            raise ValueError(
                "step_token: required (the token after every step, e.g. '<extra_0>'), or set "
                f"preset: one of {', '.join(PRESETS)}"
            )
        return self

    def build(self) -> ProcessRewardVerifier:
        return ProcessRewardVerifier(self)


def read_score_head(model_dir: str | Path) -> dict[str, Any]:
    """The ``score.*`` tensors of a Qwen2ForProcessRewardModel checkpoint (CPU torch tensors).

    Reads ``model.safetensors`` or the shards ``model.safetensors.index.json`` names.

    Raises:
        ConfigError: no safetensors weights, a head tensor missing, or inconsistent shapes.
    """
    from safetensors import safe_open

    d = Path(model_dir)
    index = d / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
        files = sorted({weight_map[k] for k in HEAD_KEYS if k in weight_map})
    elif (d / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        raise ConfigError(
            f"path: {str(d)!r} has no model.safetensors (or index); the process reward head is "
            "read from safetensors weights"
        )
    found: dict[str, Any] = {}
    for name in files:
        with safe_open(str(d / name), framework="pt") as fh:
            for key in HEAD_KEYS:
                if key in fh.keys():  # noqa: SIM118 (safe_open has no __contains__)
                    found[key] = fh.get_tensor(key)
    missing = [k for k in HEAD_KEYS if k not in found]
    if missing:
        raise ConfigError(
            f"path: {str(d)!r} lacks the head tensors {missing}; a process_reward checkpoint is "
            "a Qwen2ForProcessRewardModel (model.* backbone + score.0 / score.2 = Linear(h, h), "
            "ReLU, Linear(h, 2)), like Qwen2.5-Math-PRM-7B"
        )
    h = int(found["score.0.weight"].shape[1])
    shapes = {k: tuple(v.shape) for k, v in found.items()}
    if shapes != {
        "score.0.weight": (h, h),
        "score.0.bias": (h,),
        "score.2.weight": (2, h),
        "score.2.bias": (2,),
    }:
        raise ConfigError(
            f"path: {str(d)!r}: head shapes {shapes} are not Linear(h, h), Linear(h, 2)"
        )
    return found


def _build_head(state: Mapping[str, Any], device: Any, dtype: Any) -> Any:
    import torch

    h = int(state["score.0.weight"].shape[1])
    head = torch.nn.Sequential(torch.nn.Linear(h, h), torch.nn.ReLU(), torch.nn.Linear(h, 2))
    head.load_state_dict({k.removeprefix("score."): v for k, v in state.items()})
    return head.to(device=device, dtype=dtype).eval().requires_grad_(False)


@dataclass
class _Row:
    """One row ready for the model: its ids, its step spans and how many step tokens survived."""

    ids: list[int]
    spans: list[Span]
    kept: int


class ProcessRewardVerifier(NeuralVerifier):
    """Per-step probabilities of a PRM head at the step tokens, one forward per row."""

    model_kind: ClassVar[ModelKind] = "encoder"
    score_range = (0.0, 1.0)

    def __init__(self, config: ProcessRewardConfig):
        super().__init__(config)
        self.cfg = config
        render = RenderConfig(
            template="chat", max_length=config.max_length, chars_per_token=config.chars_per_token
        )
        loaded = self._load(config.path, render, config.runtime)
        tok = loaded.tokenizer
        if not getattr(tok, "chat_template", None):
            raise ConfigError(
                f"path: the tokenizer in {config.path!r} has no chat template; the PRM's input is "
                "its chat rendering (is this the released checkpoint?)"
            )
        if config.step_token not in tok.get_added_vocab():
            raise ConfigError(
                f"step_token: {config.step_token!r} is not an added token of the tokenizer in "
                f"{config.path!r}, so it would not stay one token in context"
            )
        self.step_id = int(tok.convert_tokens_to_ids(config.step_token))
        state = read_score_head(loaded.path)
        hidden = getattr(loaded.config, "hidden_size", None)
        if hidden is not None and int(state["score.0.weight"].shape[1]) != int(hidden):
            raise ConfigError(
                f"path: the head takes {int(state['score.0.weight'].shape[1])} features but the "
                f"backbone's hidden_size is {hidden}"
            )
        import torch

        self._heads = {
            str(torch.device(d)): _build_head(state, torch.device(d), loaded.dtype)
            for d in dict.fromkeys(loaded.devices)
        }
        self._pattern = regex.compile(config.split.regex) if config.split.regex else None
        self._local = threading.local()

    # -- rows --------------------------------------------------------------------------------

    def _messages(self, prompt: Prompt) -> list[dict[str, Any]]:
        msgs: list[dict[str, Any]] = (
            [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        )
        has_system = bool(msgs) and isinstance(msgs[0], Mapping) and msgs[0].get("role") == "system"
        if self.cfg.system_prompt is not None and not has_system:
            msgs = [{"role": "system", "content": self.cfg.system_prompt}, *msgs]
        return msgs

    def _plan(self, completion: str) -> tuple[str, list[Span]] | RowResult:
        """``(joined steps, spans)`` of one completion, or the row's result without the model."""
        text = final_answer(completion) if self.cfg.judge_final_answer else completion
        split = self.cfg.split
        try:
            spans = split_steps(text, split.separator, self._pattern, split.timeout_s)
        except TimeoutError:
            return timed_out(f"the step regex ran past split.timeout_s={split.timeout_s}")
        if not spans:
            return abstain("no steps: the completion is empty or whitespace only")
        steps = [text[a:b].strip() for a, b in spans]
        token = self.cfg.step_token
        if any(token in s for s in steps):
            return abstain(
                f"a step contains the step token {token!r} itself, so its steps cannot be told "
                "apart from the separators"
            )
        return token.join(steps) + token, spans

    def _prepare(self, batch: SampleBatch) -> PreparedRows:
        n = len(batch)
        results: list[RowResult | None] = [None] * n
        inputs: list[Any] = [None] * n
        truncated = np.zeros(n, dtype=bool)
        planned: list[int] = []
        spans: dict[int, list[Span]] = {}
        prompts: list[Prompt] = []
        joined: list[str] = []
        for i in range(n):
            got = self._guard(i, self._plan, batch.completions[i])
            if isinstance(got, tuple) and isinstance(got[0], str):
                planned.append(i)
                joined.append(got[0])
                spans[i] = got[1]
                prompts.append(self._messages(batch.prompts[i]))
            else:
                results[i] = got
        if not planned:
            return PreparedRows(inputs, results, truncated)
        enc, pre = self._encode(SampleBatch.from_columns(prompts, joined))
        for k, i in enumerate(planned):
            if pre[k] is not None:
                results[i] = pre[k]
                continue
            assert enc is not None
            ids = list(enc.ids[k])
            kept = ids[enc.completion_start[k] :].count(self.step_id)
            truncated[i] = bool(enc.truncated[k])
            if kept == 0:
                results[i] = abstain(
                    f"max_length ({self.max_length} tokens) cut every step token; no step is scored"
                )
            elif kept > len(spans[i]):
                results[i] = (
                    float("nan"),
                    "error",
                    {"reason": f"{kept} step tokens for {len(spans[i])} steps"},
                )
            else:
                inputs[i] = _Row(ids, spans[i], kept)
        return PreparedRows(inputs, results, truncated)

    # -- model -------------------------------------------------------------------------------

    def _forward(self) -> Forward:
        """``(b, 1 + max_length)``: the count of step tokens in the row, then P(correct) at each,
        in order, NaN after (a fixed width, so cached rows of any call fit together)."""
        pad_id, step_id, heads, width = (
            self.loaded.pad_id,
            self.step_id,
            self._heads,
            self.max_length,
        )

        def forward(batch: list[list[int]], model: Any, device: Any) -> np.ndarray:
            import torch

            input_ids, mask = pad_right(batch, pad_id, device)
            hidden = model(input_ids=input_ids, attention_mask=mask, use_cache=False)
            hidden = hidden.last_hidden_state
            at = (input_ids == step_id) & mask.bool()
            out = np.full((len(batch), 1 + width), np.nan, dtype=np.float32)
            counts = at.sum(dim=1).cpu().numpy()
            out[:, 0] = counts
            rows, cols = at.nonzero(as_tuple=True)  # row-major: each row's tokens in order
            if rows.numel():
                logits = heads[str(device)](hidden[rows, cols])
                probs = torch.softmax(logits.float(), dim=-1)[:, POSITIVE].cpu().numpy()
                start = 0
                for j, c in enumerate(counts):
                    out[j, 1 : 1 + int(c)] = probs[start : start + int(c)]
                    start += int(c)
            return out

        return forward

    def _run(self, inputs: list[Any]) -> np.ndarray:
        # The rows' spans travel to _rows_from_outputs, which _score_batch calls next in this
        # same thread (thread-local: concurrent calls on one verifier keep their own rows).
        self._local.rows = inputs
        return run_batched(
            [r.ids for r in inputs],
            self._forward(),
            self.loaded,
            self.runtime,
            cache_key=self.fingerprint,
        )

    def _rows_from_outputs(self, outputs: np.ndarray) -> list[RowResult]:
        rows: list[_Row] = self._local.rows
        self._local.rows = None
        out: list[RowResult] = []
        for r, o in zip(rows, outputs, strict=True):
            count = int(o[0])
            probs = o[1 + count - r.kept : 1 + count].astype(np.float64)
            cut = len(r.spans) - r.kept
            steps: list[dict[str, Any]] = []
            for k, (a, b) in enumerate(r.spans):
                scored = k >= cut
                steps.append(
                    {
                        "start": a,
                        "end": b,
                        "score": float(probs[k - cut]) if scored else None,
                        "status": "ok" if scored else "cut",
                    }
                )
            out.append(
                ok(
                    min(max(self._aggregate(probs), 0.0), 1.0),
                    aggregate=self.cfg.aggregate,
                    n_steps=len(r.spans),
                    n_scored=r.kept,
                    steps=steps,
                )
            )
        return out

    def _aggregate(self, probs: np.ndarray) -> float:
        agg = self.cfg.aggregate
        if agg == "min":
            return float(probs.min())
        if agg == "product":
            return float(np.prod(probs))
        if agg == "mean":
            return float(probs.mean())
        return float(probs[-1])

    def score_steps(
        self, samples: SampleBatch | Sample | Iterable[Sample | Mapping[str, Any]]
    ) -> list[np.ndarray]:
        """Per-row step probabilities, for step-level search.

        Returns:
            One float32 array per row, shape ``(n_steps_i,)``, NaN for steps cut by
            ``max_length``; an empty array for a row the model did not score (``score`` gives
            the reason).
        """
        result = self.score(samples)
        return [
            np.asarray(
                [np.nan if s["score"] is None else s["score"] for s in d.get("steps", [])]
                if st == "ok"
                else [],
                dtype=np.float32,
            )
            for d, st in zip(result.details, result.status, strict=True)
        ]
