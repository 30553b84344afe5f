// The f-AnoGAN networks (models/dcgan.h): exact parameter counts, shapes at 16, 64 and 128,
// the critic's feature layer, per-sample independence (what the gradient penalty needs), errors.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "engine/roentgen.h"
#include "models/dcgan.h"

namespace rg::models {
namespace {

Tensor randn(const Shape& shape, uint64_t seed) {
  Generator gen(seed);
  Tensor t = Tensor::empty(shape);
  normal_(t, 0.0, 1.0, gen);
  return t;
}

TEST(Dcgan, ParameterCountsByHand) {
  // size 16, width 4, z 8: levels 2, widths 4, 8, features 4*4*8 = 128.
  // Body:      conv0 1*4*16 + 4 = 68; conv1 4*8*16 + 8 = 520; norm1 2*8 = 16      =  604
  // Critic:    body + head 128 + 1                                                =  733
  // Encoder:   body + head 128*8 + 8                                              = 1636
  // Generator: project 8*128 + 128 = 1152; its norm 16; up 8->4: 8*16*4 + 4 = 516;
  //            norm 8; up 4->1: 4*16 + 1 = 65                                     = 1757
  const DcganConfig c{.size = 16, .z_dim = 8, .width = 4};
  EXPECT_EQ(DcganCritic(c).parameter_count(), 733);
  EXPECT_EQ(DcganEncoder(c).parameter_count(), 1636);
  EXPECT_EQ(DcganGenerator(c).parameter_count(), 1757);
  // The 64x64 f-AnoGAN-sized networks (width 64, z 128) and the one-level-deeper 128x128 ones,
  // by the same formulas.
  const DcganConfig c64{.size = 64, .z_dim = 128, .width = 64};
  EXPECT_EQ(DcganCritic(c64).parameter_count(), 2764481);
  EXPECT_EQ(DcganEncoder(c64).parameter_count(), 3804992);
  EXPECT_EQ(DcganGenerator(c64).parameter_count(), 3812673);
  const DcganConfig c128{.size = 128, .z_dim = 128, .width = 64};
  EXPECT_EQ(c128.levels(), 5);
  EXPECT_EQ(DcganCritic(c128).parameter_count(), 11164353);
}

TEST(Dcgan, ShapesAndRanges) {
  for (int64_t size : {16, 64, 128}) {
    const DcganConfig c{.size = size, .z_dim = 8, .width = 4};
    DcganGenerator g(c);
    DcganCritic d(c);
    DcganEncoder e(c);
    const Tensor x = g.forward(randn({2, 8}, 1));
    ASSERT_EQ(x.shape(), (Shape{2, size, size, 1})) << size;
    for (float v : x.to_vector<float>()) ASSERT_TRUE(v >= -1.0f && v <= 1.0f);
    EXPECT_EQ(d.forward(x).shape(), (Shape{2}));
    EXPECT_EQ(d.features(x).shape(), (Shape{2, c.feature_count()}));
    EXPECT_EQ(e.forward(x).shape(), (Shape{2, 8}));
    // forward == score(features)
    const auto a = d.forward(x).to_vector<float>(), b = d.score(d.features(x)).to_vector<float>();
    EXPECT_EQ(a, b);
  }
}

TEST(Dcgan, CriticScoresEachSampleOnItsOwn) {
  // Layer norm, no batch norm: a sample's score must not depend on the rest of the batch.
  const DcganConfig c{.size = 16, .z_dim = 8, .width = 4};
  DcganCritic d(c);
  const Tensor x = randn({3, 16, 16, 1}, 2);
  const auto all = d.forward(x).to_vector<float>();
  const auto one = d.forward(x.slice(0, 1, 2).contiguous()).to_vector<float>();
  EXPECT_NEAR(all[1], one[0], 1e-5);
}

TEST(Dcgan, BadConfigurationsAndInputsAreRefused) {
  EXPECT_THROW(DcganGenerator(DcganConfig{.size = 48}), Error);
  EXPECT_THROW(DcganCritic(DcganConfig{.size = 4}), Error);
  EXPECT_THROW(DcganEncoder(DcganConfig{.z_dim = 0}), Error);
  const DcganConfig c{.size = 16, .z_dim = 8, .width = 4};
  DcganCritic d(c);
  DcganGenerator g(c);
  EXPECT_THROW(d.forward(randn({1, 32, 32, 1}, 3)), Error);
  EXPECT_THROW(g.forward(randn({1, 7}, 3)), Error);
  DcganConfig back;
  from_json(to_json(c), back);
  EXPECT_EQ(back, c);
  EXPECT_THROW(from_json(nlohmann::json{{"model", "patchgan"}}, back), Error);
  EXPECT_THROW(from_json(nlohmann::json{{"size", 64}, {"depth", 3}}, back), Error);
}

}  // namespace
}  // namespace rg::models
