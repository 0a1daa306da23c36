"""Configs of inference-time guidance: sampling, the three search modes, ``safeladder generate``.

Every model is frozen with ``extra="forbid"``, so a typo in a YAML key is an error naming the key
path (``safeladder.config.validate``). A ``generate`` YAML file looks like::

    model: {path: /models/my-policy, runtime: {device: auto}}
    sampling: {max_new_tokens: 256, temperature: 0.8, seed: 0}
    reward: configs/reward/math_grpo.yaml     # final reward (a path, a preset name or a mapping)
    search:
      mode: guided                            # best_of_n | guided | vote
      beams: 2
      candidates: 4
      step: {separator: "\\n\\n", max_tokens: 48}
      max_steps: 8
      step_reward: {terms: [...]}             # optional; default: the final reward
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from safeladder.neural.runtime import RuntimeConfig

#: What guided search emits when every candidate step is vetoed (a refusal, in the spirit of
#: SafeLadder's "safe fallback"); configurable per run.
DEFAULT_FALLBACK = "I'm sorry, but I can't help with that request."


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SamplingConfig(_Frozen):
    """How candidates are sampled from the causal LM."""

    max_new_tokens: int = Field(
        default=256, ge=1, description="Tokens generated per completion at most (all steps)."
    )
    temperature: float = Field(
        default=1.0,
        ge=0.0,
        description="Softmax temperature; 0 = greedy (every candidate of a context is the same).",
    )
    top_k: int | None = Field(
        default=None, ge=1, description="Sample from the k most likely tokens only (None: all)."
    )
    top_p: float = Field(
        default=1.0, gt=0.0, le=1.0, description="Nucleus sampling mass (1.0: off)."
    )
    seed: int = Field(
        default=0, description="Seed of the sampling generator; the same seed, the same samples."
    )
    batch_size: int = Field(
        default=64,
        ge=1,
        description="Sequences decoded together at most (contexts x samples per context).",
    )
    chat_template: Literal["auto", "always", "never"] = Field(
        default="auto",
        description=(
            "Render prompts with the tokenizer's chat template: 'auto' when it has one (a string "
            "prompt becomes one user message), 'always' (error without one), 'never' (plain text; "
            "chat prompts are joined by newlines)."
        ),
    )
    add_special_tokens: bool = Field(
        default=False,
        description=(
            "Let the tokenizer add its special tokens when encoding the rendered prompt (chat "
            "templates already contain them; some tokenizers would append an end-of-text)."
        ),
    )


class ModelConfig(_Frozen):
    """The local causal LM that generates (a Hugging Face directory; nothing is downloaded)."""

    path: str = Field(description="Local Hugging Face causal-LM directory.")
    runtime: RuntimeConfig = Field(
        default_factory=RuntimeConfig,
        description="Device / dtype / threads, as for neural verifiers (batch knobs unused).",
    )


class BestOfNConfig(_Frozen):
    """Sample ``n`` completions per prompt, keep the one with the highest reward."""

    mode: Literal["best_of_n"] = "best_of_n"
    n: int = Field(default=8, ge=1, description="Completions sampled per prompt.")
    fallback: str = Field(
        default=DEFAULT_FALLBACK,
        description="Completion returned when a gate vetoes every sample (a refusal template).",
    )


class StepConfig(_Frozen):
    """Where one step of guided search ends: at ``separator``, at EOS, or after ``max_tokens``."""

    separator: str | None = Field(
        default="\n\n",
        description="Text that ends a step (kept in the step); null: steps end by token budget.",
    )
    max_tokens: int = Field(default=64, ge=1, description="Tokens per step at most.")

    @model_validator(mode="after")
    def _non_empty(self) -> StepConfig:
        if self.separator == "":
            raise ValueError("separator is empty; use e.g. '\\n\\n' or null (token budget only)")
        return self


class GuidedConfig(_Frozen):
    """Step-level beam search steered by a step reward, with gates as hard constraints."""

    mode: Literal["guided"] = "guided"
    beams: int = Field(default=2, ge=1, description="Prefixes kept per prompt after each step (b).")
    candidates: int = Field(
        default=4, ge=1, description="Continuations sampled per kept prefix at each step (k)."
    )
    step: StepConfig = Field(default_factory=StepConfig, description="How a step ends.")
    max_steps: int = Field(
        default=8, ge=1, description="Steps at most; unfinished beams are then final as they are."
    )
    step_reward: str | dict[str, Any] | None = Field(
        default=None,
        description=(
            "Reward scoring prompt + prefix + candidate after every step (a YAML path, preset name "
            "or mapping); its gates prune candidates. Default: the final reward."
        ),
    )
    fallback: str = Field(
        default=DEFAULT_FALLBACK,
        description="Completion returned when every candidate is vetoed (a refusal template).",
    )


class VoteConfig(_Frozen):
    """Sample ``n`` answers, group equal answers, pick the largest total stated confidence."""

    mode: Literal["vote"] = "vote"
    n: int = Field(default=8, ge=1, description="Answers sampled per prompt.")
    answer: Literal["math", "choice", "qa"] = Field(
        default="math",
        description=(
            "How answers are read and compared: 'math' (math_answer extraction, numeric "
            "equality), 'choice' (choice_answer letters), 'qa' (qa_match normalized text)."
        ),
    )
    confidence_scale: Literal["0-10", "0-1", "percent", "auto"] = Field(
        default="auto",
        description="How a bare stated confidence is read (as in confidence_calibration).",
    )
    missing_confidence: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description=(
            "Weight of an answer that states no confidence (0: it counts for majority voting "
            "only; ties in total confidence are broken by the count)."
        ),
    )


#: First line of the injected block (``CorrectionsConfig.header``).
DEFAULT_CORRECTIONS_HEADER = (
    "Corrections of mistakes made before on similar problems. "
    "Do not repeat the wrong reasoning; follow the corrected reasoning."
)
#: One retrieved correction in the injected block (``CorrectionsConfig.template``).
DEFAULT_CORRECTION_TEMPLATE = (
    "[{rank}] Problem: {prompt}\nWrong: {wrong}\nCorrected: {corrected}{note_line}"
)


class CorrectionsConfig(_Frozen):
    """Retrieve the stored corrections nearest each prompt and show them to the model.

    The block (``header``, then one ``template`` per correction, best first, separated by blank
    lines) goes before a string prompt, followed by ``separator``; a chat prompt gets it as a
    system message (appended to an existing first system message). The reward always scores the
    original prompt; ``Trace.corrections`` records which corrections were shown.
    """

    store: str = Field(
        min_length=1, description="Path of the correction store (an SQLite file); it must exist."
    )
    top_k: int = Field(default=2, ge=1, description="Corrections injected per prompt at most.")
    min_similarity: float = Field(
        default=0.6,
        ge=-1.0,
        le=1.0,
        description="Cosine similarity of the prompts (store encoder) a correction needs.",
    )
    encoder: str | None = Field(
        default=None, description="Sentence encoder; None: the store's own (others are refused)."
    )
    header: str = Field(
        default=DEFAULT_CORRECTIONS_HEADER,
        description="First line of the injected block ('' for none).",
    )
    template: str = Field(
        default=DEFAULT_CORRECTION_TEMPLATE,
        description="One correction: placeholders {rank} {prompt} {wrong} {corrected} {note} "
        "{note_line} ('\\nNote: <note>' or '') {similarity} {id}.",
    )
    separator: str = Field(
        default="\n\n", description="Text between the block and a string prompt."
    )

    @model_validator(mode="after")
    def _template_fields(self) -> CorrectionsConfig:
        try:
            self.template.format(**_TEMPLATE_PROBE)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"template: {self.template!r} cannot be filled ({exc!r}); use the placeholders "
                f"{', '.join('{' + k + '}' for k in _TEMPLATE_PROBE)}"
            ) from None
        return self


_TEMPLATE_PROBE: dict[str, Any] = {
    **dict.fromkeys(("prompt", "wrong", "corrected", "note", "note_line", "id"), "x"),
    "rank": 1,
    "similarity": 0.5,
}


SearchConfig = Annotated[BestOfNConfig | GuidedConfig | VoteConfig, Field(discriminator="mode")]


class GenerateConfig(_Frozen):
    """Everything ``safeladder generate`` needs besides the prompts."""

    model: ModelConfig = Field(description="The local causal LM.")
    sampling: SamplingConfig = Field(
        default_factory=SamplingConfig, description="Sampling settings."
    )
    reward: str | dict[str, Any] | None = Field(
        default=None,
        description="Final reward: a YAML path, a preset name or a mapping (default: 'default').",
    )
    search: SearchConfig = Field(
        default_factory=BestOfNConfig,
        description="best_of_n | guided | vote (key 'mode', default best_of_n) and its knobs.",
    )
    corrections: CorrectionsConfig | None = Field(
        default=None,
        description="Inject the nearest stored corrections into each prompt (null: off).",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_mode(cls, data: Any) -> Any:
        search = data.get("search") if isinstance(data, dict) else None
        if isinstance(search, dict) and "mode" not in search:
            return {**data, "search": {"mode": "best_of_n", **search}}
        return data
