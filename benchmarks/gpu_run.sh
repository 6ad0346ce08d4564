#!/usr/bin/env bash
# The GPU figures of the speed issue in one go, for a session that has a GPU (at most 9 minutes: the two steps
# are capped at 150 s and 390 s, to fit a device call of 10 minutes):
#   1. bf16 autocast against float32, correctness first (alphas and losses over 20 search steps and 20 training
#      steps, channels-last), with the step times of both;
#   2. the search-step benchmark on the GPU: our default, plain autograd, bf16 and PC-DARTS (plus the yardstick
#      when ../shared/yardstick is there), first and second order, batch 64, and DARTS_V2 training throughput
#      in float32 and bf16.
# Usage: bash benchmarks/gpu_run.sh [OUTPUT_DIR]   (default: $OUT, else results-gpu)
set -u
out=${1:-${OUT:-results-gpu}}
mkdir -p "$out" && out=$(cd "$out" && pwd)  # a relative directory is the caller's, not the repository's
cd "$(dirname "$0")/.."
py=${PYTHON:-python}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && py=.venv/bin/python
"$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || {
    echo "gpu_run.sh: no CUDA device is available to $py" >&2; exit 2; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.txt" 2>&1
status=0
timeout 150 "$py" benchmarks/amp_check.py --device cuda --out "$out/amp.json" --markdown "$out/amp.md" || status=1
impls=ours,ours-off,ours-bf16,ours-pc4
[ -d ../shared/yardstick ] && impls=yardstick,$impls
timeout 390 "$py" benchmarks/search_step.py --device cuda --impl "$impls" --batch-sizes 64 --warmup 2 --iters 5 \
    --train --train-impls contiguous,channels-last,channels-last-bf16 --timeout 120 \
    --out "$out/bench.json" --markdown "$out/bench.md" || status=1
cat "$out/amp.md" "$out/bench.md" 2>/dev/null
exit $status
