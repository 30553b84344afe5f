#!/usr/bin/env bash
# Downloads (does not install) the Debian 12 packages that the GPU machine (Ubuntu 24.04, no
# network, no apt) may lack, into the git-ignored folder .gpu-deps/. A device call carries that
# folder (carry: [".gpu-deps"]) and scripts/gpu_env.sh unpacks there, into /tmp/rg-deps, only
# the packages the machine does not already have. See docs/gpu_check.md.
#
# Usage: scripts/fetch_gpu_deps.sh            (run on a Debian 12 machine with network)
# Environment: RG_DEPS_WITH_ICU=1 also fetches libxml2 + libicu72 (10 MiB) for DICOM support on
#   a machine without libxml2.so.2; RG_DEPS_MAX_MIB (default 40) is the size limit.
#
# Why each package (Debian 12 names; Ubuntu 24.04 names some runtime packages ...t64, with the
# same sonames, which gpu_env.sh recognises):
#   OpenBLAS, OpenMP build: libopenblas0-openmp (library), libopenblas-openmp-dev (libopenblas.so
#     link and cblas.h under .../openblas-openmp/), libgfortran5 + libquadmath0 (what the library
#     needs; gcc alone does not install gfortran's runtime). libgomp1 comes with any gcc.
#     libopenblas-dev is left out: on Debian 12 it is an empty package that only depends on one
#     of the -dev flavours.
#   Header-only: libcli11-dev (apps, bench_seg256), nlohmann-json3-dev (engine, models, data).
#   PNG/zlib: libpng-dev, libpng16-16 (Ubuntu: libpng16-16t64), zlib1g-dev (zlib1g itself is
#     part of every Ubuntu system).
#   DCMTK (optional in the build; data/CMakeLists.txt checks that it links): libdcmtk-dev,
#     libdcmtk17, and the runtime libraries that the DCMTK targets we link need: libtiff6 with
#     libjpeg62-turbo, libwebp7, libjbig0, libdeflate0, liblerc4 (for libdcmimage, pulled in by
#     dcmjpeg's CMake target). libdcmdata needs libxml2.so.2: Debian's libxml2 needs libicu72
#     (9 MiB), so both only come with RG_DEPS_WITH_ICU=1; without them DICOM support depends on
#     the machine's own libxml2. libssl3/libwrap0/libnsl2 are needed only by DCMTK modules we
#     do not link (dcmtls, dcmnet; the build drops a missing -lnsl), so they are left out.
#   FFTW (data/fft.cpp, required): libfftw3-dev (header, libfftw3.so link), libfftw3-double3.
#   Fallbacks in case the image lacks them (small): libgtest-dev, libgmock-dev, libbenchmark-dev,
#     libbenchmark1debian (googletest, the sources that libgtest-dev depends on, is not needed).
# Not fetched (large, many dependencies; expected on the image): HDF5, OpenMPI, CUDA, cuDNN, NCCL.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.gpu-deps
max_mib=${RG_DEPS_MAX_MIB:-40}

packages=(
  libopenblas0-openmp libopenblas-openmp-dev libgfortran5 libquadmath0
  libcli11-dev nlohmann-json3-dev
  libpng-dev libpng16-16 zlib1g-dev
  libdcmtk-dev libdcmtk17 libtiff6 libjpeg62-turbo libwebp7 libjbig0 libdeflate0 liblerc4
  libgtest-dev libgmock-dev libbenchmark-dev libbenchmark1debian
  libfftw3-dev libfftw3-double3
)
if [ "${RG_DEPS_WITH_ICU:-0}" = 1 ]; then
  packages+=(libxml2 libicu72)
fi

command -v apt-get >/dev/null || { echo "fetch_gpu_deps: needs apt-get (Debian 12)" >&2; exit 1; }
if [ "$(dpkg --print-architecture)" != amd64 ]; then
  echo "fetch_gpu_deps: this machine is $(dpkg --print-architecture); the GPU machine is amd64" >&2
  exit 1
fi
grep -qx "/$dest/" .gitignore || echo "fetch_gpu_deps: warning: /$dest/ is not in .gitignore" >&2

# A fresh folder: no stale versions next to the new ones (gpu_env.sh unpacks every .deb).
rm -rf "$dest"
mkdir -p "$dest"
# apt-get download needs package lists; refresh them only when there are none.
if ! apt-cache show --no-all-versions libopenblas0-openmp >/dev/null 2>&1; then
  apt-get update -qq
fi
(cd "$dest" && apt-get download -q "${packages[@]}")
# File names carry versions ("1%3a1.2.13", "3.6.7-9~deb12u4", "0.3.21+ds-4"): keep them to
# letters, digits, '.', '_' and '-' for the transfer (dpkg -x reads the package, not the name).
for f in "$dest"/*.deb; do
  name=$(basename "$f")
  clean=$(printf '%s' "${name//%3a/_}" | tr -c 'A-Za-z0-9._-' '_')
  [ "$clean" = "$name" ] || mv "$f" "$dest/$clean"
done

echo
echo "fetch_gpu_deps: ${#packages[@]} packages in $dest/"
for f in "$dest"/*.deb; do
  printf '  %-60s %6d KiB\n' "$(basename "$f")" $(($(stat -c %s "$f") / 1024))
done
total=$(du -cb "$dest"/*.deb | tail -1 | cut -f1)
awk -v t="$total" -v m="$max_mib" 'BEGIN { printf "fetch_gpu_deps: total %.1f MiB (limit %d MiB; a device call carries at most 64 MiB with the tree)\n", t / 1048576, m }'
if ((total > max_mib * 1048576)); then
  echo "fetch_gpu_deps: over the limit" >&2
  exit 1
fi
