#!/usr/bin/env bash
# Issue 16's table: unsupervised anomaly detection, f-AnoGAN against two baselines on the same
# data with the same evaluation (docs/anomaly.md), on two datasets, over seeds.
#
# Datasets (prepared here unless they exist):
#   phantom   OUT/data/lung_phantom_anomaly_SIZE.h5: prepare_data phantom --anomaly (train
#             subjects without lesions; val/test subjects with LESIONS phantom lesions each and
#             their masks in /<split>/lesions); organ = lungs
#   colin27   data/prepared_SIZE/colin27_skullstrip.h5 (as scripts/prepare_defaults.sh --size SIZE
#             makes it);
#             val/test get synthetic lesions (--lesion-seed); organ = brain
# Methods per dataset and seed S (--seed S; the lesions do not depend on S):
#   fanogan   train_anomaly --stage 1 (WGAN-GP, S1_EPOCHS) then --stage 2 (encoder, S2_EPOCHS)
#   ae        train_anomaly --method ae for S1_EPOCHS + S2_EPOCHS epochs: it sees as many
#             training batches as f-AnoGAN's encoder stage and its stage 1 together saw epochs
#   threshold train_anomaly --method threshold (fit on the train split; nothing to train)
# Metrics (each run's summary.json "test": best validation checkpoint; pixel metrics inside the
# organ mask; Dice at the threshold chosen on validation; lesion-size buckets split at SIZE/10
# px diameter; intensities normalized to [-1, 1]) go to OUT/results.tsv (one line per run) and
# OUT/table.md (mean +- sd over seeds).
#
# usage: scripts/experiments/anomaly.sh BUILD_DIR OUT
# env:   SEEDS ("1 2 3"), DATASETS ("phantom colin27"), SIZE (64), S1_EPOCHS (20), S2_EPOCHS (10),
#        WIDTH (16), Z_DIM (64), BATCH (8), LESIONS (3), SUBJECTS (8), DEVICE (cpu),
#        EXTRA_FLAGS (passed to every train_anomaly run)
# Each run is sized to about 10 min or less on 2 CPU cores at the defaults (stage 1 is the
# longest); the whole grid (2 datasets x 3 seeds x 4 runs) takes a few hours there.
set -euo pipefail

usage() { echo "usage: $0 BUILD_DIR OUT" >&2; exit 2; }
[ $# -eq 2 ] || usage
BUILD=$1
OUT=$2
SEEDS=${SEEDS:-"1 2 3"}
DATASETS=${DATASETS:-"phantom colin27"}
SIZE=${SIZE:-64}
S1_EPOCHS=${S1_EPOCHS:-20}
S2_EPOCHS=${S2_EPOCHS:-10}
WIDTH=${WIDTH:-16}
Z_DIM=${Z_DIM:-64}
BATCH=${BATCH:-8}
LESIONS=${LESIONS:-3}
SUBJECTS=${SUBJECTS:-8}
DEVICE=${DEVICE:-cpu}
EXTRA_FLAGS=${EXTRA_FLAGS:-}
for b in train_anomaly prepare_data; do
  [ -x "$BUILD/bin/$b" ] || { echo "error: $BUILD/bin/$b not built" >&2; exit 1; }
done
mkdir -p "$OUT/data"
TA="$BUILD/bin/train_anomaly"

dataset_file() {
  case "$1" in
    phantom)
      local f="$OUT/data/lung_phantom_anomaly_$SIZE.h5"
      if [ ! -f "$f" ]; then
        "$BUILD/bin/prepare_data" phantom --anomaly --lesions "$LESIONS" --subjects "$SUBJECTS" --seed 0 \
          --size "$SIZE" --h5 "$f" --no-progress >&2
      fi
      echo "$f" ;;
    colin27)
      local f="data/prepared_$SIZE/colin27_skullstrip.h5"
      if [ ! -f "$f" ]; then
        # Only Colin27 of scripts/prepare_defaults.sh --size SIZE (its flags), not the phantom.
        local colin=${COLIN27_DIR:-/usr/share/mricron/templates}
        "$BUILD/bin/prepare_data" nifti --image "$colin/ch2.nii.gz" --mask "$colin/ch2bet.nii.gz" --mask-threshold 0 \
          --modality mri --percentiles 0.5,99.5 --crop body --size "$SIZE" --split-by slab --slabs 10 \
          --slab-gap 2 --seed 0 --no-progress --out "$f" >&2
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

common() { echo --data "$1" --out "$OUT/runs" --seed "$2" --batch-size "$BATCH" --device "$DEVICE" --no-progress $EXTRA_FLAGS; }

for ds in $DATASETS; do
  data=$(dataset_file "$ds")
  for s in $SEEDS; do
    tag="${ds}_s$s"
    t=$(date +%s)
    "$TA" $(common "$data" "$s") --name "fanogan1_$tag" --stage 1 --width "$WIDTH" --z-dim "$Z_DIM" --epochs "$S1_EPOCHS"
    "$TA" $(common "$data" "$s") --name "fanogan2_$tag" --stage 2 --stage1 "$OUT/runs/fanogan1_$tag" --epochs "$S2_EPOCHS"
    record "$ds" fanogan "$s" $(( $(date +%s) - t )) "$OUT/runs/fanogan2_$tag"
    t=$(date +%s)
    "$TA" $(common "$data" "$s") --name "ae_$tag" --method ae --width "$WIDTH" --z-dim "$Z_DIM" \
      --epochs $(( S1_EPOCHS + S2_EPOCHS ))
    record "$ds" ae "$s" $(( $(date +%s) - t )) "$OUT/runs/ae_$tag"
    t=$(date +%s)
    "$TA" $(common "$data" "$s") --name "threshold_$tag" --method threshold
    record "$ds" threshold "$s" $(( $(date +%s) - t )) "$OUT/runs/threshold_$tag"
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
