// GAN losses against values computed by hand, for every mode, on score maps and per-sample
// scores; names parse and bad names are refused.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/roentgen.h"
#include "train/gan_loss.h"

namespace rg::train {
namespace {

Tensor scores(std::vector<float> v) {
  Tensor t = Tensor::empty({static_cast<int64_t>(v.size()), 1, 1, 1});
  std::copy(v.begin(), v.end(), t.data<float>());
  return t;
}

double softplus(double x) { return std::log1p(std::exp(x)); }

TEST(GanLoss, EveryModeMatchesHandComputedValues) {
  const std::vector<float> r{1.5f, -0.5f, 0.25f}, f{-2.0f, 0.5f, 3.0f};
  auto mean = [](const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return s / static_cast<double>(v.size());
  };
  std::vector<double> bce_r1, bce_f0, bce_f1, mse_r1, mse_f0, mse_f1, hr, hf;
  for (size_t i = 0; i < r.size(); ++i) {
    bce_r1.push_back(softplus(-r[i]));  // BCE(x, 1) = log(1 + e^-x)
    bce_f0.push_back(softplus(f[i]));   // BCE(x, 0) = log(1 + e^x)
    bce_f1.push_back(softplus(-f[i]));
    mse_r1.push_back((r[i] - 1.0) * (r[i] - 1.0));
    mse_f0.push_back(f[i] * f[i]);
    mse_f1.push_back((f[i] - 1.0) * (f[i] - 1.0));
    hr.push_back(std::max(0.0, 1.0 - r[i]));
    hf.push_back(std::max(0.0, 1.0 + f[i]));
  }
  const double mr = mean({r.begin(), r.end()}), mf = mean({f.begin(), f.end()});
  struct Case {
    GanMode mode;
    double d_real, d_fake, d_total, g;
  };
  const Case cases[] = {
      {GanMode::Vanilla, mean(bce_r1), mean(bce_f0), 0.5 * (mean(bce_r1) + mean(bce_f0)), mean(bce_f1)},
      {GanMode::LSGAN, mean(mse_r1), mean(mse_f0), 0.5 * (mean(mse_r1) + mean(mse_f0)), mean(mse_f1)},
      {GanMode::Hinge, mean(hr), mean(hf), 0.5 * (mean(hr) + mean(hf)), -mf},
      {GanMode::WganGp, -mr, mf, mf - mr, -mf},
  };
  for (const Case& k : cases) {
    const CriticLoss l = d_loss(k.mode, scores(r), scores(f));
    EXPECT_NEAR(l.real_term.item(), k.d_real, 1e-6) << gan_mode_name(k.mode);
    EXPECT_NEAR(l.fake_term.item(), k.d_fake, 1e-6) << gan_mode_name(k.mode);
    EXPECT_NEAR(l.total.item(), k.d_total, 1e-6) << gan_mode_name(k.mode);
    EXPECT_NEAR(g_loss(k.mode, scores(f)).item(), k.g, 1e-6) << gan_mode_name(k.mode);
  }
  EXPECT_THROW(d_loss(GanMode::None, scores(r), scores(f)), Error);
  EXPECT_THROW(g_loss(GanMode::None, scores(f)), Error);
}

TEST(GanLoss, ModesParseByNameAndBadNamesAreRefusedNamingTheFlag) {
  for (const std::string& name : gan_mode_names()) {
    EXPECT_EQ(gan_mode_name(parse_gan_mode(name)), name);
  }
  try {
    parse_gan_mode("wgan", "--gan-mode");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--gan-mode"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'wgan'"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace rg::train
