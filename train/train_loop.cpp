#include "train/train_loop.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>

#include "data/progress.h"
#include "engine/autograd.h"
#include "engine/checkpoint.h"
#include "engine/cpu_threads.h"
#include "engine/dist/communicator.h"
#include "engine/dist/data_parallel.h"
#include "engine/error.h"
#include "engine/nn/module.h"
#include "engine/ops/ops.h"
#include "engine/optim/optimizer.h"
#include "train/interrupt.h"
#include "train/plots.h"

namespace rg::train {

namespace fs = std::filesystem;
using nlohmann::json;

RunFiles::RunFiles(const fs::path& dir)
    : run_dir(dir), checkpoints(dir / "checkpoints"), samples(dir / "samples"), curves(dir / "curves") {}

fs::path RunFiles::epoch_sample(const std::string& prefix, int64_t epoch, const std::string& ext) const {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%03lld", static_cast<long long>(epoch));
  return samples / (prefix + buf + ext);
}

std::string fixed(double value, int digits) {
  if (!std::isfinite(value)) return std::isnan(value) ? "nan" : (value > 0 ? "inf" : "-inf");
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, value);
  return buf;
}

namespace {

// Appends one JSON object per line; flushed each time so a crash loses nothing logged.
class JsonlWriter {
 public:
  explicit JsonlWriter(const fs::path& path) : path_(path), out_(path, std::ios::app) {
    RG_CHECK(out_.good(), "cannot open ", path.string(), " for writing");
  }
  void write(const json& j) {
    out_ << j.dump() << '\n';
    out_.flush();
    RG_CHECK(out_.good(), "write to ", path_.string(), " failed");
  }

 private:
  fs::path path_;
  std::ofstream out_;
};

// The curves' data: the chosen training losses by step and validation metrics by epoch
// (re-read from metrics.jsonl when a run resumes).
class History {
 public:
  History(std::vector<std::string> losses, std::vector<std::string> metrics)
      : loss_names_(std::move(losses)), metric_names_(std::move(metrics)) {}

  void add(const json& j) {
    const bool train = j.value("kind", "") == "train";
    const bool val = j.value("kind", "") == "val";
    if (!train && !val) return;
    const double x = j.at(train ? "step" : "epoch").get<double>();
    for (const std::string& name : train ? loss_names_ : metric_names_) {
      if (!j.contains(name) || !j[name].is_number()) continue;
      Series& s = (train ? losses_ : metrics_)[name];
      s.name = val ? "val " + name : name;
      s.x.push_back(x);
      s.y.push_back(j[name].get<double>());
    }
  }
  void load(const fs::path& jsonl) {
    std::ifstream in(jsonl);
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      const json j = json::parse(line, nullptr, false);
      if (!j.is_discarded() && j.is_object()) add(j);
    }
  }
  void write_pngs(const fs::path& dir) const {
    auto ordered = [](const std::vector<std::string>& names, const std::map<std::string, Series>& by) {
      std::vector<Series> out;
      for (const std::string& n : names) {
        if (auto it = by.find(n); it != by.end()) out.push_back(it->second);
      }
      return out;
    };
    write_line_chart_png((dir / "losses.png").string(), "training losses",
                         ordered(loss_names_, losses_), "step", "loss");
    write_line_chart_png((dir / "val_metrics.png").string(), "validation",
                         ordered(metric_names_, metrics_), "epoch", "score");
  }

 private:
  std::vector<std::string> loss_names_, metric_names_;
  std::map<std::string, Series> losses_, metrics_;
};

// Each step loss since the last log line, kept on the device and read once per log line: the
// values of one name are joined into one tensor and copied to the host in a single read, then
// summed in double in step order (what summing host doubles step by step gives). Kept as
// values, not as a device sum, because the device computes in f32 (f64 has no CUDA kernels).
class LossAccumulator {
 public:
  void add(const StepLosses& losses) {
    for (const auto& [name, value] : losses.items()) {
      auto it = index_.find(name);
      if (it == index_.end()) {
        it = index_.emplace(name, values_.size()).first;
        values_.emplace_back(name, std::vector<Tensor>());
      }
      values_[it->second].second.push_back(value.reshape({1}));
    }
  }
  // Means over the accumulated steps, averaged over the ranks; resets. Every rank must call it
  // at the same step (with the same loss names). A loss missing from some steps is averaged over
  // the steps that had it.
  std::vector<std::pair<std::string, double>> take_means(dist::Communicator& comm) {
    NoGradGuard no_grad;
    std::vector<double> sums, counts;
    for (auto& [name, list] : values_) {
      const std::vector<double> v =
          (list.size() == 1 ? list[0] : concat(list, 0)).to_vector<double>();
      double sum = 0;
      for (double x : v) sum += x;
      sums.push_back(sum);
      counts.push_back(static_cast<double>(v.size()));
    }
    const int world = comm.world_size();
    if (world > 1) {
      comm.all_reduce_sum(sums);
      for (double& x : sums) x /= world;
    }
    std::vector<std::pair<std::string, double>> out;
    for (size_t i = 0; i < values_.size(); ++i) {
      out.emplace_back(values_[i].first, sums[i] * (1.0 / counts[i]));
    }
    values_.clear();
    index_.clear();
    return out;
  }

 private:
  std::vector<std::pair<std::string, std::vector<Tensor>>> values_;
  std::map<std::string, size_t> index_;
};

bool agree_to_stop(bool stop, dist::Communicator& comm) {
  if (comm.world_size() == 1) return stop;
  std::vector<double> v{stop ? 1.0 : 0.0};
  comm.all_reduce_sum(v);
  return v[0] > 0;
}

}  // namespace

int run_training(TrainTask& task, const LoopConfig& c, const RunContext& ctx) {
  RG_CHECK(ctx.comm != nullptr, "run_training: no communicator in the run context");
  RG_CHECK(c.epochs >= 0 && c.epochs_decay >= 0 && c.epochs + c.epochs_decay > 0,
           "--epochs and --epochs-decay must be >= 0 with at least one epoch in total");
  RG_CHECK(c.lr > 0, "--lr must be > 0, got ", c.lr);
  RG_CHECK(c.log_every > 0, "--log-every must be > 0, got ", c.log_every);
  dist::Communicator& comm = *ctx.comm;
  const bool root = ctx.root();
  const int world = ctx.world_size;
  const int64_t total_epochs = c.epochs + c.epochs_decay;
  auto schedule = make_lr_schedule(c.lr_policy, c.lr, c.epochs, c.epochs_decay);
  const RunFiles files(c.run_dir);
  const TrainState state = task.state();
  const CheckpointInfo info = task.checkpoint_info();
  // Each optimizer follows the schedule in proportion to the learning rate its task built it
  // with (train_recon's --d-lr gives D its own), so the ratio holds through the decay.
  std::vector<double> lr_ratio;
  for (const auto& [name, opt] : state.optimizers) lr_ratio.push_back(opt->lr() / c.lr);

  if (root && !c.resume && fs::exists(files.run_dir / "metrics.jsonl")) {
    RG_FAIL("run directory ", files.run_dir.string(),
            " already holds a run: pass --resume to continue it, or pick another --name");
  }

  LoopProgress progress;
  History history(task.curve_losses(), task.curve_metrics());
  if (c.resume) {
    if (root) progress = load_checkpoint(files.checkpoints, "latest", state, info.kind, /*whole_state=*/true);
    if (world > 1) share_resumed_state(comm, progress, state);
    // The position is global step x global batch: a different batch would put every rank at
    // other samples (and other epoch boundaries) than the run it continues.
    RG_CHECK(progress.batch_size == 0 || progress.batch_size == c.batch_size, "--resume: ",
             (files.checkpoints / "latest.json").string(), " was trained with --batch-size ",
             progress.batch_size, " (the global batch); resume with the same --batch-size, got ",
             c.batch_size);
    if (root) {
      history.load(files.run_dir / "metrics.jsonl");
      std::cerr << c.app << ": resuming " << files.run_dir.string() << " at epoch "
                << progress.epoch + 1 << ", step " << progress.step_in_epoch << " (global step "
                << progress.global_step << ", sample " << progress.global_step * c.batch_size
                << " of the global stream)";
      if (progress.world_size > 0 && progress.world_size != world) {
        std::cerr << "; written by " << progress.world_size << " ranks, continuing on " << world;
      }
      std::cerr << "\n";
    }
  }
  progress.batch_size = c.batch_size;
  progress.world_size = world;
  // Replicas start from rank 0's weights (a fresh run: the seeds agree anyway; this guards
  // against any divergence).
  if (ctx.data_parallel) {
    for (const auto& [name, module] : state.modules) dist::broadcast_module_state(*module, comm);
  }
  task.start(progress.global_step);
  const int64_t steps_per_epoch = task.steps_per_epoch();
  RG_CHECK(steps_per_epoch > 0, "the training split has no full batch of ", c.batch_size,
           " samples: lower --batch-size");

  // Everything that can be checked has been: only now does the run directory get files, so a
  // refused run leaves nothing that a corrected rerun would mistake for a run to resume.
  std::unique_ptr<JsonlWriter> log;
  if (root) {
    for (const fs::path& p : {files.checkpoints, files.samples, files.curves}) fs::create_directories(p);
    log = std::make_unique<JsonlWriter>(files.run_dir / "metrics.jsonl");
    write_file_atomic((files.run_dir / "config.json").string(), c.config.dump(2) + "\n");
  }
  auto save = [&](const std::string& tag) { save_checkpoint(files.checkpoints, tag, state, progress, info); };

  install_interrupt_handler();
  // CPU runs: as many threads as other processes leave cores (engine/cpu_threads.h).
  CpuThreadGovernor cpu_threads;
  bool interrupted = false, reached_max_steps = false;
  int64_t steps_this_run = 0;
  for (int64_t epoch = progress.epoch; epoch < total_epochs; ++epoch) {
    const double lr = schedule->lr_at(epoch);
    for (size_t i = 0; i < state.optimizers.size(); ++i) state.optimizers[i].second->set_lr(lr * lr_ratio[i]);
    char label[64];
    std::snprintf(label, sizeof(label), "epoch %03lld/%lld", static_cast<long long>(epoch + 1),
                  static_cast<long long>(total_epochs));
    data::ProgressBar bar(label, static_cast<double>(steps_per_epoch), "steps", c.progress && root);
    bar.update(static_cast<double>(progress.step_in_epoch));
    LossAccumulator losses;
    while (progress.step_in_epoch < steps_per_epoch) {
      if (const std::string note = cpu_threads.update(); !note.empty() && root) bar.note(note);
      losses.add(task.step());
      ++progress.step_in_epoch;
      ++progress.global_step;
      if (progress.global_step % c.log_every == 0) {
        json j{{"kind", "train"}, {"epoch", epoch + 1}, {"step", progress.global_step}, {"lr", lr}};
        for (const auto& [name, value] : losses.take_means(comm)) j[name] = value;
        if (root) log->write(j);
        history.add(j);
      }
      bar.update(static_cast<double>(progress.step_in_epoch));
      ++steps_this_run;
      // Ctrl-C reaches the ranks at different steps: they stop together.
      interrupted = agree_to_stop(interrupt_requested() || (c.interrupt_after_steps > 0 &&
                                                            steps_this_run >= c.interrupt_after_steps),
                                  comm);
      reached_max_steps = !interrupted && c.max_steps > 0 && steps_this_run >= c.max_steps;
      if (interrupted || reached_max_steps) break;
    }
    bar.finish();
    if (interrupted || reached_max_steps) {
      progress.epoch = epoch;
      if (!root) break;
      save("latest");
      std::cerr << c.app << ": " << (interrupted ? "interrupted" : "stopped at --max-steps")
                << "; saved " << (files.checkpoints / "latest.safetensors").string() << " at epoch "
                << epoch + 1 << " step " << progress.step_in_epoch << "; continue with --resume\n";
      break;
    }

    // End of epoch: validation on every rank, then log, pictures and checkpoints on rank 0 (the
    // others wait for it in the next collective).
    if (ctx.data_parallel) task.share_evaluation_state(comm);
    const Evaluation val = task.validate(epoch + 1, files);
    progress.epoch = epoch + 1;
    progress.step_in_epoch = 0;
    if (!root) continue;
    json vj = val.metrics.is_object() ? val.metrics : json::object();
    vj["kind"] = "val";
    vj["epoch"] = epoch + 1;
    vj["step"] = progress.global_step;
    vj["lr"] = lr;
    log->write(vj);
    history.add(vj);
    history.write_pngs(files.curves);
    const bool best = progress.best_epoch < 0 || val.score > progress.best_score;
    if (best) {
      progress.best_score = val.score;
      progress.best_epoch = epoch + 1;
    }
    std::cerr << "  val: " << val.summary << "  [best " << c.score_name << " "
              << fixed(progress.best_score) << " at epoch " << progress.best_epoch << "]\n";
    save("latest");
    if (best) save("best");
  }
  if (interrupted) return 130;
  if (reached_max_steps) return 0;

  // The test: once, with the checkpoint chosen on validation (read by rank 0, broadcast, and
  // evaluated by every rank on its share).
  std::vector<double> best_epoch{root ? static_cast<double>(progress.best_epoch) : 0.0};
  if (world > 1) comm.all_reduce_sum(best_epoch);
  RG_CHECK(best_epoch[0] > 0, "no validation epoch completed: nothing to test");
  if (root) load_checkpoint(files.checkpoints, "best", state, info.kind, /*whole_state=*/true);
  if (ctx.data_parallel) {
    for (const auto& [name, module] : state.modules) dist::broadcast_module_state(*module, comm);
  }
  const Evaluation test = task.test(files);
  if (!root) return 0;
  json tj = test.metrics.is_object() ? test.metrics : json::object();
  tj["kind"] = "test";
  tj["checkpoint_epoch"] = progress.best_epoch;
  if (world > 1) tj["world_size"] = world;
  log->write(tj);
  json summary{{"config", c.config},
               {"best_epoch", progress.best_epoch},
               {"best_val_" + c.score_key, progress.best_score},
               {"test", tj},
               {"device", ctx.device.str()}};
  write_file_atomic((files.run_dir / "summary.json").string(), summary.dump(2) + "\n");
  std::cerr << c.app << ": test (checkpoint of epoch " << progress.best_epoch << ", chosen on "
            << "validation " << c.score_name << "): " << test.summary << "\n"
            << c.app << ": results in " << files.run_dir.string() << " (metrics.jsonl, summary.json, "
            << "curves/, samples/)\n";
  return 0;
}

}  // namespace rg::train
