# shellcheck shell=bash
# Sourced by the experiment scripts: the bookkeeping of a table's training runs.
#   table_run NAME TEST_PREFIX COMMAND...  starts COMMAND in the background once fewer than JOBS
#       runs are going, with OMP_NUM_THREADS=THREADS, its output in OUT/runs/NAME.log and its wall
#       time in OUT/runs/NAME.seconds; afterwards prints the log's lines that start with
#       TEST_PREFIX. COMMAND must write OUT/runs/NAME/summary.json: a run that has one is not
#       started again, so an interrupted table resumes where it stopped.
#   table_wait  waits for every started run; exits with an error if any failed.
#   table_seconds NAME  the run's wall time in seconds, or nan when it was not recorded.
#   table_epoch_steps STEPS EPOCHS  the --epoch-steps that gives at least STEPS optimizer steps
#       in EPOCHS epochs of equal length (rounded up to whole epochs).
# The caller sets OUT, JOBS and THREADS. Running JOBS one-thread runs side by side is safe for
# the numbers: they do not depend on the thread count (kernels/cpu/conv.cpp).

TABLE_PIDS=()

table_run() {
  local name=$1 prefix=$2
  shift 2
  [ -f "$OUT/runs/$name/summary.json" ] && return 0
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
  (
    rm -rf "${OUT:?}/runs/$name"
    t0=$(date +%s)
    OMP_NUM_THREADS=$THREADS "$@" >"$OUT/runs/$name.log" 2>&1 ||
      { echo "error: $name failed, see $OUT/runs/$name.log" >&2; exit 1; }
    echo $(($(date +%s) - t0)) >"$OUT/runs/$name.seconds"
    grep -E "^$prefix" "$OUT/runs/$name.log" | cut -c1-200 | sed "s/^/$name: /"
  ) &
  TABLE_PIDS+=($!)
}

table_wait() {
  local failed=0 p
  for p in "${TABLE_PIDS[@]}"; do wait "$p" || failed=1; done
  TABLE_PIDS=()
  [ $failed -eq 0 ] || { echo "error: some runs failed" >&2; exit 1; }
}

table_seconds() {
  cat "$OUT/runs/$1.seconds" 2>/dev/null || echo nan
}

table_epoch_steps() {
  echo $((($1 + $2 - 1) / $2))
}
