#!/usr/bin/env bash
# Issue 18's evaluation: MR -> CT translation on the lung phantom's test subjects. Arms:
#   pix2pix_fr16     paired: U-Net G with full-resolution ends (--full-res-width 16) + PatchGAN
#                    on (MR, CT), vanilla GAN, L1 weight 100, Adam lr 1e-3 (train_translate's CPU
#                    default for pix2pix since 2026-12-07)
#   supervised_fr16  the same U-Net trained on L1 alone (--gan-mode none): the plain baseline
#   pix2pix_fr16_t2  pix2pix_fr16 with the T2 rendering as a second input channel
#                    (--source-channel STEM_mr_t2.h5): two MR contrasts -> CT
#   pix2pix          as pix2pix_fr16 with the reference's U-Net (no full-resolution ends) and lr
#                    2e-4: the 2026-12-06 table
#   supervised       its L1-only baseline
#   cyclegan         unpaired: MR and CT from disjoint training subjects, two ResNet G (6
#                    blocks), two PatchGAN D, lsgan, cycle 10, identity 0.5, pool 50
# each at train_translate's CPU network sizes (ngf/ndf 16) with a schedule of about ten minutes
# per run on one core: the U-Net arms 15 + 15 epochs of 100 batches (3000 steps, batch 4),
# CycleGAN 3 + 2 epochs of 80 batches (400 steps, batch 2; its step costs about ten pix2pix steps).
# Metrics (test split, the checkpoint chosen on validation MAE): MAE in HU inside the body (the
# CT file's mask), PSNR and SSIM inside the body on the prepared scale [-1, 1] = window
# [-1000, 1000] HU (data range 2, 7x7 uniform SSIM window), MAE per tissue class (halo: a
# lesion's ground-glass rim, a class since 2026-12-07; nan on files made before), lesion Dice
# (threshold -300 HU inside the lesions' 2-pixel neighbourhood, translated vs real CT) and
# invented lesion pixels (> -300 HU where the tissue map says lung, on lesion-free slices).
# Writes OUT/results.tsv (one line per run) and OUT/table.md (mean ± sd over seeds).
#
# usage: scripts/experiments/translation.sh BUILD_DIR OUT [STEM]
#        STEM: the translation files STEM_mr.h5, STEM_ct.h5, STEM_tissue.h5 and, for the
#        pix2pix_fr16_t2 arm, STEM_mr_t2.h5 (default
#        data/prepared/lung_translate_128; prepare_data translation writes them, and so does
#        scripts/prepare_defaults.sh)
# env:   SEEDS ("1 2 3"), ARMS ("pix2pix_fr16 supervised_fr16 pix2pix_fr16_t2 cyclegan"),
#        EXTRA_FLAGS (every run), UNET_FLAGS (the pix2pix and supervised arms' schedule), CYCLEGAN_FLAGS (the cyclegan arm's),
#        JOBS (runs at once, default 2), THREADS (OpenMP threads per run, default 1)
# Runs are resumable and go JOBS at a time (scripts/experiments/table_runs.sh).
set -euo pipefail
# shellcheck source=scripts/experiments/table_runs.sh
source "$(dirname "$0")/table_runs.sh"

usage() { echo "usage: $0 BUILD_DIR OUT [STEM]" >&2; exit 2; }
[ $# -ge 2 ] || usage
BUILD=$1
OUT=$2
STEM=${3:-data/prepared/lung_translate_128}
SEEDS=${SEEDS:-"1 2 3"}
ARMS=${ARMS:-"pix2pix_fr16 supervised_fr16 pix2pix_fr16_t2 cyclegan"}
read -r -a EXTRA_FLAGS <<<"${EXTRA_FLAGS:-}"
UNET_FLAGS=${UNET_FLAGS:-"--epochs 15 --epochs-decay 15 --max-train-batches 100"}
CYCLEGAN_FLAGS=${CYCLEGAN_FLAGS:-"--epochs 3 --epochs-decay 2 --max-train-batches 80"}
JOBS=${JOBS:-2}
THREADS=${THREADS:-1}
[ -x "$BUILD/bin/train_translate" ] || { echo "error: $BUILD/bin/train_translate not built" >&2; exit 1; }
for m in mr ct tissue; do
  [ -f "${STEM}_$m.h5" ] || { echo "error: ${STEM}_$m.h5 missing (prepare_data translation --out DIR --stem NAME)" >&2; exit 1; }
done
if [[ " $ARMS " == *_t2* ]] && [ ! -f "${STEM}_mr_t2.h5" ]; then
  echo "error: ${STEM}_mr_t2.h5 missing (prepare_data translation writes it since 2026-12-07)" >&2; exit 1
fi
mkdir -p "$OUT/runs"

arm_flags() {
  case "$1" in
    pix2pix_fr16) echo "--model pix2pix --full-res-width 16 --lr 0.001 $UNET_FLAGS" ;;
    pix2pix_fr16_t2) echo "--model pix2pix --full-res-width 16 --lr 0.001 --source-channel ${STEM}_mr_t2.h5 $UNET_FLAGS" ;;
    supervised_fr16) echo "--model pix2pix --gan-mode none --full-res-width 16 --lr 0.001 $UNET_FLAGS" ;;
    pix2pix) echo "--model pix2pix --full-res-width 0 --lr 0.0002 $UNET_FLAGS" ;;
    supervised) echo "--model pix2pix --gan-mode none --full-res-width 0 --lr 0.0002 $UNET_FLAGS" ;;
    cyclegan) echo "--model cyclegan $CYCLEGAN_FLAGS" ;;
    *) echo "error: unknown arm $1" >&2; return 1 ;;
  esac
}

for s in $SEEDS; do
  for arm in $ARMS; do
    arm_flags "$arm" >/dev/null
    read -r -a flags <<<"$(arm_flags "$arm")"
    table_run "${arm}_s$s" "train_translate: test" "$BUILD/bin/train_translate" "${flags[@]}" \
      --source "${STEM}_mr.h5" --target "${STEM}_ct.h5" --tissue "${STEM}_tissue.h5" --out "$OUT/runs" \
      --name "${arm}_s$s" --seed "$s" --device cpu --no-progress "${EXTRA_FLAGS[@]}"
  done
done
table_wait

RESULTS="$OUT/results.tsv"
printf 'arm\tseed\tmae_hu\tpsnr\tssim\tlesion_dice\tinvented_px\tinvented_ml\tlung_px\treal_ct_px\tmae_fat\tmae_soft\tmae_bone\tmae_blood\tmae_lung\tmae_lesion\tmae_halo\tseconds\n' > "$RESULTS"
for s in $SEEDS; do
  for arm in $ARMS; do
    name="${arm}_s$s"
    python3 - "$OUT/runs/$name/summary.json" "$arm" "$s" "$(table_seconds "$name")" >> "$RESULTS" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))["test"]
tm = t.get("tissue_mae_hu", {})
f = lambda v: "nan" if v is None else f"{v:.4f}"
print("\t".join([sys.argv[2], sys.argv[3], f(t["mae_hu"]), f(t["psnr"]), f(t["ssim"]), f(t["lesion_dice"]),
                 str(t["invented_lesion_pixels"]), f(t.get("invented_lesion_mm3", 0) / 1000), str(t["lesion_free_lung_pixels"]),
                 str(t["real_ct_lesion_pixels_in_lung"])] +
                [f(tm.get(k)) for k in ["fat", "soft", "bone", "blood", "lung", "lesion", "halo"]] + [sys.argv[4]]))
PY
  done
done

python3 - "$RESULTS" > "$OUT/table.md" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
arms = []
for r in rows:
    if r["arm"] not in arms:
        arms.append(r["arm"])
def ms(v, d):
    v = [float(x) for x in v]
    return f"{statistics.mean(v):.{d}f} ± {statistics.stdev(v):.{d}f}" if len(v) > 1 else f"{v[0]:.{d}f}"
cols = [("mae_hu", "MAE (HU)", 1), ("psnr", "PSNR (dB)", 2), ("ssim", "SSIM", 4), ("lesion_dice", "lesion Dice", 4),
        ("invented_px", "invented lesion px", 1), ("invented_ml", "invented lesion mL", 2), ("mae_bone", "bone MAE (HU)", 1), ("mae_lung", "lung MAE (HU)", 1),
        ("mae_lesion", "lesion MAE (HU)", 1), ("mae_halo", "halo MAE (HU)", 1), ("seconds", "train s", 0)]
print("| arm | seeds | " + " | ".join(c[1] for c in cols) + " |")
print("|---|---|" + "---|" * len(cols))
for a in arms:
    rs = [r for r in rows if r["arm"] == a]
    print(f"| {a} | {len(rs)} | " + " | ".join(ms([r[c] for r in rs], d) for c, _, d in cols) + " |")
PY
cat "$OUT/table.md"
