#!/usr/bin/env bash
# The one command for a GPU machine (docs/gpu_check.md): configures and builds the GPU targets
# with all cores, runs the GPU tests, seg256 against PyTorch, compute-sanitizer (memcheck,
# racecheck) on a small set and the conv benchmark, and writes one log per step to OUT_DIR. A
# failed step is recorded and the next one still runs; a summary table (step, status, seconds,
# key numbers) is printed last, also when the script is stopped (TERM, INT), and saved as
# OUT_DIR/summary.txt. Exits non-zero when any step failed or ran out of time.
#
# Usage: scripts/gpu_check.sh [--rehearse] [--full] [--no-seg256] [--copy-to DIR] OUT_DIR
#   --rehearse      on a machine without a GPU (the development machine): configure and build
#                   exactly what the GPU machine would, with MPI and HDF5 hidden from CMake (the
#                   GPU image has neither) and DICOM off, then check that the GPU test binary
#                   lists its tests and that both seg256 benchmarks parse their arguments.
#                   Steps that need the GPU are marked "rehearsal". Proves the one shot cannot
#                   fail at configure or build.
#   --full          also build everything the configuration has and run the CTest suite (last)
#   --no-seg256     leave out scripts/bench_seg256.sh (ours against PyTorch, end to end)
#   --copy-to DIR   at the end, copy summary.txt, gpu_tests.xml, bench_gpu_conv.json,
#                   seg256_compare.txt and a .tar.gz of all logs to DIR (on the device machine:
#                   $OUT, which brings back at most 8 files, so keep OUT_DIR outside $OUT)
#
# The GPU machine has nvcc, CMake, ninja, compute-sanitizer and PyTorch, cuDNN and NCCL only as
# PyTorch's wheels (scripts/gpu_env.sh finds them), and no MPI, HDF5 or other development
# packages: the build is configured with RG_MPI=AUTO and RG_HDF5=AUTO, which leave out
# multi-process runs and the data library, training loop and applications when those are missing;
# the GPU tests and the benchmarks need neither.
#
# Steps, in this order (the most wanted results first, so a short deadline still leaves them):
#   nvidia_smi   the GPU, driver, clocks (queries only; nothing is changed on the card)
#   env          scripts/gpu_env.sh (packages from .gpu-deps, cuDNN/NCCL) and tool versions
#   configure    cmake into $RG_BUILD_DIR (build-gpu), Release, RG_CUDA=ON, Ninja if present
#   build_gpu    the targets rg_gpu_tests, bench_gpu_conv and bench_seg256 only
#   gpu_tests    rg_gpu_tests, all tests, with --gtest_output=xml (gpu_tests.xml)
#   seg256       scripts/bench_seg256.sh: bench_seg256 and bench/pytorch_seg256.py at batch 16
#   memcheck     compute-sanitizer --tool memcheck on rg_gpu_tests (RG_GPU_TEST_SMALL=1, filter)
#   racecheck    compute-sanitizer --tool racecheck, the same
#   bench        bench/bench_gpu_conv --benchmark_out=bench_gpu_conv.json
#   build_all    everything else (ninja -k 0: keeps going past a failed target; --full only)
#   ctest        the whole CTest suite (ctest.xml, JUnit; --full only)
#
# Environment:
#   RG_SKIP               comma list of steps to skip; "build" = build_gpu,build_all,
#                         "sanitizer" = memcheck,racecheck (e.g. RG_SKIP=sanitizer,bench)
#   RG_DEADLINE_S         wall-clock budget for the whole script (default 540: the device
#                         tool's per-call limit is 600 s; 5400 with --rehearse); each step is cut
#                         at its own limit or at the deadline, and steps that no longer fit are
#                         marked "no-time"
#   RG_LIMIT_SCALE        multiplies every step's own limit (default 1; 10 with --rehearse)
#   RG_BUILD_DIR          build folder (default build-gpu, or build-rehearsal with --rehearse;
#                         a warm machine keeps it between calls)
#   RG_CUDA_ARCH          CMAKE_CUDA_ARCHITECTURES (default 90: sm_90, the H100/H200; "native"
#                         builds for whatever GPU the machine has, which needs CMake >= 3.24 and
#                         a working driver at configure time; "90a" for wgmma/setmaxnreg code)
#   RG_CMAKE_ARGS         extra configure arguments (split on spaces)
#   RG_JOBS               build and ctest parallelism (default: nproc)
#   RG_SANITIZER_FILTER   gtest filter for the sanitizer runs (default: every test but NCCL's and
#                         the whole-model one, '-GpuNccl*:GpuModel*'). The sanitizer runs set
#                         RG_GPU_TEST_SMALL=1, which leaves out each test file's largest shapes
#                         (tests/gpu/gpu_test_util.h)
#   RG_SANITIZER_ARGS     extra compute-sanitizer arguments (split on spaces), e.g.
#                         "--kernel-name-exclude kns=cudnn" (check `compute-sanitizer --help`)
#   RG_BENCH_MIN_TIME     --benchmark_min_time in seconds (default 0.05)
#   RG_BENCH_ARGS         extra benchmark arguments, e.g. --benchmark_filter=Fwd
#   RG_CTEST_EXCLUDE      ctest -E regex (default: fuzz_smoke when there is no clang++)
#   RG_CTEST_OMP_THREADS  OMP_NUM_THREADS for the parallel CTest run (default 2)
#   RG_SEG256_ARGS        arguments for both seg256 benchmarks (default
#                         "--batch 16 --precision fp32,tf32,bf16 --warmup 5 --repeats 20")
#   RG_SEG256_TORCH_ARGS  pytorch_seg256.py only (default "--modes eager,channels_last": the
#                         compiled modes take minutes to compile; add them when time allows)
set -uo pipefail

usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

with_seg256=1
rehearse=0
full=0
copy_to=""
out=""
while (($#)); do
  case $1 in
    --rehearse) rehearse=1 ;;
    --full) full=1 ;;
    --no-seg256) with_seg256=0 ;;
    --with-seg256) with_seg256=1 ;; # the default now; kept so that older commands still work
    --copy-to)
      copy_to=${2:?--copy-to needs a folder}
      shift
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    -*)
      echo "gpu_check: unknown option $1" >&2
      exit 2
      ;;
    *) out=$1 ;;
  esac
  shift
done
[ -n "$out" ] || {
  usage >&2
  exit 2
}

# Both folders are taken relative to where the script was started, before it moves to the repo.
mkdir -p "$out" || exit 2
out=$(cd "$out" && pwd)
if [ -n "$copy_to" ]; then
  mkdir -p "$copy_to" || exit 2
  copy_to=$(cd "$copy_to" && pwd)
fi
cd "$(dirname "$0")/.." || exit 2
repo=$(pwd)
start=$(date +%s)
# A rehearsal builds on the 2-core development machine: far longer limits by default.
deadline_s=${RG_DEADLINE_S:-540}
limit_scale=${RG_LIMIT_SCALE:-1}
if ((rehearse)); then
  deadline_s=${RG_DEADLINE_S:-5400}
  limit_scale=${RG_LIMIT_SCALE:-10}
fi
deadline=$((start + deadline_s))
default_build_dir=build-gpu
((rehearse)) && default_build_dir=build-rehearsal
build_dir=${RG_BUILD_DIR:-$default_build_dir}
jobs=${RG_JOBS:-$(nproc)}
arch=${RG_CUDA_ARCH:-90}
skip=",${RG_SKIP:-},"
read -r -a extra_cmake_args <<<"${RG_CMAKE_ARGS:-}"
read -r -a sanitizer_args <<<"${RG_SANITIZER_ARGS:-}"
read -r -a bench_args <<<"${RG_BENCH_ARGS:-}"
read -r -a seg256_args <<<"${RG_SEG256_ARGS:---batch 16 --precision fp32,tf32,bf16 --warmup 5 --repeats 20}"
seg256_torch_args=${RG_SEG256_TORCH_ARGS:---modes eager,channels_last}
gpu_tests_bin=$build_dir/tests/rg_gpu_tests
bench_bin=$build_dir/bench/bench_gpu_conv

step_names=()
step_status=()
step_secs=()
step_keys=()
failed=0

now() { date +%s; }
elapsed() { echo $(($(now) - start)); }

record() { # name status seconds key
  step_names+=("$1")
  step_status+=("$2")
  step_secs+=("$3")
  step_keys+=("$4")
  case $2 in ok | skipped | absent | rehearsal) ;; *) failed=$((failed + 1)) ;; esac
  printf '   %-10s %-8s %4ss  %s\n' "$1" "$2" "$3" "$4"
}

is_skipped() {
  [[ $skip == *",$1,"* ]] && return 0
  case $1 in
    memcheck | racecheck) [[ $skip == *",sanitizer,"* ]] ;;
    build_gpu | build_all) [[ $skip == *",build,"* ]] ;;
    *) return 1 ;;
  esac
}

# Prints a failed step's most telling lines (before the summary, which stays last).
show_failure() { # name log
  local log=$2 lines=""
  [ -s "$log" ] || return 0
  echo "   --- $1: from $log"
  case $1 in
    build_*) lines=$(grep -E "error|FAILED:|undefined reference|No such file" "$log" | head -n 25) ;;
    configure) lines=$(grep -E -A4 "CMake Error|Error:" "$log" | head -n 25) ;;
    memcheck | racecheck) lines=$(grep -E "^=========" "$log" | grep -v "COMPUTE-SANITIZER" | head -n 25) ;;
    gpu_tests)
      lines=$(grep -E "^\[  FAILED  \]|Failure$|^Expected|^  Actual|Which is|^Value of|error" "$log" |
        head -n 25)
      ;;
  esac
  [ -n "$lines" ] || lines=$(tail -n 25 "$log")
  cut -c1-300 <<<"$lines"
  echo "   ---"
}

# run_step NAME LIMIT_SECONDS COMMAND... : runs COMMAND with its output in OUT/NAME.log, cut at
# the step's limit or the deadline. Sets step_rc; the caller records the status and key numbers.
step_rc=0
step_dt=0
step_status_now=""
run_step() {
  local name=$1 limit=$(($2 * limit_scale)) left
  shift 2
  left=$((deadline - $(now) - 5))
  if ((left < 10)); then
    step_rc=-1
    step_dt=0
    step_status_now="no-time"
    echo "# not run: the deadline (RG_DEADLINE_S) was reached" >"$out/$name.log"
    return
  fi
  ((limit > left)) && limit=$left
  echo "== [$(elapsed)s] $name (limit ${limit}s): $*"
  current_step=$name
  current_step_start=$(now)
  local t0
  t0=$(now)
  {
    echo "# $*"
    echo "# started $(date -u '+%F %T') UTC, limit ${limit}s"
  } >"$out/$name.log"
  timeout -k 10 "$limit" "$@" >>"$out/$name.log" 2>&1
  step_rc=$?
  step_dt=$(($(now) - t0))
  case $step_rc in
    0) step_status_now=ok ;;
    124 | 137) step_status_now=TIMEOUT ;;
    *) step_status_now=FAIL ;;
  esac
  echo "# exit code $step_rc after ${step_dt}s" >>"$out/$name.log"
  [ "$step_status_now" = ok ] || show_failure "$name" "$out/$name.log"
}

# Records the step just run by run_step, with KEY unless it never started.
record_step() { # name key
  if [ "$step_status_now" = no-time ]; then
    record "$1" no-time 0 "not run: deadline reached"
  else
    record "$1" "$step_status_now" "$step_dt" "$2"
  fi
}

# Key numbers from a GoogleTest log, counted per test so that a run cut short still counts.
# Sets g_passed, g_failed, g_skipped and prints them.
gtest_key() {
  local log=$1 cut=""
  g_passed=$(grep -cE '^\[       OK \] .*\([0-9]+ ms\)' "$log")
  g_failed=$(grep -cE '^\[  FAILED  \] .*\([0-9]+ ms\)' "$log")
  g_skipped=$(grep -cE '^\[  SKIPPED \] .*\([0-9]+ ms\)' "$log")
  grep -qE '^\[==========\] .* ran\.' "$log" || cut=" (cut short)"
  echo "$g_passed passed, $g_failed failed, $g_skipped skipped$cut"
}

# The summary table (printed last, saved as summary.txt) and the copies for --copy-to. Runs once:
# at the end, or when a signal stops the script.
finished=0
finish() {
  ((finished)) && return
  finished=1
  {
    echo
    echo "gpu_check summary ($(date -u '+%F %T') UTC, $(elapsed)s in all; logs: $out/<step>.log)"
    ((rehearse)) && echo "(rehearsal on a machine without a GPU: configure and build as the GPU machine would)"
    printf '%-11s %-9s %6s  %s\n' step status seconds "key numbers"
    for i in "${!step_names[@]}"; do
      printf '%-11s %-9s %6s  %s\n' "${step_names[$i]}" "${step_status[$i]}" "${step_secs[$i]}" \
        "${step_keys[$i]}"
    done
    if ((failed)); then
      echo "gpu_check: $failed step(s) failed or ran out of time"
    else
      echo "gpu_check: all steps passed"
    fi
  } | tee "$out/summary.txt"
  if [ -n "$copy_to" ]; then
    mkdir -p "$copy_to"
    for f in summary.txt gpu_tests.xml bench_gpu_conv.json seg256_compare.txt; do
      [ -f "$out/$f" ] && cp "$out/$f" "$copy_to/"
    done
    tar -czf "$copy_to/gpu_check_logs.tar.gz" -C "$(dirname "$out")" "$(basename "$out")" 2>/dev/null ||
      echo "gpu_check: could not write $copy_to/gpu_check_logs.tar.gz" >&2
  fi
}
on_signal() {
  record "${current_step:-?}" STOPPED $(($(now) - ${current_step_start:-$start})) "stopped by a signal"
  finish
  exit 130
}
trap on_signal TERM INT HUP

# ---------------------------------------------------------------------------------------------
echo "gpu_check: $(date -u '+%F %T') UTC on $(hostname), $(nproc) cores; logs in $out;" \
  "deadline ${deadline_s}s"

# nvidia_smi
if is_skipped nvidia_smi; then
  record nvidia_smi skipped 0 ""
elif ((rehearse)); then
  record nvidia_smi rehearsal 0 "no GPU here"
else
  run_step nvidia_smi 30 bash -c 'nvidia-smi && nvidia-smi --format=csv --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,power.limit,temperature.gpu'
  key=$(grep -A1 '^name, driver_version' "$out/nvidia_smi.log" | tail -n 1 | cut -d, -f1-3)
  record_step nvidia_smi "${key:-no GPU listed}"
fi

# env: sourced here (its exports are for the steps below), so it runs without a time limit.
t0=$(now)
RG_GPU_CMAKE_ARGS=()
{
  echo "# source scripts/gpu_env.sh"
  # shellcheck source=scripts/gpu_env.sh
  source "$repo/scripts/gpu_env.sh"
  echo "# tools"
  for tool in cmake ninja nvcc g++ clang++ compute-sanitizer mpicxx mpiexec python3; do
    printf '%-18s %s\n' "$tool" "$(command -v "$tool" || echo MISSING)"
  done
  cmake --version | head -n 1
  ninja --version 2>/dev/null | sed 's/^/ninja /'
  nvcc --version 2>/dev/null | tail -n 2
  g++ --version 2>/dev/null | head -n 1
  compute-sanitizer --version 2>/dev/null | tail -n 1
  mpicxx --showme:version 2>/dev/null || mpicxx --version 2>/dev/null | head -n 1
  echo "# libraries the build needs from the machine"
  for f in /usr/include/hdf5.h /usr/include/hdf5/serial/hdf5.h /usr/include/gtest/gtest.h \
    /usr/include/benchmark/benchmark.h; do
    printf '%-40s %s\n' "$f" "$([ -e "$f" ] && echo yes || echo no)"
  done
} >"$out/env.log" 2>&1
env_rc=0
n_unpacked=$(grep -oE 'gpu_env: [0-9]+ unpacked' "$out/env.log" | grep -oE '[0-9]+' | head -n 1)
nvcc_v=$(nvcc --version 2>/dev/null | grep -oE 'release [0-9.]+' | head -n 1)
missing_tools=$(awk '$2 == "MISSING" { print $1 }' "$out/env.log" | paste -sd' ' -)
key="${n_unpacked:-0} pkgs from .gpu-deps; nvcc ${nvcc_v#release }${missing_tools:+; missing: $missing_tools}"
grep -qE "NOT found|refusing|failed" "$out/env.log" && env_rc=1
if ((env_rc == 0)); then env_status=ok; else env_status=FAIL; fi
[ "$env_status" = ok ] || grep -E "NOT found|refusing|failed" "$out/env.log" | sed 's/^/   /'
record env "$env_status" $(($(now) - t0)) "$key"

# configure
if is_skipped configure; then
  record configure skipped 0 ""
else
  # What the GPU image lacks is optional here (RG_MPI, RG_HDF5, RG_DCMTK = AUTO); the rehearsal
  # hides this machine's MPI and HDF5 so that it configures exactly as the image will.
  cfg=(-S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DRG_CUDA=ON
    "-DCMAKE_CUDA_ARCHITECTURES=$arch" -DRG_MPI=AUTO -DRG_HDF5=AUTO -DRG_DCMTK=AUTO)
  if ((rehearse)); then
    cfg+=(-DCMAKE_DISABLE_FIND_PACKAGE_MPI=ON -DCMAKE_DISABLE_FIND_PACKAGE_HDF5=ON -DRG_DCMTK=OFF)
  fi
  cfg+=("${RG_GPU_CMAKE_ARGS[@]}" "${extra_cmake_args[@]}")
  if [ ! -f "$build_dir/CMakeCache.txt" ] && command -v ninja >/dev/null 2>&1; then
    cfg+=(-G Ninja)
  fi
  run_step configure 180 cmake "${cfg[@]}"
  log=$out/configure.log
  key=$(grep -oE 'roentgen: (CUDA backend|MPI|DICOM support \(DCMTK\)) [A-Z]+' "$log" |
    sed 's/roentgen: //; s/ (DCMTK)//' | paste -sd, - | sed 's/,/, /g')
  grep -q 'roentgen: HDF5 not found' "$log" && key="$key, HDF5 OFF (no data/train/apps)"
  blas=$(grep -oE 'roentgen: BLAS [^ ]+' "$log" | sed 's/roentgen: BLAS //')
  nwarn=$(grep -c "CMake Warning" "$log")
  record_step configure "${key:-?}; BLAS ${blas:-?}; $nwarn warnings"
fi

# build_gpu: the GPU test binary and the conv benchmark first.
gpu_targets=()
if is_skipped build_gpu; then
  record build_gpu skipped 0 ""
elif [ ! -f "$build_dir/CMakeCache.txt" ]; then
  record build_gpu FAIL 0 "not configured"
else
  target_list=$(cmake --build "$build_dir" --target help 2>/dev/null)
  for t in rg_gpu_tests bench_gpu_conv bench_seg256; do
    grep -qE "(^|[ .])$t(:| |$)" <<<"$target_list" && gpu_targets+=("$t")
  done
  if ((${#gpu_targets[@]} == 0)); then
    record build_gpu FAIL 0 "no rg_gpu_tests target (CUDA off?)"
  else
    run_step build_gpu 420 cmake --build "$build_dir" -j "$jobs" --target "${gpu_targets[@]}"
    nwarn=$(grep -c "warning" "$out/build_gpu.log")
    nerr=$(grep -cE "error:|FAILED:" "$out/build_gpu.log")
    record_step build_gpu "${gpu_targets[*]}: $nerr errors, $nwarn warning lines"
  fi
fi

# gpu_tests
if is_skipped gpu_tests; then
  record gpu_tests skipped 0 ""
elif [ ! -x "$gpu_tests_bin" ]; then
  record gpu_tests FAIL 0 "$gpu_tests_bin not built"
elif ((rehearse)); then
  # No GPU: the binary must start, load its libraries and list its tests.
  run_step gpu_tests 60 "$gpu_tests_bin" --gtest_list_tests
  n=$(grep -cE '^  [A-Za-z0-9_/]' "$out/gpu_tests.log")
  record_step gpu_tests "rehearsal: the binary lists $n tests"
else
  run_step gpu_tests 180 "$gpu_tests_bin" --gtest_output="xml:$out/gpu_tests.xml"
  key=$(gtest_key "$out/gpu_tests.log")
  gtest_key "$out/gpu_tests.log" >/dev/null # sets the counts in this shell
  # On a GPU machine a skip means the test did not see the device.
  if ((g_passed == 0 && g_skipped > 0)) && [ "$step_status_now" = ok ]; then
    step_status_now=FAIL
    key="$key: no device seen?"
  fi
  record_step gpu_tests "$key"
fi

# seg256: ours and PyTorch, one after the other on the same GPU (BENCHMARK.md).
if ((with_seg256)); then
  seg256_bin=$build_dir/bench/bench_seg256
  if is_skipped seg256; then
    record seg256 skipped 0 ""
  elif ((rehearse)); then
    # shellcheck disable=SC2016 # $1 is the inner shell's
    run_step seg256 60 bash -c '"$1" --help >/dev/null &&
      "$1" --device cpu --precision fp32 --batch 1 --size 32 --ngf 4 --ndf 4 --warmup 1 --repeats 1 &&
      python3 -c "import ast, sys; [ast.parse(open(f).read(), f) for f in sys.argv[1:]]" \
        bench/pytorch_seg256.py bench/compare_seg256.py' seg256 "$seg256_bin"
    record_step seg256 "rehearsal: bench_seg256 runs a CPU step, the PyTorch scripts parse"
  elif [ ! -x "$seg256_bin" ]; then
    record seg256 FAIL 0 "$seg256_bin not built"
  else
    run_step seg256 240 env BUILD_DIR="$build_dir" TORCH_ARGS="$seg256_torch_args" \
      bash scripts/bench_seg256.sh "$out/seg256" "${seg256_args[@]}"
    [ -f "$out/seg256/compare.txt" ] && cp "$out/seg256/compare.txt" "$out/seg256_compare.txt"
    ratio=$(grep -E '^ *16 ' "$out/seg256/compare.txt" 2>/dev/null | head -n 3 | awk '{ print $NF }' |
      paste -sd' ' -)
    record_step seg256 "ours/PyTorch at batch 16: ${ratio:-see seg256_compare.txt}"
  fi
fi

# memcheck, racecheck
for tool in memcheck racecheck; do
  if is_skipped $tool; then
    record $tool skipped 0 ""
  elif ((rehearse)); then
    record $tool rehearsal 0 "needs the GPU"
  elif [ ! -x "$gpu_tests_bin" ]; then
    record $tool FAIL 0 "$gpu_tests_bin not built"
  elif ! command -v compute-sanitizer >/dev/null 2>&1; then
    record $tool FAIL 0 "compute-sanitizer not found"
  else
    run_step $tool 150 env RG_GPU_TEST_SMALL=1 compute-sanitizer --tool $tool --error-exitcode 1 \
      "${sanitizer_args[@]}" "$gpu_tests_bin" --gtest_filter="${RG_SANITIZER_FILTER:--GpuNccl*:GpuModel*}"
    log=$out/$tool.log
    if [ $tool = memcheck ]; then
      summary=$(grep -oE 'ERROR SUMMARY: [0-9]+ errors?' "$log" | tail -n 1)
    else
      summary=$(grep -oE 'RACECHECK SUMMARY: [0-9]+ hazards? displayed \([0-9]+ errors?, [0-9]+ warnings?\)' "$log" | tail -n 1)
    fi
    record_step $tool "${summary:-no sanitizer summary}; $(gtest_key "$log")"
  fi
done

# bench
if is_skipped bench; then
  record bench skipped 0 ""
elif ((rehearse)); then
  record bench rehearsal 0 "needs the GPU"
elif [ ! -x "$bench_bin" ]; then
  record bench absent 0 "$bench_bin not built (no bench/bench_gpu_conv.cpp yet?)"
else
  min_time=${RG_BENCH_MIN_TIME:-0.05}
  # Google Benchmark >= 1.8 wants a unit ("0.05s"); 1.7 wants a plain number.
  if "$bench_bin" --help 2>&1 | grep -q '<float>s'; then min_time="${min_time%s}s"; fi
  run_step bench 200 "$bench_bin" --benchmark_out="$out/bench_gpu_conv.json" \
    --benchmark_out_format=json --benchmark_min_time="$min_time" "${bench_args[@]}"
  n=$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["benchmarks"]))' \
    "$out/bench_gpu_conv.json" 2>/dev/null || grep -c '"run_name"' "$out/bench_gpu_conv.json" 2>/dev/null)
  record_step bench "${n:-0} results in bench_gpu_conv.json"
fi

# build_all
if ((!full)); then
  record build_all skipped 0 "--full only"
elif is_skipped build_all; then
  record build_all skipped 0 ""
elif [ ! -f "$build_dir/CMakeCache.txt" ]; then
  record build_all FAIL 0 "not configured"
else
  keep_going=(-k)
  [ -f "$build_dir/build.ninja" ] && keep_going=(-k 0)
  run_step build_all 420 cmake --build "$build_dir" -j "$jobs" -- "${keep_going[@]}"
  nwarn=$(grep -c "warning" "$out/build_all.log")
  nerr=$(grep -cE "error:|FAILED:" "$out/build_all.log")
  record_step build_all "$nerr errors, $nwarn warning lines"
fi

# ctest
if ((!full)); then
  record ctest skipped 0 "--full only"
elif is_skipped ctest; then
  record ctest skipped 0 ""
elif [ ! -f "$build_dir/CTestTestfile.cmake" ]; then
  record ctest FAIL 0 "no CTest files in $build_dir"
else
  exclude=${RG_CTEST_EXCLUDE-}
  if [ -z "${RG_CTEST_EXCLUDE+set}" ] && ! command -v clang++ >/dev/null 2>&1 &&
    ! command -v clang++-14 >/dev/null 2>&1; then
    exclude=fuzz_smoke
  fi
  ctest_args=(--test-dir "$build_dir" -j "$jobs" --output-on-failure --timeout 300
    --output-junit "$out/ctest.xml")
  [ -n "$exclude" ] && ctest_args+=(-E "$exclude")
  run_step ctest 300 env OMP_NUM_THREADS="${RG_CTEST_OMP_THREADS:-2}" ctest "${ctest_args[@]}"
  key=$(grep -oE '[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$out/ctest.log" | tail -n 1)
  record_step ctest "${key:-no CTest summary}${exclude:+ (-E $exclude)}"
fi

# ---------------------------------------------------------------------------------------------
finish
((failed == 0))
