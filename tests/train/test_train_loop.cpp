// The training loop's learning-rate schedule over several optimizers: each follows the schedule
// in proportion to the learning rate its task built it with (train_recon's --d-lr).
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <vector>

#include "engine/dist/communicator.h"
#include "engine/nn/layers.h"
#include "engine/optim/optimizer.h"
#include "engine/roentgen.h"
#include "train/train_loop.h"

namespace rg::train {
namespace {

namespace fs = std::filesystem;

// Two optimizers over one small layer, built at lr 1e-3 and 2e-4; each step records the
// learning rates they are at.
class TwoOptimizerTask final : public TrainTask {
 public:
  TwoOptimizerTask()
      : layer_(2, 1, true, init_),
        fast_(layer_.parameters(), {.lr = 1e-3}),
        slow_(layer_.parameters(), {.lr = 2e-4}) {}
  TrainState state() override { return {{{"net", &layer_}}, {{"fast", &fast_}, {"slow", &slow_}}, {}}; }
  CheckpointInfo checkpoint_info() const override {
    CheckpointInfo info;
    info.kind = "test";
    return info;
  }
  void start(int64_t) override {}
  int64_t steps_per_epoch() const override { return 2; }
  StepLosses step() override {
    seen.push_back({fast_.lr(), slow_.lr()});
    StepLosses losses;
    losses.add("loss", Tensor::from_vector(std::vector<float>{0.0f}, {1}));
    return losses;
  }
  Evaluation validate(int64_t epoch, const RunFiles&) override {
    Evaluation e;
    e.score = static_cast<double>(epoch);
    return e;
  }
  Evaluation test(const RunFiles&) override { return {}; }
  std::vector<std::string> curve_losses() const override { return {"loss"}; }
  std::vector<std::string> curve_metrics() const override { return {}; }

  std::vector<std::pair<double, double>> seen;

 private:
  Generator init_{1};
  nn::Linear layer_;
  optim::Adam fast_, slow_;
};

TEST(TrainLoop, EveryOptimizerFollowsTheScheduleInProportionToItsOwnLearningRate) {
  const fs::path dir = fs::temp_directory_path() / ("rg_train_loop_" + std::to_string(getpid()));
  fs::remove_all(dir);
  TwoOptimizerTask task;
  LoopConfig c;
  c.run_dir = dir / "run";
  c.epochs = 1;
  c.epochs_decay = 3;
  c.lr = 1e-3;
  c.progress = false;
  dist::LocalCommunicator local;
  ASSERT_EQ(run_training(task, c, make_run_context(local, Device::cpu())), 0);
  ASSERT_EQ(task.seen.size(), 8u);  // 4 epochs of 2 steps
  for (size_t i = 0; i < task.seen.size(); i += 2) {
    const auto [fast, slow] = task.seen[i];
    EXPECT_NEAR(slow / fast, 0.2, 1e-12) << "epoch " << i / 2 + 1;
  }
  // The linear decay: 1e-3 in the first epoch, then falling in the decay epochs.
  EXPECT_DOUBLE_EQ(task.seen[0].first, 1e-3);
  EXPECT_LT(task.seen[6].first, task.seen[2].first);
  EXPECT_LT(task.seen[6].second, 2e-4);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace rg::train
