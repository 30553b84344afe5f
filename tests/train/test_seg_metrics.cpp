// Segmentation metrics: Dice/IoU by hand, empty conventions, the exact EDT against brute force,
// surfaces, HD95 on shifted / concentric shapes (isotropic and anisotropic, 2-D and 3-D), the
// MedPy pooled percentile against the max-directed variant, and the accumulator.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "train/seg_metrics.h"
#include "engine/error.h"

namespace rg::train {
namespace {

using Mask = std::vector<uint8_t>;
constexpr double kInf = std::numeric_limits<double>::infinity();

// Axis-aligned box [x0, x1] x [y0, y1] x [z0, z1] (inclusive) in a W x H x D grid.
Mask box(int W, int H, int D, int x0, int x1, int y0, int y1, int z0 = 0, int z1 = 0) {
  Mask m(static_cast<size_t>(W) * H * D, 0);
  for (int z = z0; z <= z1; ++z)
    for (int y = y0; y <= y1; ++y)
      for (int x = x0; x <= x1; ++x) m[(static_cast<size_t>(z) * H + y) * W + x] = 1;
  return m;
}

Mask random_mask(std::mt19937& rng, size_t n, double p) {
  std::bernoulli_distribution b(p);
  Mask m(n);
  for (auto& v : m) v = b(rng) ? 1 : 0;
  return m;
}

// Independent brute-force references.
Mask brute_surface(const Mask& m, int W, int H, int D) {
  Mask s(m.size(), 0);
  auto at = [&](int x, int y, int z) -> bool {
    if (x < 0 || y < 0 || z < 0 || x >= W || y >= H || z >= D) return false;
    return m[(static_cast<size_t>(z) * H + y) * W + x] != 0;
  };
  for (int z = 0; z < D; ++z)
    for (int y = 0; y < H; ++y)
      for (int x = 0; x < W; ++x) {
        if (!at(x, y, z)) continue;
        bool edge = !at(x - 1, y, z) || !at(x + 1, y, z) || !at(x, y - 1, z) || !at(x, y + 1, z);
        if (D > 1) edge = edge || !at(x, y, z - 1) || !at(x, y, z + 1);
        s[(static_cast<size_t>(z) * H + y) * W + x] = edge;
      }
  return s;
}

std::vector<double> brute_sq_dt(const Mask& f, int W, int H, int D, Spacing3 sp) {
  std::vector<double> out(f.size(), kInf);
  for (int z = 0; z < D; ++z)
    for (int y = 0; y < H; ++y)
      for (int x = 0; x < W; ++x)
        for (int c = 0; c < D; ++c)
          for (int b = 0; b < H; ++b)
            for (int a = 0; a < W; ++a) {
              if (!f[(static_cast<size_t>(c) * H + b) * W + a]) continue;
              const double dx = (x - a) * sp.sx, dy = (y - b) * sp.sy, dz = (z - c) * sp.sz;
              double& o = out[(static_cast<size_t>(z) * H + y) * W + x];
              o = std::min(o, dx * dx + dy * dy + dz * dz);
            }
  return out;
}

double numpy_percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const double pos = q / 100.0 * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(pos);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (pos - static_cast<double>(lo)) * (v[hi] - v[lo]);
}

double brute_hd95(const Mask& a, const Mask& b, int W, int H, int D, Spacing3 sp) {
  const Mask sa = brute_surface(a, W, H, D), sb = brute_surface(b, W, H, D);
  const std::vector<double> da = brute_sq_dt(sa, W, H, D, sp), db = brute_sq_dt(sb, W, H, D, sp);
  std::vector<double> pooled;
  for (size_t i = 0; i < a.size(); ++i) {
    if (sa[i]) pooled.push_back(std::sqrt(db[i]));
    if (sb[i]) pooled.push_back(std::sqrt(da[i]));
  }
  return numpy_percentile(pooled, 95.0);
}

// ---- Dice / IoU -------------------------------------------------------------------------------

TEST(SegMetrics, DiceIouByHand) {
  // A = 4 pixels, B = 6 pixels, 3 shared: Dice = 6/10, IoU = 3/7.
  const Mask a = {1, 1, 1, 1, 0, 0, 0, 0};
  const Mask b = {0, 1, 1, 1, 1, 1, 1, 0};
  EXPECT_DOUBLE_EQ(dice(a.data(), b.data(), a.size()), 0.6);
  EXPECT_DOUBLE_EQ(iou(a.data(), b.data(), a.size()), 3.0 / 7.0);
  EXPECT_DOUBLE_EQ(dice(a.data(), a.data(), a.size()), 1.0);
  EXPECT_DOUBLE_EQ(iou(a.data(), a.data(), a.size()), 1.0);
  const Mask c = {0, 0, 0, 0, 1, 1, 1, 1};
  EXPECT_DOUBLE_EQ(dice(a.data(), c.data(), a.size()), 0.0);
  EXPECT_DOUBLE_EQ(iou(a.data(), c.data(), a.size()), 0.0);
  // Non-zero values other than 1 are foreground too.
  const Mask d = {7, 255, 3, 9, 0, 0, 0, 0};
  EXPECT_DOUBLE_EQ(dice(a.data(), d.data(), a.size()), 1.0);
}

TEST(SegMetrics, BinarizeThresholdAndNaN) {
  const float v[] = {0.0f, 0.4999f, 0.5f, 1.0f, std::nanf(""), -3.0f, 2.0f};
  const Mask m = binarize(v, 7);
  EXPECT_EQ(m, (Mask{0, 0, 1, 1, 0, 0, 1}));
  EXPECT_EQ(binarize(v, 7, 0.9f), (Mask{0, 0, 0, 1, 0, 0, 1}));
}

TEST(SegMetrics, Metrics2dFromFloats) {
  // 4 x 4: prediction covers the left half (probabilities around 0.5), target the top half.
  std::vector<float> pred(16, 0.2f), target(16, 0.0f);
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 2; ++x) pred[y * 4 + x] = 0.7f;
  for (int i = 0; i < 8; ++i) target[i] = 1.0f;
  const SegMetrics m = compute_metrics_2d(pred.data(), target.data(), 4, 4);
  EXPECT_DOUBLE_EQ(m.dice, 2.0 * 4 / 16);
  EXPECT_DOUBLE_EQ(m.iou, 4.0 / 12);
  EXPECT_TRUE(std::isfinite(m.hd95));
  EXPECT_GT(m.hd95, 0.0);
}

TEST(SegMetrics, EmptyConventions) {
  const Mask empty(25, 0), some = box(5, 5, 1, 1, 2, 1, 3);
  const SegMetrics both = compute_metrics(empty.data(), empty.data(), 5, 5);
  EXPECT_EQ(both.dice, 1.0);
  EXPECT_EQ(both.iou, 1.0);
  EXPECT_EQ(both.hd95, 0.0);
  const SegMetrics pred_only = compute_metrics(some.data(), empty.data(), 5, 5);
  EXPECT_EQ(pred_only.dice, 0.0);
  EXPECT_EQ(pred_only.iou, 0.0);
  EXPECT_EQ(pred_only.hd95, kHd95OneEmpty);
  EXPECT_TRUE(std::isinf(pred_only.hd95) && pred_only.hd95 > 0);
  const SegMetrics target_only = compute_metrics(empty.data(), some.data(), 5, 5);
  EXPECT_EQ(target_only.dice, 0.0);
  EXPECT_EQ(target_only.hd95, kHd95OneEmpty);
  // Same in 3-D.
  const Mask e3(27, 0), s3 = box(3, 3, 3, 1, 1, 1, 1, 1, 1);
  EXPECT_EQ(hd95(e3.data(), e3.data(), 3, 3, 3), 0.0);
  EXPECT_EQ(hd95(s3.data(), e3.data(), 3, 3, 3), kHd95OneEmpty);
}

// ---- percentile, EDT, surfaces ----------------------------------------------------------------

TEST(SegMetrics, PercentileMatchesNumpyLinear) {
  std::vector<double> v = {4, 1, 3, 2};
  EXPECT_DOUBLE_EQ(percentile_linear(v, 95.0), 3.85);  // numpy.percentile([1,2,3,4], 95)
  EXPECT_DOUBLE_EQ(percentile_linear(v, 0.0), 1.0);
  EXPECT_DOUBLE_EQ(percentile_linear(v, 100.0), 4.0);
  EXPECT_DOUBLE_EQ(percentile_linear(v, 50.0), 2.5);
  std::vector<double> one = {7.5};
  EXPECT_DOUBLE_EQ(percentile_linear(one, 95.0), 7.5);
  std::vector<double> none;
  EXPECT_TRUE(std::isnan(percentile_linear(none, 95.0)));
  EXPECT_THROW(percentile_linear(v, 101.0), rg::Error);
}

TEST(SegMetrics, Edt1dByHand) {
  std::vector<double> f = {kInf, 0.0, kInf, kInf, kInf, 0.0, kInf};
  std::vector<int> v;
  std::vector<double> z, g;
  squared_edt_1d(f.data(), 7, 1, 1.0, v, z, g);
  EXPECT_EQ(f, (std::vector<double>{1, 0, 1, 4, 1, 0, 1}));
  // Spacing 0.5 scales squared distances by 0.25; strided access.
  std::vector<double> s = {0.0, -1, kInf, -1, kInf, -1};
  squared_edt_1d(s.data(), 3, 2, 0.5, v, z, g);
  EXPECT_EQ(s, (std::vector<double>{0.0, -1, 0.25, -1, 1.0, -1}));
  // No feature: stays infinite.
  std::vector<double> none(4, kInf);
  squared_edt_1d(none.data(), 4, 1, 1.0, v, z, g);
  for (double x : none) EXPECT_EQ(x, kInf);
}

TEST(SegMetrics, EdtMatchesBruteForce2dAnd3d) {
  std::mt19937 rng(1234);
  const Spacing3 spacings[] = {{1, 1, 1}, {0.7, 1.3, 2.5}, {2.0, 0.5, 0.8}};
  for (int trial = 0; trial < 30; ++trial) {
    const int W = 3 + static_cast<int>(rng() % 10), H = 3 + static_cast<int>(rng() % 10);
    const int D = trial % 2 == 0 ? 1 : 2 + static_cast<int>(rng() % 5);
    const Spacing3 sp = spacings[trial % 3];
    const double p = trial % 5 == 0 ? 0.02 : 0.15;  // sometimes very sparse (or empty)
    const Mask f = random_mask(rng, static_cast<size_t>(W) * H * D, p);
    const std::vector<double> got = squared_distance_transform(f.data(), W, H, D, sp);
    const std::vector<double> want = brute_sq_dt(f, W, H, D, sp);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      if (std::isinf(want[i])) {
        EXPECT_TRUE(std::isinf(got[i])) << "trial " << trial << " voxel " << i;
      } else {
        EXPECT_NEAR(got[i], want[i], 1e-9 * (1 + want[i])) << "trial " << trial << " voxel " << i;
      }
    }
  }
}

TEST(SegMetrics, SurfaceDefinition) {
  // 5x5 square inside 7x7: ring of 16.
  const Mask sq = box(7, 7, 1, 1, 5, 1, 5);
  Mask s = mask_surface(sq.data(), 7, 7, 1);
  EXPECT_EQ(std::count(s.begin(), s.end(), 1), 16);
  EXPECT_EQ(s[3 * 7 + 3], 0);
  // A full image: every pixel touches the border... only the outer ring is surface.
  const Mask full(25, 1);
  s = mask_surface(full.data(), 5, 5, 1);
  EXPECT_EQ(std::count(s.begin(), s.end(), 1), 16);
  // 3x3x3 cube inside 5x5x5: 26 surface voxels, the centre is not.
  const Mask cube = box(5, 5, 5, 1, 3, 1, 3, 1, 3);
  s = mask_surface(cube.data(), 5, 5, 5);
  EXPECT_EQ(std::count(s.begin(), s.end(), 1), 26);
  // In 3-D, the first and last slices are image border.
  const Mask slab(3 * 3 * 3, 1);
  s = mask_surface(slab.data(), 3, 3, 3);
  EXPECT_EQ(std::count(s.begin(), s.end(), 1), 26);
  // Random masks against the brute-force neighbour check.
  std::mt19937 rng(7);
  for (int t = 0; t < 10; ++t) {
    const int D = t % 2 ? 4 : 1;
    const Mask m = random_mask(rng, static_cast<size_t>(9) * 8 * D, 0.6);
    EXPECT_EQ(mask_surface(m.data(), 9, 8, D), brute_surface(m, 9, 8, D));
  }
}

// ---- HD95 -------------------------------------------------------------------------------------

TEST(SegMetrics, Hd95ShiftedSquareEqualsShift) {
  const int W = 48, H = 48;
  const Mask gt = box(W, H, 1, 10, 29, 10, 29);
  for (int k = 1; k <= 4; ++k) {
    const Mask px = box(W, H, 1, 10 + k, 29 + k, 10, 29);
    const Mask py = box(W, H, 1, 10, 29, 10 + k, 29 + k);
    EXPECT_NEAR(hd95(px.data(), gt.data(), W, H, 1), k, 1e-12) << "k=" << k;
    EXPECT_NEAR(hd95(gt.data(), px.data(), W, H, 1), k, 1e-12) << "k=" << k;
    // Anisotropic: the shift in mm is k * spacing along the shifted axis.
    const Spacing3 sp{0.7, 1.3, 1.0};
    EXPECT_NEAR(hd95(px.data(), gt.data(), W, H, 1, sp), k * 0.7, 1e-12) << "k=" << k;
    EXPECT_NEAR(hd95(py.data(), gt.data(), W, H, 1, sp), k * 1.3, 1e-12) << "k=" << k;
    EXPECT_NEAR(hd95(py.data(), gt.data(), W, H, 1, sp, Hd95Convention::max_directed), k * 1.3,
                1e-12);
  }
  EXPECT_EQ(hd95(gt.data(), gt.data(), W, H, 1), 0.0);
}

TEST(SegMetrics, Hd95ConcentricSquaresByHand) {
  // A: 27x27 square at [4, 30]; B: 31x31 square at [2, 32] (2 pixels larger on every side).
  // d(A->B): 104 surface pixels, all at 2. d(B->A): 120 pixels; per corner of B one at sqrt(8)
  // and two at sqrt(5), the other 108 at 2. Pooled n = 224, pos = 0.95 * 223 = 211.85; sorted
  // v[0..211] = 2, v[212..219] = sqrt(5): HD95 = 2 + 0.85 (sqrt(5) - 2).
  const int W = 35, H = 35;
  const Mask a = box(W, H, 1, 4, 30, 4, 30), b = box(W, H, 1, 2, 32, 2, 32);
  const std::vector<double> ab = directed_surface_distances(a.data(), b.data(), W, H, 1);
  const std::vector<double> ba = directed_surface_distances(b.data(), a.data(), W, H, 1);
  ASSERT_EQ(ab.size(), 104u);
  ASSERT_EQ(ba.size(), 120u);
  EXPECT_EQ(std::count(ab.begin(), ab.end(), 2.0), 104);
  EXPECT_EQ(std::count(ba.begin(), ba.end(), 2.0), 108);
  EXPECT_EQ(std::count(ba.begin(), ba.end(), std::sqrt(5.0)), 8);
  EXPECT_EQ(std::count(ba.begin(), ba.end(), std::sqrt(8.0)), 4);
  const double pooled = 2.0 + 0.85 * (std::sqrt(5.0) - 2.0);
  EXPECT_NEAR(hd95(a.data(), b.data(), W, H, 1), pooled, 1e-12);
  EXPECT_NEAR(hd95(b.data(), a.data(), W, H, 1), pooled, 1e-12);  // symmetric
  // Max of the directed P95s: P95(A->B) = 2, P95(B->A) at pos 113.05 of 120 -> sqrt(5).
  EXPECT_NEAR(hd95(a.data(), b.data(), W, H, 1, {}, Hd95Convention::max_directed), std::sqrt(5.0),
              1e-12);
  // Isotropic scaling by 0.5 mm scales everything.
  EXPECT_NEAR(hd95(a.data(), b.data(), W, H, 1, {0.5, 0.5, 1.0}), 0.5 * pooled, 1e-12);
}

TEST(SegMetrics, Hd95ConcentricDiscsWithinOnePixelOfRadiusGap) {
  // Discs of radius 12 and 8 around the same centre: surface distances are about 4 (up to
  // digitisation), so HD95 lies within a pixel of 4.
  const int W = 40, H = 40;
  Mask outer(W * H, 0), inner(W * H, 0);
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) {
      const double r = std::hypot(x - 19.5, y - 19.5);
      outer[y * W + x] = r <= 12.0;
      inner[y * W + x] = r <= 8.0;
    }
  const double h = hd95(inner.data(), outer.data(), W, H, 1);
  EXPECT_GT(h, 3.0);
  EXPECT_LT(h, 5.0);
  EXPECT_NEAR(h, brute_hd95(inner, outer, W, H, 1, {}), 1e-12);
}

TEST(SegMetrics, Hd95MatchesBruteForceOnRandomMasks) {
  std::mt19937 rng(99);
  const Spacing3 spacings[] = {{1, 1, 1}, {0.6, 1.4, 3.0}};
  for (int t = 0; t < 20; ++t) {
    const int W = 6 + static_cast<int>(rng() % 8), H = 6 + static_cast<int>(rng() % 8);
    const int D = t % 2 ? 3 + static_cast<int>(rng() % 3) : 1;
    const Spacing3 sp = spacings[t % 2];
    const size_t n = static_cast<size_t>(W) * H * D;
    const Mask a = random_mask(rng, n, 0.3), b = random_mask(rng, n, 0.3);
    if (std::count(a.begin(), a.end(), 1) == 0 || std::count(b.begin(), b.end(), 1) == 0) continue;
    EXPECT_NEAR(hd95(a.data(), b.data(), W, H, D, sp), brute_hd95(a, b, W, H, D, sp), 1e-9)
        << "trial " << t;
  }
}

TEST(SegMetrics, Hd95ShiftedBox3dAnisotropic) {
  // A 30 x 30 x 8 box shifted by 2 slices, slice spacing 2.5 mm: HD95 = 5 mm. In-plane shifts
  // use the in-plane spacing.
  const int W = 40, H = 40, D = 20;
  const Spacing3 sp{0.8, 0.9, 2.5};
  const Mask gt = box(W, H, D, 5, 34, 5, 34, 4, 11);
  const Mask pz = box(W, H, D, 5, 34, 5, 34, 6, 13);
  const Mask px = box(W, H, D, 8, 37, 5, 34, 4, 11);
  EXPECT_NEAR(hd95(pz.data(), gt.data(), W, H, D, sp), 5.0, 1e-12);
  EXPECT_NEAR(hd95(px.data(), gt.data(), W, H, D, sp), 3 * 0.8, 1e-12);
  const SegMetrics m = compute_metrics(pz.data(), gt.data(), W, H, D, sp);
  EXPECT_DOUBLE_EQ(m.dice, 2.0 * 6 / 16);  // 6 of 8 slices overlap
  EXPECT_DOUBLE_EQ(m.iou, 6.0 / 10);
}

TEST(SegMetrics, BadArgumentsThrow) {
  const Mask m(4, 1);
  EXPECT_THROW(hd95(m.data(), m.data(), 0, 2, 1), rg::Error);
  EXPECT_THROW(hd95(m.data(), m.data(), 2, 2, 1, {0.0, 1.0, 1.0}), rg::Error);
  EXPECT_THROW(squared_distance_transform(m.data(), 2, -1, 1), rg::Error);
}

// ---- accumulator ------------------------------------------------------------------------------

std::vector<float> to_float(const Mask& m) { return std::vector<float>(m.begin(), m.end()); }

TEST(MetricAccumulator, PerSliceAndPerVolume) {
  const int W = 16, H = 16;
  MetricAccumulator acc(Spacing3{1.0, 1.0, 2.0});
  acc.set_volume_spacing(7, Spacing3{0.5, 0.5, 3.0});
  // Volume 3: target box in slices 1..3 (indices 10..13, slice 10 empty in both), prediction
  // shifted by one pixel in x. Added out of order.
  const Mask empty(W * H, 0);
  const Mask t = box(W, H, 1, 4, 11, 4, 11), p = box(W, H, 1, 5, 12, 4, 11);
  acc.add_slice(3, 12, to_float(p).data(), to_float(t).data(), H, W);
  acc.add_slice(3, 10, to_float(empty).data(), to_float(empty).data(), H, W);
  acc.add_slice(3, 13, to_float(p).data(), to_float(t).data(), H, W);
  acc.add_slice(3, 11, to_float(p).data(), to_float(t).data(), H, W);
  // Volume 7: one slice with a target and no prediction, one with a perfect prediction,
  // one missing index between them (0, 2).
  acc.add_slice(7, 0, empty.data(), t.data(), H, W);
  acc.add_slice(7, 2, t.data(), t.data(), H, W);
  EXPECT_EQ(acc.num_slices(), 6u);
  EXPECT_EQ(acc.num_volumes(), 2u);

  const MetricSummary s = acc.slice_summary();
  EXPECT_EQ(s.items, 6);
  EXPECT_EQ(s.empty_both, 1);
  EXPECT_EQ(s.empty_target, 1);
  EXPECT_EQ(s.empty_pred, 2);
  EXPECT_EQ(s.hd95_infinite, 1);
  EXPECT_EQ(s.hd95.count, 5);
  const double shifted_dice = 2.0 * 56 / 128;  // 8x8 boxes overlapping in 7 columns
  EXPECT_NEAR(s.dice.mean, (3 * shifted_dice + 1.0 + 0.0 + 1.0) / 6, 1e-12);
  EXPECT_NEAR(s.dice_nonempty.mean, (3 * shifted_dice + 0.0 + 1.0) / 5, 1e-12);
  EXPECT_EQ(s.dice_nonempty.count, 5);
  // HD95 per slice: 1 mm (volume 3, unit in-plane spacing) x3, 0 (both empty), 0 (perfect).
  EXPECT_NEAR(s.hd95.mean, 3.0 / 5, 1e-12);
  EXPECT_GT(s.dice.std, 0.0);
  EXPECT_EQ(acc.slice_metrics().size(), 6u);

  const std::vector<VolumeMetrics> vols = acc.volume_results();
  ASSERT_EQ(vols.size(), 2u);
  EXPECT_EQ(vols[0].volume_id, 3);
  EXPECT_EQ(vols[0].slices, 4);
  EXPECT_EQ(vols[0].depth, 4);
  EXPECT_EQ(vols[0].first_slice, 10);
  EXPECT_NEAR(vols[0].metrics.dice, shifted_dice, 1e-12);
  // Reassembled volume 3 equals the 3-D computation on the stacked masks.
  Mask pv, tv;
  for (const Mask* m : {&empty, &p, &p, &p}) pv.insert(pv.end(), m->begin(), m->end());
  for (const Mask* m : {&empty, &t, &t, &t}) tv.insert(tv.end(), m->begin(), m->end());
  const SegMetrics want3 = compute_metrics(pv.data(), tv.data(), W, H, 4, Spacing3{1, 1, 2});
  EXPECT_DOUBLE_EQ(vols[0].metrics.hd95, want3.hd95);
  EXPECT_DOUBLE_EQ(vols[0].metrics.iou, want3.iou);
  // Volume 7: depth 3 with one missing slice; prediction covers one of two target slices.
  EXPECT_EQ(vols[1].volume_id, 7);
  EXPECT_EQ(vols[1].slices, 2);
  EXPECT_EQ(vols[1].depth, 3);
  EXPECT_NEAR(vols[1].metrics.dice, 2.0 * 64 / (64 + 128), 1e-12);
  EXPECT_TRUE(std::isfinite(vols[1].metrics.hd95));
  EXPECT_FALSE(vols[1].target_empty);
  EXPECT_FALSE(vols[1].pred_empty);

  const MetricSummary vs = acc.volume_summary();
  EXPECT_EQ(vs.items, 2);
  EXPECT_EQ(vs.missing_slices, 1);
  EXPECT_EQ(vs.hd95_infinite, 0);
  EXPECT_NEAR(vs.dice.mean, (vols[0].metrics.dice + vols[1].metrics.dice) / 2, 1e-12);
  EXPECT_FALSE(format_summary(vs).empty());

  acc.clear();
  EXPECT_EQ(acc.num_slices(), 0u);
  EXPECT_EQ(acc.slice_summary().items, 0);
  EXPECT_TRUE(acc.volume_results().empty());
}

TEST(MetricAccumulator, VolumeWithEmptyPredictionCountsInfinite) {
  const int W = 8, H = 8;
  MetricAccumulator acc;
  const Mask empty(W * H, 0), t = box(W, H, 1, 2, 5, 2, 5);
  acc.add_slice(1, 0, empty.data(), t.data(), H, W);
  acc.add_slice(2, 0, empty.data(), empty.data(), H, W);
  const MetricSummary vs = acc.volume_summary();
  EXPECT_EQ(vs.items, 2);
  EXPECT_EQ(vs.hd95_infinite, 1);
  EXPECT_EQ(vs.hd95.count, 1);
  EXPECT_EQ(vs.hd95.mean, 0.0);
  EXPECT_EQ(vs.empty_pred, 2);
  EXPECT_EQ(vs.empty_target, 1);
  EXPECT_EQ(vs.empty_both, 1);
}

TEST(MetricAccumulator, RejectsDuplicatesAndSizeMismatch) {
  MetricAccumulator acc;
  const Mask m(16, 1), big(25, 1);
  acc.add_slice(0, 5, m.data(), m.data(), 4, 4);
  try {
    acc.add_slice(0, 5, m.data(), m.data(), 4, 4);
    FAIL() << "duplicate slice accepted";
  } catch (const rg::Error& e) {
    EXPECT_NE(std::string(e.what()).find("already added"), std::string::npos) << e.what();
  }
  EXPECT_THROW(acc.add_slice(0, 6, big.data(), big.data(), 5, 5), rg::Error);
  acc.add_slice(1, 5, big.data(), big.data(), 5, 5);  // another volume may differ
  EXPECT_EQ(acc.num_slices(), 2u);
  EXPECT_THROW(MetricAccumulator(Spacing3{1, -1, 1}), rg::Error);
}

}  // namespace
}  // namespace rg::train
