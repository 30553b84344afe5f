#!/usr/bin/env bash
# The main job: installs what is missing, builds, prepares the default datasets (once), and
# trains apps/train_seg with its default configuration for this machine (unet_256 on a GPU, a
# smaller configuration on the CPU). Extra arguments go to train_seg.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
scripts/setup.sh "$build_dir"
colin=data/prepared/colin27_skullstrip_128.h5
if [ ! -f data/prepared/lung_phantom_128.h5 ]; then
  scripts/prepare_defaults.sh "$build_dir" data/prepared
elif [ -f "$colin" ] && ! "$build_dir/bin/prepare_data" info "$colin" | grep -q "split_by: interleaved"; then
  # Files from before the interleaved split: their validation slab was the skull base only.
  echo "run_main: $colin has the old slab split; preparing the default data again"
  scripts/prepare_defaults.sh "$build_dir" data/prepared
fi
run_name="default-$(date +%Y%m%d-%H%M%S)"
exec "$build_dir/bin/train_seg" --name "$run_name" --out runs "$@"
