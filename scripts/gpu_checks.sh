#!/usr/bin/env bash
# Every GPU measurement of issues 12-14 in ONE device call, results under $OUT (and
# benchmarks/results/*.jsonl, copied there too). Prepare here first: scripts/gpu_prepare.sh;
# then: run(command="bash scripts/gpu_checks.sh", carry=[".whl", ".gpu_data"], timeout_s=590).
# Steps have their own time limits (seconds) so one slow step cannot eat the others; commit
# the JSON lines that come back (benchmarks/results/) with the card named in the message.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
# The benchmarks read ../shared/data beside the checkout.
if [ -d .gpu_data ] && [ ! -e ../shared/data ]; then
    mkdir -p ../shared && ln -s "$PWD/.gpu_data" ../shared/data
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2; shift 2
    echo "=== $name (limit ${limit}s)"
    local t0=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    echo "=== $name: exit $? in $((SECONDS - t0))s"
    tail -25 "$OUT/$name.log"
}
# Issue 14 item 2: label judging in one forward vs generate vs prefill (0.5B shape, bf16).
step label_judge 150 python3 benchmarks/bench_label_judge.py --gpu
# Issue 14 item 1: neural scoring vs the model-only ceiling (0.5B and 7B shapes).
step neural 240 python3 benchmarks/bench_neural.py --gpu
# The CUDA tests (scores on GPU equal CPU, tree scoring included; bf16 tolerances).
step gpu_tests 120 python3 -m pytest -q -m gpu -p no:cacheprovider tests
cp benchmarks/results/label_judge.jsonl benchmarks/results/neural.jsonl "$OUT/" 2>/dev/null
ls -la "$OUT"
