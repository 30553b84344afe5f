#!/usr/bin/env bash
# Issue 21's segmentation table: the CPU default on Colin27 (whole-brain interleaved split), its
# ablation without the adversarial term, the old slab split for comparison, and the lung phantom
# (15 + 15 epochs) with the same ablation; each over SEEDS, with the validation Dice of the chosen checkpoint (per
# volume, train_seg's --select-by default) next to the test Dice (the gap says whether validation
# predicts test).
#
# usage: scripts/experiments/segmentation.sh BUILD_DIR OUT
# env:   SEEDS ("1 2 3"), ARMS ("colin27 colin27_noadv phantom phantom_noadv"; also
#        colin27_fine: 16 slabs, colin27_slab: the old split, colin27_ctx1 and phantom_ctx1:
#        2.5-D input, train_seg --context-slices 1; phantom16 and phantom16_ctx1: 16 phantom
#        subjects for the same steps; phantom16_fr16: the same with the U-Net's full-resolution
#        ends, --full-res-width 16; phantom16_fr16_lr1e3 and colin27_fr16_lr1e3: full-resolution
#        ends and Adam lr 1e-3 instead of 2e-4; phantom16_fr16_lr1e3_flip: the same, validated
#        and tested with train_seg --test-time-flip (the table gives the test without the flip too:
#        the same checkpoint); phantom16_fr16_lr1e3_noaug: the same without augmentation;
#        phantom16_fr16_lr1e3_linear: the same as phantom16_fr16_lr1e3 on the file prepared
#        with prepare_data --mask-resampling linear; colin27_linear: the CPU default on the
#        interleaved Colin27 file prepared that way; colin27_fr16_lr1e3_noadv: colin27_fr16_lr1e3
#        without the adversarial term, --gan-mode none; colin27_fr16_lr1e3_instance: the same with
#        --norm instance; colin27_fr16_lr1e3_ema: the same, validated, tested and checkpointed for
#        inference on the exponential moving average of G's weights, --ema 0.99;
#        colin27_fr16_lr1e3_flip: the same with --test-time-flip; colin27_fr16_lr1e3_lambda50: the
#        same with the segmentation loss at half its weight against the adversarial term, --lambda 50;
#        colin27_fr16_lr5e4: full-resolution ends at Adam lr 5e-4; colin27_fr16_lr1e3_elastic: the
#        CPU default with an elastic deformation in half of the augmented samples, --elastic 0.5;
#        colin27_fr16_lr1e3_elastic1: the same in every augmented sample, --elastic 1;
#        colin27_fold0 .. colin27_fold3: the CPU default on fold k of 4 over the interleaved slabs,
#        prepare_data --folds 4 --fold k: the end slabs train, and every interior slab is tested
#        in one fold; fold 2 is the colin27_interleaved.h5 layout, slice for slice),
#        JOBS (runs at once, default 2), THREADS (OpenMP threads per run, default 1),
#        TRAIN_FLAGS (extra flags for every train_seg run), COLIN27_DIR (Debian's mricron-data),
#        DEVICE (cpu; cuda gives train_seg's GPU defaults, ngf 64, ndf 64, batch 16 and, where an
#        arm sets none, 20 + 20 epochs, on the same 128x128 files)
# Writes OUT/data/*.h5, OUT/runs/<arm>_s<seed>/, OUT/results.tsv (one line per run) and
# OUT/table.md (mean +- sd over seeds). Phantom16 arms are also scored on the original grid:
# infer_seg on each test subject's scan (the volume the prepared file came from) against its own
# lung mask, OUT/runs/<run>/original_grid/<subject>.json, the mean over the test subjects. Every
# run is train_seg's CPU default configuration (128x128, ngf 32, ndf 32, batch 8, 25 + 25 epochs;
# since session 15 also --full-res-width 16 --lr 0.001, the colin27_fr16_lr1e3 arm) unless the arm
# says otherwise; the arms from before session 15 pin the old default's U-Net and learning rate.
#
# Runs go JOBS at a time with THREADS OpenMP threads each: on 2 cores, two one-thread runs
# finish sooner than two two-thread runs one after the other, and the numbers do not depend on
# the thread count (kernels/cpu/conv.cpp, kernels/cpu/fixed_chunks.h): a run with THREADS=2, or
# the README's train_seg command, gives the same numbers as the table.
set -euo pipefail
# shellcheck source=scripts/experiments/table_runs.sh
source "$(dirname "$0")/table_runs.sh"
[ $# -eq 2 ] || { echo "usage: $0 BUILD_DIR OUT" >&2; exit 2; }
BUILD=$1
OUT=$2
SEEDS=${SEEDS:-"1 2 3"}
ARMS=${ARMS:-"colin27 colin27_noadv phantom phantom_noadv"}
JOBS=${JOBS:-2}
THREADS=${THREADS:-1}
DEVICE=${DEVICE:-cpu}
read -r -a TRAIN_FLAGS <<<"${TRAIN_FLAGS:-}"
COLIN=${COLIN27_DIR:-/usr/share/mricron/templates}
for b in train_seg prepare_data infer_seg; do
  [ -x "$BUILD/bin/$b" ] || { echo "error: $BUILD/bin/$b not built" >&2; exit 1; }
done
mkdir -p "$OUT/data" "$OUT/runs"
PD="$BUILD/bin/prepare_data"

# Data. Colin27 (one subject): slabs of ~18 slices; validation and test get 2 slabs each,
# spread over the whole brain (interleaved); 4 slices (4 mm) dropped between slabs of different
# splits (slice_overlap.py: a copy of the mask 5 mm away scores Dice 0.84, far below the model).
# shellcheck disable=SC2054 # "0.5,99.5" is one argument
colin_common=(--image "$COLIN/ch2.nii.gz" --mask "$COLIN/ch2bet.nii.gz" --mask-threshold 0
  --modality mri --percentiles 0.5,99.5 --crop body --size 128 --seed 0 --no-progress)
[ -f "$OUT/data/colin27_interleaved.h5" ] || "$PD" nifti "${colin_common[@]}" --split-by interleaved \
  --slabs 10 --slab-gap 4 --fractions 0.6,0.2,0.2 --out "$OUT/data/colin27_interleaved.h5"
# Finer interleaving: 16 slabs of ~9 slices, the same 4-slice gaps (test slices lie closer to
# training slices; more slices are dropped: 95/21/21 instead of 101/28/28).
[ -f "$OUT/data/colin27_interleaved16.h5" ] || "$PD" nifti "${colin_common[@]}" --split-by interleaved \
  --slabs 16 --slab-gap 4 --fractions 0.6,0.2,0.2 --out "$OUT/data/colin27_interleaved16.h5"
# The split the default datasets used before (one validation and one test slab position each).
[ -f "$OUT/data/colin27_slab.h5" ] || "$PD" nifti "${colin_common[@]}" --split-by slab \
  --slabs 10 --slab-gap 2 --out "$OUT/data/colin27_slab.h5"
if [ ! -f "$OUT/data/lung_phantom.h5" ]; then
  rm -rf "$OUT/data/lung_phantom"
  "$PD" phantom --out "$OUT/data/lung_phantom" --subjects 8 --seed 0 --no-progress
  "$PD" luna16 --scans "$OUT/data/lung_phantom/subset0" --masks "$OUT/data/lung_phantom/seg-lungs-LUNA16" \
    --labels 3,4 --window -1000,400 --crop mask --size 128 --split-by subject --seed 0 --no-progress \
    --out "$OUT/data/lung_phantom.h5"
fi

# Twice the phantom subjects (16: 12 train, 2 val, 2 test) for the same number of optimizer
# steps as the 8-subject arms (--epoch-steps 46 = 375 / 8, the 8-subject file's epoch): more
# anatomy per step, and two test subjects instead of one. Built only for the arms that use it.
if [[ " $ARMS " == *" phantom16"* ]] && [ ! -f "$OUT/data/lung_phantom16.h5" ]; then
  rm -rf "$OUT/data/lung_phantom16"
  "$PD" phantom --out "$OUT/data/lung_phantom16" --subjects 16 --seed 0 --no-progress
  "$PD" luna16 --scans "$OUT/data/lung_phantom16/subset0" --masks "$OUT/data/lung_phantom16/seg-lungs-LUNA16" \
    --labels 3,4 --window -1000,400 --crop mask --size 128 --split-by subject --seed 0 --no-progress \
    --out "$OUT/data/lung_phantom16.h5"
fi

# The same phantom volumes with masks resampled like the images (prepare_data
# --mask-resampling linear), for the _linear arms.
if [[ " $ARMS " == *" phantom16_fr16_lr1e3_linear "* ]] && [ ! -f "$OUT/data/lung_phantom16_linear.h5" ]; then
  "$PD" luna16 --scans "$OUT/data/lung_phantom16/subset0" --masks "$OUT/data/lung_phantom16/seg-lungs-LUNA16" \
    --labels 3,4 --window -1000,400 --crop mask --size 128 --split-by subject --seed 0 --no-progress \
    --mask-resampling linear --out "$OUT/data/lung_phantom16_linear.h5"
fi

# K = 4 folds over the same 10 slabs and gaps: fold k tests every 4th interior slab from slab
# k + 1 and validates on the group before it, so across the folds each of the 8 interior slabs is
# tested once (prepare_data --folds). Built only for the arms that use them.
for k in 0 1 2 3; do
  if [[ " $ARMS " == *" colin27_fold$k "* ]] && [ ! -f "$OUT/data/colin27_fold$k.h5" ]; then
    "$PD" nifti "${colin_common[@]}" --split-by interleaved --slabs 10 --slab-gap 4 --folds 4 --fold "$k" \
      --out "$OUT/data/colin27_fold$k.h5"
  fi
done

if [[ " $ARMS " == *" colin27_linear "* ]] && [ ! -f "$OUT/data/colin27_interleaved_linear.h5" ]; then
  "$PD" nifti "${colin_common[@]}" --split-by interleaved --slabs 10 --slab-gap 4 --fractions 0.6,0.2,0.2 \
    --mask-resampling linear --out "$OUT/data/colin27_interleaved_linear.h5"
fi

# train_seg's CPU default before session 15 (pix2pix's U-Net, Adam 2e-4), which the arms from
# before the switch ran with; pinned so that they rerun as they were.
PIX2PIX_UNET="--full-res-width 0 --lr 0.0002"
arm_flags() {
  case $1 in
    colin27) echo "--data $OUT/data/colin27_interleaved.h5 $PIX2PIX_UNET" ;;
    colin27_noadv) echo "--data $OUT/data/colin27_interleaved.h5 --gan-mode none $PIX2PIX_UNET" ;;
    colin27_fine) echo "--data $OUT/data/colin27_interleaved16.h5 $PIX2PIX_UNET" ;;
    colin27_slab) echo "--data $OUT/data/colin27_slab.h5 $PIX2PIX_UNET" ;;
    phantom) echo "--data $OUT/data/lung_phantom.h5 --epochs 15 --epochs-decay 15 $PIX2PIX_UNET" ;;
    phantom_noadv) echo "--data $OUT/data/lung_phantom.h5 --epochs 15 --epochs-decay 15 --gan-mode none $PIX2PIX_UNET" ;;
    # 2.5-D: the slice and one neighbour on each side as three input channels.
    colin27_ctx1) echo "--data $OUT/data/colin27_interleaved.h5 --context-slices 1 $PIX2PIX_UNET" ;;
    phantom_ctx1) echo "--data $OUT/data/lung_phantom.h5 --epochs 15 --epochs-decay 15 --context-slices 1 $PIX2PIX_UNET" ;;
    phantom16) echo "--data $OUT/data/lung_phantom16.h5 --epochs 15 --epochs-decay 15 --epoch-steps 46 $PIX2PIX_UNET" ;;
    phantom16_ctx1) echo "--data $OUT/data/lung_phantom16.h5 --epochs 15 --epochs-decay 15 --epoch-steps 46 --context-slices 1 $PIX2PIX_UNET" ;;
    # 3x3 convolutions at full resolution around the U-Net's stride-2 outermost level (models/unet.h).
    phantom16_fr16) echo "--data $OUT/data/lung_phantom16.h5 --epochs 15 --epochs-decay 15 --epoch-steps 46 --full-res-width 16 --lr 0.0002" ;;
    phantom16_fr16_lr1e3) echo "--data $OUT/data/lung_phantom16.h5 --epochs 15 --epochs-decay 15 --epoch-steps 46 --full-res-width 16 --lr 0.001" ;;
    phantom16_fr16_lr1e3_flip) echo "--data $OUT/data/lung_phantom16.h5 --epochs 15 --epochs-decay 15 --epoch-steps 46 --full-res-width 16 --lr 0.001 --test-time-flip" ;;
    phantom16_fr16_lr1e3_linear) echo "--data $OUT/data/lung_phantom16_linear.h5 --epochs 15 --epochs-decay 15 --epoch-steps 46 --full-res-width 16 --lr 0.001" ;;
    phantom16_fr16_lr1e3_noaug) echo "--data $OUT/data/lung_phantom16.h5 --epochs 15 --epochs-decay 15 --epoch-steps 46 --full-res-width 16 --lr 0.001 --no-augment" ;;
    colin27_linear) echo "--data $OUT/data/colin27_interleaved_linear.h5 $PIX2PIX_UNET" ;;
    colin27_fr16_lr1e3) echo "--data $OUT/data/colin27_interleaved.h5 --full-res-width 16 --lr 0.001" ;;
    colin27_fr16_lr1e3_noadv) echo "--data $OUT/data/colin27_interleaved.h5 --full-res-width 16 --lr 0.001 --gan-mode none" ;;
    colin27_fr16_lr1e3_ema) echo "--data $OUT/data/colin27_interleaved.h5 --full-res-width 16 --lr 0.001 --ema 0.99" ;;
    colin27_fr16_lr1e3_flip) echo "--data $OUT/data/colin27_interleaved.h5 --full-res-width 16 --lr 0.001 --test-time-flip" ;;
    colin27_fr16_lr1e3_lambda50) echo "--data $OUT/data/colin27_interleaved.h5 --full-res-width 16 --lr 0.001 --lambda 50" ;;
    colin27_fr16_lr1e3_instance) echo "--data $OUT/data/colin27_interleaved.h5 --full-res-width 16 --lr 0.001 --norm instance" ;;
    colin27_fr16_lr5e4) echo "--data $OUT/data/colin27_interleaved.h5 --full-res-width 16 --lr 0.0005" ;;
    colin27_fr16_lr1e3_elastic) echo "--data $OUT/data/colin27_interleaved.h5 --full-res-width 16 --lr 0.001 --elastic 0.5" ;;
    colin27_fr16_lr1e3_elastic1) echo "--data $OUT/data/colin27_interleaved.h5 --full-res-width 16 --lr 0.001 --elastic 1" ;;
    colin27_fold[0-3]) echo "--data $OUT/data/${1}.h5 --full-res-width 16 --lr 0.001" ;;
    *) echo "unknown arm $1" >&2; return 1 ;;
  esac
}

for arm in $ARMS; do
  arm_flags "$arm" >/dev/null
  for s in $SEEDS; do
    read -r -a flags <<<"$(arm_flags "$arm")"
    table_run "${arm}_s$s" "train_seg: test" "$BUILD/bin/train_seg" "${flags[@]}" --device "$DEVICE" --seed "$s" \
      --name "${arm}_s$s" --out "$OUT/runs" --no-progress "${TRAIN_FLAGS[@]}"
  done
done
table_wait

# Phantom16 arms: Dice per volume on the original grid, each test subject's scan against its own
# lung mask (labels 3 and 4), with the run's best checkpoint; the mean over the test subjects.
original_grid_dice() {
  local run=$1 data=$2 dir="$OUT/runs/$1/original_grid"
  mkdir -p "$dir"
  local names
  read -r -a names <<<"$("$PD" info --json "$data" |
    python3 -c 'import json, sys; print(" ".join(json.load(sys.stdin)["split_subjects"]["test"]))')"
  for name in "${names[@]}"; do
    [ -f "$dir/$name.json" ] || "$BUILD/bin/infer_seg" --checkpoint "$OUT/runs/$run/checkpoints/best.safetensors" \
      --prepared "$data" --input "$OUT/data/lung_phantom16/subset0/$name.mhd" --output "$dir/$name.nii.gz" \
      --ground-truth "$OUT/data/lung_phantom16/seg-lungs-LUNA16/$name.mhd" --gt-labels 3 4 \
      --report "$dir/$name.json" --no-progress >/dev/null
  done
  python3 - "$dir" "${names[@]}" <<'PY'
import json, statistics, sys
print(f"{statistics.mean(json.load(open(f'{sys.argv[1]}/{n}.json'))['metrics']['dice'] for n in sys.argv[2:]):.6f}")
PY
}

RESULTS="$OUT/results.tsv"
printf 'arm\tseed\tbest_epoch\tval_dice\ttest_dice\ttest_dice_volume\tworst_test_slices\ttest_dice_no_flip\ttest_dice_volume_no_flip\ttest_dice_original_grid\n' >"$RESULTS"
for arm in $ARMS; do
  for s in $SEEDS; do
    original=nan
    if [[ $arm == phantom16* ]]; then
      read -r -a flags <<<"$(arm_flags "$arm")"
      original=$(original_grid_dice "${arm}_s$s" "${flags[1]}")
    fi
    python3 - "$OUT/runs/${arm}_s$s/summary.json" "$arm" "$s" "$original" >>"$RESULTS" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
t = s["test"]
# The validation score that chose the checkpoint (per volume by default, per slice with
# --select-by slice).
val = s.get("best_val_dice_volume", s.get("best_val_dice"))
worst = ", ".join(f"h{w['height']:.2f}:{w['dice']:.2f}" for w in t.get("worst_slices", [])[:4])
# --test-time-flip runs: the same checkpoint's test without the flip (nan otherwise).
once = t.get("without_test_time_flip", {})
print("\t".join([sys.argv[2], sys.argv[3], str(s["best_epoch"]), f"{val:.6f}",
                 f"{t['dice']:.6f}", f"{t['dice_volume']:.6f}", worst,
                 f"{once.get('dice', float('nan')):.6f}", f"{once.get('dice_volume', float('nan')):.6f}",
                 sys.argv[4]]))
PY
  done
done

python3 - "$RESULTS" >"$OUT/table.md" <<'PY'
import csv, math, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
def ms(v):
    if any(math.isnan(x) for x in v):
        return "-"
    return f"{statistics.mean(v):.4f} ± {statistics.stdev(v):.4f}" if len(v) > 1 else f"{v[0]:.4f} (1 seed)"
print("| arm | seeds | val Dice per volume (chosen epoch) | test Dice per slice | test Dice per volume | test - val (per volume) "
      "| --test-time-flip runs, the same checkpoint without it: test Dice per slice / per volume "
      "| test Dice per volume on the original grid (infer_seg, mean over test subjects) |")
print("|---|---|---|---|---|---|---|---|")
for arm in dict.fromkeys(r["arm"] for r in rows):
    g = [r for r in rows if r["arm"] == arm]
    val = [float(r["val_dice"]) for r in g]
    test = [float(r["test_dice"]) for r in g]
    vol = [float(r["test_dice_volume"]) for r in g]
    gap = [t - v for t, v in zip(vol, val)]
    once = ms([float(r["test_dice_no_flip"]) for r in g]) + " / " + ms([float(r["test_dice_volume_no_flip"]) for r in g])
    original = ms([float(r["test_dice_original_grid"]) for r in g])
    print(f"| {arm} | {len(g)} | {ms(val)} | {ms(test)} | {ms(vol)} | {ms(gap)} | {once if once != '- / -' else '-'} | {original} |")
# The folds together: per seed the mean over the folds run with it, then mean ± sd over seeds.
folds = [r for r in rows if r["arm"].startswith("colin27_fold")]
if len({r["arm"] for r in folds}) > 1:
    by_seed = {}
    for r in folds:
        by_seed.setdefault(r["seed"], []).append(r)
    n = sorted({len(v) for v in by_seed.values()})
    def over_folds(key):
        return ms([statistics.mean(float(r[key]) for r in v) for v in by_seed.values()])
    gap = ms([statistics.mean(float(r["test_dice_volume"]) - float(r["val_dice"]) for r in v) for v in by_seed.values()])
    print(f"| colin27 folds together (per seed the mean over {'/'.join(map(str, n))} folds) | {len(by_seed)} | "
          f"{over_folds('val_dice')} | {over_folds('test_dice')} | {over_folds('test_dice_volume')} | {gap} | - | - |")
PY
cat "$OUT/table.md"
