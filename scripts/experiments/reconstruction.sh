#!/usr/bin/env bash
# Issue 17's results table: reconstruction by train_recon, GAN against the supervised baseline
# of the same network (--adv-weight 0) against the input itself (low-dose FBP / bicubic), for
# low-dose CT denoising and 4x MRI super-resolution, over seeds.
#
#   denoise:  OUT/data/lowdose_ct_128.h5 (prepare_data lowdose-ct: the lung phantom, 8 subjects,
#             1e5 photons per ray at full dose, 25% dose input, Hann-windowed FBP)
#   superres: OUT/data/colin27_sr4_128.h5 (prepare_data superres: Colin27 T1 with its brain
#             mask, k-space truncation by 4 per axis, bicubic back to 128x128)
# Every training run uses the same schedule (EPOCHS + EPOCHS of decay, about 5-10 minutes each
# on 2 cores at the defaults); the test metrics of the best checkpoint (chosen on validation
# PSNR) are kept, with the input's metrics on the same slices as the baseline. Metric settings,
# stated in the table: CT inside the body mask (> -500 HU), PSNR/SSIM/MAE in HU in the
# [-160, 240] window (data range 400) and on [-1024, 3072] (data range 4096); MRI inside the
# brain mask on the prepared intensities ([-1, 1] = the subject's [p0.5, p99.5], data range 2).
# Writes OUT/results.tsv (one line per run) and OUT/table.md (mean +- sd over seeds).
#
# usage: scripts/experiments/reconstruction.sh BUILD_DIR OUT
# env:   SEEDS ("1 2 3"), TASKS ("denoise superres"), EPOCHS (3), NGF (16), NDF (16), BATCH (8),
#        ADV_WEIGHT (0.1), MAX_TRAIN_BATCHES (0 = whole epochs), EXTRA_FLAGS (every run)
set -euo pipefail

usage() { echo "usage: $0 BUILD_DIR OUT" >&2; exit 2; }
[ $# -eq 2 ] || usage
BUILD=$1
OUT=$2
SEEDS=${SEEDS:-"1 2 3"}
TASKS=${TASKS:-"denoise superres"}
EPOCHS=${EPOCHS:-3}
NGF=${NGF:-16}
NDF=${NDF:-16}
BATCH=${BATCH:-8}
ADV_WEIGHT=${ADV_WEIGHT:-0.1}
MAX_TRAIN_BATCHES=${MAX_TRAIN_BATCHES:-0}
EXTRA_FLAGS=${EXTRA_FLAGS:-}
COLIN_DIR=${COLIN27_DIR:-/usr/share/mricron/templates}
for b in train_recon prepare_data; do
  [ -x "$BUILD/bin/$b" ] || { echo "error: $BUILD/bin/$b not built" >&2; exit 1; }
done
mkdir -p "$OUT/data" "$OUT/runs"

data_for() {
  case "$1" in
    denoise)
      local f="$OUT/data/lowdose_ct_128.h5"
      [ -f "$f" ] || "$BUILD/bin/prepare_data" lowdose-ct --phantom-subjects 8 --phantom-seed 0 --size 128 \
        --split-by subject --seed 0 --photons 1e5 --dose-fraction 0.25 --no-progress --out "$f" >&2
      echo "$f" ;;
    superres)
      local f="$OUT/data/colin27_sr4_128.h5"
      [ -f "$f" ] || "$BUILD/bin/prepare_data" superres --image "$COLIN_DIR/ch2.nii.gz" --mask "$COLIN_DIR/ch2bet.nii.gz" \
        --mask-threshold 0 --factor 4 --degradation kspace --size 128 --split-by slab --slabs 10 --slab-gap 2 \
        --seed 0 --no-progress --out "$f" >&2
      echo "$f" ;;
  esac
}

RESULTS="$OUT/results.tsv"
printf 'task\tseed\tarm\tview\tpsnr\tssim\tmae\tinput_psnr\tinput_ssim\tinput_mae\tseconds\n' > "$RESULTS"
for task in $TASKS; do
  data=$(data_for "$task")
  for seed in $SEEDS; do
    for arm in gan supervised; do
      adv=$ADV_WEIGHT
      [ "$arm" = supervised ] && adv=0
      name="${task}_${arm}_s${seed}"
      echo "== $name: train_recon --task $task --adv-weight $adv --seed $seed ($EPOCHS + $EPOCHS epochs)"
      t0=$(date +%s)
      # shellcheck disable=SC2086
      "$BUILD/bin/train_recon" --task "$task" --data "$data" --out "$OUT/runs" --name "$name" --seed "$seed" \
        --adv-weight "$adv" --ngf "$NGF" --ndf "$NDF" --batch-size "$BATCH" --epochs "$EPOCHS" \
        --epochs-decay "$EPOCHS" --max-train-batches "$MAX_TRAIN_BATCHES" --device cpu --no-progress $EXTRA_FLAGS
      secs=$(( $(date +%s) - t0 ))
      python3 - "$OUT/runs/$name/summary.json" "$task" "$seed" "$arm" "$secs" >> "$RESULTS" <<'PY'
import json, sys
path, task, seed, arm, secs = sys.argv[1:]
t = json.load(open(path))["test"]
for v in t["settings"]["views"]:
    m = t[v["name"]]
    print("\t".join([task, seed, arm, f'{v["name"]} [{v["window"][0]:g}, {v["window"][1]:g}] range {v["data_range"]:g}',
                     *(f"{m[k]:.4f}" for k in ["psnr", "ssim", "mae", "input_psnr", "input_ssim", "input_mae"]), secs]))
PY
    done
  done
done

python3 - "$RESULTS" "$OUT/table.md" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
def ms(xs):
    xs = [float(x) for x in xs]
    return f"{statistics.mean(xs):.2f} ± {statistics.stdev(xs):.2f}" if len(xs) > 1 else f"{xs[0]:.2f}"
def ms4(xs):
    xs = [float(x) for x in xs]
    return f"{statistics.mean(xs):.4f} ± {statistics.stdev(xs):.4f}" if len(xs) > 1 else f"{xs[0]:.4f}"
out = ["| task | metric view (window, data range) | method | seeds | PSNR dB | SSIM | MAE |", "|---|---|---|---|---|---|---|"]
keys = sorted({(r["task"], r["view"]) for r in rows})
for task, view in keys:
    sel = [r for r in rows if r["task"] == task and r["view"] == view]
    base = [r for r in sel if r["arm"] == "supervised"] or sel
    name = "low-dose input (FBP)" if task == "denoise" else "bicubic input"
    out.append(f"| {task} | {view} | {name} | {len(base)} | {ms([r['input_psnr'] for r in base])} | "
               f"{ms4([r['input_ssim'] for r in base])} | {ms4([r['input_mae'] for r in base])} |")
    for arm, label in [("supervised", "residual U-Net, --adv-weight 0"), ("gan", "residual U-Net + PatchGAN")]:
        a = [r for r in sel if r["arm"] == arm]
        if a:
            out.append(f"| {task} | {view} | {label} | {len(a)} | {ms([r['psnr'] for r in a])} | "
                       f"{ms4([r['ssim'] for r in a])} | {ms4([r['mae'] for r in a])} |")
open(sys.argv[2], "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
echo "== wrote $RESULTS and $OUT/table.md"
