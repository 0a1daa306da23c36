#!/usr/bin/env bash
# Opt-in: safeladder inside verl's own environment, through verl's real reward code.
#
# Creates (or reuses) a separate virtualenv with verl 0.9.1 and safeladder -- verl pins
# transformers <5.11 and antlr4-python3-runtime 4.9.* (through omegaconf / hydra-core), so it
# never shares the project venv -- then, in that venv:
#   1. verl.utils.reward_score.default_compute_score("openai/gsm8k", ...) (verl's own scorer);
#   2. verl.trainer.ppo.reward.get_custom_reward_fn(config): verl loads
#      safeladder/integrations/verl.py by file path, as `reward.custom_reward_function.path`
#      does in a real run, with `reward_kwargs`;
#   3. verl's legacy reward managers `naive` and `batch` (verl/workers/reward_manager/) on a
#      DataProto built from a tokenizer trained in memory, with safeladder's compute_score /
#      compute_score_batch;
#   4. the reward-loop manager `naive` (verl/experimental/reward_loop/reward_manager/naive.py,
#      async run_single) when it imports without a GPU;
# and checks that safeladder's math answer check (math-verify on antlr 4.9.3) gives 1.0 for an
# equivalent LaTeX answer. No GPU, no network beyond PyPI for the install.
#
# Usage:
#   scripts/verl_env_check.sh [VENV_DIR]        # default: $SAFELADDER_VERL_VENV or ~/.cache/safeladder/venv-verl
#   scripts/verl_env_check.sh --no-install [VENV_DIR]   # only run the checks (venv must exist)
# Then `SAFELADDER_VERL_VENV=VENV_DIR pytest tests/integrations/test_verl.py` runs the opt-in
# test that calls this script with --no-install.
# Environment: PYTHON (interpreter for the venv, default python3), TORCH_SPEC (default
# torch==2.13.0: installed first so verl's dependencies cannot pull a CUDA build),
# VERL_SPEC (default verl==0.9.1).
set -euo pipefail

install=1
if [[ "${1:-}" == "--no-install" ]]; then
    install=0
    shift
fi
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-${SAFELADDER_VERL_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/safeladder/venv-verl}}"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
VERL_SPEC="${VERL_SPEC:-verl==0.9.1}"

if [[ "$install" == 1 ]]; then
    if [[ ! -x "$VENV/bin/python" ]]; then
        echo "creating $VENV"
        mkdir -p "$(dirname "$VENV")"
        "$PYTHON" -m venv "$VENV"
    fi
    constraints="$(mktemp)"
    trap 'rm -f "$constraints"' EXIT
    echo "$TORCH_SPEC" >"$constraints"
    echo "installing $TORCH_SPEC, then $VERL_SPEC + safeladder into $VENV"
    "$VENV/bin/pip" install -q "$TORCH_SPEC"
    "$VENV/bin/pip" install -q -c "$constraints" "$VERL_SPEC" "$REPO"
fi
if [[ ! -x "$VENV/bin/python" ]]; then
    echo "no virtualenv at $VENV (run without --no-install first)" >&2
    exit 2
fi

# The working tree is first on the path, so the check runs the code being developed (the
# installed copy proves that safeladder resolves and installs next to verl).
PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" SAFELADDER_REPO="$REPO" "$VENV/bin/python" - <<'PY'
import asyncio
import importlib.metadata as md
import inspect
import os
import sys
import tempfile

import numpy as np
import torch

repo = os.environ["SAFELADDER_REPO"]
print("python", sys.version.split()[0], "| verl", md.version("verl"), "| transformers",
      md.version("transformers"), "| antlr4-python3-runtime", md.version("antlr4-python3-runtime"),
      "| math-verify", md.version("math-verify"), "| safeladder", md.version("safeladder"))

import safeladder.integrations.verl as sl_verl

# 1. verl's own scorer works here.
from verl.utils.reward_score import default_compute_score

assert default_compute_score("openai/gsm8k", "She has 72 clips.\n#### 72", "72") == 1.0
print("ok  verl default_compute_score(openai/gsm8k) == 1.0")

# 2. verl's loader: reward.custom_reward_function.path / name + reward_kwargs.
from omegaconf import OmegaConf
from verl.trainer.ppo.reward import get_custom_reward_fn

cfg_dir = tempfile.mkdtemp()
reward_yaml = os.path.join(cfg_dir, "reward.yaml")
with open(reward_yaml, "w") as fh:
    fh.write(
        "name: verl_check\n"
        "terms:\n"
        "  - {name: correct, verifier: {type: math_answer}, weight: 1.0}\n"
        "  - {name: repetition, verifier: {type: repetition}, weight: 0.5}\n"
    )
for path in (sl_verl.__file__, "pkg://safeladder.integrations.verl"):
    block = {"path": path, "name": "compute_score", "reward_kwargs": {"config": reward_yaml}}
    config = OmegaConf.create({"custom_reward_function": block, "reward": {"custom_reward_function": block}})
    fn = get_custom_reward_fn(config)
    assert fn is not None, "verl's get_custom_reward_fn returned None"
    out = fn(
        data_source="lighteval/MATH",
        solution_str=r"The answer is \boxed{\frac{\sqrt{2}}{2}}",
        ground_truth=r"\frac{1}{\sqrt{2}}",
        extra_info={"index": 0},
    )
    assert out["score"] == 1.0 and out["correct"] == 1.0, out
    print(f"ok  get_custom_reward_fn(path={path}) -> safeladder compute_score:", out)
os.environ["SAFELADDER_REWARD_CONFIG"] = reward_yaml

# 3. legacy reward managers on a real DataProto.
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast
from verl import DataProto

tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
tok.train_from_iterator(
    ["The answer is 72. #### 72", "What is 6 times 12?"] * 4,
    trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<eos>"],
                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False),
)
tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>")

prompts = ["What is 6 times 12?", "What is 6 times 12?"]
responses = ["6*12 = 72.\n#### 72", "6*12 = 71.\n#### 71"]
P, R = 16, 24
def left_pad(ids, n):
    return [tokenizer.pad_token_id] * (n - len(ids)) + ids, [0] * (n - len(ids)) + [1] * len(ids)
def right_pad(ids, n):
    return ids + [tokenizer.pad_token_id] * (n - len(ids)), [1] * len(ids) + [0] * (n - len(ids))
p_ids, p_mask, r_ids, r_mask = [], [], [], []
for p, r in zip(prompts, responses, strict=True):
    a, am = left_pad(tokenizer(p)["input_ids"], P)
    b, bm = right_pad(tokenizer(r)["input_ids"] + [tokenizer.eos_token_id], R)
    p_ids.append(a); p_mask.append(am); r_ids.append(b); r_mask.append(bm)
prompt_t, resp_t = torch.tensor(p_ids), torch.tensor(r_ids)
data = DataProto.from_dict(
    tensors={
        "prompts": prompt_t,
        "responses": resp_t,
        "input_ids": torch.cat([prompt_t, resp_t], 1),
        "attention_mask": torch.cat([torch.tensor(p_mask), torch.tensor(r_mask)], 1),
    },
    non_tensors={
        "data_source": np.array(["openai/gsm8k"] * 2, dtype=object),
        "reward_model": np.array([{"style": "rule", "ground_truth": "72"}] * 2, dtype=object),
        "extra_info": np.array([{"index": 0, "prompt": prompts[0]}, {"index": 1, "prompt": prompts[1]}], dtype=object),
    },
)

from verl.workers.reward_manager.naive import NaiveRewardManager as LegacyNaive

naive_kwargs = {"tokenizer": tokenizer, "num_examine": 0, "compute_score": sl_verl.compute_score}
if "reward_fn_key" in inspect.signature(LegacyNaive.__init__).parameters:
    naive_kwargs["reward_fn_key"] = "data_source"
out = LegacyNaive(**naive_kwargs)(data, return_dict=True)
row_scores = out["reward_tensor"].sum(-1).tolist()
assert row_scores == [1.0, 0.0], row_scores
assert set(out["reward_extra_info"]) >= {"score", "correct", "repetition"}, out["reward_extra_info"].keys()
print("ok  legacy naive manager:", row_scores, sorted(out["reward_extra_info"]))

from verl.workers.reward_manager.batch import BatchRewardManager as LegacyBatch

out = LegacyBatch(tokenizer=tokenizer, num_examine=0, compute_score=sl_verl.compute_score_batch)(
    data, return_dict=True
)
row_scores = out["reward_tensor"].sum(-1).tolist()
assert row_scores == [1.0, 0.0], row_scores
print("ok  legacy batch manager:", row_scores, sorted(out["reward_extra_info"]))

# 4. the reward-loop manager (async run_single), when it imports here.
try:
    from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager as LoopNaive
except Exception as exc:  # noqa: BLE001 -- report why, do not fail the check
    print("skip reward-loop naive manager (import failed):", type(exc).__name__, exc)
else:
    loop_cfg = OmegaConf.create({"actor_rollout_ref": {"rollout": {"multi_turn": {}}},
                                 "reward": {"reward_kwargs": {}}})
    try:
        mgr = LoopNaive(loop_cfg, tokenizer, sl_verl.compute_score)
    except Exception as exc:  # noqa: BLE001
        print("skip reward-loop naive manager (constructor needs more config):", type(exc).__name__, exc)
    else:
        async def run():
            mgr.loop = asyncio.get_running_loop()
            return [await mgr.run_single(data[i : i + 1]) for i in range(len(data))]
        results = asyncio.run(run())
        scores = [r["reward_score"] for r in results]
        assert scores == [1.0, 0.0], results
        print("ok  reward-loop naive manager:", scores, sorted(results[0]["reward_extra_info"]))

print("verl environment check passed")
PY
