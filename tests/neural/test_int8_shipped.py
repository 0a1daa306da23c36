"""``runtime.quantize: dynamic_int8`` on the shipped ``safety`` verifier (issue 14, item 4).

int8 is off by default because it is not decision-exact on this model: on 600 real rows
(``benchmarks/bench_int8.py``) per-tensor dynamic int8 flipped 40 of 600 (6.7 %) of the
decisions at the shipped threshold, and per-channel weights (what ``quantize_dynamic_int8``
now uses) 19 (3.2 %), over the 0.5 % the issue allows. These tests pin what int8 does give on
30 real rows (GPTFuzz ``evaluate`` + JailbreakBench, spread over each file), with the tolerance
measured on them (torch 2.13 CPU, x86 engine, per-channel: 0 flips, max |ΔP| 0.42, mean |ΔP|
0.04; per-tensor gave 3 flips there; the bounds leave a little room for other CPUs' kernels),
and that asking for int8 on CUDA fails with a message that names the fix.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from safeladder import ConfigError, Sample, build_verifier
from safeladder.verifiers import parse_verifier_config
from tests.helpers import read_shared

SAFETY = Path(str(resources.files("safeladder") / "defaults" / "safety"))
ROWS_PER_SOURCE = 15
MAX_FLIPS = 2  # of 30; measured 0 (per-tensor weights: 3)
MAX_MEAN_ABS_DIFF = 0.08  # measured 0.041 (per-tensor weights: 0.052)
SURE_MARGIN = 0.3  # rows whose fp32 score is this far from the threshold keep their decision


def _safety(**runtime: Any) -> Any:
    cfg: Any = parse_verifier_config("safety")
    rt = cfg.runtime.model_copy(update={"device": "cpu", "num_threads": 1, **runtime})
    return build_verifier(cfg.model_copy(update={"runtime": rt}))


def _spread(rows: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    step = len(rows) // k
    return [rows[i * step] for i in range(k)]


@pytest.fixture(scope="module")
def scores() -> tuple[np.ndarray, np.ndarray, Any]:
    torch.set_num_threads(1)
    gf = [r for r in read_shared("gptfuzz_labeled_responses.jsonl.gz") if r["split"] == "evaluate"]
    jbb = [r for r in read_shared("jailbreakbench_artifacts.jsonl.gz") if r["response"]]
    rows = _spread(gf, ROWS_PER_SOURCE) + _spread(jbb, ROWS_PER_SOURCE)
    batch = [Sample(prompt=r["prompt"] or "", completion=r["response"]) for r in rows]
    fp32, int8 = _safety(), _safety(quantize="dynamic_int8")
    a = np.asarray(fp32.score(batch).scores, dtype=np.float64)
    b = np.asarray(int8.score(batch).scores, dtype=np.float64)
    kinds = {type(m).__module__ for m in int8.loaded.replicas[0].modules()}
    fp32.close()
    int8.close()
    return a, b, kinds


@pytest.fixture(scope="module")
def threshold() -> float:
    cal = json.loads((SAFETY / "safeladder_calibration.json").read_text(encoding="utf-8"))
    return float(cal["meta"]["score_threshold"])


def test_shipped_safety_runs_fp32_unless_asked() -> None:
    cfg: Any = parse_verifier_config("safety")
    assert cfg.runtime.quantize == "none"


def test_int8_quantizes_the_merged_model(scores: tuple[np.ndarray, np.ndarray, Any]) -> None:
    _, _, kinds = scores
    assert "torch.ao.nn.quantized.dynamic.modules.linear" in kinds
    assert not any("peft" in k for k in kinds)  # the LoRA adapter was merged before quantizing


def test_int8_decisions_within_the_measured_tolerance(
    scores: tuple[np.ndarray, np.ndarray, Any], threshold: float
) -> None:
    fp32, int8 = scores[0], scores[1]
    assert np.all((int8 >= 0.0) & (int8 <= 1.0))
    flipped = (fp32 < threshold) != (int8 < threshold)
    assert flipped.sum() <= MAX_FLIPS, (fp32[flipped], int8[flipped])
    assert np.abs(fp32 - int8).mean() <= MAX_MEAN_ABS_DIFF
    sure = np.abs(fp32 - threshold) > SURE_MARGIN
    assert sure.sum() >= 20  # most rows are clear-cut, and there int8 never disagrees
    assert not flipped[sure].any()


@pytest.mark.parametrize("device", ["cuda", "auto"])
def test_int8_on_cuda_is_a_clear_config_error(device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if not torch.cuda.is_available():  # the check runs before any weight is loaded
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    with pytest.raises(ConfigError, match=r"dynamic_int8 runs on CPU only; set device: cpu"):
        _safety(device=device, quantize="dynamic_int8")
