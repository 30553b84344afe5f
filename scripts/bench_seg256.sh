#!/usr/bin/env bash
# seg256 side by side on one GPU (BENCHMARK.md, docs/performance.md "seg256 end to end"):
# builds bench_seg256 if needed, runs it and bench/pytorch_seg256.py one after the other with
# the same arguments, then prints ours / best PyTorch per row (bench/compare_seg256.py).
#
# Usage: scripts/bench_seg256.sh OUT_DIR [arguments for both, e.g. --batch 1,16 --repeats 30]
# bench_seg256 picks the GPU by default (cuda:0; OURS_ARGS="--device cuda:1" picks another).
# Environment: BUILD_DIR (default build), PYTHON (default python3, must import torch),
#   OURS_ARGS (bench_seg256 only, e.g. "--conv-backend own"),
#   TORCH_ARGS (pytorch_seg256.py only, e.g. "--modes eager,reduce-overhead").
# Writes to OUT_DIR: ours.json/.log, pytorch.json/.log, compare.txt, compare.md, gpu.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/bench_seg256.sh OUT_DIR [arguments for both benchmarks]}
shift
build_dir=${BUILD_DIR:-build}
python=${PYTHON:-python3}
read -r -a ours_args <<<"${OURS_ARGS:-}"
read -r -a torch_args <<<"${TORCH_ARGS:-}"
mkdir -p "$out"

"$python" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' || {
  echo "bench_seg256.sh: $python cannot import torch or sees no CUDA device" >&2
  exit 1
}
if [ -f "$build_dir/CMakeCache.txt" ]; then
  cmake --build "$build_dir" -j"$(nproc)" --target bench_seg256
else
  scripts/setup.sh "$build_dir"
fi
bench="$build_dir/bench/bench_seg256"
[ -x "$bench" ] || { echo "bench_seg256.sh: $bench was not built (Google Benchmark missing?)" >&2; exit 1; }

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit,temperature.gpu \
  --format=csv >"$out/gpu.txt" 2>&1 || true

# A row that fails makes a tool exit non-zero; the other rows are still compared.
status=0
"$bench" --json "$out/ours.json" "${ours_args[@]}" "$@" 2>&1 | tee "$out/ours.log" ||
  status=1
"$python" bench/pytorch_seg256.py --json "$out/pytorch.json" "${torch_args[@]}" "$@" 2>&1 |
  tee "$out/pytorch.log" || status=1
echo
"$python" bench/compare_seg256.py "$out/ours.json" "$out/pytorch.json" \
  --markdown "$out/compare.md" | tee "$out/compare.txt"
exit $status
