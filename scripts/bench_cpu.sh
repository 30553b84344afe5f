#!/usr/bin/env bash
# The CPU training step side by side with PyTorch (issue 20, docs/performance.md): ours
# (bench_seg256 --device cpu) and every PyTorch build found, one after the other on the same
# cores with the same thread count, for the two configurations of the CPU table:
#   cpu-default  128x128, batch 8, U-Net num_downs 7, ngf 32, D ndf 32 (train_seg's CPU default
#                networks before session 15; the default since adds --full-res-width 16, which
#                bench_seg256 does not build, so this row times the U-Net without those ends)
#   unet_256     256x256, batch 1 and 4, unet_256 (ngf 64), D ndf 64 (BENCHMARK.md's networks)
# and prints ours / best PyTorch per row against the target speedup (2x).
#
# Usage: scripts/bench_cpu.sh OUT_DIR
# Environment: BUILD_DIR (default build; bench_seg256 is built if missing), THREADS (OpenMP and
#   PyTorch threads, default: all cores), WARMUP (3), REPEATS (7, median reported),
#   CONFIGS ("cpu-default unet_256"),
#   TORCH_PYTHONS (interpreters that import torch; default: those of python3, /usr/bin/python3
#   (Debian's python3-torch) and $RG_TORCH_VENV/bin/python that do, one per torch version).
# Writes OUT_DIR/<config>/{ours,torch-<version>}.{json,log} and OUT_DIR/<config>/compare.{txt,md}.
# PyTorch is a benchmark reference only: without it, ours is measured and no ratio printed.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/bench_cpu.sh OUT_DIR}
build_dir=${BUILD_DIR:-build}
threads=${THREADS:-$(nproc)}
warmup=${WARMUP:-3}
repeats=${REPEATS:-7}
configs=${CONFIGS:-"cpu-default unet_256"}
mkdir -p "$out"

bench="$build_dir/bench/bench_seg256"
if [ ! -x "$bench" ]; then
  [ -f "$build_dir/CMakeCache.txt" ] || scripts/setup.sh "$build_dir"
  cmake --build "$build_dir" -j"$(nproc)" --target bench_seg256
fi
[ -x "$bench" ] || { echo "bench_cpu.sh: $bench was not built (Google Benchmark missing?)" >&2; exit 1; }

# PyTorch builds: one interpreter per distinct torch version.
pythons=()
if [ -n "${TORCH_PYTHONS:-}" ]; then
  read -r -a pythons <<<"$TORCH_PYTHONS"
else
  declare -A seen=()
  for py in python3 /usr/bin/python3 ${RG_TORCH_VENV:+"$RG_TORCH_VENV/bin/python"}; do
    v=$("$py" -c 'import torch; print(torch.__version__)' 2>/dev/null) || continue
    [ -n "${seen[$v]:-}" ] && continue
    seen[$v]=1
    pythons+=("$py")
  done
fi
[ ${#pythons[@]} -gt 0 ] || echo "bench_cpu.sh: no python with torch found (apt install python3-torch, or set TORCH_PYTHONS): measuring ours only" >&2

config_args() {
  case $1 in
    cpu-default) echo "--size 128 --num-downs 7 --ngf 32 --ndf 32 --batch 8" ;;
    unet_256) echo "--size 256 --ngf 64 --ndf 64 --batch 1,4" ;;
    *) echo "bench_cpu.sh: unknown configuration $1 (cpu-default, unet_256)" >&2; return 1 ;;
  esac
}

echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $threads thread(s); load average now: $(cut -d' ' -f1-3 /proc/loadavg)"
export OMP_NUM_THREADS=$threads
status=0
for config in $configs; do
  read -r -a args <<<"$(config_args "$config")"
  dir="$out/$config"
  mkdir -p "$dir"
  echo "== $config: ${args[*]}, warm-up $warmup, median of $repeats"
  "$bench" --device cpu --precision fp32 --warmup "$warmup" --repeats "$repeats" "${args[@]}" \
    --json "$dir/ours.json" >"$dir/ours.log" 2>&1 || { echo "ours failed: $dir/ours.log" >&2; status=1; }
  torch_jsons=()
  for py in "${pythons[@]}"; do
    v=$("$py" -c 'import torch; print(torch.__version__)')
    json="$dir/torch-$v.json"
    "$py" bench/pytorch_seg256.py --device cpu --precision fp32 --modes eager,channels_last \
      --warmup "$warmup" --repeats "$repeats" "${args[@]}" --json "$json" >"$dir/torch-$v.log" 2>&1 ||
      { echo "PyTorch $v failed: $dir/torch-$v.log" >&2; status=1; }
    [ -f "$json" ] && torch_jsons+=("$json")
  done
  if [ ${#torch_jsons[@]} -gt 0 ] && [ -f "$dir/ours.json" ]; then
    python3 bench/compare_seg256.py "$dir/ours.json" "${torch_jsons[@]}" --target-speedup 2 \
      --markdown "$dir/compare.md" | tee "$dir/compare.txt"
  elif [ -f "$dir/ours.log" ]; then
    tail -5 "$dir/ours.log"
  fi
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (a busy machine makes every number slower)"
exit $status
