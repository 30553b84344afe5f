#!/usr/bin/env bash
# Issue 17's results table: reconstruction by train_recon, GAN against the supervised baseline
# of the same network (--adv-weight 0) against the input itself (low-dose FBP / bicubic), for
# low-dose CT denoising and 4x MRI super-resolution, over seeds.
#
#   denoise:  OUT/data/lowdose_ct_128.h5 (prepare_data lowdose-ct: the lung phantom,
#             PHANTOM_SUBJECTS subjects without the phantom's own noise, 1e5 photons per ray at
#             full dose, 25% dose input, Hann-windowed FBP; split by subject)
#   superres: OUT/data/colin27_sr4_128.h5 (prepare_data superres: Colin27 T1 with its brain
#             mask, k-space truncation by 4 per axis, bicubic back to 128x128; the interleaved
#             split of the segmentation table, so validation and test each span the brain)
# Each task has one schedule for both arms (DENOISE_FLAGS, SUPERRES_FLAGS); the test metrics of the best checkpoint (chosen on validation PSNR)
# are kept, with the input's metrics on the same slices as the baseline. Metric settings, stated
# in the table: CT inside the body mask (> -500 HU), PSNR/SSIM/MAE in HU in the [-160, 240]
# window (data range 400) and on [-1024, 3072] (data range 4096), and the noise power spectrum
# in uniform soft-tissue ROIs of the full-dose reference (train/noise_power.h); MRI inside the
# brain mask on the prepared intensities ([-1, 1] = the subject's [p0.5, p99.5], data range 2).
# Writes OUT/results.tsv (one line per run and metric view) and OUT/table.md (mean ± sd over
# seeds).
#
# usage: scripts/experiments/reconstruction.sh BUILD_DIR OUT
# env:   SEEDS ("1 2 3"), TASKS ("denoise superres"), NGF (16), NDF (16), BATCH (8),
#        ADV_WEIGHT (0.1), PHANTOM_SUBJECTS (24), DENOISE_FLAGS, SUPERRES_FLAGS (schedules),
#        EXTRA_FLAGS (every run), GAN_FLAGS (the GAN arm's runs only, e.g. "--adv-window -160,240
#        --d-lr 0.0002": what D sees and its learning rate), JOBS (runs at once, default 2), THREADS (OpenMP threads per
#        run, default 1), COLIN27_DIR (Debian's mricron-data)
set -euo pipefail
# shellcheck source=scripts/experiments/table_runs.sh
source "$(dirname "$0")/table_runs.sh"

usage() { echo "usage: $0 BUILD_DIR OUT" >&2; exit 2; }
[ $# -eq 2 ] || usage
BUILD=$1
OUT=$2
SEEDS=${SEEDS:-"1 2 3"}
TASKS=${TASKS:-"denoise superres"}
NGF=${NGF:-16}
NDF=${NDF:-16}
BATCH=${BATCH:-8}
ADV_WEIGHT=${ADV_WEIGHT:-0.1}
PHANTOM_SUBJECTS=${PHANTOM_SUBJECTS:-24}
# Denoising: MSE at lr 1e-3 (train_recon's denoising default, written out); the 2026-12-06 table
# ran "--epochs 6 --epochs-decay 6 --augment" (L1 100 at lr 2e-4).
DENOISE_FLAGS=${DENOISE_FLAGS:-"--epochs 20 --epochs-decay 20 --augment --lambda 0 --lambda-mse 10000 --lr 0.001"}
SUPERRES_FLAGS=${SUPERRES_FLAGS:-"--epochs 25 --epochs-decay 25 --augment"}
read -r -a EXTRA_FLAGS <<<"${EXTRA_FLAGS:-}"
read -r -a GAN_FLAGS <<<"${GAN_FLAGS:-}"
JOBS=${JOBS:-2}
THREADS=${THREADS:-1}
COLIN_DIR=${COLIN27_DIR:-/usr/share/mricron/templates}
for b in train_recon prepare_data; do
  [ -x "$BUILD/bin/$b" ] || { echo "error: $BUILD/bin/$b not built" >&2; exit 1; }
done
mkdir -p "$OUT/data" "$OUT/runs"

data_for() {
  case "$1" in
    denoise)
      local f="$OUT/data/lowdose_ct_128.h5"
      [ -f "$f" ] || "$BUILD/bin/prepare_data" lowdose-ct --phantom-subjects "$PHANTOM_SUBJECTS" --phantom-seed 0 \
        --size 128 --split-by subject --seed 0 --photons 1e5 --dose-fraction 0.25 --no-progress --out "$f" >&2
      echo "$f" ;;
    superres)
      local f="$OUT/data/colin27_sr4_128.h5"
      [ -f "$f" ] || "$BUILD/bin/prepare_data" superres --image "$COLIN_DIR/ch2.nii.gz" --mask "$COLIN_DIR/ch2bet.nii.gz" \
        --mask-threshold 0 --factor 4 --degradation kspace --size 128 --split-by interleaved --slabs 10 \
        --slab-gap 4 --fractions 0.6,0.2,0.2 --seed 0 --no-progress --out "$f" >&2
      echo "$f" ;;
    *) echo "error: unknown task $1" >&2; return 1 ;;
  esac
}

task_flags() {
  case "$1" in
    denoise) echo "$DENOISE_FLAGS" ;;
    superres) echo "$SUPERRES_FLAGS" ;;
  esac
}

declare -A DATA
for task in $TASKS; do DATA[$task]=$(data_for "$task"); done
for seed in $SEEDS; do
  for task in $TASKS; do
    read -r -a flags <<<"$(task_flags "$task")"
    for arm in supervised gan; do
      adv=$ADV_WEIGHT
      arm_flags=("${GAN_FLAGS[@]}")
      [ "$arm" = supervised ] && adv=0 && arm_flags=()
      name="${task}_${arm}_s${seed}"
      table_run "$name" "train_recon: test" "$BUILD/bin/train_recon" --task "$task" --data "${DATA[$task]}" \
        --out "$OUT/runs" --name "$name" --seed "$seed" --adv-weight "$adv" --ngf "$NGF" --ndf "$NDF" \
        --batch-size "$BATCH" "${flags[@]}" --device cpu --no-progress "${EXTRA_FLAGS[@]}" "${arm_flags[@]}"
    done
  done
done
table_wait

RESULTS="$OUT/results.tsv"
printf 'task\tseed\tarm\tview\tpsnr\tssim\tmae\tinput_psnr\tinput_ssim\tinput_mae\tnps_sd\tnps_freq\tnps_distance\tinput_nps_sd\tinput_nps_distance\tfull_nps_sd\tfull_nps_freq\tseconds\n' >"$RESULTS"
for task in $TASKS; do
  for seed in $SEEDS; do
    for arm in supervised gan; do
      name="${task}_${arm}_s${seed}"
      python3 - "$OUT/runs/$name/summary.json" "$task" "$seed" "$arm" "$(table_seconds "$name")" >>"$RESULTS" <<'PY'
import json, math, sys
path, task, seed, arm, secs = sys.argv[1:]
t = json.load(open(path))["test"]
nps = t.get("nps")
def n(block, key, f=lambda v: v):
    return f"{f(nps[block][key]):.4f}" if nps and nps.get("rois") and key in nps[block] else "nan"
extra = [n("output", "variance", math.sqrt), n("output", "mean_frequency"), n("output", "distance_to_full_dose"),
         n("input", "variance", math.sqrt), n("input", "distance_to_full_dose"),
         n("full_dose", "variance", math.sqrt), n("full_dose", "mean_frequency")]
for v in t["settings"]["views"]:
    m = t[v["name"]]
    print("\t".join([task, seed, arm, f'{v["name"]} [{v["window"][0]:g}, {v["window"][1]:g}] range {v["data_range"]:g}',
                     *(f"{m[k]:.4f}" for k in ["psnr", "ssim", "mae", "input_psnr", "input_ssim", "input_mae"]),
                     *extra, secs]))
PY
    done
  done
done

GAN_FLAGS="${GAN_FLAGS[*]}" python3 - "$RESULTS" "$OUT/table.md" <<'PY'
import csv, math, os, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
def ms(xs, d=2):
    xs = [float(x) for x in xs]
    if any(math.isnan(x) for x in xs):
        return "—"
    return f"{statistics.mean(xs):.{d}f} ± {statistics.stdev(xs):.{d}f}" if len(xs) > 1 else f"{xs[0]:.{d}f}"
out = ["| task | metric view (window, data range) | method | seeds | PSNR dB | PSNR gain over input dB | SSIM | MAE | "
       "NPS: SD HU (full dose: see input row) | NPS distance to full dose | train s |",
       "|---|---|---|---|---|---|---|---|---|---|---|"]
keys = sorted({(r["task"], r["view"]) for r in rows})
for task, view in keys:
    sel = [r for r in rows if r["task"] == task and r["view"] == view]
    base = [r for r in sel if r["arm"] == "supervised"] or sel
    name = "low-dose input (FBP)" if task == "denoise" else "bicubic input"
    full = ms([r['input_nps_sd'] for r in base], 1)
    if full != "—":
        full += f" (full dose {ms([r['full_nps_sd'] for r in base], 1)})"
    out.append(f"| {task} | {view} | {name} | {len(base)} | {ms([r['input_psnr'] for r in base])} | 0 | "
               f"{ms([r['input_ssim'] for r in base], 4)} | {ms([r['input_mae'] for r in base], 4)} | {full} | "
               f"{ms([r['input_nps_distance'] for r in base])} | |")
    gan_flags = os.environ.get("GAN_FLAGS", "").strip()
    gan_label = "residual U-Net + PatchGAN" + (f" ({gan_flags})" if gan_flags else "")
    for arm, label in [("supervised", "residual U-Net, --adv-weight 0"), ("gan", gan_label)]:
        a = [r for r in sel if r["arm"] == arm]
        if a:
            gain = [float(r["psnr"]) - float(r["input_psnr"]) for r in a]
            out.append(f"| {task} | {view} | {label} | {len(a)} | {ms([r['psnr'] for r in a])} | {ms(gain)} | "
                       f"{ms([r['ssim'] for r in a], 4)} | {ms([r['mae'] for r in a], 4)} | "
                       f"{ms([r['nps_sd'] for r in a], 1)} | {ms([r['nps_distance'] for r in a])} | "
                       f"{ms([r['seconds'] for r in a], 0)} |")
open(sys.argv[2], "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
echo "== wrote $RESULTS and $OUT/table.md"
