// Forward values of every op against small hand-computed cases, in f32 and bf16.
#include <cmath>

#include "tests/engine/test_helpers.h"

namespace rg {
namespace {

using testing::expect_all_close;

Tensor f32(std::vector<float> v, Shape s) { return Tensor::from_vector(v, s); }

TEST(OpsForward, Conv2dByHand) {
  // 1x3x3x1 input 1..9, 2x2 kernel of ones, stride 1, no pad: sums of 2x2 windows, + bias 1.
  Tensor x = f32({1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 3, 3, 1});
  Tensor w = Tensor::ones({1, 2, 2, 1});
  Tensor b = f32({1}, {1});
  expect_all_close(conv2d(x, w, b, Conv2dParams::make(1, 0)), {13, 17, 25, 29});
  // Stride 2 with padding 1: windows around the corners.
  expect_all_close(conv2d(x, w, Tensor(), Conv2dParams::make(2, 1)), {1, 5, 11, 28});
  // Two input channels read as OHWI: channel 1 weighted by 10.
  Tensor x2 = f32({1, 2, 3, 4}, {1, 1, 2, 2});  // 1x2 image, 2 channels
  Tensor w2 = f32({1, 10}, {1, 1, 1, 2});
  expect_all_close(conv2d(x2, w2, Tensor(), Conv2dParams::make(1, 0)), {21, 43});
}

TEST(OpsForward, ConvTranspose2dByHand) {
  // Stride 2, kernel 2: each input pixel spreads into its own 2x2 block scaled by the kernel.
  Tensor x = f32({1, 2}, {1, 1, 2, 1});
  Tensor w = f32({1, 2, 3, 4}, {1, 2, 2, 1});  // [c_in][kh][kw][c_out]
  expect_all_close(conv_transpose2d(x, w, Tensor(), Conv2dParams::make(2, 0)),
                   {1, 2, 2, 4, 3, 4, 6, 8});
  // 4x4 stride 2 pad 1 doubles the size (the pix2pix up conv).
  Tensor y = conv_transpose2d(Tensor::ones({2, 3, 5, 4}), Tensor::ones({4, 4, 4, 6}), Tensor(),
                              Conv2dParams::make(2, 1));
  EXPECT_EQ(y.shape(), (Shape{2, 6, 10, 6}));
}

TEST(OpsForward, BatchNormTrainAndEval) {
  // One channel, values 1..4: mean 2.5, biased var 1.25.
  Tensor x = f32({1, 2, 3, 4}, {2, 1, 2, 1});
  Tensor rm = Tensor::zeros({1}), rv = Tensor::ones({1});
  Tensor y = batch_norm(x, Tensor(), Tensor(), rm, rv, true, 0.1, 0.0);
  const double s = 1.0 / std::sqrt(1.25);
  expect_all_close(y, {-1.5 * s, -0.5 * s, 0.5 * s, 1.5 * s}, 1e-6);
  // running_mean = 0.9*0 + 0.1*2.5; running_var = 0.9*1 + 0.1*(1.25*4/3)
  expect_all_close(rm, {0.25}, 1e-6);
  expect_all_close(rv, {0.9 + 0.1 * 1.25 * 4.0 / 3.0}, 1e-6);
  Tensor gamma = f32({2}, {1}), beta = f32({1}, {1});
  Tensor e = batch_norm(x, gamma, beta, f32({2}, {1}), f32({4}, {1}), false, 0.1, 0.0);
  expect_all_close(e, {0, 1, 2, 3}, 1e-6);  // (x - 2) / sqrt(4) * 2 + 1
}

TEST(OpsForward, InstanceNormPerImage) {
  Tensor x = f32({1, 3, 10, 30}, {2, 2, 1, 1});  // two images, two pixels each
  expect_all_close(instance_norm(x, Tensor(), Tensor(), 0.0), {-1, 1, -1, 1}, 1e-6);
}

TEST(OpsForward, Activations) {
  Tensor x = f32({-2, 0, 3}, {3});
  expect_all_close(relu(x), {0, 0, 3});
  expect_all_close(leaky_relu(x, 0.2), {-0.4, 0, 3});
  expect_all_close(sigmoid(x), {1 / (1 + std::exp(2.0)), 0.5, 1 / (1 + std::exp(-3.0))});
  expect_all_close(tanh(x), {std::tanh(-2.0), 0, std::tanh(3.0)});
  // Large magnitudes stay finite.
  expect_all_close(sigmoid(f32({-200, 200}, {2})), {0, 1});
}

TEST(OpsForward, ArithmeticWithChannelBroadcast) {
  Tensor x = f32({1, 2, 3, 4, 5, 6}, {1, 1, 2, 3});  // NHWC, 3 channels
  Tensor c = f32({10, 20, 30}, {3});
  expect_all_close(add(x, c), {11, 22, 33, 14, 25, 36});
  expect_all_close(sub(x, c), {-9, -18, -27, -6, -15, -24});
  expect_all_close(mul(x, c), {10, 40, 90, 40, 100, 180});
  expect_all_close(div(c, f32({10}, {1})), {1, 2, 3});
  expect_all_close(1.0 - x * 2.0, {-1, -3, -5, -7, -9, -11});
  EXPECT_THROW(add(x, f32({1, 2}, {2})), Error);
}

TEST(OpsForward, ReductionsAndConcat) {
  Tensor x = f32({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_DOUBLE_EQ(sum(x).item(), 21.0);
  EXPECT_DOUBLE_EQ(mean(x).item(), 3.5);
  expect_all_close(sum(x, {0}), {5, 7, 9});
  expect_all_close(mean(x, {1}), {2, 5});
  EXPECT_EQ(sum(x, {1}, true).shape(), (Shape{2, 1}));
  Tensor a = f32({1, 2}, {1, 1, 2, 1}), b = f32({3, 4, 5, 6}, {1, 1, 2, 2});
  expect_all_close(concat({a, b}, -1), {1, 3, 4, 2, 5, 6});
  // Mixed floating dtypes promote (a bf16 image next to an f32 mask).
  EXPECT_EQ(concat({a.to(DType::BF16), b}, -1).dtype(), DType::F32);
  EXPECT_THROW(concat({a, b.to(DType::I32)}, -1), Error);
}

TEST(OpsForward, LossesByHand) {
  Tensor z = f32({0, 2}, {2}), t = f32({1, 0}, {2});
  // log(2) and 2 + log(1 + e^-2)
  EXPECT_NEAR(bce_with_logits(z, t).item(), 0.5 * (std::log(2.0) + 2 + std::log1p(std::exp(-2.0))),
              1e-6);
  // Stable at extreme logits where a naive log(sigmoid) overflows.
  EXPECT_NEAR(bce_with_logits(f32({-1000}, {1}), f32({1}, {1})).item(), 1000.0, 1e-3);
  EXPECT_NEAR(bce_with_logits(f32({1000}, {1}), f32({1}, {1})).item(), 0.0, 1e-6);
  EXPECT_NEAR(l1_loss(f32({1, -2}, {2}), f32({0, 0}, {2})).item(), 1.5, 1e-7);
  EXPECT_NEAR(mse_loss(f32({1, -2}, {2}), f32({0, 0}, {2})).item(), 2.5, 1e-7);
  // Dice per sample: sample 0 perfect (loss 0), sample 1: 1 - (2*0+1)/(1+1+1) = 2/3.
  Tensor p = f32({1, 0, 1, 0}, {2, 2}), m = f32({1, 0, 0, 1}, {2, 2});
  EXPECT_NEAR(soft_dice_loss(p, m).item(), (0.0 + 2.0 / 3.0) / 2.0, 1e-7);
  EXPECT_THROW(mse_loss(z, f32({1}, {1})), Error);
}

TEST(OpsForward, Bf16ThroughEveryOp) {
  // Same graph in f32 and bf16: results agree to bf16 precision and keep their dtype.
  Tensor x = testing::random_tensor({2, 8, 8, 3}, 1, false, DType::F32);
  Tensor w = testing::random_tensor({4, 4, 4, 3}, 2, false, DType::F32);
  Tensor wt = testing::random_tensor({4, 4, 4, 2}, 3, false, DType::F32);
  auto run = [&](DType dt) {
    Tensor h = conv2d(x.to(dt), w.to(dt), Tensor(), Conv2dParams::make(2, 1));
    h = leaky_relu(batch_norm(h, Tensor(), Tensor(), Tensor(), Tensor(), true), 0.2);
    h = conv_transpose2d(relu(instance_norm(h, Tensor(), Tensor())), wt.to(dt), Tensor(),
                         Conv2dParams::make(2, 1));
    h = concat({tanh(h), sigmoid(h)}, -1);
    return h;
  };
  Tensor a = run(DType::F32), b = run(DType::BF16);
  EXPECT_EQ(b.dtype(), DType::BF16);
  const auto av = a.to_vector<float>(), bv = b.to_vector<float>();
  for (size_t i = 0; i < av.size(); ++i) ASSERT_NEAR(av[i], bv[i], 5e-2) << i;
  Tensor loss = add(bce_with_logits(b, b.detach()), soft_dice_loss(sigmoid(b), sigmoid(b)));
  EXPECT_TRUE(std::isfinite(loss.item()));
}

TEST(OpsForward, ErrorsNameTheOpAndShapes) {
  auto message = [](auto&& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string m1 = message([] {
    conv2d(Tensor::zeros({1, 8, 8, 3}), Tensor::zeros({4, 3, 3, 2}), Tensor(),
           Conv2dParams::make(1, 1));
  });
  EXPECT_NE(m1.find("conv2d"), std::string::npos) << m1;
  EXPECT_NE(m1.find("[1, 8, 8, 3]"), std::string::npos) << m1;
  EXPECT_NE(m1.find("[4, 3, 3, 2]"), std::string::npos) << m1;
  // A kernel larger than the padded input has no output position.
  const std::string m1b = message([] {
    conv2d(Tensor::zeros({1, 2, 2, 1}), Tensor::zeros({1, 5, 5, 1}), Tensor(),
           Conv2dParams::make(2, 1));
  });
  EXPECT_NE(m1b.find("empty output"), std::string::npos) << m1b;
  const std::string m2 = message([] { add(Tensor::zeros({2, 3}), Tensor::zeros({4})); });
  EXPECT_NE(m2.find("add"), std::string::npos) << m2;
  EXPECT_NE(m2.find("[2, 3]"), std::string::npos) << m2;
  const std::string m3 = message([] {
    batch_norm(Tensor::zeros({2, 4, 4, 3}), Tensor::ones({5}), Tensor(), Tensor(), Tensor(), true);
  });
  EXPECT_NE(m3.find("batch_norm"), std::string::npos) << m3;
  EXPECT_NE(m3.find("[5]"), std::string::npos) << m3;
  const std::string m4 = message([] { relu(Tensor::zeros({2}, DType::I32)); });
  EXPECT_NE(m4.find("relu"), std::string::npos) << m4;
  EXPECT_NE(m4.find("i32"), std::string::npos) << m4;
  const std::string m5 =
      message([] { bce_with_logits(Tensor::zeros({2, 1, 1, 1}), Tensor::zeros({2, 1, 1, 2})); });
  EXPECT_NE(m5.find("bce_with_logits"), std::string::npos) << m5;
  EXPECT_NE(m5.find("[2, 1, 1, 2]"), std::string::npos) << m5;
  const std::string m6 =
      message([] { concat({Tensor::zeros({1, 2, 2, 1}), Tensor::zeros({1, 3, 2, 1})}, -1); });
  EXPECT_NE(m6.find("[1, 3, 2, 1]"), std::string::npos) << m6;
}

}  // namespace
}  // namespace rg
