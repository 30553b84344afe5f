// GAN losses against values computed by hand, for every mode, on score maps and per-sample
// scores; the gradient penalty's contract (shape checks, differentiable in the critic only).
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

// A linear critic C(x) = sum(w * x) has the same slope along every line: its gradient w. The
// penalty along the unit direction u from fake to real is then exactly (w . u - 1)^2.
TEST(GanLoss, DirectionalPenaltyOfALinearCriticIsExact) {
  Generator rng(4);
  Tensor real = Tensor::empty({2, 2, 2, 1}), fake = Tensor::empty({2, 2, 2, 1});
  normal_(real, 0.0, 1.0, rng);
  normal_(fake, 0.0, 1.0, rng);
  Tensor w = Tensor::empty({1, 2, 2, 1});
  normal_(w, 0.0, 1.0, rng);
  w.set_requires_grad(true);
  auto critic = [&](const Tensor& x) { return sum(mul(x, w), {1, 2, 3}); };
  Generator eps_rng(9);
  Tensor penalty = directional_gradient_penalty(critic, real, fake, eps_rng, 10.0, 1e-2);
  const auto rv = real.to_vector<float>(), fv = fake.to_vector<float>(), wv = w.to_vector<float>();
  double expected = 0;
  for (int n = 0; n < 2; ++n) {
    double dot = 0, norm2 = 0;
    for (int i = 0; i < 4; ++i) {
      const double d = rv[n * 4 + i] - fv[n * 4 + i];
      dot += wv[i] * d;
      norm2 += d * d;
    }
    const double slope = dot / std::sqrt(norm2);
    expected += (slope - 1) * (slope - 1) / 2.0;
  }
  EXPECT_NEAR(penalty.item(), 10.0 * expected, 1e-3 * std::max(1.0, 10.0 * expected));
  penalty.backward();
  ASSERT_TRUE(w.grad().defined()) << "the penalty must train the critic";
  EXPECT_THROW(directional_gradient_penalty(critic, real, Tensor::empty({2, 2, 2, 2}), eps_rng),
               Error);
}

}  // namespace
}  // namespace rg::train
