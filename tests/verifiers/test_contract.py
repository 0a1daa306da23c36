"""The contract every registered verifier keeps (DESIGN.md, "Verifiers").

New verifier types are covered automatically: each is built from ``{"type": <type>}`` unless
``CONFIGS`` gives it the fields it needs, and falls in the neural or the rule set by what it is
(``kind_of``), never by a list kept by hand.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from safeladder import ConfigError, Sample, SampleBatch
from safeladder.verifiers import REGISTRY, build_verifier
from safeladder.verifiers.base import Verifier, VerifierConfig
from tests.corrections.fakes import shared_minilm_store
from tests.helpers import (
    REPO,
    assert_batch_equals_rows,
    assert_in_range_or_nan,
    read_shared,
    same_scores,
    tiny_model_dir,
)
from tests.verifiers.open_rm_fixtures import tiny_open_rm

FIXTURES = Path(__file__).parent / "fixtures"
CPU = {"device": "cpu"}
#: Fields a type cannot do without (model paths, targets); everything else uses defaults.
CONFIGS: dict[str, Callable[[], dict]] = {
    "custom": lambda: {"type": "custom", "target": "tests.rewards.fixture_verifiers:meta_score"},
    "confidence_calibration": lambda: {
        "type": "confidence_calibration",
        "correctness": {"type": "qa_match"},
    },
    "classifier": lambda: {
        "type": "classifier",
        "path": str(tiny_model_dir("qwen2_classifier")),
        "good_label": "safe",
        "runtime": CPU,
    },
    "reward_model": lambda: {
        "type": "reward_model",
        "path": str(tiny_model_dir("bert_reward")),
        "runtime": CPU,
    },
    "label_judge": lambda: {
        "type": "label_judge",
        "preset": "safework_safety",
        "path": str(tiny_model_dir("qwen2_causal_lm")),
        "runtime": CPU,
    },
    "embedding_head": lambda: {
        "type": "embedding_head",
        "path": str(FIXTURES / "gptfuzz_minilm_head"),
        "runtime": CPU,
    },
    "repeats_correction": lambda: {
        "type": "repeats_correction",
        "store": str(shared_minilm_store()),
        "runtime": CPU,
    },
    "process_reward": lambda: {
        "type": "process_reward",
        "preset": "qwen2_5_math_prm",
        "path": str(tiny_open_rm("qwen_prm")),
        "runtime": CPU,
    },
    "ensemble": lambda: {
        "type": "ensemble",
        "combine": "logit_mean",
        "members": [{"verifier": {"type": "qa_match"}}, {"verifier": "refusal", "weight": 2.0}],
    },
    "tfidf": lambda: {"type": "tfidf", "path": str(REPO / "safeladder/defaults/safety_tfidf")},
    "step_scorer": lambda: {
        "type": "step_scorer",
        "verifier": {"type": "custom", "target": "tests.verifiers.step_fixtures:line_count"},
    },
}
#: Neural verifiers: batch and row-by-row agree within this (float noise of padded matmuls).
NEURAL_ATOL = 1e-5


def kind_of(config_cls: type[VerifierConfig]) -> str:
    """``neural`` for a type whose config carries the neural engine's ``runtime`` (it owns a
    model), ``rule`` for every other type (exact: batch equals row-by-row bit for bit)."""
    return "neural" if "runtime" in config_cls.model_fields else "rule"


NEURAL = frozenset(t for t, cls in REGISTRY.items() if kind_of(cls) == "neural")
RULE = frozenset(t for t, cls in REGISTRY.items() if kind_of(cls) == "rule")


def config_for(vtype: str) -> dict:
    return CONFIGS[vtype]() if vtype in CONFIGS else {"type": vtype}


def _samples() -> list[Sample]:
    kk = read_shared("kk_logic.jsonl.gz", 1)[0]
    gsm = read_shared("gsm8k_train.jsonl.gz", 1)[0]
    return [
        Sample(
            prompt=gsm["question"],
            completion=gsm["solution"],
            reference=gsm["answer"],
            meta={"s": 1.0},
        ),
        Sample(
            prompt="2+2?",
            completion="<think>easy</think><answer>4</answer>",
            reference="4",
            meta={"s": 0.0},
        ),
        Sample(
            prompt="2+2?", completion="The answer is \\boxed{5}. Confidence: 9/10", reference="4"
        ),
        Sample(prompt="Pick one", completion="The answer is (B).", reference="B", meta={"s": 0.25}),
        Sample(
            prompt="Capital of France?",
            completion="Paris, I am 80% confident.",
            reference=["Paris"],
        ),
        Sample(
            prompt=[{"role": "user", "content": "hi"}],
            completion="I'm sorry, but I can't help with that.",
            reference=None,
        ),
        Sample(prompt="p", completion="", reference=""),
        Sample(prompt="p", completion="抱歉，我无法提供帮助。", reference="x"),
        Sample(prompt="p", completion="the same words " * 50, reference="words"),
        Sample(
            prompt=kk["question"],
            completion=f"<think>ok</think><answer>{kk['answer']}</answer>",
            reference=kk["answer"],
        ),
        Sample(prompt="p", completion="<answer><answer>1</answer></answer>", reference="1"),
        Sample(prompt="p", completion="\\boxed{\\frac{1}{2}}", reference="0.5"),
    ]


@pytest.fixture(scope="module", params=sorted(REGISTRY))
def verifier(request):  # type: ignore[no-untyped-def]
    v = build_verifier(config_for(request.param))
    yield v
    v.close()


@pytest.fixture(scope="module")
def samples() -> list[Sample]:
    return _samples()


def test_one_float32_score_per_row_in_range(verifier: Verifier, samples: list[Sample]) -> None:
    sb = verifier.score(samples)
    assert sb.scores.dtype == np.float32 and sb.scores.shape == (len(samples),)
    assert set(sb.status) <= {"ok", "abstain", "timeout", "error"}
    assert_in_range_or_nan(verifier, sb)
    for st, d in zip(sb.status, sb.details, strict=True):
        if st != "ok":
            assert d.get("reason"), "a row that is not scored says why"


def _atol(verifier: Verifier) -> float:
    return NEURAL_ATOL if verifier.config.type in NEURAL else 0.0


def test_deterministic_and_permutation_equivariant(
    verifier: Verifier, samples: list[Sample]
) -> None:
    batch = SampleBatch.from_samples(samples)
    first = verifier.score(batch)
    assert same_scores(first, verifier.score(batch))
    perm = np.random.default_rng(0).permutation(len(samples))
    assert same_scores(verifier.score(batch.take(perm)), first.take(perm), atol=_atol(verifier))


def test_batch_equals_row_by_row(verifier: Verifier, samples: list[Sample]) -> None:
    assert_batch_equals_rows(verifier, samples, atol=_atol(verifier))


def test_empty_batch(verifier: Verifier) -> None:
    assert len(verifier.score([])) == 0


@pytest.mark.parametrize("vtype", sorted(REGISTRY))
def test_config_is_strict_and_documented(vtype: str) -> None:
    cfg = config_for(vtype)
    with pytest.raises(ConfigError, match="bogus_key: unknown key"):
        build_verifier({**cfg, "bogus_key": 1})
    cls = REGISTRY[vtype]
    assert cls.model_config.get("frozen") and cls.model_config.get("extra") == "forbid"
    undocumented = [n for n, f in cls.model_fields.items() if n != "type" and not f.description]
    assert not undocumented, f"{vtype}: fields without a description: {undocumented}"


def _imports_neural_engine(module_name: str) -> bool:
    tree = ast.parse(inspect.getsource(importlib.import_module(module_name)))
    targets = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)] + [
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    ]
    return any(
        t == "safeladder.neural"
        or t.startswith(("safeladder.neural.", "safeladder.verifiers.neural"))
        for t in targets
    )


def test_every_registered_type_is_in_exactly_one_contract_set() -> None:
    assert set(REGISTRY) == NEURAL | RULE and not NEURAL & RULE
    assert NEURAL and RULE
    # The runtime knob and the code agree: a rule verifier loads no model, a neural one does. A
    # new model-backed verifier without a runtime would otherwise be held to the rule tolerance
    # and run with defaults that cannot load a model.
    disagree = {
        t: kind_of(cls)
        for t, cls in REGISTRY.items()
        if (kind_of(cls) == "neural") != _imports_neural_engine(cls.__module__)
    }
    assert not disagree, f"runtime field and neural imports disagree for {disagree}"
    # A neural type needs a model path: CONFIGS must say which (a tiny model on CPU).
    assert sorted(NEURAL - set(CONFIGS)) == []
    assert all(config_for(t).get("runtime") == CPU for t in NEURAL)
    assert set(CONFIGS) <= set(REGISTRY), sorted(set(CONFIGS) - set(REGISTRY))


#: The verifier docstring template (STYLE.md, habit 8): each registered type's module says
#: what it checks (its first line names the type), which Sample fields it reads, its score range
#: and an example config.
TEMPLATE = ("Inputs:", "Score range:", "Example")


def _template_gaps(vtype: str) -> list[str]:
    doc = importlib.import_module(REGISTRY[vtype].__module__).__doc__ or ""
    gaps = [part for part in TEMPLATE if part not in doc]
    if not doc.startswith(f"``{vtype}``"):
        gaps.append(f"first line starting with ``{vtype}``")
    if f'"type": "{vtype}"' not in doc and f"type: {vtype}" not in doc:
        gaps.append(f'an example config with "type": "{vtype}"')
    return gaps


@pytest.mark.parametrize("vtype", sorted(REGISTRY))
def test_module_docstring_follows_the_verifier_template(vtype: str) -> None:
    gaps = _template_gaps(vtype)
    assert not gaps, f"{vtype}: module docstring lacks {gaps}"
