#include <gtest/gtest.h>

#include <cmath>

#include "data/transforms.h"
#include "engine/error.h"

using namespace rg::data;

namespace {

// A recognisable asymmetric binary shape (an "L" plus a blob) on a h x w grid.
Image2D shape_mask(int64_t h, int64_t w) {
  Image2D m(h, w);
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      const bool bar = x >= w / 4 && x < w / 4 + 5 && y >= h / 5 && y < 4 * h / 5;
      const bool foot = y >= 4 * h / 5 - 5 && y < 4 * h / 5 && x >= w / 4 && x < 3 * w / 4;
      const double dx = x - 0.7 * w, dy = y - 0.3 * h;
      const bool blob = dx * dx + dy * dy < 0.01 * w * h;
      m.at(y, x) = (bar || foot || blob) ? 1.0f : 0.0f;
    }
  return m;
}

Image2D ramp(int64_t h, int64_t w) {
  Image2D img(h, w);
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) img.at(y, x) = static_cast<float>(0.01 * x - 0.02 * y + 0.1);
  return img;
}

bool binary(const Image2D& m) {
  for (float v : m.data)
    if (v != 0.0f && v != 1.0f) return false;
  return true;
}

double sum(const Image2D& m) {
  double s = 0;
  for (float v : m.data) s += v;
  return s;
}

}  // namespace

TEST(Transforms, FlipsAreInvolutions) {
  const Image2D a = ramp(7, 9);
  Image2D b = a;
  flip_horizontal(b);
  EXPECT_NE(b.data, a.data);
  EXPECT_EQ(b.at(2, 0), a.at(2, 8));
  flip_horizontal(b);
  EXPECT_EQ(b.data, a.data);
  flip_vertical(b);
  EXPECT_EQ(b.at(0, 3), a.at(6, 3));
  flip_vertical(b);
  EXPECT_EQ(b.data, a.data);
}

TEST(Transforms, Rot90InversesAndShape) {
  const Image2D a = ramp(5, 8);
  const Image2D r1 = rot90(a, 1);
  EXPECT_EQ(r1.height, 8);
  EXPECT_EQ(r1.width, 5);
  // Counter-clockwise: the top-right corner goes to the top-left.
  EXPECT_EQ(r1.at(0, 0), a.at(0, 7));
  EXPECT_EQ(rot90(r1, -1).data, a.data);
  EXPECT_EQ(rot90(rot90(a, 2), 2).data, a.data);
  EXPECT_EQ(rot90(rot90(rot90(r1, 1), 1), 1).data, a.data);
  // Two quarter turns equal a flip in both directions.
  Image2D f = a;
  flip_horizontal(f);
  flip_vertical(f);
  EXPECT_EQ(rot90(a, 2).data, f.data);
}

TEST(Transforms, RotateByNinetyMatchesRot90) {
  const Image2D m = shape_mask(32, 32);
  EXPECT_EQ(rotate(m, 90, Interp::Nearest, 0).data, rot90(m, 1).data);
  EXPECT_EQ(rotate(m, -90, Interp::Nearest, 0).data, rot90(m, -1).data);
  // Bilinear at an exact quarter turn samples pixel centres exactly.
  const Image2D r = ramp(16, 16);
  const Image2D b = rotate(r, 90, Interp::Bilinear, -1);
  const Image2D e = rot90(r, 1);
  for (size_t i = 0; i < b.data.size(); ++i) EXPECT_NEAR(b.data[i], e.data[i], 1e-4);
}

TEST(Transforms, RotateThereAndBackIsCloseToIdentity) {
  const Image2D r = ramp(40, 40);
  const Image2D back = rotate(rotate(r, 17, Interp::Bilinear, 0), -17, Interp::Bilinear, 0);
  // Away from the corners (which rotate out and back in as fill), the ramp is restored.
  for (int64_t y = 12; y < 28; ++y)
    for (int64_t x = 12; x < 28; ++x) EXPECT_NEAR(back.at(y, x), r.at(y, x), 1e-4);
}

TEST(Transforms, CropPadRoundTrip) {
  const Image2D a = ramp(6, 7);
  const Image2D padded = crop_pad(a, -2, -3, 10, 13, -1);
  EXPECT_EQ(padded.at(0, 0), -1);
  EXPECT_EQ(padded.at(2, 3), a.at(0, 0));
  EXPECT_EQ(crop_pad(padded, 2, 3, 6, 7, -1).data, a.data);
}

TEST(Transforms, ZoomAndResizeKeepConstant) {
  Image2D c(10, 12, 0.5f);
  const Image2D z = zoom(c, 1.3, Interp::Bilinear, 0);
  for (float v : z.data) EXPECT_NEAR(v, 0.5f, 1e-6);
  const Image2D r = resize(c, 17, 5, Interp::Bilinear);
  EXPECT_EQ(r.height, 17);
  EXPECT_EQ(r.width, 5);
  for (float v : r.data) EXPECT_NEAR(v, 0.5f, 1e-6);
}

TEST(Transforms, ElasticFieldIsSmoothAndScaled) {
  Rng rng(7);
  const DisplacementField f = random_displacement_field(64, 64, 3.0, 8.0, rng);
  double ss = 0, max_step = 0;
  for (int64_t y = 0; y < 64; ++y)
    for (int64_t x = 0; x < 64; ++x) {
      const float v = f.dx[static_cast<size_t>(y * 64 + x)];
      ss += v * v;
      if (x > 0) max_step = std::max(max_step, static_cast<double>(std::fabs(v - f.dx[static_cast<size_t>(y * 64 + x - 1)])));
    }
  const double rms = std::sqrt(ss / (64 * 64));
  EXPECT_GT(rms, 1.5);
  EXPECT_LT(rms, 5.0);
  EXPECT_LT(max_step, 1.0);  // neighbouring displacements differ by less than a pixel
}

// The core guarantee: whatever the random draw, an image that equals the mask, resampled with
// the mask's interpolation and no intensity changes, stays equal to the transformed mask.
TEST(Transforms, AugmentKeepsImageAndMaskAligned) {
  AugmentOptions o;
  o.p_flip_h = 0.5;
  o.p_flip_v = 0.5;
  o.rot90 = true;
  o.rotate_deg = 30;
  o.scale_min = 0.8;
  o.scale_max = 1.25;
  o.p_elastic = 0.7;
  o.elastic_alpha = 3;
  o.elastic_sigma = 8;
  o.crop_h = 40;
  o.crop_w = 52;
  o.contrast = o.brightness = o.noise_sigma = 0;
  o.clamp = false;
  o.image_interp = Interp::Nearest;
  o.image_fill = 0;
  const Image2D m0 = shape_mask(48, 48);
  int flips = 0, elastic = 0, turns = 0;
  for (uint64_t seed = 0; seed < 24; ++seed) {
    Image2D img = m0, m = m0;
    const AugmentParams p = augment(img, m, o, seed);
    flips += p.flip_h;
    elastic += p.elastic;
    turns += p.quarter_turns != 0;
    ASSERT_EQ(m.height, 40);
    ASSERT_EQ(m.width, 52);
    EXPECT_EQ(img.data, m.data) << "seed " << seed;
    EXPECT_TRUE(binary(m));
    EXPECT_GT(sum(m), 0.3 * sum(m0)) << "seed " << seed;
  }
  EXPECT_GT(flips, 0);
  EXPECT_GT(elastic, 0);
  EXPECT_GT(turns, 0);
}

TEST(Transforms, AugmentBilinearImageOverlapsMask) {
  AugmentOptions o = AugmentOptions::none();
  o.rotate_deg = 25;
  o.scale_min = 0.9;
  o.scale_max = 1.1;
  o.p_elastic = 1;
  o.image_fill = 0;
  const Image2D m0 = shape_mask(64, 64);
  for (uint64_t seed = 0; seed < 6; ++seed) {
    Image2D img = m0, m = m0;
    augment(img, m, o, seed);
    int64_t agree = 0;
    for (size_t i = 0; i < m.data.size(); ++i) agree += (img.data[i] > 0.5f) == (m.data[i] > 0.5f);
    EXPECT_GT(static_cast<double>(agree) / m.data.size(), 0.98) << "seed " << seed;
  }
}

TEST(Transforms, AugmentIsDeterministicPerSeed) {
  AugmentOptions o;
  o.p_elastic = 0.5;
  o.rot90 = true;
  const Image2D m0 = shape_mask(32, 32);
  const Image2D r0 = ramp(32, 32);
  Image2D a = r0, am = m0, b = r0, bm = m0, c = r0, cm = m0;
  augment(a, am, o, 42);
  augment(b, bm, o, 42);
  augment(c, cm, o, 43);
  EXPECT_EQ(a.data, b.data);
  EXPECT_EQ(am.data, bm.data);
  EXPECT_NE(a.data, c.data);
}

TEST(Transforms, IdentityOptionsChangeNothingAndIntensityOnlyTouchesImage) {
  const Image2D m0 = shape_mask(20, 24);
  const Image2D r0 = ramp(20, 24);
  Image2D a = r0, am = m0;
  augment(a, am, AugmentOptions::none(), 5);
  EXPECT_EQ(a.data, r0.data);
  EXPECT_EQ(am.data, m0.data);
  AugmentOptions o = AugmentOptions::none();
  o.contrast = 0.2;
  o.brightness = 0.2;
  o.noise_sigma = 0.05;
  o.clamp = true;
  augment(a, am, o, 5);
  EXPECT_NE(a.data, r0.data);
  EXPECT_EQ(am.data, m0.data);
  for (float v : a.data) {
    EXPECT_GE(v, -1.0f);
    EXPECT_LE(v, 1.0f);
  }
}

TEST(Transforms, MaskShapeMismatchThrows) {
  Image2D a(4, 4), m(4, 5);
  EXPECT_THROW(augment(a, m, AugmentOptions{}, 1), rg::Error);
}
