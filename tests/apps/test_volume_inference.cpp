// Whole-volume inference (apps/seg/volume_inference): the slicing matches prepare_slices
// exactly, mapping predictions back lands on the original grid, largest-component filtering,
// a tiny trained checkpoint end to end, and errors that name the file.
#include <gtest/gtest.h>


#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "train/seg_metrics.h"
#include "tests/apps/tiny_phantom.h"
#include "apps/seg/seg_run.h"
#include "apps/seg/volume_inference.h"
#include "data/nifti.h"
#include "data/phantom.h"
#include "data/prepare.h"
#include "data/slice_dataset.h"
#include "engine/checkpoint.h"
#include "engine/dist/communicator.h"
#include "engine/error.h"
#include "models/unet.h"
#include "tests/process_temp_dir.h"

namespace rg::app {
namespace {

namespace fs = std::filesystem;
using train::dice;

fs::path temp_dir() {
  static const fs::path dir = [] {
    return test::process_temp_dir("volume_inference");
  }();
  return dir;
}

// A synthetic CT-like volume in an LPS-style voxel order (i right->left, j anterior->posterior,
// k inferior->superior, so the RAS affine flips i and j) with anisotropic voxels: air -1000,
// an ellipsoidal body at 0 HU, and an off-centre ellipsoidal "organ" at +1000 HU whose voxels
// are the known mask.
struct Synthetic {
  data::Volume image, mask;
};
Synthetic make_synthetic(std::array<int64_t, 3> dims, std::array<double, 3> spacing, bool body = true) {
  Synthetic s;
  s.image.dims = s.mask.dims = dims;
  s.image.spacing = s.mask.spacing = spacing;
  auto& a = s.image.affine;
  a = {{{-spacing[0], 0, 0, 90}, {0, -spacing[1], 0, 110}, {0, 0, spacing[2], -40}, {0, 0, 0, 1}}};
  s.mask.affine = a;
  s.image.source = "synthetic.nii.gz";
  s.mask.source = "synthetic_mask.nii.gz";
  s.image.voxels.assign(static_cast<size_t>(s.image.voxel_count()), -1000.0f);
  s.mask.voxels.assign(s.image.voxels.size(), 0.0f);
  const double ci = 0.5 * dims[0], cj = 0.5 * dims[1], ck = 0.5 * dims[2];
  for (int64_t k = 0; k < dims[2]; ++k)
    for (int64_t j = 0; j < dims[1]; ++j)
      for (int64_t i = 0; i < dims[0]; ++i) {
        const double bi = (i + 0.5 - ci) / (0.42 * dims[0]), bj = (j + 0.5 - cj) / (0.36 * dims[1]),
                     bk = (k + 0.5 - ck) / (0.45 * dims[2]);
        const double oi = (i + 0.5 - 0.6 * dims[0]) / (0.2 * dims[0]), oj = (j + 0.5 - 0.45 * dims[1]) / (0.18 * dims[1]),
                     ok = (k + 0.5 - 0.55 * dims[2]) / (0.3 * dims[2]);
        const bool in_body = !body || bi * bi + bj * bj + bk * bk <= 1.0;
        const bool in_organ = oi * oi + oj * oj + ok * ok <= 1.0;
        if (in_body) s.image.at(i, j, k) = 0.0f;
        if (in_organ) {
          s.image.at(i, j, k) = 1000.0f;
          s.mask.at(i, j, k) = 1.0f;
        }
      }
  return s;
}

SlicePreprocessing ct_window(data::CropMode crop, int64_t size, double margin = 4.0) {
  SlicePreprocessing p;
  p.modality = data::Modality::CT;
  p.window = {-1000.0, 1000.0};  // air -1, body 0, organ +1
  p.crop = crop;
  p.margin_mm = margin;
  p.size = size;
  return p;
}

// The identity "network": the organ is the only part of the normalized slice above 0, so
// max(x, 0) is its mask (1 inside, 0 elsewhere) with bilinear edges after resizing.
SliceModel identity_model(int64_t size) {
  return [size](const float* x, int64_t n, float* probs) {
    for (int64_t k = 0; k < n * size * size; ++k) probs[k] = std::max(x[k], 0.0f);
  };
}

std::vector<uint8_t> as_binary(const data::Volume& v) {
  std::vector<uint8_t> b(v.voxels.size());
  for (size_t i = 0; i < b.size(); ++i) b[i] = v.voxels[i] > 0.5f;
  return b;
}

TEST(VolumeInference, RoundTripIsExactWhenTheSliceSizeEqualsTheCrop) {
  // 32 x 32 in-plane, equal in-plane spacing, no crop: size 32 means no resampling at all.
  const Synthetic s = make_synthetic({32, 32, 10}, {1.5, 1.5, 3.0});
  const InferenceResult r = infer_volume(s.image, ct_window(data::CropMode::None, 32), identity_model(32),
                                         {.batch_size = 3, .progress = false});
  EXPECT_EQ(r.geometry.step_c, 1.0);
  EXPECT_EQ(r.geometry.x0, 0.0);
  EXPECT_EQ(r.slices_run, 10);
  EXPECT_EQ(r.mask, as_binary(s.mask));
  // Probabilities are the identity's values on the original grid: 1 in the organ, 0 elsewhere.
  for (size_t i = 0; i < r.probabilities.size(); ++i) ASSERT_EQ(r.probabilities[i], s.mask.voxels[i]) << i;
}

TEST(VolumeInference, RoundTripThroughCropAndResizeMatchesTheMask) {
  // Anisotropic, non-square: the body crop is square in mm, resized to 40 x 40, then mapped back.
  const Synthetic s = make_synthetic({70, 56, 14}, {0.9, 1.3, 2.5});
  const SlicePreprocessing p = ct_window(data::CropMode::Body, 40);
  const InferenceResult r = infer_volume(s.image, p, identity_model(40), {.batch_size = 4, .progress = false});
  EXPECT_NE(r.geometry.step_c, 1.0);
  EXPECT_EQ(r.geometry.crop_used, "body");
  const std::vector<uint8_t> truth = as_binary(s.mask);
  const double d = dice(r.mask.data(), truth.data(), truth.size());
  EXPECT_GT(d, 0.98);
  // Upsampling too (crop smaller than the slice size).
  const InferenceResult up = infer_volume(s.image, ct_window(data::CropMode::Body, 96), identity_model(96),
                                          {.progress = false});
  EXPECT_GT(dice(up.mask.data(), truth.data(), truth.size()), 0.98);
  // Slices outside the crop's range get probability 0.
  const Synthetic t = make_synthetic({40, 40, 30}, {1.0, 1.0, 1.0});
  const InferenceResult narrow = infer_volume(t.image, ct_window(data::CropMode::Body, 32, 0.0),
                                              identity_model(32), {.progress = false});
  EXPECT_GT(narrow.geometry.slice_begin, 0);
  for (int64_t j = 0; j < 40; ++j)
    for (int64_t i = 0; i < 40; ++i) EXPECT_EQ(narrow.probabilities[static_cast<size_t>(i + 40 * j)], 0.0f);
}

// prepare_slices of the synthetic volume: CT `window`, `crop` with a 3 mm margin,
// 24x24 slices, all in the train split; returns the file's path (temp_dir()/<prefix><crop>.h5).
std::string prepare_synthetic(const Synthetic& s, data::CropMode crop, const std::string& prefix,
                              std::array<double, 2> window = {-1000.0, 1000.0}) {
  data::PrepareOptions po;
  po.modality = data::Modality::CT;
  po.window = window;
  po.crop = crop;
  po.margin_mm = 3.0;
  po.size = 24;
  po.fractions = {1.0, 0.0, 0.0};
  po.compression = 0;
  po.progress = false;
  data::SubjectSource src;
  src.name = "synthetic";
  src.load = [&s] { return std::make_pair(s.image, s.mask); };
  const std::string path = (temp_dir() / (prefix + data::crop_name(crop) + ".h5")).string();
  data::prepare_slices({src}, po, path);
  return path;
}

TEST(VolumeInference, SlicesAreExactlyThoseOfPrepareSlices) {
  const Synthetic s = make_synthetic({50, 44, 12}, {1.1, 0.8, 2.0});
  for (data::CropMode crop : {data::CropMode::Body, data::CropMode::Mask, data::CropMode::None}) {
    const std::string path = prepare_synthetic(s, crop, "prep_");

    const SlicePreprocessing pre = preprocessing_from_prepared_file(path);
    EXPECT_EQ(pre.crop, crop);
    EXPECT_EQ(pre.size, 24);
    EXPECT_EQ(pre.window[1], 1000.0);
    const std::vector<uint8_t> bm = as_binary(s.mask);
    const SliceGeometry g = plan_slices(s.image, pre, crop == data::CropMode::Mask ? &bm : nullptr);
    data::SliceDataset ds(path, "train");
    ASSERT_EQ(ds.size(), g.num_slices()) << data::crop_name(crop);
    std::vector<float> theirs(24 * 24), ours(24 * 24);
    for (int64_t i = 0; i < ds.size(); ++i) {
      ds.read(i, theirs.data(), nullptr);
      ASSERT_GE(ds.slice(i), g.slice_begin);
      extract_slice(s.image, g, ds.slice(i), ours.data());
      ASSERT_EQ(ours, theirs) << data::crop_name(crop) << " slice " << ds.slice(i);
    }
  }
}

// A slice model that keeps its input (one stack of `channels` 24x24 planes per slice, in order)
// in `seen` and predicts 0.
SliceModel recording_model(std::vector<std::vector<float>>& seen, int64_t channels) {
  return [&seen, channels](const float* slices, int64_t n, float* probs) {
    const int64_t hw = 24 * 24;
    for (int64_t i = 0; i < n; ++i) seen.emplace_back(slices + i * hw * channels, slices + (i + 1) * hw * channels);
    std::fill(probs, probs + n * hw, 0.0f);
  };
}

// 2.5-D: the neighbours infer_volume gives a slice are the ones the training file gives it
// (SliceDataset::read_stack), also at the ends of the slice range, where the end slice repeats.
TEST(VolumeInference, ContextSlicesAreThoseOfTheTrainingFile) {
  const Synthetic s = make_synthetic({50, 44, 12}, {1.1, 0.8, 2.0});
  for (data::CropMode crop : {data::CropMode::Body, data::CropMode::None}) {
    const std::string path = prepare_synthetic(s, crop, "context_");
    data::SliceDataset ds(path, "train");

    constexpr int kContext = 2;
    constexpr int64_t kChannels = 2 * kContext + 1, kHw = 24 * 24;
    std::vector<std::vector<float>> seen;
    const SliceModel recorder = recording_model(seen, kChannels);
    InferenceOptions io;
    io.progress = false;
    io.batch_size = 5;
    io.context_slices = kContext;
    const InferenceResult r = infer_volume(s.image, preprocessing_from_prepared_file(path), recorder, io);
    ASSERT_EQ(static_cast<int64_t>(seen.size()), ds.size()) << data::crop_name(crop);
    std::vector<float> theirs(static_cast<size_t>(kHw * kChannels), std::nanf(""));
    for (int64_t i = 0; i < ds.size(); ++i) {
      const int64_t k = ds.slice(i) - r.geometry.slice_begin;
      ASSERT_TRUE(k >= 0 && k < static_cast<int64_t>(seen.size()));
      ds.read_stack(i, kContext, theirs.data(), nullptr);
      ASSERT_EQ(seen[static_cast<size_t>(k)], theirs) << data::crop_name(crop) << " slice " << ds.slice(i);
    }
  }
}

// Multi-contrast input: each contrast is sliced with the image's crop and normalized by its own
// training file, so the model sees what data::read_contrast_stack gives from the training files.
TEST(VolumeInference, ContrastChannelsAreThoseOfTheTrainingFiles) {
  const Synthetic s = make_synthetic({50, 44, 12}, {1.1, 0.8, 2.0});
  Synthetic other = s;  // a second "contrast": inverted intensities, prepared with another window
  for (float& v : other.image.voxels) v = 300.0f - 0.5f * v;
  const std::string a = prepare_synthetic(s, data::CropMode::None, "contrast_a_");
  const std::string b = prepare_synthetic(other, data::CropMode::None, "contrast_b_", {-200.0, 900.0});
  data::SliceDataset da(a, "train"), db(b, "train");
  data::check_same_slice_grid(da, db);
  constexpr int kContext = 1;
  constexpr int64_t kChannels = 2 * (2 * kContext + 1), kHw = 24 * 24;
  std::vector<std::vector<float>> seen;
  const SliceModel recorder = recording_model(seen, kChannels);
  InferenceOptions io;
  io.progress = false;
  io.batch_size = 4;
  io.context_slices = kContext;
  const InferenceResult r = infer_volume(s.image, preprocessing_from_prepared_file(a), recorder, io,
                                         {ContrastInput{&other.image, preprocessing_from_prepared_file(b)}});
  ASSERT_EQ(static_cast<int64_t>(seen.size()), da.size());
  std::vector<float> theirs(static_cast<size_t>(kHw * kChannels), std::nanf(""));
  for (int64_t i = 0; i < da.size(); ++i) {
    data::read_contrast_stack({&da, &db}, i, kContext, theirs.data());
    const int64_t k = da.slice(i) - r.geometry.slice_begin;
    ASSERT_TRUE(k >= 0 && k < static_cast<int64_t>(seen.size()));
    ASSERT_EQ(seen[static_cast<size_t>(k)], theirs) << "slice " << da.slice(i);
  }
  // A contrast on another grid is refused.
  Synthetic small = make_synthetic({40, 44, 12}, {1.1, 0.8, 2.0});
  EXPECT_THROW(infer_volume(s.image, preprocessing_from_prepared_file(a), recorder, io,
                            {ContrastInput{&small.image, preprocessing_from_prepared_file(b)}}),
               Error);
}

TEST(VolumeInference, LargestComponentsKeepsTheBiggestSixConnectedBlobs) {
  const std::array<int64_t, 3> dims{10, 9, 8};
  std::vector<uint8_t> m(10 * 9 * 8, 0);
  auto set = [&](int64_t i, int64_t j, int64_t k) { m[static_cast<size_t>(i + 10 * (j + 9 * k))] = 1; };
  for (int64_t k = 0; k < 3; ++k)  // 27 voxels
    for (int64_t j = 0; j < 3; ++j)
      for (int64_t i = 0; i < 3; ++i) set(i, j, k);
  for (int64_t k = 5; k < 7; ++k)  // 8 voxels
    for (int64_t j = 5; j < 7; ++j)
      for (int64_t i = 6; i < 8; ++i) set(i, j, k);
  set(3, 3, 3);  // touches the cube only diagonally: its own component (1 voxel)
  set(9, 8, 7);  // corner voxel: 1 voxel
  std::vector<uint8_t> one = m, two = m, all = m;
  EXPECT_EQ(keep_largest_components(one, dims, 1), 4);
  EXPECT_EQ(std::count(one.begin(), one.end(), 1), 27);
  EXPECT_EQ(one[0], 1);
  EXPECT_EQ(one[3 + 10 * (3 + 9 * 3)], 0);
  EXPECT_EQ(keep_largest_components(two, dims, 2), 4);
  EXPECT_EQ(std::count(two.begin(), two.end(), 1), 35);
  EXPECT_EQ(keep_largest_components(all, dims, 10), 4);
  EXPECT_EQ(all, m);
  std::vector<uint8_t> empty(m.size(), 0);
  EXPECT_EQ(keep_largest_components(empty, dims, 1), 0);
  std::vector<uint8_t> wrong(5, 1);
  EXPECT_THROW(keep_largest_components(wrong, dims, 1), Error);
}

// A model trained on mask crops may paint the air around the body, which only the first (body
// crop) pass shows it. Here a "model" paints the organ and all air: the mask crop must still end
// on the organ's box (air outside the body does not count towards it), and the pass after it
// finds the same box again.
TEST(VolumeInference, MaskCropIgnoresWhatTheFirstPassPaintsOutsideTheBody) {
  const Synthetic s = make_synthetic({48, 40, 12}, {1.0, 1.2, 2.0});
  const int64_t size = 32;
  const SliceModel organ_and_air = [](const float* x, int64_t n, float* probs) {
    for (int64_t k = 0; k < n * size * size; ++k) probs[k] = (x[k] > 0.5f || x[k] < -0.5f) ? 1.0f : 0.0f;
  };
  const SlicePreprocessing p = ct_window(data::CropMode::Mask, size);
  const std::vector<uint8_t> truth = as_binary(s.mask);
  const SliceGeometry want = plan_slices(s.image, p, &truth);
  // The first pass alone (a body crop) paints air in the window's corners: its mask's box is
  // wider than the organ's.
  const InferenceResult body_only = infer_volume(s.image, ct_window(data::CropMode::Body, size), organ_and_air,
                                                 {.progress = false});
  const SliceGeometry from_air = plan_slices(s.image, p, &body_only.mask);
  EXPECT_GT(from_air.step_c, want.step_c * 1.2);

  const InferenceResult r = infer_volume(s.image, p, organ_and_air, {.progress = false});
  EXPECT_EQ(r.geometry.crop_used, "mask (predicted)");
  EXPECT_LE(r.passes, 3);
  EXPECT_TRUE(r.crop_converged);
  // The organ's box, to a voxel (the round trip of its edge through the resized slices).
  EXPECT_NEAR(r.geometry.x0, want.x0, 1.0);
  EXPECT_NEAR(r.geometry.y0, want.y0, 1.0);
  EXPECT_NEAR(r.geometry.step_c * size, want.step_c * size, 2.0);
  EXPECT_EQ(r.geometry.slice_begin, want.slice_begin);
  EXPECT_EQ(r.geometry.slice_end, want.slice_end);
}

// One epoch of a 4-wide U-Net on `data`, in temp_dir()/runs/<name>.
SegRunConfig tiny_config(const std::string& data, const std::string& name) {
  SegRunConfig c;
  c.data = data;
  c.name = name;
  c.out_dir = (temp_dir() / "runs").string();
  c.epochs = 1;
  c.epochs_decay = 0;
  test_data::set_tiny_networks(c);
  c.seed = 3;
  return c;
}

// A tiny trained checkpoint: 4 phantom subjects at 32x32 (2 train), one epoch of a 4-wide U-Net.
struct TinyRun {
  std::string checkpoint, data;
  data::PhantomOptions po;
};
const TinyRun& tiny_run() {
  static const TinyRun run = [] {
    TinyRun t;
    t.po = test_data::tiny_phantom_options();
    t.data = test_data::write_tiny_phantom((temp_dir() / "tiny.h5").string());
    if (run_seg_training(tiny_config(t.data, "tiny")) != 0) throw Error("tiny training run failed");
    t.checkpoint = (temp_dir() / "runs" / "tiny" / "checkpoints" / "best.safetensors").string();
    return t;
  }();
  return run;
}

TEST(VolumeInference, EndToEndOnATinyTrainedCheckpoint) {
  const TinyRun& run = tiny_run();
  const data::Phantom ph = data::make_lung_phantom(data::phantom_subject_seed(test_data::kTinyPhantomSeed, 0), run.po);
  const std::string input = (temp_dir() / "phantom.nii.gz").string();
  const std::string gt = (temp_dir() / "phantom_lungs.nii.gz").string();
  data::write_nifti(input, ph.ct, data::NiftiOut::Int16);
  data::write_nifti(gt, ph.lungs, data::NiftiOut::UInt8);

  InferSegOptions o;
  o.checkpoint = run.checkpoint;
  o.input = input;
  o.ground_truth = gt;  // labels 3,4 come from the training file's mask rule
  o.output = (temp_dir() / "out" / "mask.nii.gz").string();
  o.probabilities = (temp_dir() / "out" / "prob.nii").string();
  o.report = (temp_dir() / "out" / "report.json").string();
  o.inference.progress = false;
  o.inference.batch_size = 5;
  o.inference.largest_components = 2;
  fs::create_directories(temp_dir() / "out");
  const nlohmann::json report = run_infer_seg(o);

  const data::Volume in = data::read_nifti(input);
  const data::Volume mask = data::read_nifti(o.output);
  const data::Volume prob = data::read_nifti(o.probabilities);
  EXPECT_EQ(mask.dims, in.dims);
  EXPECT_EQ(prob.dims, in.dims);
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) EXPECT_NEAR(mask.affine[r][c], in.affine[r][c], 1e-4) << r << "," << c;
  EXPECT_EQ(mask.source_dtype, "uint8");
  EXPECT_EQ(prob.source_dtype, "float32");
  for (float v : mask.voxels) ASSERT_TRUE(v == 0.0f || v == 1.0f);
  for (float v : prob.voxels) ASSERT_TRUE(v >= 0.0f && v <= 1.0f);
  EXPECT_EQ(report["preprocessing"]["origin"], "training file " + run.data);
  // crop "mask": a body pass, then passes over the predicted mask's box until it stops moving.
  EXPECT_GE(report["passes"].get<int>(), 2);
  EXPECT_LE(report["passes"].get<int>(), kMaxMaskCropPasses);
  EXPECT_TRUE(report.contains("mask_crop_converged"));
  EXPECT_EQ(report["ground_truth"]["labels"], nlohmann::json({3, 4}));
  ASSERT_TRUE(report.contains("metrics"));
  const double d = report["metrics"]["dice"].get<double>();
  EXPECT_TRUE(d >= 0.0 && d <= 1.0);
  EXPECT_TRUE(fs::exists(o.report));
  EXPECT_NE(format_infer_report(report).find("Dice"), std::string::npos);
}

// infer_seg's options for the best checkpoint of the tiny run `name` (temp_dir()/runs/<name>) on
// subject 0 of the tiny phantom, written to temp_dir()/phantom_<name>.nii.gz; the mask goes to
// temp_dir()/out_<name>/mask.nii.gz.
InferSegOptions tiny_inference(const std::string& name) {
  const data::Phantom ph = data::make_lung_phantom(data::phantom_subject_seed(test_data::kTinyPhantomSeed, 0),
                                                   test_data::tiny_phantom_options());
  InferSegOptions o;
  o.input = (temp_dir() / ("phantom_" + name + ".nii.gz")).string();
  data::write_nifti(o.input, ph.ct, data::NiftiOut::Int16);
  o.checkpoint = (temp_dir() / "runs" / name / "checkpoints" / "best.safetensors").string();
  o.output = (temp_dir() / ("out_" + name) / "mask.nii.gz").string();
  o.inference.progress = false;
  fs::create_directories(temp_dir() / ("out_" + name));
  return o;
}

nlohmann::json tiny_summary(const std::string& name) {
  return nlohmann::json::parse(std::ifstream(temp_dir() / "runs" / name / "summary.json"));
}

TEST(VolumeInference, TwoAndAHalfDCheckpointEndToEnd) {
  // train_seg --context-slices 1: G takes 3 channels, D 4; infer_seg reads that from the
  // checkpoint and gives each slice its neighbours.
  SegRunConfig c = tiny_config(tiny_run().data, "tiny_context");
  c.context_slices = 1;
  ASSERT_EQ(run_seg_training(c), 0);
  const InferSegOptions o = tiny_inference("tiny_context");
  const nlohmann::json report = run_infer_seg(o);
  EXPECT_EQ(report["generator"]["in_channels"], 3);
  EXPECT_EQ(data::read_nifti(o.output).dims, data::read_nifti(o.input).dims);
  EXPECT_EQ(tiny_summary("tiny_context")["config"]["context_slices"], 1);
}

TEST(VolumeInference, TestTimeFlipFollowsTheRunUnlessTurnedOff) {
  // train_seg --test-time-flip: the checkpoint's run says so, and infer_seg predicts the same
  // way by default; --no-test-time-flip gives one prediction per slice.
  SegRunConfig c = tiny_config(tiny_run().data, "tiny_flip");
  c.test_time_flip = true;
  ASSERT_EQ(run_seg_training(c), 0);
  const nlohmann::json summary = tiny_summary("tiny_flip");
  EXPECT_EQ(summary["config"]["test_time_flip"], true);
  // The test split once more without the flip, with the same checkpoint.
  ASSERT_TRUE(summary["test"].contains("without_test_time_flip"));
  EXPECT_EQ(summary["test"]["without_test_time_flip"]["slices"], summary["test"]["slices"]);
  EXPECT_FALSE(tiny_summary("tiny")["test"].contains("without_test_time_flip"));
  InferSegOptions o = tiny_inference("tiny_flip");
  o.probabilities = (temp_dir() / "out_tiny_flip" / "prob_flip.nii").string();
  EXPECT_EQ(run_infer_seg(o)["test_time_flip"], true);
  o.test_time_flip = false;
  o.output = (temp_dir() / "out_tiny_flip" / "mask_once.nii.gz").string();
  o.probabilities = (temp_dir() / "out_tiny_flip" / "prob_once.nii").string();
  EXPECT_EQ(run_infer_seg(o)["test_time_flip"], false);
  EXPECT_NE(data::read_nifti((temp_dir() / "out_tiny_flip" / "prob_flip.nii").string()).voxels,
            data::read_nifti(o.probabilities).voxels);
  // A run without the flag: off by default, on when asked.
  InferSegOptions plain = tiny_inference("tiny");
  plain.output = (temp_dir() / "out_tiny" / "mask_flip.nii.gz").string();
  fs::create_directories(temp_dir() / "out_tiny");
  EXPECT_EQ(run_infer_seg(plain)["test_time_flip"], false);
  plain.test_time_flip = true;
  EXPECT_EQ(run_infer_seg(plain)["test_time_flip"], true);
}

TEST(VolumeInference, WeightAverageRunsAreTestedAndInferredWithTheAverage) {
  // train_seg --ema: the checkpoint holds G and its average G_ema; the run's test scored the
  // average, and infer_seg predicts with it.
  SegRunConfig c = tiny_config(tiny_run().data, "tiny_ema");
  c.ema_decay = 0.9;
  ASSERT_EQ(run_seg_training(c), 0);
  const nlohmann::json summary = tiny_summary("tiny_ema");
  EXPECT_EQ(summary["config"]["ema_decay"], 0.9);

  const std::string best = (temp_dir() / "runs" / "tiny_ema" / "checkpoints" / "best.safetensors").string();
  SafetensorsFile ck = load_safetensors(best);
  const models::UnetConfig gc = models::unet_config_from_json(ck.metadata.at("generator_config"));
  data::SliceDataset test(tiny_run().data, "test");
  test.preload();
  dist::LocalCommunicator local;
  auto evaluate_weights = [&](const std::string& prefix) {
    Generator init(0);
    models::UnetGenerator g(gc, init);
    load_module_state(g, ck.tensors, prefix);
    return evaluate_segmentation(g, test, c.batch_size, DType::F32, Device::cpu(), 1, local);
  };
  const SegEvaluation average = evaluate_weights("G_ema.");
  const SegEvaluation trained = evaluate_weights("G.");
  EXPECT_EQ(average.slices.dice.mean, summary["test"]["dice"].get<double>());
  EXPECT_EQ(average.volumes.dice.mean, summary["test"]["dice_volume"].get<double>());
  ASSERT_FALSE(average.samples.empty());
  EXPECT_NE(average.samples[0].prob, trained.samples[0].prob) << "the average is not G itself";

  EXPECT_EQ(run_infer_seg(tiny_inference("tiny_ema"))["weights"], "G_ema");
  InferSegOptions plain = tiny_inference("tiny");
  plain.output = (temp_dir() / "out_tiny" / "mask_plain_weights.nii.gz").string();
  fs::create_directories(temp_dir() / "out_tiny");
  EXPECT_EQ(run_infer_seg(plain)["weights"], "G");
}

std::string error_of(const InferSegOptions& o);

TEST(VolumeInference, TwoContrastCheckpointEndToEnd) {
  // train_seg --image-channel: the same phantoms in a second CT window as a second contrast; G
  // takes 2 channels, the checkpoint names the file, and infer_seg needs a second input volume.
  const std::string second = test_data::write_tiny_phantom((temp_dir() / "tiny_narrow.h5").string(), {-200.0, 300.0});
  SegRunConfig c = tiny_config(tiny_run().data, "tiny_contrasts");
  c.image_channels = {second};
  ASSERT_EQ(run_seg_training(c), 0);
  EXPECT_EQ(tiny_summary("tiny_contrasts")["config"]["image_channels"], nlohmann::json({second}));
  InferSegOptions o = tiny_inference("tiny_contrasts");
  // Without the second contrast: a clear error, nothing written.
  const std::string missing = error_of(o);
  EXPECT_NE(missing.find("--input-channel"), std::string::npos) << missing;
  EXPECT_NE(missing.find("2 contrast"), std::string::npos) << missing;
  EXPECT_FALSE(fs::exists(o.output));
  o.input_channels = {o.input};
  InferSegOptions moved = o;
  moved.prepared_channels = {(temp_dir() / "nowhere.h5").string()};
  EXPECT_NE(error_of(moved).find("nowhere.h5"), std::string::npos);
  EXPECT_FALSE(fs::exists(o.output));
  const nlohmann::json report = run_infer_seg(o);
  EXPECT_EQ(report["generator"]["in_channels"], 2);
  EXPECT_EQ(data::read_nifti(o.output).dims, data::read_nifti(o.input).dims);
  // A contrast file on another slice grid is refused before training writes anything.
  SegRunConfig bad = tiny_config(tiny_run().data, "tiny_bad_contrast");
  const std::string other_size = (temp_dir() / "tiny_other_size.h5").string();
  {
    data::PrepareOptions opts;
    opts.size = 16;
    opts.labels = {3, 4};
    opts.fractions = {0.5, 0.25, 0.25};
    opts.progress = false;
    data::prepare_slices(data::phantom_subjects(4, test_data::kTinyPhantomSeed, test_data::tiny_phantom_options()), opts,
                         other_size);
  }
  bad.image_channels = {other_size};
  try {
    run_seg_training(bad);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tiny_other_size.h5"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(temp_dir() / "runs" / "tiny_bad_contrast"));
  bad.image_channels = {(temp_dir() / "absent.h5").string()};
  EXPECT_THROW(run_seg_training(bad), Error);
}

std::string error_of(const InferSegOptions& o) {
  try {
    run_infer_seg(o);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(VolumeInference, ErrorsNameTheFileAndLeaveNoOutput) {
  const TinyRun& run = tiny_run();
  const data::Phantom ph = data::make_lung_phantom(data::phantom_subject_seed(test_data::kTinyPhantomSeed, 1), run.po);
  const std::string input = (temp_dir() / "err_input.nii").string();
  data::write_nifti(input, ph.ct, data::NiftiOut::Int16);
  InferSegOptions base;
  base.checkpoint = run.checkpoint;
  base.input = input;
  base.output = (temp_dir() / "err_mask.nii.gz").string();
  base.inference.progress = false;

  InferSegOptions missing = base;
  missing.checkpoint = (temp_dir() / "nope" / "best.safetensors").string();
  EXPECT_NE(error_of(missing).find(missing.checkpoint), std::string::npos);

  InferSegOptions garbage = base;
  garbage.checkpoint = (temp_dir() / "garbage.safetensors").string();
  std::ofstream(garbage.checkpoint) << "not a safetensors file at all";
  EXPECT_NE(error_of(garbage).find("garbage.safetensors"), std::string::npos);

  InferSegOptions bad_input = base;
  bad_input.input = (temp_dir() / "missing.nii.gz").string();
  EXPECT_NE(error_of(bad_input).find("missing.nii.gz"), std::string::npos);

  InferSegOptions mismatch = base;  // a ground truth on another grid
  data::Volume small = ph.lungs;
  small.dims = {24, 48, 12};
  small.voxels.resize(24 * 48 * 12);
  mismatch.ground_truth = (temp_dir() / "small_gt.nii.gz").string();
  data::write_nifti(mismatch.ground_truth, small, data::NiftiOut::UInt8);
  const std::string m = error_of(mismatch);
  EXPECT_NE(m.find("small_gt.nii.gz"), std::string::npos) << m;
  EXPECT_NE(m.find("err_input.nii"), std::string::npos) << m;

  InferSegOptions indivisible = base;  // 40 is not a multiple of 2^5
  indivisible.size = 40;
  const std::string e = error_of(indivisible);
  EXPECT_NE(e.find("num_downs 5"), std::string::npos) << e;
  EXPECT_NE(e.find("40x40"), std::string::npos) << e;

  InferSegOptions wrong_ext = base;
  wrong_ext.output = (temp_dir() / "mask.png").string();
  EXPECT_NE(error_of(wrong_ext).find("mask.png"), std::string::npos);

  InferSegOptions gone = base;  // training file moved and no flags
  gone.prepared = (temp_dir() / "moved.h5").string();
  EXPECT_NE(error_of(gone).find("moved.h5"), std::string::npos);

  EXPECT_FALSE(fs::exists(base.output));
  for (const auto& entry : fs::directory_iterator(temp_dir()))
    EXPECT_EQ(entry.path().string().find(".tmp"), std::string::npos) << entry.path();
}

}  // namespace
}  // namespace rg::app
