#!/usr/bin/env bash
# Sets up, builds and runs the whole test suite (CPU tests always; GPU tests skip with a
# message where no GPU exists). Ends with CTest's summary.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
scripts/setup.sh "$build_dir"
cd "$build_dir"
ctest --output-on-failure -j"$(nproc)" --timeout 600
