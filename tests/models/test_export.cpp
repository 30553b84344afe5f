// PyTorch pix2pix names and layouts: the tables for unet_256 and the n_layers=3 PatchGAN, a
// layout check element by element, a round trip, and the export app end to end.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "engine/roentgen.h"
#include "engine/checkpoint.h"
#include "models/pix2pix_names.h"

namespace rg::models {
namespace {

namespace fs = std::filesystem;

std::map<std::string, Pix2PixName> by_torch(const std::vector<Pix2PixName>& names) {
  std::map<std::string, Pix2PixName> m;
  for (const auto& n : names) EXPECT_TRUE(m.emplace(n.torch, n).second) << "duplicate " << n.torch;
  return m;
}

TEST(Export, Unet256NamesAndShapes) {
  const auto names = pix2pix_names(UnetConfig::unet_256());
  const auto m = by_torch(names);
  auto expect = [&](const std::string& torch, const std::string& ours, const Shape& shape) {
    auto it = m.find(torch);
    ASSERT_NE(it, m.end()) << torch;
    EXPECT_EQ(it->second.ours, ours) << torch;
    EXPECT_EQ(it->second.torch_shape, shape) << torch;
  };
  // Outermost block: Sequential [downconv, submodule, uprelu, upconv, tanh].
  expect("model.model.0.weight", "down.0.conv.weight", {64, 1, 4, 4});
  expect("model.model.3.weight", "up.0.conv.weight", {128, 1, 4, 4});  // ConvTranspose: [in][out]
  expect("model.model.3.bias", "up.0.conv.bias", {1});
  EXPECT_FALSE(m.count("model.model.0.bias"));
  // Level 1 (intermediate): [downrelu, downconv, downnorm, submodule, uprelu, upconv, upnorm].
  expect("model.model.1.model.1.weight", "down.1.conv.weight", {128, 64, 4, 4});
  expect("model.model.1.model.2.weight", "down.1.norm.weight", {128});
  expect("model.model.1.model.2.running_var", "down.1.norm.running_var", {128});
  expect("model.model.1.model.5.weight", "up.1.conv.weight", {256, 64, 4, 4});
  expect("model.model.1.model.6.running_mean", "up.1.norm.running_mean", {64});
  // Level 3: 256 -> 512.
  expect("model.model.1.model.3.model.3.model.1.weight", "down.3.conv.weight", {512, 256, 4, 4});
  expect("model.model.1.model.3.model.3.model.5.weight", "up.3.conv.weight", {1024, 256, 4, 4});
  // Innermost (level 7): [downrelu, downconv, uprelu, upconv, upnorm].
  const std::string inner = "model.model.1" + std::string(".model.3") + ".model.3.model.3.model.3.model.3.model.3.model";
  expect(inner + ".1.weight", "down.7.conv.weight", {512, 512, 4, 4});
  expect(inner + ".3.weight", "up.7.conv.weight", {512, 512, 4, 4});
  expect(inner + ".4.weight", "up.7.norm.weight", {512});
  expect(inner + ".4.num_batches_tracked", "", {});
  EXPECT_EQ(m.at(inner + ".4.num_batches_tracked").layout, TorchLayout::BatchCounter);
  EXPECT_FALSE(m.count(inner + ".2.weight"));  // no norm after the innermost down conv
  // Counts: 16 convs, 13 batch norms (4 PyTorch entries + the counter each), 1 bias.
  EXPECT_EQ(names.size(), 16u + 13u * 5u + 1u);
  // PyTorch's state_dict order: depth first, down before the submodule before up.
  EXPECT_EQ(names.front().torch, "model.model.0.weight");
  EXPECT_EQ(names[1].torch, "model.model.1.model.1.weight");
  EXPECT_EQ(names.back().torch, "model.model.3.bias");
  // The trainable entries add up to the parameter count (54,407,809; see test_models.cpp).
  int64_t params = 0;
  for (const auto& n : names) {
    if (n.layout != TorchLayout::BatchCounter && n.torch.find("running_") == std::string::npos) {
      params += shape_numel(n.torch_shape);
    }
  }
  EXPECT_EQ(params, 54407809);
}

TEST(Export, PatchGanNamesAndShapes) {
  const auto names = pix2pix_names(PatchGanConfig{});
  std::vector<std::string> torch;
  for (const auto& n : names) torch.push_back(n.torch);
  const std::vector<std::string> bn = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"};
  std::vector<std::string> want = {"model.0.weight", "model.0.bias", "model.2.weight"};
  for (auto& s : bn) want.push_back("model.3." + s);
  want.push_back("model.5.weight");
  for (auto& s : bn) want.push_back("model.6." + s);
  want.push_back("model.8.weight");
  for (auto& s : bn) want.push_back("model.9." + s);
  want.push_back("model.11.weight");
  want.push_back("model.11.bias");
  EXPECT_EQ(torch, want);
  const auto m = by_torch(names);
  EXPECT_EQ(m.at("model.0.weight").torch_shape, (Shape{64, 2, 4, 4}));
  EXPECT_EQ(m.at("model.8.weight").torch_shape, (Shape{512, 256, 4, 4}));
  EXPECT_EQ(m.at("model.9.running_var").ours, "blocks.3.norm.running_var");
  EXPECT_EQ(m.at("model.11.weight").torch_shape, (Shape{1, 512, 4, 4}));
  EXPECT_EQ(m.at("model.11.bias").ours, "head.bias");
  int64_t params = 0;
  for (const auto& n : names) {
    if (n.layout != TorchLayout::BatchCounter && n.torch.find("running_") == std::string::npos) {
      params += shape_numel(n.torch_shape);
    }
  }
  EXPECT_EQ(params, 2764609);
  // Pixel discriminator.
  PatchGanConfig pc;
  pc.pixel = true;
  std::vector<std::string> pixel;
  for (const auto& n : pix2pix_names(pc)) pixel.push_back(n.torch);
  want = {"net.0.weight", "net.0.bias", "net.2.weight"};
  for (auto& s : bn) want.push_back("net.3." + s);
  want.push_back("net.5.weight");
  EXPECT_EQ(pixel, want);
}

// Every parameter and buffer of ours is in the table exactly once, with the shape the
// conversion produces, for several configs.
TEST(Export, TablesCoverTheModulesExactly) {
  std::vector<UnetConfig> unets = {UnetConfig{.num_downs = 5, .ngf = 2}, UnetConfig{.num_downs = 7, .ngf = 1}};
  unets.push_back(UnetConfig{.in_channels = 3, .out_channels = 2, .num_downs = 6, .ngf = 2,
                             .norm = NormKind::Instance, .use_dropout = true});
  unets.push_back(UnetConfig{.num_downs = 5, .ngf = 2, .norm = NormKind::None});
  for (const auto& c : unets) {
    UnetGenerator g(c);
    const auto names = pix2pix_names(c);
    TorchState s;
    ASSERT_NO_THROW(s = to_pix2pix_state(module_state(g), names)) << to_json(c).dump();
    EXPECT_EQ(s.tensors.size() + s.counters.size(), names.size());
    EXPECT_EQ(s.counters.size(), c.norm == NormKind::Batch ? 2u * static_cast<size_t>(c.num_downs) - 3u : 0u);
    // Back to ours and into a fresh network: identical state.
    UnetGenerator g2(c, *std::make_unique<Generator>(99));
    load_module_state(g2, from_pix2pix_state(s.tensors, names));
    const auto a = module_state(g), b = module_state(g2);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i].second.to_vector<float>(), b[i].second.to_vector<float>()) << a[i].first;
    }
  }
  for (const auto& c : {PatchGanConfig{.ndf = 2}, PatchGanConfig{.in_channels = 3, .ndf = 2, .n_layers = 5},
                        PatchGanConfig{.ndf = 2, .norm = NormKind::Instance},
                        PatchGanConfig{.ndf = 2, .pixel = true},
                        PatchGanConfig{.ndf = 2, .norm = NormKind::None, .pixel = true}}) {
    PatchDiscriminator d(c);
    const auto names = pix2pix_names(c);
    TorchState s;
    ASSERT_NO_THROW(s = to_pix2pix_state(module_state(d), names)) << to_json(c).dump();
    EXPECT_EQ(s.tensors.size() + s.counters.size(), names.size());
  }
  // A missing or extra tensor is reported by name.
  UnetConfig c{.num_downs = 5, .ngf = 2};
  UnetGenerator g(c);
  NamedTensors st = module_state(g);
  st.erase(st.begin());
  st.emplace_back("extra.weight", Tensor::ones({1}));
  try {
    to_pix2pix_state(st, pix2pix_names(c));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing [down.0.conv.weight]"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("unexpected [extra.weight]"), std::string::npos) << e.what();
  }
}

TEST(Export, LayoutsMoveElementsToPyTorchIndices) {
  UnetConfig c{.in_channels = 2, .out_channels = 3, .num_downs = 5, .ngf = 2};
  UnetGenerator g(c);
  // Write distinct values into the outermost down conv (OHWI [2][4][4][2]) and the outermost up
  // conv ([in 4][4][4][out 3]).
  for (auto& [name, slot] : g.named_parameter_slots()) {
    if (name == "down.0.conv.weight" || name == "up.0.conv.weight") {
      std::vector<float> v(static_cast<size_t>(slot->numel()));
      for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i);
      slot->copy_(Tensor::from_vector(v, slot->shape()));
    }
  }
  const auto s = to_pix2pix_state(module_state(g), pix2pix_names(c));
  std::map<std::string, Tensor> t(s.tensors.begin(), s.tensors.end());
  // Conv: ours [o][kh][kw][i] -> PyTorch [o][i][kh][kw].
  const Tensor w = t.at("model.model.0.weight");
  ASSERT_EQ(w.shape(), (Shape{2, 2, 4, 4}));
  const auto wv = w.to_vector<float>();
  for (int o = 0; o < 2; ++o)
    for (int i = 0; i < 2; ++i)
      for (int y = 0; y < 4; ++y)
        for (int x = 0; x < 4; ++x) {
          const int ours = ((o * 4 + y) * 4 + x) * 2 + i;
          EXPECT_EQ(wv[((o * 2 + i) * 4 + y) * 4 + x], static_cast<float>(ours));
        }
  // ConvTranspose: ours [i][kh][kw][o] -> PyTorch [i][o][kh][kw]; element (i=3, y=1, x=2, o=2).
  const Tensor u = t.at("model.model.3.weight");
  ASSERT_EQ(u.shape(), (Shape{4, 3, 4, 4}));
  EXPECT_EQ(u.to_vector<float>()[((3 * 3 + 2) * 4 + 1) * 4 + 2], static_cast<float>(((3 * 4 + 1) * 4 + 2) * 3 + 2));
}

std::string self_dir() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : exe.parent_path().string();
}

TEST(Export, AppEndToEnd) {
  // The app is built next to the tests: <build>/bin/export, tests in <build>/tests.
  const fs::path app = fs::path(self_dir()).parent_path() / "bin" / "export";
  if (!fs::exists(app)) GTEST_SKIP() << "export app not built (" << app << ")";
  const fs::path dir = fs::temp_directory_path() / ("rg_export_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);

  UnetConfig gc{.num_downs = 5, .ngf = 2};
  PatchGanConfig dc{.ndf = 2, .n_layers = 2};
  UnetGenerator g(gc);
  PatchDiscriminator d(dc);
  g(Tensor::ones({2, 32, 32, 1}));  // move the running statistics off their defaults
  save_safetensors((dir / "G.safetensors").string(), module_state(g),
                   {{"config", to_json(gc).dump()}, {"num_batches_tracked", "7"}});
  save_safetensors((dir / "D.safetensors").string(), module_state(d), {{"config", to_json(dc).dump()}});

  const std::string cmd = app.string() + " --checkpoint " + (dir / "G.safetensors").string() +
                          " --discriminator " + (dir / "D.safetensors").string() + " --out " +
                          (dir / "out").string() + " > " + (dir / "log.txt").string() + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;

  const SafetensorsFile netg = load_safetensors((dir / "out" / "netG.safetensors").string());
  const auto gnames = pix2pix_names(gc);
  EXPECT_EQ(netg.tensors.size() + netg.raw.size(), gnames.size());
  EXPECT_EQ(netg.metadata.at("pix2pix"), "--netG unet(num_downs=5) --ngf 2 --norm batch --input_nc 1 --output_nc 1 --no_dropout");
  EXPECT_EQ(unet_config_from_json(netg.metadata.at("config")), gc);
  ASSERT_FALSE(netg.raw.empty());
  EXPECT_EQ(netg.raw[0].second.dtype, "I64");
  EXPECT_EQ(raw_i64_values(netg.raw[0].second), std::vector<int64_t>{7});
  // Loading the export back gives our state exactly.
  UnetGenerator g2(gc, *std::make_unique<Generator>(5));
  load_module_state(g2, from_pix2pix_state(netg.tensors, gnames));
  const auto a = module_state(g), b = module_state(g2);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].second.to_vector<float>(), b[i].second.to_vector<float>()) << a[i].first;
  }
  const SafetensorsFile netd = load_safetensors((dir / "out" / "netD.safetensors").string());
  EXPECT_EQ(netd.tensors.front().first, "model.0.weight");
  EXPECT_EQ(netd.tensors.front().second.shape(), (Shape{2, 2, 4, 4}));
  EXPECT_EQ(netd.metadata.at("pix2pix"), "--netD n_layers --n_layers_D 2 --ndf 2 --norm batch");
  std::ifstream report(dir / "out" / "export.json");
  const auto j = nlohmann::json::parse(report);
  EXPECT_EQ(j["netG"]["file"], "netG.safetensors");
  EXPECT_TRUE(j.contains("note"));

  // A config flag that contradicts the weights is an error naming the mismatch.
  const std::string bad = app.string() + " --checkpoint " + (dir / "G.safetensors").string() + " --ngf 3 --out " +
                          (dir / "bad").string() + " > " + (dir / "bad.txt").string() + " 2>&1";
  EXPECT_NE(std::system(bad.c_str()), 0);
  std::ifstream log(dir / "bad.txt");
  const std::string text((std::istreambuf_iterator<char>(log)), {});
  EXPECT_NE(text.find("shape mismatch"), std::string::npos) << text;
  EXPECT_FALSE(fs::exists(dir / "bad" / "netG.safetensors"));

  // A training checkpoint (apps/seg/seg_run + train/checkpoint layout): G.*, D.*, opt_* entries in one file,
  // configs in the metadata; both networks come out of it.
  NamedTensors run = module_state(g, "G.");
  for (auto& e : module_state(d, "D.")) run.push_back(e);
  run.emplace_back("opt_G.0.exp_avg", Tensor::zeros({3}));
  const nlohmann::json meta = {{"generator", to_json(gc)}, {"discriminator", to_json(dc)}};
  save_safetensors((dir / "latest.safetensors").string(), run,
                   {{"roentgen", meta.dump()}, {"generator_config", to_json(gc).dump()}});
  const std::string from_run = app.string() + " --checkpoint " + (dir / "latest.safetensors").string() +
                               " --out " + (dir / "run").string() + " > " + (dir / "run.txt").string() + " 2>&1";
  ASSERT_EQ(std::system(from_run.c_str()), 0) << from_run;
  const SafetensorsFile rung = load_safetensors((dir / "run" / "netG.safetensors").string());
  const SafetensorsFile rund = load_safetensors((dir / "run" / "netD.safetensors").string());
  ASSERT_EQ(rung.tensors.size(), netg.tensors.size());
  for (size_t i = 0; i < rung.tensors.size(); ++i) {
    EXPECT_EQ(rung.tensors[i].first, netg.tensors[i].first);
    EXPECT_EQ(rung.tensors[i].second.to_vector<float>(), netg.tensors[i].second.to_vector<float>());
  }
  EXPECT_EQ(patchgan_config_from_json(rund.metadata.at("config")), dc);
  EXPECT_EQ(rund.tensors.size(), netd.tensors.size());

  // A train_seg --ema checkpoint: G.* (here another network's weights) and the average G_ema.*;
  // the export is the average, which the run validated and tested.
  UnetGenerator other(gc, *std::make_unique<Generator>(11));
  NamedTensors ema_run = module_state(other, "G.");
  for (auto& e : module_state(g, "G_ema.")) ema_run.push_back(e);
  save_safetensors((dir / "ema.safetensors").string(), ema_run, {{"generator_config", to_json(gc).dump()}});
  const std::string from_ema = app.string() + " --checkpoint " + (dir / "ema.safetensors").string() +
                               " --out " + (dir / "ema").string() + " > " + (dir / "ema.txt").string() + " 2>&1";
  ASSERT_EQ(std::system(from_ema.c_str()), 0) << from_ema;
  const SafetensorsFile emag = load_safetensors((dir / "ema" / "netG.safetensors").string());
  ASSERT_EQ(emag.tensors.size(), netg.tensors.size());
  for (size_t i = 0; i < emag.tensors.size(); ++i) {
    EXPECT_EQ(emag.tensors[i].second.to_vector<float>(), netg.tensors[i].second.to_vector<float>())
        << emag.tensors[i].first;
  }
  fs::remove_all(dir);
}

TEST(Export, InferenceGeneratorPrefixPrefersTheWeightAverage) {
  UnetConfig gc{.num_downs = 5, .ngf = 2};
  UnetGenerator g(gc);
  SafetensorsFile f;
  EXPECT_EQ(inference_generator_prefix(f), "");
  f.tensors = module_state(g);  // a bare network file
  EXPECT_EQ(inference_generator_prefix(f), "");
  f.tensors = module_state(g, "G.");
  EXPECT_EQ(inference_generator_prefix(f), "G.");
  for (auto& e : module_state(g, "G_ema.")) f.tensors.push_back(e);
  EXPECT_EQ(inference_generator_prefix(f), "G_ema.");
}

}  // namespace
}  // namespace rg::models
