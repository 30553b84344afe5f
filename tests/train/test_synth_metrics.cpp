// MAE / PSNR / SSIM of train/synth_metrics.h against values computed by hand, and the image grid
// of train/plots.h.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "engine/error.h"
#include "train/plots.h"
#include "train/synth_metrics.h"

namespace rg::train {
namespace {

TEST(SynthMetrics, IdenticalImagesArePerfect) {
  std::vector<float> a(81);
  for (size_t i = 0; i < a.size(); ++i) a[i] = std::sin(0.3f * static_cast<float>(i));
  const FidelityMetrics m = fidelity(a.data(), a.data(), nullptr, 9, 9);
  EXPECT_EQ(m.mae, 0.0);
  EXPECT_TRUE(std::isinf(m.psnr) && m.psnr > 0);
  EXPECT_NEAR(m.ssim, 1.0, 1e-12);
  EXPECT_EQ(m.pixels, 81);
  EXPECT_EQ(m.ssim_pixels, 9);  // centres whose 7x7 window fits in 9x9: 3 x 3
}

TEST(SynthMetrics, ConstantImagesByHand) {
  // s = 0.5, r = 0 everywhere: MAE 0.5; MSE 0.25, PSNR = 10 log10(2^2 / 0.25) = 10 log10(16);
  // SSIM: no variance, so only the luminance term: C1 / (0.25 + C1), C1 = (0.01 * 2)^2.
  std::vector<float> s(81, 0.5f), r(81, 0.0f);
  const FidelityMetrics m = fidelity(s.data(), r.data(), nullptr, 9, 9);
  EXPECT_NEAR(m.mae, 0.5, 1e-12);
  EXPECT_NEAR(m.psnr, 12.041199826559248, 1e-9);
  EXPECT_NEAR(m.ssim, 0.0004 / 0.2504, 1e-12);
  // With data range 1 instead of 2: PSNR = 10 log10(1 / 0.25); C1 = 0.0001.
  const FidelityMetrics m1 = fidelity(s.data(), r.data(), nullptr, 9, 9, 1.0);
  EXPECT_NEAR(m1.psnr, 6.020599913279624, 1e-9);
  EXPECT_NEAR(m1.ssim, 0.0001 / 0.2501, 1e-12);
}

TEST(SynthMetrics, SsimStructureTermByHand) {
  // One 7x7 window: r has 24 ones and 25 zeros, s = 2r. Then mu_r = 24/49,
  // var_r = mu_r - mu_r^2 (a 0/1 image), mu_s = 2 mu_r, var_s = 4 var_r, cov = 2 var_r.
  std::vector<float> r(49, 0.0f), s(49, 0.0f);
  for (int i = 0; i < 24; ++i) r[static_cast<size_t>(i)] = 1.0f, s[static_cast<size_t>(i)] = 2.0f;
  const double mu = 24.0 / 49.0, var = mu - mu * mu;
  const double c1 = 0.0004, c2 = 0.0036;
  const double expected = ((2 * (2 * mu) * mu + c1) * (2 * (2 * var) + c2)) /
                          (((2 * mu) * (2 * mu) + mu * mu + c1) * (4 * var + var + c2));
  const FidelityMetrics m = fidelity(s.data(), r.data(), nullptr, 7, 7);
  EXPECT_EQ(m.ssim_pixels, 1);
  EXPECT_NEAR(m.ssim, expected, 1e-12);
  EXPECT_NEAR(m.mae, 24.0 / 49.0, 1e-12);
  // Swapping the roles gives the same SSIM (it is symmetric) but is not trivially 1.
  EXPECT_NEAR(fidelity(r.data(), s.data(), nullptr, 7, 7).ssim, expected, 1e-12);
  EXPECT_LT(expected, 0.95);
}

TEST(SynthMetrics, RegionRestrictsEveryMeasure) {
  std::vector<float> r(49, 0.0f), s(49, 0.0f);
  s[0] = 1.0f;  // the only difference, at a corner
  std::vector<uint8_t> outside(49, 1), corner(49, 0);
  outside[0] = 0;
  corner[0] = 1;
  const FidelityMetrics a = fidelity(s.data(), r.data(), outside.data(), 7, 7);
  EXPECT_EQ(a.mae, 0.0);
  EXPECT_EQ(a.pixels, 48);
  const FidelityMetrics b = fidelity(s.data(), r.data(), corner.data(), 7, 7);
  EXPECT_NEAR(b.mae, 1.0, 1e-12);
  EXPECT_NEAR(b.psnr, 10 * std::log10(4.0), 1e-9);
  EXPECT_EQ(b.ssim_pixels, 0);  // the corner's window does not fit: no SSIM
  EXPECT_TRUE(std::isnan(b.ssim));
  std::vector<uint8_t> none(49, 0);
  const FidelityMetrics c = fidelity(s.data(), r.data(), none.data(), 7, 7);
  EXPECT_EQ(c.pixels, 0);
  EXPECT_TRUE(std::isnan(c.mae));
  EXPECT_THROW(fidelity(s.data(), r.data(), nullptr, 7, 7, 0.0), Error);
}

TEST(SynthMetrics, BodyRegionAndAccumulator) {
  const std::vector<float> real{-1.0f, -0.99f, -0.5f, -1.0f};
  const std::vector<float> mask{0.0f, 0.0f, 0.0f, 1.0f};
  EXPECT_EQ(body_region(real.data(), mask.data(), 4), (std::vector<uint8_t>{0, 0, 1, 1}));
  EXPECT_EQ(body_region(real.data(), nullptr, 4), (std::vector<uint8_t>{0, 0, 1, 0}));
  FidelityAccumulator acc;
  FidelityMetrics m1, m2, empty;
  m1.mae = 0.1, m1.psnr = 20, m1.ssim = 0.8, m1.pixels = 10, m1.ssim_pixels = 5;
  m2.mae = 0.3, m2.psnr = 30, m2.ssim = 0.6, m2.pixels = 10, m2.ssim_pixels = 5;
  acc.add(m1);
  acc.add(m2);
  acc.add(empty);  // an empty region is skipped
  const FidelitySummary s = acc.summary();
  EXPECT_EQ(s.slices, 2);
  EXPECT_NEAR(s.mae, 0.2, 1e-12);
  EXPECT_NEAR(s.mae_std, 0.1, 1e-12);
  EXPECT_NEAR(s.psnr, 25, 1e-12);
  EXPECT_NEAR(s.ssim, 0.7, 1e-12);
}

TEST(ImageGrid, CellsAreGrayAndLaidOutLikeTheSegmentationGrid) {
  const int h = 4, w = 4;
  std::vector<std::vector<std::vector<float>>> rows{
      {std::vector<float>(16, -1.0f), std::vector<float>(16, 1.0f)},
      {std::vector<float>(16, 0.0f), std::vector<float>(16, -1.0f)}};
  const data::Image8 img = render_image_grid(rows, h, w, {}, 2);
  const int sep = kGridSeparatorWidth, cw = w * 2, ch = h * 2;
  EXPECT_EQ(img.width, sep + 2 * (cw + sep));
  EXPECT_EQ(img.height, sep + 2 * (ch + sep));
  auto px = [&](int x, int y) { return img.pixels[(static_cast<size_t>(y) * img.width + x) * 3]; };
  EXPECT_EQ(px(sep, sep), 0);                  // row 0, cell 0: -1 -> black
  EXPECT_EQ(px(sep + cw + sep, sep), 255);     // row 0, cell 1: +1 -> white
  EXPECT_EQ(px(sep, sep + ch + sep), 128);     // row 1, cell 0: 0 -> mid gray
  EXPECT_EQ(px(0, 0), kGridBackground[0]);     // separator
  rows[1].pop_back();
  EXPECT_THROW(render_image_grid(rows, h, w, {}), Error);
}

}  // namespace
}  // namespace rg::train
