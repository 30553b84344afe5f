// The probabilities every segmentation path thresholds (apps/seg/seg_predict.h): the left-right
// mirror of a batch, and the test-time flip, which makes G's prediction mirror-equivariant
// exactly (evaluate_segmentation's use of it: tests/apps/test_seg_training.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "apps/seg/seg_predict.h"
#include "engine/rng.h"
#include "models/unet.h"

namespace rg::app {
namespace {

TEST(SegPredict, MirrorColumnsReversesTheWidthAxisOfEveryChannelAlike) {
  const int64_t n = 2, h = 3, w = 4, c = 2;
  Tensor x = Tensor::empty({n, h, w, c});
  float* p = x.data<float>();
  for (int64_t i = 0; i < x.numel(); ++i) p[i] = static_cast<float>(i);
  const Tensor m = mirror_columns(x);
  ASSERT_EQ(m.shape(), x.shape());
  const float* q = m.data<float>();
  for (int64_t b = 0; b < n; ++b)
    for (int64_t y = 0; y < h; ++y)
      for (int64_t col = 0; col < w; ++col)
        for (int64_t ch = 0; ch < c; ++ch)
          EXPECT_EQ(q[((b * h + y) * w + col) * c + ch], p[((b * h + y) * w + (w - 1 - col)) * c + ch])
              << b << "," << y << "," << col << "," << ch;
  EXPECT_THROW(mirror_columns(Tensor::empty({2, 3})), Error);
}

models::UnetGenerator random_generator(int64_t in_channels) {
  models::UnetConfig gc;
  gc.in_channels = in_channels;
  gc.num_downs = 5;
  gc.ngf = 4;
  Generator init(11);
  return models::UnetGenerator(gc, init);
}

float max_abs_difference(const Tensor& a, const Tensor& b) {
  float m = 0;
  for (int64_t i = 0; i < a.numel(); ++i) m = std::max(m, std::fabs(a.data<float>()[i] - b.data<float>()[i]));
  return m;
}

TEST(SegPredict, TestTimeFlipIsTheMeanWithTheMirroredPredictionAndMirrorEquivariant) {
  models::UnetGenerator g = random_generator(3);
  Tensor x = Tensor::empty({2, 32, 32, 3});
  Generator gen(3);
  uniform_(x, -1.0, 1.0, gen);
  const Tensor mx = mirror_columns(x);

  const Tensor plain = predict_probabilities(g, x, DType::F32, Device::cpu(), false);
  const Tensor plain_of_mirror = predict_probabilities(g, mx, DType::F32, Device::cpu(), false);
  ASSERT_EQ(plain.shape(), Shape({2, 32, 32, 1}));
  // An untrained G is not mirror-equivariant, so the check below could fail.
  EXPECT_GT(max_abs_difference(plain_of_mirror, mirror_columns(plain)), 1e-4f);

  const Tensor flip = predict_probabilities(g, x, DType::F32, Device::cpu(), true);
  const Tensor back = mirror_columns(plain_of_mirror);
  for (int64_t i = 0; i < flip.numel(); ++i) {
    const float v = flip.data<float>()[i];
    ASSERT_TRUE(v >= 0.0f && v <= 1.0f) << i << ": " << v;
    ASSERT_EQ(v, 0.5f * (plain.data<float>()[i] + back.data<float>()[i])) << i;
  }
  // The mirror of a slice gets the mirror of its prediction, bit for bit.
  const Tensor flip_of_mirror = predict_probabilities(g, mx, DType::F32, Device::cpu(), true);
  EXPECT_EQ(max_abs_difference(flip_of_mirror, mirror_columns(flip)), 0.0f);
}

}  // namespace
}  // namespace rg::app
