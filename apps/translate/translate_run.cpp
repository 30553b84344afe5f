#include "apps/translate/translate_run.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <limits>
#include <memory>
#include <set>
#include <sstream>

#include "apps/translate/cyclegan_step.h"
#include "data/loader.h"
#include "data/phantom.h"
#include "data/rng.h"
#include "data/slice_dataset.h"
#include "data/slice_geometry.h"
#include "engine/dist/communicator.h"
#include "engine/dist/data_parallel.h"
#include "engine/dist/sync_batch_norm.h"
#include "engine/roentgen.h"
#include "models/patchgan.h"
#include "models/resnet_generator.h"
#include "models/unet.h"
#include "train/paired_gan.h"
#include "train/plots.h"
#include "train/train_loop.h"

namespace rg::app {

namespace fs = std::filesystem;
using nlohmann::json;
using train::GanMode;

TranslateModel parse_translate_model(const std::string& name) {
  if (name == "pix2pix") return TranslateModel::Pix2Pix;
  if (name == "cyclegan") return TranslateModel::CycleGan;
  RG_FAIL("--model: unknown model '", name, "' (expected pix2pix or cyclegan)");
}

const char* translate_model_name(TranslateModel m) {
  return m == TranslateModel::Pix2Pix ? "pix2pix" : "cyclegan";
}

void TranslateRunConfig::validate() const {
  RG_CHECK(!source.empty(), "--source: no prepared HDF5 file of the source modality given");
  RG_CHECK(!target.empty(), "--target: no prepared HDF5 file of the target modality given");
  for (const auto& [flag, path] : {std::pair{"--source", source}, {"--target", target}, {"--tissue", tissue}}) {
    if (!path.empty()) RG_CHECK(fs::exists(path), flag, ": file ", path, " does not exist");
  }
  RG_CHECK(generator == "unet" || generator == "resnet", "--generator must be unet or resnet, got '",
           generator, "'");
  RG_CHECK(model == TranslateModel::Pix2Pix || generator == "resnet",
           "--model cyclegan trains ResNet generators (--generator resnet)");
  RG_CHECK(batch_size > 0, "--batch-size must be > 0, got ", batch_size);
  RG_CHECK(full_res_width >= 0, "--full-res-width must be >= 0, got ", full_res_width);
  RG_CHECK(full_res_width == 0 || generator == "unet",
           "--full-res-width widens the U-Net's ends; the ResNet generator has no such option");
  RG_CHECK(pool_size >= 0, "--pool-size must be >= 0, got ", pool_size);
  RG_CHECK(model == TranslateModel::Pix2Pix || (gan_mode != GanMode::None && gan_mode != GanMode::WganGp),
           "--model cyclegan: --gan-mode must be vanilla, lsgan or hinge");
  for (const std::string& p : source_channels) {
    std::error_code ec;
    RG_CHECK(!p.empty() && fs::exists(p, ec), "--source-channel: file '", p, "' does not exist");
  }
  RG_CHECK(model == TranslateModel::Pix2Pix || source_channels.empty() || lambda_idt == 0,
           "--model cyclegan with several source channels: the identity loss needs as many source as "
           "target channels; pass --lambda-identity 0");
}

json translate_config_to_json(const TranslateRunConfig& c) {
  json j = train::run_options_json(c);
  j.update(json{{"model", translate_model_name(c.model)},
                 {"source", c.source},
                 {"source_channels", c.source_channels},
                 {"target", c.target},
                 {"tissue", c.tissue},
                 {"generator", c.generator},
                 {"ngf", c.ngf},
                 {"ndf", c.ndf},
                 {"n_layers", c.n_layers},
                 {"n_blocks", c.n_blocks},
                 {"num_downs", c.num_downs},
                 {"full_res_width", c.full_res_width},
                 {"norm", models::norm_kind_name(c.norm)},
                 {"gan_mode", train::gan_mode_name(c.gan_mode)},
                 {"beta1", c.beta1},
                 {"lambda_l1", c.lambda_l1},
                 {"lambda_cycle", c.lambda_cycle},
                 {"lambda_identity", c.lambda_idt},
                 {"pool_size", c.pool_size},
                 {"dropout", c.dropout},
                 {"unpaired", c.model == TranslateModel::CycleGan && c.unpaired}});
  return j;
}

// ---------------------------------------------------------------- data

TranslationSplit::TranslationSplit(const std::string& source_path, const std::string& target_path,
                                   const std::string& tissue_path, const std::string& split,
                                   const std::vector<std::string>& source_channels) {
  source = std::make_unique<data::SliceDataset>(source_path, split);
  for (const std::string& p : source_channels) more_sources.push_back(std::make_unique<data::SliceDataset>(p, split));
  target = std::make_unique<data::SliceDataset>(target_path, split);
  if (!tissue_path.empty()) {
    tissue = std::make_unique<data::SliceDataset>(tissue_path, split);
    tissue_window = data::preprocessing_from_prepared_file(tissue_path).window;
  }
  std::vector<const data::SliceDataset*> others = {target.get(), tissue.get()};
  for (const auto& m : more_sources) others.push_back(m.get());
  for (const data::SliceDataset* other : others)
    if (other) data::check_same_slice_grid(*source, *other);
  source->preload();
  for (auto& m : more_sources) m->preload();
  target->preload();
  if (tissue) tissue->preload();
}
TranslationSplit::~TranslationSplit() = default;
TranslationSplit::TranslationSplit(TranslationSplit&&) noexcept = default;
int64_t TranslationSplit::size() const { return source->size(); }

void TranslationSplit::read_source(int64_t i, float* out) const {
  std::vector<const data::SliceDataset*> contrasts = {source.get()};
  for (const auto& m : more_sources) contrasts.push_back(m.get());
  data::read_contrast_stack(contrasts, i, 0, out);
}
int64_t TranslationSplit::height() const { return source->height(); }
int64_t TranslationSplit::width() const { return source->width(); }

std::pair<std::vector<int64_t>, std::vector<int64_t>> unpaired_slices(const std::vector<int32_t>& subjects,
                                                                      uint64_t seed) {
  std::vector<int32_t> ids(subjects.begin(), subjects.end());
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  RG_CHECK(ids.size() >= 2, "unpaired training needs at least 2 training subjects (one per domain), got ",
           ids.size(), "; prepare more subjects or train pix2pix");
  data::Rng rng(data::derive_seed(seed, {0x756e70ULL}));
  for (size_t i = ids.size() - 1; i > 0; --i) std::swap(ids[i], ids[rng.below(i + 1)]);
  const std::set<int32_t> first(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(ids.size() / 2));
  std::pair<std::vector<int64_t>, std::vector<int64_t>> out;
  for (size_t i = 0; i < subjects.size(); ++i)
    (first.count(subjects[i]) ? out.first : out.second).push_back(static_cast<int64_t>(i));
  return out;
}

// ---------------------------------------------------------------- evaluation

HuScale hu_scale_of(const std::string& prepared_ct) {
  const data::SlicePreprocessing p = data::preprocessing_from_prepared_file(prepared_ct);
  RG_CHECK(p.modality == data::Modality::CT, prepared_ct,
           ": the target is not a CT file (modality mri), so there are no HU to report");
  return {p.window[0], p.window[1]};
}

namespace {

// Lesion neighbourhood: the tissue map's lesion and halo pixels dilated by `r` (square).
std::vector<uint8_t> dilate(const std::vector<uint8_t>& m, int64_t h, int64_t w, int r) {
  std::vector<uint8_t> out(m.size(), 0);
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      if (!m[static_cast<size_t>(y * w + x)]) continue;
      for (int64_t yy = std::max<int64_t>(0, y - r); yy <= std::min(h - 1, y + r); ++yy)
        for (int64_t xx = std::max<int64_t>(0, x - r); xx <= std::min(w - 1, x + r); ++xx)
          out[static_cast<size_t>(yy * w + xx)] = 1;
    }
  return out;
}

// The class of a prepared tissue-map value v in [-1, 1] under the file's window [lo, hi].
int tissue_class(float v, const std::array<double, 2>& window) {
  const double t = window[0] + (v + 1.0) * 0.5 * (window[1] - window[0]);
  return std::clamp(static_cast<int>(std::lround(t)), 0, data::kPhantomTissueClasses - 1);
}

}  // namespace

TranslationEvaluation evaluate_translation(nn::Module& g, const TranslationSplit& split, const HuScale& hu,
                                           int64_t batch_size, Device device, int64_t sample_rows) {
  RG_CHECK(batch_size > 0, "evaluate_translation: batch size must be > 0");
  const int64_t n = split.size(), h = split.height(), w = split.width(), hw = h * w;
  TranslationEvaluation out;
  out.height = h;
  out.width = w;
  out.has_tissue = split.tissue != nullptr;
  const int K = data::kPhantomTissueClasses;
  std::vector<double> tissue_abs(static_cast<size_t>(K), 0.0);
  out.tissue_pixels.assign(static_cast<size_t>(K), 0);
  int64_t inter = 0, seg_sum = 0;
  const double thr = (kLesionHu - hu.lo) / hu.per_unit() - 1.0;  // kLesionHu on the prepared scale
  const int64_t stride = std::max<int64_t>(1, n / std::max<int64_t>(1, sample_rows));
  train::FidelityAccumulator body;
  std::vector<double> mae_hu;
  NoGradGuard no_grad;
  g.eval();
  std::vector<float> mask(static_cast<size_t>(hw)), tissue(static_cast<size_t>(hw)), lesion(static_cast<size_t>(hw));
  for (int64_t start = 0; start < n; start += batch_size) {
    const int64_t count = std::min(batch_size, n - start);
    const int64_t C = split.channels();
    Tensor x = Tensor::empty({count, h, w, C}), y = Tensor::empty({count, h, w, 1});
    std::vector<float> body_masks(static_cast<size_t>(count * hw));
    for (int64_t i = 0; i < count; ++i) {
      split.read_source(start + i, x.data<float>() + i * hw * C);
      split.target->read(start + i, y.data<float>() + i * hw, body_masks.data() + i * hw);
    }
    const Tensor fake = g.forward(x.to(device)).to(Device::cpu()).contiguous();
    const float* f = fake.data<float>();
    for (int64_t i = 0; i < count; ++i) {
      const float* fi = f + i * hw;
      const float* ri = y.data<float>() + i * hw;
      const float* si = x.data<float>() + i * hw * C;  // the first source channel goes in the picture
      const std::vector<uint8_t> region = train::body_region(ri, body_masks.data() + i * hw, hw);
      body.add(train::fidelity(fi, ri, region.data(), static_cast<int>(h), static_cast<int>(w)));
      if (split.tissue) {
        split.tissue->read(start + i, tissue.data(), lesion.data());
        std::vector<uint8_t> is_lesion(static_cast<size_t>(hw));
        bool any_lesion = false;
        for (int64_t k = 0; k < hw; ++k) {
          const int t = tissue_class(tissue[static_cast<size_t>(k)], split.tissue_window);
          if (region[static_cast<size_t>(k)]) {
            tissue_abs[static_cast<size_t>(t)] += std::fabs(fi[k] - ri[k]) * hu.per_unit();
            ++out.tissue_pixels[static_cast<size_t>(t)];
          }
          is_lesion[static_cast<size_t>(k)] =
              lesion[static_cast<size_t>(k)] >= 0.5f || t == data::kTissueLesion || t == data::kTissueHalo;
          any_lesion = any_lesion || is_lesion[static_cast<size_t>(k)];
        }
        if (any_lesion) {
          ++out.lesion_slices;
          const std::vector<uint8_t> near = dilate(is_lesion, h, w, kLesionMarginPx);
          for (int64_t k = 0; k < hw; ++k) {
            if (!near[static_cast<size_t>(k)]) continue;
            const bool a = fi[k] > thr, b = ri[k] > thr;
            inter += a && b;
            seg_sum += a + b;
          }
        } else {
          ++out.lesion_free_slices;
          int64_t invented = 0;
          for (int64_t k = 0; k < hw; ++k) {
            if (tissue_class(tissue[static_cast<size_t>(k)], split.tissue_window) != data::kTissueLung) continue;
            ++out.lesion_free_lung_pixels;
            invented += fi[k] > thr;
            out.real_false_pixels += ri[k] > thr;
          }
          out.invented_pixels += invented;
          // A prepared pixel of this subject is (rows x columns mm) x the slice spacing.
          const std::array<double, 3> mm = split.target->pixel_spacing_mm(split.target->subject(start + i));
          out.invented_mm3 += static_cast<double>(invented) * mm[0] * mm[1] * mm[2];
        }
      }
      if ((start + i) % stride == 0 && static_cast<int64_t>(out.rows.size()) < sample_rows) {
        // Error map: |translated - target| with white at 500 HU.
        std::vector<float> err(static_cast<size_t>(hw));
        const double white = 500.0 / hu.per_unit();
        for (int64_t k = 0; k < hw; ++k)
          err[static_cast<size_t>(k)] = static_cast<float>(std::min(1.0, 2.0 * std::fabs(fi[k] - ri[k]) / white - 1.0));
        std::vector<float> first(static_cast<size_t>(hw));
        for (int64_t k = 0; k < hw; ++k) first[static_cast<size_t>(k)] = si[k * C];
        out.rows.push_back({std::move(first), std::vector<float>(fi, fi + hw),
                            std::vector<float>(ri, ri + hw), std::move(err)});
      }
    }
  }
  g.train();
  out.body = body.summary();
  out.mae_hu = out.body.mae * hu.per_unit();
  out.mae_hu_std = out.body.mae_std * hu.per_unit();
  if (out.has_tissue) {
    out.tissue_mae_hu.resize(static_cast<size_t>(K));
    for (int t = 0; t < K; ++t) {
      const int64_t px = out.tissue_pixels[static_cast<size_t>(t)];
      out.tissue_mae_hu[static_cast<size_t>(t)] =
          px > 0 ? tissue_abs[static_cast<size_t>(t)] / static_cast<double>(px) : std::numeric_limits<double>::quiet_NaN();
    }
    out.lesion_dice = seg_sum > 0 ? 2.0 * static_cast<double>(inter) / static_cast<double>(seg_sum) : 1.0;
  }
  return out;
}

namespace {
json finite_or_null(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }
}  // namespace

json translation_evaluation_json(const TranslationEvaluation& e, const HuScale& hu) {
  json j{{"mae_hu", e.mae_hu},
         {"mae_hu_std", e.mae_hu_std},
         {"mae", e.body.mae},
         {"psnr", finite_or_null(e.body.psnr)},
         {"psnr_std", finite_or_null(e.body.psnr_std)},
         {"ssim", e.body.ssim},
         {"ssim_std", e.body.ssim_std},
         {"slices", e.body.slices},
         {"region", "body (the target file's mask)"},
         {"intensity_range", "[-1, 1] = window [" + std::to_string(static_cast<int>(hu.lo)) + ", " +
                                 std::to_string(static_cast<int>(hu.hi)) + "] HU"},
         {"data_range", train::kPreparedDataRange}};
  if (e.has_tissue) {
    json per;
    for (int t = 0; t < data::kPhantomTissueClasses; ++t)
      per[data::phantom_tissue_name(t)] = finite_or_null(e.tissue_mae_hu[static_cast<size_t>(t)]);
    j["tissue_mae_hu"] = per;
    j["lesion_dice"] = e.lesion_dice;
    j["lesion_slices"] = e.lesion_slices;
    j["lesion_threshold_hu"] = kLesionHu;
    j["lesion_free_slices"] = e.lesion_free_slices;
    j["invented_lesion_pixels"] = e.invented_pixels;
    // Volume: pixels x the prepared pixel size x the slice spacing (0 for files without
    // /subjects/pixel_spacing).
    j["invented_lesion_mm3"] = e.invented_mm3;
    j["real_ct_lesion_pixels_in_lung"] = e.real_false_pixels;
    j["lesion_free_lung_pixels"] = e.lesion_free_lung_pixels;
    j["invented_lesion_fraction"] =
        e.lesion_free_lung_pixels > 0 ? static_cast<double>(e.invented_pixels) / e.lesion_free_lung_pixels : 0.0;
  }
  return j;
}

std::string translation_evaluation_summary(const TranslationEvaluation& e) {
  using train::fixed;
  std::string s = "body: MAE " + fixed(e.mae_hu, 1) + " HU, PSNR " + fixed(e.body.psnr, 2) + " dB, SSIM " +
                  fixed(e.body.ssim) + " (" + std::to_string(e.body.slices) + " slices, range 2)";
  if (e.has_tissue)
    s += "; lesion Dice " + fixed(e.lesion_dice) + ", invented lesion px " + std::to_string(e.invented_pixels) +
         " (" + fixed(e.invented_mm3 / 1000.0, 2) + " mL) of " + std::to_string(e.lesion_free_lung_pixels) + " lung px";
  return s;
}

void write_translation_grid(const std::string& path, const TranslationEvaluation& e) {
  if (e.rows.empty()) return;
  train::write_image_grid_png(path, e.rows, static_cast<int>(e.height), static_cast<int>(e.width),
                              {"source", "translated", "target", "error (0-500 HU)"});
}

// ---------------------------------------------------------------- the task

namespace {

class TranslateTask final : public train::TrainTask {
 public:
  TranslateTask(const TranslateRunConfig& c, const train::RunContext& ctx) : c_(c), ctx_(ctx) {
    const int world = ctx.world_size;
    RG_CHECK(c.batch_size % world == 0, "--batch-size ", c.batch_size, " is the global batch: it "
             "must be a multiple of the number of ranks (", world, ")");
    train_ = std::make_unique<TranslationSplit>(c.source, c.target, c.tissue, "train", c.source_channels);
    val_ = std::make_unique<TranslationSplit>(c.source, c.target, c.tissue, "val", c.source_channels);
    test_ = std::make_unique<TranslationSplit>(c.source, c.target, c.tissue, "test", c.source_channels);
    channels_ = train_->channels();
    hu_ = hu_scale_of(c.target);
    RG_CHECK(train_->size() >= c.batch_size, c.source, ": ", train_->size(),
             " training slices, fewer than one batch of ", c.batch_size);
    RG_CHECK(val_->size() > 0, c.source, ": the validation split is empty (the best checkpoint is chosen on it)");
    const int64_t h = train_->height(), w = train_->width();
    if (c.model == TranslateModel::CycleGan && c.unpaired) {
      std::vector<int32_t> subjects(static_cast<size_t>(train_->size()));
      for (int64_t i = 0; i < train_->size(); ++i) subjects[static_cast<size_t>(i)] = train_->source->subject(i);
      std::tie(domain_a_, domain_b_) = unpaired_slices(subjects, c.seed);
    } else {
      for (int64_t i = 0; i < train_->size(); ++i) domain_a_.push_back(i);
      domain_b_ = domain_a_;
    }
    RG_CHECK(static_cast<int64_t>(std::min(domain_a_.size(), domain_b_.size())) >= c.batch_size,
             "too few training slices per domain for a batch of ", c.batch_size);

    Generator init(c.seed);
    g_a_ = make_generator(h, w, channels_, 1, init);
    g_->to(ctx.device);
    if (c.model == TranslateModel::CycleGan) {
      g_b_holder_ = make_generator(h, w, 1, channels_, init);
      g_b_ = g_b_holder_.get();
      g_b_->to(ctx.device);
    }
    const bool adversarial = c.gan_mode != GanMode::None;
    models::PatchGanConfig dc;
    dc.ndf = c.ndf;
    dc.n_layers = c.n_layers;
    dc.norm = c.norm;
    if (c.model == TranslateModel::Pix2Pix && adversarial) {
      dc.in_channels = channels_ + 1;  // (source channels, target) pairs
      d_a_ = std::make_unique<models::PatchDiscriminator>(dc, init);
    } else if (c.model == TranslateModel::CycleGan) {
      dc.in_channels = 1;  // single images: the domains are unpaired; D_A judges the target
      d_a_ = std::make_unique<models::PatchDiscriminator>(dc, init);
      dc.in_channels = channels_;  // D_B judges the source (all its channels)
      d_b_ = std::make_unique<models::PatchDiscriminator>(dc, init);
    }
    for (auto* d : {d_a_.get(), d_b_.get()})
      if (d) d->to(ctx.device);
    const optim::AdamOptions adam{.lr = c.lr, .beta1 = c.beta1, .beta2 = 0.999};
    std::vector<Tensor> g_params = g_->parameters();
    if (g_b_) {
      const auto more = g_b_->parameters();
      g_params.insert(g_params.end(), more.begin(), more.end());
    }
    opt_g_ = std::make_unique<optim::Adam>(g_params, adam);
    std::vector<Tensor> d_params;
    if (d_a_) {
      d_params = d_a_->parameters();
      if (d_b_) {
        const auto more = d_b_->parameters();
        d_params.insert(d_params.end(), more.begin(), more.end());
      }
      opt_d_ = std::make_unique<optim::Adam>(d_params, adam);
    }
    // Data parallelism (mpirun): batch norm over the global batch (CycleGAN's instance norm
    // needs nothing), gradients averaged per player (below).
    sync_bn_ = world > 1 && c.norm == models::NormKind::Batch;
    RG_CHECK(!(sync_bn_ && ctx.device.is_cuda()), "train_translate: batch norm over ", world, " GPUs needs "
             "SyncBatchNorm, which has no CUDA path yet: pass --norm instance (docs/scaling.md)");
    if (sync_bn_) {
      for (nn::Module* m : std::initializer_list<nn::Module*>{g_, g_b_, d_a_.get(), d_b_.get()})
        if (m) dist::convert_sync_batch_norm(*m, ctx.comm);
    }
    train_gen_ = Generator(c.seed ^ 0x5eed5eedULL);
    pool_gen_ = Generator(c.seed ^ 0x9001ULL);
    manual_seed(c.seed ^ 0xd50ed50eULL);
    if (c.model == TranslateModel::Pix2Pix) {
      pix2pix_ = std::make_unique<train::PairedGanStep>(
          *g_, d_a_.get(), *opt_g_, opt_d_.get(),
          train::PairedGanConfig{.mode = c.gan_mode, .lambda_l1 = c.lambda_l1}, train_gen_);
    } else {
      cyclegan_ = std::make_unique<CycleGanStep>(
          *g_, *g_b_, *d_a_, *d_b_, *opt_g_, *opt_d_,
          CycleGanConfig{.mode = c.gan_mode, .lambda_a = c.lambda_cycle, .lambda_b = c.lambda_cycle,
                         .lambda_idt = c.lambda_idt, .pool_size = c.pool_size},
          pool_gen_);
    }
    if (ctx.data_parallel) {
      g_sync_ = std::make_unique<dist::GradientSync>(g_params, *ctx.comm);
      if (opt_d_) d_sync_ = std::make_unique<dist::GradientSync>(d_params, *ctx.comm);
      if (pix2pix_) pix2pix_->set_gradient_sync(g_sync_.get(), d_sync_.get());
      if (cyclegan_) cyclegan_->set_gradient_sync(g_sync_.get(), d_sync_.get());
    }
  }

  void describe(std::ostream& out) const {
    out << "train_translate: " << c_.source << " -> " << c_.target << " (" << train_->height() << "x"
        << train_->width() << "), " << translate_model_name(c_.model);
    if (c_.model == TranslateModel::Pix2Pix && c_.gan_mode == GanMode::None) out << " (supervised L1 baseline)";
    out << ", G " << c_.generator << " ngf " << c_.ngf;
    if (c_.full_res_width > 0) out << " full-res width " << c_.full_res_width;
    out << " (" << g_->parameter_count() << " parameters";
    if (g_b_) out << ", two of them";
    out << ")";
    if (d_a_) out << ", D n_layers " << c_.n_layers << " ndf " << c_.ndf << " (" << d_a_->parameter_count() << ")";
    out << ", GAN " << train::gan_mode_name(c_.gan_mode) << ", batch " << c_.batch_size << ", lr " << c_.lr << ", "
        << c_.epochs + c_.epochs_decay << " epochs on " << ctx_.device.str() << "\n  training: ";
    if (c_.model == TranslateModel::CycleGan && c_.unpaired)
      out << domain_a_.size() << " source slices and " << domain_b_.size()
          << " target slices from disjoint subjects (unpaired)";
    else
      out << domain_a_.size() << " paired slices";
    out << "; validation " << val_->size() << ", test " << test_->size() << " slices";
    if (ctx_.data_parallel)
      out << "; " << ctx_.world_size << " ranks (" << ctx_.comm->name() << ") x batch "
          << c_.batch_size / ctx_.world_size << (sync_bn_ ? ", SyncBatchNorm" : "");
    out << "\n";
  }

  train::TrainState state() override {
    train::TrainState s;
    if (c_.model == TranslateModel::Pix2Pix) {
      s.modules.emplace_back("G", g_);
      if (d_a_) s.modules.emplace_back("D", d_a_.get());
    } else {
      s.modules.emplace_back("G_A", g_);
      s.modules.emplace_back("G_B", g_b_);
      s.modules.emplace_back("D_A", d_a_.get());
      s.modules.emplace_back("D_B", d_b_.get());
    }
    s.optimizers.emplace_back("G", opt_g_.get());
    if (opt_d_) s.optimizers.emplace_back("D", opt_d_.get());
    s.generators.emplace_back("train", &train_gen_);
    s.generators.emplace_back("pool", &pool_gen_);
    s.generators.emplace_back("dropout", &default_generator());
    return s;
  }

  train::CheckpointInfo checkpoint_info() const override {
    train::CheckpointInfo info;
    info.kind = "translate";
    info.run = translate_config_to_json(c_);
    info.extra["model"] = translate_model_name(c_.model);
    info.extra["generator"] = generator_json();
    info.extra["generator_module"] = c_.model == TranslateModel::Pix2Pix ? "G" : "G_A";
    if (d_a_) info.extra["discriminator"] = models::to_json(d_a_->config);
    info.extra["source_prepared"] = fs::absolute(c_.source).string();
    json channels = json::array({fs::absolute(c_.source).string()});
    for (const auto& p : c_.source_channels) channels.push_back(fs::absolute(p).string());
    info.extra["source_channels_prepared"] = channels;
    info.extra["target_prepared"] = fs::absolute(c_.target).string();
    info.extra["hu_window"] = {hu_.lo, hu_.hi};
    info.extra["slice_size"] = {train_->height(), train_->width()};
    info.metadata["generator_config"] = generator_json().dump();
    return info;
  }

  void start(int64_t global_step) override { step_index_ = global_step; }

  int64_t steps_per_epoch() const override {
    const int64_t n = static_cast<int64_t>(std::max(domain_a_.size(), domain_b_.size())) / c_.batch_size;
    return c_.max_train_batches > 0 ? std::min(c_.max_train_batches, n) : n;
  }

  train::StepLosses step() override {
    // Batch k of the stream depends only on (seed, k): a resume continues the same stream.
    // Global step k of an epoch is positions [k B, (k + 1) B) of the epoch's permutation at any
    // world size; rank r of M takes the ones at r, r + M, ... (as train_seg's loader).
    const int64_t spe = std::max<int64_t>(1, static_cast<int64_t>(std::max(domain_a_.size(), domain_b_.size())) / c_.batch_size);
    const int64_t epoch = step_index_ / spe, pos = step_index_ % spe;
    ++step_index_;
    const int64_t world = ctx_.world_size, local = c_.batch_size / world;
    const int64_t h = train_->height(), w = train_->width(), hw = h * w;
    Tensor a = Tensor::empty({local, h, w, channels_}), b = Tensor::empty({local, h, w, 1});
    const auto order_a = data::shard_indices(static_cast<int64_t>(domain_a_.size()), epoch, true, c_.seed, 0, 1, false);
    const auto order_b = data::shard_indices(static_cast<int64_t>(domain_b_.size()), epoch, true,
                                             c_.seed ^ 0xb0b0ULL, 0, 1, false);
    const bool paired = c_.model == TranslateModel::Pix2Pix || !c_.unpaired;
    for (int64_t i = 0; i < local; ++i) {
      const int64_t k = pos * c_.batch_size + ctx_.rank + i * world;
      const int64_t ia = domain_a_[static_cast<size_t>(order_a[static_cast<size_t>(k % static_cast<int64_t>(order_a.size()))])];
      const int64_t ib = paired ? ia
                                : domain_b_[static_cast<size_t>(order_b[static_cast<size_t>(k % static_cast<int64_t>(order_b.size()))])];
      train_->read_source(ia, a.data<float>() + i * hw * channels_);
      train_->target->read(ib, b.data<float>() + i * hw, nullptr);
    }
    const Tensor da = a.to(ctx_.device), db = b.to(ctx_.device);
    return pix2pix_ ? pix2pix_->step(da, db) : cyclegan_->step(da, db);
  }

  // Every rank evaluates the whole split with rank 0's batch-norm statistics (identical models,
  // identical numbers); only rank 0 draws and logs.
  void share_evaluation_state(dist::Communicator& comm) override {
    std::vector<Tensor> buffers;
    for (auto& [name, t] : g_->named_buffers()) buffers.push_back(t);
    dist::broadcast_tensors(buffers, comm);
  }

  train::Evaluation validate(int64_t epoch, const train::RunFiles& files) override {
    return evaluate(*val_, files.epoch_sample("epoch_", epoch, ".png"));
  }
  train::Evaluation test(const train::RunFiles& files) override {
    return evaluate(*test_, files.samples / "test.png");
  }

  std::vector<std::string> curve_losses() const override {
    if (cyclegan_) return {"cycle_a", "cycle_b", "d_loss", "g_adv_a"};
    if (!d_a_) return {"g_l1"};
    return {"g_l1", "d_loss", "g_adv"};
  }
  std::vector<std::string> curve_metrics() const override { return {"mae_hu", "ssim"}; }

 private:
  json generator_json() const {
    if (auto* r = dynamic_cast<const models::ResnetGenerator*>(g_)) return models::to_json(r->config);
    return models::to_json(dynamic_cast<const models::UnetGenerator*>(g_)->config);
  }

  std::unique_ptr<nn::Module> make_generator(int64_t h, int64_t w, int64_t in, int64_t out, Generator& init) {
    std::unique_ptr<nn::Module> g;
    if (c_.generator == "resnet") {
      RG_CHECK(h % 4 == 0 && w % 4 == 0, "the ResNet generator needs slices whose sides are multiples of 4, got ",
               h, "x", w);
      models::ResnetConfig rc;
      rc.in_channels = in;
      rc.out_channels = out;
      rc.ngf = c_.ngf;
      rc.n_blocks = c_.n_blocks;
      rc.use_dropout = c_.dropout;
      rc.norm = c_.norm;
      g = std::make_unique<models::ResnetGenerator>(rc, init);
    } else {
      models::UnetConfig uc;
      uc.in_channels = in;
      uc.out_channels = out;
      uc.head = models::UnetConfig::Head::Tanh;
      uc.ngf = c_.ngf;
      uc.use_dropout = c_.dropout;
      uc.norm = c_.norm;
      uc.num_downs = c_.num_downs > 0 ? c_.num_downs : models::auto_num_downs(h, w);
      uc.full_res_width = c_.full_res_width;
      RG_CHECK(h % (int64_t{1} << uc.num_downs) == 0 && w % (int64_t{1} << uc.num_downs) == 0, "--num-downs ",
               uc.num_downs, " does not divide the slice size ", h, "x", w);
      g = std::make_unique<models::UnetGenerator>(uc, init);
    }
    if (!g_) g_ = g.get();
    return g;
  }

  train::Evaluation evaluate(const TranslationSplit& split, const fs::path& picture) {
    if (split.size() == 0) return {.score = 0, .metrics = json{{"slices", 0}}, .summary = "no slices"};
    const TranslationEvaluation e = evaluate_translation(*g_, split, hu_, c_.batch_size, ctx_.device, c_.sample_rows);
    if (ctx_.root()) write_translation_grid(picture.string(), e);
    // Lower MAE is better; the loop keeps the highest score.
    return {.score = -e.mae_hu, .metrics = translation_evaluation_json(e, hu_),
            .summary = translation_evaluation_summary(e) + "; pictures " + picture.string()};
  }

  TranslateRunConfig c_;
  train::RunContext ctx_;
  std::unique_ptr<TranslationSplit> train_, val_, test_;
  HuScale hu_;
  std::vector<int64_t> domain_a_, domain_b_;
  std::unique_ptr<nn::Module> g_a_, g_b_holder_;
  nn::Module* g_ = nullptr;    // G (pix2pix) or G_A (CycleGAN): source -> target
  nn::Module* g_b_ = nullptr;  // G_B (CycleGAN): target -> source
  std::unique_ptr<models::PatchDiscriminator> d_a_, d_b_;
  std::unique_ptr<optim::Adam> opt_g_, opt_d_;
  Generator train_gen_{0}, pool_gen_{0};
  std::unique_ptr<train::PairedGanStep> pix2pix_;
  std::unique_ptr<CycleGanStep> cyclegan_;
  std::unique_ptr<dist::GradientSync> g_sync_, d_sync_;
  bool sync_bn_ = false;
  int64_t step_index_ = 0;
  int64_t channels_ = 1;
};

}  // namespace

int run_translate_training(const TranslateRunConfig& c) {
  dist::LocalCommunicator local;
  return run_translate_training(c, local);
}

int run_translate_training(const TranslateRunConfig& c, dist::Communicator& host_comm) {
  c.validate();
  const train::RunContext ctx = train::make_run_context(host_comm, train::resolve_device(c.device));
  TranslateTask task(c, ctx);
  if (ctx.root()) task.describe(std::cerr);
  train::LoopConfig loop = train::loop_config(c);
  loop.app = "train_translate";
  loop.score_name = "-MAE (HU)";
  loop.score_key = "neg_mae_hu";
  loop.config = translate_config_to_json(c);
  return train::run_training(task, loop, ctx);
}

}  // namespace rg::app
