"""`import safeladder` and rule-only scoring stay light: no torch, transformers or sympy."""

from __future__ import annotations

import subprocess
import sys

HEAVY = (
    "torch",
    "transformers",
    "sentence_transformers",
    "sympy",
    "math_verify",
    "datasets",
    "trl",
    "onnxruntime",
    "PIL",
)


def test_import_and_rule_scoring_do_not_load_heavy_libraries() -> None:
    code = (
        "import sys, safeladder\n"
        "from safeladder import build_verifier, Sample\n"
        "build_verifier('think_format').score([Sample(completion='<think>a</think><answer>b</answer>')])\n"
        "build_verifier('math_answer').score([Sample(completion='#### 1,234', reference='1234')])\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
