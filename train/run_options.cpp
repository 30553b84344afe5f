#include "train/run_options.h"

#include <algorithm>
#include <filesystem>

#include "engine/error.h"

namespace rg::train {

nlohmann::json run_options_json(const RunOptions& o) {
  return nlohmann::json{{"data", o.data},
                        {"name", o.name},
                        {"out_dir", o.out_dir},
                        {"epochs", o.epochs},
                        {"epochs_decay", o.epochs_decay},
                        {"lr_policy", lr_policy_name(o.lr_policy)},
                        {"batch_size", o.batch_size},
                        {"lr", o.lr},
                        {"device", o.device},
                        {"seed", o.seed},
                        {"max_train_batches", o.max_train_batches},
                        {"epoch_steps", o.epoch_steps}};
}

LoopConfig loop_config(const RunOptions& o) {
  LoopConfig loop;
  loop.run_dir = std::filesystem::path(o.out_dir) / o.name;
  loop.epochs = o.epochs;
  loop.epochs_decay = o.epochs_decay;
  loop.lr_policy = o.lr_policy;
  loop.lr = o.lr;
  loop.batch_size = o.batch_size;
  loop.log_every = o.log_every;
  loop.progress = o.progress;
  loop.resume = o.resume;
  loop.interrupt_after_steps = o.interrupt_after_steps;
  loop.max_steps = o.max_steps;
  return loop;
}

data::LoaderOptions training_stream(const RunOptions& c, int64_t global_step) {
  data::LoaderOptions lo;
  lo.split = "train";
  lo.batch_size = c.batch_size;
  lo.shuffle = true;
  lo.seed = c.seed;
  lo.epochs = 0;
  lo.workers = c.workers;
  lo.drop_last = true;
  lo.augment = false;
  lo.start_batch = global_step;
  return lo;
}

int64_t capped_steps_per_epoch(const RunOptions& c, int64_t batches_per_epoch) {
  if (c.epoch_steps > 0) return c.epoch_steps;
  return c.max_train_batches > 0 ? std::min(c.max_train_batches, batches_per_epoch) : batches_per_epoch;
}

void check_run_options(const RunOptions& c, const std::string& data_kind) {
  RG_CHECK(!c.data.empty(), "--data: no ", data_kind, " given");
  std::error_code ec;
  RG_CHECK(std::filesystem::exists(c.data, ec), "--data: file ", c.data, " does not exist");
  RG_CHECK(c.batch_size > 0, "--batch-size must be > 0, got ", c.batch_size);
  RG_CHECK(c.epoch_steps == 0 || c.max_train_batches == 0,
           "--epoch-steps and --max-train-batches both set the length of an epoch: give one");
}

}  // namespace rg::train
