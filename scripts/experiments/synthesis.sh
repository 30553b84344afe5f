#!/usr/bin/env bash
# Issue 15's evaluation: does GAN synthesis (train_synth + synthesize) buy segmentation Dice?
#
# For each dataset, real-data fraction F and seed S:
#   1. train_synth on the seeded subset F of the real training slices (--train-fraction F
#      --train-seed S): no leakage, the synthesis GAN sees only what the segmenter sees;
#      its test fidelity (MAE / PSNR / SSIM inside the body, [-1, 1], data range 2) and the
#      Fréchet distance / KID on fixed random features (train/distribution_metrics.h) are kept;
#   2. synthesize SYNTH_COUNT pairs (default: as many as the whole real training split holds)
#      from the same subset's masks, deformed with seed S;
#   3. train_seg on each arm of ARMS, all with the classic augmentation on and the same budget
#      of SEG_STEPS optimizer steps in SEG_EPOCHS epochs (--epoch-steps, so every arm also gets
#      the same number of validations): real (the subset F), real+elastic (the subset with
#      every sample also elastically deformed as synthesize deforms masks: does the gain come
#      from the GAN's images or from the new mask shapes?), real+synthetic (--extra-train),
#      synthetic (--train-fraction 0 --extra-train); the test Dice of each run's
#      best-on-validation checkpoint is kept. Validation and test are real slices only.
# Writes OUT/results.tsv (one line per segmentation run) and OUT/table.md (mean ± sd over seeds);
# with CONDITION=labels OUT/results_labels.tsv and OUT/table_labels.md.
#
# usage: scripts/experiments/synthesis.sh BUILD_DIR OUT [DATASET.h5 ...]
#        (default datasets: data/prepared/colin27_skullstrip_128.h5 and lung_phantom_128.h5, as
#        scripts/prepare_defaults.sh BUILD_DIR data/prepared --size 128 makes them)
# env:   FRACTIONS ("0.1 0.25"), SEEDS ("1 2 3"), ARMS ("real real+elastic real+synthetic synthetic"),
#        SEG_STEPS (200), SEG_EPOCHS (8: half at the initial learning rate, half decaying),
#        SYNTH_STEPS (320), SYNTH_EPOCHS (8), SYNTH_COUNT (the real train split's size),
#        CONDITION (mask: train_synth --condition; labels needs files prepared with --label-map,
#        and names the synthesis and synthetic-data runs *_labels, so the real and real+elastic
#        arms are shared with a mask-conditioned table in the same OUT),
#        NGF (16), NDF (16), BATCH (8), EXTRA_FLAGS (passed to every training run),
#        DEVICE (cpu; cuda for a GPU build), JOBS (runs at once, default 2), THREADS (OpenMP threads
#        per run, default 1)
# Runs are resumable and go JOBS at a time (scripts/experiments/table_runs.sh). At the defaults
# the whole grid (2 datasets x 2 fractions x 3 seeds: 12 synthesis and 48 segmentation runs of
# about 95 s and 65 s on one core) took 36 minutes on 2 cores (docs/results.md); the issue's
# budget is one hour. SEG_STEPS=400 SEG_EPOCHS=10 SYNTH_STEPS=600 SYNTH_EPOCHS=10 is the longer
# schedule of results.md's second table.
set -euo pipefail
# shellcheck source=scripts/experiments/table_runs.sh
source "$(dirname "$0")/table_runs.sh"

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
read -r -a FRACTIONS <<<"${FRACTIONS:-0.1 0.25}"
read -r -a SEEDS <<<"${SEEDS:-1 2 3}"
read -r -a ARMS <<<"${ARMS:-real real+elastic real+synthetic synthetic}"
SEG_STEPS=${SEG_STEPS:-200}
SEG_EPOCHS=${SEG_EPOCHS:-8}
SYNTH_STEPS=${SYNTH_STEPS:-320}
SYNTH_EPOCHS=${SYNTH_EPOCHS:-8}
CONDITION=${CONDITION:-mask}
case $CONDITION in
  mask) SUFFIX= ;;
  labels) SUFFIX=_labels ;;
  *) echo "error: CONDITION must be mask or labels, got '$CONDITION'" >&2; exit 2 ;;
esac
NGF=${NGF:-16}
NDF=${NDF:-16}
BATCH=${BATCH:-8}
read -r -a EXTRA_FLAGS <<<"${EXTRA_FLAGS:-}"
DEVICE=${DEVICE:-cpu}
JOBS=${JOBS:-2}
THREADS=${THREADS:-1}
for b in train_synth synthesize train_seg prepare_data; do
  [ -x "$BUILD/bin/$b" ] || { echo "error: $BUILD/bin/$b not built" >&2; exit 1; }
done
for d in "${DATASETS[@]}"; do [ -f "$d" ] || { echo "error: dataset $d not found" >&2; exit 1; }; done
mkdir -p "$OUT/runs" "$OUT/synthetic"

# "--epochs E --epochs-decay D --epoch-steps K" for STEPS steps in EPOCHS epochs.
schedule() {
  local steps=$1 epochs=$2
  echo "--epochs $(((epochs + 1) / 2)) --epochs-decay $((epochs / 2)) --epoch-steps $(table_epoch_steps "$steps" "$epochs")"
}
read -r -a SEG_SCHEDULE <<<"$(schedule "$SEG_STEPS" "$SEG_EPOCHS")"
read -r -a SYNTH_SCHEDULE <<<"$(schedule "$SYNTH_STEPS" "$SYNTH_EPOCHS")"
common=(--ngf "$NGF" --ndf "$NDF" --batch-size "$BATCH" --device "$DEVICE" --no-progress --workers 1)
# The segmentation network of this table: pix2pix's U-Net at Adam 2e-4 (train_seg's CPU default
# before session 15), pinned so that the table reruns as it was.
SEG_NETWORK=(--full-res-width 0 --lr 0.0002)

# The segmentation run of one arm; the arms without synthetic data are shared across CONDITIONs.
seg_run_name() {
  local name="seg_${1}_${2/+/_}"
  [ "$2" = real ] || [ "$2" = real+elastic ] || name+=$SUFFIX
  echo "$name"
}

train_split_size() {
  "$BUILD/bin/prepare_data" info "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["splits"]["train"])'
}

# 1. The synthesis GANs, each on its own real subset.
for data in "${DATASETS[@]}"; do
  ds=$(basename "$data" .h5)
  for f in "${FRACTIONS[@]}"; do
    for s in "${SEEDS[@]}"; do
      tag="${ds}_f${f}_s${s}"
      table_run "synth_$tag$SUFFIX" "train_synth: test" "$BUILD/bin/train_synth" --data "$data" --out "$OUT/runs" \
        --name "synth_$tag$SUFFIX" --train-fraction "$f" --train-seed "$s" --seed "$s" --condition "$CONDITION" \
        "${SYNTH_SCHEDULE[@]}" "${common[@]}" "${EXTRA_FLAGS[@]}"
    done
  done
done
table_wait

# 2. The synthetic pairs (seconds each), then 3. the segmenters.
for data in "${DATASETS[@]}"; do
  ds=$(basename "$data" .h5)
  count=${SYNTH_COUNT:-$(train_split_size "$data")}
  for f in "${FRACTIONS[@]}"; do
    for s in "${SEEDS[@]}"; do
      tag="${ds}_f${f}_s${s}"
      synthetic="$OUT/synthetic/$tag$SUFFIX.h5"
      [ -f "$synthetic" ] || "$BUILD/bin/synthesize" --checkpoint "$OUT/runs/synth_$tag$SUFFIX" --out "$synthetic" \
        --count "$count" --seed "$s" --device "$DEVICE" --no-progress
      for arm in "${ARMS[@]}"; do
        case $arm in
          real) flags=(--train-fraction "$f") ;;
          real+elastic) flags=(--train-fraction "$f" --elastic 1) ;;
          real+synthetic) flags=(--train-fraction "$f" --extra-train "$synthetic") ;;
          synthetic) flags=(--train-fraction 0 --extra-train "$synthetic") ;;
          *) echo "error: unknown arm $arm" >&2; exit 2 ;;
        esac
        name=$(seg_run_name "$tag" "$arm")
        table_run "$name" "train_seg: test" "$BUILD/bin/train_seg" --data "$data" --out "$OUT/runs" \
          --name "$name" "${flags[@]}" --train-seed "$s" --seed "$s" "${SEG_SCHEDULE[@]}" "${common[@]}" "${SEG_NETWORK[@]}" \
          "${EXTRA_FLAGS[@]}"
      done
    done
  done
done
table_wait

RESULTS="$OUT/results$SUFFIX.tsv"
printf 'dataset\tfraction\tseed\tarm\ttest_dice\ttest_dice_volume\tbest_epoch\tsynth_mae\tsynth_psnr\tsynth_ssim\tsynth_fd\tsynth_kid\tseg_seconds\tsynth_seconds\n' > "$RESULTS"
for data in "${DATASETS[@]}"; do
  ds=$(basename "$data" .h5)
  for f in "${FRACTIONS[@]}"; do
    for s in "${SEEDS[@]}"; do
      tag="${ds}_f${f}_s${s}"
      for arm in "${ARMS[@]}"; do
        name=$(seg_run_name "$tag" "$arm")
        python3 - "$OUT/runs/$name/summary.json" "$OUT/runs/synth_$tag$SUFFIX/summary.json" "$ds" "$f" "$s" "$arm" \
          "$(table_seconds "$name")" "$(table_seconds "synth_$tag$SUFFIX")" >> "$RESULTS" <<'PY'
import json, sys
seg, synth = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
t, y = seg["test"], synth["test"]
print("\t".join(sys.argv[3:7] + [f"{t['dice']:.4f}", f"{t['dice_volume']:.4f}", str(seg.get("best_epoch", "nan")),
                 f"{y['mae']:.4f}", f"{y['psnr']:.3f}", f"{y['ssim']:.4f}", f"{y['fd']:.4f}", f"{y['kid']:.5f}"]
                + sys.argv[7:9]))
PY
      done
    done
  done
done

python3 - "$RESULTS" > "$OUT/table$SUFFIX.md" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
def ms(v, digits=4):
    return f"{statistics.mean(v):.{digits}f} ± {statistics.stdev(v):.{digits}f}" if len(v) > 1 else f"{v[0]:.{digits}f}"
groups = {}
for r in rows:
    groups.setdefault((r["dataset"], r["fraction"], r["arm"]), []).append(r)
# The change against the real-only arm of the same seed (same real subset, same budget).
real = {(r["dataset"], r["fraction"], r["seed"]): float(r["test_dice_volume"]) for r in rows if r["arm"] == "real"}
print("| dataset | real fraction | arm | test Dice per volume | test Dice per slice | change per volume vs real, same seed | seeds |")
print("|---|---|---|---|---|---|---|")
for (d, f, a), g in sorted(groups.items()):
    delta = "-"
    if a != "real" and all((d, f, r["seed"]) in real for r in g):
        delta = ms([float(r["test_dice_volume"]) - real[(d, f, r["seed"])] for r in g])
    print(f"| {d} | {f} | {a} | {ms([float(r['test_dice_volume']) for r in g])} | "
          f"{ms([float(r['test_dice']) for r in g])} | {delta} | {len(g)} |")
print()
print("Synthesis GANs (test split, inside the body, intensities in [-1, 1], data range 2; FD / KID on")
print("fixed random features, real vs synthetic test images):")
print()
print("| dataset | real fraction | MAE | PSNR dB | SSIM | FD | KID | seeds |")
print("|---|---|---|---|---|---|---|---|")
synth = {}
for r in rows:
    if r["arm"] == "real":
        synth.setdefault((r["dataset"], r["fraction"]), []).append(r)
for (d, f), g in sorted(synth.items()):
    col = lambda k, digits=4: ms([float(r[k]) for r in g], digits)
    print(f"| {d} | {f} | {col('synth_mae')} | {col('synth_psnr', 2)} | {col('synth_ssim')} | "
          f"{col('synth_fd', 2)} | {col('synth_kid', 4)} | {len(g)} |")
PY
cat "$OUT/table$SUFFIX.md"
