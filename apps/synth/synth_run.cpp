#include "apps/synth/synth_run.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <memory>

#include "data/label_map.h"
#include "data/loader.h"
#include "data/slice_dataset.h"
#include "engine/dist/communicator.h"
#include "engine/roentgen.h"
#include "models/patchgan.h"
#include "models/unet.h"
#include "train/paired_gan.h"
#include "train/plots.h"
#include "train/train_loop.h"

namespace rg::app {

namespace fs = std::filesystem;
using nlohmann::json;
using train::GanMode;

json synth_config_to_json(const SynthRunConfig& c) {
  json j = train::run_options_json(c);
  j.update(json{{"beta1", c.beta1},
                 {"lambda_l1", c.lambda_l1},
                 {"gan_mode", train::gan_mode_name(c.gan_mode)},
                 {"norm", models::norm_kind_name(c.norm)},
                 {"ngf", c.ngf},
                 {"ndf", c.ndf},
                 {"n_layers", c.n_layers},
                 {"num_downs", c.num_downs},
                 {"dropout", c.dropout},
                 {"precision", train::precision_name(c.precision)},
                 {"conv_backend", c.conv_backend ? conv_backend_name(*c.conv_backend) : ""},
                 {"train_fraction", c.train_fraction},
                 {"train_seed", c.train_seed},
                 {"augment", c.augment},
                 {"condition", c.label_condition ? "labels" : "mask"},
                 {"spectral_norm", c.spectral_norm}});
  return j;
}

Tensor synth_condition(const Tensor& masks_or_labels, int label_classes) {
  if (label_classes == 0) return masks_or_labels;
  const Tensor labels = masks_or_labels.to(Device::cpu()).to(DType::F32).contiguous();
  const Shape& s = labels.shape();
  RG_CHECK(s.size() == 4 && s[3] == 1, "synth_condition: label maps must be [B, H, W, 1]");
  Tensor out = Tensor::empty({s[0], s[1], s[2], label_classes});
  data::one_hot(labels.data<float>(), s[0] * s[1] * s[2], label_classes, out.data<float>());
  return out;
}

SynthEvaluation evaluate_synthesis(models::UnetGenerator& g, const data::SliceDataset& ds,
                                   int64_t batch_size, DType act_dtype, Device device,
                                   int64_t sample_rows, bool distribution, int label_classes) {
  RG_CHECK(batch_size > 0, "evaluate_synthesis: batch size must be > 0, got ", batch_size);
  RG_CHECK(label_classes == 0 || static_cast<int>(ds.label_classes().size()) == label_classes, ds.path(),
           ": G is conditioned on ", label_classes, " label classes but the ", ds.split(), " split has ",
           ds.has_labels() ? std::to_string(ds.label_classes().size()) + " classes" : std::string("no label maps"));
  const int64_t n = ds.size(), h = ds.height(), w = ds.width(), hw = h * w;
  SynthEvaluation out;
  out.label_condition = label_classes > 0;
  out.height = h;
  out.width = w;
  // Picture rows: the first sample_rows slices with foreground among every stride-th slice
  // (spread over the split rather than neighbours).
  const int64_t stride = std::max<int64_t>(1, n / std::max<int64_t>(1, sample_rows * 2));
  std::vector<int64_t> picture;
  std::vector<float> image(static_cast<size_t>(hw)), mask(static_cast<size_t>(hw));
  for (int64_t idx = 0; idx < n && static_cast<int64_t>(picture.size()) < sample_rows; idx += stride) {
    ds.read(idx, image.data(), mask.data());
    if (std::any_of(mask.begin(), mask.end(), [](float v) { return v >= 0.5f; }))
      picture.push_back(idx);
  }

  NoGradGuard no_grad;
  g.eval();
  train::FidelityAccumulator body, inside;
  std::optional<train::FeatureEncoder> encoder;
  if (distribution && n >= 2 && h >= 16 && w >= 16) encoder.emplace();
  std::vector<double> real_features, synthetic_features;
  for (int64_t start = 0; start < n; start += batch_size) {
    const int64_t count = std::min(batch_size, n - start);
    Tensor x = Tensor::empty({count, h, w, 1});
    Tensor y = Tensor::empty({count, h, w, 1});
    Tensor labels = label_classes ? Tensor::empty({count, h, w, 1}) : x;
    std::vector<uint8_t> lbl(label_classes ? static_cast<size_t>(hw) : 0);
    for (int64_t i = 0; i < count; ++i) {
      ds.read(start + i, y.data<float>() + i * hw, x.data<float>() + i * hw);
      if (label_classes) {
        ds.read_labels(start + i, lbl.data());
        std::copy(lbl.begin(), lbl.end(), labels.data<float>() + i * hw);
      }
    }
    const Tensor fake = g.forward(synth_condition(labels, label_classes).to(device).to(act_dtype))
                            .to(DType::F32).to(Device::cpu()).contiguous();
    if (encoder) {
      const std::vector<double> fr = encoder->features(y), fs = encoder->features(fake);
      real_features.insert(real_features.end(), fr.begin(), fr.end());
      synthetic_features.insert(synthetic_features.end(), fs.begin(), fs.end());
    }
    const float* s = fake.data<float>();
    for (int64_t i = 0; i < count; ++i) {
      const float* si = s + i * hw;
      const float* ri = y.data<float>() + i * hw;
      const float* mi = x.data<float>() + i * hw;
      const std::vector<uint8_t> region = train::body_region(ri, mi, hw);
      std::vector<uint8_t> in_mask(static_cast<size_t>(hw));
      for (int64_t k = 0; k < hw; ++k) in_mask[static_cast<size_t>(k)] = mi[k] >= 0.5f;
      body.add(train::fidelity(si, ri, region.data(), static_cast<int>(h), static_cast<int>(w)));
      inside.add(train::fidelity(si, ri, in_mask.data(), static_cast<int>(h), static_cast<int>(w)));
      if (std::find(picture.begin(), picture.end(), start + i) != picture.end()) {
        std::vector<float> m(mi, mi + hw);
        for (float& v : m) v = v >= 0.5f ? 1.0f : -1.0f;
        if (label_classes) m = data::label_picture(labels.data<float>() + i * hw, hw, label_classes);
        out.rows.push_back({std::move(m), std::vector<float>(ri, ri + hw), std::vector<float>(si, si + hw)});
      }
    }
  }
  g.train();
  out.body = body.summary();
  out.mask = inside.summary();
  if (encoder) out.distribution = train::distribution_distance(real_features, synthetic_features);
  return out;
}

json synth_evaluation_json(const SynthEvaluation& e) {
  json j{{"mae", e.body.mae},           {"mae_std", e.body.mae_std},
              {"psnr", e.body.psnr},         {"psnr_std", e.body.psnr_std},
              {"ssim", e.body.ssim},         {"ssim_std", e.body.ssim_std},
              {"mask_mae", e.mask.mae},      {"mask_psnr", e.mask.psnr},
              {"mask_ssim", e.mask.ssim},    {"slices", e.body.slices},
              {"mask_slices", e.mask.slices}, {"region", "body"},
              {"intensity_range", "[-1, 1]"}, {"data_range", train::kPreparedDataRange}};
  if (e.distribution) {
    const train::DistributionDistance& d = *e.distribution;
    j["fd"] = d.frechet;
    j["kid"] = d.kid.mean;
    j["kid_sd"] = d.kid.sd;
    j["kid_subset_size"] = d.kid.subset_size;
    j["kid_subsets"] = d.kid.subsets;
    j["distribution_features"] = "fixed random conv net, 128 features (train/distribution_metrics.h)";
  }
  return j;
}

std::string synth_evaluation_summary(const SynthEvaluation& e) {
  using train::fixed;
  return "body: MAE " + fixed(e.body.mae) + " PSNR " + fixed(e.body.psnr, 2) + " dB SSIM " +
         fixed(e.body.ssim) + " (" + std::to_string(e.body.slices) + " slices); mask: MAE " +
         fixed(e.mask.mae) + " PSNR " + fixed(e.mask.psnr, 2) + " dB SSIM " + fixed(e.mask.ssim) +
         " (intensities in [-1, 1], data range 2)" +
         (e.distribution ? "; FD " + fixed(e.distribution->frechet, 3) + " KID " +
                               fixed(e.distribution->kid.mean, 5) + " (fixed random features)"
                         : std::string());
}

void write_synthesis_grid(const std::string& path, const SynthEvaluation& e) {
  if (e.rows.empty()) return;
  train::write_image_grid_png(path, e.rows, static_cast<int>(e.height), static_cast<int>(e.width),
                              {e.label_condition ? "labels" : "mask", "real", "synthetic"});
}

namespace {

// Mask -> image synthesis as a task of the training loop.
class SynthTask final : public train::TrainTask {
 public:
  SynthTask(const SynthRunConfig& c, const train::RunContext& ctx) : c_(c), ctx_(ctx) {
    RG_CHECK(ctx.world_size == 1 && !ctx.data_parallel,
             "train_synth: data parallelism (mpirun) is not supported yet; run one process");
    RG_CHECK(c.train_fraction > 0 && c.train_fraction <= 1, "--train-fraction must be in (0, 1], got ",
             c.train_fraction);
    RG_CHECK(!c.spectral_norm || c.gan_mode != GanMode::None,
             "--spectral-norm normalizes D, and --gan-mode none has no D");
    act_dtype_ = train::apply_precision(c.precision, ctx.device, &precision_note_);
    val_set_ = std::make_unique<data::SliceDataset>(c.data, "val");
    test_set_ = std::make_unique<data::SliceDataset>(c.data, "test");
    val_set_->preload();
    test_set_->preload();
    RG_CHECK(val_set_->size() > 0, c.data, ": the validation split is empty (train_synth chooses "
             "its best checkpoint on it); prepare the file with a validation fraction");
    const int64_t train_slices = data::read_slices_info(c.data).counts[0];
    subset_ = data::seeded_subset(train_slices, c.train_fraction, c.train_seed);

    if (c.label_condition) {
      RG_CHECK(val_set_->has_labels(), "--condition labels: ", c.data, " has no label maps; prepare it "
               "with prepare_data ... --label-map, or use --condition mask");
      label_classes_ = static_cast<int>(val_set_->label_classes().size());
    }
    const int64_t h = val_set_->height(), w = val_set_->width();
    models::UnetConfig gc;
    gc.in_channels = label_classes_ ? label_classes_ : 1;  // one-hot classes, or the binary mask
    gc.out_channels = 1;
    gc.head = models::UnetConfig::Head::Tanh;
    gc.num_downs = c.num_downs > 0 ? c.num_downs : models::auto_num_downs(h, w);
    gc.ngf = c.ngf;
    gc.norm = c.norm;
    gc.use_dropout = c.dropout;
    RG_CHECK(gc.num_downs >= 1 && h % (int64_t{1} << gc.num_downs) == 0 &&
                 w % (int64_t{1} << gc.num_downs) == 0,
             "--num-downs ", gc.num_downs, " does not divide the slice size ", h, "x", w);
    Generator init_gen(c.seed);
    g_ = std::make_unique<models::UnetGenerator>(gc, init_gen);
    nets_ = train::make_paired_networks(*g_, c.gan_mode, gc.in_channels + 1, c.ndf, c.n_layers, gc.norm, c.lr,
                                        c.beta1, init_gen, ctx.device, c.spectral_norm);
    train_gen_ = Generator(c.seed ^ 0x5eed5eedULL);
    manual_seed(c.seed ^ 0xd50ed50eULL);
    step_ = std::make_unique<train::PairedGanStep>(
        *g_, nets_.d.get(), *nets_.opt_g, nets_.opt_d.get(),
        train::PairedGanConfig{.mode = c.gan_mode, .lambda_l1 = c.lambda_l1}, train_gen_);
  }

  void describe(std::ostream& out) const {
    out << "train_synth: " << c_.data << " (" << val_set_->height() << "x" << val_set_->width()
        << "), " << (label_classes_ ? "label map (" + data::join_label_classes(val_set_->label_classes()) + ")" : std::string("mask"))
        << " -> image, G unet num_downs " << g_->config.num_downs << " ngf "
        << g_->config.ngf << " tanh (" << g_->parameter_count() << " parameters)";
    if (nets_.d)
      out << ", D n_layers " << c_.n_layers << " ndf " << c_.ndf << (c_.spectral_norm ? " spectral norm" : "") << " ("
          << nets_.d->parameter_count() << ")";
    out << ", GAN " << train::gan_mode_name(c_.gan_mode) << ", L1 weight " << c_.lambda_l1
        << ", batch " << c_.batch_size << ", " << c_.epochs + c_.epochs_decay << " epochs on "
        << ctx_.device.str() << " in " << train::precision_name(c_.precision);
    if (!precision_note_.empty()) out << " (" << precision_note_ << ")";
    out << "\n  training on " << subset_.size() << " real slices";
    if (c_.train_fraction < 1) out << " (--train-fraction " << c_.train_fraction << ", --train-seed " << c_.train_seed << ")";
    out << "; validation: " << val_set_->size() << " slices, test: " << test_set_->size() << " slices\n";
  }

  train::TrainState state() override {
    return train::gan_pair_state(g_.get(), nets_.d.get(), nets_.opt_g.get(), nets_.opt_d.get(), &train_gen_);
  }

  train::CheckpointInfo checkpoint_info() const override {
    train::CheckpointInfo info;
    info.kind = "synth";
    info.run = synth_config_to_json(c_);
    info.extra["generator"] = models::to_json(g_->config);
    if (nets_.d) info.extra["discriminator"] = models::to_json(nets_.d->config);
    // The slice size G was trained on: synthesize refuses masks of another size.
    info.extra["slice_size"] = {val_set_->height(), val_set_->width()};
    // What G is conditioned on: synthesize feeds it the same.
    info.extra["condition"] = label_classes_ ? "labels" : "mask";
    if (label_classes_) info.extra["label_classes"] = val_set_->label_classes();
    info.metadata["generator_config"] = models::to_json(g_->config).dump();
    return info;
  }

  void start(int64_t global_step) override {
    data::LoaderOptions lo = train::training_stream(c_, global_step);
    lo.augment = c_.augment;
    lo.augment_options.contrast = 0;
    lo.augment_options.brightness = 0;
    lo.augment_options.noise_sigma = 0;
    if (c_.train_fraction < 1) lo.subset = subset_;
    lo.labels = label_classes_ > 0;
    loader_ = std::make_unique<data::Loader>(c_.data, lo);
  }

  int64_t steps_per_epoch() const override {
    return train::capped_steps_per_epoch(c_, loader_->batches_per_epoch());
  }

  train::StepLosses step() override {
    std::optional<data::Batch> batch = loader_->next();
    RG_CHECK(batch.has_value(), "loader ended early");
    const Tensor image = batch->image.to(ctx_.device).to(act_dtype_);
    const Tensor condition = synth_condition(label_classes_ ? batch->labels : batch->mask, label_classes_);
    return step_->step(condition.to(ctx_.device).to(act_dtype_), image);
  }

  train::Evaluation validate(int64_t epoch, const train::RunFiles& files) override {
    return evaluate(*val_set_, files.epoch_sample("epoch_", epoch, ".png"), false);
  }
  train::Evaluation test(const train::RunFiles& files) override {
    return evaluate(*test_set_, files.samples / "test.png", true);
  }

  std::vector<std::string> curve_losses() const override {
    if (!nets_.d) return {"g_l1"};
    return {"g_l1", "d_loss", "g_adv"};
  }
  std::vector<std::string> curve_metrics() const override { return {"mae", "ssim"}; }

 private:
  train::Evaluation evaluate(const data::SliceDataset& ds, const fs::path& picture, bool distribution) {
    if (ds.size() == 0) {
      return {.score = 0, .metrics = json{{"slices", 0}}, .summary = "no slices"};
    }
    const SynthEvaluation e = evaluate_synthesis(*g_, ds, c_.batch_size, act_dtype_, ctx_.device,
                                                 c_.sample_rows, distribution, label_classes_);
    write_synthesis_grid(picture.string(), e);
    // SSIM inside the body chooses the best checkpoint (higher is better).
    return {.score = e.body.ssim, .metrics = synth_evaluation_json(e),
            .summary = synth_evaluation_summary(e) + "; pictures " + picture.string()};
  }

  SynthRunConfig c_;
  train::RunContext ctx_;
  DType act_dtype_ = DType::F32;
  std::string precision_note_;
  std::vector<int64_t> subset_;
  int label_classes_ = 0;  // 0: conditioned on the mask
  std::unique_ptr<data::SliceDataset> val_set_, test_set_;
  std::unique_ptr<models::UnetGenerator> g_;
  train::PairedNetworks nets_;  // D (null without an adversarial term), Adam for G and D
  Generator train_gen_{0};
  std::unique_ptr<train::PairedGanStep> step_;
  std::unique_ptr<data::Loader> loader_;
};

}  // namespace

int run_synth_training(const SynthRunConfig& c) {
  train::check_run_options(c, "prepared HDF5 file");
  if (c.conv_backend) set_conv_backend(*c.conv_backend);
  dist::LocalCommunicator local;
  const train::RunContext ctx = train::make_run_context(local, train::resolve_device(c.device));
  SynthTask task(c, ctx);
  task.describe(std::cerr);

  train::LoopConfig loop = train::loop_config(c);
  loop.app = "train_synth";
  loop.score_name = "SSIM";
  loop.score_key = "ssim";
  loop.config = synth_config_to_json(c);
  return train::run_training(task, loop, ctx);
}

}  // namespace rg::app
