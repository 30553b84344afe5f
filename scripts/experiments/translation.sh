#!/usr/bin/env bash
# Issue 18's evaluation: MR -> CT translation on the lung phantom's test subjects, three arms
#   pix2pix     paired: U-Net G + PatchGAN on (MR, CT), vanilla GAN, L1 weight 100
#   supervised  the same U-Net trained on L1 alone (--gan-mode none): the plain baseline
#   cyclegan    unpaired: MR and CT from disjoint training subjects, two ResNet G (6 blocks),
#               two PatchGAN D, lsgan, cycle 10, identity 0.5, pool 50
# each with train_translate's CPU defaults (ngf/ndf 16, 3 + 3 epochs, linear decay), per seed.
# Metrics (test split, the checkpoint chosen on validation MAE): MAE in HU inside the body (the
# CT file's mask), PSNR and SSIM inside the body on the prepared scale [-1, 1] = window
# [-1000, 1000] HU (data range 2, 7x7 uniform SSIM window), MAE per tissue class, lesion Dice
# (threshold -300 HU inside the lesions' 2-pixel neighbourhood, translated vs real CT) and
# invented lesion pixels (> -300 HU where the tissue map says lung, on lesion-free slices).
# Writes OUT/results.tsv (one line per run) and OUT/table.md (mean ± sd over seeds).
#
# usage: scripts/experiments/translation.sh BUILD_DIR OUT [STEM]
#        STEM: the translation files STEM_mr.h5, STEM_ct.h5, STEM_tissue.h5 (default
#        data/prepared/lung_translate_128; prepare_data translation writes them, and so does
#        scripts/prepare_defaults.sh)
# env:   SEEDS ("1 2 3"), ARMS ("pix2pix supervised cyclegan"), EXTRA_FLAGS (every run)
set -euo pipefail

usage() { echo "usage: $0 BUILD_DIR OUT [STEM]" >&2; exit 2; }
[ $# -ge 2 ] || usage
BUILD=$1
OUT=$2
STEM=${3:-data/prepared/lung_translate_128}
SEEDS=${SEEDS:-"1 2 3"}
ARMS=${ARMS:-"pix2pix supervised cyclegan"}
EXTRA_FLAGS=${EXTRA_FLAGS:-}
[ -x "$BUILD/bin/train_translate" ] || { echo "error: $BUILD/bin/train_translate not built" >&2; exit 1; }
for m in mr ct tissue; do
  [ -f "${STEM}_$m.h5" ] || { echo "error: ${STEM}_$m.h5 missing (prepare_data translation --out DIR --stem NAME)" >&2; exit 1; }
done
mkdir -p "$OUT"
RESULTS="$OUT/results.tsv"
printf 'arm\tseed\tmae_hu\tpsnr\tssim\tlesion_dice\tinvented_px\tinvented_ml\tlung_px\treal_ct_px\tmae_fat\tmae_soft\tmae_bone\tmae_blood\tmae_lung\tmae_lesion\tseconds\n' > "$RESULTS"

for s in $SEEDS; do
  for arm in $ARMS; do
    case "$arm" in
      pix2pix) flags=(--model pix2pix) ;;
      supervised) flags=(--model pix2pix --gan-mode none) ;;
      cyclegan) flags=(--model cyclegan) ;;
      *) echo "error: unknown arm $arm" >&2; exit 1 ;;
    esac
    name="${arm}_s$s"
    t0=$(date +%s)
    "$BUILD/bin/train_translate" "${flags[@]}" --source "${STEM}_mr.h5" --target "${STEM}_ct.h5" \
      --tissue "${STEM}_tissue.h5" --out "$OUT/runs" --name "$name" --seed "$s" --device cpu \
      --no-progress $EXTRA_FLAGS
    secs=$(( $(date +%s) - t0 ))
    python3 - "$OUT/runs/$name/summary.json" "$arm" "$s" "$secs" >> "$RESULTS" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))["test"]
tm = t.get("tissue_mae_hu", {})
f = lambda v: "nan" if v is None else f"{v:.4f}"
print("\t".join([sys.argv[2], sys.argv[3], f(t["mae_hu"]), f(t["psnr"]), f(t["ssim"]), f(t["lesion_dice"]),
                 str(t["invented_lesion_pixels"]), f(t.get("invented_lesion_mm3", 0) / 1000), str(t["lesion_free_lung_pixels"]),
                 str(t["real_ct_lesion_pixels_in_lung"])] +
                [f(tm.get(k)) for k in ["fat", "soft", "bone", "blood", "lung", "lesion"]] + [sys.argv[4]]))
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
        ("mae_lesion", "lesion MAE (HU)", 1), ("seconds", "train s", 0)]
print("| arm | seeds | " + " | ".join(c[1] for c in cols) + " |")
print("|---|---|" + "---|" * len(cols))
for a in arms:
    rs = [r for r in rows if r["arm"] == a]
    print(f"| {a} | {len(rs)} | " + " | ".join(ms([r[c] for r in rs], d) for c, _, d in cols) + " |")
PY
cat "$OUT/table.md"
