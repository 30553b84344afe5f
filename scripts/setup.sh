#!/usr/bin/env bash
# Installs the Debian packages roentgen needs (only the missing ones) and builds it.
# Usage: scripts/setup.sh [BUILD_DIR]   (default: build)
# Environment: CI=true builds CUDA code for sm_90 only; RG_CUDA=OFF forces a CPU-only build.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${1:-build}

packages=(build-essential cmake pkg-config libopenblas-dev libopenblas-openmp-dev libgtest-dev libgmock-dev
          libbenchmark-dev libhdf5-dev zlib1g-dev libpng-dev nlohmann-json3-dev libcli11-dev
          libdcmtk-dev libfftw3-dev mricron-data clang libclang-rt-dev libopenmpi-dev openmpi-bin
          python3)  # python3: the CUDA emulation tests rewrite kernel launches with a script
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# DICOM support is required here (setup installed DCMTK): fail loudly if it ever goes missing.
cmake_args=(-S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DRG_DCMTK=ON)
if [ "${CI:-}" = "true" ]; then
  cmake_args+=(-DCMAKE_CUDA_ARCHITECTURES=90)
fi
[ -n "${RG_CUDA:-}" ] && cmake_args+=(-DRG_CUDA="$RG_CUDA")
cmake "${cmake_args[@]}"
cmake --build "$build_dir" -j"$(nproc)"
