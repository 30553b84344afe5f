// Autograd semantics: detach, no-grad, accumulation, freeing, frozen parameters.
#include "tests/engine/test_helpers.h"

namespace rg {
namespace {

using testing::random_tensor;

TEST(Autograd, SimpleChainRule) {
  Tensor x = Tensor::from_vector(std::vector<double>{1, 2, 3}, {3});
  x.set_requires_grad(true);
  Tensor y = sum(mul(x, x));  // dy/dx = 2x
  y.backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{2, 4, 6}));
}

TEST(Autograd, GradientsAccumulateUntilZeroed) {
  Tensor x = Tensor::from_vector(std::vector<double>{1, -1}, {2});
  x.set_requires_grad(true);
  sum(mul(x, 3.0)).backward();
  sum(mul(x, 3.0)).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{6, 6}));
  x.zero_grad();
  EXPECT_FALSE(x.grad().defined());
  sum(x).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{1, 1}));
}

TEST(Autograd, SharedInputSumsBothPaths) {
  Tensor x = Tensor::from_vector(std::vector<double>{2}, {1});
  x.set_requires_grad(true);
  Tensor a = mul(x, 3.0);
  Tensor y = sum(add(mul(a, a), a));  // 9x^2 + 3x -> 18x + 3
  y.backward();
  EXPECT_DOUBLE_EQ(x.grad().item(), 39.0);
}

TEST(Autograd, DetachBlocksGradient) {
  Tensor x = Tensor::from_vector(std::vector<double>{1, 2}, {2});
  x.set_requires_grad(true);
  Tensor d = mul(x, 2.0).detach();
  EXPECT_FALSE(d.requires_grad());
  Tensor y = sum(add(mul(d, x), x));  // d is a constant: dy/dx = d + 1
  y.backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{3, 5}));
}

TEST(Autograd, NoGradGuardRecordsNothing) {
  Tensor x = random_tensor({3}, 1);
  {
    NoGradGuard guard;
    Tensor y = mul(x, 2.0);
    EXPECT_FALSE(y.requires_grad());
    EXPECT_FALSE(y.grad_fn());
  }
  EXPECT_TRUE(mul(x, 2.0).requires_grad());
}

TEST(Autograd, NonScalarNeedsExplicitGradient) {
  Tensor x = random_tensor({2, 2}, 2);
  Tensor y = mul(x, 3.0);
  try {
    y.backward();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a scalar"), std::string::npos) << e.what();
  }
  y.backward(Tensor::ones({2, 2}, DType::F64));
  for (double g : x.grad().to_vector<double>()) EXPECT_EQ(g, 3.0);
  EXPECT_THROW(mul(x, 3.0).backward(Tensor::ones({4}, DType::F64)), Error);
  EXPECT_THROW(Tensor::ones({1}).backward(), Error);  // nothing requires grad
}

TEST(Autograd, GraphIsFreedAfterBackward) {
  const int64_t before = Node::live_count();
  Tensor x = random_tensor({4, 4}, 3);
  Tensor loss;
  {
    Tensor h = relu(mul(x, 2.0));
    loss = sum(add(sigmoid(h), h));
  }
  EXPECT_GT(Node::live_count(), before + 3);
  loss.backward();
  // Only the root node stays alive (held by `loss`), released and unlinked.
  EXPECT_LE(Node::live_count(), before + 1);
  EXPECT_THROW(loss.backward(), Error);  // the graph is gone
  loss = Tensor();
  EXPECT_EQ(Node::live_count(), before);
}

TEST(Autograd, FrozenParametersPassGradientThroughButGetNone) {
  // The GAN pattern: D is frozen during the G step; gradients flow through D into G only.
  Tensor g_param = random_tensor({3}, 4);
  Tensor d_param = random_tensor({3}, 5);
  d_param.set_requires_grad(false);
  Tensor fake = mul(g_param, 2.0);
  Tensor score = sum(mul(fake, d_param));
  score.backward();
  EXPECT_FALSE(d_param.grad().defined());
  const auto d = d_param.to_vector<double>();
  const auto g = g_param.grad().to_vector<double>();
  for (int i = 0; i < 3; ++i) EXPECT_DOUBLE_EQ(g[i], 2.0 * d[i]);
}

TEST(Autograd, DiscriminatorStepOnDetachedFakeLeavesGeneratorAlone) {
  Tensor g_param = random_tensor({3}, 6);
  Tensor d_param = random_tensor({3}, 7);
  Tensor fake = mul(g_param, 2.0);
  Tensor d_loss = sum(mul(fake.detach(), d_param));
  d_loss.backward();
  EXPECT_TRUE(d_param.grad().defined());
  EXPECT_FALSE(g_param.grad().defined());
}

TEST(Autograd, SetRequiresGradOnlyOnLeaves) {
  Tensor x = random_tensor({2}, 8);
  Tensor y = mul(x, 2.0);
  EXPECT_THROW(y.set_requires_grad(false), Error);
  EXPECT_THROW(Tensor::zeros({2}, DType::I32).set_requires_grad(true), Error);
}

TEST(Autograd, MixedPrecisionGradientsKeepLeafDtype) {
  Tensor w = Tensor::from_vector(std::vector<float>{1, 2}, {2});
  w.set_requires_grad(true);
  Tensor wb = w.to(DType::BF16);
  Tensor y = sum(mul(wb, wb));
  y.backward();
  EXPECT_EQ(w.grad().dtype(), DType::F32);
  EXPECT_EQ(w.grad().to_vector<float>(), (std::vector<float>{2, 4}));
}

}  // namespace
}  // namespace rg

namespace rg {
namespace {

TEST(Autograd, PostAccumulateHooksSeeTheAccumulatedGradient) {
  Tensor x = testing::random_tensor({3}, 20);
  std::vector<double> seen;
  x.add_post_accumulate_hook([&](const Tensor& leaf) { seen.push_back(leaf.grad().to_vector<double>()[0]); });
  sum(mul(x, 2.0)).backward();
  sum(mul(x, 3.0)).backward();
  EXPECT_EQ(seen, (std::vector<double>{2.0, 5.0}));
  x.clear_post_accumulate_hooks();
  sum(x).backward();
  EXPECT_EQ(seen.size(), 2u);
  EXPECT_THROW(mul(x, 2.0).add_post_accumulate_hook([](const Tensor&) {}), Error);
}

}  // namespace
}  // namespace rg
