#!/usr/bin/env bash
# Creates the two built-in training datasets with an already built prepare_data (builds nothing):
#   OUT_DIR/lung_phantom/            procedural lung-CT phantom in LUNA16 layout
#                                    (subset0/<uid>.mhd/.raw, seg-lungs-LUNA16/<uid>.mhd/.zraw)
#   OUT_DIR/lung_phantom.h5          its prepared slices (LUNA16 path; lungs = labels 3,4;
#                                    split by subject)
#   OUT_DIR/colin27_skullstrip.h5    Colin27 T1 (mricron-data) with its brain mask
#                                    (ch2bet > 0), MRI percentile normalization, split by
#                                    interleaved slabs (validation and test each cover the whole
#                                    brain; 4 slices dropped between slabs of different splits,
#                                    see docs/results.md)
#   (both with label maps, /<split>/labels: background, body, lungs or brain; train_synth
#   --condition labels)
#   OUT_DIR/*_128.h5                 the same at 128x128 (the CPU training default)
#   OUT_DIR/lung_translate_128_{mr,mr_t2,ct,tissue}.h5
#                                    modality translation (train_translate): 12 phantom subjects
#                                    as MR-like renderings (T1, T2), CT and tissue map on one slice
#                                    grid, and the test subjects' volumes in OUT_DIR/lung_translate_volumes/
#                                    (<uid>_mr/_mr_t2/_ct/_tissue.nii.gz, inputs for build/bin/translate)
#   OUT_DIR/*_montage.png            a look at what the model will see
#
# usage: scripts/prepare_defaults.sh BUILD_DIR OUT_DIR [--size N] [--subjects N] [--seed S]
#        (--size 128 gives 4x smaller files and faster CPU training)
set -euo pipefail

usage() { echo "usage: $0 BUILD_DIR OUT_DIR [--size N] [--subjects N] [--seed S]" >&2; exit 2; }
[ $# -ge 2 ] || usage
BUILD_DIR=$1
OUT_DIR=$2
shift 2
SIZE=256
SUBJECTS=8
SEED=0
while [ $# -gt 0 ]; do
  case "$1" in
    --size) SIZE=${2:?--size needs a value}; shift 2 ;;
    --subjects) SUBJECTS=${2:?--subjects needs a value}; shift 2 ;;
    --seed) SEED=${2:?--seed needs a value}; shift 2 ;;
    *) usage ;;
  esac
done

PD="$BUILD_DIR/bin/prepare_data"
if [ ! -x "$PD" ]; then
  echo "error: $PD not found; build it first: cmake --build $BUILD_DIR --target prepare_data" >&2
  exit 1
fi
COLIN_DIR=${COLIN27_DIR:-/usr/share/mricron/templates}
mkdir -p "$OUT_DIR"
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
T0=$(now)
# Every dataset at --size, plus a 128-pixel copy (*_128.h5) that CPU training defaults to.
SIZES=$SIZE
[ "$SIZE" != 128 ] && SIZES="$SIZE 128"
suffix() { [ "$1" = "$SIZE" ] && echo "" || echo "_$1"; }

echo "== lung phantom: $SUBJECTS subjects, seed $SEED -> $OUT_DIR/lung_phantom (LUNA16 layout)"
T=$(now)
rm -rf "$OUT_DIR/lung_phantom"
"$PD" phantom --out "$OUT_DIR/lung_phantom" --subjects "$SUBJECTS" --seed "$SEED"
for size in $SIZES; do
  "$PD" luna16 --scans "$OUT_DIR/lung_phantom/subset0" --masks "$OUT_DIR/lung_phantom/seg-lungs-LUNA16" \
    --labels 3,4 --window -1000,400 --crop mask --size "$size" --split-by subject --seed "$SEED" --label-map \
    --out "$OUT_DIR/lung_phantom$(suffix "$size").h5"
done
"$PD" montage "$OUT_DIR/lung_phantom.h5" --out "$OUT_DIR/lung_phantom_montage.png" --count 16 --tile 128
echo "   lung phantom done in $(elapsed "$T") s"

echo "== translation: 12 phantom subjects (MR-like T1 and T2 + CT + tissue map), seed $SEED -> $OUT_DIR/lung_translate_128_*.h5"
T=$(now)
"$PD" translation --out "$OUT_DIR" --stem lung_translate_128 --subjects 12 --seed "$SEED" --split-seed "$SEED" \
  --size 128 --no-progress --volumes "$OUT_DIR/lung_translate_volumes"
echo "   translation done in $(elapsed "$T") s"

if [ -f "$COLIN_DIR/ch2.nii.gz" ] && [ -f "$COLIN_DIR/ch2bet.nii.gz" ]; then
  echo "== Colin27 skull stripping: $COLIN_DIR/ch2.nii.gz + ch2bet.nii.gz > 0 -> $OUT_DIR/colin27_skullstrip.h5"
  T=$(now)
  for size in $SIZES; do
    "$PD" nifti --image "$COLIN_DIR/ch2.nii.gz" --mask "$COLIN_DIR/ch2bet.nii.gz" --mask-threshold 0 \
      --modality mri --percentiles 0.5,99.5 --crop body --size "$size" --split-by interleaved --slabs 10 \
      --slab-gap 4 --fractions 0.6,0.2,0.2 --seed "$SEED" --label-map --out "$OUT_DIR/colin27_skullstrip$(suffix "$size").h5"
  done
  "$PD" montage "$OUT_DIR/colin27_skullstrip.h5" --out "$OUT_DIR/colin27_montage.png" --count 16 --tile 128
  echo "   Colin27 done in $(elapsed "$T") s"
else
  echo "== Colin27 not found in $COLIN_DIR (install Debian's mricron-data); skipping colin27_skullstrip.h5"
fi
echo "== defaults ready in $OUT_DIR ($(elapsed "$T0") s)"
