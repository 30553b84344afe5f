// Finite-difference gradient checks in float64 for every differentiable op, every input and
// parameter.
#include "tests/engine/test_helpers.h"

namespace rg {
namespace {

using testing::expect_gradients_match;
using testing::project;
using testing::random_tensor;

struct ConvCase {
  int64_t n, h, w, c_in, c_out, k, stride, pad;
  bool bias;
};

class ConvGradTest : public ::testing::TestWithParam<ConvCase> {};

TEST_P(ConvGradTest, Conv2dAllInputs) {
  const ConvCase c = GetParam();
  Tensor x = random_tensor({c.n, c.h, c.w, c.c_in}, 1);
  Tensor w = random_tensor({c.c_out, c.k, c.k, c.c_in}, 2);
  Tensor b = c.bias ? random_tensor({c.c_out}, 3) : Tensor();
  std::vector<Tensor> inputs{x, w};
  if (c.bias) inputs.push_back(b);
  expect_gradients_match(
      [&](const std::vector<Tensor>& in) {
        return project(conv2d(in[0], in[1], c.bias ? in[2] : Tensor(),
                              Conv2dParams::make(c.stride, c.pad)),
                       4);
      },
      inputs);
}

TEST_P(ConvGradTest, ConvTranspose2dAllInputs) {
  const ConvCase c = GetParam();
  Tensor x = random_tensor({c.n, c.h, c.w, c.c_in}, 5);
  Tensor w = random_tensor({c.c_in, c.k, c.k, c.c_out}, 6);
  Tensor b = c.bias ? random_tensor({c.c_out}, 7) : Tensor();
  std::vector<Tensor> inputs{x, w};
  if (c.bias) inputs.push_back(b);
  expect_gradients_match(
      [&](const std::vector<Tensor>& in) {
        return project(conv_transpose2d(in[0], in[1], c.bias ? in[2] : Tensor(),
                                        Conv2dParams::make(c.stride, c.pad)),
                       8);
      },
      inputs);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, ConvGradTest,
    ::testing::Values(ConvCase{2, 6, 6, 3, 4, 4, 2, 1, true},   // pix2pix down/up conv
                      ConvCase{1, 5, 5, 2, 3, 3, 1, 1, false},  // 3x3 same
                      ConvCase{2, 4, 3, 2, 2, 1, 1, 0, true},   // 1x1
                      ConvCase{1, 7, 5, 1, 2, 3, 2, 0, true},   // odd sizes, stride 2 no pad
                      ConvCase{1, 2, 2, 3, 2, 4, 2, 1, false},  // 1x1 output (U-Net bottleneck)
                      ConvCase{1, 6, 6, 2, 1, 5, 3, 2, true})); // c_out 1, stride 3

TEST(GradCheck, BatchNormTrainAllInputs) {
  Tensor x = random_tensor({3, 2, 2, 4}, 11);
  Tensor g = random_tensor({4}, 12);
  Tensor b = random_tensor({4}, 13);
  expect_gradients_match(
      [&](const std::vector<Tensor>& in) {
        return project(batch_norm(in[0], in[1], in[2], Tensor(), Tensor(), true), 14);
      },
      {x, g, b});
}

TEST(GradCheck, BatchNormEvalAllInputs) {
  Tensor x = random_tensor({2, 2, 3, 3}, 15);
  Tensor g = random_tensor({3}, 16);
  Tensor b = random_tensor({3}, 17);
  Tensor rm = Tensor::from_vector(std::vector<double>{0.1, -0.2, 0.3}, {3});
  Tensor rv = Tensor::from_vector(std::vector<double>{1.5, 0.7, 2.0}, {3});
  expect_gradients_match(
      [&](const std::vector<Tensor>& in) {
        return project(batch_norm(in[0], in[1], in[2], rm, rv, false), 18);
      },
      {x, g, b});
}

TEST(GradCheck, InstanceNormAffineAndPlain) {
  Tensor x = random_tensor({2, 3, 3, 2}, 21);
  Tensor g = random_tensor({2}, 22);
  Tensor b = random_tensor({2}, 23);
  expect_gradients_match(
      [&](const std::vector<Tensor>& in) { return project(instance_norm(in[0], in[1], in[2]), 24); },
      {x, g, b});
  expect_gradients_match(
      [&](const std::vector<Tensor>& in) {
        return project(instance_norm(in[0], Tensor(), Tensor()), 25);
      },
      {x});
}

TEST(GradCheck, Activations) {
  // Keep inputs away from the kinks of relu/leaky_relu, where the derivative jumps.
  Tensor x = random_tensor({2, 3, 4}, 31);
  {
    NoGradGuard ng;
    double* p = x.data<double>();
    for (int64_t i = 0; i < x.numel(); ++i) {
      if (std::abs(p[i]) < 0.05) p[i] = 0.1;
    }
  }
  for (auto f : std::vector<std::function<Tensor(const Tensor&)>>{
           [](const Tensor& t) { return relu(t); },
           [](const Tensor& t) { return leaky_relu(t, 0.2); },
           [](const Tensor& t) { return sigmoid(t); },
           [](const Tensor& t) { return tanh(t); }}) {
    expect_gradients_match([&](const std::vector<Tensor>& in) { return project(f(in[0]), 32); },
                           {x});
  }
}

TEST(GradCheck, BroadcastArithmetic) {
  Tensor a = random_tensor({2, 3, 4}, 41);
  Tensor c = random_tensor({4}, 42);       // per-channel vector
  Tensor d = random_tensor({2, 1, 4}, 43);  // broadcast over the middle dim
  Tensor pos = add(mul(square(random_tensor({4}, 44, false)), 1.0), 0.5).detach();
  pos.set_requires_grad(true);
  expect_gradients_match(
      [&](const std::vector<Tensor>& in) {
        Tensor y = add(in[0], in[1]);
        y = sub(y, in[2]);
        y = mul(y, in[1]);
        y = div(y, in[3]);
        return project(y, 45);
      },
      {a, c, d, pos});
}

TEST(GradCheck, ScalarAndUnaryOps) {
  Tensor a = random_tensor({3, 4}, 51);
  Tensor p = add(square(random_tensor({3, 4}, 52, false)), 0.3).detach();
  p.set_requires_grad(true);
  expect_gradients_match(
      [&](const std::vector<Tensor>& in) {
        Tensor y = add(mul(in[0], 3.0), -1.5);
        y = add(y, neg(exp(mul(in[0], 0.5))));
        y = add(y, add(log(in[1]), sqrt(in[1])));
        y = add(y, square(in[0]));
        return project(y, 53);
      },
      {a, p});
}

TEST(GradCheck, SumAndMeanOverDims) {
  Tensor x = random_tensor({2, 3, 4, 5}, 61);
  expect_gradients_match(
      [&](const std::vector<Tensor>& in) {
        // Leading dims (NHWC -> C), trailing dims, and a non-contiguous set with keepdim.
        Tensor y = add(sum(in[0], {0, 1, 2}), sum(mean(in[0], {3}, false)));
        Tensor z = sum(in[0], {1, 3}, true);
        return add(add(project(y, 62), project(z, 63)), mean(in[0]));
      },
      {x});
}

TEST(GradCheck, ConcatAndViews) {
  Tensor a = random_tensor({2, 3, 3, 2}, 71);
  Tensor b = random_tensor({2, 3, 3, 1}, 72);
  expect_gradients_match(
      [&](const std::vector<Tensor>& in) {
        Tensor y = concat({in[0], in[1]}, -1);  // NHWC channel concat
        y = y.permute({0, 3, 1, 2}).slice(2, 0, 3, 2).reshape({2, -1});
        return project(y, 73);
      },
      {a, b});
}

TEST(GradCheck, Losses) {
  Tensor z = random_tensor({2, 3, 3, 1}, 81);
  Tensor t = random_tensor({2, 3, 3, 1}, 82);
  Tensor prob = sigmoid(random_tensor({2, 3, 3, 1}, 83, false)).detach();
  prob.set_requires_grad(true);
  Tensor mask = Tensor::from_vector(
      std::vector<double>{1, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0, 1, 1, 1, 0, 0, 1, 0}, {2, 3, 3, 1});
  expect_gradients_match(
      [&](const std::vector<Tensor>& in) { return bce_with_logits(in[0], in[1]); }, {z, t});
  expect_gradients_match([&](const std::vector<Tensor>& in) { return mse_loss(in[0], in[1]); },
                         {z, t});
  expect_gradients_match([&](const std::vector<Tensor>& in) { return l1_loss(in[0], in[1]); },
                         {z, t});
  expect_gradients_match(
      [&](const std::vector<Tensor>& in) { return soft_dice_loss(in[0], in[1]); },
      {prob, t});
  // With a binary mask as a constant target, as the segmentation loss uses it.
  expect_gradients_match(
      [&](const std::vector<Tensor>& in) { return soft_dice_loss(in[0], mask); }, {prob});
}

TEST(GradCheck, Dropout) {
  Tensor x = random_tensor({4, 5}, 91);
  expect_gradients_match(
      [&](const std::vector<Tensor>& in) {
        Generator gen(7);  // the same mask on every evaluation
        return project(dropout(in[0], 0.3, true, gen), 92);
      },
      {x});
}

}  // namespace
}  // namespace rg
