// The options every training application shares (data, run directory, schedule, batch, device,
// seed, logging, resume and the stop controls), as a base of each application's configuration,
// with the two things every application did with them: write them into config.json and hand
// them to the training loop.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "data/loader.h"
#include "train/settings.h"
#include "train/train_loop.h"

namespace rg::train {

struct RunOptions {
  std::string data;           // prepared HDF5 file (apps/prepare_data)
  std::string name;           // run name: the folder under out_dir
  std::string out_dir = "runs";
  int64_t epochs = 10;        // epochs at the initial learning rate
  int64_t epochs_decay = 10;  // epochs of decay after them (pix2pix n_epochs_decay)
  LrPolicy lr_policy = LrPolicy::Linear;
  int64_t batch_size = 16;    // the global batch
  double lr = 2e-4;
  std::string device = "auto";  // auto | cpu | cuda[:N] (train::resolve_device)
  uint64_t seed = 0;
  bool resume = false;
  int workers = 2;             // loader threads
  int64_t log_every = 10;      // steps between "train" lines in metrics.jsonl
  int64_t sample_rows = 4;     // rows of each picture grid
  int64_t max_train_batches = 0;  // cap on batches per epoch (0 = the whole split)
  // Steps per epoch whatever the training set's size (0 = the loader's batches): runs on
  // training sets of different sizes then get the same number of steps and of validations.
  int64_t epoch_steps = 0;
  bool progress = true;        // progress bar on stderr
  // Acts as if Ctrl-C arrived after this many steps of this invocation (0 = never); tests use
  // it to interrupt and resume at a chosen point.
  int64_t interrupt_after_steps = 0;
  // Stops after this many steps of this invocation (0 = never), saving checkpoints/latest as an
  // interruption does (so --resume continues), and returns 0.
  int64_t max_steps = 0;
};

// The shared options' entries of config.json (an application adds its own).
nlohmann::json run_options_json(const RunOptions& options);

// The loop's configuration for these options: run directory out_dir/name, schedule, batch,
// logging, resume and stop controls. The caller sets app, the score's names and config.
LoopConfig loop_config(const RunOptions& options);

// The training split as an endless, seeded stream of full batches starting at `global_step`
// (batch k depends only on (seed, k), so a resumed run continues where it stopped): split
// "train", the options' batch size, seed and workers, shuffled, drop_last (batch-norm
// statistics of a 1-sample tail batch are degenerate), no augmentation (the caller sets it).
data::LoaderOptions training_stream(const RunOptions& options, int64_t global_step);
// The checks every application makes before building anything: --data names an existing file
// (`data_kind` says what it should be, for the message) and --batch-size is positive.
void check_run_options(const RunOptions& options, const std::string& data_kind);
// Steps per epoch: epoch_steps when it is > 0 (the training stream is endless, so an epoch may
// be longer or shorter than one pass over the data); otherwise the loader's batches, capped by
// max_train_batches when that is > 0.
int64_t capped_steps_per_epoch(const RunOptions& options, int64_t batches_per_epoch);

}  // namespace rg::train
