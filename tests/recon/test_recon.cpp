// Reconstruction (issue 17): windowed PSNR/SSIM against hand-computed values, a tiny residual
// model that overfits a few noisy pairs, a tiny train_recon run (run directory, stated metric
// settings, resume, falling loss), infer_recon on the input's grid, and bad inputs.
#include <gtest/gtest.h>

#include <unistd.h>

#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>
#include <variant>

#include "apps/recon/recon_infer.h"
#include "apps/recon/recon_run.h"
#include "data/nifti.h"
#include "data/rng.h"
#include "data/slice_dataset.h"
#include "data/slice_writer.h"
#include "engine/error.h"
#include "engine/roentgen.h"
#include "models/patchgan.h"
#include "models/residual.h"
#include "train/checkpoint.h"
#include "train/paired_gan.h"
#include "train/synth_metrics.h"

using namespace rg;
using namespace rg::app;
namespace fs = std::filesystem;

namespace {

fs::path scratch(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("rg_recon_app_" + std::to_string(getpid())) / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

class ScratchCleanup : public ::testing::Environment {
 public:
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(fs::temp_directory_path() / ("rg_recon_app_" + std::to_string(getpid())), ec);
  }
};
[[maybe_unused]] ::testing::Environment* const kCleanup = ::testing::AddGlobalTestEnvironment(new ScratchCleanup);

// A clean "CT slice" in file units ([-1024, 3072] HU -> [-1, 1]): a body disc of soft tissue
// with a brighter insert; the input adds Gaussian noise of `noise_hu`.
float to_file(double hu) { return static_cast<float>(2.0 * (hu + 1024.0) / 4096.0 - 1.0); }

void make_slice(int k, int n, double noise_hu, data::Rng& rng, std::vector<float>& input, std::vector<float>& target,
                std::vector<uint8_t>& mask) {
  const double cx = n / 2.0 + (k % 3) - 1, cy = n / 2.0 + (k % 5) - 2, r = n * 0.38;
  for (int y = 0; y < n; ++y)
    for (int x = 0; x < n; ++x) {
      const double d2 = (x - cx) * (x - cx) + (y - cy) * (y - cy);
      const bool body = d2 <= r * r;
      const bool insert = (x - cx - 3) * (x - cx - 3) + (y - cy) * (y - cy) <= 9.0 + k % 3;
      const double hu = body ? (insert ? 200.0 : 40.0 + 0.5 * (x - cx)) : -1000.0;
      target.push_back(to_file(hu));
      input.push_back(to_file(hu + (body ? noise_hu * rng.normal() : 0.0)));
      mask.push_back(body ? 1 : 0);
    }
}

// The U-Net body of the tiny residual generators (32x32 slices): a linear head, as
// ResidualGenerator needs.
models::UnetConfig tiny_residual_unet(int64_t ngf) {
  models::UnetConfig c;
  c.num_downs = 5;
  c.ngf = ngf;
  c.head = models::UnetConfig::Head::Logits;
  return c;
}

// A tiny low-dose-CT-like pair file: 32x32, 12 train, 4 val, 4 test slices.
const std::string& tiny_pairs() {
  static const std::string path = [] {
    const fs::path dir = scratch("data");
    data::SlicesFile f;
    f.height = f.width = 32;
    f.subjects = {"disc"};
    f.pairs = true;
    f.pairs_kind = "low-dose-ct";
    f.attributes = {{"modality", "ct"}, {"window", "-1024, 3072"}};
    data::Rng rng(1);
    const int counts[3] = {12, 4, 4};
    int k = 0;
    for (int s = 0; s < 3; ++s) {
      data::SlicesSplit& x = f.splits[static_cast<size_t>(s)];
      for (int i = 0; i < counts[s]; ++i, ++k) {
        make_slice(k, 32, 60.0, rng, x.images, x.targets, x.masks);
        x.subject.push_back(0);
        x.slice.push_back(k);
      }
    }
    const std::string out = (dir / "tiny_pairs.h5").string();
    data::write_slices_file(out, f);
    return out;
  }();
  return path;
}

ReconRunConfig tiny_run(const std::string& name, const fs::path& out) {
  ReconRunConfig c;
  c.data = tiny_pairs();
  c.name = name;
  c.out_dir = out.string();
  c.epochs = 2;
  c.epochs_decay = 1;
  c.batch_size = 4;
  c.ngf = 8;
  c.ndf = 4;
  c.n_layers = 2;
  c.num_downs = 5;
  c.lr = 1e-3;
  c.workers = 1;
  c.log_every = 1;
  c.progress = false;
  c.device = "cpu";
  return c;
}

std::vector<nlohmann::json> lines(const fs::path& run, const std::string& kind) {
  std::ifstream in(run / "metrics.jsonl");
  std::vector<nlohmann::json> out;
  std::string line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    if (j.value("kind", "") == kind) out.push_back(j);
  }
  return out;
}

}  // namespace

TEST(ReconMetrics, WindowedPsnrMatchesHandComputedValues) {
  const int n = 16;
  std::vector<float> ref(n * n, 0.0f), out(n * n, 20.0f);
  // MSE 400 in a 400-wide window: 10 log10(400^2 / 400) = 26.0206 dB; MAE 20 HU.
  train::FidelityMetrics m = train::windowed_fidelity(out.data(), ref.data(), nullptr, n, n, -160, 240);
  EXPECT_NEAR(m.psnr, 10 * std::log10(400.0 * 400.0 / 400.0), 1e-6);
  EXPECT_NEAR(m.mae, 20.0, 1e-6);
  // On the full range the same error is smaller relative to the data range 4096.
  m = train::windowed_fidelity(out.data(), ref.data(), nullptr, n, n, -1024, 3072);
  EXPECT_NEAR(m.psnr, 10 * std::log10(4096.0 * 4096.0 / 400.0), 1e-6);
  // Values beyond the window are clipped first: 1000 HU counts as 240.
  std::fill(out.begin(), out.end(), 1000.0f);
  m = train::windowed_fidelity(out.data(), ref.data(), nullptr, n, n, -160, 240);
  EXPECT_NEAR(m.psnr, 10 * std::log10(400.0 * 400.0 / (240.0 * 240.0)), 1e-6);
  // SSIM of a constant shift c (zero variances): (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1)
  // with Wang's C1 = (0.01 L)^2.
  std::fill(out.begin(), out.end(), 20.0f);
  m = train::windowed_fidelity(out.data(), ref.data(), nullptr, n, n, -160, 240);
  const double c1 = (0.01 * 400) * (0.01 * 400);
  EXPECT_NEAR(m.ssim, c1 / (400.0 + c1), 1e-6);
  EXPECT_THROW(train::windowed_fidelity(out.data(), ref.data(), nullptr, n, n, 1, 1), Error);
}

namespace {

// Four noisy 32x32 pairs (input, target): 80 HU of noise in the body.
std::pair<Tensor, Tensor> noisy_pairs(uint64_t seed) {
  data::Rng rng(seed);
  std::vector<float> in, tg;
  std::vector<uint8_t> mk;
  for (int k = 0; k < 4; ++k) make_slice(k, 32, 80.0, rng, in, tg, mk);
  return {Tensor::from_vector(in, {4, 32, 32, 1}), Tensor::from_vector(tg, {4, 32, 32, 1})};
}

// Checks that g starts as the identity, trains it on (x, y) with L1 100 for `steps`, and returns
// the L1 distance to y of the input and of g's output afterwards.
std::pair<double, double> identity_then_fit(models::ResidualGenerator& g, const Tensor& x, const Tensor& y, int steps) {
  {
    NoGradGuard ng;
    EXPECT_LT(l1_loss(g.forward(x), x).item(), 1e-7) << "G does not start as the identity";
  }
  optim::Adam opt(g.parameters(), {.lr = 2e-3, .beta1 = 0.5, .beta2 = 0.999});
  Generator rng(3);
  train::PairedGanStep step(g, nullptr, opt, nullptr,
                            train::PairedGanConfig{.mode = train::GanMode::None, .lambda_l1 = 100.0}, rng);
  for (int i = 0; i < steps; ++i) step.step(x, y);
  g.eval();
  NoGradGuard ng;
  return {l1_loss(x, y).item(), l1_loss(g.forward(x), y).item()};
}

}  // namespace

TEST(ReconGan, IntensityWindowStretchesClipsAndPassesGradientsOnlyInside) {
  Tensor x = Tensor::from_vector(std::vector<double>{-1.0, -0.5, -0.05, 0.0, 0.05, 0.08, 0.5, 1.0}, {8});
  x.set_requires_grad(true);
  // [-0.1, 0.1] -> [-1, 1]: slope 10, clipped outside.
  const Tensor y = train::intensity_window(x, -0.1, 0.1);
  const std::vector<double> got = y.to_vector<double>();
  const std::vector<double> want{-1.0, -1.0, -0.5, 0.0, 0.5, 0.8, 1.0, 1.0};
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-12) << i;
  sum(y).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{0, 0, 10, 10, 10, 10, 0, 0}));
  EXPECT_THROW(train::intensity_window(x, 0.1, 0.1), Error);
}

namespace {

// The mean D loss (BCE, chance = log 2 = 0.693) over the last 20 of `steps` updates of a
// PatchGAN (batch norm, Adam 2e-4) that is shown, each step, four new 32x32 CT-like slices
// with 12 HU of noise (the full dose's grain) as real and the same anatomy with 6 HU (a
// smoother output) as fake: G is an identity that does not train (lr 0) and gets the smooth
// slices as input.
double discriminator_loss_on_noise_grain(std::optional<std::array<double, 2>> window, int steps) {
  data::Rng rng_real(7), rng_fake(8);
  Generator init(4);
  models::ResidualGenerator g(tiny_residual_unet(4), init);
  models::PatchGanConfig dc;
  dc.in_channels = 2;
  dc.ndf = 8;
  dc.n_layers = 2;
  models::PatchDiscriminator d(dc, init);
  optim::Adam opt_g(g.parameters(), {.lr = 0.0, .beta1 = 0.5, .beta2 = 0.999});
  optim::Adam opt_d(d.parameters(), {.lr = 2e-4, .beta1 = 0.5, .beta2 = 0.999});
  Generator rng_step(3);
  train::PairedGanStep step(g, &d, opt_g, &opt_d,
                            train::PairedGanConfig{.mode = train::GanMode::Vanilla, .lambda_l1 = 100.0, .d_window = window},
                            rng_step);
  double tail = 0;
  for (int i = 0; i < steps; ++i) {
    std::vector<float> grainy, smooth, clean;
    std::vector<uint8_t> mask;
    for (int k = 0; k < 4; ++k) {
      make_slice(i + k, 32, 12.0, rng_real, grainy, clean, mask);
      make_slice(i + k, 32, 6.0, rng_fake, smooth, clean, mask);
    }
    const auto losses = step.step(Tensor::from_vector(smooth, {4, 32, 32, 1}), Tensor::from_vector(grainy, {4, 32, 32, 1}));
    for (const auto& [name, value] : losses.read())
      if (name == "d_loss" && i >= steps - 20) tail += value / 20;
  }
  return tail;
}

}  // namespace

TEST(ReconGan, TheSoftTissueWindowLetsTheDiscriminatorSeeTheNoiseGrain) {
  // On the file's [-1024, 3072] HU scale 6 HU is 0.003: D stays at chance. Through the
  // [-160, 240] HU window it is 0.03, and D learns to tell the grainy slices from the smooth.
  const double plain = discriminator_loss_on_noise_grain(std::nullopt, 600);
  const double windowed = discriminator_loss_on_noise_grain(std::array<double, 2>{to_file(-160), to_file(240)}, 600);
  EXPECT_GT(plain, 0.65) << "windowed " << windowed;
  EXPECT_LT(windowed, 0.4) << "plain " << plain;
}

TEST(ReconModel, TinyResidualModelOverfitsAFewNoisyPairs) {
  const auto [x, y] = noisy_pairs(5);
  Generator init(2);
  models::UnetConfig gc = tiny_residual_unet(8);
  models::ResidualGenerator g(gc, init);
  const auto [before, after] = identity_then_fit(g, x, y, 150);
  EXPECT_GT(before, 0.01);  // 80 HU of noise in the body is ~0.03 in file units
  EXPECT_LT(after, 0.5 * before) << "L1 before " << before;
  // With full-resolution ends the zeroed layer is the last 3x3 convolution: the identity again.
  models::UnetConfig full_res = gc;
  full_res.full_res_width = 4;
  models::ResidualGenerator g_full_res(full_res, init);
  const auto [fr_before, fr_after] = identity_then_fit(g_full_res, x, y, 150);
  EXPECT_LT(fr_after, 0.5 * fr_before) << "L1 before " << fr_before;
  EXPECT_NE(g_full_res.body_description().find("full-res width 4"), std::string::npos);
  // A residual generator needs a linear head and as many outputs as inputs.
  gc.head = models::UnetConfig::Head::Tanh;
  EXPECT_THROW(models::ResidualGenerator bad(gc, init), Error);
}

TEST(ReconModel, ResnetBodyStartsAsTheIdentityAndLearnsTheCorrection) {
  const auto [x, y] = noisy_pairs(6);
  Generator init(2);
  models::ResnetConfig rc;
  rc.ngf = 8;
  rc.n_blocks = 1;
  rc.head = models::ResnetConfig::Head::Logits;
  models::ResidualGenerator g(rc, init, 0.05);
  EXPECT_EQ(g.size_multiple(), 4);
  EXPECT_EQ(g.body_json().at("model"), "resnet");
  EXPECT_EQ(g.body_description(), "ResNet 1 blocks ngf 8");
  const auto [before, after] = identity_then_fit(g, x, y, 100);
  EXPECT_LT(after, 0.6 * before) << "L1 before " << before;
  // The body's JSON form round-trips through the checkpoint reader, and a Tanh head is refused.
  const auto back = models::ResidualGenerator::body_from_json(g.body_json());
  ASSERT_TRUE(std::holds_alternative<models::ResnetConfig>(back));
  EXPECT_EQ(std::get<models::ResnetConfig>(back), rc);
  EXPECT_THROW(models::ResidualGenerator::body_from_json(nlohmann::json{{"model", "vgg"}}), Error);
  rc.head = models::ResnetConfig::Head::Tanh;
  EXPECT_THROW(models::ResidualGenerator bad(rc, init), Error);
}

TEST(ReconRun, TrainsResumesAndStatesItsMetricSettings) {
  const fs::path out = scratch("runs");
  // Interrupted after 4 steps, then resumed to the end.
  ReconRunConfig c = tiny_run("gan", out);
  c.adv_window = std::array<double, 2>{-160, 240};  // D sees the soft-tissue window
  c.interrupt_after_steps = 4;
  EXPECT_EQ(run_recon_training(c), 130);
  c.interrupt_after_steps = 0;
  c.resume = true;
  EXPECT_EQ(run_recon_training(c), 0);
  const fs::path run = out / "gan";
  for (const char* f : {"config.json", "summary.json", "checkpoints/best.json", "checkpoints/latest.safetensors",
                        "samples/epoch_001.png", "samples/test.png", "curves/losses.png"})
    EXPECT_TRUE(fs::exists(run / f)) << f;
  const auto vals = lines(run, "val");
  ASSERT_EQ(vals.size(), 3u);
  for (const auto& v : vals) {
    // Every line states the window, the data range and the region.
    const auto& st = v.at("settings");
    EXPECT_EQ(st.at("units"), "HU");
    EXPECT_EQ(st.at("views").at(0).at("window"), nlohmann::json({-160.0, 240.0}));
    EXPECT_EQ(st.at("views").at(0).at("data_range"), 400.0);
    EXPECT_EQ(st.at("views").at(1).at("data_range"), 4096.0);
    EXPECT_FALSE(st.at("region").get<std::string>().empty());
    EXPECT_TRUE(std::isfinite(v.at("window").at("input_psnr").get<double>()));
    EXPECT_TRUE(v.at("window").contains("psnr_gain"));
  }
  const auto train_lines = lines(run, "train");
  ASSERT_GE(train_lines.size(), 6u);
  EXPECT_TRUE(train_lines.front().contains("d_loss"));
  const auto test = lines(run, "test");
  ASSERT_EQ(test.size(), 1u);
  // CT: the noise power spectra of output, low dose and full dose in the same ROIs.
  const auto& nps = test[0].at("nps");
  EXPECT_GE(nps.at("rois").get<int64_t>(), 0);
  for (const char* k : {"output", "input", "full_dose"}) EXPECT_TRUE(nps.contains(k)) << k;
  EXPECT_EQ(nps.at("radial_frequency").size(), nps.at("full_dose").at("radial").size());
  const auto gan_cfg = nlohmann::json::parse(std::ifstream(run / "config.json"));
  EXPECT_EQ(gan_cfg.at("adv_window"), nlohmann::json({-160.0, 240.0}));
  EXPECT_EQ(gan_cfg.at("d_lr"), c.lr);  // no --d-lr: D at --lr
  const auto meta = train::read_checkpoint_json(run / "checkpoints", "best", "recon");
  EXPECT_EQ(meta.at("modality"), "ct");
  EXPECT_EQ(meta.at("generator_kind"), "residual");

  // The supervised baseline of the same network: no discriminator, and its L1 falls.
  ReconRunConfig b = tiny_run("sup", out);
  b.adv_weight = 0;
  b.epochs = 8;
  b.epochs_decay = 0;
  b.lr = 2e-3;
  b.residual_scale = 1.0;  // U's unit = the file's: its 60 HU noise is learned in a few steps
  EXPECT_EQ(run_recon_training(b), 0);
  const auto bl = lines(out / "sup", "train");
  ASSERT_GE(bl.size(), 24u);
  EXPECT_FALSE(bl.front().contains("d_loss"));
  // G starts as the identity (L1 = the input's noise); the mean of the last three steps' L1 is
  // below the first three's.
  double first = 0, last = 0;
  for (size_t i = 0; i < 3; ++i) {
    first += bl[i].at("g_l1").get<double>();
    last += bl[bl.size() - 1 - i].at("g_l1").get<double>();
  }
  EXPECT_LT(last, 0.95 * first);
  const auto cfg = nlohmann::json::parse(std::ifstream(out / "sup" / "config.json"));
  EXPECT_EQ(cfg.at("gan_mode"), "none");
  EXPECT_EQ(cfg.at("adv_weight"), 0.0);
  EXPECT_TRUE(cfg.at("adv_window").is_null());
}

TEST(ReconRun, RefusesFilesThatAreNotPairsOrTheWrongTask) {
  const fs::path out = scratch("bad_runs");
  data::SlicesFile f;
  f.height = f.width = 32;
  f.subjects = {"a"};
  for (auto& x : f.splits) {
    x.images.assign(32 * 32, 0.0f);
    x.masks.assign(32 * 32, 0);
    x.subject = {0};
    x.slice = {0};
  }
  const std::string plain = (out / "plain.h5").string();
  data::write_slices_file(plain, f);
  ReconRunConfig c = tiny_run("x", out);
  c.data = plain;
  try {
    run_recon_training(c);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a pair file"), std::string::npos) << e.what();
  }
  c = tiny_run("y", out);
  c.task = ReconTask::Superres;  // the tiny file holds low-dose-ct pairs
  EXPECT_THROW(run_recon_training(c), Error);
  c = tiny_run("z", out);
  c.data = (out / "missing.h5").string();
  EXPECT_THROW(run_recon_training(c), Error);
  // A discriminator window needs a discriminator, and a window that is not empty.
  c = tiny_run("w", out);
  c.adv_window = std::array<double, 2>{-160, 240};
  c.adv_weight = 0;
  EXPECT_THROW(run_recon_training(c), Error);
  c.adv_weight = 0.1;
  c.adv_window = std::array<double, 2>{240, -160};
  EXPECT_THROW(run_recon_training(c), Error);
  EXPECT_FALSE(fs::exists(out / "w"));
  EXPECT_FALSE(fs::exists(out / "x" / "checkpoints"));
}

TEST(ReconInfer, OutputsOnTheInputGridAndReportsAgainstAReference) {
  const fs::path out = scratch("infer");
  ReconRunConfig c = tiny_run("model", out);
  c.adv_weight = 0;
  c.epochs = 1;
  c.epochs_decay = 0;
  ASSERT_EQ(run_recon_training(c), 0);
  // A 40 x 36 x 3 CT volume (not a multiple of 2^num_downs: padded and cropped) in HU.
  data::Volume ref;
  ref.dims = {40, 36, 3};
  ref.spacing = {1.5, 1.5, 3};
  ref.affine = {{{-1.5, 0, 0, 10}, {0, -1.5, 0, 20}, {0, 0, 3, -5}, {0, 0, 0, 1}}};
  ref.voxels.resize(40 * 36 * 3);
  data::Rng rng(9);
  data::Volume low = ref;
  for (int64_t k = 0; k < 3; ++k)
    for (int64_t j = 0; j < 36; ++j)
      for (int64_t i = 0; i < 40; ++i) {
        const bool body = (i - 20) * (i - 20) + (j - 18) * (j - 18) < 14 * 14;
        ref.at(i, j, k) = body ? 40.0f : -1000.0f;
        low.at(i, j, k) = ref.at(i, j, k) + (body ? static_cast<float>(60 * rng.normal()) : 0.0f);
      }
  data::write_nifti((out / "ref.nii.gz").string(), ref);
  data::write_nifti((out / "low.nii.gz").string(), low);
  ReconInferOptions o;
  o.checkpoint = (out / "model").string();
  o.input = (out / "low.nii.gz").string();
  o.output = (out / "rec.nii.gz").string();
  o.reference = (out / "ref.nii.gz").string();
  o.report = (out / "report.json").string();
  o.device = "cpu";
  const ReconInferResult r = run_recon_inference(o);
  const data::Volume rec = data::read_nifti(o.output);
  EXPECT_EQ(rec.dims, low.dims);
  for (int a = 0; a < 3; ++a)
    for (int b = 0; b < 4; ++b) EXPECT_NEAR(rec.affine[a][b], low.affine[a][b], 1e-4);
  // Float HU: the body stays near soft tissue, the air near -1000 HU.
  EXPECT_NEAR(rec.at(20, 18, 1), 40.0f, 150.0f);
  EXPECT_NEAR(rec.at(1, 1, 1), -1000.0f, 150.0f);
  const auto rep = nlohmann::json::parse(std::ifstream(o.report));
  EXPECT_EQ(rep.at("metrics").at("settings").at("views").at(0).at("data_range"), 400.0);
  EXPECT_TRUE(std::isfinite(rep.at("metrics").at("window").at("input_psnr").get<double>()));
  EXPECT_TRUE(rep.at("metrics").contains("nps"));  // CT volumes: the noise power spectra too
  EXPECT_NE(r.summary.find("window [-160, 240]"), std::string::npos) << r.summary;

  // Bad inputs: a clear error naming the file, and nothing written.
  ReconInferOptions bad = o;
  bad.output = (out / "bad.nii.gz").string();
  bad.report = (out / "bad.json").string();
  bad.input = (out / "nope.nii.gz").string();
  try {
    run_recon_inference(bad);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nope.nii.gz"), std::string::npos) << e.what();
  }
  data::Volume other = ref;
  other.dims = {40, 36, 2};
  other.voxels.resize(40 * 36 * 2);
  data::write_nifti((out / "other.nii.gz").string(), other);
  bad.input = o.input;
  bad.reference = (out / "other.nii.gz").string();
  try {
    run_recon_inference(bad);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("other.nii.gz"), std::string::npos) << msg;
    EXPECT_NE(msg.find("low.nii.gz"), std::string::npos) << msg;
  }
  bad.reference = o.reference;
  bad.checkpoint = (out / "no_run").string();
  EXPECT_THROW(run_recon_inference(bad), Error);
  EXPECT_FALSE(fs::exists(bad.output));
  EXPECT_FALSE(fs::exists(bad.report));
}

TEST(ReconInfer, ResnetBodyCheckpointEndToEnd) {
  const fs::path out = scratch("infer_resnet");
  ReconRunConfig c = tiny_run("model", out);
  c.generator = "resnet";
  c.n_blocks = 1;
  c.adv_weight = 0;
  c.epochs = 1;
  c.epochs_decay = 0;
  ASSERT_EQ(run_recon_training(c), 0);
  const auto config = nlohmann::json::parse(std::ifstream(out / "model" / "config.json"));
  EXPECT_EQ(config.at("n_blocks"), 1);
  // 30 x 6 x 2: not a multiple of 4, and fewer than 8 rows (padded for the reflection pads).
  data::Volume low;
  low.dims = {30, 6, 2};
  low.spacing = {1.5, 1.5, 3};
  low.affine = {{{-1.5, 0, 0, 10}, {0, -1.5, 0, 20}, {0, 0, 3, -5}, {0, 0, 0, 1}}};
  data::Rng rng(10);
  for (int64_t v = 0; v < 30 * 6 * 2; ++v) low.voxels.push_back(static_cast<float>(40 + 60 * rng.normal()));
  data::write_nifti((out / "low.nii.gz").string(), low);
  ReconInferOptions o;
  o.checkpoint = (out / "model").string();
  o.input = (out / "low.nii.gz").string();
  o.output = (out / "rec.nii.gz").string();
  o.device = "cpu";
  run_recon_inference(o);
  const data::Volume rec = data::read_nifti(o.output);
  EXPECT_EQ(rec.dims, low.dims);
  for (float v : rec.voxels) ASSERT_TRUE(std::isfinite(v));
  EXPECT_NEAR(rec.at(15, 3, 1), 40.0f, 200.0f);
}

