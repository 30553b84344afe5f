#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "engine/error.h"
#include "engine/tensor.h"
#include "train/distribution_metrics.h"

namespace rg::train {
namespace {

std::vector<double> gaussian_rows(int64_t n, int64_t d, const std::vector<double>& mean,
                                  const std::vector<double>& sd, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> z;
  std::vector<double> x(static_cast<size_t>(n * d));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j)
      x[static_cast<size_t>(i * d + j)] = mean[static_cast<size_t>(j)] + sd[static_cast<size_t>(j)] * z(rng);
  return x;
}

TEST(FrechetDistance, IdenticalSetsAreAtZero) {
  const auto a = gaussian_rows(50, 6, {0, 1, 2, 3, 4, 5}, {1, 2, 1, 0.5, 3, 1}, 1);
  EXPECT_NEAR(frechet_distance(a, a, 6), 0.0, 1e-8);
}

// One dimension: (mu_a - mu_b)^2 + (s_a - s_b)^2 with the sample moments (n - 1).
TEST(FrechetDistance, OneDimensionMatchesTheClosedForm) {
  const std::vector<double> a{1, 2, 4, 7}, b{-1, 0, 0, 5, 6};
  auto moments = [](const std::vector<double>& x, double& m, double& s) {
    m = 0;
    for (double v : x) m += v;
    m /= static_cast<double>(x.size());
    double ss = 0;
    for (double v : x) ss += (v - m) * (v - m);
    s = std::sqrt(ss / static_cast<double>(x.size() - 1));
  };
  double ma, sa, mb, sb;
  moments(a, ma, sa);
  moments(b, mb, sb);
  EXPECT_NEAR(frechet_distance(a, b, 1), (ma - mb) * (ma - mb) + (sa - sb) * (sa - sb), 1e-10);
}

// Independent coordinates: the distance is the sum of the one-dimensional ones, up to the
// sampling noise of the off-diagonal covariances; with exactly uncorrelated data (a grid of
// sign patterns) it is exact.
TEST(FrechetDistance, DiagonalCovariancesAddUp) {
  // Rows (+-1, +-1) scaled per set: the four sign patterns, each coordinate uncorrelated.
  std::vector<double> a, b;
  for (int sx : {-1, 1})
    for (int sy : {-1, 1}) {
      a.insert(a.end(), {1.0 + 2.0 * sx, -1.0 + 0.5 * sy});
      b.insert(b.end(), {0.0 + 1.0 * sx, 2.0 + 3.0 * sy});
    }
  // Sample sd over 4 values of +-s: s * sqrt(4/3).
  const double k = std::sqrt(4.0 / 3.0);
  const double expected = 1.0 + 9.0 + std::pow(2.0 * k - 1.0 * k, 2) + std::pow(0.5 * k - 3.0 * k, 2);
  EXPECT_NEAR(frechet_distance(a, b, 2), expected, 1e-9);
}

TEST(FrechetDistance, GrowsWithTheShiftAndRefusesBadInput) {
  const auto a = gaussian_rows(200, 4, {0, 0, 0, 0}, {1, 1, 1, 1}, 2);
  const auto near = gaussian_rows(200, 4, {0.1, 0, 0, 0}, {1, 1, 1, 1}, 3);
  const auto far = gaussian_rows(200, 4, {2, 0, 0, 0}, {1, 1, 1, 1}, 4);
  EXPECT_LT(frechet_distance(a, near, 4), frechet_distance(a, far, 4));
  EXPECT_NEAR(frechet_distance(a, far, 4), 4.0, 0.8);
  EXPECT_THROW(frechet_distance({1, 2, 3}, {1, 2, 3, 4}, 2), Error);  // 3 values are not rows of 2
  EXPECT_THROW(frechet_distance({1, 2}, {1, 2, 3, 4}, 2), Error);     // one sample
}

// The full-sample estimate (m = n, one draw) against the formula written out here.
TEST(KernelDistance, FullSampleMatchesTheFormula) {
  const int64_t d = 3;
  const auto a = gaussian_rows(7, d, {0, 0, 0}, {1, 1, 1}, 5);
  const auto b = gaussian_rows(7, d, {1, 0, -1}, {2, 1, 1}, 6);
  auto k = [&](const std::vector<double>& x, int64_t i, const std::vector<double>& y, int64_t j) {
    double dot = 0;
    for (int64_t c = 0; c < d; ++c) dot += x[static_cast<size_t>(i * d + c)] * y[static_cast<size_t>(j * d + c)];
    return std::pow(dot / d + 1.0, 3);
  };
  double kaa = 0, kbb = 0, kab = 0;
  for (int64_t i = 0; i < 7; ++i)
    for (int64_t j = 0; j < 7; ++j) {
      if (i != j) {
        kaa += k(a, i, a, j);
        kbb += k(b, i, b, j);
      }
      kab += k(a, i, b, j);
    }
  const double expected = kaa / 42 + kbb / 42 - 2 * kab / 49;
  const KernelDistance kd = kernel_distance(a, b, d, 100, 1000, 1);
  EXPECT_EQ(kd.subsets, 1);
  EXPECT_EQ(kd.subset_size, 7);
  EXPECT_NEAR(kd.mean, expected, 1e-10 * std::abs(expected) + 1e-12);
  EXPECT_EQ(kd.sd, 0.0);
}

TEST(KernelDistance, SubsetsAreSeededAndSeparateDistributions) {
  const auto a = gaussian_rows(120, 4, {0, 0, 0, 0}, {1, 1, 1, 1}, 7);
  const auto same = gaussian_rows(120, 4, {0, 0, 0, 0}, {1, 1, 1, 1}, 8);
  const auto other = gaussian_rows(120, 4, {1.5, 0, 0, 0}, {1, 1, 1, 1}, 9);
  const KernelDistance s1 = kernel_distance(a, same, 4, 20, 50, 3);
  const KernelDistance s2 = kernel_distance(a, same, 4, 20, 50, 3);
  EXPECT_EQ(s1.mean, s2.mean);  // same seed, same draws
  EXPECT_EQ(s1.subsets, 20);
  EXPECT_GT(s1.sd, 0.0);
  const KernelDistance o = kernel_distance(a, other, 4, 20, 50, 3);
  EXPECT_LT(std::abs(s1.mean), 3 * s1.sd + 1e-3);  // unbiased: about zero for one distribution
  EXPECT_GT(o.mean, s1.mean + 3 * o.sd);
}

TEST(FeatureEncoder, FixedFeaturesThatSeeContrast) {
  FeatureEncoder enc1, enc2;
  Tensor img = Tensor::zeros({3, 32, 32, 1});
  float* p = img.data<float>();
  for (int64_t i = 0; i < 32 * 32; ++i) {
    p[i] = 0.0f;                                           // flat
    p[32 * 32 + i] = (i / 32 + i % 32) % 2 ? 1.0f : -1.0f;  // checkerboard
    p[2 * 32 * 32 + i] = 0.0f;                              // flat again
  }
  const std::vector<double> f1 = enc1.features(img), f2 = enc2.features(img);
  ASSERT_EQ(f1.size(), static_cast<size_t>(3 * kFeatureDim));
  EXPECT_EQ(f1, f2);  // the same fixed weights in every instance
  double flat_vs_flat = 0, flat_vs_checker = 0;
  for (int64_t j = 0; j < kFeatureDim; ++j) {
    flat_vs_flat += std::abs(f1[static_cast<size_t>(j)] - f1[static_cast<size_t>(2 * kFeatureDim + j)]);
    flat_vs_checker += std::abs(f1[static_cast<size_t>(j)] - f1[static_cast<size_t>(kFeatureDim + j)]);
  }
  EXPECT_EQ(flat_vs_flat, 0.0);
  EXPECT_GT(flat_vs_checker, 1e-3);
  EXPECT_THROW(enc1.features(Tensor::zeros({1, 8, 8, 1})), Error);
}

}  // namespace
}  // namespace rg::train
