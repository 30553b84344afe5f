#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "train/noise_power.h"

namespace rg::train {
namespace {

std::vector<float> white_noise(int h, int w, double mean, double sd, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> z(mean, sd);
  std::vector<float> x(static_cast<size_t>(h) * w);
  for (float& v : x) v = static_cast<float>(z(rng));
  return x;
}

// Every pixel of one ROI grid over a whole image (no region, all uniform).
std::vector<Roi> grid(int h, int w, int roi) {
  std::vector<Roi> r;
  for (int y = 0; y + roi <= h; y += roi / 2)
    for (int x = 0; x + roi <= w; x += roi / 2) r.push_back({y, x});
  return r;
}

// White noise: a flat NPS at sigma^2 px^2, variance sigma^2 (up to the ROI mean's removal, a
// factor (n^2 - 1) / n^2), mean frequency that of a uniform spectrum over the square (~0.38).
TEST(NoisePower, WhiteNoiseIsFlatAtItsVariance) {
  const int h = 256, w = 256;
  const auto x = white_noise(h, w, 40.0, 10.0, 1);
  NpsAccumulator acc;
  acc.add(x.data(), h, w, grid(h, w, 32));
  const NpsSummary s = acc.summary();
  EXPECT_EQ(s.rois, 15 * 15);
  EXPECT_NEAR(s.variance, 100.0, 5.0);
  for (double r : s.radial) EXPECT_NEAR(r, 100.0, 20.0);
  // Mean |f| over [-0.5, 0.5]^2, uniform: ~0.3826.
  EXPECT_NEAR(s.mean_frequency, 0.3826, 0.02);
  EXPECT_NEAR(nps_distance(s, s), 0.0, 1e-12);
}

// Smoothing moves the noise to low frequencies and lowers it: what an over-smoothing denoiser
// does. The distance to the white reference grows.
TEST(NoisePower, SmoothedNoiseIsLowerAndLowerFrequency) {
  const int h = 256, w = 256;
  const auto x = white_noise(h, w, 0.0, 10.0, 2);
  std::vector<float> s(x.size());
  for (int y = 0; y < h; ++y)
    for (int c = 0; c < w; ++c) {
      double acc = 0;
      int n = 0;
      for (int dy = -1; dy <= 1; ++dy)
        for (int dx = -1; dx <= 1; ++dx) {
          const int yy = y + dy, xx = c + dx;
          if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
          acc += x[static_cast<size_t>(yy) * w + xx];
          ++n;
        }
      s[static_cast<size_t>(y) * w + c] = static_cast<float>(acc / n);
    }
  const auto rois = grid(h, w, 32);
  NpsAccumulator white, smooth;
  white.add(x.data(), h, w, rois);
  smooth.add(s.data(), h, w, rois);
  const NpsSummary a = white.summary(), b = smooth.summary();
  EXPECT_LT(b.variance, 0.3 * a.variance);
  EXPECT_LT(b.mean_frequency, a.mean_frequency - 0.1);
  EXPECT_GT(nps_distance(b, a), 0.5);
}

// ROIs stay inside the region, off edges, and in the soft-tissue range.
TEST(NoisePower, UniformRoisAvoidEdgesAirAndTheOutside) {
  const int h = 128, w = 128;
  auto ref = white_noise(h, w, 50.0, 8.0, 3);  // soft tissue with full-dose-like noise
  for (int y = 0; y < h; ++y)
    for (int x = 64; x < w; ++x) ref[static_cast<size_t>(y) * w + x] += 500.0f;  // bone on the right
  std::vector<uint8_t> region(static_cast<size_t>(h) * w, 1);
  for (int y = 0; y < 16; ++y)
    for (int x = 0; x < w; ++x) region[static_cast<size_t>(y) * w + x] = 0;  // outside the body on top
  const std::vector<Roi> rois = uniform_rois(ref.data(), region.data(), h, w);
  ASSERT_FALSE(rois.empty());
  for (const Roi& r : rois) {
    EXPECT_GE(r.y, 16);           // inside the region
    EXPECT_LE(r.x + 32, 64 - 4);  // not across the edge (smoothing spreads it ~6 px), not in bone
  }
  // Noise alone must not disqualify: every left-half ROI below the border row qualifies.
  EXPECT_GE(rois.size(), 6u);
  NpsOptions strict;
  strict.max_structure = 0.1;
  EXPECT_TRUE(uniform_rois(ref.data(), region.data(), h, w, strict).empty());
}

TEST(NoisePower, NoRoisGiveNaN) {
  NpsAccumulator acc;
  const NpsSummary s = acc.summary();
  EXPECT_EQ(s.rois, 0);
  EXPECT_TRUE(std::isnan(s.variance));
  EXPECT_TRUE(std::isnan(nps_distance(s, s)));
}

}  // namespace
}  // namespace rg::train
