// Optimizer steps against hand-computed values, and learning-rate schedules.
#include <cmath>

#include "tests/engine/test_helpers.h"

namespace rg {
namespace {

Tensor param(std::vector<double> v) {
  Tensor p = Tensor::from_vector(v, {static_cast<int64_t>(v.size())});
  p.set_requires_grad(true);
  return p;
}

TEST(Optim, AdamTwoStepsByHand) {
  Tensor p = param({1.0});
  optim::Adam adam({p}, {.lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8});
  p.set_grad(Tensor::from_vector(std::vector<double>{0.5}, {1}));
  adam.step();
  // m = 0.05, v = 2.5e-4; m_hat = 0.5, v_hat = 0.25; p = 1 - 0.1 * 0.5 / (0.5 + 1e-8)
  EXPECT_NEAR(p.item(), 0.900000002, 1e-12);
  p.set_grad(Tensor::from_vector(std::vector<double>{-1.0}, {1}));
  adam.step();
  // m = -0.055, v = 1.24975e-3; bias corrections 0.19 and 1.999e-3
  EXPECT_NEAR(p.item(), 0.9366103542405654, 1e-12);
  EXPECT_EQ(adam.step_count(), 2);
  EXPECT_NEAR(adam.state()[0].second.item(), -0.055, 1e-15);
}

TEST(Optim, AdamWDecaysWeightsDirectly) {
  Tensor p = param({1.0});
  optim::AdamW adamw({p}, {.lr = 0.1, .weight_decay = 0.1});
  p.set_grad(Tensor::from_vector(std::vector<double>{0.5}, {1}));
  adamw.step();
  EXPECT_NEAR(p.item(), 0.890000002, 1e-12);  // 1 * (1 - 0.01) - 0.1 * 0.5/(0.5 + 1e-8)
}

TEST(Optim, AdamF32MatchesF64) {
  Tensor p32 = Tensor::from_vector(std::vector<float>{1.0f, -2.0f}, {2});
  p32.set_requires_grad(true);
  Tensor p64 = param({1.0, -2.0});
  optim::Adam a32({p32}, {.lr = 2e-4, .beta1 = 0.5}), a64({p64}, {.lr = 2e-4, .beta1 = 0.5});
  for (int i = 0; i < 5; ++i) {
    p32.set_grad(Tensor::from_vector(std::vector<float>{0.3f * i, -0.1f}, {2}));
    p64.set_grad(Tensor::from_vector(std::vector<double>{0.3 * static_cast<float>(i),
                                                         static_cast<double>(-0.1f)}, {2}));
    a32.step();
    a64.step();
  }
  const auto v32 = p32.to_vector<double>(), v64 = p64.to_vector<double>();
  for (int i = 0; i < 2; ++i) EXPECT_NEAR(v32[i], v64[i], 1e-6);
}

TEST(Optim, SgdMomentumByHand) {
  Tensor p = param({1.0});
  optim::SGD sgd({p}, {.lr = 0.1, .momentum = 0.9});
  p.set_grad(Tensor::from_vector(std::vector<double>{1.0}, {1}));
  sgd.step();  // buf = 1, p = 0.9
  EXPECT_NEAR(p.item(), 0.9, 1e-15);
  sgd.step();  // buf = 0.9 + 1 = 1.9, p = 0.9 - 0.19
  EXPECT_NEAR(p.item(), 0.71, 1e-15);
  Tensor q = param({1.0});
  optim::SGD nesterov({q}, {.lr = 0.1, .momentum = 0.9, .nesterov = true});
  q.set_grad(Tensor::from_vector(std::vector<double>{1.0}, {1}));
  nesterov.step();  // buf = 1, step = 1 + 0.9 * 1
  EXPECT_NEAR(q.item(), 1.0 - 0.19, 1e-15);
}

TEST(Optim, SkipsParametersWithoutGradient) {
  Tensor a = param({1.0}), b = param({2.0});
  optim::SGD sgd({a, b}, {.lr = 1.0});
  a.set_grad(Tensor::from_vector(std::vector<double>{0.5}, {1}));
  sgd.step();
  EXPECT_EQ(a.item(), 0.5);
  EXPECT_EQ(b.item(), 2.0);
  sgd.zero_grad();
  EXPECT_FALSE(a.grad().defined());
}

TEST(Optim, RejectsBadConfiguration) {
  Tensor p = param({1.0});
  EXPECT_THROW(optim::Adam({p}, {.lr = -1.0}), Error);
  EXPECT_THROW(optim::Adam({p}, {.beta1 = 1.0}), Error);
  EXPECT_THROW(optim::Adam({Tensor::zeros({2}, DType::BF16)}, {}), Error);
  EXPECT_THROW(optim::SGD({p}, {.nesterov = true}), Error);
}

TEST(LrSchedule, Pix2PixLinearDecay) {
  // pix2pix: n_epochs=2 constant, n_epochs_decay=2: factors 1, 1 - 1/3, 1 - 2/3, then 1 - 3/3.
  optim::LinearDecayLr s(2e-4, 2, 2);
  EXPECT_DOUBLE_EQ(s.lr_at(0), 2e-4);
  EXPECT_DOUBLE_EQ(s.lr_at(1), 2e-4 * (1 - 0.0 / 3));
  EXPECT_NEAR(s.lr_at(2), 2e-4 * (1 - 1.0 / 3), 1e-18);
  EXPECT_NEAR(s.lr_at(3), 2e-4 * (1 - 2.0 / 3), 1e-18);
  EXPECT_DOUBLE_EQ(s.lr_at(4), 0.0);
  EXPECT_DOUBLE_EQ(s.lr_at(100), 0.0);
}

TEST(LrSchedule, Cosine) {
  optim::CosineLr s(1.0, 10, 0.1);
  EXPECT_DOUBLE_EQ(s.lr_at(0), 1.0);
  EXPECT_NEAR(s.lr_at(5), 0.55, 1e-12);
  EXPECT_DOUBLE_EQ(s.lr_at(10), 0.1);
  EXPECT_THROW(optim::CosineLr(1.0, 0), Error);
}

}  // namespace
}  // namespace rg
