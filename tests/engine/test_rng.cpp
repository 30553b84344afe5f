// Philox: known-answer vectors and the counter-based fill contract.
#include <cmath>

#include "tests/engine/test_helpers.h"

namespace rg {
namespace {

TEST(Rng, PhiloxKnownAnswers) {
  // Known-answer vectors of Philox-4x32-10 (Salmon et al., Random123 distribution).
  EXPECT_EQ(philox4x32(0, 0, 0), (std::array<uint32_t, 4>{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu,
                                                           0x9b00dbd8u}));
  EXPECT_EQ(philox4x32(~0ull, ~0ull, ~0ull), (std::array<uint32_t, 4>{0x408f276du, 0x41c83b0eu,
                                                                       0xa20bc7c6u, 0x6d5451fdu}));
}

TEST(Rng, SameSeedSameNumbersAcrossSplits) {
  // One fill of 10 == the values a device kernel would compute for elements 0..9 of that fill.
  Generator a(42), b(42);
  Tensor t = Tensor::empty({10});
  uniform_(t, 0, 1, a);
  Tensor u = Tensor::empty({10});
  uniform_(u, 0, 1, b);
  EXPECT_EQ(t.to_vector<float>(), u.to_vector<float>());
  // Element i of a fill depends only on (seed, offset, i): recompute element 7 by hand.
  const auto r = philox4x32(42, 7 / 4);
  EXPECT_FLOAT_EQ(t.to_vector<float>()[7], 1.0f - uint32_to_unit_float(r[7 % 4]));
  EXPECT_EQ(a.offset(), 3u);  // ceil(10 / 4) blocks used
  Tensor next = Tensor::empty({10});
  uniform_(next, 0, 1, a);
  EXPECT_NE(next.to_vector<float>(), t.to_vector<float>());
}

TEST(Rng, DistributionsHaveTheRightMoments) {
  Generator gen(1);
  Tensor n = Tensor::empty({200000});
  normal_(n, 1.0, 2.0, gen);
  EXPECT_NEAR(mean(n).item(), 1.0, 0.02);
  EXPECT_NEAR(std::sqrt(mean(square(add(n, -1.0))).item()), 2.0, 0.02);
  Tensor u = Tensor::empty({200000});
  uniform_(u, -1.0, 3.0, gen);
  EXPECT_NEAR(mean(u).item(), 1.0, 0.02);
  const auto uv = u.to_vector<float>();
  for (float v : uv) ASSERT_TRUE(v >= -1.0f && v < 3.0f) << v;
  Tensor b = Tensor::empty({200000});
  bernoulli_(b, 0.3, gen);
  EXPECT_NEAR(mean(b).item(), 0.3, 0.01);
  const auto bv = b.to_vector<float>();
  for (float v : bv) ASSERT_TRUE(v == 0.0f || v == 1.0f);
}

TEST(Rng, DropoutScalesAndIsReproducible) {
  Tensor x = Tensor::ones({10000});
  Generator g1(5), g2(5);
  Tensor a = dropout(x, 0.25, true, g1), b = dropout(x, 0.25, true, g2);
  EXPECT_EQ(a.to_vector<float>(), b.to_vector<float>());
  EXPECT_NEAR(mean(a).item(), 1.0, 0.03);
  for (float v : a.to_vector<float>()) ASSERT_TRUE(v == 0.0f || std::abs(v - 4.0f / 3.0f) < 1e-6);
  EXPECT_TRUE(dropout(x, 0.25, false, g1).same(x));
  EXPECT_THROW(dropout(x, 1.0, true, g1), Error);
}

}  // namespace
}  // namespace rg
