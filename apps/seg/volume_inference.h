// Segmenting a whole 3-D volume with a trained generator (apps/infer_seg is a flag parser over
// run_infer_seg): slice the volume exactly as data/prepare sliced the training data, run G on
// batches of slices, map every predicted slice back onto the ORIGINAL voxel grid, threshold,
// optionally keep the largest connected components, write NIfTI files with the input's affine,
// and score against a ground-truth mask. See docs/inference.md.
//
// Geometry (the inverse of prepare_slices, docs/data_hdf5.md):
//   forward   reorient (data::orientation_of) -> normalize (window / percentiles, clamped to
//             [-1, 1]) -> crop window (square in mm, may extend past the volume: -1 there) ->
//             area-averaged bilinear resize to size x size (data::sample_clamped);
//   backward  each voxel of an oriented slice inside the crop's slice range takes the bilinear
//             interpolation of the predicted probabilities at its position in the size x size
//             grid (voxels outside the crop window, and slices outside its range, get 0); the
//             oriented index maps straight back to the source voxel, so no resampling of the
//             volume itself happens.
// With crop "mask" (e.g. LUNA16 lungs) there is no mask at inference time: a first pass over
// the body crop predicts one, and its bounding box (plus the margin) is the crop of a second
// pass, as in training.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "train/seg_metrics.h"
#include "data/prepare.h"
#include "data/volume.h"

namespace rg::models {
class UnetGenerator;
}

namespace rg::app {


// How training slices were made: the subset of data::PrepareOptions that shapes the input.
struct SlicePreprocessing {
  data::Modality modality = data::Modality::CT;
  std::array<double, 2> window{-1000.0, 400.0};   // CT
  std::array<double, 2> percentiles{0.5, 99.5};   // MRI
  data::CropMode crop = data::CropMode::Body;
  double margin_mm = 10.0;
  double body_threshold = std::numeric_limits<double>::quiet_NaN();  // NaN: prepare's default
  bool reorient = true;
  int64_t size = 256;
  // Where the values came from ("training file <path>", "flags"), for the report.
  std::string origin = "defaults";
  // The training file's mask rule (to binarize a ground truth the same way by default).
  std::vector<int> mask_labels;
  double mask_threshold = 0.0;

  nlohmann::json to_json() const;
};

// Reads the root attributes of a prepared slices file (modality, window or percentiles, crop,
// margin_mm, size, orientation, mask rule). Throws naming the file when it is not one.
SlicePreprocessing preprocessing_from_prepared_file(const std::string& path);

// The slicing of one volume: orientation, intensity range, crop window and resampling steps,
// all as prepare_slices computes them.
struct SliceGeometry {
  data::SliceOrientation orientation;
  std::array<double, 2> norm_range{0.0, 1.0};  // source values mapped to -1 and +1
  int64_t size = 0;                            // output slices are size x size
  int64_t slice_begin = 0, slice_end = 0;      // oriented slices [begin, end) that are predicted
  double x0 = 0, y0 = 0;                       // left / top edge of the crop window (oriented px)
  double step_c = 1, step_r = 1;               // source pixels per output pixel
  int nsx = 1, nsy = 1;                        // sub-samples per output pixel (area filter)
  std::string crop_used;                       // "none", "body", "mask", "mask (predicted)", ...
  std::vector<std::string> warnings;

  int64_t num_slices() const { return slice_end - slice_begin; }
};

// Plans the slicing. `crop_mask` (source voxel order, 0/1) is used for CropMode::Mask; without
// it a Mask crop falls back to the body crop (infer_volume then runs the second pass).
SliceGeometry plan_slices(const data::Volume& image, const SlicePreprocessing& p,
                          const std::vector<uint8_t>* crop_mask = nullptr);

// The normalized, resized oriented slice `s` (size*size floats, row-major), exactly as
// prepare_slices writes it to the training file.
void extract_slice(const data::Volume& image, const SliceGeometry& g, int64_t s, float* out);

// Maps a size x size probability slice back onto oriented slice `s` of the original grid:
// writes every voxel of that slice in `out` (source voxel order, image.voxel_count() floats).
void place_slice(const SliceGeometry& g, int64_t s, const float* probs, float* out);

// The model as a function: n slices (n * size * size floats, row-major) -> n probability
// slices in [0, 1] of the same layout. Tests inject their own; generator_slice_model wraps G.
using SliceModel = std::function<void(const float* slices, int64_t n, float* probs)>;

// G in eval mode under NoGradGuard, sigmoid of its logits. Throws if G's depth does not divide
// `size`. `bf16` runs the activations in bfloat16 (as a --precision bf16 run trained).
SliceModel generator_slice_model(models::UnetGenerator& g, int64_t size, bool bf16 = false);

struct InferenceOptions {
  int64_t batch_size = 8;
  float threshold = 0.5f;          // mask = probability >= threshold
  int64_t largest_components = 0;  // > 0: keep the N largest 6-connected components
  bool progress = true;            // progress bar on stderr (rate, ETA)
};

struct InferenceResult {
  std::vector<float> probabilities;  // source voxel order, 0 outside the crop
  std::vector<uint8_t> mask;         // 0/1 after threshold and component filtering
  SliceGeometry geometry;            // of the (last) pass
  int passes = 0;
  int64_t slices_run = 0;
  int64_t components_found = 0;      // before filtering (only when largest_components > 0)
  double seconds = 0;
};

// Runs the model over the volume and maps the result back onto its grid.
InferenceResult infer_volume(const data::Volume& image, const SlicePreprocessing& p,
                             const SliceModel& model, const InferenceOptions& options = {});

// Keeps the n largest 6-connected components of a binary volume (dims i, j, k; index
// i + d0 * (j + d1 * k)), in place; ties go to the component met first in voxel order.
// Returns the number of components there were.
int64_t keep_largest_components(std::vector<uint8_t>& mask, const std::array<int64_t, 3>& dims,
                                int64_t n);

// Ground truth -> 0/1: value in `labels`, or value > threshold when labels is empty.
std::vector<uint8_t> binarize_mask(const data::Volume& mask, const std::vector<int>& labels,
                                   double threshold);

// Throws unless both volumes share dims and (to 1e-3 mm) affine; names both files.
void check_same_grid(const data::Volume& image, const data::Volume& other);

// 3-D Dice, IoU and HD95 (mm, the volume's spacing) in the original grid.
train::SegMetrics volume_metrics(const std::vector<uint8_t>& pred, const std::vector<uint8_t>& target,
                          const data::Volume& grid);

// ---- the whole tool

struct InferSegOptions {
  std::string checkpoint;    // RUN/checkpoints/best.safetensors
  std::string input;         // .nii / .nii.gz / .mhd / .mha / DICOM directory
  std::string output;        // mask, .nii or .nii.gz (uint8)
  std::string probabilities; // optional float32 probability map
  std::string report;        // optional JSON report
  std::string ground_truth;  // optional mask volume on the input's grid
  std::optional<std::vector<int>> gt_labels;
  std::optional<double> gt_threshold;
  std::string prepared;      // the training file, when it moved (default: the run config's)
  // Preprocessing flags, used when the training file is gone (and overriding it when given).
  std::optional<std::string> modality;
  std::optional<std::array<double, 2>> window, percentiles;
  std::optional<int64_t> size;
  std::optional<std::string> crop;
  std::optional<double> margin_mm;
  InferenceOptions inference;
};

// Validates everything (checkpoint, input, ground truth grid, output paths) before running,
// runs, writes the outputs atomically and returns the report (also written with `report`).
// Notes for the user (where the preprocessing came from, warnings) go to stderr.
// Throws rg::Error naming the file and the problem.
nlohmann::json run_infer_seg(const InferSegOptions& options);

// The human-readable report (stdout of infer_seg).
std::string format_infer_report(const nlohmann::json& report);

}  // namespace rg::app
