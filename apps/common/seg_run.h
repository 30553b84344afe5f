// One adversarial-segmentation training run, end to end: data, models, the alternating GAN
// updates, per-epoch validation, checkpoints, metrics, pictures, and the final test evaluation
// with the checkpoint chosen on validation. apps/train_seg is a thin flag parser over this.
//
// A run directory <out_dir>/<name>/ holds:
//   metrics.jsonl            one JSON object per line: "train" (every log_every steps),
//                            "val" (every epoch), "test" (once, at the end)
//   checkpoints/latest.*     safetensors (G, D, optimizer state) + JSON (progress, RNG, config)
//   checkpoints/best.*       the same, for the epoch with the best validation Dice
//   samples/epoch_NNN.png    image | ground truth | prediction overlays on validation slices
//   curves/losses.png, curves/val_metrics.png
//   summary.json             the configuration, the best epoch and the test metrics
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "apps/common/plots.h"
#include "apps/common/seg_metrics.h"
#include "engine/device.h"
#include "engine/dtype.h"

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

struct SegRunConfig {
  std::string data;           // prepared HDF5 file (apps/prepare_data)
  std::string name = "seg";   // run name: the folder under out_dir
  std::string out_dir = "runs";
  int64_t epochs = 10;        // epochs at the initial learning rate
  int64_t epochs_decay = 10;  // epochs of decay after them (pix2pix n_epochs_decay)
  std::string lr_policy = "linear";  // linear (pix2pix) | cosine
  int64_t batch_size = 16;
  double lr = 2e-4;
  double beta1 = 0.5;
  double lambda_seg = 100.0;
  std::string gan_mode = "vanilla";  // vanilla | lsgan | hinge | wgan-gp | none (plain U-Net)
  std::string norm = "batch";        // batch | instance | none
  int64_t ngf = 64, ndf = 64, n_layers = 3;
  int64_t num_downs = 0;  // 0: as many as the slice size allows, at most 8 (unet_256)
  bool dropout = false;
  std::string precision = "fp32";  // fp32 | tf32 | bf16
  std::string device = "auto";     // auto | cpu | cuda[:N]
  std::string conv_backend;  // own | cudnn | auto (CUDA only); empty: RG_CONV_BACKEND, else auto
  uint64_t seed = 0;
  bool resume = false;
  bool augment = true;
  int workers = 2;
  int64_t log_every = 10;      // steps between "train" lines in metrics.jsonl
  int64_t sample_rows = 4;     // validation slices in each sample grid
  int64_t max_train_batches = 0;  // cap on batches per epoch (0 = the whole split)
  bool progress = true;        // progress bar on stderr
  // Acts as if Ctrl-C arrived after this many steps of this invocation (0 = never); tests use
  // it to interrupt and resume at a chosen point.
  int64_t interrupt_after_steps = 0;
  // Stops after this many steps of this invocation (0 = never), saving checkpoints/latest as an
  // interruption does (so --resume continues), and returns 0: short runs whose losses are
  // compared (docs/scaling.md, the world-size-1 check).
  int64_t max_steps = 0;
  // Data parallelism (world size > 1): synchronize batch-norm statistics over all ranks
  // (SyncBatchNorm). Ignored at world size 1 and for --norm instance/none. docs/scaling.md.
  bool sync_bn = true;
};

// Runs training; returns the process exit code (0 done, 130 interrupted after saving).
// Throws rg::Error for bad configuration or data (the app prints it and exits 1).
int run_seg_training(const SegRunConfig& config);
// The same, data-parallel over `comm` (every rank calls it with the same configuration):
//  - batch_size is the *global* batch: each rank loads batch_size / world_size samples (it must
//    divide) from its shard of the training split (the loader shards by rank), so a run at
//    world size N takes the same optimizer steps per epoch as a single process;
//  - models start from rank 0's parameters and buffers; gradients are averaged in buckets
//    during backward (dist::GradientSync); batch norm is synchronized unless sync_bn is false;
//    this data-parallel path runs whenever `comm` is not a LocalCommunicator, also at world
//    size 1 under `mpirun -np 1` (where it must give the plain run's losses exactly);
//  - a CUDA training device gets an NCCL communicator built over `comm`
//    (dist::make_device_communicator) for the device collectives, one GPU per rank
//    (cuda:local_rank); host scalars keep going through `comm`;
//  - only rank 0 writes metrics.jsonl, samples, curves, checkpoints and summary.json; logged
//    training losses are averaged over ranks;
//  - validation and test are sharded: every rank evaluates its share of the batches and rank 0
//    computes the metrics from the gathered predictions (evaluate_segmentation), equal to a
//    single process's;
//  - a resumed run is read by rank 0 and broadcast (model, optimizer state, progress), so a
//    checkpoint written at world size N resumes at any world size M with the same global
//    batch_size (a different one is refused). The resume position is a global sample position:
//    global step k of an epoch is samples [k * batch_size, (k + 1) * batch_size) of that
//    epoch's shared permutation whatever the world size (rank r of M takes the ones at
//    r, r + M, ...), so every rank restarts at the right sample; with SyncBatchNorm the resumed
//    run continues like the run at N up to floating-point summation order
//    (tests/dist/mpi_seg_run.cpp measures it).
int run_seg_training(const SegRunConfig& config, dist::Communicator& comm);

// Metrics of G over a whole split (validation or test), per slice and per volume, plus the
// picture rows (the first sample_rows slices with foreground, spread over the split).
struct SegEvaluation {
  MetricSummary slices;   // per-slice metrics
  MetricSummary volumes;  // each subject's slices stacked back into a volume
  std::vector<SegGridRow> samples;
};

// Runs G in eval mode over `ds` in batches of batch_size. Every rank of `comm` calls it with the
// same model: rank r predicts batches r, r + N, ... (the batches one process would form, so
// each slice's probabilities are bit-identical to a single-process evaluation), the binarized
// predictions (and the probabilities of the picture rows) are gathered on rank 0 by summing
// zero-initialized buffers over the ranks (each value is written by one rank: the sum is exact),
// and rank 0 computes the metrics exactly as one process would: per-volume Dice and HD95 need
// whole volumes. The result is complete on rank 0; other ranks get an empty SegEvaluation.
SegEvaluation evaluate_segmentation(models::UnetGenerator& g, const data::SliceDataset& ds,
                                    int64_t batch_size, DType act_dtype, Device device,
                                    int64_t sample_rows, dist::Communicator& comm);

}  // namespace rg::app
