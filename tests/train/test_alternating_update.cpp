// The alternating update: the player being trained changes, the frozen ones do not (and are
// unfrozen afterwards); a CycleGAN-shaped step (two generators against two critics, cycle L1)
// trains; and a step reads nothing back to the host.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>

#include "engine/roentgen.h"
#include "train/alternating_update.h"
#include "train/gan_loss.h"

namespace rg::train {
namespace {

std::vector<std::vector<float>> snapshot(const std::vector<nn::Module*>& nets) {
  std::vector<std::vector<float>> out;
  for (nn::Module* m : nets) {
    for (const Tensor& p : m->parameters()) out.push_back(p.to_vector<float>());
  }
  return out;
}

std::vector<Tensor> parameters_of(const std::vector<nn::Module*>& nets) {
  std::vector<Tensor> out;
  for (nn::Module* m : nets) {
    for (const Tensor& p : m->parameters()) out.push_back(p);
  }
  return out;
}

std::shared_ptr<nn::Module> critic(Generator& gen) {
  auto seq = std::make_shared<nn::Sequential>();
  seq->push_back(std::make_shared<nn::Conv2d>(1, 4, nn::ConvOptions{.kernel = 3, .stride = 2, .padding = 1}, gen));
  seq->push_back(std::make_shared<nn::LeakyReLU>(0.2));
  seq->push_back(std::make_shared<nn::Conv2d>(4, 1, nn::ConvOptions{.kernel = 3, .padding = 1}, gen));
  return seq;
}

// CycleGAN in miniature: domain B is domain A brightened (b = 0.5 a + 0.3); G_AB, G_BA are 3x3
// convolutions, D_A, D_B two-layer patch critics; lsgan with cycle weight 10.
struct ToyCycleGan {
  Generator init{17};
  nn::Conv2d g_ab{1, 1, {.kernel = 3, .padding = 1}, init}, g_ba{1, 1, {.kernel = 3, .padding = 1}, init};
  std::shared_ptr<nn::Module> d_a = critic(init), d_b = critic(init);
  optim::Adam opt_g{parameters_of({&g_ab, &g_ba}), {.lr = 1e-2, .beta1 = 0.5}};
  optim::Adam opt_d{parameters_of({d_a.get(), d_b.get()}), {.lr = 1e-3, .beta1 = 0.5}};
  Player generators{.name = "G", .networks = {&g_ab, &g_ba}, .optimizer = &opt_g};
  Player critics{.name = "D", .networks = {d_a.get(), d_b.get()}, .optimizer = &opt_d};
  Tensor a = Tensor::empty({4, 8, 8, 1}), b = Tensor::empty({4, 8, 8, 1});

  ToyCycleGan() {
    Generator data(3);
    normal_(a, 0.0, 1.0, data);
    Tensor a2 = Tensor::empty({4, 8, 8, 1});
    normal_(a2, 0.0, 1.0, data);
    b = add(mul(a2, 0.5), 0.3);  // unpaired: B is made from other images than A
  }

  StepLosses critic_step(Tensor& fake_a, Tensor& fake_b) {
    StepLosses losses;
    fake_b = g_ab.forward(a);
    fake_a = g_ba.forward(b);
    update(critics, {&generators}, [&] {
      const Tensor la = d_loss(GanMode::LSGAN, d_a->forward(a), d_a->forward(fake_a.detach())).total;
      const Tensor lb = d_loss(GanMode::LSGAN, d_b->forward(b), d_b->forward(fake_b.detach())).total;
      return add(la, lb);
    }, losses, "d_loss");
    return losses;
  }
  void generator_step(const Tensor& fake_a, const Tensor& fake_b, StepLosses& losses) {
    update(generators, {&critics}, [&] {
      const Tensor adv = add(g_loss(GanMode::LSGAN, d_b->forward(fake_b)),
                             g_loss(GanMode::LSGAN, d_a->forward(fake_a)));
      const Tensor cycle = add(l1_loss(g_ba.forward(fake_b), a), l1_loss(g_ab.forward(fake_a), b));
      losses.add("cycle", cycle);
      return add(adv, mul(cycle, 10.0));
    }, losses, "g_loss");
  }
  StepLosses step() {
    Tensor fake_a, fake_b;
    StepLosses losses = critic_step(fake_a, fake_b);
    generator_step(fake_a, fake_b, losses);
    return losses;
  }
};

TEST(AlternatingUpdate, TrainsThePlayerAndLeavesTheFrozenOnesUntouched) {
  ToyCycleGan t;
  const auto g0 = snapshot(t.generators.networks), d0 = snapshot(t.critics.networks);
  Tensor fake_a, fake_b;
  StepLosses losses = t.critic_step(fake_a, fake_b);
  EXPECT_EQ(snapshot(t.generators.networks), g0) << "the critic update changed the generators";
  EXPECT_NE(snapshot(t.critics.networks), d0) << "the critic update did not train the critics";
  for (const Tensor& p : parameters_of(t.generators.networks)) {
    EXPECT_TRUE(p.requires_grad()) << "the generators were not unfrozen after the critic update";
  }
  const auto d1 = snapshot(t.critics.networks);
  t.generator_step(fake_a, fake_b, losses);
  EXPECT_EQ(snapshot(t.critics.networks), d1) << "the generator update changed the critics";
  EXPECT_NE(snapshot(t.generators.networks), g0) << "the generator update did not train";
  // The critics' gradients came from their own update only: the generator update, which runs
  // through them, must not have added any.
  for (const Tensor& p : parameters_of(t.critics.networks)) EXPECT_TRUE(p.requires_grad());
  for (const char* name : {"d_loss", "cycle", "g_loss"}) EXPECT_TRUE(losses.contains(name)) << name;
  EXPECT_THROW(losses.at("nothing"), Error);
  EXPECT_THROW(losses.add("cycle", Tensor::full({1}, 1.0)), Error);  // a name twice in a step
}

TEST(AlternatingUpdate, TwoGeneratorsAgainstTwoCriticsLearnTheCycle) {
  ToyCycleGan t;
  const double first = t.step().read("cycle");
  double last = first;
  for (int i = 0; i < 80; ++i) last = t.step().read("cycle");
  EXPECT_TRUE(std::isfinite(last));
  EXPECT_LT(last, 0.5 * first) << "cycle L1 from " << first << " to " << last;
}

TEST(AlternatingUpdate, AStepReadsNothingBackToTheHost) {
  ToyCycleGan t;
  t.step();  // warm-up: lazily created state
  const int64_t before = host_read_count();
  StepLosses losses = t.step();
  EXPECT_EQ(host_read_count(), before) << "a training step read tensor data to the host";
  losses.read();  // the counter does see reads: this one is three
  EXPECT_EQ(host_read_count(), before + 3);
}

TEST(AlternatingUpdate, BadPlayersAreRefused) {
  ToyCycleGan t;
  StepLosses losses;
  EXPECT_THROW(update(t.generators, {&t.generators}, [&] { return Tensor::full({1}, 0.0); }, losses, ""),
               Error);
  Player no_optimizer{.name = "E", .networks = {&t.g_ab}};
  EXPECT_THROW(update(no_optimizer, {}, [&] { return Tensor::full({1}, 0.0); }, losses, ""), Error);
  EXPECT_THROW(update(t.generators, {}, [&] { return t.g_ab.forward(t.a); }, losses, ""), Error);
}

}  // namespace
}  // namespace rg::train
