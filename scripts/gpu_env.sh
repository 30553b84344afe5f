# shellcheck shell=bash
# Prepares the build environment on the GPU machine (Ubuntu 24.04, no network, no apt); sourced
# by scripts/gpu_check.sh, or by hand: `source scripts/gpu_env.sh`. See docs/gpu_check.md.
#
# 1. Packages: for each .deb in .gpu-deps/ (scripts/fetch_gpu_deps.sh fetched them on Debian 12)
#    that the machine does not already have, unpacks it with `dpkg -x` into /tmp/rg-deps (never
#    into /: a foreign package there could break the machine's own libraries), re-points links
#    that point at files the machine names differently (libz.so -> the machine's libz.so.1), and
#    exports CMAKE_PREFIX_PATH, LIBRARY_PATH, LD_LIBRARY_PATH, C_INCLUDE_PATH and
#    CPLUS_INCLUDE_PATH so that CMake, the compilers and the programs find them. Only missing
#    packages are unpacked, so nothing the machine has is shadowed.
# 2. CUDA: puts the toolkit's bin/ on PATH when nvcc is not there; when cuDNN or NCCL are not in
#    the toolkit or the system folders but in Python's nvidia-* wheels (PyTorch's), passes their
#    paths to CMake (RG_CUDNN_*, RG_NCCL_*) and adds their lib/ to LD_LIBRARY_PATH.
# 3. CMake 4 refuses packages' config files written for CMake < 3.5: CMAKE_POLICY_VERSION_MINIMUM.
#
# Sets the bash array RG_GPU_CMAKE_ARGS (extra configure arguments) and prints what came from
# the system and what from .gpu-deps. Environment: RG_DEPS_DIR (default <repo>/.gpu-deps),
# RG_DEPS_ROOT (default /tmp/rg-deps), RG_DEPS_FORCE=1 (unpack every package, even present ones).
# Sourcing it twice in one shell does nothing the second time.

if [ "${RG_GPU_ENV_DONE:-}" = 1 ]; then
  echo "gpu_env: already set up in this shell"
  # shellcheck disable=SC2317 # exit when run instead of sourced
  return 0 2>/dev/null || exit 0
fi

RG_GPU_CMAKE_ARGS=()

# Is what this package provides already on the machine? Installed through dpkg under its name
# (or Ubuntu 24.04's ...t64 name), or else every header, shared library (by soname) and link
# library it ships is present at the same place.
rg_env_pkg_on_system() {
  local deb=$1 pkg name path
  pkg=$(dpkg-deb -f "$deb" Package)
  for name in "$pkg" "${pkg}t64"; do
    if dpkg-query -W -f='${Status}\n' "$name" 2>/dev/null | grep -q "install ok installed"; then
      return 0
    fi
  done
  while read -r path; do
    path=${path#.}
    case $path in
      */include/*.h | */include/*.hpp | */include/*/*) ;;
      *.so | *.so.[0-9]*) ;;
      *) continue ;;
    esac
    [ "$path" = "${path%/}" ] || continue # a folder
    if [[ $path == *.so.* && ! $path =~ \.so\.[0-9]+$ ]]; then
      continue # a versioned file name (libz.so.1.2.13): the soname link stands for it
    fi
    [ -e "$path" ] && continue
    [ -e "/usr$path" ] && continue        # /lib/... shipped, /usr/lib/... on a merged-/usr system
    [ -e "${path#/usr}" ] && continue     # and the other way round
    if [[ $path =~ \.so\.[0-9]+$ && ${path%/*} =~ ^(/usr)?/lib/x86_64-linux-gnu$ ]] &&
      grep -qF " ${path##*/} " <<<"$rg_env_ldcache"; then
      continue # the soname is known to the dynamic linker, wherever the machine keeps it
    fi
    return 1
  done < <(dpkg-deb -c "$deb" | awk '{ print $6 }')
  # A package with nothing to compare (documentation only) counts as present.
  return 0
}

# Links whose target is missing: an absolute target may be unpacked under the root; a versioned
# name (libz.so.1.2.13, libpng16.so.16.39.0) is looked up down to its soname (libz.so.1) in the
# unpacked and the system library folders.
rg_env_fix_links() {
  local root=$1 link target cand dir
  while IFS= read -r link; do
    target=$(readlink "$link")
    if [[ $target == /* && -e $root$target ]]; then
      ln -sfn "$root$target" "$link"
      rg_env_fixed+=("${link#"$root"} -> $root$target")
      continue
    fi
    cand=${target##*/}
    while :; do
      for dir in "$root/usr/lib/x86_64-linux-gnu" "$root/lib/x86_64-linux-gnu" \
        /usr/lib/x86_64-linux-gnu /lib/x86_64-linux-gnu; do
        if [ -e "$dir/$cand" ]; then
          ln -sfn "$dir/$cand" "$link"
          rg_env_fixed+=("${link#"$root"} -> $dir/$cand")
          break 2
        fi
      done
      [[ $cand == *.so.* && ! $cand =~ \.so\.[0-9]+$ ]] || {
        rg_env_dangling+=("${link#"$root"} -> $target")
        break
      }
      cand=${cand%.*}
    done
  done < <(find "$root" -xtype l -not -path '*/share/doc/*' -not -path '*/share/man/*')
}

# Prepends the existing folders among $2... to the colon list named $1 and exports it.
rg_env_prepend() {
  local var=$1 dir list=""
  shift
  for dir in "$@"; do
    [ -d "$dir" ] && list+="${list:+:}$dir"
  done
  [ -n "$list" ] || return 0
  export "$var=$list${!var:+:${!var}}"
}

# cuDNN / NCCL: $1 name for messages, $2 CMake prefix (RG_CUDNN), $3 header, $4 library name.
rg_env_cuda_library() {
  local what=$1 var=$2 header=$3 lib=$4 cuda_home dir inc="" so="" sp f
  cuda_home=${CUDA_HOME:-${CUDA_PATH:-/usr/local/cuda}}
  local inc_dirs=("$cuda_home/include" "$cuda_home/targets/x86_64-linux/include" /usr/include
    /usr/include/x86_64-linux-gnu)
  local lib_dirs=("$cuda_home/lib64" "$cuda_home/targets/x86_64-linux/lib" /usr/lib/x86_64-linux-gnu)
  for dir in "${inc_dirs[@]}"; do
    [ -e "$dir/$header" ] && { inc=$dir; break; }
  done
  for dir in "${lib_dirs[@]}"; do
    [ -e "$dir/lib$lib.so" ] && { so=$dir/lib$lib.so; break; }
  done
  if [ -n "$inc" ] && [ -n "$so" ]; then
    echo "gpu_env: $what from the system: $inc/$header, $so"
    return 0
  fi
  # A runtime-only install (libcudnn.so.9 without the libcudnn.so link): name the file.
  if [ -z "$so" ]; then
    for dir in "${lib_dirs[@]}"; do
      for sp in "$dir/lib$lib".so.[0-9]*; do
        [ -e "$sp" ] && { so=$sp; break 2; }
      done
    done
  fi
  # Python's nvidia-* wheels (nvidia/cudnn/, nvidia/nccl/, or nvidia/cu13/ for CUDA 13 wheels).
  if [ -z "$inc" ] || [ -z "$so" ]; then
    local sites=() py
    for py in python3 /opt/torch/.venv/bin/python3; do
      command -v "$py" >/dev/null 2>&1 || continue
      while IFS= read -r sp; do sites+=("$sp"); done < <("$py" -c \
        'import site; print("\n".join(site.getsitepackages()))' 2>/dev/null)
    done
    for sp in "${sites[@]}"; do
      for dir in "$sp"/nvidia/*/include "$sp"/nvidia/*/*/include; do
        if [ -e "$dir/$header" ] && [ -z "$inc" ]; then inc=$dir; fi
      done
      for dir in "$sp"/nvidia/*/lib "$sp"/nvidia/*/*/lib; do
        for f in "$dir/lib$lib.so" "$dir/lib$lib".so.[0-9]*; do
          if [ -e "$f" ] && [ -z "$so" ]; then so=$f; fi
        done
      done
    done
  fi
  if [ -z "$inc" ] || [ -z "$so" ]; then
    echo "gpu_env: $what NOT found (header: ${inc:-missing}, library: ${so:-missing});" \
      "the configure step will stop on it"
    return 1
  fi
  echo "gpu_env: $what: $inc/$header, $so (passed to CMake)"
  RG_GPU_CMAKE_ARGS+=("-D${var}_INCLUDE_DIR=$inc" "-D${var}_LIBRARY=$so")
  case ${so%/*} in
    /usr/lib/x86_64-linux-gnu | /lib/x86_64-linux-gnu) ;;
    *) rg_env_prepend LD_LIBRARY_PATH "${so%/*}" ;;
  esac
}

rg_env_main() {
  local repo deps_dir root deb pkg stamp n_debs=0
  local from_system=() from_debs=()
  rg_env_fixed=()
  rg_env_dangling=()
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  deps_dir=${RG_DEPS_DIR:-$repo/.gpu-deps}
  root=${RG_DEPS_ROOT:-/tmp/rg-deps}
  root=$(realpath -m "$root")
  if [ "$root" = / ] || [[ $root != /* ]]; then
    echo "gpu_env: refusing to unpack into '$root'" >&2
    return 1
  fi

  # CUDA's tools.
  local cuda_home=${CUDA_HOME:-${CUDA_PATH:-/usr/local/cuda}}
  if ! command -v nvcc >/dev/null 2>&1 && [ -x "$cuda_home/bin/nvcc" ]; then
    export PATH="$cuda_home/bin:$PATH"
    echo "gpu_env: added $cuda_home/bin to PATH"
  fi
  if ! command -v compute-sanitizer >/dev/null 2>&1 &&
    [ -x "$cuda_home/compute-sanitizer/compute-sanitizer" ]; then
    export PATH="$cuda_home/compute-sanitizer:$PATH"
    echo "gpu_env: added $cuda_home/compute-sanitizer to PATH"
  fi

  # Packages from .gpu-deps.
  rg_env_ldcache=$(ldconfig -p 2>/dev/null | awk '{ print " " $1 " " }')
  for deb in "$deps_dir"/*.deb; do
    [ -e "$deb" ] || continue
    n_debs=$((n_debs + 1))
    pkg=$(dpkg-deb -f "$deb" Package)
    if [ "${RG_DEPS_FORCE:-0}" != 1 ] && rg_env_pkg_on_system "$deb"; then
      from_system+=("$pkg")
      continue
    fi
    mkdir -p "$root/.rg-unpacked"
    stamp=$root/.rg-unpacked/$(basename "$deb")
    if [ ! -e "$stamp" ]; then
      dpkg -x "$deb" "$root" || { echo "gpu_env: dpkg -x $deb failed" >&2; continue; }
      touch "$stamp"
    fi
    from_debs+=("$pkg")
  done
  if ((n_debs == 0)); then
    echo "gpu_env: no packages in $deps_dir (run scripts/fetch_gpu_deps.sh and carry .gpu-deps)"
  else
    echo "gpu_env: ${#from_system[@]} of $n_debs packages already on the machine: ${from_system[*]:-none}"
    echo "gpu_env: ${#from_debs[@]} unpacked from .gpu-deps into $root: ${from_debs[*]:-none}"
  fi
  if ((${#from_debs[@]})); then
    rg_env_fix_links "$root"
    local l
    for l in "${rg_env_fixed[@]}"; do echo "gpu_env: link $l"; done
    for l in "${rg_env_dangling[@]}"; do echo "gpu_env: link left dangling: $l"; done
    rg_env_prepend CMAKE_PREFIX_PATH "$root/usr"
    rg_env_prepend LIBRARY_PATH "$root/usr/lib/x86_64-linux-gnu" "$root/lib/x86_64-linux-gnu"
    rg_env_prepend LD_LIBRARY_PATH "$root/usr/lib/x86_64-linux-gnu" "$root/lib/x86_64-linux-gnu"
    rg_env_prepend C_INCLUDE_PATH "$root/usr/include"
    rg_env_prepend CPLUS_INCLUDE_PATH "$root/usr/include"
    if [ -d "$root/usr/lib/x86_64-linux-gnu/openblas-openmp" ]; then
      RG_GPU_CMAKE_ARGS+=("-DRG_OPENBLAS_DIR=$root/usr/lib/x86_64-linux-gnu/openblas-openmp")
    fi
    # What an unpacked library still misses (DCMTK without libxml2, say): the build copes
    # (data/CMakeLists.txt then leaves DICOM out), but say so here.
    local so missing
    for so in "$root"/usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0 \
      "$root"/usr/lib/x86_64-linux-gnu/lib{dcmdata,dcmjpeg,dcmjpls,dcmimage,dcmimgle,ofstd,oflog}.so.17 \
      "$root"/usr/lib/x86_64-linux-gnu/lib{tiff.so.6,png16.so.16,gfortran.so.5,benchmark.so.1debian}; do
      [ -e "$so" ] || continue
      missing=$(ldd "$so" 2>/dev/null | awk '/not found/ { print $1 }' | tr '\n' ' ')
      [ -n "$missing" ] && echo "gpu_env: ${so#"$root"} needs, not found: $missing"
    done
  fi

  # cuDNN and NCCL.
  rg_env_cuda_library cuDNN RG_CUDNN cudnn.h cudnn
  rg_env_cuda_library NCCL RG_NCCL nccl.h nccl

  # CMake 4 rejects cmake_minimum_required(VERSION < 3.5) in packages' config files.
  local cmake_major
  cmake_major=$(cmake --version 2>/dev/null | awk 'NR == 1 { split($3, v, "."); print v[1] }')
  if [ "${cmake_major:-0}" -ge 4 ] && [ -z "${CMAKE_POLICY_VERSION_MINIMUM:-}" ]; then
    export CMAKE_POLICY_VERSION_MINIMUM=3.5
    echo "gpu_env: CMake $cmake_major.x: CMAKE_POLICY_VERSION_MINIMUM=3.5"
  fi

  echo "gpu_env: CMAKE_PREFIX_PATH=${CMAKE_PREFIX_PATH:-}"
  echo "gpu_env: LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
  echo "gpu_env: CMake arguments: ${RG_GPU_CMAKE_ARGS[*]:-none}"
  RG_GPU_ENV_DONE=1 # not exported: a child shell sets its own RG_GPU_CMAKE_ARGS
}

rg_env_main
