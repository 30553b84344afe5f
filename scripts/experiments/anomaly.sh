#!/usr/bin/env bash
# Issue 16's table: unsupervised anomaly detection, f-AnoGAN against two baselines on the same
# data with the same evaluation (docs/anomaly.md), on two datasets, over seeds.
#
# Datasets (prepared here unless they exist):
#   phantom   OUT/data/lung_phantom_anomaly_SIZE_lLESIONS_nSUBJECTS.h5: prepare_data phantom --anomaly (train
#             subjects without lesions; val/test subjects with LESIONS phantom lesions each and
#             their masks in /<split>/lesions); organ = lungs
#   colin27   OUT/data/colin27_skullstrip_SIZE.h5: Colin27 T1 with its BET mask, split as
#             scripts/prepare_defaults.sh splits it (interleaved slabs: validation and test each
#             cover the whole brain); val/test get synthetic lesions (--lesion-seed); organ = brain
# Methods per dataset and seed S (--seed S; the lesions do not depend on S). Budgets are in
# optimizer steps, split into EPOCHS epochs of equal length (--epoch-steps), so both datasets
# get the same training whatever the size of their train split:
#   fanogan   train_anomaly --stage 1 (WGAN-GP: S1_STEPS generator steps, each after 5 critic
#             steps on 5 batches) then --stage 2 (izi_f encoder: S2_STEPS steps)
#   ae        train_anomaly --method ae: AE_STEPS steps (default S1_STEPS + S2_STEPS: as many
#             updates of the image-making networks as f-AnoGAN's G and encoder get together)
#   threshold train_anomaly --method threshold (fit on the train split; nothing to train)
# Metrics (each run's summary.json "test": best validation checkpoint; pixel metrics inside the
# organ mask; Dice at the threshold chosen on validation; lesion-size buckets split at SIZE/10
# px diameter; intensities normalized to [-1, 1]) go to OUT/results.tsv (one line per run) and
# OUT/table.md (mean +- sd over seeds).
#
# usage: scripts/experiments/anomaly.sh BUILD_DIR OUT
# env:   SEEDS ("1 2 3"), DATASETS ("phantom colin27"), SIZE (64), S1_STEPS (2000), S2_STEPS (1000),
#        AE_STEPS (S1_STEPS + S2_STEPS), EPOCHS (10), WIDTH (16), Z_DIM (64), BATCH (8),
#        LESIONS (3), SUBJECTS (8), DEVICE (cpu), JOBS (runs at once, 2), THREADS (OpenMP
#        threads per run, 1), EXTRA_FLAGS (passed to every train_anomaly run)
# Runs are resumable and go JOBS at a time (scripts/experiments/table_runs.sh): stage-1,
# autoencoder and threshold runs first, then the stage-2 encoders. At the defaults the grid
# (2 datasets x 3 seeds) took 60 minutes on 2 cores, about 35 of them beside a CI build and test
# run; a stage-1 run is the longest (12 min alone on one core at Colin27's size).
set -euo pipefail
# shellcheck source=scripts/experiments/table_runs.sh
source "$(dirname "$0")/table_runs.sh"

usage() { echo "usage: $0 BUILD_DIR OUT" >&2; exit 2; }
[ $# -eq 2 ] || usage
BUILD=$1
OUT=$2
SEEDS=${SEEDS:-"1 2 3"}
DATASETS=${DATASETS:-"phantom colin27"}
SIZE=${SIZE:-64}
S1_STEPS=${S1_STEPS:-2000}
S2_STEPS=${S2_STEPS:-1000}
AE_STEPS=${AE_STEPS:-$((S1_STEPS + S2_STEPS))}
EPOCHS=${EPOCHS:-10}
WIDTH=${WIDTH:-16}
Z_DIM=${Z_DIM:-64}
BATCH=${BATCH:-8}
LESIONS=${LESIONS:-3}
SUBJECTS=${SUBJECTS:-8}
DEVICE=${DEVICE:-cpu}
read -r -a EXTRA_FLAGS <<<"${EXTRA_FLAGS:-}"
JOBS=${JOBS:-2}
THREADS=${THREADS:-1}
for b in train_anomaly prepare_data; do
  [ -x "$BUILD/bin/$b" ] || { echo "error: $BUILD/bin/$b not built" >&2; exit 1; }
done
mkdir -p "$OUT/data" "$OUT/runs"
TA="$BUILD/bin/train_anomaly"

dataset_file() {
  case "$1" in
    phantom)
      local f="$OUT/data/lung_phantom_anomaly_${SIZE}_l${LESIONS}_n${SUBJECTS}.h5"
      if [ ! -f "$f" ]; then
        "$BUILD/bin/prepare_data" phantom --anomaly --lesions "$LESIONS" --subjects "$SUBJECTS" --seed 0 \
          --size "$SIZE" --h5 "$f" --no-progress >&2
      fi
      echo "$f" ;;
    colin27)
      local f="$OUT/data/colin27_skullstrip_$SIZE.h5"
      if [ ! -f "$f" ]; then
        # The flags of scripts/prepare_defaults.sh's Colin27 file (without its label map).
        local colin=${COLIN27_DIR:-/usr/share/mricron/templates}
        "$BUILD/bin/prepare_data" nifti --image "$colin/ch2.nii.gz" --mask "$colin/ch2bet.nii.gz" --mask-threshold 0 \
          --modality mri --percentiles 0.5,99.5 --crop body --size "$SIZE" --split-by interleaved --slabs 10 \
          --slab-gap 4 --fractions 0.6,0.2,0.2 --seed 0 --no-progress --out "$f" >&2
      fi
      echo "$f" ;;
    *) echo "error: unknown dataset $1 (phantom, colin27)" >&2; exit 2 ;;
  esac
}

KEYS="image_auroc pixel_auroc pixel_auprc best_dice dice_at_val_threshold pixel_auprc_small pixel_auprc_large best_dice_small best_dice_large dice_at_val_threshold_small dice_at_val_threshold_large image_auroc_small image_auroc_large lesion_slices_small lesion_slices_large"
RESULTS="$OUT/results.tsv"
printf 'dataset\tmethod\tseed\tseconds\t%s\n' "$(echo $KEYS | tr ' ' '\t')" > "$RESULTS"

record() {  # dataset method seed seconds run_dir
  python3 - "$@" "$KEYS" >> "$RESULTS" <<'EOF'
import json, sys
ds, method, seed, seconds, run, keys = sys.argv[1:7]
t = json.load(open(run + "/summary.json"))["test"]
vals = [("" if t.get(k) is None else "%.6g" % t[k]) for k in keys.split()]
print("\t".join([ds, method, seed, seconds] + vals))
EOF
}

# "--epochs EPOCHS --epoch-steps K" for STEPS steps (rounded up to whole epochs).
schedule() { echo "--epochs $EPOCHS --epoch-steps $(table_epoch_steps "$1" "$EPOCHS")"; }
read -r -a S1_SCHEDULE <<<"$(schedule "$S1_STEPS")"
read -r -a S2_SCHEDULE <<<"$(schedule "$S2_STEPS")"
read -r -a AE_SCHEDULE <<<"$(schedule "$AE_STEPS")"
declare -A DATA
for ds in $DATASETS; do DATA[$ds]=$(dataset_file "$ds"); done

run_anomaly() {  # NAME ARGS...: one train_anomaly run of the table
  local name=$1
  shift
  table_run "$name" "train_anomaly: test" "$TA" --data "$data" --out "$OUT/runs" --name "$name" --seed "$s" \
    --batch-size "$BATCH" --device "$DEVICE" --workers 1 --no-progress "$@" "${EXTRA_FLAGS[@]}"
}

# The runs that need nothing else, then the encoders (each needs its stage-1 run).
for ds in $DATASETS; do
  data=${DATA[$ds]}
  for s in $SEEDS; do
    run_anomaly "fanogan1_${ds}_s$s" --stage 1 --width "$WIDTH" --z-dim "$Z_DIM" "${S1_SCHEDULE[@]}"
    run_anomaly "ae_${ds}_s$s" --method ae --width "$WIDTH" --z-dim "$Z_DIM" "${AE_SCHEDULE[@]}"
    run_anomaly "threshold_${ds}_s$s" --method threshold
  done
done
table_wait
for ds in $DATASETS; do
  data=${DATA[$ds]}
  for s in $SEEDS; do
    run_anomaly "fanogan2_${ds}_s$s" --stage 2 --stage1 "$OUT/runs/fanogan1_${ds}_s$s" "${S2_SCHEDULE[@]}"
  done
done
table_wait

# seconds: f-AnoGAN's are its two stages together.
for ds in $DATASETS; do
  for s in $SEEDS; do
    record "$ds" fanogan "$s" $(($(table_seconds "fanogan1_${ds}_s$s") + $(table_seconds "fanogan2_${ds}_s$s"))) \
      "$OUT/runs/fanogan2_${ds}_s$s"
    record "$ds" ae "$s" "$(table_seconds "ae_${ds}_s$s")" "$OUT/runs/ae_${ds}_s$s"
    record "$ds" threshold "$s" "$(table_seconds "threshold_${ds}_s$s")" "$OUT/runs/threshold_${ds}_s$s"
  done
done

# mean +- sd over seeds per dataset and method
python3 - "$RESULTS" > "$OUT/table.md" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
cols = ["image_auroc", "pixel_auroc", "pixel_auprc", "best_dice", "dice_at_val_threshold",
        "pixel_auprc_small", "pixel_auprc_large", "best_dice_small", "best_dice_large"]
print("| dataset | method | seeds | " + " | ".join(cols) + " |")
print("|---|---|---|" + "---|" * len(cols))
for key in dict.fromkeys((r["dataset"], r["method"]) for r in rows):
    group = [r for r in rows if (r["dataset"], r["method"]) == key]
    cells = []
    for c in cols:
        v = [float(r[c]) for r in group if r[c] != ""]
        if not v:
            cells.append("n/a")
        elif len(v) == 1:
            cells.append("%.3f" % v[0])
        else:
            cells.append("%.3f ± %.3f" % (statistics.mean(v), statistics.stdev(v)))
    print("| %s | %s | %d | %s |" % (key[0], key[1], len(group), " | ".join(cells)))
EOF
cat "$OUT/table.md"
