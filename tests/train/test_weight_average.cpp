// The exponential moving average of a network's weights: it starts as a copy, each update moves
// it (1 - d_k) of the way to the trained network (parameters and batch-norm statistics), the
// ramp d_k = min(decay, (1 + k) / (10 + k)) holds, and a network of another shape is refused.
#include <gtest/gtest.h>

#include <memory>

#include "engine/roentgen.h"
#include "train/weight_average.h"

namespace rg::train {
namespace {

// A convolution and a batch norm: parameters and running-statistics buffers.
std::unique_ptr<nn::Sequential> small_net(uint64_t seed, int64_t width = 3) {
  Generator init(seed);
  return std::make_unique<nn::Sequential>(std::vector<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Conv2d>(1, width, nn::ConvOptions{.kernel = 3, .padding = 1}, init),
      std::make_shared<nn::BatchNorm2d>(width)});
}

std::vector<std::vector<float>> values(const nn::Module& m) {
  std::vector<std::vector<float>> out;
  for (auto& [n, t] : m.named_parameters()) out.push_back(t.to_vector<float>());
  for (auto& [n, t] : m.named_buffers()) out.push_back(t.to_vector<float>());
  return out;
}

// One optimizer step of `net` on a random batch (changes its weights and running statistics).
void train_step(nn::Module& net, optim::Adam& opt, Generator& noise) {
  Tensor x = Tensor::empty({2, 4, 4, 1});
  normal_(x, 0.0, 1.0, noise);
  opt.zero_grad();
  mean(square(net.forward(x))).backward();
  opt.step();
}

TEST(WeightAverage, TheRampFollowsTheUpdateCount) {
  EXPECT_DOUBLE_EQ(WeightAverage::decay_at(0.99, 1), 2.0 / 11.0);
  EXPECT_DOUBLE_EQ(WeightAverage::decay_at(0.99, 80), 81.0 / 90.0);
  EXPECT_DOUBLE_EQ(WeightAverage::decay_at(0.99, 890), 0.99);  // (1 + k) / (10 + k) = 0.99 at k = 890
  EXPECT_DOUBLE_EQ(WeightAverage::decay_at(0.99, 100000), 0.99);
  EXPECT_DOUBLE_EQ(WeightAverage::decay_at(0.0, 5), 0.0);
}

TEST(WeightAverage, EachUpdateMovesTheAverageTowardsTheTrainedNetwork) {
  auto live = small_net(1);
  auto average = small_net(2);
  ASSERT_NE(values(*live), values(*average));
  WeightAverage avg(*live, *average, 0.9);
  EXPECT_EQ(values(*live), values(*average)) << "the average starts as a copy";
  EXPECT_FALSE(average->is_training());

  optim::Adam opt(live->parameters(), {.lr = 0.05});
  Generator noise(3);
  for (int64_t k = 1; k <= 30; ++k) {
    const auto before = values(*average);
    train_step(*live, opt, noise);
    const auto now = values(*live);
    ASSERT_NE(now, before);
    avg.update(k);
    const double d = WeightAverage::decay_at(0.9, k);
    const auto after = values(*average);
    ASSERT_EQ(after.size(), now.size());
    for (size_t t = 0; t < after.size(); ++t) {
      for (size_t i = 0; i < after[t].size(); ++i) {
        const double expected = before[t][i] + (1.0 - d) * (now[t][i] - before[t][i]);
        ASSERT_NEAR(after[t][i], expected, 1e-6 * (1.0 + std::abs(expected)))
            << "update " << k << ", tensor " << t << ", element " << i;
      }
    }
  }
  // After 30 updates at 0.9 the average lags the trained network: it is not a copy.
  EXPECT_NE(values(*average), values(*live));
}

TEST(WeightAverage, DecayZeroCopiesTheTrainedNetwork) {
  auto live = small_net(1);
  auto average = small_net(2);
  WeightAverage avg(*live, *average, 0.0);
  optim::Adam opt(live->parameters(), {.lr = 0.05});
  Generator noise(3);
  train_step(*live, opt, noise);
  avg.update(1);
  const auto a = values(*average), l = values(*live);
  for (size_t t = 0; t < a.size(); ++t)
    for (size_t i = 0; i < a[t].size(); ++i) EXPECT_NEAR(a[t][i], l[t][i], 1e-7);
}

TEST(WeightAverage, AnotherArchitectureOrABadDecayIsRefused) {
  auto live = small_net(1);
  auto wider = small_net(2, 4);
  try {
    WeightAverage avg(*live, *wider, 0.99);
    FAIL() << "a wider network was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not match"), std::string::npos) << e.what();
  }
  auto same = small_net(2);
  EXPECT_THROW(WeightAverage(*live, *same, 1.0), Error);
  EXPECT_THROW(WeightAverage(*live, *same, -0.1), Error);
}

}  // namespace
}  // namespace rg::train
