// CycleGAN's ResNet generator: output shapes and range, the reference state_dict keys of
// resnet_9blocks (a recorded list), batch-norm and dropout index shifts, and the export round trip.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/checkpoint.h"
#include "engine/roentgen.h"
#include "models/pix2pix_names.h"
#include "models/resnet_generator.h"

namespace rg::models {
namespace {

ResnetConfig tiny() {
  ResnetConfig c;
  c.ngf = 4;
  c.n_blocks = 2;
  return c;
}

TEST(ResnetGenerator, ShapesAndRange) {
  Generator gen(1);
  ResnetGenerator g(tiny(), gen);
  Generator xg(2);
  Tensor x = Tensor::empty({2, 16, 12, 1});
  normal_(x, 0, 1, xg);
  const Tensor y = g.forward(x);
  EXPECT_EQ(y.shape(), (Shape{2, 16, 12, 1}));
  for (float v : y.to_vector<float>()) {
    ASSERT_GE(v, -1.0f);
    ASSERT_LE(v, 1.0f);
  }
  // Two input channels, three output channels.
  ResnetConfig c = tiny();
  c.in_channels = 2;
  c.out_channels = 3;
  ResnetGenerator g2(c, gen);
  EXPECT_EQ(g2.forward(Tensor::zeros({1, 8, 8, 2})).shape(), (Shape{1, 8, 8, 3}));
  EXPECT_THROW(g.forward(Tensor::zeros({1, 10, 12, 1})), Error);  // not a multiple of 4
  EXPECT_THROW(g.forward(Tensor::zeros({1, 8, 8, 2})), Error);    // wrong channels
}

TEST(ResnetGenerator, TheLogitsHeadIsTheTanhHeadWithoutItsTanh) {
  ResnetConfig c = tiny();
  Generator gen_tanh(4), gen_logits(4);
  ResnetGenerator g_tanh(c, gen_tanh);
  c.head = ResnetConfig::Head::Logits;
  ResnetGenerator g_logits(c, gen_logits);
  Generator xg(5);
  Tensor x = Tensor::empty({1, 8, 12, 1});
  normal_(x, 0, 3, xg);
  const auto bounded = g_tanh.forward(x).to_vector<float>();
  const auto logits = g_logits.forward(x).to_vector<float>();
  ASSERT_EQ(bounded.size(), logits.size());
  double largest = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    EXPECT_NEAR(std::tanh(logits[i]), bounded[i], 1e-6) << i;
    largest = std::max(largest, std::abs(static_cast<double>(logits[i])));
  }
  // Outputs this large tell the heads apart: tanh(tanh(0.1)) is 3e-4 below tanh(0.1).
  EXPECT_GT(largest, 0.1);
}

TEST(ResnetGenerator, GradientsReachEveryParameter) {
  Generator gen(3);
  ResnetGenerator g(tiny(), gen);
  Tensor x = Tensor::ones({1, 8, 8, 1});
  sum(g.forward(x)).backward();
  for (const auto& [name, p] : g.named_parameters()) ASSERT_TRUE(p.grad().defined()) << name;
}

// The keys of the reference's ResnetGenerator(1, 1, ngf=64, norm_layer=InstanceNorm2d,
// use_dropout=False, n_blocks=9).state_dict(), in order, with their shapes.
std::vector<std::pair<std::string, Shape>> reference_resnet_9blocks_keys() {
  std::vector<std::pair<std::string, Shape>> k = {
      {"model.1.weight", {64, 1, 7, 7}},    {"model.1.bias", {64}},
      {"model.4.weight", {128, 64, 3, 3}},  {"model.4.bias", {128}},
      {"model.7.weight", {256, 128, 3, 3}}, {"model.7.bias", {256}}};
  for (int b = 10; b <= 18; ++b) {
    const std::string p = "model." + std::to_string(b) + ".conv_block.";
    k.push_back({p + "1.weight", {256, 256, 3, 3}});
    k.push_back({p + "1.bias", {256}});
    k.push_back({p + "5.weight", {256, 256, 3, 3}});
    k.push_back({p + "5.bias", {256}});
  }
  k.push_back({"model.19.weight", {256, 128, 3, 3}});  // ConvTranspose2d: [in][out][kh][kw]
  k.push_back({"model.19.bias", {128}});
  k.push_back({"model.22.weight", {128, 64, 3, 3}});
  k.push_back({"model.22.bias", {64}});
  k.push_back({"model.26.weight", {1, 64, 7, 7}});
  k.push_back({"model.26.bias", {1}});
  return k;
}

TEST(ResnetExport, Resnet9BlocksMatchesTheRecordedReferenceKeys) {
  const auto names = pix2pix_names(ResnetConfig{});
  const auto ref = reference_resnet_9blocks_keys();
  ASSERT_EQ(names.size(), ref.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    EXPECT_EQ(names[i].torch, ref[i].first) << i;
    EXPECT_EQ(names[i].torch_shape, ref[i].second) << ref[i].first;
  }
  EXPECT_EQ(names[0].ours, "in.conv.weight");
  EXPECT_EQ(names[6].ours, "blocks.0.conv1.weight");
  EXPECT_EQ(names[42].layout, TorchLayout::ConvTransposeWeight);
  EXPECT_EQ(pix2pix_options(ResnetConfig{}),
            "--netG resnet_9blocks --ngf 64 --norm instance --input_nc 1 --output_nc 1 --no_dropout");
}

TEST(ResnetExport, BatchNormAndDropoutShiftTheBlockIndices) {
  ResnetConfig c = tiny();
  c.norm = NormKind::Batch;
  c.use_dropout = true;
  std::set<std::string> keys;
  for (const auto& n : pix2pix_names(c)) keys.insert(n.torch);
  for (const char* k : {"model.2.running_mean", "model.2.num_batches_tracked", "model.10.conv_block.1.weight",
                        "model.10.conv_block.2.running_var", "model.10.conv_block.6.weight",
                        "model.10.conv_block.7.weight", "model.12.weight", "model.13.weight",
                        "model.15.weight", "model.19.weight", "model.19.bias"}) {
    EXPECT_TRUE(keys.count(k)) << k;
  }
  EXPECT_FALSE(keys.count("model.1.bias"));  // batch norm: convs without bias
  EXPECT_FALSE(keys.count("model.10.conv_block.5.weight"));
}

TEST(ResnetExport, EveryParameterIsNamedAndTheRoundTripIsExact) {
  for (NormKind norm : {NormKind::Instance, NormKind::Batch, NormKind::None}) {
    ResnetConfig c = tiny();
    c.norm = norm;
    Generator gen(5);
    ResnetGenerator g(c, gen);
    const NamedTensors ours = module_state(g);
    const auto names = pix2pix_names(c);
    const TorchState torch = to_pix2pix_state(ours, names);  // throws on a missing/extra name
    const NamedTensors back = from_pix2pix_state(torch.tensors, names);
    ASSERT_EQ(back.size(), ours.size());
    std::map<std::string, Tensor> by_name(ours.begin(), ours.end());
    for (const auto& [name, t] : back) {
      ASSERT_TRUE(by_name.count(name)) << name;
      EXPECT_EQ(t.to_vector<float>(), by_name[name].to_vector<float>()) << name;
    }
  }
}

TEST(ResnetGenerator, ConfigJsonRoundTripAndErrors) {
  ResnetConfig c = tiny();
  c.use_dropout = true;
  c.head = ResnetConfig::Head::Logits;
  ResnetConfig back;
  from_json(to_json(c), back);
  EXPECT_EQ(back, c);
  // A config written before the head existed reads as the reference's Tanh head.
  nlohmann::json old = to_json(c);
  old.erase("head");
  from_json(old, back);
  EXPECT_EQ(back.head, ResnetConfig::Head::Tanh);
  EXPECT_THROW(from_json(nlohmann::json{{"head", "sigmoid"}}, back), Error);
  EXPECT_THROW(from_json(nlohmann::json{{"model", "unet"}}, back), Error);
  EXPECT_THROW(from_json(nlohmann::json{{"n_blocks", -1}}, back), Error);
  EXPECT_THROW(from_json(nlohmann::json{{"depth", 3}}, back), Error);
}

}  // namespace
}  // namespace rg::models
