// prepare_data: look at medical volumes and turn them into training files.
//
//   prepare_data info FILE [--json]                 any volume, or a prepared .h5
//   prepare_data phantom --out DIR --subjects N --seed S [--lesions K] [--h5 FILE.h5]
//   prepare_data phantom --anomaly --lesions K --subjects N --h5 FILE.h5   (anomaly detection)
//   prepare_data luna16 --scans DIR --masks DIR --out FILE.h5 [options]
//   prepare_data nifti --image A.nii.gz --mask B.nii.gz --modality mri --split-by slab --out FILE.h5
//   prepare_data translation --out DIR [--stem lung_translate] [--subjects N] [--seed S] [--size N]
//                                                   paired CT / MR (T1, T2) / tissue files of the phantom
//   prepare_data montage FILE.h5 --out grid.png [--split train] [--count 16]
//   prepare_data lowdose-ct --out FILE.h5 [--image CT.nii.gz ...] [--photons 1e5 --dose-fraction 0.25]
//   prepare_data superres --image T1.nii.gz [--mask BRAIN.nii.gz] --factor 4 --degradation kspace --out FILE.h5
//   prepare_data pairs --input LOW.nii.gz --reference FULL.nii.gz [--mask M.nii.gz] --modality ct --out FILE.h5
//   (the last three write pair files for reconstruction: images = degraded input, targets =
//   reference, masks = the metrics' region; docs/data_hdf5.md "Pairs")
//
// Errors print "prepare_data: error: ..." and exit 1; outputs are written atomically, so a
// failed run never leaves a half-written file.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <tuple>
#include <vector>

#include "data/nifti.h"
#include "data/phantom.h"
#include "data/png_io.h"
#include "data/prepare.h"
#include "data/progress.h"
#include "data/recon_pairs.h"
#include "data/slice_dataset.h"
#include "data/transforms.h"
#include "data/volume_info.h"
#include "data/volume_io.h"
#include "engine/error.h"

namespace rd = rg::data;
namespace fs = std::filesystem;

namespace {

// Options shared by the converting subcommands.
struct ConvertArgs {
  std::string out;
  std::string modality = "ct";
  std::vector<double> window{-1000.0, 400.0};
  std::vector<double> percentiles{0.5, 99.5};
  std::vector<int> labels;
  double mask_threshold = 0.0;
  std::string crop;  // default depends on the subcommand
  std::string mask_resampling = "nearest";
  double margin_mm = 10.0;
  double body_threshold = std::nan("");
  int64_t size = 256;
  std::string split_by = "subject";
  std::vector<double> fractions{0.7, 0.15, 0.15};
  int slabs = 10;
  int slab_gap = 2;
  int folds = 0;
  int fold = 0;
  uint64_t seed = 0;
  int compression = 4;
  bool no_progress = false;
  bool no_reorient = false;
  bool label_map = false;
};

void add_label_map_flag(CLI::App* sub, ConvertArgs& a) {
  sub->add_flag("--label-map", a.label_map,
                "Also store a label map per slice (/<split>/labels: background, body, mask, lesion), "
                "for train_synth --condition labels");
}

void add_convert_options(CLI::App* sub, ConvertArgs& a, bool with_modality) {
  sub->add_option("--out,-o", a.out, "Output HDF5 file (written atomically)")->required();
  if (with_modality)
    sub->add_option("--modality", a.modality, "ct (HU window) or mri (percentile normalization)")
        ->check(CLI::IsMember({"ct", "mri"}));
  sub->add_option("--window", a.window, "CT: HU mapped to -1 and +1")->expected(2)->delimiter(',');
  sub->add_option("--percentiles", a.percentiles, "MRI: percentiles mapped to -1 and +1")
      ->expected(2)->delimiter(',');
  sub->add_option("--labels", a.labels, "Mask values that count as foreground, e.g. 3,4")->delimiter(',');
  sub->add_option("--mask-threshold", a.mask_threshold,
                  "Without --labels: foreground = mask value > threshold");
  sub->add_option("--crop", a.crop, "Crop to the mask or body bounding box, or none")
      ->check(CLI::IsMember({"mask", "body", "none"}));
  sub->add_option("--mask-resampling", a.mask_resampling,
                  "How masks reach the output grid: nearest (the nearest voxel's label) or linear (the "
                  "0/1 mask resampled like the image, then >= 0.5)")
      ->check(CLI::IsMember({"nearest", "linear"}))
      ->capture_default_str();
  sub->add_option("--margin", a.margin_mm, "Margin around the crop box in mm")->check(CLI::NonNegativeNumber);
  sub->add_option("--body-threshold", a.body_threshold,
                  "Body = raw value above this (default CT -500 HU, MRI 5% of the range)");
  sub->add_option("--size", a.size, "Output slice size (size x size)")->check(CLI::Range(8, 4096));
  sub->add_option("--split-by", a.split_by,
                  "subject (whole subjects), slab (shuffled slice ranges) or interleaved (slice "
                  "ranges with every split spread over the whole volume)")
      ->check(CLI::IsMember({"subject", "slab", "interleaved"}));
  CLI::Option* fractions =
      sub->add_option("--fractions", a.fractions, "train,val,test fractions")->expected(3)->delimiter(',');
  sub->add_option("--slabs", a.slabs, "Split by slab: slabs per volume")->check(CLI::PositiveNumber);
  sub->add_option("--slab-gap", a.slab_gap, "Split by slab: slices dropped between splits")
      ->check(CLI::NonNegativeNumber);
  CLI::Option* folds =
      sub->add_option("--folds", a.folds,
                      "Split by interleaved: K folds over the slabs between the two end slabs (K must "
                      "divide --slabs - 2): fold k tests every K-th slab and validates on the group "
                      "before it; replaces --fractions and the seeded layout")
          ->check(CLI::Range(3, 1000))
          ->excludes(fractions);
  sub->add_option("--fold", a.fold, "With --folds K: which fold, 0..K-1")->check(CLI::NonNegativeNumber)->needs(folds);
  sub->add_option("--seed", a.seed, "Seed of the split assignment");
  sub->add_option("--compression", a.compression, "Deflate level 0..9")->check(CLI::Range(0, 9));
  sub->add_flag("--no-progress", a.no_progress, "No progress bar");
  sub->add_flag("--no-reorient", a.no_reorient, "Keep voxel order instead of the display orientation");
}

rd::PrepareOptions to_options(const ConvertArgs& a, const std::string& default_crop) {
  rd::PrepareOptions o;
  o.modality = rd::parse_modality(a.modality);
  o.window = {a.window[0], a.window[1]};
  o.percentiles = {a.percentiles[0], a.percentiles[1]};
  o.labels = a.labels;
  o.mask_threshold = a.mask_threshold;
  o.crop = rd::parse_crop(a.crop.empty() ? default_crop : a.crop);
  o.mask_resampling = rd::parse_mask_resampling(a.mask_resampling);
  o.margin_mm = a.margin_mm;
  o.body_threshold = a.body_threshold;
  o.reorient = !a.no_reorient;
  o.size = a.size;
  o.split_by = rd::parse_split_by(a.split_by);
  o.fractions = {a.fractions[0], a.fractions[1], a.fractions[2]};
  o.slabs = a.slabs;
  o.slab_gap = a.slab_gap;
  o.folds = a.folds;
  o.fold = a.fold;
  o.seed = a.seed;
  o.compression = a.compression;
  o.progress = !a.no_progress;
  o.label_map = a.label_map;
  return o;
}

int run_prepare(const std::vector<rd::SubjectSource>& subjects, const rd::PrepareOptions& o,
                const std::string& out) {
  const rd::PrepareSummary s = rd::prepare_slices(subjects, o, out);
  std::cout << s.str();
  return 0;
}

// ---- montage

void put(rd::Image8& img, int x, int y, uint8_t r, uint8_t g, uint8_t b) {
  uint8_t* p = &img.pixels[static_cast<size_t>((y * img.width + x) * 3)];
  p[0] = r;
  p[1] = g;
  p[2] = b;
}

int run_montage(const std::string& file, const std::string& out, const std::string& split, int count,
                int cols, int tile) {
  rd::SliceDataset ds(file, split);
  RG_CHECK(ds.size() > 0, file, ": split '", split, "' has no slices");
  const int64_t n = std::min<int64_t>(count, ds.size());
  const int64_t c = cols > 0 ? cols : static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(n))));
  const int64_t rows = (n + c - 1) / c;
  const int64_t th = tile > 0 ? tile : ds.height(), tw = tile > 0 ? tile : ds.width();
  constexpr int kGap = 2;
  rd::Image8 img;
  img.width = static_cast<int>(c * tw + (c + 1) * kGap);
  img.height = static_cast<int>(rows * th + (rows + 1) * kGap);
  img.channels = 3;
  img.pixels.assign(static_cast<size_t>(img.width) * img.height * 3, 0);
  rd::Image2D im(ds.height(), ds.width()), mk(ds.height(), ds.width());
  for (int64_t t = 0; t < n; ++t) {
    // Evenly spaced over the split, so the montage spans subjects and slice levels.
    const int64_t idx = n == 1 ? 0 : (t * (ds.size() - 1)) / (n - 1);
    ds.read(idx, im.data.data(), mk.data.data());
    rd::Image2D a = im, m = mk;
    if (th != ds.height() || tw != ds.width()) {
      a = rd::resize(im, th, tw, rd::Interp::Bilinear);
      m = rd::resize(mk, th, tw, rd::Interp::Nearest);
    }
    const int ox = static_cast<int>(kGap + (t % c) * (tw + kGap));
    const int oy = static_cast<int>(kGap + (t / c) * (th + kGap));
    for (int64_t y = 0; y < th; ++y)
      for (int64_t x = 0; x < tw; ++x) {
        const double g = std::clamp((a.at(y, x) + 1.0) * 127.5, 0.0, 255.0);
        double r = g, gg = g, b = g;
        if (m.at(y, x) > 0.5) {
          const bool edge = x == 0 || y == 0 || x == tw - 1 || y == th - 1 || m.at(y - 1, x) < 0.5 ||
                            m.at(y + 1, x) < 0.5 || m.at(y, x - 1) < 0.5 || m.at(y, x + 1) < 0.5;
          if (edge) {
            r = 255, gg = 220, b = 0;  // outline in yellow
          } else {
            constexpr double kAlpha = 0.35;  // translucent red fill
            r = g * (1 - kAlpha) + 255 * kAlpha;
            gg = g * (1 - kAlpha) + 40 * kAlpha;
            b = g * (1 - kAlpha) + 30 * kAlpha;
          }
        }
        put(img, static_cast<int>(ox + x), static_cast<int>(oy + y), static_cast<uint8_t>(std::lround(r)),
            static_cast<uint8_t>(std::lround(gg)), static_cast<uint8_t>(std::lround(b)));
      }
  }
  rd::write_png(out, img);
  std::cout << "wrote " << out << ": " << n << " " << split << " slice(s) of " << file << " (" << img.width
            << "x" << img.height << ", mask in red with a yellow outline)\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"prepare_data: medical volumes -> prepared 2-D training slices (HDF5)"};
  app.require_subcommand(1);

  // info
  std::string info_file;
  bool info_json = false;
  CLI::App* info = app.add_subcommand("info", "Describe a volume (NIfTI, MetaImage, DICOM dir, PNG) or a prepared .h5");
  info->add_option("file", info_file, "Volume file, DICOM directory or prepared .h5")->required();
  info->add_flag("--json", info_json, "One JSON object instead of text");
  int64_t info_volume = 0;
  info->add_option("--volume", info_volume,
                   "4-D NIfTI: which volume (0-based) to describe (default 0; all dims are reported)")
      ->check(CLI::NonNegativeNumber);

  // phantom
  std::string ph_out, ph_h5;
  int ph_subjects = 8, ph_lesions = 0, ph_nodules = 3;
  uint64_t ph_seed = 0;
  std::vector<int64_t> ph_dims{192, 192, 64};
  std::vector<double> ph_spacing{1.8, 1.8, 2.5};
  double ph_noise = 20.0;
  ConvertArgs ph_conv;
  ph_conv.crop = "mask";
  ph_conv.labels = {3, 4};
  CLI::App* phantom = app.add_subcommand("phantom", "Write the procedural lung-CT phantom in LUNA16 layout");
  bool ph_anomaly = false;
  phantom->add_option("--out,-o", ph_out, "Output directory (subset0/, seg-lungs-LUNA16/, annotations.csv); "
                      "required unless --anomaly");
  phantom->add_flag("--anomaly", ph_anomaly,
                    "Anomaly detection: write only --h5, from memory: train subjects without lesions, val/test "
                    "subjects with --lesions each, lesion masks as /<split>/lesions");
  bool ph_lesion_masks = false;
  phantom->add_flag("--lesion-masks", ph_lesion_masks,
                    "Write only --h5, from memory: every subject with --lesions lesions, lesion masks as "
                    "/<split>/lesions (with --label-map: a lesion class)");
  phantom->add_option("--subjects", ph_subjects, "Number of subjects")->check(CLI::Range(1, 100000));
  phantom->add_option("--seed", ph_seed, "Seed (same seed => identical files)");
  phantom->add_option("--lesions", ph_lesions, "Lesions to insert per subject (lesions.csv)")->check(CLI::NonNegativeNumber);
  phantom->add_option("--nodules", ph_nodules, "Solid nodules per subject")->check(CLI::NonNegativeNumber);
  phantom->add_option("--dims", ph_dims, "Voxels x,y,z")->expected(3)->delimiter(',');
  phantom->add_option("--spacing", ph_spacing, "Voxel size in mm x,y,z")->expected(3)->delimiter(',');
  phantom->add_option("--noise", ph_noise, "Noise standard deviation in HU")->check(CLI::NonNegativeNumber);
  phantom->add_option("--h5", ph_h5, "Also prepare the written tree into this HDF5 file (LUNA16 path)");
  phantom->add_option("--size", ph_conv.size, "With --h5: output slice size")->check(CLI::Range(8, 4096));
  phantom->add_option("--split-seed", ph_conv.seed, "With --h5: seed of the subject split");
  phantom->add_flag("--no-progress", ph_conv.no_progress, "No progress bar");
  add_label_map_flag(phantom, ph_conv);

  // translation (phantom CT + MR rendering + tissue map)
  std::string tr_out, tr_stem = "lung_translate";
  int tr_subjects = 12;
  uint64_t tr_seed = 0, tr_split_seed = 0;
  int64_t tr_size = 128;
  bool tr_no_progress = false;
  CLI::App* translation = app.add_subcommand(
      "translation", "Write the phantom as paired CT / MR-like (T1 and T2) / tissue-map prepared files (modality translation)");
  translation->add_option("--out,-o", tr_out, "Output directory")->required();
  translation->add_option("--stem", tr_stem, "File name stem: <stem>_ct.h5, <stem>_mr.h5 (T1), <stem>_mr_t2.h5, <stem>_tissue.h5")
      ->capture_default_str();
  translation->add_option("--subjects", tr_subjects, "Number of subjects")->check(CLI::Range(3, 100000))->capture_default_str();
  translation->add_option("--seed", tr_seed, "Phantom seed")->capture_default_str();
  translation->add_option("--split-seed", tr_split_seed, "Seed of the subject split")->capture_default_str();
  translation->add_option("--size", tr_size, "Output slice size (a multiple of 4)")->check(CLI::Range(8, 4096))->capture_default_str();
  translation->add_flag("--no-progress", tr_no_progress, "No progress bar");
  std::string tr_volumes;
  translation->add_option("--volumes", tr_volumes,
                          "Also write the test subjects' volumes as NIfTI here (<uid>_mr/_mr_t2/_ct/_tissue.nii.gz), "
                          "inputs and references for the translate tool");

  // luna16
  std::string lu_scans, lu_masks;
  int lu_max = 0;
  ConvertArgs lu;
  lu.labels = {3, 4};
  CLI::App* luna = app.add_subcommand("luna16", "Prepare a LUNA16-style directory (scans + seg-lungs masks)");
  luna->add_option("--scans", lu_scans, "Directory with <uid>.mhd scans (searched recursively)")->required();
  luna->add_option("--masks", lu_masks, "Directory with <uid>.mhd lung masks (labels 3/4)")->required();
  luna->add_option("--max-subjects", lu_max, "Use only the first N scans (by name)")->check(CLI::NonNegativeNumber);
  add_convert_options(luna, lu, false);
  add_label_map_flag(luna, lu);  // (image, mask) files only: the pair subcommands have no masks to label

  // nifti (any readable pair, really)
  std::vector<std::string> ni_images, ni_masks;
  ConvertArgs ni;
  CLI::App* nifti = app.add_subcommand("nifti", "Prepare image/mask volume pairs (NIfTI or any readable format)");
  nifti->add_option("--image", ni_images, "Image volume (repeat for several subjects)")->required();
  nifti->add_option("--mask", ni_masks, "Mask volume, one per --image")->required();
  int64_t ni_volume = 0;
  nifti->add_option("--volume", ni_volume,
                    "4-D NIfTI images: which volume (contrast, 0-based) to prepare. Prepare each contrast into its "
                    "own file with the same split options; train_translate takes the others as --source-channel, train_seg as --image-channel")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  add_convert_options(nifti, ni, true);
  add_label_map_flag(nifti, ni);

  // montage
  std::string mo_file, mo_out, mo_split = "train";
  int mo_count = 16, mo_cols = 0, mo_tile = 0;
  CLI::App* montage = app.add_subcommand("montage", "PNG grid of prepared slices with the mask overlaid");
  montage->add_option("file", mo_file, "Prepared .h5")->required();
  montage->add_option("--out,-o", mo_out, "Output PNG")->required();
  montage->add_option("--split", mo_split, "train, val or test")->check(CLI::IsMember({"train", "val", "test"}));
  montage->add_option("--count", mo_count, "Number of slices")->check(CLI::Range(1, 1024));
  montage->add_option("--cols", mo_cols, "Columns (default: square grid)")->check(CLI::NonNegativeNumber);
  montage->add_option("--tile", mo_tile, "Tile size in pixels (default: slice size)")->check(CLI::Range(0, 4096));

  // lowdose-ct: the lung phantom (default) or the user's CT volumes in HU.
  std::vector<std::string> ld_images;
  int ld_subjects = 8;
  uint64_t ld_phantom_seed = 0;
  // The phantom's own additive noise is off by default here: the simulated scans add the
  // physical (quantum) noise, and noise drawn into the anatomy would be part of the full-dose
  // target that no denoiser can predict from the low-dose scan.
  double ld_phantom_noise = 0.0;
  std::string ld_window = "hann";
  rd::LowDoseOptions ld_opt;
  ConvertArgs ld;
  ld.crop = "body";
  CLI::App* lowdose = app.add_subcommand("lowdose-ct", "Low-dose CT pairs: projection, Poisson noise at full and "
                                                       "reduced dose, FBP (HU range [-1024, 3072] -> [-1, 1])");
  lowdose->add_option("--image", ld_images, "CT volumes in HU (repeat; default: the lung phantom)");
  lowdose->add_option("--phantom-subjects", ld_subjects, "Without --image: phantom subjects")->check(CLI::Range(1, 10000));
  lowdose->add_option("--phantom-seed", ld_phantom_seed, "Without --image: phantom seed");
  lowdose->add_option("--phantom-noise", ld_phantom_noise,
                      "Without --image: the phantom's additive Gaussian noise in HU before the scans are simulated")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  lowdose->add_option("--photons", ld_opt.photons, "I0: photons per ray at full dose")->check(CLI::PositiveNumber)->capture_default_str();
  lowdose->add_option("--dose-fraction", ld_opt.dose_fraction, "Reduced dose as a fraction of the full dose")
      ->check(CLI::Range(1e-6, 1.0))->capture_default_str();
  lowdose->add_option("--fbp-window", ld_window, "Ramp window: ram-lak, shepp-logan, hann or hamming")
      ->check(CLI::IsMember({"ram-lak", "shepp-logan", "hann", "hamming"}))->capture_default_str();
  lowdose->add_option("--views", ld_opt.views, "Projection angles over 180 degrees (0: ceil(pi size / 2))")->check(CLI::NonNegativeNumber);
  lowdose->add_option("--bins", ld_opt.bins, "Detector bins (0: ceil(size sqrt 2) + 2)")->check(CLI::NonNegativeNumber);
  add_convert_options(lowdose, ld, false);

  // superres: one or more MRI volumes (Colin27 by default in scripts).
  std::vector<std::string> sr_images, sr_masks;
  std::string sr_degradation = "kspace";
  int sr_factor = 4;
  double sr_sigma = 0;
  ConvertArgs sr;
  sr.modality = "mri";
  sr.crop = "body";
  CLI::App* superres = app.add_subcommand("superres", "Super-resolution pairs: k-space truncation or blur + "
                                                      "downsampling, upsampled back by bicubic interpolation");
  superres->add_option("--image", sr_images, "High-resolution volumes (repeat)")->required();
  superres->add_option("--mask", sr_masks, "Region of the metrics, one per --image (default: body above --body-threshold)");
  superres->add_option("--degradation", sr_degradation, "kspace (truncation) or blur (Gaussian + downsampling)")
      ->check(CLI::IsMember({"kspace", "blur"}))->capture_default_str();
  superres->add_option("--factor", sr_factor, "Downsampling factor per in-plane axis")->check(CLI::Range(2, 16))->capture_default_str();
  superres->add_option("--sigma", sr_sigma, "blur: Gaussian sigma in fine pixels (0: factor / 2)")->check(CLI::NonNegativeNumber);
  add_convert_options(superres, sr, true);

  // pairs: the user's own (degraded, reference) volumes on one grid.
  std::vector<std::string> pa_inputs, pa_refs, pa_masks;
  ConvertArgs pa;
  pa.crop = "body";
  CLI::App* pairs = app.add_subcommand("pairs", "The user's own pairs: a degraded volume and its reference on the same grid");
  pairs->add_option("--input", pa_inputs, "Degraded volume (repeat for several subjects)")->required();
  pairs->add_option("--reference", pa_refs, "Reference volume, one per --input, on the same grid")->required();
  pairs->add_option("--mask", pa_masks, "Region of the metrics, one per --reference (default: body above --body-threshold)");
  add_convert_options(pairs, pa, true);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  try {
    if (info->parsed()) {
      if (rd::is_hdf5_file(info_file)) {
        std::cout << rd::describe_slices_file(info_file, info_json) << "\n";
      } else if (rd::detect_volume_format(info_file) == rd::VolumeFormat::Nifti) {
        std::cout << rd::describe_nifti_file(info_file, info_volume, info_json) << "\n";
      } else {
        RG_CHECK(info_volume == 0, "--volume ", info_volume, ": ", info_file,
                 " is not a NIfTI file (only NIfTI holds several volumes)");
        std::cout << rd::describe_volume(rd::read_volume(info_file), info_json) << "\n";
      }
      return 0;
    }
    if (phantom->parsed()) {
      rd::PhantomOptions po;
      po.dims = {ph_dims[0], ph_dims[1], ph_dims[2]};
      po.spacing = {ph_spacing[0], ph_spacing[1], ph_spacing[2]};
      po.noise_hu = ph_noise;
      po.lesions = ph_lesions;
      po.nodules = ph_nodules;
      RG_CHECK(!(ph_anomaly && ph_lesion_masks), "phantom: --lesion-masks and --anomaly make two different files; give one");
      if (ph_anomaly) {
        RG_CHECK(!ph_h5.empty(), "phantom --anomaly: --h5 FILE.h5 is required (the only output)");
        RG_CHECK(ph_lesions > 0, "phantom --anomaly: --lesions must be > 0 (the val/test subjects need lesions)");
        RG_CHECK(ph_subjects >= 3, "phantom --anomaly: --subjects must be >= 3 (train, val and test subjects), got ",
                 ph_subjects);
        rd::PrepareOptions o = to_options(ph_conv, "mask");
        o.labels = {3, 4};
        o.source = "lung phantom for anomaly detection (seed " + std::to_string(ph_seed) + ", " +
                   std::to_string(ph_lesions) + " lesions per val/test subject, none in train)";
        o.source_kind = "phantom-anomaly";
        return run_prepare(rd::phantom_anomaly_subjects(ph_subjects, ph_seed, po, o.fractions, o.seed), o, ph_h5);
      }
      if (ph_lesion_masks) {
        RG_CHECK(!ph_h5.empty(), "phantom --lesion-masks: --h5 FILE.h5 is required (the only output)");
        RG_CHECK(ph_lesions > 0, "phantom --lesion-masks: --lesions must be > 0");
        rd::PrepareOptions o = to_options(ph_conv, "mask");
        o.labels = {3, 4};
        o.source = "lung phantom with lesion masks (seed " + std::to_string(ph_seed) + ", " +
                   std::to_string(ph_lesions) + " lesions per subject)";
        o.source_kind = "phantom-lesions";
        return run_prepare(rd::phantom_lesion_subjects(ph_subjects, ph_seed, po), o, ph_h5);
      }
      RG_CHECK(!ph_out.empty(), "phantom: --out DIR is required (unless --anomaly or --lesion-masks)");
      rd::ProgressBar bar("phantom", ph_subjects, "subjects", !ph_conv.no_progress);
      const auto files = rd::write_phantom_luna16(ph_out, ph_subjects, ph_seed, po,
                                                  [&](int done, int) { bar.update(done); });
      bar.finish();
      int64_t nodules = 0, lesions = 0;
      for (const auto& f : files) {
        nodules += static_cast<int64_t>(f.nodules.size());
        lesions += static_cast<int64_t>(f.lesions.size());
      }
      std::cout << "wrote " << files.size() << " phantom subject(s) to " << ph_out << " (LUNA16 layout: subset0/, "
                << "seg-lungs-LUNA16/), " << po.dims[0] << "x" << po.dims[1] << "x" << po.dims[2] << " voxels of "
                << po.spacing[0] << "x" << po.spacing[1] << "x" << po.spacing[2] << " mm, " << nodules
                << " nodule(s) in annotations.csv";
      if (lesions) std::cout << ", " << lesions << " lesion(s) in lesions.csv";
      std::cout << "\n";
      if (!ph_h5.empty()) {
        rd::PrepareOptions o = to_options(ph_conv, "mask");
        o.source = ph_out + " (phantom seed " + std::to_string(ph_seed) + ")";
        o.source_kind = "phantom-luna16";
        const std::string root = ph_out;
        return run_prepare(rd::luna16_subjects(root + "/subset0", root + "/seg-lungs-LUNA16"), o, ph_h5);
      }
      return 0;
    }
    if (translation->parsed()) {
      RG_CHECK(tr_size % 4 == 0, "--size ", tr_size, ": translation slices must be a multiple of 4 (ResNet generator)");
      const rd::TranslationFiles f = rd::prepare_phantom_translation(tr_out, tr_stem, tr_subjects, tr_seed, tr_size,
                                                                     tr_split_seed, {}, {}, !tr_no_progress);
      std::cout << "wrote " << f.ct << ", " << f.mr << ", " << f.mr_t2 << ", " << f.tissue << " (" << tr_subjects
                << " phantom subjects, " << tr_size << "x" << tr_size << ", paired slices)\n";
      if (!tr_volumes.empty()) {
        fs::create_directories(tr_volumes);
        const auto split = rd::assign_subject_splits(tr_subjects, {0.7, 0.15, 0.15}, tr_split_seed);
        const rd::MrOptions t1{}, t2{.contrast = rd::MrContrast::T2};
        const std::tuple<rd::PhantomView, rd::MrOptions, const char*> views[] = {
            {rd::PhantomView::MR, t1, "_mr"},
            {rd::PhantomView::MR, t2, "_mr_t2"},
            {rd::PhantomView::CT, t1, "_ct"},
            {rd::PhantomView::Tissue, t1, "_tissue"}};
        for (const auto& [view, mr, suffix] : views) {
          const auto subjects = rd::phantom_view_subjects(view, tr_subjects, tr_seed, {.lesions = 2}, mr);
          for (int i = 0; i < tr_subjects; ++i) {
            if (split[static_cast<size_t>(i)] != 2) continue;
            const std::string path = (fs::path(tr_volumes) / (subjects[static_cast<size_t>(i)].name + suffix + ".nii.gz")).string();
            rd::write_nifti(path, subjects[static_cast<size_t>(i)].load().first);
            std::cout << "wrote " << path << " (test subject)\n";
          }
        }
      }
      return 0;
    }
    if (luna->parsed()) {
      rd::PrepareOptions o = to_options(lu, "mask");
      o.modality = rd::Modality::CT;
      o.source = lu_scans + " + " + lu_masks;
      o.source_kind = "luna16";
      return run_prepare(rd::luna16_subjects(lu_scans, lu_masks, lu_max), o, lu.out);
    }
    if (nifti->parsed()) {
      rd::PrepareOptions o = to_options(ni, "body");
      std::string src;
      for (size_t i = 0; i < ni_images.size(); ++i)
        src += (i ? "; " : "") + ni_images[i] + " + " + (i < ni_masks.size() ? ni_masks[i] : "?");
      o.source = src + (ni_volume > 0 ? " (image volume " + std::to_string(ni_volume) + ")" : "");
      o.source_kind = "volume-pairs";
      return run_prepare(rd::volume_pair_subjects(ni_images, ni_masks, ni_volume), o, ni.out);
    }
    if (lowdose->parsed()) {
      rd::PrepareOptions o = to_options(ld, "body");
      o.modality = rd::Modality::CT;
      o.window = {rd::kReconHuLow, rd::kReconHuHigh};
      ld_opt.window = rd::parse_ramp_window(ld_window);
      o.make_pair = rd::low_dose_ct_pairs(ld_opt);
      o.pairs = "low-dose-ct";
      o.pair_attributes = rd::low_dose_ct_attributes(ld_opt);
      const double body = std::isnan(o.body_threshold) ? -500.0 : o.body_threshold;
      std::vector<rd::SubjectSource> subjects;
      if (ld_images.empty()) {
        rd::PhantomOptions po;
        po.noise_hu = ld_phantom_noise;
        subjects = rd::phantom_subjects(ld_subjects, ld_phantom_seed, po);
        char noise[32];
        std::snprintf(noise, sizeof noise, "%g", ld_phantom_noise);
        o.source = "lung phantom, " + std::to_string(ld_subjects) + " subjects, seed " + std::to_string(ld_phantom_seed) +
                   ", phantom noise " + noise + " HU";
        o.source_kind = "phantom";
      } else {
        std::vector<std::string> none(ld_images.size(), ld_images[0]);
        subjects = rd::volume_pair_subjects(ld_images, none);
        o.source_kind = "volumes";
        for (size_t i = 0; i < ld_images.size(); ++i) o.source += (i ? "; " : "") + ld_images[i];
      }
      return run_prepare(rd::with_body_masks(std::move(subjects), body), o, ld.out);
    }
    if (superres->parsed()) {
      rd::PrepareOptions o = to_options(sr, "body");
      const rd::SrDegradation deg = rd::parse_sr_degradation(sr_degradation);
      RG_CHECK(o.size % sr_factor == 0, "--size ", o.size, " is not divisible by --factor ", sr_factor);
      o.make_pair = rd::superres_pairs(deg, sr_factor, sr_sigma);
      o.pairs = "superres";
      o.pair_attributes = rd::superres_attributes(deg, sr_factor, sr_sigma);
      for (size_t i = 0; i < sr_images.size(); ++i) o.source += (i ? "; " : "") + sr_images[i];
      o.source_kind = "volumes";
      std::vector<rd::SubjectSource> subjects;
      if (!sr_masks.empty()) {
        subjects = rd::volume_pair_subjects(sr_images, sr_masks);
      } else {
        const double body = std::isnan(o.body_threshold) ? (o.modality == rd::Modality::CT ? -500.0 : 0.0) : o.body_threshold;
        subjects = rd::with_body_masks(rd::volume_pair_subjects(sr_images, sr_images), body);
      }
      return run_prepare(subjects, o, sr.out);
    }
    if (pairs->parsed()) {
      rd::PrepareOptions o = to_options(pa, "body");
      if (o.modality == rd::Modality::CT) o.window = {rd::kReconHuLow, rd::kReconHuHigh};
      o.pairs = "volume-pairs";
      o.source_kind = "volume-pairs";
      for (size_t i = 0; i < pa_refs.size(); ++i)
        o.source += (i ? "; " : "") + (i < pa_inputs.size() ? pa_inputs[i] : std::string("?")) + " -> " + pa_refs[i];
      const double body = std::isnan(o.body_threshold) ? (o.modality == rd::Modality::CT ? -500.0 : 0.0) : o.body_threshold;
      return run_prepare(rd::paired_volume_subjects(pa_inputs, pa_refs, pa_masks, body), o, pa.out);
    }
    if (montage->parsed()) return run_montage(mo_file, mo_out, mo_split, mo_count, mo_cols, mo_tile);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::cerr << "prepare_data: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
