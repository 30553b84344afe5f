#!/usr/bin/env bash
# Issue 15's evaluation: does GAN synthesis (train_synth + synthesize) buy segmentation Dice?
#
# For each dataset, real-data fraction F and seed S:
#   1. train_synth on the seeded subset F of the real training slices (--train-fraction F
#      --train-seed S): no leakage, the synthesis GAN sees only what the segmenter sees;
#      its test fidelity (MAE / PSNR / SSIM inside the body, [-1, 1], data range 2) is kept;
#   2. synthesize SYNTH_COUNT pairs (default: as many as the whole real training split holds)
#      from the same subset's masks, deformed with seed S;
#   3. train_seg three ways, all with the classic augmentation on and the same schedule:
#      real (the subset F), real + synthetic (--extra-train), synthetic only
#      (--train-fraction 0 --extra-train); the test Dice of each run's best checkpoint is kept.
# Writes OUT/results.tsv (one line per run) and OUT/table.md (mean +- sd over seeds).
#
# usage: scripts/experiments/synthesis.sh BUILD_DIR OUT [DATASET.h5 ...]
# env:   FRACTIONS ("0.1 0.25"), SEEDS ("1 2 3"), SEG_EPOCHS (10: epochs + decay each),
#        SEG_STEPS (0; > 0: every train_seg arm runs about this many optimizer steps, its
#        epochs scaled to its number of training slices, so the arms get the same budget;
#        with 0 the arms run SEG_EPOCHS each and the larger training sets take more steps),
#        SYNTH_EPOCHS (5), SYNTH_COUNT (the real train split's size), NGF (16), NDF (16),
#        BATCH (8), EXTRA_FLAGS (passed to every run)
# Defaults are sized for the CPU; the whole grid (2 datasets x 2 fractions x 3 seeds x 4 runs)
# takes hours on 2 cores.
set -euo pipefail

usage() { echo "usage: $0 BUILD_DIR OUT [DATASET.h5 ...]" >&2; exit 2; }
[ $# -ge 2 ] || usage
BUILD=$1
OUT=$2
shift 2
DATASETS=("$@")
if [ ${#DATASETS[@]} -eq 0 ]; then
  for d in data/prepared/colin27_skullstrip_128.h5 data/prepared/lung_phantom_128.h5; do
    [ -f "$d" ] && DATASETS+=("$d")
  done
fi
[ ${#DATASETS[@]} -gt 0 ] || { echo "error: no dataset (run scripts/prepare_defaults.sh)" >&2; exit 1; }
FRACTIONS=${FRACTIONS:-"0.1 0.25"}
SEEDS=${SEEDS:-"1 2 3"}
SEG_EPOCHS=${SEG_EPOCHS:-10}
SEG_STEPS=${SEG_STEPS:-0}
SYNTH_EPOCHS=${SYNTH_EPOCHS:-5}
NGF=${NGF:-16}
NDF=${NDF:-16}
BATCH=${BATCH:-8}
EXTRA_FLAGS=${EXTRA_FLAGS:-}
for b in train_synth synthesize train_seg prepare_data; do
  [ -x "$BUILD/bin/$b" ] || { echo "error: $BUILD/bin/$b not built" >&2; exit 1; }
done
mkdir -p "$OUT"
RESULTS="$OUT/results.tsv"
printf 'dataset\tfraction\tseed\tarm\ttest_dice\ttest_dice_volume\tsynth_mae\tsynth_psnr\tsynth_ssim\tsynth_fd\tsynth_kid\n' > "$RESULTS"

# A field of summary.json's test metrics.
test_metric() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["test"][sys.argv[2]])' "$1" "$2"; }

# "EPOCHS DECAY" for an arm of N training slices: SEG_EPOCHS split in half, or with SEG_STEPS
# enough epochs of N / BATCH steps (drop_last) to reach SEG_STEPS.
seg_epochs() {
  python3 -c 'import math,sys
n, batch, steps, epochs = map(int, sys.argv[1:])
if steps > 0:
    epochs = max(2, math.ceil(steps / max(1, n // batch)))
print((epochs + 1) // 2, epochs // 2)' "$1" "$BATCH" "$SEG_STEPS" "$SEG_EPOCHS"
}
for data in "${DATASETS[@]}"; do
  ds=$(basename "$data" .h5)
  real=$("$BUILD/bin/prepare_data" info "$data" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["splits"]["train"])')
  for f in $FRACTIONS; do
    for s in $SEEDS; do
      tag="${ds}_f${f}_s${s}"
      "$BUILD/bin/train_synth" --data "$data" --out "$OUT/runs" --name "synth_$tag" \
        --train-fraction "$f" --train-seed "$s" --seed "$s" --ngf "$NGF" --ndf "$NDF" \
        --batch-size "$BATCH" --epochs "$SYNTH_EPOCHS" --epochs-decay "$SYNTH_EPOCHS" \
        --device cpu --no-progress $EXTRA_FLAGS
      sum="$OUT/runs/synth_$tag/summary.json"
      mae=$(test_metric "$sum" mae); psnr=$(test_metric "$sum" psnr); ssim=$(test_metric "$sum" ssim)
      # Fréchet and kernel distances on the fixed random features (train/distribution_metrics.h).
      fd=$(test_metric "$sum" fd); kid=$(test_metric "$sum" kid)
      "$BUILD/bin/synthesize" --checkpoint "$OUT/runs/synth_$tag" --out "$OUT/synthetic/$tag.h5" \
        --count "${SYNTH_COUNT:-$real}" --seed "$s" --device cpu --no-progress
      # Slices per arm: the subset has round(f * real) slices (at least 1; data::seeded_subset).
      nreal=$(python3 -c 'import sys; n, f = int(sys.argv[1]), float(sys.argv[2]); print(max(1, int(f * n + 0.5)))' "$real" "$f")
      nsyn=${SYNTH_COUNT:-$real}
      for arm in real real+synthetic synthetic; do
        flags=(--train-fraction "$f")
        n=$nreal
        [ "$arm" = real+synthetic ] && flags+=(--extra-train "$OUT/synthetic/$tag.h5") && n=$(( nreal + nsyn ))
        [ "$arm" = synthetic ] && flags=(--train-fraction 0 --extra-train "$OUT/synthetic/$tag.h5") && n=$nsyn
        read -r e1 e2 < <(seg_epochs "$n")
        name="seg_${tag}_${arm/+/_}"
        "$BUILD/bin/train_seg" --data "$data" --out "$OUT/runs" --name "$name" "${flags[@]}" \
          --train-seed "$s" --seed "$s" --ngf "$NGF" --ndf "$NDF" --batch-size "$BATCH" \
          --epochs "$e1" --epochs-decay "$e2" --device cpu --no-progress $EXTRA_FLAGS
        dice=$(test_metric "$OUT/runs/$name/summary.json" dice)
        dice_volume=$(test_metric "$OUT/runs/$name/summary.json" dice_volume)
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$ds" "$f" "$s" "$arm" "$dice" "$dice_volume" \
          "$mae" "$psnr" "$ssim" "$fd" "$kid" >> "$RESULTS"
      done
    done
  done
done

python3 - "$RESULTS" > "$OUT/table.md" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
groups = {}
for r in rows:
    groups.setdefault((r["dataset"], r["fraction"], r["arm"]), []).append(r)
def ms(v):
    return f"{statistics.mean(v):.4f} ± {statistics.stdev(v):.4f}" if len(v) > 1 else f"{v[0]:.4f}"
print("| dataset | real fraction | arm | test Dice per volume | test Dice per slice | synthesis FD / KID (fixed random features) | seeds |")
print("|---|---|---|---|---|---|---|")
for (d, f, a), g in sorted(groups.items()):
    vol = [float(r["test_dice_volume"]) for r in g]
    sl = [float(r["test_dice"]) for r in g]
    fd = [float(r["synth_fd"]) for r in g]
    kid = [float(r["synth_kid"]) for r in g]
    dist = "-" if a == "real" else f"{ms(fd)} / {ms(kid)}"
    print(f"| {d} | {f} | {a} | {ms(vol)} | {ms(sl)} | {dist} | {len(g)} |")
PY
cat "$OUT/table.md"
