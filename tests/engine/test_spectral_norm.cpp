// Spectral normalization of Conv2d (nn::ConvOptions::spectral_norm): sigma matches the largest
// singular value found independently, the normalized weight has spectral norm 1, eval mode
// leaves the power-iteration vectors alone, and the gradient (through sigma) is exact.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "engine/nn/layers.h"
#include "engine/roentgen.h"
#include "tests/engine/test_helpers.h"

namespace rg {
namespace {

// The largest singular value of an [rows, cols] matrix, by 2000 power iterations on W^T W in
// double (independent of the layer's own iteration).
double top_singular_value(const std::vector<double>& w, int64_t rows, int64_t cols) {
  std::vector<double> v(static_cast<size_t>(cols), 1.0), wv(static_cast<size_t>(rows));
  double sigma = 0;
  for (int it = 0; it < 2000; ++it) {
    for (int64_t r = 0; r < rows; ++r) {
      double acc = 0;
      for (int64_t c = 0; c < cols; ++c) acc += w[static_cast<size_t>(r * cols + c)] * v[static_cast<size_t>(c)];
      wv[static_cast<size_t>(r)] = acc;
    }
    double norm = 0;
    for (int64_t c = 0; c < cols; ++c) {
      double acc = 0;
      for (int64_t r = 0; r < rows; ++r) acc += w[static_cast<size_t>(r * cols + c)] * wv[static_cast<size_t>(r)];
      v[static_cast<size_t>(c)] = acc;
      norm += acc * acc;
    }
    norm = std::sqrt(norm);
    for (double& x : v) x /= norm;
    sigma = std::sqrt(norm);  // |W^T W v| -> sigma^2 for the top singular vector
  }
  return sigma;
}

nn::Conv2d sn_conv(uint64_t seed) {
  Generator gen(seed);
  return nn::Conv2d(3, 5, nn::ConvOptions{.kernel = 3, .stride = 1, .padding = 1, .bias = true, .spectral_norm = true},
                    gen);
}

TEST(SpectralNorm, SigmaIsTheLargestSingularValueAndTheNormalizedWeightHasNormOne) {
  nn::Conv2d conv = sn_conv(4);
  const std::vector<double> w = conv.weight.to_vector<double>();
  const double expected = top_singular_value(w, 5, 27);
  // Construction ran 15 iterations; training forwards run one each.
  Tensor x = testing::random_tensor({2, 6, 6, 3}, 9, false, DType::F32);
  for (int i = 0; i < 20; ++i) conv.forward(x);
  EXPECT_NEAR(conv.spectral_sigma(), expected, 1e-4 * expected);
  std::vector<double> normalized(w);
  for (double& v : normalized) v /= conv.spectral_sigma();
  EXPECT_NEAR(top_singular_value(normalized, 5, 27), 1.0, 1e-4);
  // The output is the plain convolution with weight / sigma.
  const Tensor y = conv.forward(x);
  const Tensor reference = conv2d(x, mul(conv.weight, 1.0 / conv.spectral_sigma()), conv.bias,
                                  Conv2dParams::make(1, 1));
  const std::vector<float> a = y.to_vector<float>(), b = reference.to_vector<float>();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 1e-5 * (1 + std::fabs(b[i]))) << i;
}

TEST(SpectralNorm, EvalModeKeepsTheVectorsTrainingModeUpdatesThem) {
  nn::Conv2d conv = sn_conv(5);
  // Move the weight so that the next iteration has something to do.
  Generator gen(6);
  normal_(conv.weight, 0.0, 1.0, gen);
  const std::vector<float> u0 = conv.weight_u.to_vector<float>();
  Tensor x = testing::random_tensor({1, 4, 4, 3}, 3, false, DType::F32);
  conv.eval();
  conv.forward(x);
  EXPECT_EQ(conv.weight_u.to_vector<float>(), u0);
  conv.train();
  conv.forward(x);
  EXPECT_NE(conv.weight_u.to_vector<float>(), u0);
  // The vectors are buffers: a checkpoint carries them.
  bool u = false, v = false;
  for (const auto& [name, t] : conv.named_buffers()) u = u || name == "weight_u", v = v || name == "weight_v";
  EXPECT_TRUE(u && v);
}

TEST(SpectralNorm, GradientThroughSigmaMatchesFiniteDifferences) {
  nn::Conv2d conv = sn_conv(7);
  conv.eval();  // u and v fixed, as within one step
  conv.weight_u = conv.weight_u.to(DType::F64);
  conv.weight_v = conv.weight_v.to(DType::F64);
  conv.bias = testing::random_tensor({5}, 2);
  Tensor w = testing::random_tensor({5, 3, 3, 3}, 1);
  Tensor x = testing::random_tensor({2, 5, 5, 3}, 8);
  testing::expect_gradients_match(
      [&](const std::vector<Tensor>& in) {
        conv.weight = in[0];
        conv.bias = in[1];
        return testing::project(conv.forward(in[2]), 11);
      },
      {w, conv.bias, x});
}

}  // namespace
}  // namespace rg
