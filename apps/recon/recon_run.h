// Reconstruction training (issue 17): low-dose CT denoising and MRI super-resolution as one
// image-to-image task on a pair file (prepare_data lowdose-ct | superres | pairs; images =
// degraded input, targets = reference, masks = the metrics' region). The generator is a
// residual U-Net (models/residual.h: out = x + U(x)); the step is the training layer's paired
// GAN step (train/paired_gan.h): lambda_l1 * L1 + lambda_mse * MSE + adv_weight * adversarial
// (PatchGAN on (input, output) pairs), and adv_weight 0 trains the same network without a
// discriminator: the plain supervised baseline. The training layer's loop
// (train/train_loop.h) owns epochs, resume, Ctrl-C, logs, curves and checkpoints.
//
// Metrics (every line of metrics.jsonl and summary.json states its settings): PSNR, SSIM and
// MAE of the output and of the input (the low-dose / bicubic baseline) against the reference,
// inside the mask:
//   CT: in HU, in the [-160, 240] window (data range 400) and on the full [-1024, 3072] range
//       (data range 4096); the file's [-1024, 3072] HU -> [-1, 1] mapping is undone first;
//   MRI: on the prepared intensities, [-1, 1] = the reference subject's [p0.5, p99.5] range
//       (data range 2).
// Run directory: the loop's, plus samples/epoch_NNN.png and samples/test.png with input |
// output | reference | error map rows; checkpoints of kind "recon" carry the generator config.
#pragma once

#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "engine/conv_backend.h"
#include "engine/device.h"
#include "engine/dtype.h"
#include "models/norm_kind.h"
#include "train/gan_loss.h"
#include "train/run_options.h"
#include "train/settings.h"
#include "train/noise_power.h"
#include "train/synth_metrics.h"

namespace rg::data {
class SliceDataset;
}
namespace rg::nn {
class Module;
}

namespace rg::app {

enum class ReconTask { Denoise, Superres };
ReconTask parse_recon_task(const std::string& text);  // "denoise" | "superres"; throws naming --task
const char* recon_task_name(ReconTask task);

struct ReconRunConfig : train::RunOptions {
  ReconRunConfig() {
    name = "recon";
    batch_size = 8;
  }
  ReconTask task = ReconTask::Denoise;
  double beta1 = 0.5;
  double lambda_l1 = 100.0;
  double lambda_mse = 0.0;
  double adv_weight = 0.1;  // 0: no discriminator (the supervised baseline)
  // The intensities D sees, in the file's units (HU for CT), stretched to [-1, 1] and clipped
  // (train/paired_gan.h); none: the file's values as they are.
  std::optional<std::array<double, 2>> adv_window;
  double d_lr = 0;  // D's Adam learning rate (0: --lr); the schedule scales both alike
  double residual_scale = 0.05;  // G = x + residual_scale * U(x) (models/residual.h)
  train::GanMode gan_mode = train::GanMode::Vanilla;
  models::NormKind norm = models::NormKind::Batch;
  int64_t ngf = 64, ndf = 64, n_layers = 3;
  int64_t num_downs = 0;  // 0: as many as the slice size allows, at most 8
  std::string generator = "unet";  // U's body: "unet" or "resnet" (models/residual.h)
  int64_t n_blocks = 6;             // ResNet body: residual blocks at a quarter of the resolution
  int64_t full_res_width = 0;       // U-Net body: > 0 adds full-resolution ends (models/unet.h)
  train::Precision precision = train::Precision::Fp32;
  std::optional<ConvBackend> conv_backend;
  bool augment = false;  // flips/rotations of input and target alike (no intensity jitter)
};

int run_recon_training(const ReconRunConfig& config);
nlohmann::json recon_config_to_json(const ReconRunConfig& config);

// How the metrics are computed: the units of the file's [-1, 1] and the windows.
struct ReconMetricView {
  std::string name;  // "window" / "full" (CT), "range" (MRI)
  double lo = -1, hi = 1;  // values clipped to [lo, hi]; data range hi - lo
};
struct ReconMetricSettings {
  bool ct = true;
  std::array<double, 2> norm_range{-1, 1};  // units of -1 and +1 (HU for CT)
  std::string units;                        // "HU" or a description of the normalized scale
  std::vector<ReconMetricView> views;       // the first is the primary one (chooses `best`)
  std::string region = "the file's mask (body / brain), /masks";
  nlohmann::json to_json() const;
  std::string str() const;  // one line for logs
  // File units: [-1, 1] -> units.
  float to_units(float v) const {
    return static_cast<float>(norm_range[0] + (static_cast<double>(v) + 1.0) * 0.5 * (norm_range[1] - norm_range[0]));
  }
};
// CT: HU ([-1, 1] <-> norm_range), views [-160, 240] (primary) and [-1024, 3072]. MRI: the
// normalized intensities themselves, view [-1, 1] described by `units`.
ReconMetricSettings ct_metric_settings(std::array<double, 2> norm_range, std::string region);
ReconMetricSettings mri_metric_settings(std::string units, std::string region);
// From the file's attributes (modality, window); throws naming the file if it is no pair file.
ReconMetricSettings recon_metric_settings(const data::SliceDataset& ds);

// CT texture (train/noise_power.h): the NPS of output, input (low dose) and reference (full
// dose) in the same uniform soft-tissue ROIs of every slice.
struct ReconNoisePower {
  train::NpsSummary output, input, reference;
  int roi = 0;
};
nlohmann::json noise_power_json(const ReconNoisePower& n);
std::string noise_power_summary(const ReconNoisePower& n);

// Per-view accumulation of output-vs-reference and input-vs-reference measures, and for CT the
// noise power spectra; slices are in the settings' units (ReconMetricSettings::to_units),
// `region` nonzero = inside.
class ReconScorer {
 public:
  explicit ReconScorer(ReconMetricSettings settings);
  void add(const float* output, const float* input, const float* reference, const uint8_t* region,
           int height, int width);
  std::vector<train::FidelitySummary> output() const;
  std::vector<train::FidelitySummary> input() const;
  // CT only (empty for MRI). ROIs of 16 px on slices up to 128 px (about 40 mm on the phantom's
  // crop: the size of the heart), 32 px on larger ones, fixed by the first slice added.
  std::optional<ReconNoisePower> noise_power() const;
  const ReconMetricSettings& settings() const { return settings_; }

 private:
  ReconMetricSettings settings_;
  std::vector<train::FidelityAccumulator> out_, in_;
  std::optional<train::NpsOptions> nps_options_;
  std::optional<train::NpsAccumulator> nps_out_, nps_in_, nps_ref_;
};
// {"settings": ..., "<view>": {"psnr", "ssim", "mae", "*_std", "input_psnr", ..., "psnr_gain"}}
// plus the primary view's psnr/ssim/mae/psnr_gain at the top level (the curves' keys).
nlohmann::json recon_metrics_json(const ReconMetricSettings& settings,
                                  const std::vector<train::FidelitySummary>& output,
                                  const std::vector<train::FidelitySummary>& input);
std::string recon_metrics_summary(const ReconMetricSettings& settings,
                                  const std::vector<train::FidelitySummary>& output,
                                  const std::vector<train::FidelitySummary>& input);

struct ReconEvaluation {
  ReconMetricSettings settings;
  std::vector<train::FidelitySummary> output, input;  // per view
  std::optional<ReconNoisePower> noise_power;         // CT only
  std::vector<std::vector<std::vector<float>>> rows;  // input | output | reference | error
  std::vector<std::string> titles;
  int64_t height = 0, width = 0;
};
// Runs G over a split (eval mode) and measures output and input against the targets.
ReconEvaluation evaluate_recon(nn::Module& g, const data::SliceDataset& ds, int64_t batch_size,
                               DType act_dtype, Device device, int64_t sample_rows);
nlohmann::json recon_evaluation_json(const ReconEvaluation& e);
std::string recon_evaluation_summary(const ReconEvaluation& e);

}  // namespace rg::app
