// One mask -> image synthesis training run: the synthesis task (data, U-Net G with a tanh head,
// PatchGAN D on (mask, image) pairs, the paired step of train/paired_gan.h, MAE/PSNR/SSIM
// evaluation and mask | real | synthetic pictures) run by the training layer's loop
// (train/train_loop.h), which owns epochs, resume, Ctrl-C, logs, curves and checkpoints.
// apps/train_synth is a thin flag parser over this; apps/synthesize reads its checkpoints.
//
// The run directory is the loop's (train/train_loop.h); synthesis adds
//   samples/epoch_NNN.png    mask | real | synthetic on validation slices
//   samples/test.png         the same on test slices, with the best checkpoint
// and its checkpoints (kind "synth") carry "generator_config" and "discriminator".
//
// Conditioning (--condition): "mask", the binary mask as G's one input channel; or "labels",
// the slice's label map (prepare_data --label-map: background, body, mask, lesion;
// data/label_map.h) one-hot, one input channel per class. D sees the same channels plus the
// image.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "engine/conv_backend.h"
#include "engine/device.h"
#include "engine/dtype.h"
#include "engine/tensor.h"
#include "models/norm_kind.h"
#include "train/gan_loss.h"
#include "train/settings.h"
#include "train/distribution_metrics.h"
#include "train/synth_metrics.h"
#include "train/run_options.h"

namespace rg::data {
class SliceDataset;
}
namespace rg::models {
class UnetGenerator;
}

namespace rg::app {

struct SynthRunConfig : train::RunOptions {
  // The shared options (train/run_options.h) with this application's defaults.
  SynthRunConfig() {
    name = "synth";
    batch_size = 8;
  }
  double beta1 = 0.5;
  double lambda_l1 = 100.0;
  train::GanMode gan_mode = train::GanMode::Vanilla;  // None: plain L1 regression
  models::NormKind norm = models::NormKind::Batch;
  int64_t ngf = 64, ndf = 64, n_layers = 3;
  int64_t num_downs = 0;  // 0: as many as the slice size allows, at most 8
  bool dropout = false;
  train::Precision precision = train::Precision::Fp32;
  std::optional<ConvBackend> conv_backend;
  // The real training slices used: a seeded subset (data::seeded_subset(n, train_fraction,
  // train_seed)), the same one train_seg --train-fraction/--train-seed takes, so a synthesis
  // GAN for an augmentation experiment sees no slice the segmenter does not.
  double train_fraction = 1.0;
  uint64_t train_seed = 0;
  // Geometric augmentation only (flip, rotation, zoom, applied to mask and image alike): an
  // intensity jitter of the target image would teach G random contrasts.
  bool augment = true;
  // Condition G on the label maps (one-hot) instead of the binary mask; the file must have them.
  bool label_condition = false;
  // Spectral normalization of every convolution of D (models::PatchGanConfig::spectral_norm).
  bool spectral_norm = false;
};

// G's input for a batch: the masks themselves ([B, H, W, 1], 0/1) with label_classes 0; with
// label_classes K > 0, the label maps ([B, H, W, 1] class ids) one-hot as [B, H, W, K].
Tensor synth_condition(const Tensor& masks_or_labels, int label_classes);

// Runs training; returns the process exit code (0 done, 130 interrupted after saving). Single
// process only for now (data parallelism throws). Throws rg::Error for bad configuration/data.
int run_synth_training(const SynthRunConfig& config);

nlohmann::json synth_config_to_json(const SynthRunConfig& config);

// Fidelity of G's images against the real ones over a split, inside the body
// (train::body_region: the real image above the background, plus the mask) and inside the
// mask, on [-1, 1] intensities (data range 2); plus the picture rows. With `distribution`, also
// the Fréchet and kernel distances between the real and the synthetic images of the split on the
// fixed feature network (train/distribution_metrics.h; the test split only: it costs a forward
// of that network per image, and needs at least 2 slices).
struct SynthEvaluation {
  train::FidelitySummary body, mask;
  std::optional<train::DistributionDistance> distribution;
  // Cells per picture row: mask (as -1/1) or label map (classes as grey levels), real, synthetic.
  std::vector<std::vector<std::vector<float>>> rows;
  int64_t height = 0, width = 0;
  bool label_condition = false;
  // Spectral normalization of every convolution of D (models::PatchGanConfig::spectral_norm).
  bool spectral_norm = false;
};
// label_classes: 0 for a mask-conditioned G, else its number of label classes (the split must
// have label maps with them).
SynthEvaluation evaluate_synthesis(models::UnetGenerator& g, const data::SliceDataset& ds,
                                   int64_t batch_size, DType act_dtype, Device device,
                                   int64_t sample_rows, bool distribution = false,
                                   int label_classes = 0);
// The metrics JSON of a "val"/"test" line and the terminal summary.
nlohmann::json synth_evaluation_json(const SynthEvaluation& e);
std::string synth_evaluation_summary(const SynthEvaluation& e);
// Writes the mask | real | synthetic grid (nothing when there are no rows).
void write_synthesis_grid(const std::string& path, const SynthEvaluation& e);

}  // namespace rg::app
