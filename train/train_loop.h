// The training loop every application runs: epochs of steps, the learning-rate schedule,
// validation after each epoch with `latest` and `best` checkpoints, the test once at the end on
// the checkpoint chosen on validation, resume, Ctrl-C, data-parallel ranks, logging.
//
// An application implements TrainTask (its data, networks, step and evaluation) and calls
// run_training(). The run directory <run_dir> then holds:
//   config.json              the application's configuration
//   metrics.jsonl            one JSON object per line: "train" (mean of each step loss over the
//                            last log_every steps), "val" (every epoch), "test" (once)
//   checkpoints/latest.*     every module, optimizer and generator (train/checkpoint.h)
//   checkpoints/best.*       the same, for the epoch with the best validation score
//   samples/                 the application's pictures (TrainTask::validate and test write them)
//   curves/losses.png, curves/val_metrics.png
//   summary.json             the configuration, the best epoch and the test metrics
//
// Under mpirun (data parallelism) every rank runs the loop; only rank 0 writes files; logged
// losses are averaged over the ranks; Ctrl-C on any rank stops all of them at the same step; a
// resumed run is read by rank 0 and broadcast, so it may continue at another world size.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "train/alternating_update.h"
#include "train/checkpoint.h"
#include "train/run_context.h"
#include "train/settings.h"

namespace rg::train {

// The folders of a run directory.
struct RunFiles {
  std::filesystem::path run_dir, checkpoints, samples, curves;
  explicit RunFiles(const std::filesystem::path& dir);
  // samples/<prefix>NNN<ext> for an epoch (1-based, zero-padded to 3 digits).
  std::filesystem::path epoch_sample(const std::string& prefix, int64_t epoch,
                                     const std::string& ext) const;
};

// The result of a validation or test pass.
struct Evaluation {
  double score = 0;       // higher is better: chooses the `best` checkpoint (validation)
  nlohmann::json metrics;  // the fields of the "val" / "test" line
  std::string summary;    // one line for the terminal ("Dice 0.9712 IoU 0.9441 ...")
};

class TrainTask {
 public:
  virtual ~TrainTask() = default;
  // The networks, optimizers and generators a checkpoint holds (fixed for the run).
  virtual TrainState state() = 0;
  // The application's checkpoint entries (network configurations, ...).
  virtual CheckpointInfo checkpoint_info() const = 0;
  // Positions the training data stream at `global_step` (0 for a fresh run); called once,
  // after a resume has restored the state.
  virtual void start(int64_t global_step) = 0;
  virtual int64_t steps_per_epoch() const = 0;
  // One training step on the next batch. Losses stay on the device (no host read).
  virtual StepLosses step() = 0;
  // Validation after `epoch` (1-based): every rank calls it (a sharded evaluation gathers on rank
  // 0); rank 0's result counts. Writes the application's pictures under files.samples.
  virtual Evaluation validate(int64_t epoch, const RunFiles& files) = 0;
  // The test, once, with the best checkpoint loaded; like validate otherwise.
  virtual Evaluation test(const RunFiles& files) = 0;
  // Which logged losses and validation metrics the curves show.
  virtual std::vector<std::string> curve_losses() const = 0;
  virtual std::vector<std::string> curve_metrics() const = 0;
  // Data parallelism: makes the evaluation state agree across ranks before each evaluation
  // (e.g. batch-norm running statistics, which agree only with SyncBatchNorm).
  virtual void share_evaluation_state(dist::Communicator& /*comm*/) {}
};

struct LoopConfig {
  std::string app = "train";  // prefix of terminal messages
  std::filesystem::path run_dir;
  int64_t epochs = 10;        // epochs at the initial learning rate
  int64_t epochs_decay = 10;  // epochs of decay after them
  LrPolicy lr_policy = LrPolicy::Linear;
  double lr = 2e-4;
  int64_t batch_size = 1;   // the global batch (a resume with another one is refused)
  int64_t log_every = 10;   // steps between "train" lines
  bool progress = true;     // progress bar on stderr
  bool resume = false;      // continue from checkpoints/latest
  // Acts as if Ctrl-C arrived after this many steps of this invocation (0 = never).
  int64_t interrupt_after_steps = 0;
  // Stops after this many steps of this invocation, saving checkpoints/latest as an interruption
  // does, and returns 0 (0 = no limit).
  int64_t max_steps = 0;
  // How the terminal and summary.json name Evaluation::score ("Dice": "best_val_dice").
  std::string score_name = "score";
  std::string score_key = "score";
  nlohmann::json config;  // the application's configuration (config.json, checkpoints, summary)
};

// Runs (or resumes) the training; returns 0 when done or stopped at max_steps, 130 when
// interrupted (after saving checkpoints/latest). Throws rg::Error for bad configuration or
// data (before writing anything where it can be checked first).
int run_training(TrainTask& task, const LoopConfig& config, const RunContext& ctx);

// Formats a metric for the terminal: fixed with `digits` decimals ("0.0000", never "2.1e-05").
std::string fixed(double value, int digits = 4);

}  // namespace rg::train
