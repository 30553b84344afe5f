#include "apps/common/seg_run.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "apps/common/gan_trainer.h"
#include "apps/common/interrupt.h"
#include "apps/common/plots.h"
#include "apps/common/seg_metrics.h"
#include "data/loader.h"
#include "data/progress.h"
#include "data/slice_dataset.h"
#include "engine/checkpoint.h"
#include "engine/conv_backend.h"
#include "engine/dist/communicator.h"
#include "engine/dist/data_parallel.h"
#include "engine/dist/sync_batch_norm.h"
#include "engine/math_mode.h"
#include "engine/roentgen.h"
#include "models/patchgan.h"
#include "models/unet.h"

namespace rg::app {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kCheckpointFormat = "roentgen-seg-checkpoint-1";

json config_to_json(const SegRunConfig& c) {
  return json{{"data", c.data},           {"name", c.name},
              {"out_dir", c.out_dir},     {"epochs", c.epochs},
              {"epochs_decay", c.epochs_decay}, {"lr_policy", c.lr_policy},
              {"batch_size", c.batch_size}, {"lr", c.lr},
              {"beta1", c.beta1},         {"lambda_seg", c.lambda_seg},
              {"gan_mode", c.gan_mode},   {"norm", c.norm},
              {"ngf", c.ngf},             {"ndf", c.ndf},
              {"n_layers", c.n_layers},   {"num_downs", c.num_downs},
              {"dropout", c.dropout},     {"precision", c.precision},
              {"device", c.device},       {"conv_backend", c.conv_backend},
              {"seed", c.seed},           {"augment", c.augment},
              {"max_train_batches", c.max_train_batches}};
}

// The device the run uses: "auto" is the first GPU when one is present, else the CPU.
Device resolve_device(const SegRunConfig& c) {
  if (c.device == "auto") return cuda_device_count() > 0 ? Device::cuda(0) : Device::cpu();
  const Device d = Device::parse(c.device);
  if (d.is_cuda()) {
    const int count = cuda_device_count();
    RG_CHECK(d.index < count, "--device ", c.device, ": ", count,
             " CUDA device(s) usable by this process (a CPU-only build or no GPU has 0)");
  }
  return d;
}

DType activation_dtype(const SegRunConfig& c, Device device) {
  set_float32_math(Float32Math::Exact);
  if (c.precision == "fp32") return DType::F32;
  if (c.precision == "tf32") {
    if (device.is_cpu()) std::cerr << "train_seg: --precision tf32 on the CPU computes in fp32\n";
    set_float32_math(Float32Math::Tf32);
    return DType::F32;
  }
  if (c.precision == "bf16") return DType::BF16;
  RG_FAIL("--precision: unknown value '", c.precision, "' (expected fp32, tf32 or bf16)");
}

int64_t auto_num_downs(int64_t h, int64_t w) {
  int64_t n = 0;
  while (n < 8 && h % (int64_t{2} << n) == 0 && w % (int64_t{2} << n) == 0) ++n;
  return n;
}

std::unique_ptr<optim::LrSchedule> make_schedule(const SegRunConfig& c) {
  if (c.lr_policy == "linear") return std::make_unique<optim::LinearDecayLr>(c.lr, c.epochs, c.epochs_decay);
  if (c.lr_policy == "cosine") return std::make_unique<optim::CosineLr>(c.lr, c.epochs + c.epochs_decay);
  RG_FAIL("--lr-policy: unknown value '", c.lr_policy, "' (expected linear or cosine)");
}

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

// Loss and metric history for the curves (re-read from metrics.jsonl on resume).
struct History {
  Series d_loss{"D loss", {}, {}}, g_adv{"G adversarial", {}, {}}, g_seg{"G BCE + Dice", {}, {}};
  Series val_dice{"val Dice (slice)", {}, {}}, val_iou{"val IoU (slice)", {}, {}},
      val_dice_volume{"val Dice (volume)", {}, {}};

  void add_train(const json& j) {
    const double x = j.at("step").get<double>();
    d_loss.x.push_back(x);
    d_loss.y.push_back(j.at("d_loss").get<double>());
    g_adv.x.push_back(x);
    g_adv.y.push_back(j.at("g_adv").get<double>());
    g_seg.x.push_back(x);
    g_seg.y.push_back(j.at("g_bce").get<double>() + j.at("g_dice").get<double>());
  }
  void add_val(const json& j) {
    const double x = j.at("epoch").get<double>();
    val_dice.x.push_back(x);
    val_dice.y.push_back(j.at("dice").get<double>());
    val_iou.x.push_back(x);
    val_iou.y.push_back(j.at("iou").get<double>());
    val_dice_volume.x.push_back(x);
    val_dice_volume.y.push_back(j.at("dice_volume").get<double>());
  }
  void load(const fs::path& jsonl) {
    std::ifstream in(jsonl);
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      const json j = json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.contains("kind")) continue;
      if (j["kind"] == "train") add_train(j);
      if (j["kind"] == "val") add_val(j);
    }
  }
  void write_pngs(const fs::path& dir, bool adversarial) const {
    std::vector<Series> losses{g_seg};
    if (adversarial) {
      losses.push_back(d_loss);
      losses.push_back(g_adv);
    }
    write_line_chart_png((dir / "losses.png").string(), "training losses", losses, "step", "loss");
    write_line_chart_png((dir / "val_metrics.png").string(), "validation", {val_dice, val_iou, val_dice_volume},
                         "epoch", "score");
  }
};

json evaluation_json(const SegEvaluation& e) {
  return json{{"dice", e.slices.dice.mean},
              {"dice_std", e.slices.dice.std},
              {"dice_nonempty", e.slices.dice_nonempty.mean},
              {"iou", e.slices.iou.mean},
              {"hd95", e.slices.hd95.mean},
              {"hd95_infinite", e.slices.hd95_infinite},
              {"slices", e.slices.items},
              {"volumes", e.volumes.items},
              {"dice_volume", e.volumes.dice.mean},
              {"iou_volume", e.volumes.iou.mean},
              {"hd95_volume", e.volumes.hd95.mean}};
}

// Everything that makes a run resumable. Saved as one safetensors file (tensors) plus one JSON
// file (progress), each written atomically; the JSON is written last and names the step, which
// the safetensors metadata repeats, so a torn pair is detected on load.
struct Progress {
  int64_t epoch = 0;          // epoch to run next (or in progress)
  int64_t step_in_epoch = 0;  // batches of that epoch already done
  int64_t global_step = 0;
  double best_val_dice = -1.0;
  int64_t best_epoch = -1;
  uint64_t rng_offset = 0;          // the trainer's generator (WGAN-GP interpolation)
  uint64_t dropout_rng_offset = 0;  // the process generator (dropout masks)
  // Read from a checkpoint (0: not recorded): the global batch it was trained with and its
  // world size. Together with global_step they fix the global sample position.
  int64_t batch_size = 0;
  int64_t world_size = 0;
};

void save_checkpoint(const fs::path& dir, const std::string& tag, const SegRunConfig& config,
                     const Progress& progress, int world_size, const models::UnetGenerator& g,
                     const models::PatchDiscriminator* d, const optim::Optimizer& opt_g,
                     const optim::Optimizer* opt_d) {
  NamedTensors tensors = module_state(g, "G.");
  if (d) {
    NamedTensors ds = module_state(*d, "D.");
    tensors.insert(tensors.end(), ds.begin(), ds.end());
  }
  for (auto& [name, t] : opt_g.state()) tensors.emplace_back("opt_G." + name, t);
  if (opt_d) {
    for (auto& [name, t] : opt_d->state()) tensors.emplace_back("opt_D." + name, t);
  }
  json meta{{"format", kCheckpointFormat},
            {"epoch", progress.epoch},
            {"step_in_epoch", progress.step_in_epoch},
            {"global_step", progress.global_step},
            // The resume position in samples of the global stream (global_step batches of the
            // global batch_size): the same at every world size (seg_run.h).
            {"samples_seen", progress.global_step * config.batch_size},
            {"world_size", world_size},
            {"best_val_dice", progress.best_val_dice},
            {"best_epoch", progress.best_epoch},
            {"rng_seed", config.seed},
            {"rng_offset", progress.rng_offset},
            {"dropout_rng_offset", progress.dropout_rng_offset},
            {"opt_G_steps", opt_g.step_count()},
            {"opt_D_steps", opt_d ? opt_d->step_count() : 0},
            {"generator", models::to_json(g.config)},
            {"run", config_to_json(config)}};
  if (d) meta["discriminator"] = models::to_json(d->config);
  save_safetensors((dir / (tag + ".safetensors")).string(), tensors,
                   {{"roentgen", meta.dump()}, {"generator_config", models::to_json(g.config).dump()}});
  write_file_atomic((dir / (tag + ".json")).string(), meta.dump(2) + "\n");
}

// Loads a checkpoint into the models and optimizers; returns its progress.
Progress load_checkpoint(const fs::path& dir, const std::string& tag, models::UnetGenerator& g,
                         models::PatchDiscriminator* d, optim::Optimizer& opt_g,
                         optim::Optimizer* opt_d) {
  const fs::path json_path = dir / (tag + ".json");
  const fs::path st_path = dir / (tag + ".safetensors");
  RG_CHECK(fs::exists(json_path), "checkpoint ", json_path.string(), " does not exist");
  std::ifstream in(json_path);
  const json meta = json::parse(in, nullptr, false);
  RG_CHECK(!meta.is_discarded() && meta.value("format", "") == kCheckpointFormat, "checkpoint ",
           json_path.string(), " is not a roentgen segmentation checkpoint (corrupt JSON or wrong format)");
  SafetensorsFile file = load_safetensors(st_path.string());
  const json inner = json::parse(file.metadata["roentgen"], nullptr, false);
  RG_CHECK(!inner.is_discarded() && inner.value("global_step", int64_t{-1}) == meta.at("global_step").get<int64_t>(),
           "checkpoint ", st_path.string(), " does not belong to ", json_path.string(),
           " (a save was interrupted between the two files); use the other checkpoint");
  NamedTensors g_state, d_state, og_state, od_state;
  for (auto& [name, t] : file.tensors) {
    if (name.rfind("G.", 0) == 0) g_state.emplace_back(name.substr(2), t);
    else if (name.rfind("D.", 0) == 0) d_state.emplace_back(name.substr(2), t);
    else if (name.rfind("opt_G.", 0) == 0) og_state.emplace_back(name.substr(6), t);
    else if (name.rfind("opt_D.", 0) == 0) od_state.emplace_back(name.substr(6), t);
  }
  load_module_state(g, g_state);
  if (d) load_module_state(*d, d_state);
  auto restore_optimizer = [&](optim::Optimizer& opt, const NamedTensors& state, int64_t steps,
                               const char* which) {
    std::map<std::string, Tensor> by_name(state.begin(), state.end());
    for (auto& [name, slot] : opt.state()) {
      auto it = by_name.find(name);
      RG_CHECK(it != by_name.end(), "checkpoint ", st_path.string(), " lacks optimizer state ",
               which, ".", name);
      Tensor target = slot;
      target.copy_(it->second);
    }
    opt.set_step_count(steps);
  };
  restore_optimizer(opt_g, og_state, meta.at("opt_G_steps").get<int64_t>(), "opt_G");
  if (opt_d) restore_optimizer(*opt_d, od_state, meta.at("opt_D_steps").get<int64_t>(), "opt_D");
  Progress p;
  p.epoch = meta.at("epoch").get<int64_t>();
  p.step_in_epoch = meta.at("step_in_epoch").get<int64_t>();
  p.global_step = meta.at("global_step").get<int64_t>();
  p.best_val_dice = meta.at("best_val_dice").get<double>();
  p.best_epoch = meta.at("best_epoch").get<int64_t>();
  p.rng_offset = meta.at("rng_offset").get<uint64_t>();
  p.dropout_rng_offset = meta.at("dropout_rng_offset").get<uint64_t>();
  if (meta.contains("run")) p.batch_size = meta["run"].value("batch_size", int64_t{0});
  p.world_size = meta.value("world_size", int64_t{0});
  return p;
}

// Data parallelism: every rank takes rank 0's progress, models and optimizer state (rank 0 read
// the checkpoint; the others may not even see the file system it is on).
void share_resumed_state(dist::Communicator& comm, Progress& p, models::UnetGenerator& g,
                         models::PatchDiscriminator* d, optim::Optimizer& opt_g,
                         optim::Optimizer* opt_d) {
  // Integers and doubles travel as raw 8-byte words (exact, whatever their range).
  int64_t words[11] = {p.epoch, p.step_in_epoch, p.global_step, 0, p.best_epoch, 0, 0,
                       opt_g.step_count(), opt_d ? opt_d->step_count() : 0, p.batch_size,
                       p.world_size};
  std::memcpy(&words[3], &p.best_val_dice, 8);
  std::memcpy(&words[5], &p.rng_offset, 8);
  std::memcpy(&words[6], &p.dropout_rng_offset, 8);
  Tensor packed = Tensor::empty({11}, DType::F64);
  std::memcpy(packed.raw_data(), words, sizeof(words));
  comm.broadcast(packed, 0);
  std::memcpy(words, packed.raw_data(), sizeof(words));
  p.epoch = words[0];
  p.step_in_epoch = words[1];
  p.global_step = words[2];
  std::memcpy(&p.best_val_dice, &words[3], 8);
  p.best_epoch = words[4];
  std::memcpy(&p.rng_offset, &words[5], 8);
  std::memcpy(&p.dropout_rng_offset, &words[6], 8);
  opt_g.set_step_count(words[7]);
  if (opt_d) opt_d->set_step_count(words[8]);
  p.batch_size = words[9];
  p.world_size = words[10];
  dist::broadcast_module_state(g, comm);
  if (d) dist::broadcast_module_state(*d, comm);
  auto state_tensors = [](const optim::Optimizer& opt) {
    std::vector<Tensor> out;
    for (auto& [name, t] : opt.state()) out.push_back(t);
    return out;
  };
  dist::broadcast_tensors(state_tensors(opt_g), comm);
  if (opt_d) dist::broadcast_tensors(state_tensors(*opt_d), comm);
}

std::string epoch_file(const char* prefix, int64_t epoch, const char* ext) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%s%03lld%s", prefix, static_cast<long long>(epoch), ext);
  return buf;
}

// Binarized predictions travel as 32 mask bits per double word (an integer below 2^32: exact in
// a double, and exact when summed with the zeros of the other ranks).
constexpr int64_t kMaskBitsPerWord = 32;

}  // namespace

SegEvaluation evaluate_segmentation(models::UnetGenerator& g, const data::SliceDataset& ds,
                                    int64_t batch_size, DType act_dtype, Device device,
                                    int64_t sample_rows, dist::Communicator& comm) {
  RG_CHECK(batch_size > 0, "evaluate_segmentation: batch_size must be > 0, got ", batch_size);
  NoGradGuard no_grad;
  g.eval();
  const int64_t h = ds.height(), w = ds.width(), hw = h * w, n = ds.size();
  const int world = comm.world_size(), rank = comm.rank();
  const bool root = rank == 0;
  const int64_t words_per_slice = (hw + kMaskBitsPerWord - 1) / kMaskBitsPerWord;
  const int64_t batches = (n + batch_size - 1) / batch_size;

  // The picture rows depend only on the targets, so every rank knows which slices they are:
  // the first sample_rows slices with foreground whose index is a multiple of the stride (spread
  // over the split rather than neighbouring slices).
  const int64_t sample_stride = std::max<int64_t>(1, n / std::max<int64_t>(1, sample_rows * 2));
  std::vector<int64_t> sample_slices;
  {
    std::vector<float> image(static_cast<size_t>(hw)), mask(static_cast<size_t>(hw));
    for (int64_t idx = 0; idx < n && static_cast<int64_t>(sample_slices.size()) < sample_rows;
         idx += sample_stride) {
      ds.read(idx, image.data(), mask.data());
      if (std::any_of(mask.begin(), mask.end(), [](float v) { return v >= 0.5f; })) {
        sample_slices.push_back(idx);
      }
    }
  }

  MetricAccumulator acc;
  SegEvaluation out;
  std::vector<float> image(static_cast<size_t>(hw)), mask(static_cast<size_t>(hw));
  std::vector<uint8_t> pred_bits(static_cast<size_t>(hw)), target_bits(static_cast<size_t>(hw));
  // Rounds of `world` batches: rank r predicts batch round_first + r, then the round's
  // predictions are summed onto every rank (rank 0 uses them) and the next round starts.
  for (int64_t round_first = 0; round_first < batches; round_first += world) {
    const int64_t round_begin = round_first * batch_size;
    const int64_t round_end = std::min(n, (round_first + world) * batch_size);
    std::vector<double> words(static_cast<size_t>((round_end - round_begin) * words_per_slice),
                              0.0);
    std::vector<int64_t> round_samples;  // dataset indices of the picture rows in this round
    for (int64_t idx : sample_slices) {
      if (idx >= round_begin && idx < round_end) round_samples.push_back(idx);
    }
    std::vector<double> sample_probs(round_samples.size() * static_cast<size_t>(hw), 0.0);

    const int64_t my_batch = round_first + rank;
    if (my_batch < batches) {
      const int64_t start = my_batch * batch_size;
      const int64_t count = std::min(batch_size, n - start);
      Tensor x = Tensor::empty({count, h, w, 1});
      Tensor m = Tensor::empty({count, h, w, 1});
      for (int64_t i = 0; i < count; ++i) {
        ds.read(start + i, x.data<float>() + i * hw, m.data<float>() + i * hw);
      }
      const Tensor logits = g.forward(x.to(device).to(act_dtype));
      Tensor probs = sigmoid(logits).to(DType::F32).to(Device::cpu()).contiguous();
      const float* p = probs.data<float>();
      for (int64_t i = 0; i < count; ++i) {
        const int64_t idx = start + i;
        const float* pi = p + i * hw;
        double* dst = words.data() + (idx - round_begin) * words_per_slice;
        for (int64_t k = 0; k < words_per_slice; ++k) {
          uint64_t bits = 0;
          const int64_t end = std::min(hw, (k + 1) * kMaskBitsPerWord);
          // The accumulator's threshold (0.5; NaN is background, as in binarize()).
          for (int64_t j = k * kMaskBitsPerWord; j < end; ++j) {
            if (pi[j] >= 0.5f) bits |= uint64_t{1} << (j - k * kMaskBitsPerWord);
          }
          dst[k] = static_cast<double>(bits);
        }
        for (size_t r = 0; r < round_samples.size(); ++r) {
          if (round_samples[r] != idx) continue;
          std::copy(pi, pi + hw, sample_probs.begin() + static_cast<std::ptrdiff_t>(r * hw));
        }
      }
    }
    if (world > 1) {
      comm.all_reduce_sum(words);
      if (!sample_probs.empty()) comm.all_reduce_sum(sample_probs);
    }
    if (!root) continue;
    for (int64_t idx = round_begin; idx < round_end; ++idx) {
      const double* src = words.data() + (idx - round_begin) * words_per_slice;
      for (int64_t k = 0; k < words_per_slice; ++k) {
        const auto bits = static_cast<uint64_t>(src[k]);
        const int64_t end = std::min(hw, (k + 1) * kMaskBitsPerWord);
        for (int64_t j = k * kMaskBitsPerWord; j < end; ++j) {
          pred_bits[static_cast<size_t>(j)] = (bits >> (j - k * kMaskBitsPerWord)) & 1u;
        }
      }
      ds.read(idx, image.data(), mask.data());
      for (size_t j = 0; j < target_bits.size(); ++j) target_bits[j] = mask[j] >= 0.5f;
      acc.add_slice(ds.subject(idx), ds.slice(idx), pred_bits.data(), target_bits.data(),
                    static_cast<int>(h), static_cast<int>(w));
      for (size_t r = 0; r < round_samples.size(); ++r) {
        if (round_samples[r] != idx) continue;
        SegGridRow row;
        row.height = static_cast<int>(h);
        row.width = static_cast<int>(w);
        row.image = image;
        row.target = mask;
        row.prob.assign(sample_probs.begin() + static_cast<std::ptrdiff_t>(r * hw),
                        sample_probs.begin() + static_cast<std::ptrdiff_t>((r + 1) * hw));
        out.samples.push_back(std::move(row));
      }
    }
  }
  g.train();
  if (!root) return {};
  out.slices = acc.slice_summary();
  out.volumes = acc.volume_summary();
  return out;
}

namespace {

// One GPU per rank: a CUDA device under a multi-rank launch is the rank's local GPU.
Device device_for_rank(Device requested, const dist::Communicator& comm) {
  if (!requested.is_cuda() || comm.world_size() == 1) return requested;
  if (requested.index != 0 && comm.rank() == 0) {
    std::cerr << "train_seg: --device " << requested.str() << " under " << comm.world_size()
              << " ranks: each rank uses cuda:<local rank> instead\n";
  }
  return Device::cuda(comm.local_rank());
}

// Sharded evaluation runs rank 0's model on every rank. Parameters agree already (same
// averaged updates); batch-norm running statistics agree only with SyncBatchNorm, so they are
// broadcast (they are used in eval mode only: training is unaffected).
void share_eval_state(models::UnetGenerator& g, dist::Communicator& comm) {
  std::vector<Tensor> buffers;
  for (auto& [name, t] : g.named_buffers()) buffers.push_back(t);
  dist::broadcast_tensors(buffers, comm);
}

}  // namespace

int run_seg_training(const SegRunConfig& c) {
  dist::LocalCommunicator local;
  return run_seg_training(c, local);
}

int run_seg_training(const SegRunConfig& c, dist::Communicator& host_comm) {
  RG_CHECK(!c.data.empty(), "--data: no prepared HDF5 file given");
  RG_CHECK(fs::exists(c.data), "--data: file ", c.data, " does not exist");
  RG_CHECK(c.batch_size > 0, "--batch-size must be > 0, got ", c.batch_size);
  RG_CHECK(c.epochs >= 0 && c.epochs_decay >= 0 && c.epochs + c.epochs_decay > 0,
           "--epochs and --epochs-decay must be >= 0 with at least one epoch in total");
  RG_CHECK(c.lr > 0, "--lr must be > 0, got ", c.lr);
  // Empty: the environment (RG_CONV_BACKEND) or auto decides.
  if (!c.conv_backend.empty()) set_conv_backend(parse_conv_backend(c.conv_backend, "--conv-backend"));
  const GanMode gan_mode = gan_mode_from_name(c.gan_mode);
  const Device device = device_for_rank(resolve_device(c), host_comm);
  const DType act_dtype = activation_dtype(c, device);
  auto schedule = make_schedule(c);
  const int64_t total_epochs = c.epochs + c.epochs_decay;
  // Data parallelism whenever launched as a job (mpirun), even of one rank; a CUDA device gets
  // NCCL for its tensors (host scalars still go through host_comm).
  const bool data_parallel = host_comm.name() != "local";
  std::shared_ptr<dist::Communicator> device_comm;
  if (data_parallel && !host_comm.supports(device)) {
    device_comm = dist::make_device_communicator(host_comm, device);
  }
  dist::Communicator& comm = device_comm ? *device_comm : host_comm;
  const int world = comm.world_size();
  const bool root = comm.rank() == 0;  // the only rank that writes files
  RG_CHECK(c.batch_size % world == 0, "--batch-size ", c.batch_size, " is the global batch: it must "
           "be a multiple of the number of ranks (", world, ")");

  // ---- data
  data::SliceDataset val_set(c.data, "val");
  data::SliceDataset test_set(c.data, "test");
  val_set.preload();
  test_set.preload();
  data::LoaderOptions lo;
  lo.split = "train";
  lo.batch_size = c.batch_size / world;  // per rank; the global batch is batch_size
  lo.rank = comm.rank();
  lo.world_size = world;
  lo.shuffle = true;
  lo.seed = c.seed;
  // The loader runs endlessly over its own epochs; a training epoch is steps_per_epoch batches
  // (fewer than a loader epoch with --max-train-batches). Batch k of the stream depends only on
  // (seed, k), so a resumed run starts the stream at its global step and sees the same data.
  lo.epochs = 0;
  lo.workers = c.workers;
  lo.drop_last = true;  // BatchNorm statistics of a 1-sample tail batch are degenerate
  lo.augment = c.augment;

  // ---- models
  const int64_t h = val_set.height(), w = val_set.width();
  models::UnetConfig gc;
  gc.num_downs = c.num_downs > 0 ? c.num_downs : auto_num_downs(h, w);
  gc.ngf = c.ngf;
  gc.norm = models::norm_kind_from_name(c.norm);
  gc.use_dropout = c.dropout;
  RG_CHECK(gc.num_downs >= 1 && h % (int64_t{1} << gc.num_downs) == 0 && w % (int64_t{1} << gc.num_downs) == 0,
           "--num-downs ", gc.num_downs, " does not divide the slice size ", h, "x", w);
  Generator init_gen(c.seed);
  models::UnetGenerator g(gc, init_gen);
  std::unique_ptr<models::PatchDiscriminator> d;
  if (gan_mode != GanMode::None) {
    models::PatchGanConfig dc;
    dc.in_channels = 2;
    dc.ndf = c.ndf;
    dc.n_layers = c.n_layers;
    dc.norm = gc.norm;
    d = std::make_unique<models::PatchDiscriminator>(dc, init_gen);
  }
  g.to(device);
  if (d) d->to(device);
  optim::Adam opt_g(g.parameters(), {.lr = c.lr, .beta1 = c.beta1, .beta2 = 0.999});
  std::unique_ptr<optim::Adam> opt_d;
  if (d) opt_d = std::make_unique<optim::Adam>(d->parameters(), optim::AdamOptions{.lr = c.lr, .beta1 = c.beta1, .beta2 = 0.999});
  const bool sync_bn = world > 1 && c.sync_bn && gc.norm == models::NormKind::Batch;
  // dist::sync_batch_norm computes on the host (CPU tensors only).
  RG_CHECK(!(sync_bn && device.is_cuda()), "--sync-bn: SyncBatchNorm has no CUDA path yet; on ",
           world, " GPUs pass --no-sync-bn (each GPU normalizes with its own batch) or --norm "
           "instance (docs/scaling.md)");
  if (sync_bn) {
    dist::convert_sync_batch_norm(g, &comm);
    if (d) dist::convert_sync_batch_norm(*d, &comm);
  }

  // ---- run directory
  const fs::path run_dir = fs::path(c.out_dir) / c.name;
  const fs::path ckpt_dir = run_dir / "checkpoints";
  const fs::path sample_dir = run_dir / "samples";
  const fs::path curve_dir = run_dir / "curves";
  if (root) {
    if (!c.resume && fs::exists(run_dir / "metrics.jsonl")) {
      RG_FAIL("run directory ", run_dir.string(), " already holds a run: pass --resume to continue it, or pick another --name");
    }
    for (const fs::path& p : {ckpt_dir, sample_dir, curve_dir}) fs::create_directories(p);
  }

  Generator train_gen(c.seed ^ 0x5eed5eedULL);
  manual_seed(c.seed ^ 0xd50ed50eULL);  // dropout layers draw from the process generator
  Progress progress;
  History history;
  if (c.resume) {
    if (root) progress = load_checkpoint(ckpt_dir, "latest", g, d.get(), opt_g, opt_d.get());
    if (world > 1) share_resumed_state(comm, progress, g, d.get(), opt_g, opt_d.get());
    // The position is global step x global batch: a different --batch-size would put every rank
    // at other samples (and other epoch boundaries) than the run it continues.
    RG_CHECK(progress.batch_size == 0 || progress.batch_size == c.batch_size, "--resume: ",
             (ckpt_dir / "latest.json").string(), " was trained with --batch-size ",
             progress.batch_size, " (the global batch); resume with the same --batch-size, got ",
             c.batch_size);
    train_gen.set_state(train_gen.seed(), progress.rng_offset);
    default_generator().set_state(default_generator().seed(), progress.dropout_rng_offset);
    if (root) history.load(run_dir / "metrics.jsonl");
    if (root) {
      std::cerr << "train_seg: resuming " << run_dir.string() << " at epoch " << progress.epoch + 1
                << ", step " << progress.step_in_epoch << " (global step " << progress.global_step
                << ", sample " << progress.global_step * c.batch_size << " of the global stream)";
      if (progress.world_size > 0 && progress.world_size != world) {
        std::cerr << "; written by " << progress.world_size << " ranks, continuing on " << world;
      }
      std::cerr << "\n";
    }
  }
  std::unique_ptr<JsonlWriter> log;
  if (root) {
    log = std::make_unique<JsonlWriter>(run_dir / "metrics.jsonl");
    write_file_atomic((run_dir / "config.json").string(), config_to_json(c).dump(2) + "\n");
  }

  SegGanTrainer trainer(g, d.get(), opt_g, opt_d.get(),
                        {.mode = gan_mode, .lambda_seg = c.lambda_seg}, train_gen);
  // Data parallelism: replicas start from rank 0's weights (a fresh run: seeds agree anyway;
  // this guards against any divergence), gradients are averaged in buckets during backward.
  std::unique_ptr<dist::GradientSync> g_sync, d_sync;
  if (data_parallel) {
    dist::broadcast_module_state(g, comm);
    if (d) dist::broadcast_module_state(*d, comm);
    g_sync = std::make_unique<dist::GradientSync>(g.parameters(), comm);
    if (d) d_sync = std::make_unique<dist::GradientSync>(d->parameters(), comm);
    trainer.set_gradient_sync(g_sync.get(), d_sync.get());
  }

  if (root) std::cerr << "train_seg: " << c.data << " (" << val_set.height() << "x" << val_set.width() << "), G unet num_downs "
            << gc.num_downs << " ngf " << gc.ngf << " (" << g.parameter_count() << " parameters)";
  if (root && d) std::cerr << ", D n_layers " << c.n_layers << " ndf " << c.ndf << " (" << d->parameter_count() << ")";
  if (root) {
    std::cerr << ", GAN " << gan_mode_name(gan_mode) << ", batch " << c.batch_size << ", " << total_epochs
              << " epochs on " << device.str() << " in " << c.precision;
    if (data_parallel) {
      std::cerr << "; " << world << " ranks (" << comm.name() << ") x batch " << lo.batch_size
                << (sync_bn ? ", SyncBatchNorm" : "");
    }
    std::cerr << "\n";
  }

  lo.start_batch = progress.global_step;
  data::Loader loader(c.data, lo);
  // What makes the resume position world-size independent: with drop_last and a per-rank batch
  // of batch_size / world, a rank's epoch has exactly as many batches as one process's, so
  // stream batch k is the same epoch and step at every world size, and the ranks' shards
  // interleave into that step's global batch.
  RG_CHECK(loader.batches_per_epoch() == loader.dataset_size() / c.batch_size,
           "internal: the loader has ", loader.batches_per_epoch(), " batches per epoch on rank ",
           comm.rank(), ", expected ", loader.dataset_size() / c.batch_size);
  const int64_t steps_per_epoch = c.max_train_batches > 0
                                      ? std::min(c.max_train_batches, loader.batches_per_epoch())
                                      : loader.batches_per_epoch();

  install_interrupt_handler();
  bool interrupted = false;
  bool reached_max_steps = false;
  int64_t steps_this_run = 0;
  for (int64_t epoch = progress.epoch; epoch < total_epochs && !interrupted && !reached_max_steps;
       ++epoch) {
    const double lr = schedule->lr_at(epoch);
    opt_g.set_lr(lr);
    if (opt_d) opt_d->set_lr(lr);
    data::ProgressBar bar(epoch_file("epoch ", epoch + 1, "") + "/" + std::to_string(total_epochs),
                          static_cast<double>(steps_per_epoch), "steps", c.progress && root);
    bar.update(static_cast<double>(progress.step_in_epoch));
    StepLosses sum_losses;
    int64_t logged = 0;
    while (progress.step_in_epoch < steps_per_epoch) {
      std::optional<data::Batch> batch = loader.next();
      RG_CHECK(batch.has_value(), "loader ended early");
      Tensor image = batch->image.to(device).to(act_dtype);
      // Masks are 0/1, exact in bf16: converting them keeps D's (image, mask) input in the
      // activation dtype (a bf16 image joined with an f32 mask would promote D to f32).
      Tensor mask = batch->mask.to(device).to(act_dtype);
      const StepLosses l = trainer.step(image, mask);
      ++progress.step_in_epoch;
      ++progress.global_step;
      sum_losses.d_loss += l.d_loss;
      sum_losses.g_adv += l.g_adv;
      sum_losses.g_bce += l.g_bce;
      sum_losses.g_dice += l.g_dice;
      ++logged;
      if (progress.global_step % c.log_every == 0) {
        if (world > 1) {  // every rank logs at the same step: average the losses over ranks
          std::vector<double> v{sum_losses.d_loss, sum_losses.g_adv, sum_losses.g_bce, sum_losses.g_dice};
          comm.all_reduce_sum(v);
          sum_losses.d_loss = v[0] / world;
          sum_losses.g_adv = v[1] / world;
          sum_losses.g_bce = v[2] / world;
          sum_losses.g_dice = v[3] / world;
        }
        const double k = 1.0 / static_cast<double>(logged);
        json j{{"kind", "train"},       {"epoch", epoch + 1},
               {"step", progress.global_step}, {"lr", lr},
               {"d_loss", sum_losses.d_loss * k}, {"g_adv", sum_losses.g_adv * k},
               {"g_bce", sum_losses.g_bce * k},   {"g_dice", sum_losses.g_dice * k}};
        if (root) log->write(j);
        history.add_train(j);
        sum_losses = StepLosses();
        logged = 0;
      }
      bar.update(static_cast<double>(progress.step_in_epoch));
      ++steps_this_run;
      bool stop = interrupt_requested() ||
                  (c.interrupt_after_steps > 0 && steps_this_run >= c.interrupt_after_steps);
      if (world > 1) {  // Ctrl-C reaches the ranks at different steps: stop together
        std::vector<double> v{stop ? 1.0 : 0.0};
        comm.all_reduce_sum(v);
        stop = v[0] > 0;
      }
      if (stop) {
        interrupted = true;
        break;
      }
      if (c.max_steps > 0 && steps_this_run >= c.max_steps) {  // the same step on every rank
        reached_max_steps = true;
        break;
      }
    }
    bar.finish();
    progress.rng_offset = train_gen.offset();
    progress.dropout_rng_offset = default_generator().offset();
    if (interrupted || reached_max_steps) {
      progress.epoch = epoch;
      if (!root) break;
      save_checkpoint(ckpt_dir, "latest", c, progress, world, g, d.get(), opt_g, opt_d.get());
      std::cerr << "train_seg: " << (interrupted ? "interrupted" : "stopped at --max-steps")
                << "; saved " << (ckpt_dir / "latest.safetensors").string() << " at epoch "
                << epoch + 1 << " step " << progress.step_in_epoch << "; continue with --resume\n";
      break;
    }

    // ---- end of epoch: validation on every rank (each predicts its share of the batches),
    // then pictures and checkpoints on rank 0 (the others wait for it in the next collective)
    if (data_parallel) share_eval_state(g, comm);
    const SegEvaluation val =
        evaluate_segmentation(g, val_set, c.batch_size, act_dtype, device, c.sample_rows, comm);
    if (!root) {
      progress.epoch = epoch + 1;
      progress.step_in_epoch = 0;
      continue;
    }
    json vj = evaluation_json(val);
    vj["kind"] = "val";
    vj["epoch"] = epoch + 1;
    vj["step"] = progress.global_step;
    vj["lr"] = lr;
    log->write(vj);
    history.add_val(vj);
    std::cerr << "  val: Dice " << val.slices.dice.mean << " IoU " << val.slices.iou.mean << " HD95 "
              << val.slices.hd95.mean << " px (slices); Dice " << val.volumes.dice.mean << " (volumes)\n";
    if (!val.samples.empty()) {
      write_segmentation_grid_png((sample_dir / epoch_file("epoch_", epoch + 1, ".png")).string(), val.samples);
    }
    history.write_pngs(curve_dir, d != nullptr);
    progress.epoch = epoch + 1;
    progress.step_in_epoch = 0;
    const bool best = val.slices.dice.mean > progress.best_val_dice;
    if (best) {
      progress.best_val_dice = val.slices.dice.mean;
      progress.best_epoch = epoch + 1;
    }
    save_checkpoint(ckpt_dir, "latest", c, progress, world, g, d.get(), opt_g, opt_d.get());
    if (best) save_checkpoint(ckpt_dir, "best", c, progress, world, g, d.get(), opt_g, opt_d.get());
  }
  if (interrupted) return 130;
  if (reached_max_steps) return 0;

  // ---- test: once, with the checkpoint chosen on validation (read by rank 0, evaluated by
  // every rank on its share)
  std::vector<double> best_epoch{root ? static_cast<double>(progress.best_epoch) : 0.0};
  if (world > 1) comm.all_reduce_sum(best_epoch);
  RG_CHECK(best_epoch[0] > 0, "no validation epoch completed: nothing to test");
  if (root) load_checkpoint(ckpt_dir, "best", g, d.get(), opt_g, opt_d.get());
  if (data_parallel) dist::broadcast_module_state(g, comm);
  const SegEvaluation test =
      evaluate_segmentation(g, test_set, c.batch_size, act_dtype, device, c.sample_rows, comm);
  if (!root) return 0;
  json tj = evaluation_json(test);
  tj["kind"] = "test";
  tj["checkpoint_epoch"] = progress.best_epoch;
  if (world > 1) tj["world_size"] = world;
  log->write(tj);
  if (!test.samples.empty()) write_segmentation_grid_png((sample_dir / "test.png").string(), test.samples);
  json summary{{"config", config_to_json(c)},
               {"best_epoch", progress.best_epoch},
               {"best_val_dice", progress.best_val_dice},
               {"test", tj},
               {"device", device.str()}};
  write_file_atomic((run_dir / "summary.json").string(), summary.dump(2) + "\n");
  std::cerr << "train_seg: test (checkpoint of epoch " << progress.best_epoch << "): Dice "
            << test.slices.dice.mean << " IoU " << test.slices.iou.mean << " HD95 " << test.slices.hd95.mean
            << " px per slice; Dice " << test.volumes.dice.mean << " per volume (" << test.volumes.items
            << " volumes); results in " << run_dir.string() << "\n";
  return 0;
}

}  // namespace rg::app
