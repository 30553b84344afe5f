// Modules: parameters and buffers, train/eval, init, freezing, and a tiny model that learns.
#include <cmath>

#include "tests/engine/test_helpers.h"

namespace rg {
namespace {

using namespace rg::nn;

std::shared_ptr<Sequential> tiny_net() {
  auto net = std::make_shared<Sequential>();
  net->push_back(std::make_shared<Conv2d>(1, 4, ConvOptions{.kernel = 4, .stride = 2, .padding = 1, .bias = false}));
  net->push_back(std::make_shared<BatchNorm2d>(4));
  net->push_back(std::make_shared<LeakyReLU>(0.2));
  net->push_back(std::make_shared<ConvTranspose2d>(4, 1, ConvOptions{.kernel = 4, .stride = 2, .padding = 1}));
  return net;
}

TEST(Module, NamedParametersAndBuffers) {
  auto net = tiny_net();
  std::vector<std::string> names;
  for (auto& [name, t] : net->named_parameters()) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{"0.weight", "1.weight", "1.bias", "3.weight", "3.bias"}));
  std::vector<std::string> buffers;
  for (auto& [name, t] : net->named_buffers()) buffers.push_back(name);
  EXPECT_EQ(buffers, (std::vector<std::string>{"1.running_mean", "1.running_var"}));
  EXPECT_EQ(net->parameter_count(), 4 * 16 + 4 + 4 + 4 * 16 + 1);
  for (const Tensor& p : net->parameters()) EXPECT_TRUE(p.requires_grad());
  EXPECT_EQ(net->named_parameters()[0].second.shape(), (Shape{4, 4, 4, 1}));  // OHWI
  EXPECT_EQ(net->named_parameters()[3].second.shape(), (Shape{4, 4, 4, 1}));  // [in][kh][kw][out]
}

TEST(Module, TrainEvalSwitchesBatchNormStatistics) {
  auto net = tiny_net();
  auto& bn = dynamic_cast<BatchNorm2d&>((*net)[1]);
  Tensor x = testing::random_tensor({2, 8, 8, 1}, 3, false, DType::F32);
  net->train();
  Tensor y_train = (*net)(x);
  EXPECT_NE(bn.running_mean.to_vector<float>(), std::vector<float>(4, 0.0f));  // updated
  const auto rm = bn.running_mean.to_vector<float>();
  net->eval();
  EXPECT_FALSE(bn.is_training());
  Tensor y_eval = (*net)(x);
  EXPECT_EQ(bn.running_mean.to_vector<float>(), rm);  // eval does not update
  EXPECT_NE(y_train.to_vector<float>(), y_eval.to_vector<float>());
}

TEST(Module, Pix2PixInitStatistics) {
  auto conv = std::make_shared<Conv2d>(64, 128, ConvOptions{.kernel = 4, .stride = 2, .padding = 1});
  auto bn = std::make_shared<BatchNorm2d>(4096);
  Sequential net({conv, bn});
  Generator gen(123);
  init::pix2pix(net, 0.02, gen);
  auto moments = [](const Tensor& t) {
    const double m = mean(t).item();
    return std::make_pair(m, std::sqrt(mean(square(add(t, -m))).item()));
  };
  auto [wm, ws] = moments(conv->weight);
  EXPECT_NEAR(wm, 0.0, 1e-3);
  EXPECT_NEAR(ws, 0.02, 1e-3);
  for (float b : conv->bias.to_vector<float>()) EXPECT_EQ(b, 0.0f);
  auto [gm, gs] = moments(bn->weight);
  EXPECT_NEAR(gm, 1.0, 2e-3);
  EXPECT_NEAR(gs, 0.02, 2e-3);
  // Deterministic per seed.
  Generator again(123);
  Tensor before = conv->weight.clone();
  init::pix2pix(net, 0.02, again);
  EXPECT_EQ(conv->weight.to_vector<float>(), before.to_vector<float>());
}

TEST(Module, FreezingStopsParameterGradients) {
  auto net = tiny_net();
  Tensor x = testing::random_tensor({1, 8, 8, 1}, 4, true, DType::F32);
  net->set_requires_grad(false);
  sum((*net)(x)).backward();
  for (const Tensor& p : net->parameters()) EXPECT_FALSE(p.grad().defined());
  EXPECT_TRUE(x.grad().defined());  // the gradient still reaches the input
  net->set_requires_grad(true);
  sum((*net)(x)).backward();
  for (const Tensor& p : net->parameters()) EXPECT_TRUE(p.grad().defined());
  net->zero_grad();
  for (const Tensor& p : net->parameters()) EXPECT_FALSE(p.grad().defined());
}

TEST(Module, InstanceNormAndActivationsModules) {
  Sequential net({std::make_shared<InstanceNorm2d>(2), std::make_shared<ReLU>(),
                  std::make_shared<Tanh>(), std::make_shared<Sigmoid>(),
                  std::make_shared<Dropout>(0.5)});
  EXPECT_TRUE(net.named_parameters().empty());  // pix2pix InstanceNorm: no affine
  net.eval();
  Tensor y = net(testing::random_tensor({2, 3, 3, 2}, 5, false, DType::F32));
  for (float v : y.to_vector<float>()) EXPECT_TRUE(v >= 0.5f && v < 1.0f);
}

TEST(Module, TinyModelLearns) {
  // A conv/BN/convT net fits a fixed target with Adam: the loss drops by 10x.
  manual_seed(7);
  auto net = tiny_net();
  Tensor x = testing::random_tensor({4, 8, 8, 1}, 6, false, DType::F32);
  Tensor target = Tensor::zeros({4, 8, 8, 1});
  {
    NoGradGuard ng;
    target.copy_(mul(sigmoid(mul(x, 3.0)), 1.0));
  }
  optim::Adam adam(net->parameters(), {.lr = 1e-2});
  double first = 0, last = 0;
  for (int step = 0; step < 150; ++step) {
    adam.zero_grad();
    Tensor loss = mse_loss(sigmoid((*net)(x)), target);
    loss.backward();
    adam.step();
    if (step == 0) first = loss.item();
    last = loss.item();
  }
  EXPECT_LT(last, first / 10) << "first " << first << " last " << last;
}

}  // namespace
}  // namespace rg
