#!/usr/bin/env bash
# All GPU benchmarks in one go (about 3-7 minutes on one H100; SpanF1 vs seqeval is a CPU comparison, see README): tables to stdout and OUT_DIR/*.md, JSON in OUT_DIR.
#   bash benchmarks/run_gpu.sh OUT_DIR            # on a machine with a CUDA GPU
#   DEVICE=cpu bash benchmarks/run_gpu.sh OUT_DIR --quick   # smoke test of the script itself, no GPU
set -euo pipefail
out=${1:?usage: bash benchmarks/run_gpu.sh OUT_DIR [--quick]}
shift
device=${DEVICE:-cuda}
mkdir -p "$out/training_fp32" "$out/training_bf16"
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.txt" 2>/dev/null || true
python benchmarks/bench_training.py --device "$device" --out "$out/training_fp32" "$@" | tee "$out/training_fp32.md"
python benchmarks/bench_training.py --device "$device" --precision bf16-mixed --out "$out/training_bf16" "$@" \
    | tee "$out/training_bf16.md"
python benchmarks/bench_perplexity.py --device "$device" --out "$out" "$@" | tee "$out/perplexity.md"
python benchmarks/bench_generation.py --device "$device" --out "$out" "$@" | tee "$out/generation.md"
python benchmarks/bench_crf.py --device "$device" --out "$out" "$@" | tee "$out/crf.md"
