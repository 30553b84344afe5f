// One adversarial-segmentation training run: the segmentation task (data, U-Net G, PatchGAN D,
// the step of apps/seg/seg_gan.h, Dice/IoU/HD95 evaluation and overlay pictures) run by the
// training layer's loop (train/train_loop.h), which owns epochs, resume, Ctrl-C, ranks, logs,
// curves and checkpoints. apps/train_seg is a thin flag parser over this.
//
// The run directory is the loop's (train/train_loop.h); segmentation adds
//   samples/epoch_NNN.png    image | ground truth | prediction overlays on validation slices
//   samples/test.png         the same on test slices, with the best checkpoint
//   samples/test_worst.png   the same on the test slices of lowest Dice, worst first
// and its checkpoints carry "generator_config" (and "discriminator"), which infer_seg and
// export read.
#pragma once

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
#include "train/seg_metrics.h"
#include "train/plots.h"
#include "train/settings.h"
#include "train/run_options.h"

namespace rg::dist {
class Communicator;
}
namespace rg::data {
class SliceDataset;
}
namespace rg::models {
class UnetGenerator;
}

namespace rg::app {

// Which validation Dice chooses the `best` checkpoint. Per volume (the default): each subject's
// slices stacked back into a volume, the number reported for 3-D data, and stable on splits
// with few subjects. Per slice: the mean over slices, where an empty or nearly empty slice
// (vertex, lung base) weighs as much as a full one, so a few such slices swing the choice.
enum class SelectBy { Volume, Slice };
SelectBy parse_select_by(const std::string& text, const std::string& source = "--select-by");
const char* select_by_name(SelectBy select_by);
const std::vector<std::string>& select_by_names();  // {"volume", "slice"}

struct SegRunConfig : train::RunOptions {
  // The shared options (train/run_options.h) with this application's defaults.
  SegRunConfig() { name = "seg"; }
  double beta1 = 0.5;
  double lambda_seg = 100.0;
  double r1_gamma = 0.0;  // R1 penalty on real pairs, any GAN mode (0 = off)
  train::GanMode gan_mode = train::GanMode::Vanilla;  // None: the plain U-Net baseline
  models::NormKind norm = models::NormKind::Batch;
  int64_t ngf = 64, ndf = 64, n_layers = 3;
  int64_t num_downs = 0;  // 0: as many as the slice size allows, at most 8 (unet_256)
  int64_t full_res_width = 0;  // > 0: full-resolution ends of the U-Net (models/unet.h)
  bool dropout = false;
  train::Precision precision = train::Precision::Fp32;
  // Empty: RG_CONV_BACKEND, else auto (CUDA only).
  std::optional<ConvBackend> conv_backend;
  // Real training slices used: the seeded subset data::seeded_subset(n, train_fraction,
  // train_seed) of the train split (1 = all). train_synth takes the same flags, so a synthesis
  // GAN for augmentation sees only these slices. 0 is allowed with extra_train (synthetic only).
  double train_fraction = 1.0;
  uint64_t train_seed = 0;
  // A second prepared file (e.g. apps/synthesize's output) whose train split is mixed into the
  // training data; extra_fraction of its slices (a seeded subset, train_seed) are used.
  // Validation and test stay on `data`'s real splits.
  std::string extra_train;
  double extra_fraction = 1.0;
  bool augment = true;
  // Probability of an elastic deformation in the augmentation (data::AugmentOptions: RMS
  // displacement 4 px, smoothness 12 px, as synthesize deforms masks); 0 = the classic
  // flip / rotation / zoom / intensity augmentation only.
  double elastic = 0.0;
  SelectBy select_by = SelectBy::Volume;
  // 2.5-D input: G sees the slice and `context_slices` neighbours on each side as channels
  // (data::LoaderOptions::context_slices), D sees them with the mask. 0 = 2-D slices. The
  // checkpoint's generator in_channels (2 * context_slices + 1) tells infer_seg the same.
  int context_slices = 0;
  // More contrasts of the same slices (multi-channel input, e.g. T1 + T2): prepared files on
  // `data`'s slice grid (data::check_same_slice_grid: prepared from co-registered volumes with
  // the same split, crop and size), whose images become further input channels of G; masks come
  // from `data`. G takes (1 + image_channels.size()) * (2 * context_slices + 1) channels,
  // contrast-major (data::LoaderOptions::contrast_paths); the checkpoint names the files, so
  // infer_seg takes the same contrasts (--input-channel) normalized as they were.
  std::vector<std::string> image_channels;
  // Validation and test predict each slice as the mean over it and its left-right mirror
  // (apps/seg/seg_predict.h); training is unchanged. The checkpoint says so, and infer_seg
  // predicts the same way unless told otherwise.
  bool test_time_flip = false;
  // > 0: validation, test and the checkpoints' inference weights are an exponential moving
  // average of G's weights with this decay (train/weight_average.h), checkpointed as "G_ema";
  // 0: G itself.
  double ema_decay = 0.0;
  // Data parallelism (world size > 1): synchronize batch-norm statistics over all ranks
  // (SyncBatchNorm). Ignored at world size 1 and for --norm instance/none. docs/scaling.md.
  bool sync_bn = true;
};

// Runs training; returns the process exit code (0 done, 130 interrupted after saving).
// Throws rg::Error for bad configuration or data (the app prints it and exits 1).
int run_seg_training(const SegRunConfig& config);
// The same, data-parallel over `comm` (every rank calls it with the same configuration):
//  - batch_size is the *global* batch: each rank loads batch_size / world_size samples (it must
//    divide) from its shard of the training split, so a run at world size N takes the same
//    optimizer steps per epoch as a single process;
//  - models start from rank 0's parameters; gradients are averaged in buckets during backward
//    (dist::GradientSync); batch norm is synchronized unless sync_bn is false; this path runs
//    whenever `comm` is not a LocalCommunicator, also at world size 1 under `mpirun -np 1`
//    (where it must give the plain run's losses exactly);
//  - the resume position is a global sample position: global step k of an epoch is samples
//    [k * batch_size, (k + 1) * batch_size) of that epoch's shared permutation whatever the
//    world size (rank r of M takes the ones at r, r + M, ...), so a checkpoint written at world
//    size N resumes at any M with the same global batch_size (tests/dist/mpi_seg_run.cpp).
int run_seg_training(const SegRunConfig& config, dist::Communicator& comm);

// The configuration as JSON (config.json, checkpoints, summary.json), with settings by name.
nlohmann::json seg_config_to_json(const SegRunConfig& config);

// Metrics of G over a whole split (validation or test), per slice and per volume, plus the
// picture rows (the first sample_rows slices with foreground, spread over the split).
// One evaluated slice, for the report of the worst ones: where it lies in its volume (0 = the
// subject's lowest slice in the split, 1 = its highest: bases and apices of the lungs) and how
// much of it is foreground.
struct SliceResult {
  int64_t index = 0;  // in the dataset
  int32_t subject = 0, slice = 0;
  std::string subject_name;  // the subject's name in the prepared file (/subjects/name)
  double height = 0.0, dice = 0.0, target_fraction = 0.0;
};

struct SegEvaluation {
  train::MetricSummary slices;   // per-slice metrics
  train::MetricSummary volumes;  // each subject's slices stacked back into a volume
  std::vector<train::SegGridRow> samples;
  std::vector<SliceResult> worst;  // the lowest per-slice Dice, worst first (at most 8)
  // Picture rows of the worst_rows worst slices (worst first), when asked for.
  std::vector<train::SegGridRow> worst_samples;
};

// Runs G in eval mode over `ds` in batches of batch_size; a G with 2k + 1 input channels per
// contrast gets each slice with k neighbours on each side (SliceDataset::read_stack), of `ds`
// and then of each file of `more_contrasts` (on ds's slice grid: data::read_contrast_stack). Every rank of `comm`
// calls it with the same model: rank r predicts batches r, r + N, ... (the batches one process
// would form, so each slice's probabilities are bit-identical to a single-process evaluation),
// the binarized predictions (and the probabilities of the picture rows) are gathered on rank 0
// by summing zero-initialized buffers over the ranks (each value is written by one rank: the sum
// is exact), and rank 0 computes the metrics exactly as one process would: per-volume Dice and
// HD95 need whole volumes. The result is complete on rank 0; other ranks get an empty
// SegEvaluation.
// worst_rows > 0 also draws the picture rows of that many worst slices (G runs on them once
// more, on rank 0). test_time_flip: each slice's probabilities are the mean over the slice and
// its left-right mirror (apps/seg/seg_predict.h), for the metrics and the pictures alike.
SegEvaluation evaluate_segmentation(models::UnetGenerator& g, const data::SliceDataset& ds,
                                    int64_t batch_size, DType act_dtype, Device device,
                                    int64_t sample_rows, dist::Communicator& comm,
                                    int64_t worst_rows = 0,
                                    const std::vector<const data::SliceDataset*>& more_contrasts = {},
                                    bool test_time_flip = false);

}  // namespace rg::app
