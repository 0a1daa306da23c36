#!/usr/bin/env bash
# Run HERE (the CPU machine, repo root) before the one device call of scripts/gpu_checks.sh.
# The device has torch, transformers, peft, sentence-transformers, onnxruntime, typer, yaml,
# regex, httpx, uvloop, prometheus-client, ... but no pydantic, math-verify, trl or datasets,
# and no ../shared. This puts what is missing into two git-ignored folders to `carry`:
#   .whl/        wheels for the device's Python 3.12 (x86-64)
#   .gpu_data/   the shared data files the GPU benchmarks read
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
grep -qx '/.gpu_data/' .git/info/exclude 2>/dev/null || echo '/.gpu_data/' >> .git/info/exclude
PY=${PYTHON:-python3}
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux_2_34_x86_64)
get() {  # pinned to what this checkout's venv runs, so both sides agree
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp "${platforms[@]}" -d .whl "$@"
}
ver() { .venv/bin/python -c "import importlib.metadata as m; print(m.version('$1'))"; }
rm -rf .whl && mkdir -p .whl
for pkg in pydantic pydantic_core annotated-types typing-inspection math-verify \
           latex2sympy2_extended antlr4-python3-runtime; do
    get "$pkg==$(ver "$pkg")"
done
mkdir -p .gpu_data
cp ../shared/data/gptfuzz_labeled_responses.jsonl.gz ../shared/data/jailbreakbench_artifacts.jsonl.gz .gpu_data/
du -sh .whl .gpu_data
