#include "apps/seg/seg_run.h"

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "apps/seg/seg_gan.h"
#include "apps/seg/seg_predict.h"
#include "data/loader.h"
#include "data/slice_dataset.h"
#include "engine/dist/communicator.h"
#include "engine/dist/data_parallel.h"
#include "engine/dist/sync_batch_norm.h"
#include "engine/roentgen.h"
#include "models/patchgan.h"
#include "models/unet.h"
#include "train/run_options.h"
#include "train/train_loop.h"
#include "train/weight_average.h"

namespace rg::app {

namespace fs = std::filesystem;
using nlohmann::json;
using train::GanMode;

const std::vector<std::string>& select_by_names() {
  static const std::vector<std::string> names{"volume", "slice"};
  return names;
}

const char* select_by_name(SelectBy select_by) {
  return select_by == SelectBy::Volume ? "volume" : "slice";
}

SelectBy parse_select_by(const std::string& text, const std::string& source) {
  if (text == "volume") return SelectBy::Volume;
  if (text == "slice") return SelectBy::Slice;
  RG_FAIL(source, ": unknown value '", text, "' (expected volume or slice)");
}

json seg_config_to_json(const SegRunConfig& c) {
  json j = train::run_options_json(c);
  j.update(json{{"beta1", c.beta1},
                 {"lambda_seg", c.lambda_seg},
                 {"r1_gamma", c.r1_gamma},
                 {"gan_mode", train::gan_mode_name(c.gan_mode)},
                 {"norm", models::norm_kind_name(c.norm)},
                 {"ngf", c.ngf},
                 {"ndf", c.ndf},
                 {"n_layers", c.n_layers},
                 {"num_downs", c.num_downs},
                 {"full_res_width", c.full_res_width},
                 {"dropout", c.dropout},
                 {"precision", train::precision_name(c.precision)},
                 {"conv_backend", c.conv_backend ? conv_backend_name(*c.conv_backend) : ""},
                 {"augment", c.augment},
                 {"elastic", c.elastic},
                 {"select_by", select_by_name(c.select_by)},
                 {"context_slices", c.context_slices},
                 {"image_channels", c.image_channels},
                 {"test_time_flip", c.test_time_flip},
                 {"ema_decay", c.ema_decay},
                 {"train_fraction", c.train_fraction},
                 {"train_seed", c.train_seed},
                 {"extra_train", c.extra_train},
                 {"extra_fraction", c.extra_fraction}});
  return j;
}

namespace {
// Binarized predictions travel as 32 mask bits per double word (an integer below 2^32: exact in
// a double, and exact when summed with the zeros of the other ranks).
constexpr int64_t kMaskBitsPerWord = 32;

}  // namespace

namespace {

// The `count` slices of lowest Dice, worst first (ties: dataset order), each with its height in
// its subject's slices of the split.
std::vector<SliceResult> worst_slices(std::vector<SliceResult> results,
                                      const std::vector<train::SegMetrics>& metrics, size_t count) {
  RG_CHECK(results.size() == metrics.size(), "worst_slices: ", results.size(), " slices but ",
           metrics.size(), " metrics");
  std::map<int32_t, std::pair<int32_t, int32_t>> range;  // subject -> lowest, highest slice
  for (size_t i = 0; i < results.size(); ++i) {
    results[i].dice = metrics[i].dice;
    auto [it, fresh] = range.try_emplace(results[i].subject, results[i].slice, results[i].slice);
    if (!fresh) {
      it->second.first = std::min(it->second.first, results[i].slice);
      it->second.second = std::max(it->second.second, results[i].slice);
    }
  }
  for (auto& r : results) {
    const auto [lo, hi] = range.at(r.subject);
    r.height = hi > lo ? static_cast<double>(r.slice - lo) / (hi - lo) : 0.0;
  }
  std::stable_sort(results.begin(), results.end(),
                   [](const SliceResult& a, const SliceResult& b) { return a.dice < b.dice; });
  if (results.size() > count) results.resize(count);
  return results;
}

}  // namespace

SegEvaluation evaluate_segmentation(models::UnetGenerator& g, const data::SliceDataset& ds,
                                    int64_t batch_size, DType act_dtype, Device device,
                                    int64_t sample_rows, dist::Communicator& comm,
                                    int64_t worst_rows,
                                    const std::vector<const data::SliceDataset*>& more_contrasts,
                                    bool test_time_flip) {
  RG_CHECK(batch_size > 0, "evaluate_segmentation: batch_size must be > 0, got ", batch_size);
  const int64_t h = ds.height(), w = ds.width(), hw = h * w, n = ds.size();
  const int world = comm.world_size(), rank = comm.rank();
  const bool root = rank == 0;
  const int64_t words_per_slice = (hw + kMaskBitsPerWord - 1) / kMaskBitsPerWord;
  const int64_t channels = g.config.in_channels;
  std::vector<const data::SliceDataset*> contrasts = {&ds};
  contrasts.insert(contrasts.end(), more_contrasts.begin(), more_contrasts.end());
  const auto per_contrast = channels / static_cast<int64_t>(contrasts.size());
  RG_CHECK(channels >= 1 && channels % static_cast<int64_t>(contrasts.size()) == 0 && per_contrast % 2 == 1,
           "evaluate_segmentation: the generator takes ", channels, " input channels; ", contrasts.size(),
           " contrast(s) need an odd number per contrast (the slice and its neighbours)");
  const int context = static_cast<int>(per_contrast / 2);
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

  train::MetricAccumulator acc;
  SegEvaluation out;
  std::vector<SliceResult> slice_results;  // in the accumulator's order
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
      Tensor x = Tensor::empty({count, h, w, channels});
      for (int64_t i = 0; i < count; ++i) {
        data::read_contrast_stack(contrasts, start + i, context, x.data<float>() + i * hw * channels);
      }
      const Tensor probs = predict_probabilities(g, x, act_dtype, device, test_time_flip);
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
      SliceResult r;
      r.index = idx;
      r.subject = ds.subject(idx);
      r.subject_name = ds.subject_names().at(static_cast<size_t>(r.subject));
      r.slice = ds.slice(idx);
      r.target_fraction = static_cast<double>(std::count(target_bits.begin(), target_bits.end(), 1)) /
                          static_cast<double>(hw);
      slice_results.push_back(r);
      for (size_t r = 0; r < round_samples.size(); ++r) {
        if (round_samples[r] != idx) continue;
        train::SegGridRow row;
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
  if (!root) {
    g.train();
    return {};
  }
  out.slices = acc.slice_summary();
  out.volumes = acc.volume_summary();
  out.worst = worst_slices(slice_results, acc.slice_metrics(), 8);
  // The worst slices' pictures: G once more on them alone (eval mode: the same probabilities).
  const int64_t rows = std::min<int64_t>(worst_rows, static_cast<int64_t>(out.worst.size()));
  if (rows > 0) {
    Tensor x = Tensor::empty({rows, h, w, channels});
    for (int64_t i = 0; i < rows; ++i) {
      data::read_contrast_stack(contrasts, out.worst[static_cast<size_t>(i)].index, context,
                                x.data<float>() + i * hw * channels);
    }
    const Tensor probs = predict_probabilities(g, x, act_dtype, device, test_time_flip);
    for (int64_t i = 0; i < rows; ++i) {
      train::SegGridRow row;
      row.height = static_cast<int>(h);
      row.width = static_cast<int>(w);
      row.image.resize(static_cast<size_t>(hw));
      row.target.resize(static_cast<size_t>(hw));
      ds.read(out.worst[static_cast<size_t>(i)].index, row.image.data(), row.target.data());
      row.prob.assign(probs.data<float>() + i * hw, probs.data<float>() + (i + 1) * hw);
      out.worst_samples.push_back(std::move(row));
    }
  }
  g.train();
  return out;
}

namespace {

json worst_slices_json(const std::vector<SliceResult>& worst) {
  json out = json::array();
  for (const SliceResult& r : worst) {
    out.push_back({{"subject", r.subject}, {"subject_name", r.subject_name}, {"slice", r.slice}, {"height", r.height},
                   {"dice", r.dice}, {"target_fraction", r.target_fraction}});
  }
  return out;
}

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
              {"hd95_volume", e.volumes.hd95.mean},
              {"worst_slices", worst_slices_json(e.worst)}};
}

std::string evaluation_summary(const SegEvaluation& e) {
  using train::fixed;
  return "Dice " + fixed(e.slices.dice.mean) + " IoU " + fixed(e.slices.iou.mean) + " HD95 " +
         fixed(e.slices.hd95.mean, 2) + " px per slice (" + std::to_string(e.slices.items) +
         " slices); Dice " + fixed(e.volumes.dice.mean) + " per volume (" +
         std::to_string(e.volumes.items) + " volumes)";
}

// How prepare_data split the file, in words (its root attributes split_by, slabs, slab_gap), so
// the reader of a run knows what the validation Dice stands for.
std::string split_description(const data::SliceDataset& ds) {
  const std::string by = ds.attribute("split_by");
  const std::string slabs = ds.attribute("slabs").empty() ? "?" : ds.attribute("slabs");
  const std::string gap = ds.attribute("slab_gap").empty() ? "?" : ds.attribute("slab_gap");
  if (by == "subject") return "split by subject: validation and test are whole subjects unseen in training";
  if (by == "interleaved") {
    const std::string folds = ds.attribute("folds");
    const std::string fold =
        folds.empty() ? "" : ", fold " + ds.attribute("fold") + " of " + folds + " (0-based)";
    return "split by interleaved slabs (" + slabs + " slabs, " + gap + " slices dropped between "
           "slabs of different splits; the end slabs train" + fold + "): validation and test each "
           "spread from low to high in the volume";
  }
  if (by == "slab") {
    return "split by slab (" + slabs + " slabs, gap " + gap + "): validation and test are each "
           "one contiguous part of the volume, so they may not predict each other";
  }
  return "split: not recorded in the file";
}

int64_t volumes_in(const data::SliceDataset& ds) {
  std::vector<int32_t> subjects;
  for (int64_t i = 0; i < ds.size(); ++i) subjects.push_back(ds.subject(i));
  std::sort(subjects.begin(), subjects.end());
  return std::unique(subjects.begin(), subjects.end()) - subjects.begin();
}

// Adversarial segmentation as a task of the training loop.
class SegTask final : public train::TrainTask {
 public:
  SegTask(const SegRunConfig& c, const train::RunContext& ctx) : c_(c), ctx_(ctx) {
    dist::Communicator& comm = *ctx.comm;
    const int world = ctx.world_size;
    RG_CHECK(c.batch_size % world == 0, "--batch-size ", c.batch_size, " is the global batch: it "
             "must be a multiple of the number of ranks (", world, ")");
    act_dtype_ = train::apply_precision(c.precision, ctx.device, &precision_note_);

    val_set_ = std::make_unique<data::SliceDataset>(c.data, "val");
    test_set_ = std::make_unique<data::SliceDataset>(c.data, "test");
    val_set_->preload();
    test_set_->preload();
    auto open_contrasts = [&c](const data::SliceDataset& set, std::vector<std::unique_ptr<data::SliceDataset>>& out) {
      for (const std::string& p : c.image_channels) {
        out.push_back(std::make_unique<data::SliceDataset>(p, set.split()));
        data::check_same_slice_grid(set, *out.back());
        out.back()->preload();
      }
    };
    open_contrasts(*val_set_, val_contrasts_);
    open_contrasts(*test_set_, test_contrasts_);

    const int64_t h = val_set_->height(), w = val_set_->width();
    models::UnetConfig gc;
    gc.num_downs = c.num_downs > 0 ? c.num_downs : models::auto_num_downs(h, w);
    gc.ngf = c.ngf;
    gc.norm = c.norm;
    gc.use_dropout = c.dropout;
    gc.full_res_width = c.full_res_width;
    gc.in_channels = (1 + static_cast<int64_t>(c.image_channels.size())) * (1 + 2 * int64_t{c.context_slices});
    RG_CHECK(gc.num_downs >= 1 && h % (int64_t{1} << gc.num_downs) == 0 &&
                 w % (int64_t{1} << gc.num_downs) == 0,
             "--num-downs ", gc.num_downs, " does not divide the slice size ", h, "x", w);
    Generator init_gen(c.seed);
    g_ = std::make_unique<models::UnetGenerator>(gc, init_gen);
    if (c.gan_mode != GanMode::None) {
      models::PatchGanConfig dc;
      dc.in_channels = gc.in_channels + 1;  // (image channels, mask)
      dc.ndf = c.ndf;
      dc.n_layers = c.n_layers;
      dc.norm = gc.norm;
      d_ = std::make_unique<models::PatchDiscriminator>(dc, init_gen);
    }
    g_->to(ctx.device);
    if (d_) d_->to(ctx.device);
    const optim::AdamOptions adam{.lr = c.lr, .beta1 = c.beta1, .beta2 = 0.999};
    opt_g_ = std::make_unique<optim::Adam>(g_->parameters(), adam);
    if (d_) opt_d_ = std::make_unique<optim::Adam>(d_->parameters(), adam);
    const bool sync_bn = world > 1 && c.sync_bn && gc.norm == models::NormKind::Batch;
    // dist::sync_batch_norm computes on the host (CPU tensors only).
    RG_CHECK(!(sync_bn && ctx.device.is_cuda()), "--sync-bn: SyncBatchNorm has no CUDA path yet; "
             "on ", world, " GPUs pass --no-sync-bn (each GPU normalizes with its own batch) or "
             "--norm instance (docs/scaling.md)");
    if (sync_bn) {
      dist::convert_sync_batch_norm(*g_, &comm);
      if (d_) dist::convert_sync_batch_norm(*d_, &comm);
    }
    // The penalty's interpolation draws from train_gen_; dropout masks from the process
    // generator. Both positions are checkpointed (state()).
    train_gen_ = Generator(c.seed ^ 0x5eed5eedULL);
    manual_seed(c.seed ^ 0xd50ed50eULL);
    step_ = std::make_unique<SegGanStep>(
        *g_, d_.get(), *opt_g_, opt_d_.get(),
        SegGanConfig{.mode = c.gan_mode, .lambda_seg = c.lambda_seg, .r1_gamma = c.r1_gamma},
        train_gen_);
    if (ctx.data_parallel) {
      g_sync_ = std::make_unique<dist::GradientSync>(g_->parameters(), comm);
      if (d_) d_sync_ = std::make_unique<dist::GradientSync>(d_->parameters(), comm);
      step_->set_gradient_sync(g_sync_.get(), d_sync_.get());
    }
    sync_bn_ = sync_bn;
    if (c.ema_decay > 0) {
      // Built like G (same configuration and initialization draws), then overwritten with G's
      // values: the average starts where G starts.
      Generator ema_init(c.seed);
      g_ema_ = std::make_unique<models::UnetGenerator>(gc, ema_init);
      g_ema_->to(ctx.device);
      average_ = std::make_unique<train::WeightAverage>(*g_, *g_ema_, c.ema_decay);
    }
  }

  void describe(std::ostream& out) const {
    out << "train_seg: " << c_.data << " (" << val_set_->height() << "x" << val_set_->width()
        << "), G unet num_downs " << g_->config.num_downs << " ngf " << g_->config.ngf
        << (g_->config.full_res_width > 0 ? " full-res width " + std::to_string(g_->config.full_res_width) : "") << " ("
        << g_->parameter_count() << " parameters)";
    if (d_) out << ", D n_layers " << c_.n_layers << " ndf " << c_.ndf << " (" << d_->parameter_count() << ")";
    out << ", GAN " << train::gan_mode_name(c_.gan_mode) << ", batch " << c_.batch_size << ", "
        << c_.epochs + c_.epochs_decay << " epochs on " << ctx_.device.str() << " in "
        << train::precision_name(c_.precision);
    if (!precision_note_.empty()) out << " (" << precision_note_ << ")";
    if (c_.r1_gamma > 0) out << ", R1 gamma " << c_.r1_gamma;
    if (c_.context_slices > 0) {
      out << ", 2.5-D input (the slice and " << c_.context_slices << " neighbour(s) on each side, "
          << g_->config.in_channels << " channels)";
    }
    if (!c_.image_channels.empty()) {
      out << "\n  " << 1 + c_.image_channels.size() << " contrasts as input channels: " << c_.data;
      for (const std::string& p : c_.image_channels) out << ", " << p;
      out << " (--image-channel; masks from " << c_.data << ")";
    }
    if (average_) {
      out << "\n  validation and test use an exponential moving average of G's weights (decay "
          << c_.ema_decay << ", --ema), which the checkpoints hold as G_ema and infer_seg uses";
    }
    if (c_.test_time_flip) {
      out << "\n  validation and test predict each slice as the mean over it and its left-right mirror "
             "(--test-time-flip)";
    }
    if (d_ && (c_.gan_mode == GanMode::WganGp || c_.r1_gamma > 0) && c_.norm == models::NormKind::Batch) {
      out << "\n  note: D uses batch norm, which mixes the samples of a batch, so the gradient "
             "penalty's per-sample input gradients are approximate (--norm instance avoids it)";
    }
    if (ctx_.data_parallel) {
      out << "; " << ctx_.world_size << " ranks (" << ctx_.comm->name() << ") x batch "
          << c_.batch_size / ctx_.world_size << (sync_bn_ ? ", SyncBatchNorm" : "");
    }
    if (c_.train_fraction < 1) {
      out << "\n  training on a seeded subset of the real training slices (--train-fraction "
          << c_.train_fraction << ", --train-seed " << c_.train_seed << ")";
    }
    if (!c_.extra_train.empty()) {
      out << "\n  extra training slices from " << c_.extra_train << " (--extra-fraction "
          << c_.extra_fraction << ")";
    }
    out << "\n  validation: " << val_set_->size() << " slices of " << volumes_in(*val_set_)
        << " volume(s), test: " << test_set_->size() << " slices of " << volumes_in(*test_set_)
        << " volume(s) (the splits prepare_data wrote into " << c_.data << ")\n  "
        << split_description(*val_set_) << "; the best checkpoint is the "
        << "epoch of the highest validation Dice per " << select_by_name(c_.select_by)
        << " (--select-by)\n";
  }

  train::TrainState state() override {
    train::TrainState s;
    s.modules.emplace_back("G", g_.get());
    if (g_ema_) s.modules.emplace_back("G_ema", g_ema_.get());
    if (d_) s.modules.emplace_back("D", d_.get());
    s.optimizers.emplace_back("G", opt_g_.get());
    if (opt_d_) s.optimizers.emplace_back("D", opt_d_.get());
    s.generators.emplace_back("train", &train_gen_);
    s.generators.emplace_back("dropout", &default_generator());
    return s;
  }

  train::CheckpointInfo checkpoint_info() const override {
    train::CheckpointInfo info;
    info.kind = "seg";
    info.run = seg_config_to_json(c_);
    info.extra["generator"] = models::to_json(g_->config);
    if (d_) info.extra["discriminator"] = models::to_json(d_->config);
    info.metadata["generator_config"] = models::to_json(g_->config).dump();
    return info;
  }

  void start(int64_t global_step) override {
    data::LoaderOptions lo;
    lo.split = "train";
    lo.batch_size = c_.batch_size / ctx_.world_size;  // per rank; the global batch is batch_size
    lo.rank = ctx_.rank;
    lo.world_size = ctx_.world_size;
    lo.shuffle = true;
    lo.seed = c_.seed;
    // The loader runs endlessly over its own epochs; a training epoch is steps_per_epoch
    // batches (fewer than a loader epoch with --max-train-batches, any number with
    // --epoch-steps). Batch k of the stream depends only on (seed, k), so a resumed run starts
    // the stream at its global step.
    lo.epochs = 0;
    lo.workers = c_.workers;
    lo.drop_last = true;  // BatchNorm statistics of a 1-sample tail batch are degenerate
    lo.augment = c_.augment;
    lo.augment_options.p_elastic = c_.elastic;
    lo.context_slices = c_.context_slices;
    lo.contrast_paths = c_.image_channels;
    lo.start_batch = global_step;
    global_step_ = global_step;
    if (c_.train_fraction < 1) {
      lo.subset = data::seeded_subset(data::read_slices_info(c_.data).counts[0], c_.train_fraction,
                                      c_.train_seed);
    }
    if (!c_.extra_train.empty()) {
      lo.extra_path = c_.extra_train;
      if (c_.extra_fraction < 1) {
        lo.extra_subset = data::seeded_subset(data::read_slices_info(c_.extra_train).counts[0],
                                              c_.extra_fraction, c_.train_seed);
      }
    }
    loader_ = std::make_unique<data::Loader>(c_.data, lo);
    // What makes the resume position world-size independent: with drop_last and a per-rank
    // batch of batch_size / world, a rank's epoch has exactly as many batches as one
    // process's, so stream batch k is the same epoch and step at every world size.
    RG_CHECK(loader_->batches_per_epoch() == loader_->dataset_size() / c_.batch_size,
             "internal: the loader has ", loader_->batches_per_epoch(), " batches per epoch on "
             "rank ", ctx_.rank, ", expected ", loader_->dataset_size() / c_.batch_size);
  }

  int64_t steps_per_epoch() const override {
    return train::capped_steps_per_epoch(c_, loader_->batches_per_epoch());
  }

  train::StepLosses step() override {
    std::optional<data::Batch> batch = loader_->next();
    RG_CHECK(batch.has_value(), "loader ended early");
    Tensor image = batch->image.to(ctx_.device).to(act_dtype_);
    // Masks are 0/1, exact in bf16: converting them keeps D's (image, mask) input in the
    // activation dtype (a bf16 image joined with an f32 mask would promote D to f32).
    Tensor mask = batch->mask.to(ctx_.device).to(act_dtype_);
    train::StepLosses losses = step_->step(image, mask);
    ++global_step_;
    if (average_) average_->update(global_step_);
    return losses;
  }

  train::Evaluation validate(int64_t epoch, const train::RunFiles& files) override {
    return evaluate(*val_set_, val_contrasts_, files.epoch_sample("epoch_", epoch, ".png"));
  }
  // The test picture, and a picture of the test slices that fail most (samples/test_worst.png).
  // With --test-time-flip the test split is evaluated once more without it, so that a run says
  // what the flip changed for the same checkpoint ("without_test_time_flip").
  train::Evaluation test(const train::RunFiles& files) override {
    train::Evaluation e =
        evaluate(*test_set_, test_contrasts_, files.samples / "test.png", files.samples / "test_worst.png");
    if (!c_.test_time_flip) return e;
    const SegEvaluation once = evaluate_segmentation(evaluated(), *test_set_, c_.batch_size, act_dtype_, ctx_.device, 0,
                                                     *ctx_.comm, 0, contrasts_of(test_contrasts_), false);
    if (!ctx_.root()) return e;
    json without = evaluation_json(once);
    without.erase("worst_slices");
    e.metrics["without_test_time_flip"] = without;
    e.summary += "; without the test-time flip: " + evaluation_summary(once);
    return e;
  }

  std::vector<std::string> curve_losses() const override {
    if (!d_) return {"g_bce", "g_dice"};
    return {"g_bce", "g_dice", "d_loss", "g_adv"};
  }
  std::vector<std::string> curve_metrics() const override { return {"dice", "iou", "dice_volume"}; }

  // Sharded evaluation runs rank 0's model on every rank. Parameters agree already (same
  // averaged updates); batch-norm running statistics agree only with SyncBatchNorm, so they are
  // broadcast (they are used in eval mode only: training is unaffected).
  void share_evaluation_state(dist::Communicator& comm) override {
    std::vector<Tensor> buffers;
    for (auto& [name, t] : g_->named_buffers()) buffers.push_back(t);
    if (g_ema_) {
      for (auto& [name, t] : g_ema_->named_buffers()) buffers.push_back(t);
    }
    dist::broadcast_tensors(buffers, comm);
  }

 private:
  train::Evaluation evaluate(const data::SliceDataset& ds, const std::vector<std::unique_ptr<data::SliceDataset>>& contrasts,
                             const fs::path& picture, const fs::path& worst_picture = {}) {
    const SegEvaluation e = evaluate_segmentation(evaluated(), ds, c_.batch_size, act_dtype_, ctx_.device, c_.sample_rows,
                                                  *ctx_.comm, worst_picture.empty() ? 0 : c_.sample_rows,
                                                  contrasts_of(contrasts), c_.test_time_flip);
    if (!ctx_.root()) return {};
    std::string pictures = picture.string();
    if (!e.samples.empty()) train::write_segmentation_grid_png(picture.string(), e.samples);
    if (!e.worst_samples.empty()) {
      train::write_segmentation_grid_png(worst_picture.string(), e.worst_samples);
      pictures += ", the worst slices " + worst_picture.string();
    }
    const double score = c_.select_by == SelectBy::Volume ? e.volumes.dice.mean : e.slices.dice.mean;
    return {.score = score, .metrics = evaluation_json(e), .summary = evaluation_summary(e) + "; pictures " + pictures};
  }
  // The network validation and test evaluate: the weight average when there is one.
  models::UnetGenerator& evaluated() { return g_ema_ ? *g_ema_ : *g_; }
  static std::vector<const data::SliceDataset*> contrasts_of(
      const std::vector<std::unique_ptr<data::SliceDataset>>& contrasts) {
    std::vector<const data::SliceDataset*> more;
    for (const auto& c : contrasts) more.push_back(c.get());
    return more;
  }

  SegRunConfig c_;
  train::RunContext ctx_;
  DType act_dtype_ = DType::F32;
  std::string precision_note_;
  std::unique_ptr<data::SliceDataset> val_set_, test_set_;
  std::vector<std::unique_ptr<data::SliceDataset>> val_contrasts_, test_contrasts_;  // --image-channel
  std::unique_ptr<models::UnetGenerator> g_;
  std::unique_ptr<models::UnetGenerator> g_ema_;  // --ema: the average of G's weights
  std::unique_ptr<train::WeightAverage> average_;
  int64_t global_step_ = 0;  // optimizer steps so far (the average's ramp)
  std::unique_ptr<models::PatchDiscriminator> d_;
  std::unique_ptr<optim::Adam> opt_g_, opt_d_;
  Generator train_gen_{0};
  std::unique_ptr<SegGanStep> step_;
  std::unique_ptr<dist::GradientSync> g_sync_, d_sync_;
  std::unique_ptr<data::Loader> loader_;
  bool sync_bn_ = false;
};

}  // namespace

int run_seg_training(const SegRunConfig& c) {
  dist::LocalCommunicator local;
  return run_seg_training(c, local);
}

int run_seg_training(const SegRunConfig& c, dist::Communicator& host_comm) {
  train::check_run_options(c, "prepared HDF5 file");
  RG_CHECK(c.elastic >= 0 && c.elastic <= 1, "--elastic must be a probability in [0, 1], got ", c.elastic);
  RG_CHECK(c.train_fraction >= 0 && c.train_fraction <= 1, "--train-fraction must be in [0, 1], got ",
           c.train_fraction);
  RG_CHECK(c.train_fraction > 0 || !c.extra_train.empty(),
           "--train-fraction 0 leaves no training data without --extra-train");
  RG_CHECK(c.context_slices >= 0 && c.context_slices <= 8, "--context-slices must be in [0, 8], got ",
           c.context_slices);
  RG_CHECK(c.extra_fraction > 0 && c.extra_fraction <= 1, "--extra-fraction must be in (0, 1], got ",
           c.extra_fraction);
  if (!c.extra_train.empty()) {
    RG_CHECK(fs::exists(c.extra_train), "--extra-train: file ", c.extra_train, " does not exist");
    const data::SlicesFileInfo extra = data::read_slices_info(c.extra_train);
    const data::SlicesFileInfo real = data::read_slices_info(c.data);
    RG_CHECK(extra.counts[0] > 0, "--extra-train: ", c.extra_train, " has no training slices");
    RG_CHECK(extra.height == real.height && extra.width == real.width, "--extra-train: ",
             c.extra_train, " has ", extra.height, "x", extra.width, " slices but --data ", c.data,
             " has ", real.height, "x", real.width);
    RG_CHECK(c.context_slices == 0 || data::SliceDataset(c.extra_train, "train").slices_unique(),
             "--context-slices with --extra-train: ", c.extra_train, " holds some slice of a subject more "
             "than once (synthesize's output does), so its slices have no neighbours");
  }
  RG_CHECK(c.image_channels.empty() || c.extra_train.empty(), "--image-channel with --extra-train: extra "
           "training files have one contrast; train on the real contrasts alone");
  for (const std::string& p : c.image_channels) RG_CHECK(fs::exists(p), "--image-channel: file ", p, " does not exist");
  if (c.conv_backend) set_conv_backend(*c.conv_backend);
  const train::RunContext ctx = train::make_run_context(host_comm, train::resolve_device(c.device));
  SegTask task(c, ctx);
  if (ctx.root()) task.describe(std::cerr);

  train::LoopConfig loop = train::loop_config(c);
  loop.app = "train_seg";
  loop.score_name = c.select_by == SelectBy::Volume ? "Dice per volume" : "Dice per slice";
  loop.score_key = c.select_by == SelectBy::Volume ? "dice_volume" : "dice";
  loop.config = seg_config_to_json(c);
  return train::run_training(task, loop, ctx);
}

}  // namespace rg::app
