// Checkpoints over arbitrary named modules, optimizers and generators: a round trip restores
// every tensor, optimizer step count and generator position; a missing, torn, foreign or
// incomplete checkpoint is refused with a message naming the file.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "engine/roentgen.h"
#include "train/checkpoint.h"

namespace rg::train {
namespace {

namespace fs = std::filesystem;

struct Nets {
  Generator init;
  nn::Conv2d enc;
  nn::Sequential dec;
  optim::Adam opt_enc, opt_dec;
  Generator noise{5};
  explicit Nets(uint64_t seed)
      : init(seed),
        enc(1, 3, {.kernel = 3, .padding = 1}, init),
        dec({std::make_shared<nn::Conv2d>(3, 2, nn::ConvOptions{.kernel = 1}, init),
             std::make_shared<nn::BatchNorm2d>(2)}),
        opt_enc(enc.parameters(), {.lr = 1e-2}),
        opt_dec(dec.parameters(), {.lr = 1e-2}) {}
  TrainState state() {
    return {.modules = {{"enc", &enc}, {"dec", &dec}},
            .optimizers = {{"enc", &opt_enc}, {"dec", &opt_dec}},
            .generators = {{"noise", &noise}}};
  }
  void train_steps(int n) {
    Tensor x = Tensor::empty({2, 4, 4, 1});
    for (int i = 0; i < n; ++i) {
      normal_(x, 0.0, 1.0, noise);
      opt_enc.zero_grad();
      opt_dec.zero_grad();
      mean(square(dec.forward(enc.forward(x)))).backward();
      opt_enc.step();
      opt_dec.step();
    }
  }
  std::vector<std::vector<float>> everything() const {
    std::vector<std::vector<float>> out;
    for (const nn::Module* m : {static_cast<const nn::Module*>(&enc), static_cast<const nn::Module*>(&dec)}) {
      for (auto& [n, t] : m->named_parameters()) out.push_back(t.to_vector<float>());
      for (auto& [n, t] : m->named_buffers()) out.push_back(t.to(DType::F32).to_vector<float>());
    }
    for (const optim::Optimizer* o : {&opt_enc, &opt_dec}) {
      for (auto& [n, t] : o->state()) out.push_back(t.to(DType::F32).to_vector<float>());
    }
    return out;
  }
};

fs::path scratch(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("rg_train_ckpt_" + std::to_string(getpid())) / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

CheckpointInfo info_of(const std::string& kind) {
  CheckpointInfo info;
  info.kind = kind;
  info.run = {{"lr", 0.01}};
  info.extra = {{"network", "toy"}};
  info.metadata = {{"generator_config", "{}"}};
  return info;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(TrainCheckpoint, RoundTripRestoresModulesOptimizersAndGenerators) {
  const fs::path dir = scratch("round_trip");
  Nets a(1);
  a.train_steps(3);
  LoopProgress p{.epoch = 2, .step_in_epoch = 5, .global_step = 17, .best_score = 0.75,
                 .best_epoch = 2, .batch_size = 4, .world_size = 1};
  save_checkpoint(dir, "latest", a.state(), p, info_of("toy"));
  EXPECT_TRUE(fs::exists(dir / "latest.safetensors"));
  EXPECT_EQ(read_checkpoint_json(dir, "latest", "toy").at("network"), "toy");

  Nets b(2);  // other weights, no optimizer state yet, generator at 0
  b.train_steps(1);
  ASSERT_NE(a.everything(), b.everything());
  const LoopProgress q = load_checkpoint(dir, "latest", b.state(), "toy");
  EXPECT_EQ(a.everything(), b.everything());
  EXPECT_EQ(b.opt_enc.step_count(), 3);
  EXPECT_EQ(b.noise.offset(), a.noise.offset());
  EXPECT_EQ(q.epoch, 2);
  EXPECT_EQ(q.step_in_epoch, 5);
  EXPECT_EQ(q.global_step, 17);
  EXPECT_EQ(q.best_score, 0.75);
  EXPECT_EQ(q.best_epoch, 2);
  EXPECT_EQ(q.batch_size, 4);
  // Both continue identically.
  a.train_steps(2);
  b.train_steps(2);
  EXPECT_EQ(a.everything(), b.everything());
}

TEST(TrainCheckpoint, BadCheckpointsAreRefusedNamingTheFile) {
  const fs::path dir = scratch("bad");
  Nets a(1);
  EXPECT_NE(error_of([&] { load_checkpoint(dir, "latest", a.state(), "toy"); }).find("latest.json"),
            std::string::npos);
  save_checkpoint(dir, "latest", a.state(), {.global_step = 1}, info_of("toy"));
  EXPECT_NE(error_of([&] { load_checkpoint(dir, "latest", a.state(), "seg"); }).find("'toy'"),
            std::string::npos);
  // A module the checkpoint does not hold.
  TrainState more = a.state();
  nn::Conv2d extra(1, 1, {.kernel = 1});
  more.modules.emplace_back("extra", &extra);
  const std::string lacking = error_of([&] { load_checkpoint(dir, "latest", more, "toy"); });
  EXPECT_NE(lacking.find("latest.safetensors"), std::string::npos) << lacking;
  EXPECT_NE(lacking.find("holds no network 'extra'"), std::string::npos) << lacking;
  // A network the checkpoint holds and the run does not build: skipped when loading part of
  // it (inference), refused when the run resumes itself (other settings would mix in).
  save_checkpoint(dir, "more", more, {.global_step = 1}, info_of("toy"));
  Nets b(2);
  EXPECT_NO_THROW(load_checkpoint(dir, "more", b.state(), "toy"));
  EXPECT_EQ(b.everything(), a.everything());
  const std::string extra_network =
      error_of([&] { load_checkpoint(dir, "more", b.state(), "toy", /*whole_state=*/true); });
  EXPECT_NE(extra_network.find("more.safetensors"), std::string::npos) << extra_network;
  EXPECT_NE(extra_network.find("network 'extra'"), std::string::npos) << extra_network;
  EXPECT_NO_THROW(load_checkpoint(dir, "more", more, "toy", /*whole_state=*/true));
  // A torn pair: the JSON of a later save next to the tensors of an earlier one.
  save_checkpoint(dir, "other", a.state(), {.global_step = 2}, info_of("toy"));
  fs::copy_file(dir / "other.json", dir / "latest.json", fs::copy_options::overwrite_existing);
  EXPECT_NE(error_of([&] { load_checkpoint(dir, "latest", a.state(), "toy"); }).find("interrupted"),
            std::string::npos);
  // Corrupt JSON.
  std::ofstream(dir / "other.json") << "{\"format\": ";
  EXPECT_NE(error_of([&] { load_checkpoint(dir, "other", a.state(), "toy"); }).find("other.json"),
            std::string::npos);
  // Truncated tensors.
  save_checkpoint(dir, "cut", a.state(), {.global_step = 3}, info_of("toy"));
  fs::resize_file(dir / "cut.safetensors", fs::file_size(dir / "cut.safetensors") / 2);
  EXPECT_NE(error_of([&] { load_checkpoint(dir, "cut", a.state(), "toy"); }).find("cut.safetensors"),
            std::string::npos);
}

}  // namespace
}  // namespace rg::train
