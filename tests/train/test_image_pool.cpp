// The CycleGAN image pool against a scripted sequence: filling, 50/50 replacement, history.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "engine/roentgen.h"
#include "train/image_pool.h"

namespace rg::train {
namespace {

// A batch of `values.size()` 1x2x2x1 images, image i filled with values[i].
Tensor batch(const std::vector<float>& values) {
  Tensor t = Tensor::empty({static_cast<int64_t>(values.size()), 2, 2, 1});
  for (size_t i = 0; i < values.size(); ++i)
    for (int k = 0; k < 4; ++k) t.data<float>()[i * 4 + k] = values[i];
  return t;
}
std::vector<float> firsts(const Tensor& t) {
  std::vector<float> out;
  const auto v = t.to_vector<float>();
  for (size_t i = 0; i < v.size(); i += 4) out.push_back(v[i]);
  return out;
}

TEST(ImagePool, SizeZeroPassesThrough) {
  Generator gen(1);
  ImagePool pool(0, gen);
  EXPECT_EQ(firsts(pool.query(batch({1, 2, 3}))), (std::vector<float>{1, 2, 3}));
  EXPECT_EQ(pool.stored(), 0);
}

TEST(ImagePool, FillsThenSwapsHalfTheTime) {
  Generator gen(7);
  ImagePool pool(3, gen);
  // Filling: every image comes back as it went in.
  EXPECT_EQ(firsts(pool.query(batch({1, 2}))), (std::vector<float>{1, 2}));
  EXPECT_EQ(firsts(pool.query(batch({3}))), (std::vector<float>{3}));
  EXPECT_EQ(pool.stored(), 3);
  // Scripted: replay the pool's rule with the same Philox stream and a model of its contents.
  std::vector<float> model = {1, 2, 3};
  Generator replay(7);
  int from_history = 0, total = 0;
  std::multiset<float> seen = {1, 2, 3};
  for (int q = 0; q < 200; ++q) {
    const float a = 10.0f + 2 * q, b = 11.0f + 2 * q;
    const std::vector<float> got = firsts(pool.query(batch({a, b})));
    ASSERT_EQ(got.size(), 2u);
    for (int i = 0; i < 2; ++i) {
      const float in = i == 0 ? a : b;
      const auto r = philox4x32(replay.seed(), replay.reserve(1));
      float expect = in;
      if (uint32_to_unit_float(r[0]) > 0.5f) {
        float& slot = model[r[1] % 3];
        expect = slot;
        slot = in;
      }
      ASSERT_EQ(got[static_cast<size_t>(i)], expect) << "query " << q << " image " << i;
      // Whatever comes back was generated at some point and never handed out twice from history.
      if (got[static_cast<size_t>(i)] != in) {
        ++from_history;
        ASSERT_EQ(seen.count(got[static_cast<size_t>(i)]), 1u);
        seen.erase(got[static_cast<size_t>(i)]);
      }
      seen.insert(in);
      ++total;
    }
  }
  // About half of the answers come from the history (400 draws: 0.5 +- 5 sd is 0.375..0.625).
  EXPECT_GT(from_history, total * 3 / 8);
  EXPECT_LT(from_history, total * 5 / 8);
  EXPECT_EQ(pool.stored(), 3);
}

TEST(ImagePool, OutputIsDetachedAndShapeChecked) {
  Generator gen(2);
  ImagePool pool(2, gen);
  Tensor x = batch({1, 2});
  x.set_requires_grad(true);
  Tensor y = pool.query(mul(x, 2.0));
  EXPECT_FALSE(y.requires_grad());
  EXPECT_EQ(y.shape(), x.shape());
  EXPECT_THROW(pool.query(Tensor::zeros({1, 3, 3, 1})), Error);
  EXPECT_THROW(ImagePool(-1, gen), Error);
}

}  // namespace
}  // namespace rg::train
