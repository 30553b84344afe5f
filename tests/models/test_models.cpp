// The pix2pix networks: exact parameter counts, shapes, gradients, norm/dropout variants, errors.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "engine/roentgen.h"
#include "models/patchgan.h"
#include "models/pix2pix_names.h"
#include "models/unet.h"

namespace rg::models {
namespace {

Tensor randn(const Shape& shape, uint64_t seed) {
  Generator gen(seed);
  Tensor t = Tensor::empty(shape);
  normal_(t, 0.0, 1.0, gen);
  return t;
}

UnetConfig small_unet() {
  UnetConfig c;
  c.num_downs = 5;
  c.ngf = 4;
  return c;
}

TEST(Models, Unet256ParameterCountMatchesPix2Pix) {
  // unet_256, 1 -> 1 channel, ngf 64, batch norm. Level widths 64,128,256,512,512,512,512,512.
  // Down convs (4x4, no bias):   1*64*16 + 64*128*16 + 128*256*16 + 256*512*16 + 4*(512*512*16)
  //                            = 1024 + 131072 + 524288 + 2097152 + 16777216      = 19530752
  // Down BN (levels 1..6):       2*(128 + 256 + 4*512)                             =     4864
  // Up convTs: innermost 512->512: 4194304; three 1024->512: 3*8388608 = 25165824;
  //   1024->256: 4194304; 512->128: 1048576; 256->64: 262144; 128->1: 2048 + bias 1 = 2049
  //                                                                                = 34867201
  // Up BN (levels 1..7):         2*(64 + 128 + 256 + 4*512)                        =     4992
  // Total                                                                          = 54407809
  UnetGenerator g(UnetConfig::unet_256());
  EXPECT_EQ(g.parameter_count(), 54407809);
  EXPECT_EQ(UnetConfig::unet_128().num_downs, 7);
}

TEST(Models, PatchGanParameterCountMatchesPix2Pix) {
  // n_layers 3, 2 -> 1 channel, ndf 64, batch norm, all 4x4:
  //   conv0 2->64 + bias:    2*64*16 + 64   =    2112
  //   conv1 64->128, BN:     131072 + 256   =  131328
  //   conv2 128->256, BN:    524288 + 512   =  524800
  //   conv3 256->512, BN:    2097152 + 1024 = 2098176
  //   head 512->1 + bias:    8192 + 1       =    8193
  //   total                                 = 2764609
  PatchDiscriminator d(PatchGanConfig{});
  EXPECT_EQ(d.parameter_count(), 2764609);
}

TEST(Models, UnetShapesAndNames) {
  UnetGenerator g(small_unet());
  Tensor y = g(randn({2, 32, 32, 1}, 1));
  EXPECT_EQ(y.shape(), (Shape{2, 32, 32, 1}));
  std::set<std::string> names;
  for (auto& [n, t] : g.named_parameters()) names.insert(n);
  EXPECT_TRUE(names.count("down.0.conv.weight"));
  EXPECT_FALSE(names.count("down.0.conv.bias"));
  EXPECT_FALSE(names.count("down.0.norm.weight"));  // no norm on the outermost down
  EXPECT_TRUE(names.count("down.1.norm.weight"));
  EXPECT_FALSE(names.count("down.4.norm.weight"));  // nor on the innermost
  EXPECT_TRUE(names.count("up.4.norm.weight"));     // the innermost up has one
  EXPECT_TRUE(names.count("up.0.conv.bias"));       // outermost up conv keeps its bias
  EXPECT_FALSE(names.count("up.1.conv.bias"));
  // Shapes (ours): down convs OHWI, up convs [in][kh][kw][out]; the up input is the concat.
  for (auto& [n, t] : g.named_parameters()) {
    if (n == "down.0.conv.weight") { EXPECT_EQ(t.shape(), (Shape{4, 4, 4, 1})); }
    if (n == "down.4.conv.weight") { EXPECT_EQ(t.shape(), (Shape{32, 4, 4, 32})); }
    if (n == "up.4.conv.weight") { EXPECT_EQ(t.shape(), (Shape{32, 4, 4, 32})); }
    if (n == "up.3.conv.weight") { EXPECT_EQ(t.shape(), (Shape{64, 4, 4, 16})); }
    if (n == "up.0.conv.weight") { EXPECT_EQ(t.shape(), (Shape{8, 4, 4, 1})); }
  }
  std::vector<std::string> buffers;
  for (auto& [n, t] : g.named_buffers()) buffers.push_back(n);
  EXPECT_EQ(buffers.size(), 2u * (3 + 4));  // running mean/var of 3 down + 4 up norms

  UnetConfig multi = small_unet();
  multi.in_channels = 3;
  multi.out_channels = 2;
  multi.head = UnetConfig::Head::Tanh;
  UnetGenerator g2(multi);
  Tensor y2 = g2(randn({1, 64, 32, 3}, 2));
  EXPECT_EQ(y2.shape(), (Shape{1, 64, 32, 2}));
  for (float v : y2.to_vector<float>()) EXPECT_LE(std::abs(v), 1.0f);
}

TEST(Models, UnetSkipComesFirstInConcat) {
  // pix2pix concatenates [x, block(x)]: the skip channels come first, which fixes the input
  // channel order of every up conv's weight. With all up convs zero except the outermost, the
  // outermost up conv sees relu(concat(skip, 0)); give it weight only on input channel 0.
  UnetConfig c = small_unet();
  c.norm = NormKind::None;
  UnetGenerator g(c);
  g.eval();
  NoGradGuard ng;
  for (auto& [n, slot] : g.named_parameter_slots()) {
    if (n.rfind("up.", 0) == 0 && n != "up.0.conv.weight") slot->fill_(0.0);
  }
  // Outermost up conv: weight [8][4][4][1]; only channel 0 (the skip part) carries weight.
  Tensor w = Tensor::zeros({8, 4, 4, 1});
  // With stride 2, pad 1, kernel 4, output pixel (2a+1, 2b+1) reads input (a, b) at tap (2, 2)
  // (plus neighbours at taps 0); use tap (2,2) only, input channel 0.
  std::vector<float> wv(8 * 16, 0.0f);
  wv[0 * 16 + 2 * 4 + 2] = 1.0f;
  w.copy_(Tensor::from_vector(wv, {8, 4, 4, 1}));
  for (auto& [n, slot] : g.named_parameter_slots()) {
    if (n == "up.0.conv.weight") slot->copy_(w);
  }
  Tensor x = randn({1, 32, 32, 1}, 5);
  Tensor y = g(x);
  // d0 = down.0 conv(x): recompute it.
  Tensor d0;
  for (auto& [n, t] : g.named_parameters()) {
    if (n == "down.0.conv.weight") d0 = conv2d(x, t, Tensor(), Conv2dParams::make(2, 1));
  }
  const auto ya = y.to_vector<float>();
  const auto da = d0.to_vector<float>();  // [1,16,16,4], channel 0
  int checked_negative = 0;
  for (int a = 0; a < 16; ++a) {
    for (int b = 0; b < 16; ++b) {
      const float d = da[(a * 16 + b) * 4 + 0];
      const float expect = d > 0 ? d : 0.0f;  // relu(leaky_relu(d)) == relu(d)
      EXPECT_NEAR(ya[(2 * a + 1) * 32 + (2 * b + 1)], expect, 1e-5);
      if (d < 0) ++checked_negative;
    }
  }
  EXPECT_GT(checked_negative, 0);
}

TEST(Models, FullResolutionEndsWrapTheUnet) {
  UnetConfig c = small_unet();
  c.norm = NormKind::None;
  c.full_res_width = 3;
  UnetGenerator g(c);
  std::map<std::string, Shape> shapes;
  for (auto& [n, t] : g.named_parameters()) shapes[n] = t.shape();
  EXPECT_EQ(shapes.at("full_res.in.conv.weight"), (Shape{3, 3, 3, 1}));   // OHWI: 1 -> 3
  EXPECT_EQ(shapes.at("down.0.conv.weight"), (Shape{4, 4, 4, 3}));        // level 0 reads 3 channels
  EXPECT_EQ(shapes.at("up.0.conv.weight"), (Shape{8, 4, 4, 3}));          // and gives 3 back
  EXPECT_EQ(shapes.at("full_res.out.conv.weight"), (Shape{1, 3, 3, 6}));  // concat(in, up) -> 1
  EXPECT_TRUE(shapes.count("full_res.out.conv.bias"));

  // With every U-Net level silenced (zero weights and biases), the output is the full-resolution
  // path alone: out = conv3x3(relu(concat(relu(conv3x3(x)), 0))), the input's features first.
  g.eval();
  NoGradGuard ng;
  for (auto& [n, slot] : g.named_parameter_slots())
    if (n.rfind("full_res.", 0) != 0) slot->fill_(0.0);
  Tensor w_in, b_in, w_out, b_out;
  for (auto& [n, t] : g.named_parameters()) {
    if (n == "full_res.in.conv.weight") w_in = t;
    if (n == "full_res.in.conv.bias") b_in = t;
    if (n == "full_res.out.conv.weight") w_out = t;
    if (n == "full_res.out.conv.bias") b_out = t;
  }
  const Tensor x = randn({2, 32, 32, 1}, 7);
  const Tensor features = relu(conv2d(x, w_in, b_in, Conv2dParams::make(1, 1)));
  const Tensor expect =
      conv2d(concat({features, Tensor::zeros({2, 32, 32, 3})}, -1), w_out, b_out, Conv2dParams::make(1, 1));
  const auto got = g(x).to_vector<float>(), want = expect.to_vector<float>();
  ASSERT_EQ(got.size(), want.size());
  double largest = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_NEAR(got[i], want[i], 1e-5) << i;
    largest = std::max(largest, std::abs(static_cast<double>(want[i])));
  }
  EXPECT_GT(largest, 1e-3);
}

TEST(Models, FullResolutionEndsTrainAndHaveNoPix2PixNames) {
  UnetConfig c = small_unet();
  c.full_res_width = 4;
  UnetGenerator g(c);
  sum(g(randn({2, 32, 32, 1}, 8))).backward();
  for (const auto& [name, p] : g.named_parameters()) ASSERT_TRUE(p.grad().defined()) << name;
  EXPECT_THROW(pix2pix_names(c), Error);
  // JSON: the key appears only when set, and older configs read as pix2pix's U-Net.
  EXPECT_EQ(unet_config_from_json(to_json(c).dump()), c);
  EXPECT_FALSE(to_json(small_unet()).contains("full_res_width"));
  EXPECT_EQ(unet_config_from_json(to_json(small_unet()).dump()).full_res_width, 0);
  c.full_res_width = -1;
  EXPECT_THROW(UnetGenerator bad(c), Error);
}

TEST(Models, PatchGanShapes) {
  PatchGanConfig c;
  c.ndf = 4;
  PatchDiscriminator d(c);
  Tensor img = randn({1, 256, 256, 1}, 3), mask = randn({1, 256, 256, 1}, 4);
  EXPECT_EQ(d(img, mask).shape(), (Shape{1, 30, 30, 1}));
  // The two-argument form is the concat on channels, image first.
  Tensor both = concat({img, mask}, -1);
  EXPECT_EQ(d(img, mask).to_vector<float>(), d(both).to_vector<float>());
  EXPECT_NE(d(mask, img).to_vector<float>(), d(both).to_vector<float>());

  PatchGanConfig p = c;
  p.pixel = true;
  PatchDiscriminator pd(p);
  EXPECT_EQ(pd(randn({2, 9, 7, 2}, 5)).shape(), (Shape{2, 9, 7, 1}));
  // pix2pix PixelDiscriminator with batch norm: only the first conv has a bias.
  std::vector<std::string> names;
  for (auto& [n, t] : pd.named_parameters()) names.push_back(n);
  EXPECT_EQ(names, (std::vector<std::string>{"blocks.0.conv.weight", "blocks.0.conv.bias",
                                             "blocks.1.conv.weight", "blocks.1.norm.weight",
                                             "blocks.1.norm.bias", "head.weight"}));
  PatchGanConfig one = c;
  one.n_layers = 1;
  EXPECT_EQ(PatchDiscriminator(one)(randn({1, 32, 32, 2}, 6)).shape(), (Shape{1, 14, 14, 1}));
}

TEST(Models, TinyGanBackwardReachesEveryParameter) {
  UnetGenerator g(small_unet());
  PatchGanConfig dc;
  dc.ndf = 4;
  dc.n_layers = 2;
  PatchDiscriminator d(dc);
  Tensor x = randn({2, 32, 32, 1}, 7);
  Tensor m = Tensor::full({2, 32, 32, 1}, 1.0);
  Tensor logits = g(x);
  Tensor p = sigmoid(logits);
  Tensor out = d(x, p);
  Tensor loss = bce_with_logits(out, Tensor::ones(out.shape())) + bce_with_logits(logits, m);
  loss.backward();
  for (auto& [n, t] : g.named_parameters()) {
    ASSERT_TRUE(t.grad().defined()) << "G." << n;
    EXPECT_GT(sum(square(t.grad())).item(), 0.0) << "G." << n;
  }
  for (auto& [n, t] : d.named_parameters()) {
    ASSERT_TRUE(t.grad().defined()) << "D." << n;
    EXPECT_GT(sum(square(t.grad())).item(), 0.0) << "D." << n;
  }
}

TEST(Models, InstanceAndNoNormVariantsHaveBiases) {
  for (NormKind k : {NormKind::Instance, NormKind::None}) {
    UnetConfig c = small_unet();
    c.norm = k;
    UnetGenerator g(c);
    std::set<std::string> names;
    for (auto& [n, t] : g.named_parameters()) names.insert(n);
    for (int i = 0; i < 5; ++i) {
      EXPECT_TRUE(names.count("down." + std::to_string(i) + ".conv.bias")) << i;
      EXPECT_TRUE(names.count("up." + std::to_string(i) + ".conv.bias")) << i;
      EXPECT_FALSE(names.count("up." + std::to_string(i) + ".norm.weight")) << i;  // affine=False
    }
    EXPECT_TRUE(g.named_buffers().empty());  // instance norm keeps no running statistics
    EXPECT_EQ(g(randn({1, 32, 32, 1}, 8)).shape(), (Shape{1, 32, 32, 1}));

    PatchGanConfig dc;
    dc.ndf = 4;
    dc.norm = k;
    PatchDiscriminator d(dc);
    for (auto& [n, t] : d.named_parameters()) EXPECT_EQ(n.find("norm"), std::string::npos) << n;
    EXPECT_EQ(d.named_parameters().size(), 2u * 5);  // weight + bias for all 5 convs
  }
  EXPECT_EQ(norm_kind_from_name("instance"), NormKind::Instance);
  EXPECT_EQ(norm_kind_from_name("batch"), NormKind::Batch);
  EXPECT_EQ(norm_kind_from_name("none"), NormKind::None);
  try {
    norm_kind_from_name("group");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'group'"), std::string::npos) << e.what();
  }
}

TEST(Models, DropoutOnlyWhenAskedAndOnlyInTraining) {
  UnetConfig c = small_unet();
  c.num_downs = 6;  // one 8*ngf intermediate level (level 4) gets dropout
  Tensor x = randn({1, 64, 64, 1}, 9);
  {
    UnetGenerator g(c);
    int dropouts = 0;
    g.apply([&](nn::Module& m) { dropouts += m.type_name() == "Dropout"; });
    EXPECT_EQ(dropouts, 0);
    manual_seed(1);
    const auto a = g(x).to_vector<float>();
    manual_seed(2);
    EXPECT_EQ(g(x).to_vector<float>(), a);  // deterministic without dropout (BN in training)
  }
  c.use_dropout = true;
  UnetGenerator g(c);
  int dropouts = 0;
  g.apply([&](nn::Module& m) { dropouts += m.type_name() == "Dropout"; });
  EXPECT_EQ(dropouts, 1);
  int dropouts8 = 0;
  UnetGenerator g8(UnetConfig{.num_downs = 8, .ngf = 1, .use_dropout = true});
  g8.apply([&](nn::Module& m) { dropouts8 += m.type_name() == "Dropout"; });
  EXPECT_EQ(dropouts8, 3);  // unet_256: the three 512-channel intermediate levels
  manual_seed(1);
  const auto a = g(x).to_vector<float>();
  manual_seed(2);
  const auto b = g(x).to_vector<float>();
  EXPECT_NE(a, b);  // different masks
  manual_seed(1);
  EXPECT_EQ(g(x).to_vector<float>(), a);  // same seed, same masks
  g.eval();
  manual_seed(1);
  const auto e1 = g(x).to_vector<float>();
  manual_seed(2);
  EXPECT_EQ(g(x).to_vector<float>(), e1);  // identity in eval mode
}

TEST(Models, BadInputsGiveClearErrors) {
  UnetGenerator g(small_unet());
  try {
    g(randn({1, 48, 32, 1}, 10));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("multiples of 2^5 = 32"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[1, 48, 32, 1]"), std::string::npos) << msg;
  }
  EXPECT_THROW(g(randn({1, 32, 32, 2}, 11)), Error);  // wrong channels
  EXPECT_THROW(g(randn({32, 32, 1}, 11)), Error);     // not 4-D
  UnetConfig bad = small_unet();
  bad.num_downs = 4;
  EXPECT_THROW(UnetGenerator{bad}, Error);
  PatchDiscriminator d(PatchGanConfig{.ndf = 2});
  EXPECT_THROW(d(randn({1, 32, 32, 3}, 12)), Error);
}

TEST(Models, ConfigJsonRoundTrip) {
  UnetConfig c = small_unet();
  c.norm = NormKind::Instance;
  c.use_dropout = true;
  c.head = UnetConfig::Head::Tanh;
  c.in_channels = 3;
  const std::string text = to_json(c).dump();
  EXPECT_EQ(unet_config_from_json(text), c);
  EXPECT_EQ(nlohmann::json::parse(text).get<UnetConfig>(), c);
  EXPECT_EQ(unet_config_from_json("{}"), UnetConfig{});
  EXPECT_THROW(unet_config_from_json("{\"ngf\": \"x\"}"), Error);
  EXPECT_THROW(unet_config_from_json("{\"nfg\": 3}"), Error);
  EXPECT_THROW(unet_config_from_json("{\"model\": \"patchgan\"}"), Error);
  EXPECT_THROW(unet_config_from_json("not json"), Error);

  PatchGanConfig d{.in_channels = 3, .ndf = 8, .n_layers = 2, .norm = NormKind::None, .pixel = true};
  EXPECT_EQ(patchgan_config_from_json(to_json(d).dump()), d);
  nlohmann::json j = d;
  EXPECT_EQ(j["norm"], "none");
  EXPECT_THROW(patchgan_config_from_json("{\"norm\": \"group\"}"), Error);
}

}  // namespace
}  // namespace rg::models
