"""Inference-time guidance: a composed reward steers generation with a local causal LM.

- ``best_of_n``: N samples per prompt, the best by the reward (gates veto);
- ``guided_search``: step-level beam search scored by a step reward, vetoed steps pruned, a safe
  fallback when every step is vetoed;
- ``vote``: confidence-weighted voting over N answers, compared with plain majority voting.

Each search can show the model the nearest stored corrections of earlier mistakes
(``CorrectionMemory``, ``GenerateConfig.corrections``; format in ``guidance.corrections``).

Each returns one ``Trace`` per prompt (``save_traces`` / ``render_report``). ``HFGenerator``
samples from a local Hugging Face causal LM; ``run_generate`` drives a whole
``GenerateConfig`` (what ``safeladder generate`` calls).

Layer: imports ``rewards``, ``verifiers`` (public readers only), ``neural`` and the layers
below; never the CLI.

Example::

    from safeladder import load_reward
    from safeladder.guidance import HFGenerator, GuidedConfig, guided_search

    gen = HFGenerator("/models/policy")
    traces = guided_search(gen, load_reward("configs/reward/math_grpo.yaml"),
                           [{"prompt": "2+2?", "reference": "4"}], GuidedConfig(beams=2))
    traces[0].completion, traces[0].score
"""

from safeladder.guidance.best_of_n import best_of_n, pick_best
from safeladder.guidance.config import (
    BestOfNConfig,
    CorrectionsConfig,
    GenerateConfig,
    GuidedConfig,
    ModelConfig,
    SamplingConfig,
    StepConfig,
    VoteConfig,
)
from safeladder.guidance.corrections import CorrectionMemory, format_corrections, inject
from safeladder.guidance.generator import Continuation, HFGenerator, TextGenerator
from safeladder.guidance.guided_search import guided_search
from safeladder.guidance.run import load_generate_config, run_generate, run_search
from safeladder.guidance.trace import (
    Candidate,
    StepTrace,
    Trace,
    UsedCorrection,
    load_traces,
    render_report,
    save_traces,
)
from safeladder.guidance.voting import read_answer, same_answer, tally, vote

__all__ = [
    "BestOfNConfig",
    "Candidate",
    "Continuation",
    "CorrectionMemory",
    "CorrectionsConfig",
    "GenerateConfig",
    "GuidedConfig",
    "HFGenerator",
    "ModelConfig",
    "SamplingConfig",
    "StepConfig",
    "StepTrace",
    "TextGenerator",
    "Trace",
    "UsedCorrection",
    "VoteConfig",
    "best_of_n",
    "format_corrections",
    "guided_search",
    "inject",
    "load_generate_config",
    "load_traces",
    "pick_best",
    "read_answer",
    "render_report",
    "run_generate",
    "run_search",
    "same_answer",
    "save_traces",
    "tally",
    "vote",
]
