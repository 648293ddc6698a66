#!/usr/bin/env bash
# The GPU checks and benchmarks in one go: the CUDA tests, then training throughput (language model in fp32 and
# bf16-mixed, taggers), perplexity, generation, CRF and adaptive-softmax benchmarks, and with PROFILE=1 a
# torch.profiler view of the language model's steps. Tables and a log to stdout and OUT_DIR/run.log, JSON in
# OUT_DIR (SpanF1 vs seqeval is a CPU comparison, see README).
# Each part has its own time limit and a failing part does not stop the others; the exit status is 1 if any part
# failed.
#   bash benchmarks/run_gpu.sh OUT_DIR                          # on a machine with a CUDA GPU
#   DEVICE=cpu bash benchmarks/run_gpu.sh OUT_DIR --quick       # smoke test of the script itself, no GPU
#   PROFILE=1 bash benchmarks/run_gpu.sh OUT_DIR                # also profile the language model's steps
set -uo pipefail
out=$(mkdir -p "${1:?usage: bash benchmarks/run_gpu.sh OUT_DIR [--quick]}" && cd "$1" && pwd)
shift
device=${DEVICE:-cuda}
py=${PYTHON:-python3}
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
failed=0

part() {  # part NAME SECONDS COMMAND...: run COMMAND under a time limit, log it, remember a failure
    local name=$1 limit=$2 start=$SECONDS rc
    shift 2
    echo "=== $name (limit ${limit} s): $*"
    timeout "$limit" "$@"
    rc=$?
    echo "=== $name: exit $rc after $((SECONDS - start)) s"
    [ "$rc" -eq 0 ] || failed=1
}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
    "$py" -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__)"
    [ "$device" = cuda ] && part cuda_tests 120 "$py" -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py
    part training_fp32 150 "$py" benchmarks/bench_training.py --device "$device" --out "$out" "$@"
    part training_bf16 150 "$py" benchmarks/bench_training.py --device "$device" --precision bf16-mixed \
        --out "$out" "$@"
    part tagging 120 "$py" benchmarks/bench_tagging.py --device "$device" --out "$out" "$@"
    if [ "${PROFILE:-0}" = 1 ]; then
        for setting in "--precision 32 --shape small" "--precision bf16-mixed --shape large"; do  # where time goes
            # shellcheck disable=SC2086
            part profile 60 "$py" benchmarks/profile_training.py --device "$device" $setting --out "$out" "$@"
        done
    fi
    part perplexity 60 "$py" benchmarks/bench_perplexity.py --device "$device" --out "$out" --large "$@"
    part generation 60 "$py" benchmarks/bench_generation.py --device "$device" --out "$out" "$@"
    part crf 60 "$py" benchmarks/bench_crf.py --device "$device" --out "$out" "$@"
    part adaptive_softmax 90 "$py" benchmarks/bench_adaptive_softmax.py --device "$device" --out "$out" "$@"
    exit $failed
} 2>&1 | tee "$out/run.log"
