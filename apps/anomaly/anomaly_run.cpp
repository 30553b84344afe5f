#include "apps/anomaly/anomaly_run.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>

#include "apps/anomaly/anomaly_gan.h"
#include "data/lesions.h"
#include "data/loader.h"
#include "data/png_io.h"
#include "data/slice_dataset.h"
#include "engine/dist/communicator.h"
#include "engine/roentgen.h"
#include "models/dcgan.h"
#include "train/plots.h"
#include "train/ranking_metrics.h"
#include "train/train_loop.h"

namespace rg::app {

namespace fs = std::filesystem;
using nlohmann::json;

json anomaly_config_to_json(const AnomalyRunConfig& c) {
  json j = train::run_options_json(c);
  j.update(json{{"method", c.method},
                 {"stage", c.stage},
                 {"stage1_run", c.stage1_run},
                 {"beta1", c.beta1},
                 {"beta2", c.beta2},
                 {"n_critic", c.n_critic},
                 {"gp_weight", c.gp_weight},
                 {"kappa", c.kappa},
                 {"z_dim", c.z_dim},
                 {"width", c.width},
                 {"lesion_seed", c.lesion_seed}});
  return j;
}

LesionSlices read_lesion_slices(const data::SliceDataset& ds) {
  LesionSlices out;
  out.count = ds.size();
  out.height = ds.height();
  out.width = ds.width();
  const int64_t hw = out.height * out.width;
  out.images.resize(static_cast<size_t>(out.count * hw));
  out.organ.resize(out.images.size());
  out.lesion.assign(out.images.size(), 0);
  std::vector<float> mask(static_cast<size_t>(hw));
  for (int64_t i = 0; i < out.count; ++i) {
    ds.read(i, out.images.data() + i * hw, mask.data());
    for (int64_t p = 0; p < hw; ++p) out.organ[static_cast<size_t>(i * hw + p)] = mask[static_cast<size_t>(p)] >= 0.5f;
    if (ds.has_lesions()) ds.read_lesions(i, out.lesion.data() + i * hw);
  }
  set_lesion_sizes(out);
  return out;
}

LesionSlices make_lesion_slices(const data::SliceDataset& ds, uint64_t seed,
                                int64_t min_organ_pixels) {
  // The slices as they are; the dataset's own lesions (the phantom's) are used as they are.
  LesionSlices out = read_lesion_slices(ds);
  if (ds.has_lesions()) return out;
  const int64_t hw = out.height * out.width;
  std::vector<float> mask(static_cast<size_t>(hw));
  const double side = static_cast<double>(std::min(out.height, out.width));
  for (int64_t i = 0; i < out.count; ++i) {
    float* image = out.images.data() + i * hw;
    int64_t organ_pixels = 0;
    for (int64_t p = 0; p < hw; ++p) {
      const bool in = out.organ[static_cast<size_t>(i * hw + p)];
      mask[static_cast<size_t>(p)] = in ? 1.0f : 0.0f;
      organ_pixels += in;
    }
    // Odd slices stay normal: image-level AUROC needs normal validation slices too.
    if (i % 2 != 0 || organ_pixels < min_organ_pixels) continue;
    // A one-slice volume, 1 mm "voxels" = pixels (the prepared slices are resampled, so the
    // original spacing is gone).
    data::Volume vol, organ;
    vol.dims = organ.dims = {out.width, out.height, 1};
    vol.voxels.assign(image, image + hw);
    organ.voxels = mask;
    vol.source = ds.path() + " [" + ds.split() + " slice " + std::to_string(i) + "]";
    organ.source = vol.source + " mask";
    data::LesionOptions lo;
    lo.count = 1;
    lo.min_diameter_mm = std::max(3.0, side / 20);
    lo.max_diameter_mm = std::max(lo.min_diameter_mm, side / 5);
    // A seed per slice: a slice's lesion does not depend on how many slices precede it.
    lo.seed = seed * 1000003ULL + static_cast<uint64_t>(i);
    const data::LesionResult r = data::insert_lesions(vol, organ, lo);
    int64_t lesion_pixels = 0;
    for (int64_t p = 0; p < hw; ++p) {
      const bool in = r.mask.voxels[static_cast<size_t>(p)] >= 0.5f;
      out.lesion[static_cast<size_t>(i * hw + p)] = in;
      lesion_pixels += in;
    }
    if (lesion_pixels == 0) continue;  // cut away entirely by the organ border: stays normal
    std::copy(vol.voxels.begin(), vol.voxels.end(), image);
    out.has_lesion[static_cast<size_t>(i)] = 1;
    out.lesion_diameter_px[static_cast<size_t>(i)] = r.diameters_mm.empty() ? 0 : r.diameters_mm[0];
  }
  return out;
}

namespace {

class AnomalyTask final : public train::TrainTask {
 public:
  AnomalyTask(const AnomalyRunConfig& c, const train::RunContext& ctx)
      : c_(c), ctx_(ctx), method_(parse_anomaly_method(c.method)) {
    RG_CHECK(c.stage == 1 || c.stage == 2, "--stage must be 1 or 2, got ", c.stage);
    // The baselines have one stage; record it as the detecting one.
    if (method_ != AnomalyMethod::FAnoGan) c_.stage = 2;
    RG_CHECK(ctx.world_size == 1, "train_anomaly runs in one process (no data parallelism yet)");
    RG_CHECK(c.batch_size > 0, "--batch-size must be > 0, got ", c.batch_size);
    val_set_ = std::make_unique<data::SliceDataset>(c.data, "val");
    test_set_ = std::make_unique<data::SliceDataset>(c.data, "test");
    const int64_t h = val_set_->height(), w = val_set_->width();
    RG_CHECK(h == w && h >= 8 && (h & (h - 1)) == 0, "--data ", c.data, ": slices are ", h, "x", w,
             "; the anomaly networks need square slices of a power-of-two size (64, 128, ...)");
    {
      data::SliceDataset train_set(c.data, "train");
      RG_CHECK(train_set.size() >= c.batch_size, "--data ", c.data, ": the train split has ",
               train_set.size(), " slices, fewer than one batch of ", c.batch_size);
    }

    models::DcganConfig net{.size = h, .z_dim = c.z_dim, .width = c.width};
    val_ = make_lesion_slices(*val_set_, c.lesion_seed);
    test_ = make_lesion_slices(*test_set_, c.lesion_seed + 1);
    nets_.method = method_;
    nets_.kappa = c.kappa;
    const optim::AdamOptions adam{.lr = c.lr, .beta1 = c.beta1, .beta2 = c.beta2};
    if (method_ == AnomalyMethod::Threshold) {
      threshold_ = std::make_unique<IntensityThreshold>();
      fit_intensity_threshold(data::SliceDataset(c.data, "train"), *threshold_);
      nets_.threshold = threshold_.get();
      return;
    }
    Generator init_gen(c.seed);
    if (method_ == AnomalyMethod::Autoencoder) {
      net.validate();
      g_ = std::make_unique<models::DcganGenerator>(net, init_gen);
      e_ = std::make_unique<models::DcganEncoder>(net, init_gen);
      g_->to(ctx.device);
      e_->to(ctx.device);
      std::vector<Tensor> params = e_->parameters();
      for (const Tensor& p : g_->parameters()) params.push_back(p);
      opt_e_ = std::make_unique<optim::Adam>(params, adam);
      autoencoder_ = std::make_unique<AutoencoderStep>(*g_, *e_, *opt_e_);
      nets_.g = g_.get();
      nets_.e = e_.get();
      return;
    }
    if (c.stage == 2) {
      RG_CHECK(!c.stage1_run.empty(), "--stage 2 needs --stage1 RUN_DIR (a stage-1 run directory)");
      stage1_dir_ = fs::path(c.stage1_run) / "checkpoints";
      json j;
      try {
        j = train::read_checkpoint_json(stage1_dir_, "best", "anomaly");
      } catch (const Error& e) {
        RG_FAIL("--stage1 ", c.stage1_run, ": ", e.what());
      }
      RG_CHECK(j.value("stage", 0) == 1, "--stage1 ", c.stage1_run, ": checkpoints/best is not a "
               "stage-1 checkpoint (stage ", j.value("stage", 0), ")");
      RG_CHECK(j.contains("dcgan"), "--stage1 ", c.stage1_run, ": checkpoint has no \"dcgan\" entry");
      models::from_json(j.at("dcgan"), net);
      RG_CHECK(net.size == h, "--stage1 ", c.stage1_run, ": its networks are for ", net.size, "x",
               net.size, " slices, --data ", c.data, " has ", h, "x", w);
      // The sizes are stage 1's, whatever --z-dim / --width said: record those.
      c_.z_dim = net.z_dim;
      c_.width = net.width;
    }
    net.validate();
    g_ = std::make_unique<models::DcganGenerator>(net, init_gen);
    d_ = std::make_unique<models::DcganCritic>(net, init_gen);
    train_gen_ = Generator(c.seed ^ 0x5eed5eedULL);
    if (c.stage == 2) {
      train::TrainState frozen;
      frozen.modules = {{"G", g_.get()}, {"D", d_.get()}};
      train::load_checkpoint(stage1_dir_, "best", frozen, "anomaly");
      e_ = std::make_unique<models::DcganEncoder>(net, init_gen);
    }
    g_->to(ctx.device);
    d_->to(ctx.device);
    if (c.stage == 1) {
      opt_g_ = std::make_unique<optim::Adam>(g_->parameters(), adam);
      opt_d_ = std::make_unique<optim::Adam>(d_->parameters(), adam);
      wgan_ = std::make_unique<WganGpStep>(*g_, *d_, *opt_g_, *opt_d_,
                                           WganGpConfig{.n_critic = c.n_critic, .gp_weight = c.gp_weight},
                                           train_gen_);
    } else {
      e_->to(ctx.device);
      opt_e_ = std::make_unique<optim::Adam>(e_->parameters(), adam);
      encoder_ = std::make_unique<EncoderStep>(*g_, *d_, *e_, *opt_e_, c.kappa);
      nets_.g = g_.get();
      nets_.d = d_.get();
      nets_.e = e_.get();
    }
  }

  // The configuration as run (stage 2: the network sizes of the stage-1 checkpoint).
  const AnomalyRunConfig& config() const { return c_; }

  void describe(std::ostream& out) const {
    const std::string kind = val_set_->has_lesions() ? "the dataset's own lesion" : "a synthetic lesion";
    const auto lesions = [&](const LesionSlices& s) {
      return std::to_string(std::count(s.has_lesion.begin(), s.has_lesion.end(), uint8_t{1})) +
             " of " + std::to_string(s.count) + " slices with " + kind;
    };
    out << "train_anomaly " << anomaly_method_name(method_);
    if (method_ == AnomalyMethod::FAnoGan) out << " stage " << c_.stage;
    out << ": " << c_.data << " (" << val_.height << "x" << val_.width << ")";
    if (threshold_) {
      out << ", normal intensity median " << threshold_->median() << ", 1.4826 MAD " << threshold_->scale()
          << " (train split, inside the mask)";
    } else if (!d_) {
      out << ", autoencoder E + G " << e_->parameter_count() + g_->parameter_count() << " parameters, L1";
    } else {
      out << ", G " << g_->parameter_count() << " parameters, critic " << d_->parameter_count();
      if (e_) out << ", encoder " << e_->parameter_count() << " (G and critic frozen, from " << c_.stage1_run << ")";
      else out << ", n_critic " << c_.n_critic << ", lambda " << c_.gp_weight;
    }
    out << ", batch " << c_.batch_size << ", Adam " << c_.lr << " (" << c_.beta1 << ", " << c_.beta2
        << "), " << c_.epochs + c_.epochs_decay << " epochs";
    if (c_.epoch_steps > 0) out << " of " << c_.epoch_steps << " steps";
    out << " on " << ctx_.device.str()
        << "\n  validation: " << lesions(val_) << "; test: " << lesions(test_) << "\n";
  }

  train::TrainState state() override {
    train::TrainState s;
    if (threshold_) {
      s.modules = {{"T", threshold_.get()}};
      return s;
    }
    if (autoencoder_) {
      s.modules = {{"G", g_.get()}, {"E", e_.get()}};
      s.optimizers = {{"AE", opt_e_.get()}};
      return s;
    }
    s.modules = {{"G", g_.get()}, {"D", d_.get()}};
    if (e_) {
      s.modules.emplace_back("E", e_.get());
      s.optimizers.emplace_back("E", opt_e_.get());
    } else {
      s.optimizers = {{"G", opt_g_.get()}, {"D", opt_d_.get()}};
      s.generators.emplace_back("train", &train_gen_);
    }
    return s;
  }

  train::CheckpointInfo checkpoint_info() const override {
    train::CheckpointInfo info;
    info.kind = "anomaly";
    info.run = anomaly_config_to_json(c_);
    info.extra["method"] = c_.method;
    info.extra["stage"] = c_.stage;
    info.extra["size"] = val_.height;
    info.extra["kappa"] = c_.kappa;
    if (g_) {
      info.extra["dcgan"] = models::to_json(g_->config);
      info.metadata["dcgan_config"] = models::to_json(g_->config).dump();
    }
    return info;
  }

  void start(int64_t global_step) override {
    data::LoaderOptions lo;
    lo.split = "train";
    lo.batch_size = c_.batch_size;
    lo.shuffle = true;
    lo.seed = c_.seed;
    lo.epochs = 0;  // endless: batch k of the stream depends only on (seed, k)
    lo.workers = c_.workers;
    lo.drop_last = true;
    lo.augment = false;  // normal anatomy as it is: a flipped brain is not what the test shows
    lo.start_batch = global_step * batches_per_step();
    loader_ = std::make_unique<data::Loader>(c_.data, lo);
    RG_CHECK(loader_batches() >= batches_per_step(), "--data ", c_.data, ": ", loader_batches(),
             " training batches per epoch, but one stage-1 step takes --n-critic ", c_.n_critic,
             " batches (lower --batch-size or --n-critic)");
  }

  int64_t steps_per_epoch() const override {
    if (threshold_) return 1;
    // --epoch-steps: the stream is endless, so an epoch of K steps is the same length on every
    // dataset (a stage-1 step takes --n-critic batches).
    if (c_.epoch_steps > 0) return c_.epoch_steps;
    return loader_batches() / batches_per_step();
  }

  train::StepLosses step() override {
    if (threshold_) {
      // Nothing to learn: the statistics were fit on the whole train split at the start.
      train::StepLosses l;
      l.add("median", Tensor::scalar(threshold_->median()));
      l.add("scale", Tensor::scalar(threshold_->scale()));
      return l;
    }
    std::vector<Tensor> real;
    for (int64_t k = 0; k < batches_per_step(); ++k) {
      std::optional<data::Batch> batch = loader_->next();
      RG_CHECK(batch.has_value(), "loader ended early");
      real.push_back(batch->image.to(ctx_.device));
    }
    if (wgan_) return wgan_->step(real);
    if (autoencoder_) return autoencoder_->step(real.front());
    return encoder_->step(real.front());
  }

  train::Evaluation validate(int64_t epoch, const train::RunFiles& files) override {
    train::Evaluation e = evaluate(val_, files.epoch_sample("epoch_", epoch, ".png"), std::nullopt);
    // Stage 1 keeps its last epoch as `best` (what stage 2 loads): the critic's Wasserstein
    // estimate is no model-selection criterion, it grows while the critic learns to separate
    // (measured: it rose from 6.8 to 22.7 over the first 10 epochs on Colin27).
    if (c_.stage == 1) e.score = static_cast<double>(epoch);
    return e;
  }

  train::Evaluation test(const train::RunFiles& files) override {
    if (c_.stage == 1) return evaluate(test_, files.samples / "test.png", std::nullopt);
    // The pixel threshold is chosen on validation with the checkpoint under test.
    return evaluate(test_, files.samples / "test.png", best_dice_threshold(val_, score(val_)));
  }

  std::vector<std::string> curve_losses() const override {
    if (threshold_) return {"median", "scale"};
    if (autoencoder_) return {"ae_l1"};
    if (c_.stage == 1) return {"d_loss", "g_loss", "w_distance", "d_penalty"};
    return {"e_loss", "e_image", "e_feature"};
  }
  std::vector<std::string> curve_metrics() const override {
    if (c_.stage == 1) return {"w_distance"};
    return {"image_auroc", "pixel_auroc", "pixel_auprc", "best_dice"};
  }

  AnomalyMethod method() const { return method_; }

 private:
  int64_t batches_per_step() const { return wgan_ ? c_.n_critic : 1; }
  int64_t loader_batches() const {
    return c_.max_train_batches > 0 ? std::min(c_.max_train_batches, loader_->batches_per_epoch())
                                     : loader_->batches_per_epoch();
  }

  // Slice scores and pixel maps of every slice (networks in eval mode).
  AnomalyMaps score(const LesionSlices& s) const {
    return score_slices(nets_, s.images.data(), s.organ.data(), s.count, s.height, s.width,
                        c_.batch_size, ctx_.device);
  }

  train::Evaluation evaluate(const LesionSlices& s, const fs::path& picture,
                             std::optional<double> test_threshold) {
    if (c_.stage == 1) return evaluate_generator(s, picture);
    const AnomalyMaps maps = score(s);
    const AnomalyEvaluation a = evaluate_anomaly_maps(s, maps, test_threshold);
    std::optional<double> threshold = test_threshold;
    if (!threshold && a.metrics.contains("best_dice_threshold")) threshold = a.metrics["best_dice_threshold"].get<double>();
    write_lesion_grid(s, maps, threshold.value_or(0.5), picture);
    train::Evaluation e;
    e.score = a.score;
    e.metrics = a.metrics;
    e.metrics["method"] = c_.method;
    e.summary = a.summary + "; pictures " + picture.string();
    return e;
  }

  // image | lesion | residual >= threshold, on the first sample_rows lesion slices.
  void write_lesion_grid(const LesionSlices& s, const AnomalyMaps& sc, double threshold,
                         const fs::path& picture) const {
    const int64_t hw = s.height * s.width;
    std::vector<train::SegGridRow> rows;
    for (int64_t i = 0; i < s.count && static_cast<int64_t>(rows.size()) < c_.sample_rows; ++i) {
      if (!s.has_lesion[static_cast<size_t>(i)]) continue;
      train::SegGridRow row;
      row.height = static_cast<int>(s.height);
      row.width = static_cast<int>(s.width);
      row.image.assign(s.images.begin() + i * hw, s.images.begin() + (i + 1) * hw);
      row.target.assign(s.lesion.begin() + i * hw, s.lesion.begin() + (i + 1) * hw);
      row.prob.assign(sc.maps.begin() + i * hw, sc.maps.begin() + (i + 1) * hw);
      rows.push_back(std::move(row));
    }
    if (rows.empty()) return;
    train::SegGridOptions o;
    o.column_titles = {"image", "lesion", threshold_ ? "|x-median|/MAD" : "|x-G(E(x))|"};
    o.threshold = static_cast<float>(threshold);
    train::write_segmentation_grid_png(picture.string(), rows, o);
  }

  // Stage 1: the critic's Wasserstein estimate between the normal (lesion-free) slices and as
  // many generated ones from a fixed z, and a picture of those samples.
  train::Evaluation evaluate_generator(const LesionSlices& s, const fs::path& picture) {
    NoGradGuard no_grad;
    g_->eval();
    d_->eval();
    const int64_t hw = s.height * s.width;
    std::vector<float> normal;
    for (int64_t i = 0; i < s.count; ++i) {
      if (s.has_lesion[static_cast<size_t>(i)]) continue;
      normal.insert(normal.end(), s.images.begin() + i * hw, s.images.begin() + (i + 1) * hw);
    }
    const int64_t n = static_cast<int64_t>(normal.size()) / hw;
    RG_CHECK(n > 0, "validation: no lesion-free slice in the ", val_set_->split(), " split of ", c_.data);
    Generator z_gen(c_.seed ^ 0x2a2a2a2aULL);  // the same z at every evaluation
    double real_sum = 0, fake_sum = 0;
    std::vector<float> samples;
    for (int64_t start = 0; start < n; start += c_.batch_size) {
      const int64_t b = std::min(c_.batch_size, n - start);
      Tensor x = Tensor::empty({b, s.height, s.width, 1});
      std::copy(normal.begin() + start * hw, normal.begin() + (start + b) * hw, x.data<float>());
      x = x.to(ctx_.device);
      Tensor z = Tensor::empty({b, g_->config.z_dim}, DType::F32, ctx_.device);
      normal_(z, 0.0, 1.0, z_gen);
      const Tensor fake = g_->forward(z);
      real_sum += sum(d_->forward(x)).item();
      fake_sum += sum(d_->forward(fake)).item();
      if (static_cast<int64_t>(samples.size()) < 16 * hw) {
        const auto f = fake.to(Device::cpu()).to_vector<float>();
        samples.insert(samples.end(), f.begin(),
                       f.begin() + std::min<int64_t>(static_cast<int64_t>(f.size()), 16 * hw - static_cast<int64_t>(samples.size())));
      }
    }
    g_->train();
    d_->train();
    const double w = (real_sum - fake_sum) / static_cast<double>(n);
    write_mosaic(samples, s.height, s.width, picture);
    train::Evaluation e;
    e.metrics = json{{"w_distance", w}, {"slices", n}};
    e.summary = "W estimate " + train::fixed(w) + " on " + std::to_string(n) +
                " lesion-free slices; samples " + picture.string();
    return e;
  }

  // Up to 16 images in a 4-wide gray mosaic.
  static void write_mosaic(const std::vector<float>& images, int64_t h, int64_t w, const fs::path& path) {
    const int64_t count = static_cast<int64_t>(images.size()) / (h * w);
    if (count == 0) return;
    const int64_t cols = std::min<int64_t>(4, count), rows = (count + cols - 1) / cols;
    data::Image8 img;
    img.width = static_cast<int>(cols * w);
    img.height = static_cast<int>(rows * h);
    img.pixels.assign(static_cast<size_t>(img.width) * img.height, 0);
    for (int64_t k = 0; k < count; ++k) {
      for (int64_t y = 0; y < h; ++y) {
        for (int64_t x = 0; x < w; ++x) {
          const float v = std::clamp(images[static_cast<size_t>((k * h + y) * w + x)], -1.0f, 1.0f);
          const int64_t px = (k % cols) * w + x, py = (k / cols) * h + y;
          img.pixels[static_cast<size_t>(py * img.width + px)] =
              static_cast<uint8_t>(std::lround((v + 1.0f) * 127.5f));
        }
      }
    }
    data::write_png(path.string(), img);
  }

  AnomalyRunConfig c_;
  train::RunContext ctx_;
  AnomalyMethod method_;
  AnomalyNets nets_;
  std::unique_ptr<IntensityThreshold> threshold_;
  std::unique_ptr<AutoencoderStep> autoencoder_;
  fs::path stage1_dir_;
  std::unique_ptr<data::SliceDataset> val_set_, test_set_;
  LesionSlices val_, test_;
  std::unique_ptr<models::DcganGenerator> g_;
  std::unique_ptr<models::DcganCritic> d_;
  std::unique_ptr<models::DcganEncoder> e_;
  std::unique_ptr<optim::Adam> opt_g_, opt_d_, opt_e_;
  Generator train_gen_{0};
  std::unique_ptr<WganGpStep> wgan_;
  std::unique_ptr<EncoderStep> encoder_;
  std::unique_ptr<data::Loader> loader_;
};

}  // namespace

int run_anomaly_training(const AnomalyRunConfig& c) {
  train::check_run_options(c, "prepared HDF5 slices file");
  dist::LocalCommunicator local;
  const train::RunContext ctx = train::make_run_context(local, train::resolve_device(c.device));
  AnomalyTask task(c, ctx);
  task.describe(std::cerr);

  train::LoopConfig loop = train::loop_config(c);
  loop.app = "train_anomaly";
  if (task.method() == AnomalyMethod::Threshold) {
    loop.epochs = 1;  // nothing to train: one epoch of one step (see AnomalyRunConfig::method)
    loop.epochs_decay = 0;
  }
  if (task.config().stage == 1) {
    loop.score_name = "epoch";
    loop.score_key = "epoch";
  } else {
    loop.score_name = "image AUROC";
    loop.score_key = "image_auroc";
  }
  loop.config = anomaly_config_to_json(task.config());
  return train::run_training(task, loop, ctx);
}

}  // namespace rg::app
