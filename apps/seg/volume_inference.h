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
#include "data/slice_geometry.h"
#include "data/volume.h"

namespace rg::models {
class UnetGenerator;
}

namespace rg::app {


// The slicing geometry lives in data/slice_geometry.h (shared with apps/translate).
using data::extract_slice;
using data::place_slice;
using data::plan_slices;
using data::preprocessing_from_prepared_file;
using data::SliceGeometry;
using data::SlicePreprocessing;
using data::check_same_grid;

// The model as a function: n slices (n * size * size * contrasts * (2 * context_slices + 1)
// floats, row-major pixels with their channels together: each contrast's slice and neighbours
// as train_seg --image-channel and --context-slices gave them) -> n probability slices in [0, 1]
// (n * size * size floats). Tests inject their own; generator_slice_model wraps G.
using SliceModel = std::function<void(const float* slices, int64_t n, float* probs)>;

// G in eval mode under NoGradGuard, sigmoid of its logits (apps/seg/seg_predict.h, as validation
// and test compute them). Throws if G's depth does not divide `size`, or its input channels are
// not `contrasts` times an odd number. `bf16` runs the activations in bfloat16 (as a --precision
// bf16 run trained); test_time_flip averages each slice's probabilities with those of its
// left-right mirror (train_seg --test-time-flip).
SliceModel generator_slice_model(models::UnetGenerator& g, int64_t size, bool bf16 = false, int64_t contrasts = 1,
                                 bool test_time_flip = false);

// Another contrast of the input volume (a model trained with train_seg --image-channel): a volume
// on the input's grid, normalized as its own training file was (its window or percentiles); it
// is sliced with the input's crop.
struct ContrastInput {
  const data::Volume* volume = nullptr;
  SlicePreprocessing preprocessing;
};

struct InferenceOptions {
  // Neighbouring slices on each side given to the model with each slice (a G with 2k + 1 input
  // channels: k); at the ends of the predicted slice range the end slice repeats, as in the
  // prepared file the model trained on (data::SliceDataset::neighbour).
  int context_slices = 0;
  int64_t batch_size = 8;
  float threshold = 0.5f;          // mask = probability >= threshold
  int64_t largest_components = 0;  // > 0: keep the N largest 6-connected components
  bool progress = true;            // progress bar on stderr (rate, ETA)
};

// Crop "mask": a body-crop pass, then passes over the previous mask's box until it stops moving.
inline constexpr int kMaxMaskCropPasses = 4;

struct InferenceResult {
  std::vector<float> probabilities;  // source voxel order, 0 outside the crop
  std::vector<uint8_t> mask;         // 0/1 after threshold and component filtering
  SliceGeometry geometry;            // of the (last) pass
  int passes = 0;
  bool crop_converged = false;       // crop "mask": the last pass's mask gave the same box again
  int64_t slices_run = 0;
  int64_t components_found = 0;      // before filtering (only when largest_components > 0)
  double seconds = 0;
};

// Runs the model over the volume (and its other contrasts, channels after the image's) and maps
// the result back onto its grid.
InferenceResult infer_volume(const data::Volume& image, const SlicePreprocessing& p,
                             const SliceModel& model, const InferenceOptions& options = {},
                             const std::vector<ContrastInput>& more_contrasts = {});

// Keeps the n largest 6-connected components of a binary volume (dims i, j, k; index
// i + d0 * (j + d1 * k)), in place; ties go to the component met first in voxel order.
// Returns the number of components there were.
int64_t keep_largest_components(std::vector<uint8_t>& mask, const std::array<int64_t, 3>& dims,
                                int64_t n);

// Ground truth -> 0/1: value in `labels`, or value > threshold when labels is empty.
std::vector<uint8_t> binarize_mask(const data::Volume& mask, const std::vector<int>& labels,
                                   double threshold);


// 3-D Dice, IoU and HD95 (mm, the volume's spacing) in the original grid.
train::SegMetrics volume_metrics(const std::vector<uint8_t>& pred, const std::vector<uint8_t>& target,
                          const data::Volume& grid);

// ---- the whole tool

struct InferSegOptions {
  std::string checkpoint;    // RUN/checkpoints/best.safetensors
  std::string input;         // .nii / .nii.gz / .mhd / .mha / DICOM directory
  // The other contrasts of a model trained with --image-channel, in its order, on input's grid.
  std::vector<std::string> input_channels;
  std::string output;        // mask, .nii or .nii.gz (uint8)
  std::string probabilities; // optional float32 probability map
  std::string report;        // optional JSON report
  std::string ground_truth;  // optional mask volume on the input's grid
  std::optional<std::vector<int>> gt_labels;
  std::optional<double> gt_threshold;
  std::string prepared;      // the training file, when it moved (default: the run config's)
  // The other contrasts' training files, when they moved (default: the run config's
  // image_channels); all of them or none.
  std::vector<std::string> prepared_channels;
  // Preprocessing flags, used when the training file is gone (and overriding it when given).
  std::optional<std::string> modality;
  std::optional<std::array<double, 2>> window, percentiles;
  std::optional<int64_t> size;
  std::optional<std::string> crop;
  std::optional<double> margin_mm;
  // Test-time flip (apps/seg/seg_predict.h): unset follows the run (train_seg --test-time-flip,
  // recorded in the checkpoint), so a volume is predicted as the run's validation and test were.
  std::optional<bool> test_time_flip;
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
