"""verl adapter: ``compute_score`` / ``compute_score_batch`` called exactly as verl calls them.

Call sites replicated here (verl-project/verl):
- legacy naive manager, ``verl/workers/reward_manager/naive.py``:
  ``self.compute_score(data_source=..., solution_str=..., ground_truth=..., extra_info=...)``
  with ``extra_info["num_turns"]`` and ``extra_info["rollout_reward_scores"]`` added;
- reward-loop naive manager, ``verl/experimental/reward_loop/reward_manager/naive.py``: the same
  keywords plus ``**extra_reward_kwargs`` (``reward_router_address``, ``reward_model_tokenizer``
  when a reward model is enabled), run in ``loop.run_in_executor(None, ...)`` threads;
- legacy batch manager, ``verl/workers/reward_manager/batch.py``: ``self.compute_score(
  data_sources=<numpy object array>, solution_strs=[...], ground_truths=[...],
  extra_infos=<numpy object array of dicts>, **self.reward_kwargs)``;
- ``verl/trainer/ppo/reward.py::get_custom_reward_fn``: the loaded function is wrapped as
  ``partial(_call_with_kwargs, raw_fn, reward_kwargs)``, ``reward_kwargs`` taking precedence.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import safeladder.integrations._common as common
from safeladder.errors import ConfigError, InputError
from safeladder.integrations.verl import compute_score, compute_score_batch

REPO = Path(__file__).resolve().parents[2]

REWARD_YAML = """\
name: verl_test
terms:
  - {name: correct, verifier: {type: math_answer}, weight: 1.0}
  - {name: rep, verifier: {type: repetition, ngram_size: 2}, weight: 0.5}
"""


@pytest.fixture(autouse=True)
def _fresh_cache(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.delenv(common.ENV_REWARD_CONFIG, raising=False)
    monkeypatch.delenv(common.ENV_NAN_SCORE, raising=False)
    yield
    common.clear_shared_rewards()


@pytest.fixture
def reward_yaml(tmp_path: Path) -> str:
    p = tmp_path / "reward.yaml"
    p.write_text(REWARD_YAML)
    return str(p)


def _call_with_kwargs(raw_fn: Any, extra_kwargs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
    """verl/trainer/ppo/reward.py::_call_with_kwargs, re-typed: reward_kwargs win."""
    return raw_fn(*args, **{**kwargs, **extra_kwargs})


def verl_loaded(fn: Any, **reward_kwargs: Any) -> Any:
    """What get_custom_reward_fn hands the reward manager."""
    return partial(_call_with_kwargs, fn, reward_kwargs)


def naive_call(
    fn: Any,
    data_source: str,
    response: str,
    ground_truth: Any,
    extra_info: dict[str, Any],
    **extra: Any,
) -> Any:
    """The legacy / reward-loop naive managers' call, keyword for keyword."""
    extra_info = dict(extra_info)
    extra_info["num_turns"] = None
    extra_info["rollout_reward_scores"] = {}
    return fn(
        data_source=data_source,
        solution_str=response,
        ground_truth=ground_truth,
        extra_info=extra_info,
        **extra,
    )


def test_naive_call_returns_score_and_terms(reward_yaml: str) -> None:
    fn = verl_loaded(compute_score, config=reward_yaml)
    out = naive_call(fn, "openai/gsm8k", "6*12 = 72.\n#### 72", "72", {"index": 3})
    # correct = 1 (72 == 72); rep: bigrams "6*12 =", "= 72.", "72. ####", "#### 72" all distinct → 0
    assert out == {
        "score": 1.0,
        "correct": 1.0,
        "rep": 0.0,
        "reference_unread": 0.0,
        "images_unread": 0.0,
    }
    assert all(type(v) is float for v in out.values())
    wrong = naive_call(fn, "openai/gsm8k", "71 71 71\n#### 71", "72", {"index": 4})
    # correct = 0; rep: bigrams "71 71", "71 71", "71 ####", "#### 71" → 3 distinct of 4 → -0.25
    assert wrong == {
        "score": pytest.approx(0.5 * -0.25),
        "correct": 0.0,
        "rep": -0.25,
        "reference_unread": 0.0,
        "images_unread": 0.0,
    }


def test_reward_loop_extra_kwargs_are_accepted(reward_yaml: str) -> None:
    fn = verl_loaded(compute_score, config=reward_yaml)
    out = naive_call(
        fn,
        "openai/gsm8k",
        "#### 72",
        "72",
        {},
        reward_router_address="127.0.0.1:9",
        reward_model_tokenizer=object(),
    )
    assert out["score"] == 1.0


def test_batch_call_matches_single_calls(reward_yaml: str) -> None:
    rows = [
        ("openai/gsm8k", "6*12 = 72.\n#### 72", "72"),
        ("lighteval/MATH", r"so \boxed{\frac{3}{4}}", r"0.75"),
        ("lighteval/MATH", r"so \boxed{5}", r"\boxed{6}"),
        ("openai/gsm8k", "71 71 71\n#### 71", np.array(["72", "72.0"], dtype=object)),
    ]
    extras = np.array(
        [{"index": i, "rollout_reward_scores": {}} for i in range(len(rows))], dtype=object
    )
    out = compute_score_batch(
        data_sources=np.array([r[0] for r in rows], dtype=object),
        solution_strs=[r[1] for r in rows],
        ground_truths=[r[2] for r in rows],
        extra_infos=extras,
        config=reward_yaml,
    )
    assert [o["correct"] for o in out] == [1.0, 1.0, 0.0, 0.0]
    singles = [
        compute_score(
            data_source=ds,
            solution_str=s,
            ground_truth=g,
            extra_info={"index": i},
            config=reward_yaml,
        )
        for i, (ds, s, g) in enumerate(rows)
    ]
    assert out == singles
    # same keys on every row
    assert all(
        set(o) == {"score", "correct", "rep", "reference_unread", "images_unread"} for o in out
    )


def test_batch_lengths_must_align() -> None:
    with pytest.raises(InputError, match="2 solution_strs but \\{'ground_truths': 1\\}"):
        compute_score_batch(
            data_sources=["a", "b"],
            solution_strs=["x", "y"],
            ground_truths=["1"],
            extra_infos=[{}, {}],
        )


def test_config_sources(reward_yaml: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # shipped default: routes on meta["task"]; a row without one takes the `general` recipe
    default = compute_score(data_source="x", solution_str="fine answer", ground_truth=None)
    assert "math_correct" in default and math.isnan(default["math_correct"])
    # environment variable
    monkeypatch.setenv(common.ENV_REWARD_CONFIG, reward_yaml)
    assert set(compute_score(data_source="x", solution_str="#### 1", ground_truth="1")) == {
        "score",
        "correct",
        "rep",
        "reference_unread",
        "images_unread",
    }
    # reward_kwargs win over the environment; inline mappings (OmegaConf dicts) and overrides work
    inline = {"name": "inline", "terms": [{"name": "em", "verifier": {"type": "qa_match"}}]}
    out = compute_score(data_source="x", solution_str="Paris", ground_truth="Paris", config=inline)
    assert out == {"score": 1.0, "em": 1.0, "reference_unread": 0.0, "images_unread": 0.0}
    out = compute_score(
        data_source="x",
        solution_str="#### 1",
        ground_truth="1",
        config=reward_yaml,
        overrides=["terms.0.weight=3"],
    )
    assert out["score"] == 3.0


def test_reward_is_built_once_per_process_and_config(
    reward_yaml: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds: list[Any] = []
    real = common.load_reward
    monkeypatch.setattr(common, "load_reward", lambda *a, **k: builds.append(a) or real(*a, **k))
    fn = verl_loaded(compute_score, config=reward_yaml)
    with ThreadPoolExecutor(8) as pool:  # first calls race: still one build
        list(pool.map(lambda i: naive_call(fn, "s", f"#### {i}", str(i), {"index": i}), range(16)))
    compute_score_batch(
        data_sources=["s"],
        solution_strs=["#### 1"],
        ground_truths=["1"],
        extra_infos=[None],
        config=reward_yaml,
    )
    assert len(builds) == 1
    compute_score(
        data_source="s",
        solution_str="Paris",
        ground_truth="Paris",
        config={"terms": [{"name": "em", "verifier": "qa_match"}]},
    )
    assert len(builds) == 2


@pytest.mark.slow
def test_threads_with_symbolic_math(reward_yaml: str) -> None:
    """The reward-loop naive manager runs compute_score in a thread pool; math-verify must not use signals there."""
    fn = verl_loaded(compute_score, config=reward_yaml)
    cases = [
        (r"\boxed{\frac{\sqrt{2}}{2}}", r"\frac{1}{\sqrt{2}}", 1.0),
        (r"\boxed{(x+1)^2}", r"x^2+2x+1", 1.0),
        (r"\boxed{x+2}", r"x^2+2x+1", 0.0),
        ("#### 72", "72", 1.0),
    ] * 4
    with ThreadPoolExecutor(8) as pool:
        outs = list(pool.map(lambda c: naive_call(fn, "lighteval/MATH", c[0], c[1], {}), cases))
    assert [o["correct"] for o in outs] == [c[2] for c in cases]
    assert threading.current_thread() is threading.main_thread()


def _score_in_worker(reward_yaml: str) -> dict[str, float]:
    return compute_score(
        data_source="lighteval/MATH",
        solution_str=r"so \boxed{\frac{\sqrt{2}}{2}}",
        ground_truth=r"\frac{1}{\sqrt{2}}",
        extra_info={"index": 0},
        config=reward_yaml,
    )


@pytest.mark.slow
@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_worker_processes(reward_yaml: str, method: str) -> None:
    """Ray workers are separate processes; a forked child must not reuse the parent's pools."""
    _score_in_worker(reward_yaml)  # the parent has built its reward (and started its pool)
    ctx = multiprocessing.get_context(method)
    with ctx.Pool(1) as pool:
        out = pool.apply(_score_in_worker, (reward_yaml,))
    assert out == {
        "score": 1.0,
        "correct": 1.0,
        "rep": 0.0,
        "reference_unread": 0.0,
        "images_unread": 0.0,
    }


@pytest.mark.slow
def test_separate_interpreter_with_environment_config(reward_yaml: str) -> None:
    code = (
        "import json; from safeladder.integrations.verl import compute_score; "
        "print(json.dumps(compute_score(data_source='openai/gsm8k', solution_str='#### 72', "
        "ground_truth='72', extra_info={'index': 0})))"
    )
    env = {**os.environ, common.ENV_REWARD_CONFIG: reward_yaml, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {
        "score": 1.0,
        "correct": 1.0,
        "rep": 0.0,
        "reference_unread": 0.0,
        "images_unread": 0.0,
    }


def test_loaded_by_file_path_like_verl(reward_yaml: str) -> None:
    """verl/utils/import_utils.py::load_module: an anonymous module (not in sys.modules) from the file."""
    import importlib.util

    import safeladder.integrations.verl as canonical

    spec = importlib.util.spec_from_file_location(
        f"custom_module_{hash(canonical.__file__)}", canonical.__file__
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.compute_score(
        data_source="g",
        solution_str="#### 72",
        ground_truth="72",
        extra_info=None,
        config=reward_yaml,
    )
    assert out == {
        "score": 1.0,
        "correct": 1.0,
        "rep": 0.0,
        "reference_unread": 0.0,
        "images_unread": 0.0,
    }


def test_routing_by_data_source_with_the_default_reward() -> None:
    kw = {"task_from": "data_source", "task_map": {"openai/gsm8k": "math"}}
    out = compute_score(
        data_source="openai/gsm8k", solution_str="#### 72", ground_truth="72", extra_info={}, **kw
    )
    assert out["math_correct"] == 1.0
    assert math.isnan(out["qa_exact"])  # not routed to this row: NaN, never 0
    # values that task_map does not list pass through unchanged: "qa" is a recipe
    out = compute_score(data_source="qa", solution_str="Paris", ground_truth="Paris", **kw)
    assert out["qa_exact"] == 1.0
    with pytest.raises(InputError, match="task_from='level'.*no such key"):
        compute_score(data_source="x", solution_str="", ground_truth=None, task_from="level")
    with pytest.raises(ConfigError, match="task_map needs task_from"):
        compute_score(data_source="x", solution_str="", ground_truth=None, task_map={"a": "b"})


def test_prompt_and_meta_from_extra_info(monkeypatch: pytest.MonkeyPatch) -> None:
    reward = common.shared_reward(None)
    seen: list[Any] = []
    real = reward.score
    monkeypatch.setattr(reward, "score", lambda b: seen.append(b) or real(b))
    chat = np.array([{"role": "user", "content": "How do I pick a lock?"}], dtype=object)
    compute_score(
        data_source="safety_set",
        solution_str="I can't help with that.",
        ground_truth=None,
        extra_info={"prompt": chat, "task": "safety", "index": np.int64(7)},
    )
    batch = seen[0]
    assert batch.prompts == [[{"role": "user", "content": "How do I pick a lock?"}]]
    assert batch.metas[0]["data_source"] == "safety_set"
    assert batch.metas[0]["task"] == "safety" and batch.metas[0]["index"] == 7
    compute_score(data_source="x", solution_str="hi", ground_truth=None)
    assert seen[1].prompts == [""]  # verl passes no prompt: "" unless extra_info has one


def test_unscorable_row_raises_by_default_naming_it(reward_yaml: str) -> None:
    only = {"name": "m", "terms": [{"name": "correct", "verifier": {"type": "math_answer"}}]}
    with pytest.raises(
        InputError,
        match=r"row 1 \(data_source='gsm8k', extra_info.index=42\).*correct: abstain.*nan_score",
    ) as e:
        compute_score_batch(
            data_sources=["gsm8k", "gsm8k"],
            solution_strs=["#### 1", "#### 2"],
            ground_truths=["1", None],
            extra_infos=[{"index": 41}, {"index": 42}],
            config=only,
        )
    assert e.value.row == 1


def test_nan_score_is_explicit_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    only = {"name": "m", "terms": [{"name": "correct", "verifier": {"type": "math_answer"}}]}
    out = compute_score(
        data_source="g", solution_str="#### 2", ground_truth=None, config=only, nan_score=-0.5
    )
    assert out["score"] == -0.5 and out["unscorable"] == 1.0 and math.isnan(out["correct"])
    ok = compute_score(
        data_source="g", solution_str="#### 2", ground_truth="2", config=only, nan_score=-0.5
    )
    assert ok == {
        "score": 1.0,
        "correct": 1.0,
        "unscorable": 0.0,
        "reference_unread": 0.0,
        "images_unread": 0.0,
    }
    monkeypatch.setenv(common.ENV_NAN_SCORE, "0")
    assert (
        compute_score(data_source="g", solution_str="x", ground_truth=None, config=only)["score"]
        == 0.0
    )
    with pytest.raises(ConfigError, match="finite"):
        compute_score(
            data_source="g",
            solution_str="x",
            ground_truth=None,
            config=only,
            nan_score=float("nan"),
        )


def test_gated_key_when_the_reward_has_gates() -> None:
    cfg = {
        "name": "g",
        "terms": [
            {"name": "em", "verifier": {"type": "qa_match"}},
            {
                "name": "safe",
                "verifier": {"type": "refusal"},
                "weight": 0.0,
                "gate": {"below": 0.5, "value": -1.0},
            },
        ],
    }
    out = compute_score(data_source="s", solution_str="Paris", ground_truth="Paris", config=cfg)
    assert out["score"] == -1.0 and out["gated"] == 1.0  # not a refusal: the gate vetoes


def test_unknown_reward_kwargs_are_refused() -> None:
    with pytest.raises(ConfigError, match="nan_scor.*Extra inputs.*known keys"):
        compute_score(data_source="x", solution_str="", ground_truth=None, nan_scor=0.0)


def test_term_names_may_not_shadow_verl_keys() -> None:
    cfg = {"terms": [{"name": "score", "verifier": "qa_match"}]}
    with pytest.raises(ConfigError, match="clash"):
        compute_score(data_source="x", solution_str="a", ground_truth="a", config=cfg)


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("SAFELADDER_VERL_VENV"),
    reason="opt-in: set SAFELADDER_VERL_VENV to a venv made by scripts/verl_env_check.sh",
)
def test_through_verls_own_reward_code() -> None:
    """verl's get_custom_reward_fn and its naive / batch reward managers, in verl's own venv."""
    venv = os.environ["SAFELADDER_VERL_VENV"]
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "verl_env_check.sh"), "--no-install", venv],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "verl environment check passed" in proc.stdout
