// Gradients of gradients: rg::grad, create_graph, double backward of every op a critic uses
// (finite-difference checks in float64, like gradgradcheck), and the gradient penalties.
#include <cmath>
#include <string>

#include "tests/engine/test_helpers.h"

namespace rg {
namespace {

using testing::expect_gradients_match;
using testing::project;
using testing::random_tensor;

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

// Second-derivative check. y = f(inputs); u is a fixed random upstream gradient, v_k fixed
// random weights. S(inputs, u) = sum_k <v_k, dy/dinput_k . u> is computed with
// grad(create_graph=true) and differentiated again (analytic double backward, w.r.t. every input
// that requires grad and w.r.t. u), and compared with central differences of S, where S is
// re-evaluated with first-order backward passes. Also checks that no node outlives the check.
void expect_second_derivatives_match(const Fn& f, std::vector<Tensor> inputs, uint64_t seed,
                                     double step = 1e-6, double rtol = 1e-5,
                                     double atol = 1e-6) {
  const int64_t nodes_before = Node::live_count();
  {
    std::vector<Tensor> xs;
    for (const Tensor& t : inputs) {
      ASSERT_EQ(t.dtype(), DType::F64) << "second-derivative checks run in float64";
      if (t.requires_grad()) xs.push_back(t);
    }
    ASSERT_FALSE(xs.empty());
    Tensor u = random_tensor(f(inputs).shape(), seed);
    std::vector<Tensor> vs;
    for (size_t k = 0; k < xs.size(); ++k) {
      vs.push_back(random_tensor(xs[k].shape(), seed + 1 + k, false));
    }
    auto first_order = [&](bool create_graph) {
      Tensor y = f(inputs);
      std::vector<Tensor> gs = grad({y}, xs, {u}, create_graph, std::nullopt, true);
      Tensor s = Tensor::scalar(0.0, DType::F64);
      for (size_t k = 0; k < gs.size(); ++k) {
        if (gs[k].defined()) s = add(s, sum(mul(gs[k], vs[k])));
      }
      return s;
    };
    std::vector<Tensor> wrt = xs;
    wrt.push_back(u);
    Tensor s = first_order(true);
    ASSERT_TRUE(s.requires_grad()) << "the recorded backward is not differentiable";
    std::vector<Tensor> analytic = grad({s}, wrt, {}, false, std::nullopt, true);
    s = Tensor();
    for (size_t k = 0; k < wrt.size(); ++k) {
      Tensor& t = wrt[k];
      const std::vector<double> a =
          analytic[k].defined() ? analytic[k].to_vector<double>()
                                : std::vector<double>(static_cast<size_t>(t.numel()), 0.0);
      double* p = t.data<double>();
      for (int64_t i = 0; i < t.numel(); ++i) {
        const double saved = p[i];
        p[i] = saved + step;
        const double plus = first_order(false).item();
        p[i] = saved - step;
        const double minus = first_order(false).item();
        p[i] = saved;
        const double numeric = (plus - minus) / (2 * step);
        ASSERT_NEAR(a[i], numeric, atol + rtol * std::abs(numeric))
            << (k + 1 == wrt.size() ? std::string("upstream gradient u")
                                    : "input " + std::to_string(k))
            << " element " << i << " of shape " << shape_str(t.shape());
      }
    }
  }
  EXPECT_EQ(Node::live_count(), nodes_before) << "the double-backward graph leaked nodes";
}

// Moves values away from 0, where relu and leaky_relu have a kink.
Tensor away_from_kinks(Tensor t) {
  double* p = t.data<double>();
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (std::abs(p[i]) < 0.1) p[i] = p[i] < 0 ? -0.2 : 0.2;
  }
  return t;
}

// ---------------------------------------------------------------- rg::grad itself

TEST(Grad, ReturnsGradientsWithoutTouchingDotGrad) {
  Tensor x = random_tensor({3}, 1);
  Tensor w = random_tensor({3}, 2);
  Tensor y = sum(mul(square(x), w));
  std::vector<Tensor> g = grad({y}, {x, w});
  const auto xv = x.to_vector<double>(), wv = w.to_vector<double>();
  const auto gx = g[0].to_vector<double>(), gw = g[1].to_vector<double>();
  for (int i = 0; i < 3; ++i) {
    EXPECT_DOUBLE_EQ(gx[i], 2 * xv[i] * wv[i]);
    EXPECT_DOUBLE_EQ(gw[i], xv[i] * xv[i]);
  }
  EXPECT_FALSE(x.grad().defined());
  EXPECT_FALSE(w.grad().defined());
  EXPECT_FALSE(g[0].requires_grad());  // first order: plain values
  EXPECT_THROW(y.backward(), Error);   // without create_graph the graph is freed as by backward
}

TEST(Grad, NonLeafInputsAndSeveralOutputs) {
  Tensor x = random_tensor({4}, 3);
  Tensor h = mul(x, 3.0);
  Tensor a = sum(square(h));
  Tensor b = sum(mul(h, 2.0));
  std::vector<Tensor> g = grad({a, b}, {h, x});
  const auto hv = h.to_vector<double>();
  const auto gh = g[0].to_vector<double>(), gx = g[1].to_vector<double>();
  for (int i = 0; i < 4; ++i) {
    EXPECT_NEAR(gh[i], 2 * hv[i] + 2.0, 1e-12);
    EXPECT_NEAR(gx[i], 3.0 * (2 * hv[i] + 2.0), 1e-12);
  }
}

TEST(Grad, UnreachedInputNeedsAllowUnused) {
  Tensor x = random_tensor({2}, 4);
  Tensor z = random_tensor({2}, 5);
  Tensor y = sum(x);
  try {
    grad({y}, {x, z}, {}, false, true);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("input 1"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("allow_unused"), std::string::npos) << e.what();
  }
  std::vector<Tensor> g = grad({y}, {x, z}, {}, false, std::nullopt, true);
  EXPECT_TRUE(g[0].defined());
  EXPECT_FALSE(g[1].defined());
  EXPECT_THROW(grad({y}, {Tensor::ones({2}, DType::F64)}), Error);  // input needs no grad
}

TEST(Grad, SecondDerivativeOfACubic) {
  Tensor x = Tensor::from_vector(std::vector<double>{0.5, -1.5, 2.0}, {3});
  x.set_requires_grad(true);
  Tensor y = sum(mul(square(x), x));  // sum x^3
  Tensor g = grad({y}, {x}, {}, true)[0];  // 3 x^2, recorded
  EXPECT_TRUE(g.requires_grad());
  Tensor gg = grad({sum(g)}, {x})[0];  // 6 x
  testing::expect_all_close(gg, {3.0, -9.0, 12.0}, 1e-12);
  // backward on a loss containing the gradient accumulates into .grad as usual.
  Tensor g2 = grad({sum(mul(square(x), x))}, {x}, {}, true)[0];
  sum(square(g2)).backward();  // d/dx sum 9 x^4 = 36 x^3
  testing::expect_all_close(x.grad(), {36 * 0.125, 36 * -3.375, 36 * 8.0}, 1e-9);
}

TEST(Grad, CreateGraphKeepsGraphUntilTheLastTensorIsDropped) {
  const int64_t before = Node::live_count();
  {
    Tensor x = random_tensor({2, 5, 5, 2}, 6);
    Tensor w = random_tensor({3, 3, 3, 2}, 7);
    Tensor y = sum(sigmoid(conv2d(x, w, Tensor(), Conv2dParams::make(2, 1))));
    Tensor g = grad({y}, {x}, {}, true)[0];
    EXPECT_GT(Node::live_count(), before + 4);
    // The forward graph survives the first differentiation (retain_graph = create_graph)...
    Tensor loss = add(sum(square(g)), y);
    loss.backward();
    EXPECT_TRUE(w.grad().defined());
    // ...and the backward of the loss freed what it passed: a second one fails.
    EXPECT_THROW(loss.backward(), Error);
  }
  EXPECT_EQ(Node::live_count(), before);
}

TEST(Grad, RetainedGraphServesALaterBackwardWithEveryEdge) {
  // grad() w.r.t. x alone skips the weight's edge; a later backward through the retained graph
  // must still compute the weight gradient.
  Tensor x = random_tensor({1, 4, 4, 2}, 16);
  Tensor w = random_tensor({3, 3, 3, 2}, 17);
  Tensor y = sum(square(conv2d(x, w, Tensor(), Conv2dParams::make(1, 1))));
  Tensor gx = grad({y}, {x}, {}, false, /*retain_graph=*/true)[0];
  EXPECT_FALSE(w.grad().defined());
  Tensor gw = grad({y}, {w}, {}, false, true)[0];
  y.backward();
  ASSERT_TRUE(w.grad().defined());
  testing::expect_all_close(w.grad(), gw.to_vector<double>(), 1e-12);
  testing::expect_all_close(x.grad(), gx.to_vector<double>(), 1e-12);
}

TEST(Grad, FirstOrderGradFreesTheGraph) {
  const int64_t before = Node::live_count();
  Tensor x = random_tensor({3, 4}, 8);
  Tensor y = sum(tanh(mul(x, 2.0)));
  grad({y}, {x});
  EXPECT_LE(Node::live_count(), before + 1);  // only y's released root node
  y = Tensor();
  EXPECT_EQ(Node::live_count(), before);
}

TEST(Grad, RecordedBackwardMatchesKernelBackward) {
  // The create_graph path writes each gradient with ops; it must give the values the kernels
  // give on the first-order path.
  Tensor x = random_tensor({2, 5, 4, 3}, 9);
  Tensor w = random_tensor({4, 3, 3, 3}, 10);
  Tensor b = random_tensor({4}, 11);
  Tensor wt = random_tensor({4, 2, 2, 2}, 12);
  Tensor gamma = random_tensor({2}, 13);
  Tensor beta = random_tensor({2}, 14);
  auto f = [&] {
    Tensor h = conv2d(x, w, b, Conv2dParams::make(2, 1));
    h = leaky_relu(h, 0.2);
    h = conv_transpose2d(h, wt, Tensor(), Conv2dParams::make(2, 0));
    h = instance_norm(h, gamma, beta);
    h = add(sigmoid(h), tanh(relu(h)));
    return project(batch_norm(h, gamma, beta, Tensor(), Tensor(), true), 15);
  };
  std::vector<Tensor> ins{x, w, b, wt, gamma, beta};
  std::vector<Tensor> fast = grad({f()}, ins);
  std::vector<Tensor> recorded = grad({f()}, ins, {}, true);
  for (size_t k = 0; k < ins.size(); ++k) {
    testing::expect_all_close(recorded[k], fast[k].to_vector<double>(), 1e-10);
  }
}

// ---------------------------------------------------------------- double backward per op

struct ConvCase {
  int64_t n, h, w, c_in, c_out, k, stride, pad;
  bool bias;
};

class ConvGradGradTest : public ::testing::TestWithParam<ConvCase> {};

TEST_P(ConvGradGradTest, Conv2d) {
  const ConvCase c = GetParam();
  std::vector<Tensor> in{random_tensor({c.n, c.h, c.w, c.c_in}, 21),
                         random_tensor({c.c_out, c.k, c.k, c.c_in}, 22)};
  if (c.bias) in.push_back(random_tensor({c.c_out}, 23));
  expect_second_derivatives_match(
      [&](const std::vector<Tensor>& t) {
        return conv2d(t[0], t[1], c.bias ? t[2] : Tensor(), Conv2dParams::make(c.stride, c.pad));
      },
      in, 24);
}

TEST_P(ConvGradGradTest, ConvTranspose2d) {
  const ConvCase c = GetParam();
  std::vector<Tensor> in{random_tensor({c.n, c.h, c.w, c.c_in}, 25),
                         random_tensor({c.c_in, c.k, c.k, c.c_out}, 26)};
  if (c.bias) in.push_back(random_tensor({c.c_out}, 27));
  expect_second_derivatives_match(
      [&](const std::vector<Tensor>& t) {
        return conv_transpose2d(t[0], t[1], c.bias ? t[2] : Tensor(),
                                Conv2dParams::make(c.stride, c.pad));
      },
      in, 28);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, ConvGradGradTest,
    ::testing::Values(ConvCase{2, 6, 6, 2, 3, 4, 2, 1, true},   // PatchGAN down conv
                      ConvCase{1, 5, 5, 2, 2, 3, 1, 1, false},  // 3x3 same
                      ConvCase{1, 7, 5, 1, 2, 3, 2, 0, true},   // odd sizes
                      ConvCase{1, 6, 5, 2, 2, 3, 2, 1, true},   // backward-data needs output pad
                      ConvCase{2, 3, 3, 2, 1, 1, 1, 0, true})); // 1x1, c_out 1 (score head)

TEST(GradGrad, ConvTowardsWeightOnly) {
  // Only the weight requires grad: the recorded weight gradient's own backward (w.r.t. the
  // upstream gradient) is what a WGAN-GP critic update differentiates.
  Tensor x = random_tensor({2, 5, 5, 2}, 31, false);
  expect_second_derivatives_match(
      [&](const std::vector<Tensor>& t) {
        return conv2d(x, t[0], Tensor(), Conv2dParams::make(2, 1));
      },
      {random_tensor({2, 3, 3, 2}, 32)}, 33);
}

TEST(GradGrad, Linear) {
  expect_second_derivatives_match(
      [](const std::vector<Tensor>& t) { return linear(t[0], t[1], t[2]); },
      {random_tensor({3, 4}, 41), random_tensor({2, 4}, 42), random_tensor({2}, 43)}, 44);
  Tensor x = random_tensor({2, 3, 4}, 45, false);
  Tensor w = random_tensor({5, 4}, 46, false);
  // The values: x W^T + b over the last dimension.
  Tensor y = linear(x, w, Tensor());
  EXPECT_EQ(y.shape(), (Shape{2, 3, 5}));
  const auto xv = x.to_vector<double>(), wv = w.to_vector<double>(), yv = y.to_vector<double>();
  double expected = 0.0;
  for (int k = 0; k < 4; ++k) expected += xv[4 + k] * wv[2 * 4 + k];  // row 1, output 2
  EXPECT_NEAR(yv[5 + 2], expected, 1e-12);
}

TEST(GradGrad, Activations) {
  for (auto fn : std::vector<std::function<Tensor(const Tensor&)>>{
           [](const Tensor& t) { return relu(t); },
           [](const Tensor& t) { return leaky_relu(t, 0.2); },
           [](const Tensor& t) { return sigmoid(t); },
           [](const Tensor& t) { return tanh(t); }}) {
    // Through a product, so the second derivative of the activation meets a non-constant factor.
    expect_second_derivatives_match(
        [&](const std::vector<Tensor>& t) { return mul(fn(t[0]), t[1]); },
        {away_from_kinks(random_tensor({2, 3, 4}, 51)), random_tensor({2, 3, 4}, 52)}, 53);
  }
}

TEST(GradGrad, BroadcastArithmetic) {
  Tensor pos = add(square(random_tensor({4}, 61, false)), 0.5).detach();
  pos.set_requires_grad(true);
  expect_second_derivatives_match(
      [](const std::vector<Tensor>& t) {
        Tensor y = add(t[0], t[1]);
        y = sub(y, t[2]);
        y = mul(y, t[1]);
        return div(y, t[3]);
      },
      {random_tensor({2, 3, 4}, 62), random_tensor({4}, 63), random_tensor({2, 1, 4}, 64), pos},
      65);
}

TEST(GradGrad, UnaryAndScalarOps) {
  Tensor pos = add(square(random_tensor({3, 4}, 71, false)), 0.3).detach();
  pos.set_requires_grad(true);
  expect_second_derivatives_match(
      [](const std::vector<Tensor>& t) {
        Tensor y = add(mul(t[0], 3.0), -1.5);
        y = add(y, neg(exp(mul(t[0], 0.5))));
        y = add(y, add(log(t[1]), sqrt(t[1])));
        return mul(y, square(t[0]));
      },
      {random_tensor({3, 4}, 72), pos}, 73);
}

TEST(GradGrad, SumMeanAndNorms) {
  expect_second_derivatives_match(
      [](const std::vector<Tensor>& t) {
        Tensor sq = square(t[0]);
        Tensor a = mean(sq, {1, 2}, true);            // per (sample, channel)
        Tensor b = sum(sq, {0, 1, 2});                // per channel
        Tensor norm = sqrt(sum(sq.reshape({2, -1}), {1}));  // per-sample L2 norm
        return add(add(mul(t[0], a), b), mean(norm));
      },
      {random_tensor({2, 3, 2, 2}, 81)}, 82);
}

TEST(GradGrad, ViewsAndConcat) {
  expect_second_derivatives_match(
      [](const std::vector<Tensor>& t) {
        Tensor y = concat({t[0], square(t[1])}, -1);
        y = y.permute({0, 3, 1, 2}).slice(2, 0, 3, 2).flatten().reshape({2, -1});
        return mul(y, y);
      },
      {random_tensor({2, 3, 3, 2}, 91), random_tensor({2, 3, 3, 1}, 92)}, 93);
}

TEST(GradGrad, LayerNorm) {
  expect_second_derivatives_match(
      [](const std::vector<Tensor>& t) { return layer_norm(t[0], t[1], t[2]); },
      {random_tensor({2, 3, 2, 3}, 101), random_tensor({3}, 102), random_tensor({3}, 103)}, 104);
  expect_second_derivatives_match(
      [](const std::vector<Tensor>& t) { return layer_norm(t[0], t[1], Tensor()); },
      {random_tensor({2, 2, 2, 2}, 105), random_tensor({2, 2, 2}, 106)}, 107);
}

TEST(GradGrad, InstanceNorm) {
  expect_second_derivatives_match(
      [](const std::vector<Tensor>& t) { return instance_norm(t[0], t[1], t[2]); },
      {random_tensor({2, 3, 2, 2}, 111), random_tensor({2}, 112), random_tensor({2}, 113)}, 114);
  expect_second_derivatives_match(
      [](const std::vector<Tensor>& t) { return instance_norm(t[0], Tensor(), Tensor()); },
      {random_tensor({1, 3, 3, 2}, 115)}, 116);
}

TEST(GradGrad, BatchNormTrainAndEval) {
  expect_second_derivatives_match(
      [](const std::vector<Tensor>& t) {
        return batch_norm(t[0], t[1], t[2], Tensor(), Tensor(), true);
      },
      {random_tensor({3, 2, 2, 2}, 121), random_tensor({2}, 122), random_tensor({2}, 123)}, 124);
  Tensor rm = Tensor::from_vector(std::vector<double>{0.1, -0.2}, {2});
  Tensor rv = Tensor::from_vector(std::vector<double>{1.5, 0.7}, {2});
  expect_second_derivatives_match(
      [&](const std::vector<Tensor>& t) {
        return mul(batch_norm(t[0], t[1], t[2], rm, rv, false), t[0]);
      },
      {random_tensor({2, 2, 2, 2}, 125), random_tensor({2}, 126), random_tensor({2}, 127)}, 128);
}

TEST(GradGrad, SmallCritic) {
  // conv + leaky_relu + layer_norm + conv + mean over patches: the whole path of a critic.
  expect_second_derivatives_match(
      [](const std::vector<Tensor>& t) {
        Tensor h = leaky_relu(conv2d(t[0], t[1], t[2], Conv2dParams::make(2, 1)), 0.2);
        h = layer_norm(h, Tensor(), Tensor());
        return mean(conv2d(h, t[3], Tensor(), Conv2dParams::make(1, 0)), {1, 2, 3});
      },
      {random_tensor({2, 4, 4, 1}, 131), random_tensor({2, 3, 3, 1}, 132),
       random_tensor({2}, 133), random_tensor({1, 2, 2, 2}, 134)},
      135);
}

// ---------------------------------------------------------------- errors

TEST(GradGrad, UnsupportedOpThrowsWhenDifferentiatedTwice) {
  Tensor z = random_tensor({2, 3}, 141);
  Tensor t = random_tensor({2, 3}, 142, false);
  Tensor g = grad({bce_with_logits(z, t)}, {z}, {}, true)[0];
  try {
    sum(square(g)).backward();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("double backward not supported for op "
                                         "'bce_with_logits'"),
              std::string::npos)
        << e.what();
  }
  // First-order use of the same gradient is fine.
  Tensor g1 = grad({bce_with_logits(z, t)}, {z})[0];
  EXPECT_FALSE(g1.requires_grad());
}

// ---------------------------------------------------------------- gradient penalties

struct SmallCritic {
  Tensor w1 = random_tensor({3, 3, 3, 2}, 151);
  Tensor b1 = random_tensor({3}, 152);
  Tensor w2 = random_tensor({1, 2, 2, 3}, 153);
  // [N, 4, 4, 2] -> conv 3x3 stride 2 -> [N, 2, 2, 3] -> leaky_relu -> conv 2x2 -> [N, 1, 1, 1];
  // score per sample: the mean over the (one) patch.
  Tensor operator()(const Tensor& x, const std::vector<Tensor>& p) const {
    Tensor h = leaky_relu(conv2d(x, p[0], p[1], Conv2dParams::make(2, 1)), 0.2);
    return mean(conv2d(h, p[2], Tensor(), Conv2dParams::make(1, 0)), {1, 2, 3});
  }
  std::vector<Tensor> params() const { return {w1, b1, w2}; }
};

// Per-sample input gradient of critic(x)[i] by central differences.
std::vector<double> fd_squared_norms(const std::function<Tensor(const Tensor&)>& critic,
                                     Tensor x) {
  NoGradGuard no_grad;
  const int64_t n = x.size(0), per = x.numel() / n;
  std::vector<double> sq(n, 0.0);
  double* p = x.data<double>();
  const double h = 1e-6;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < per; ++j) {
      double& e = p[i * per + j];
      const double saved = e;
      e = saved + h;
      const double plus = critic(x).to_vector<double>()[i];
      e = saved - h;
      const double minus = critic(x).to_vector<double>()[i];
      e = saved;
      const double d = (plus - minus) / (2 * h);
      sq[i] += d * d;
    }
  }
  return sq;
}

TEST(GradientPenalty, LinearCriticHandDerived) {
  // D(x) = <w, x> per sample: grad_x D = w for every sample, so the penalty is (||w|| - 1)^2
  // whatever eps is, and its gradient is 2 (||w|| - 1) w / ||w||.
  Tensor w = random_tensor({2, 2, 1}, 161);
  auto critic = [&](const Tensor& x) { return sum(mul(x, w), {1, 2, 3}); };
  Generator rng(3);
  Tensor gp = gradient_penalty(critic, random_tensor({3, 2, 2, 1}, 162, false),
                               random_tensor({3, 2, 2, 1}, 163, false), rng);
  const auto wv = w.to_vector<double>();
  double norm = 0.0;
  for (double v : wv) norm += v * v;
  norm = std::sqrt(norm);
  EXPECT_NEAR(gp.item(), (norm - 1) * (norm - 1), 1e-10);
  gp.backward();
  const auto gw = w.grad().to_vector<double>();
  for (size_t i = 0; i < wv.size(); ++i) {
    EXPECT_NEAR(gw[i], 2 * (norm - 1) * wv[i] / norm, 1e-10) << i;
  }
}

TEST(GradientPenalty, MatchesFiniteDifferencesOfTheCritic) {
  SmallCritic c;
  Tensor real = random_tensor({3, 4, 4, 2}, 171, false);
  Tensor fake = random_tensor({3, 4, 4, 2}, 172, false);
  auto critic = [&](const Tensor& x) { return c(x, c.params()); };
  Generator rng(11);
  Tensor gp = gradient_penalty(critic, real, fake, rng, 1.0);
  // The interpolate from the same Philox stream: one uniform fill of [N, 1, 1, 1].
  Generator ref(11);
  Tensor eps = Tensor::empty({3, 1, 1, 1}, DType::F64);
  uniform_(eps, 0.0, 1.0, ref);
  Tensor x_hat = add(fake, mul(eps, sub(real, fake)));
  const std::vector<double> sq = fd_squared_norms(critic, x_hat);
  double expected = 0.0;
  for (double s : sq) expected += (std::sqrt(s) - 1.0) * (std::sqrt(s) - 1.0);
  expected /= 3.0;
  EXPECT_NEAR(gp.item(), expected, 1e-7);
  EXPECT_EQ(rng.offset(), ref.offset());  // exactly one fill drawn

  // A different target norm moves the value as the formula says.
  Generator rng2(11);
  double expected2 = 0.0;
  for (double s : sq) expected2 += (std::sqrt(s) - 0.5) * (std::sqrt(s) - 0.5);
  EXPECT_NEAR(gradient_penalty(critic, real, fake, rng2, 0.5).item(), expected2 / 3.0, 1e-7);
}

TEST(GradientPenalty, CriticWeightGradientsMatchFiniteDifferences) {
  SmallCritic c;
  Tensor real = random_tensor({2, 4, 4, 2}, 181, false);
  Tensor fake = random_tensor({2, 4, 4, 2}, 182, false);
  // The first bias only shifts where leaky_relu's kink lies: the input gradient, and so the
  // penalty, does not depend on it (away from the kink), and it gets no gradient.
  expect_gradients_match(
      [&](const std::vector<Tensor>& p) {
        Generator rng(5);  // the same eps on every evaluation
        return gradient_penalty([&](const Tensor& x) { return c(x, {p[0], c.b1, p[1]}); }, real,
                                fake, rng);
      },
      {c.w1, c.w2}, 1e-6, 1e-5, 1e-8);
  EXPECT_FALSE(c.b1.grad().defined());
}

TEST(GradientPenalty, PatchCriticWithLayerNorm) {
  // A PatchGAN-like critic: per-patch scores [N, 2, 2, 1], summed per sample by the penalty.
  Tensor w1 = random_tensor({3, 3, 3, 1}, 191);
  Tensor w2 = random_tensor({1, 1, 1, 3}, 192);
  Tensor gamma = random_tensor({3}, 193);
  Tensor real = random_tensor({2, 4, 4, 1}, 194, false);
  Tensor fake = random_tensor({2, 4, 4, 1}, 195, false);
  auto critic = [&](const std::vector<Tensor>& p) {
    return [p](const Tensor& x) {
      Tensor h = conv2d(x, p[0], Tensor(), Conv2dParams::make(2, 1));
      h = leaky_relu(layer_norm(h, p[2], Tensor()), 0.2);
      return conv2d(h, p[1], Tensor(), Conv2dParams::make(1, 0));
    };
  };
  // The value: the per-sample total score's input gradient, by finite differences.
  {
    auto total = [&](const Tensor& x) { return sum(critic({w1, w2, gamma})(x), {1, 2, 3}); };
    Generator ref(2);
    Tensor eps = Tensor::empty({2, 1, 1, 1}, DType::F64);
    uniform_(eps, 0.0, 1.0, ref);
    Tensor x_hat = add(fake, mul(eps, sub(real, fake)));
    double expected = 0.0;
    for (double s : fd_squared_norms(total, x_hat)) expected += std::pow(std::sqrt(s) - 1, 2);
    Generator rng(2);
    EXPECT_NEAR(gradient_penalty(critic({w1, w2, gamma}), real, fake, rng).item(),
                expected / 2.0, 1e-7);
  }
  expect_gradients_match(
      [&](const std::vector<Tensor>& p) {
        Generator rng(2);
        return gradient_penalty(critic(p), real, fake, rng);
      },
      {w1, w2, gamma}, 1e-6, 1e-5, 1e-8);
}

TEST(GradientPenalty, R1MatchesFiniteDifferences) {
  SmallCritic c;
  Tensor real = random_tensor({2, 4, 4, 2}, 201, false);
  auto critic = [&](const Tensor& x) { return c(x, c.params()); };
  double expected = 0.0;
  for (double s : fd_squared_norms(critic, real)) expected += s;
  EXPECT_NEAR(r1_penalty(critic, real).item(), expected / 2.0, 1e-7);
  expect_gradients_match(
      [&](const std::vector<Tensor>& p) {
        return r1_penalty([&](const Tensor& x) { return c(x, {p[0], c.b1, p[1]}); }, real);
      },
      {c.w1, c.w2}, 1e-6, 1e-5, 1e-8);
}

TEST(GradientPenalty, CriticStepFreesEverything) {
  const int64_t before = Node::live_count();
  {
    SmallCritic c;
    Tensor real = random_tensor({2, 4, 4, 2}, 211, false);
    Tensor fake = random_tensor({2, 4, 4, 2}, 212, false);
    auto critic = [&](const Tensor& x) { return c(x, c.params()); };
    Generator rng(1);
    // The WGAN-GP critic loss: mean D(fake) - mean D(real) + 10 * GP.
    Tensor loss = add(sub(mean(critic(fake)), mean(critic(real))),
                      mul(gradient_penalty(critic, real, fake, rng), 10.0));
    loss.backward();
    for (const Tensor& p : c.params()) EXPECT_TRUE(p.grad().defined());
  }
  EXPECT_EQ(Node::live_count(), before);
}

TEST(GradientPenalty, ZeroInputGradientGivesFiniteGradients) {
  // Every unit of this critic is dead (relu of a large negative value): its input gradient is
  // exactly zero. The norm's sqrt must not turn that into NaN weight gradients.
  Tensor w = random_tensor({1, 3, 3, 1}, 221);
  auto critic = [&](const Tensor& x) {
    return mean(relu(add(conv2d(x, w, Tensor(), Conv2dParams::make(1, 1)), -1e6)), {1, 2, 3});
  };
  Generator rng(4);
  Tensor gp = gradient_penalty(critic, random_tensor({2, 3, 3, 1}, 222, false),
                               random_tensor({2, 3, 3, 1}, 223, false), rng);
  EXPECT_NEAR(gp.item(), 1.0, 1e-5);
  gp.backward();
  for (double g : w.grad().to_vector<double>()) EXPECT_TRUE(std::isfinite(g)) << g;
}

TEST(GradientPenalty, ModuleCriticInFloat32) {
  // A critic as the models build it (f32 modules: conv, layer norm, leaky_relu, linear head):
  // the penalty reaches every parameter with a finite gradient and frees its graph.
  const int64_t before = Node::live_count();
  {
    Generator init(9);
    nn::Sequential critic_net(
        {std::make_shared<nn::Conv2d>(1, 4, nn::ConvOptions{.kernel = 4, .stride = 2, .padding = 1},
                                      init),
         std::make_shared<nn::LayerNorm>(4), std::make_shared<nn::LeakyReLU>(0.2)});
    nn::Linear head(4 * 4 * 4, 1, true, init);
    std::vector<std::string> names;
    for (auto& [name, t] : critic_net.named_parameters()) names.push_back(name);
    EXPECT_EQ(names, (std::vector<std::string>{"0.weight", "0.bias", "1.weight", "1.bias"}));
    auto critic = [&](const Tensor& x) {
      return head(critic_net(x).reshape({x.size(0), -1})).reshape({-1});
    };
    Tensor real = random_tensor({3, 8, 8, 1}, 241, false, DType::F32);
    Tensor fake = random_tensor({3, 8, 8, 1}, 242, false, DType::F32);
    Generator rng(6);
    Tensor loss = add(sub(mean(critic(fake)), mean(critic(real))),
                      mul(gradient_penalty(critic, real, fake, rng), 10.0));
    EXPECT_EQ(loss.dtype(), DType::F32);
    loss.backward();
    std::vector<Tensor> params = critic_net.parameters();
    for (const Tensor& p : head.parameters()) params.push_back(p);
    for (const Tensor& p : params) {
      ASSERT_TRUE(p.grad().defined());
      for (float g : p.grad().to_vector<float>()) EXPECT_TRUE(std::isfinite(g));
    }
  }
  EXPECT_EQ(Node::live_count(), before);
}

TEST(GradientPenalty, GpuMatchesCpu) {
  if (cuda_device_count() == 0) {
    GTEST_SKIP() << "no CUDA device: the recorded backward on the GPU is not exercised";
  }
  // The same f32 critic and interpolates (Philox gives the same eps on both devices): the
  // penalty and the critic's weight gradients on the GPU against the CPU. The first conv's
  // backward-data needs an output padding in W.
  auto run = [](Device dev, std::vector<std::vector<float>>* grads) {
    std::vector<Tensor> p;
    const std::vector<Shape> shapes{{4, 3, 3, 2}, {4}, {4}, {1, 2, 2, 4}};
    for (size_t i = 0; i < shapes.size(); ++i) {
      p.push_back(random_tensor(shapes[i], 251 + i, false, DType::F32).to(dev));
      p.back().set_requires_grad(true);
    }
    auto critic = [&](const Tensor& x) {
      Tensor h = conv2d(x, p[0], p[1], Conv2dParams::make(2, 1));
      h = leaky_relu(layer_norm(h, p[2], Tensor()), 0.2);
      return conv2d(h, p[3], Tensor(), Conv2dParams::make(1, 0));  // [N, 3, 2, 1] patches
    };
    Tensor real = random_tensor({2, 7, 6, 2}, 261, false, DType::F32).to(dev);
    Tensor fake = random_tensor({2, 7, 6, 2}, 262, false, DType::F32).to(dev);
    Generator rng(8);
    Tensor gp = gradient_penalty(critic, real, fake, rng);
    gp.backward();
    for (const Tensor& t : p) grads->push_back(t.grad().to(Device::cpu()).to_vector<float>());
    return gp.item();
  };
  std::vector<std::vector<float>> cpu_grads, gpu_grads;
  const double cpu = run(Device::cpu(), &cpu_grads);
  const double gpu = run(Device::cuda(0), &gpu_grads);
  EXPECT_NEAR(gpu, cpu, 1e-4 * (1.0 + std::abs(cpu)));
  for (size_t k = 0; k < cpu_grads.size(); ++k) {
    for (size_t i = 0; i < cpu_grads[k].size(); ++i) {
      EXPECT_NEAR(gpu_grads[k][i], cpu_grads[k][i], 1e-3 * (1.0 + std::abs(cpu_grads[k][i])))
          << "parameter " << k << " element " << i;
    }
  }
}

TEST(GradientPenalty, ClearErrors) {
  Tensor w = random_tensor({3}, 231);
  Tensor real = random_tensor({2, 2, 2, 1}, 232, false);
  Tensor fake = random_tensor({2, 2, 2, 1}, 233, false);
  Generator rng(1);
  // A score that ignores the input: its input gradient is undefined.
  auto constant = [&](const Tensor& x) { return mul(Tensor::ones({x.size(0)}, DType::F64), sum(w)); };
  try {
    gradient_penalty(constant, real, fake, rng);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not depend on its input"), std::string::npos)
        << e.what();
  }
  // One score for the whole batch instead of one per sample.
  auto pooled = [&](const Tensor& x) { return sum(x); };
  EXPECT_THROW(gradient_penalty(pooled, real, fake, rng), Error);
  EXPECT_THROW(r1_penalty(pooled, real), Error);
  EXPECT_THROW(gradient_penalty(pooled, real, random_tensor({2, 2, 2, 2}, 234, false), rng),
               Error);
}

}  // namespace
}  // namespace rg
