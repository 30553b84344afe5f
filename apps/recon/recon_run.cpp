#include "apps/recon/recon_run.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <memory>
#include <sstream>

#include "data/loader.h"
#include "data/recon_pairs.h"
#include "data/slice_dataset.h"
#include "engine/dist/communicator.h"
#include "engine/roentgen.h"
#include "models/patchgan.h"
#include "models/residual.h"
#include "train/paired_gan.h"
#include "train/plots.h"
#include "train/train_loop.h"

namespace rg::app {

namespace fs = std::filesystem;
using nlohmann::json;
using train::GanMode;

ReconTask parse_recon_task(const std::string& text) {
  if (text == "denoise") return ReconTask::Denoise;
  if (text == "superres") return ReconTask::Superres;
  RG_FAIL("--task: unknown task '", text, "' (expected denoise or superres)");
}
const char* recon_task_name(ReconTask t) { return t == ReconTask::Denoise ? "denoise" : "superres"; }

json recon_config_to_json(const ReconRunConfig& c) {
  json j = train::run_options_json(c);
  j.update(json{{"task", recon_task_name(c.task)},
                 {"beta1", c.beta1},
                 {"lambda_l1", c.lambda_l1},
                 {"lambda_mse", c.lambda_mse},
                 {"adv_weight", c.adv_weight},
                 {"adv_window", c.adv_window ? json(*c.adv_window) : json(nullptr)},
                 {"d_lr", c.d_lr > 0 ? c.d_lr : c.lr},
                 {"residual_scale", c.residual_scale},
                 {"gan_mode", train::gan_mode_name(c.adv_weight > 0 ? c.gan_mode : GanMode::None)},
                 {"norm", models::norm_kind_name(c.norm)},
                 {"ngf", c.ngf},
                 {"ndf", c.ndf},
                 {"n_layers", c.n_layers},
                 {"num_downs", c.num_downs},
                 {"n_blocks", c.n_blocks},
                 {"full_res_width", c.full_res_width},
                 {"precision", train::precision_name(c.precision)},
                 {"conv_backend", c.conv_backend ? conv_backend_name(*c.conv_backend) : ""},
                 {"augment", c.augment},
                 {"generator", "residual " + c.generator + " (x + residual_scale * U(x))"}});
  return j;
}

// ---------------------------------------------------------------- metrics

json ReconMetricSettings::to_json() const {
  json views_j = json::array();
  for (const ReconMetricView& v : views)
    views_j.push_back(json{{"name", v.name}, {"window", {v.lo, v.hi}}, {"data_range", v.hi - v.lo}});
  return json{{"modality", ct ? "ct" : "mri"},
              {"units", units},
              {"file_range", {norm_range[0], norm_range[1]}},
              {"views", views_j},
              {"region", region}};
}

std::string ReconMetricSettings::str() const {
  std::ostringstream os;
  os << "metrics inside " << region << "; ";
  for (size_t i = 0; i < views.size(); ++i)
    os << (i ? ", " : "") << views[i].name << " [" << views[i].lo << ", " << views[i].hi << "] (data range "
       << views[i].hi - views[i].lo << ")";
  os << " in " << units;
  return os.str();
}

namespace {

// Two numbers out of an attribute's text ("-1024, 3072").
std::array<double, 2> two_numbers(const std::string& text, const std::string& what) {
  std::istringstream is(text);
  double a = 0, b = 0;
  char comma = 0;
  RG_CHECK(static_cast<bool>(is >> a >> comma >> b) && comma == ',' && b > a, what, ": expected two increasing numbers, got '",
           text, "'");
  return {a, b};
}

}  // namespace

ReconMetricSettings recon_metric_settings(const data::SliceDataset& ds) {
  RG_CHECK(ds.has_targets(), ds.path(), ": not a pair file (no targets); prepare one with prepare_data lowdose-ct, "
           "superres or pairs");
  const std::string region = "the file's mask (/masks: body or brain)";
  if (ds.attribute("modality") == "mri")
    return mri_metric_settings("prepared intensities ([-1, 1] = the reference subject's percentile range)", region);
  return ct_metric_settings(two_numbers(ds.attribute("window"), ds.path() + ": attribute 'window'"), region);
}

ReconMetricSettings ct_metric_settings(std::array<double, 2> norm_range, std::string region) {
  ReconMetricSettings s;
  s.ct = true;
  s.norm_range = norm_range;
  s.units = "HU";
  s.views = {{"window", -160, 240}, {"full", data::kReconHuLow, data::kReconHuHigh}};
  s.region = std::move(region);
  return s;
}

ReconMetricSettings mri_metric_settings(std::string units, std::string region) {
  ReconMetricSettings s;
  s.ct = false;
  s.norm_range = {-1, 1};
  s.units = std::move(units);
  s.views = {{"range", -1, 1}};
  s.region = std::move(region);
  return s;
}

ReconScorer::ReconScorer(ReconMetricSettings settings)
    : settings_(std::move(settings)), out_(settings_.views.size()), in_(settings_.views.size()) {}

void ReconScorer::add(const float* output, const float* input, const float* reference, const uint8_t* region,
                      int height, int width) {
  for (size_t v = 0; v < settings_.views.size(); ++v) {
    const ReconMetricView& view = settings_.views[v];
    out_[v].add(train::windowed_fidelity(output, reference, region, height, width, view.lo, view.hi));
    in_[v].add(train::windowed_fidelity(input, reference, region, height, width, view.lo, view.hi));
  }
  if (!settings_.ct) return;
  if (!nps_options_) {
    nps_options_.emplace();
    nps_options_->roi = std::max(height, width) >= 256 ? 32 : 16;
    nps_out_.emplace(*nps_options_);
    nps_in_.emplace(*nps_options_);
    nps_ref_.emplace(*nps_options_);
  }
  const std::vector<train::Roi> rois = train::uniform_rois(reference, region, height, width, *nps_options_);
  nps_out_->add(output, height, width, rois);
  nps_in_->add(input, height, width, rois);
  nps_ref_->add(reference, height, width, rois);
}

std::optional<ReconNoisePower> ReconScorer::noise_power() const {
  if (!nps_options_) return std::nullopt;
  return ReconNoisePower{nps_out_->summary(), nps_in_->summary(), nps_ref_->summary(), nps_options_->roi};
}

std::vector<train::FidelitySummary> ReconScorer::output() const {
  std::vector<train::FidelitySummary> s;
  for (const auto& a : out_) s.push_back(a.summary());
  return s;
}
std::vector<train::FidelitySummary> ReconScorer::input() const {
  std::vector<train::FidelitySummary> s;
  for (const auto& a : in_) s.push_back(a.summary());
  return s;
}

json recon_metrics_json(const ReconMetricSettings& settings, const std::vector<train::FidelitySummary>& output,
                        const std::vector<train::FidelitySummary>& input) {
  json j{{"settings", settings.to_json()}};
  for (size_t v = 0; v < settings.views.size(); ++v) {
    const auto& o = output[v];
    const auto& i = input[v];
    j[settings.views[v].name] = json{{"psnr", o.psnr},           {"psnr_std", o.psnr_std},   {"ssim", o.ssim},
                                     {"ssim_std", o.ssim_std},   {"mae", o.mae},             {"mae_std", o.mae_std},
                                     {"input_psnr", i.psnr},     {"input_ssim", i.ssim},     {"input_mae", i.mae},
                                     {"psnr_gain", o.psnr - i.psnr}, {"slices", o.slices},
                                     {"window", {settings.views[v].lo, settings.views[v].hi}},
                                     {"data_range", settings.views[v].hi - settings.views[v].lo}};
  }
  if (!output.empty()) {
    j["psnr"] = output[0].psnr;
    j["ssim"] = output[0].ssim;
    j["mae"] = output[0].mae;
    j["psnr_gain"] = output[0].psnr - input[0].psnr;
    j["slices"] = output[0].slices;
  }
  return j;
}

std::string recon_metrics_summary(const ReconMetricSettings& settings, const std::vector<train::FidelitySummary>& output,
                                  const std::vector<train::FidelitySummary>& input) {
  using train::fixed;
  std::string s;
  for (size_t v = 0; v < settings.views.size(); ++v) {
    const auto& o = output[v];
    const auto& i = input[v];
    s += (v ? "; " : "") + settings.views[v].name + " [" + fixed(settings.views[v].lo, 0) + ", " +
         fixed(settings.views[v].hi, 0) + "]: PSNR " + fixed(o.psnr, 2) + " dB (input " + fixed(i.psnr, 2) + ", " +
         (o.psnr >= i.psnr ? "+" : "") + fixed(o.psnr - i.psnr, 2) + ") SSIM " + fixed(o.ssim) + " (input " +
         fixed(i.ssim) + ") MAE " + fixed(o.mae, settings.ct ? 1 : 4) + " (input " + fixed(i.mae, settings.ct ? 1 : 4) + ")";
  }
  return s + " [" + std::to_string(output.empty() ? 0 : output[0].slices) + " slices, " + settings.str() + "]";
}

// ---------------------------------------------------------------- evaluation

ReconEvaluation evaluate_recon(nn::Module& g, const data::SliceDataset& ds, int64_t batch_size, DType act_dtype,
                               Device device, int64_t sample_rows) {
  RG_CHECK(batch_size > 0, "evaluate_recon: batch size must be > 0, got ", batch_size);
  const int64_t n = ds.size(), h = ds.height(), w = ds.width(), hw = h * w;
  ReconEvaluation out;
  out.settings = recon_metric_settings(ds);
  out.height = h;
  out.width = w;
  const ReconMetricSettings& st = out.settings;
  // Pictures in the primary view's window; the error map spans 0 .. 10% of its range.
  const ReconMetricView& pv = st.views[0];
  const double err_span = 0.1 * (pv.hi - pv.lo);
  auto display = [&](float u) { return static_cast<float>(2.0 * (u - pv.lo) / (pv.hi - pv.lo) - 1.0); };
  out.titles = {"input", "output", "reference", "|error| 0-" + train::fixed(err_span, st.ct ? 0 : 2)};
  const int64_t stride = std::max<int64_t>(1, n / std::max<int64_t>(1, sample_rows));

  ReconScorer scorer(st);
  NoGradGuard no_grad;
  g.eval();
  std::vector<float> ou(static_cast<size_t>(hw)), iu(static_cast<size_t>(hw)), ru(static_cast<size_t>(hw));
  std::vector<uint8_t> region(static_cast<size_t>(hw));
  for (int64_t start = 0; start < n; start += batch_size) {
    const int64_t count = std::min(batch_size, n - start);
    Tensor x = Tensor::empty({count, h, w, 1});
    Tensor y = Tensor::empty({count, h, w, 1});
    Tensor m = Tensor::empty({count, h, w, 1});
    for (int64_t i = 0; i < count; ++i)
      ds.read(start + i, x.data<float>() + i * hw, m.data<float>() + i * hw, y.data<float>() + i * hw);
    const Tensor fake = g.forward(x.to(device).to(act_dtype)).to(DType::F32).to(Device::cpu()).contiguous();
    for (int64_t i = 0; i < count; ++i) {
      const float* oi = fake.data<float>() + i * hw;
      const float* xi = x.data<float>() + i * hw;
      const float* yi = y.data<float>() + i * hw;
      const float* mi = m.data<float>() + i * hw;
      for (int64_t k = 0; k < hw; ++k) {
        ou[static_cast<size_t>(k)] = st.to_units(oi[k]);
        iu[static_cast<size_t>(k)] = st.to_units(xi[k]);
        ru[static_cast<size_t>(k)] = st.to_units(yi[k]);
        region[static_cast<size_t>(k)] = mi[k] >= 0.5f;
      }
      scorer.add(ou.data(), iu.data(), ru.data(), region.data(), static_cast<int>(h), static_cast<int>(w));
      if ((start + i) % stride == 0 && static_cast<int64_t>(out.rows.size()) < sample_rows) {
        std::vector<std::vector<float>> row(4, std::vector<float>(static_cast<size_t>(hw)));
        for (int64_t k = 0; k < hw; ++k) {
          const size_t z = static_cast<size_t>(k);
          row[0][z] = display(iu[z]);
          row[1][z] = display(ou[z]);
          row[2][z] = display(ru[z]);
          row[3][z] = static_cast<float>(std::min(1.0, std::fabs(ou[z] - ru[z]) / err_span) * 2.0 - 1.0);
        }
        out.rows.push_back(std::move(row));
      }
    }
  }
  g.train();
  out.output = scorer.output();
  out.input = scorer.input();
  out.noise_power = scorer.noise_power();
  return out;
}

namespace {

json nps_json(const train::NpsSummary& s, const train::NpsSummary* reference) {
  json j{{"variance", s.variance}, {"mean_frequency", s.mean_frequency}, {"radial", s.radial}};
  if (reference) j["distance_to_full_dose"] = train::nps_distance(s, *reference);
  return j;
}

}  // namespace

json noise_power_json(const ReconNoisePower& n) {
  std::vector<double> freq;
  for (size_t k = 1; k <= n.reference.radial.size(); ++k) freq.push_back(static_cast<double>(k) / n.roi);
  return json{{"rois", n.reference.rois},
              {"roi_px", n.roi},
              {"settings", "uniform soft-tissue ROIs of the full-dose reference (train/noise_power.h); "
                           "variance in HU^2, frequencies in cycles/pixel, radial NPS in HU^2 px^2"},
              {"radial_frequency", freq},
              {"output", nps_json(n.output, &n.reference)},
              {"input", nps_json(n.input, &n.reference)},
              {"full_dose", nps_json(n.reference, nullptr)}};
}

std::string noise_power_summary(const ReconNoisePower& n) {
  using train::fixed;
  if (n.reference.rois == 0) return "NPS: no uniform soft-tissue ROI";
  auto one = [&](const char* name, const train::NpsSummary& x) {
    return std::string(name) + " SD " + fixed(std::sqrt(x.variance), 1) + " HU, mean frequency " +
           fixed(x.mean_frequency, 3);
  };
  return "NPS in " + std::to_string(n.reference.rois) + " uniform ROIs: " + one("output", n.output) +
         " (distance to full dose " + fixed(train::nps_distance(n.output, n.reference), 2) + "), " +
         one("full dose", n.reference) + ", " + one("low dose", n.input);
}

json recon_evaluation_json(const ReconEvaluation& e) {
  json j = recon_metrics_json(e.settings, e.output, e.input);
  if (e.noise_power) j["nps"] = noise_power_json(*e.noise_power);
  return j;
}

std::string recon_evaluation_summary(const ReconEvaluation& e) {
  std::string s = recon_metrics_summary(e.settings, e.output, e.input);
  if (e.noise_power) s += "; " + noise_power_summary(*e.noise_power);
  return s;
}

// ---------------------------------------------------------------- the task

namespace {

// U's body from --generator: one channel in and out, a linear head (the correction is unbounded).
models::ResidualGenerator::BodyConfig generator_body(const ReconRunConfig& c, int64_t h, int64_t w) {
  if (c.generator == "resnet") {
    RG_CHECK(c.full_res_width == 0, "--full-res-width: the ResNet body has full-resolution ends already; the flag "
             "is for --generator unet");
    models::ResnetConfig rc;
    rc.ngf = c.ngf;
    rc.n_blocks = c.n_blocks;
    rc.norm = c.norm;
    rc.head = models::ResnetConfig::Head::Logits;
    return rc;
  }
  RG_CHECK(c.generator == "unet", "--generator: unknown generator '", c.generator, "' (expected unet or resnet)");
  models::UnetConfig gc;
  gc.head = models::UnetConfig::Head::Logits;
  gc.num_downs = c.num_downs > 0 ? c.num_downs : models::auto_num_downs(h, w);
  gc.ngf = c.ngf;
  gc.norm = c.norm;
  gc.full_res_width = c.full_res_width;
  return gc;
}

class ReconTaskRun final : public train::TrainTask {
 public:
  ReconTaskRun(const ReconRunConfig& c, const train::RunContext& ctx) : c_(c), ctx_(ctx) {
    RG_CHECK(ctx.world_size == 1 && !ctx.data_parallel,
             "train_recon: data parallelism (mpirun) is not supported yet; run one process");
    act_dtype_ = train::apply_precision(c.precision, ctx.device, &precision_note_);
    val_set_ = std::make_unique<data::SliceDataset>(c.data, "val");
    test_set_ = std::make_unique<data::SliceDataset>(c.data, "test");
    settings_ = recon_metric_settings(*val_set_);
    const std::string pairs = val_set_->attribute("pairs");
    if (c.task == ReconTask::Denoise)
      RG_CHECK(pairs == "low-dose-ct" || pairs == "volume-pairs", "--task denoise: ", c.data, " holds '", pairs,
               "' pairs; denoising trains on prepare_data lowdose-ct (or pairs) files");
    else
      RG_CHECK(pairs == "superres" || pairs == "volume-pairs", "--task superres: ", c.data, " holds '", pairs,
               "' pairs; super-resolution trains on prepare_data superres (or pairs) files");
    val_set_->preload();
    test_set_->preload();
    RG_CHECK(val_set_->size() > 0, c.data, ": the validation split is empty (train_recon chooses its best "
             "checkpoint on it)");
    const int64_t h = val_set_->height(), w = val_set_->width();
    Generator init_gen(c.seed);
    g_ = std::make_unique<models::ResidualGenerator>(generator_body(c, h, w), init_gen, c.residual_scale);
    const int64_t mult = g_->size_multiple();
    RG_CHECK(h % mult == 0 && w % mult == 0, "--generator ", c.generator, ": the slice size ", h, "x", w,
             " is not a multiple of ", mult, c.generator == "unet" ? " (2^--num-downs: lower --num-downs)" : "");
    const GanMode mode = c.adv_weight > 0 ? c.gan_mode : GanMode::None;
    // D sees (input, output or reference) pairs.
    nets_ = train::make_paired_networks(*g_, mode, 2, c.ndf, c.n_layers, c.norm, c.lr, c.beta1, init_gen, ctx.device,
                                        /*spectral_norm=*/false, c.d_lr);
    train_gen_ = Generator(c.seed ^ 0x5eed5eedULL);
    manual_seed(c.seed ^ 0xd50ed50eULL);
    train::PairedGanConfig step_config{.mode = mode, .lambda_l1 = c.lambda_l1, .lambda_mse = c.lambda_mse,
                                       .adv_weight = c.adv_weight};
    if (c.adv_window) {
      const auto [lo, hi] = *c.adv_window;
      RG_CHECK(hi > lo, "--adv-window ", lo, ",", hi, ": the window is empty (needs LO < HI, in ", settings_.units, ")");
      // The file's units -> its [-1, 1] values (the inverse of ReconMetricSettings::to_units).
      const auto [u0, u1] = settings_.norm_range;
      step_config.d_window = std::array<double, 2>{2.0 * (lo - u0) / (u1 - u0) - 1.0, 2.0 * (hi - u0) / (u1 - u0) - 1.0};
    }
    step_ = std::make_unique<train::PairedGanStep>(*g_, nets_.d.get(), *nets_.opt_g, nets_.opt_d.get(), step_config,
                                                   train_gen_);
  }

  void describe(std::ostream& out) const {
    out << "train_recon: --task " << recon_task_name(c_.task) << " on " << c_.data << " (" << val_set_->height() << "x"
        << val_set_->width() << ", pairs '" << val_set_->attribute("pairs") << "'), G residual "
        << g_->body_description() << " residual scale " << c_.residual_scale << " ("
        << g_->parameter_count() << " parameters)";
    if (nets_.d) out << ", D PatchGAN n_layers " << c_.n_layers << " ndf " << c_.ndf << " (" << nets_.d->parameter_count() << ")";
    out << ", losses ";
    if (c_.lambda_l1 > 0 || c_.lambda_mse == 0) out << c_.lambda_l1 << " L1" << (c_.lambda_mse > 0 ? " + " : "");
    if (c_.lambda_mse > 0) out << c_.lambda_mse << " MSE";
    if (nets_.d) {
      out << " + " << c_.adv_weight << " adversarial (" << train::gan_mode_name(c_.gan_mode);
      if (c_.adv_window) out << ", D sees [" << (*c_.adv_window)[0] << ", " << (*c_.adv_window)[1] << "] " << settings_.units;
      out << ")";
    } else out << " (--adv-weight 0: supervised baseline, no discriminator)";
    out << ", batch " << c_.batch_size << ", lr " << c_.lr;
    if (nets_.d && c_.d_lr > 0) out << " (D " << c_.d_lr << ")";
    out << ", " << c_.epochs + c_.epochs_decay << " epochs on " << ctx_.device.str()
        << " in " << train::precision_name(c_.precision);
    if (!precision_note_.empty()) out << " (" << precision_note_ << ")";
    out << "\n  validation: " << val_set_->size() << " slices, test: " << test_set_->size() << " slices; "
        << settings_.str() << "\n";
  }

  train::TrainState state() override {
    return train::gan_pair_state(g_.get(), nets_.d.get(), nets_.opt_g.get(), nets_.opt_d.get(), &train_gen_);
  }

  train::CheckpointInfo checkpoint_info() const override {
    train::CheckpointInfo info;
    info.kind = "recon";
    info.run = recon_config_to_json(c_);
    info.extra["generator"] = g_->body_json();
    info.extra["generator_kind"] = "residual";
    info.extra["residual_scale"] = c_.residual_scale;
    if (nets_.d) info.extra["discriminator"] = models::to_json(nets_.d->config);
    info.extra["slice_size"] = {val_set_->height(), val_set_->width()};
    info.extra["metrics"] = settings_.to_json();
    // What infer_recon needs to normalize a volume as the training file was.
    info.extra["modality"] = settings_.ct ? "ct" : "mri";
    info.extra["file_range"] = {settings_.norm_range[0], settings_.norm_range[1]};
    info.extra["percentiles"] = val_set_->attribute("percentiles");
    info.extra["pairs"] = val_set_->attribute("pairs");
    return info;
  }

  void start(int64_t global_step) override {
    data::LoaderOptions lo = train::training_stream(c_, global_step);
    lo.augment = c_.augment;
    lo.augment_options.contrast = 0;  // geometry only: the target must stay the input's reference
    lo.augment_options.brightness = 0;
    lo.augment_options.noise_sigma = 0;
    loader_ = std::make_unique<data::Loader>(c_.data, lo);
    RG_CHECK(loader_->dataset().has_targets(), c_.data, ": the train split has no targets");
  }

  int64_t steps_per_epoch() const override {
    return train::capped_steps_per_epoch(c_, loader_->batches_per_epoch());
  }

  train::StepLosses step() override {
    std::optional<data::Batch> batch = loader_->next();
    RG_CHECK(batch.has_value(), "loader ended early");
    const Tensor input = batch->image.to(ctx_.device).to(act_dtype_);
    const Tensor target = batch->target.to(ctx_.device).to(act_dtype_);
    return step_->step(input, target);
  }

  train::Evaluation validate(int64_t epoch, const train::RunFiles& files) override {
    return evaluate(*val_set_, files.epoch_sample("epoch_", epoch, ".png"));
  }
  train::Evaluation test(const train::RunFiles& files) override { return evaluate(*test_set_, files.samples / "test.png"); }

  std::vector<std::string> curve_losses() const override {
    if (!nets_.d) return {"g_l1"};
    return {"g_l1", "d_loss", "g_adv"};
  }
  std::vector<std::string> curve_metrics() const override { return {"psnr", "ssim"}; }

 private:
  train::Evaluation evaluate(const data::SliceDataset& ds, const fs::path& picture) {
    if (ds.size() == 0) return {.score = 0, .metrics = json{{"slices", 0}}, .summary = "no slices"};
    const ReconEvaluation e = evaluate_recon(*g_, ds, c_.batch_size, act_dtype_, ctx_.device, c_.sample_rows);
    if (!e.rows.empty())
      train::write_image_grid_png(picture.string(), e.rows, static_cast<int>(e.height), static_cast<int>(e.width), e.titles);
    // PSNR in the primary view chooses the best checkpoint.
    return {.score = e.output[0].psnr, .metrics = recon_evaluation_json(e),
            .summary = recon_evaluation_summary(e) + "; pictures " + picture.string()};
  }

  ReconRunConfig c_;
  train::RunContext ctx_;
  DType act_dtype_ = DType::F32;
  std::string precision_note_;
  ReconMetricSettings settings_;
  std::unique_ptr<data::SliceDataset> val_set_, test_set_;
  std::unique_ptr<models::ResidualGenerator> g_;
  train::PairedNetworks nets_;  // D (null without an adversarial term), Adam for G and D
  Generator train_gen_{0};
  std::unique_ptr<train::PairedGanStep> step_;
  std::unique_ptr<data::Loader> loader_;
};

}  // namespace

int run_recon_training(const ReconRunConfig& c) {
  train::check_run_options(c, "pair file");
  RG_CHECK(c.adv_weight >= 0, "--adv-weight must be >= 0, got ", c.adv_weight);
  RG_CHECK(c.d_lr >= 0, "--d-lr must be >= 0 (0: the same as --lr), got ", c.d_lr);
  RG_CHECK(!c.adv_window || c.adv_weight > 0, "--adv-window sets what the discriminator sees, and --adv-weight 0 "
           "trains without one: drop --adv-window or give --adv-weight > 0");
  if (c.conv_backend) set_conv_backend(*c.conv_backend);
  dist::LocalCommunicator local;
  const train::RunContext ctx = train::make_run_context(local, train::resolve_device(c.device));
  ReconTaskRun task(c, ctx);
  task.describe(std::cerr);
  train::LoopConfig loop = train::loop_config(c);
  loop.app = "train_recon";
  loop.score_name = "PSNR";
  loop.score_key = "psnr";
  loop.config = recon_config_to_json(c);
  return train::run_training(task, loop, ctx);
}

}  // namespace rg::app
