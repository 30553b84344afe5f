// One modality translation training run (source -> target, e.g. MR -> CT): pix2pix (paired: U-Net
// or ResNet G, PatchGAN on (source, target), L1; train/paired_gan.h), the plain supervised
// baseline (pix2pix with --gan-mode none: L1 alone), or CycleGAN (unpaired: two ResNet G, two
// PatchGAN D, cycle and identity losses, image pools; apps/translate/cyclegan_step.h), run by
// the training layer's loop (train/train_loop.h): epochs, resume, Ctrl-C, logs, curves and
// checkpoints as in every application.
//
// Data: prepared files that share one slice grid (prepare_data translation writes them): the
// source modality, the target modality (its mask is the body mask the metrics use) and,
// optionally, the tissue map (its mask is the lesion mask; it enables the per-tissue and lesion
// measures). Slice k of a split must be the same slice of the same subject in every file; the
// run refuses files that are not (and writes nothing). CycleGAN trains unpaired: the training
// subjects are split by a seeded shuffle into two disjoint halves, source images come only from
// the first and target images only from the second; validation and test stay paired, so both
// models are measured the same way.
//
// The run directory is the loop's; translation adds
//   samples/epoch_NNN.png   source | translated | target | error map on validation slices
//   samples/test.png        the same on test slices, with the best checkpoint
// and its checkpoints (kind "translate") carry "generator" (the config of G or G_A), "model",
// "source_prepared" and "target_prepared" (apps/translate and apps/export read them).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "data/phantom.h"
#include "engine/device.h"
#include "models/norm_kind.h"
#include "train/gan_loss.h"
#include "train/run_options.h"
#include "train/synth_metrics.h"

namespace rg::data {
class SliceDataset;
}
namespace rg::nn {
class Module;
}
namespace rg::dist {
class Communicator;
}

namespace rg::app {

enum class TranslateModel { Pix2Pix, CycleGan };
TranslateModel parse_translate_model(const std::string& name);  // "pix2pix" | "cyclegan"
const char* translate_model_name(TranslateModel m);

struct TranslateRunConfig : train::RunOptions {
  TranslateRunConfig() {
    name = "translate";
    batch_size = 4;
  }
  TranslateModel model = TranslateModel::Pix2Pix;
  std::string source, target, tissue;  // prepared files (tissue optional)
  // More source contrasts on the same slice grid (e.g. T1 and T2): channels 2, 3, ... of G's
  // input, in this order (several files per subject -> channels of one sample).
  std::vector<std::string> source_channels;
  std::string generator = "unet";      // unet | resnet (CycleGAN: resnet)
  int64_t ngf = 64, ndf = 64, n_layers = 3, n_blocks = 9, num_downs = 0;
  int64_t full_res_width = 0;          // U-Net: models::UnetConfig::full_res_width (0 = pix2pix's)
  models::NormKind norm = models::NormKind::Batch;
  train::GanMode gan_mode = train::GanMode::Vanilla;
  double beta1 = 0.5;
  double lambda_l1 = 100.0;    // pix2pix
  double lambda_cycle = 10.0;  // CycleGAN (both directions)
  double lambda_idt = 0.5;
  int64_t pool_size = 50;
  bool unpaired = true;  // CycleGAN: disjoint subjects for the two domains
  bool dropout = false;  // dropout in G (U-Net inner levels / ResNet blocks), as --dropout
  // What else a checkpoint needs to name for the sake of apps/translate.
  void validate() const;
};

nlohmann::json translate_config_to_json(const TranslateRunConfig& config);

// Runs training; returns the exit code (0 done, 130 interrupted after saving). Single process.
// Throws rg::Error for bad configuration or data before writing anything.
int run_translate_training(const TranslateRunConfig& config);
// The same, data-parallel over `comm` (every rank calls it with the same configuration), as
// run_seg_training's: batch_size is the global batch (each rank takes batch_size / world_size
// of it, which must divide); models start from rank 0's parameters; each player's gradients are
// averaged over the ranks (dist::GradientSync); batch norm (pix2pix) is synchronized over the
// ranks (CPU only; CycleGAN's instance norm needs nothing); global step k of an epoch is the same
// samples at any world size, so a checkpoint resumes at another one. Each rank keeps its own
// CycleGAN image pools (of its own fakes). Every rank evaluates the whole validation and test
// split; rank 0 writes the files.
int run_translate_training(const TranslateRunConfig& config, dist::Communicator& comm);

// ---- data

// Opens the split of each file and checks that they share one slice grid (same slice size and
// count, same subject and slice for every sample); throws naming the files otherwise.
struct TranslationSplit {
  std::unique_ptr<data::SliceDataset> source, target, tissue;  // tissue may be null
  // The tissue file's window: class numbers [lo, hi] -> [-1, 1] ([0, 6] in files made before
  // the halo class, [0, 7] since).
  std::array<double, 2> tissue_window{0.0, data::kPhantomTissueClasses - 1.0};
  std::vector<std::unique_ptr<data::SliceDataset>> more_sources;  // source channels 2, 3, ...
  TranslationSplit(const std::string& source_path, const std::string& target_path,
                   const std::string& tissue_path, const std::string& split,
                   const std::vector<std::string>& source_channels = {});
  int64_t channels() const { return 1 + static_cast<int64_t>(more_sources.size()); }
  // Sample i's source channels, interleaved (NHWC: height * width * channels() floats).
  void read_source(int64_t i, float* out) const;
  ~TranslationSplit();
  TranslationSplit(TranslationSplit&&) noexcept;
  int64_t size() const;
  int64_t height() const;
  int64_t width() const;
};

// The unpaired training sets: the distinct subjects of `subjects` (one entry per slice) shuffled
// with `seed` and halved; returns the slice indices whose subject lies in the first half
// (domain A, the source) and in the second half (domain B, the target). Disjoint by subject.
// Throws when there are fewer than two subjects.
std::pair<std::vector<int64_t>, std::vector<int64_t>> unpaired_slices(const std::vector<int32_t>& subjects,
                                                                      uint64_t seed);

// ---- evaluation

// HU of a prepared CT value v in [-1, 1] with window [lo, hi]: lo + (v + 1) (hi - lo) / 2.
struct HuScale {
  double lo = -1000, hi = 1000;
  double hu(double v) const { return lo + (v + 1.0) * 0.5 * (hi - lo); }
  double per_unit() const { return 0.5 * (hi - lo); }  // HU per unit of prepared intensity
};
// The window of a prepared CT file (its "window" attribute); throws naming the file when it is
// not a CT file.
HuScale hu_scale_of(const std::string& prepared_ct);

// The threshold segmentation of lesions behind the structure measures: pixels above
// kLesionHu inside the lesion's neighbourhood (the tissue map's lesion and halo pixels dilated by
// kLesionMarginPx); "invented" lesion pixels: above kLesionHu where the tissue map says lung.
inline constexpr double kLesionHu = -300.0;
inline constexpr int kLesionMarginPx = 2;

struct TranslationEvaluation {
  // On the prepared intensities ([-1, 1], data range 2) inside the body (the target's mask).
  train::FidelitySummary body;
  double mae_hu = 0, mae_hu_std = 0;  // body.mae, body.mae_std in HU
  // With a tissue file: MAE in HU per tissue class (pixel-weighted over the split; NaN when a
  // class is absent), lesion Dice (translated vs real threshold segmentation, over the split's
  // lesion neighbourhoods), invented lesion pixels on lesion-free slices (translated, and the
  // real CT's for reference) and the lung pixels of those slices.
  bool has_tissue = false;
  std::vector<double> tissue_mae_hu;
  std::vector<int64_t> tissue_pixels;
  double lesion_dice = 0;
  int64_t lesion_slices = 0, lesion_free_slices = 0;
  int64_t invented_pixels = 0, real_false_pixels = 0, lesion_free_lung_pixels = 0;
  double invented_mm3 = 0;  // the invented pixels' volume (pixel size x slice spacing)
  // Picture rows: source, translated, target, error map.
  std::vector<std::vector<std::vector<float>>> rows;
  int64_t height = 0, width = 0;
};

// Runs `g` (source -> target) over a split and measures it. `g` is put in eval mode and back.
TranslationEvaluation evaluate_translation(nn::Module& g, const TranslationSplit& split, const HuScale& hu,
                                           int64_t batch_size, Device device, int64_t sample_rows);
nlohmann::json translation_evaluation_json(const TranslationEvaluation& e, const HuScale& hu);
std::string translation_evaluation_summary(const TranslationEvaluation& e);
void write_translation_grid(const std::string& path, const TranslationEvaluation& e);

}  // namespace rg::app
