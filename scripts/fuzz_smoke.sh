#!/usr/bin/env bash
# Builds the NIfTI and MetaImage libFuzzer targets with clang (address + undefined sanitizers)
# in their own build directory and runs each for a bounded time from a generated seed corpus.
# Exits non-zero when a build fails or a fuzzer finds a crash. Prints each target's executions.
#
#   scripts/fuzz_smoke.sh                 # 20 s per target
#   RG_FUZZ_SECONDS=600 scripts/fuzz_smoke.sh   # a longer run
#
# Environment: RG_FUZZ_SECONDS (default 20), RG_FUZZ_DIR (default build-fuzz), CLANGXX
# (default clang++-14, then clang++), RG_FUZZ_JOBS (parallel jobs per target, default 1).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${RG_FUZZ_DIR:-$ROOT/build-fuzz}"
SECS="${RG_FUZZ_SECONDS:-20}"
JOBS="${RG_FUZZ_JOBS:-1}"
CXX="${CLANGXX:-}"
if [[ -z "$CXX" ]]; then
  if command -v clang++-14 >/dev/null; then CXX=clang++-14; elif command -v clang++ >/dev/null; then CXX=clang++; else
    echo "fuzz_smoke: no clang++ found (apt-get install clang-14 libclang-rt-14-dev)" >&2; exit 2; fi
fi

mkdir -p "$OUT"
SRCS=("$ROOT/data/format_util.cpp" "$ROOT/data/nifti.cpp" "$ROOT/data/metaimage.cpp")
FLAGS=(-std=c++20 -g -O1 -I"$ROOT" -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined)

echo "fuzz_smoke: building with $CXX in $OUT"
for t in fuzz_nifti fuzz_metaimage; do
  "$CXX" "${FLAGS[@]}" "$ROOT/tests/fuzz/$t.cpp" "${SRCS[@]}" -lz -o "$OUT/$t" &
done
"$CXX" -std=c++20 -O1 -I"$ROOT" "$ROOT/tests/fuzz/make_seeds.cpp" "${SRCS[@]}" -lz -o "$OUT/make_seeds"
wait %1 && wait %2 || { echo "fuzz_smoke: build failed" >&2; exit 1; }

rm -rf "$OUT/seeds_nifti" "$OUT/seeds_metaimage"
"$OUT/make_seeds" "$OUT/seeds_nifti" "$OUT/seeds_metaimage" >/dev/null
mkdir -p "$OUT/corpus_nifti" "$OUT/corpus_metaimage" "$OUT/artifacts"

cd "$OUT"  # libFuzzer -jobs workers write fuzz-N.log into the current directory
status=0
summary=()
jobargs=()
if [[ "$JOBS" -gt 1 ]]; then jobargs=(-jobs="$JOBS" -workers="$JOBS"); fi
for t in nifti metaimage; do
  log="$OUT/fuzz_$t.log"
  echo "fuzz_smoke: running fuzz_$t for ${SECS}s"
  set +e
  # Corpus dir first (new inputs go there), seeds second (read only).
  ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0 \
  "$OUT/fuzz_$t" -max_total_time="$SECS" -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10 \
    -max_len=8192 -print_final_stats=1 "${jobargs[@]}" \
    -artifact_prefix="$OUT/artifacts/$t-" "$OUT/corpus_$t" "$OUT/seeds_$t" >"$log" 2>&1
  rc=$?
  set -e
  # With -jobs the workers log to fuzz-N.log in the current directory.
  execs=$( (cat "$log"; cat fuzz-*.log 2>/dev/null || true) | awk '/stat::number_of_executed_units/ {s += $2} END {print s + 0}')
  corpus=$(find "$OUT/corpus_$t" -type f | wc -l)
  if [[ $rc -ne 0 ]]; then
    echo "fuzz_smoke: fuzz_$t FAILED (exit $rc); see $log and $OUT/artifacts" >&2
    grep -E "ERROR|SUMMARY|runtime error" "$log" | head -20 >&2 || true
    status=1
  fi
  summary+=("fuzz_$t: $execs executions in ${SECS}s, corpus $corpus inputs, exit $rc")
done
printf '%s\n' "${summary[@]}"
exit $status
