// Checkpoints of a training run over arbitrary named networks, optimizers and random generators,
// plus the loop's position and the application's JSON.
//
// <dir>/<tag>.safetensors holds the tensors: "<module>.<parameter or buffer>" for every module
// and "opt_<optimizer>.<state>" for every optimizer; its metadata repeats the JSON (key
// "roentgen") and carries the application's extra entries (e.g. "generator_config", which
// infer_seg and export read). <dir>/<tag>.json holds the JSON. Each file is written atomically
// (temporary file, fsync, rename) and the JSON last; both name the global step, so a pair torn
// by a crash between the two renames is detected on load.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "engine/rng.h"

namespace rg::nn {
class Module;
}
namespace rg::optim {
class Optimizer;
}
namespace rg::dist {
class Communicator;
}

namespace rg::train {

// What a checkpoint saves and restores, by name. Not owned.
struct TrainState {
  std::vector<std::pair<std::string, nn::Module*>> modules;
  std::vector<std::pair<std::string, optim::Optimizer*>> optimizers;
  // Generators whose position a resumed run must continue from (data augmentation, dropout,
  // penalty interpolation): their seed and offset are saved.
  std::vector<std::pair<std::string, Generator*>> generators;
};

// The state of a generator/discriminator application: modules and optimizers "G" and "D" (D and
// opt_d may be null: no discriminator), generators "train" (the step's randomness) and "dropout"
// (default_generator()). What train_seg, train_synth and train_recon checkpoint.
TrainState gan_pair_state(nn::Module* g, nn::Module* d, optim::Optimizer* opt_g, optim::Optimizer* opt_d,
                          Generator* train_gen);

// Where the loop is. A run that resumes continues from here exactly.
struct LoopProgress {
  int64_t epoch = 0;          // the epoch to run next (or in progress)
  int64_t step_in_epoch = 0;  // batches of that epoch already done
  int64_t global_step = 0;
  double best_score = 0;      // the best validation score so far (valid when best_epoch > 0)
  int64_t best_epoch = -1;    // 1-based; -1: no validation yet
  // The global batch and world size the run was trained with (0: unknown). With global_step
  // they fix the position in the global sample stream, whatever the world size.
  int64_t batch_size = 0;
  int64_t world_size = 0;
};

struct CheckpointInfo {
  std::string kind;     // the application ("seg"): a checkpoint of another kind is refused
  nlohmann::json run;   // the run's configuration
  nlohmann::json extra;  // the application's entries, merged into the JSON at the top level
  std::map<std::string, std::string> metadata;  // extra safetensors metadata entries
};

void save_checkpoint(const std::filesystem::path& dir, const std::string& tag,
                     const TrainState& state, const LoopProgress& progress,
                     const CheckpointInfo& info);
// Restores every module, optimizer and generator of `state` from <dir>/<tag>; returns the
// progress. Throws naming the file for a missing, torn, corrupt or foreign checkpoint, or one
// that lacks a network or tensor `state` needs. With `whole_state` (a run resuming itself) a
// network the checkpoint holds and `state` lacks is refused too: the run was trained with other
// settings (e.g. train_seg --ema adds G_ema), and continuing would mix two configurations;
// without it (inference) the networks not asked for are skipped.
LoopProgress load_checkpoint(const std::filesystem::path& dir, const std::string& tag,
                             const TrainState& state, const std::string& kind, bool whole_state = false);
// The checkpoint's JSON alone (validated as above), e.g. to read the run configuration.
nlohmann::json read_checkpoint_json(const std::filesystem::path& dir, const std::string& tag,
                                    const std::string& kind);

// Where a --checkpoint flag points: a run directory (its checkpoints/best), a checkpoints folder
// (its best), or <dir>/<tag> with or without .json/.safetensors. Returns (folder, tag); throws
// naming `flag` and what was expected (`app`: which application's run it should be).
std::pair<std::filesystem::path, std::string> checkpoint_location(const std::string& given,
                                                                  const std::string& flag,
                                                                  const std::string& app);

// Data parallelism: rank 0 read the checkpoint; every rank takes its progress, modules,
// optimizer state and generator positions (the others may not even see its file system).
void share_resumed_state(dist::Communicator& comm, LoopProgress& progress, const TrainState& state);

}  // namespace rg::train
