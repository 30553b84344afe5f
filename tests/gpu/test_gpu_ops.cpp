// The op layer on a GPU against the CPU backend: every differentiable op's output and input
// gradients, Tensor copies and fills, the optimizers, and a whole small U-Net + PatchGAN step.
// The CPU runs in float64 as the reference; the GPU runs in f32 (exact and TF32 math) and bf16,
// held to the tolerances of tests/gpu/gpu_test_util.h relative to the reference's scale.
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "engine/math_mode.h"
#include "engine/roentgen.h"
#include "models/patchgan.h"
#include "models/unet.h"
#include "tests/gpu/gpu_test_util.h"

namespace rg {
namespace {

using gpu_test::all_close;
using models::PatchDiscriminator;
using models::PatchGanConfig;
using models::UnetConfig;
using models::UnetGenerator;

// A scalar function of some inputs, built from ops.
using ScalarFn = std::function<Tensor(const std::vector<Tensor>&)>;

// Sets the float32 math mode for a scope (tests must not leak TF32 into each other).
class MathModeScope {
 public:
  explicit MathModeScope(Float32Math m) : previous_(float32_math()) { set_float32_math(m); }
  ~MathModeScope() { set_float32_math(previous_); }

 private:
  Float32Math previous_;
};

struct Precision {
  std::string name;
  DType dtype;       // the GPU inputs' dtype
  Float32Math math;  // how f32 convolutions multiply
  double tol;
};

std::vector<Precision> precisions() {
  return {{"fp32", DType::F32, Float32Math::Exact, gpu_test::kTolFp32},
          {"tf32", DType::F32, Float32Math::Tf32, gpu_test::kTolTf32},
          {"bf16", DType::BF16, Float32Math::Exact, gpu_test::kTolBf16}};
}

// Random normal values stored in `dtype` (so the CPU reference sees exactly the rounded values
// the GPU gets), returned as f64 on the CPU.
Tensor random_input(const Shape& shape, uint64_t seed, DType dtype, double scale = 1.0) {
  Generator gen(seed);
  Tensor t = Tensor::empty(shape, DType::F32);
  normal_(t, 0.0, scale, gen);
  return t.to(dtype).to(DType::F64);
}

struct Evaluated {
  std::vector<float> value;
  std::vector<std::vector<float>> grads;
};

// Runs fn on `inputs` (f64 CPU tensors) moved to `device` in `dtype`; returns the value and the
// gradient of every input, as floats.
Evaluated evaluate(const ScalarFn& fn, const std::vector<Tensor>& inputs, Device device,
                   DType dtype) {
  std::vector<Tensor> xs;
  for (const Tensor& t : inputs) {
    Tensor x = t.to(dtype).to(device);
    x.set_requires_grad(true);
    xs.push_back(x);
  }
  Tensor out = fn(xs);
  Evaluated e;
  e.value = out.to(Device::cpu()).to_vector<float>();
  out.backward();
  for (const Tensor& x : xs) {
    e.grads.push_back(x.grad().defined() ? x.grad().to(Device::cpu()).to_vector<float>()
                                         : std::vector<float>());
  }
  return e;
}

std::vector<double> to_doubles(const std::vector<float>& v) {
  return std::vector<double>(v.begin(), v.end());
}

// fn on the GPU in each precision against fn on the CPU: in float64 for fp32 and tf32; for
// bf16, the CPU with bf16 tensors, so both round to bf16 after the same ops and only the order
// of fp32 accumulation differs (a float64 reference would charge the GPU for every rounding
// of a chain of ops).
void expect_matches_cpu(const std::string& what, const ScalarFn& fn,
                        const std::vector<Shape>& shapes, uint64_t seed) {
  for (const Precision& p : precisions()) {
    SCOPED_TRACE(what + " in " + p.name);
    std::vector<Tensor> inputs;
    for (size_t i = 0; i < shapes.size(); ++i) {
      inputs.push_back(random_input(shapes[i], seed + 101 * i, p.dtype));
    }
    const DType ref_dtype = p.dtype == DType::BF16 ? DType::BF16 : DType::F64;
    const Evaluated want = evaluate(fn, inputs, Device::cpu(), ref_dtype);
    MathModeScope math(p.math);
    const Evaluated got = evaluate(fn, inputs, Device::cuda(0), p.dtype);
    EXPECT_TRUE(all_close(got.value, to_doubles(want.value), p.tol, "value"));
    for (size_t i = 0; i < inputs.size(); ++i) {
      EXPECT_TRUE(all_close(got.grads[i], to_doubles(want.grads[i]), p.tol,
                            "gradient of input " + std::to_string(i)));
    }
  }
}

// Weights the output with a fixed random tensor before summing, so every output element gets a
// different upstream gradient (a plain sum would hide transposed or shifted gradients). The
// weights are bf16-representable, so every dtype sees the same values.
Tensor weighted_sum(const Tensor& y, uint64_t seed) {
  Generator gen(seed);
  Tensor w = Tensor::empty(y.shape(), DType::F32);
  normal_(w, 0.0, 1.0, gen);
  return sum(mul(y, w.to(DType::BF16).to(y.dtype()).to(y.device())));
}

TEST(GpuOps, Elementwise) {
  RG_SKIP_WITHOUT_GPU();
  expect_matches_cpu("add/mul/div with broadcast", [](const std::vector<Tensor>& x) {
    return weighted_sum(div(mul(add(x[0], x[1]), x[0]), add(square(x[1]), 2.0)), 1);
  }, {{2, 5, 7, 3}, {3}}, 10);
  expect_matches_cpu("sub/neg/exp/sqrt", [](const std::vector<Tensor>& x) {
    return weighted_sum(sub(exp(mul(x[0], 0.5)), sqrt(add(square(x[1]), 1.0))), 2);
  }, {{3, 9, 11, 1}, {3, 9, 11, 1}}, 20);
}

TEST(GpuOps, Activations) {
  RG_SKIP_WITHOUT_GPU();
  expect_matches_cpu("relu/leaky_relu/sigmoid/tanh", [](const std::vector<Tensor>& x) {
    return weighted_sum(add(add(relu(x[0]), leaky_relu(x[0], 0.2)),
                            add(sigmoid(x[0]), tanh(x[0]))), 3);
  }, {{2, 6, 5, 7}}, 30);
}

TEST(GpuOps, Reductions) {
  RG_SKIP_WITHOUT_GPU();
  expect_matches_cpu("sum over dims", [](const std::vector<Tensor>& x) {
    Tensor per_channel = sum(x[0], {0, 1, 2});
    Tensor per_sample = mean(x[0], {1, 2, 3});
    Tensor middle = sum(x[0], {1, 2}, true);
    return add(add(weighted_sum(per_channel, 4), weighted_sum(per_sample, 5)),
               weighted_sum(middle, 6));
  }, {{3, 10, 9, 5}}, 40);
}

TEST(GpuOps, ConcatPermuteSlice) {
  RG_SKIP_WITHOUT_GPU();
  expect_matches_cpu("concat/permute/slice", [](const std::vector<Tensor>& x) {
    Tensor c = concat({x[0], x[1]}, -1);
    Tensor p = c.permute({0, 3, 1, 2}).contiguous();
    return weighted_sum(p.slice(2, 1, 5, 2), 7);
  }, {{2, 6, 4, 3}, {2, 6, 4, 5}}, 50);
}

struct ConvCase {
  std::string name;
  int64_t n, h, w, c_in, c_out, k, stride, pad;
  bool transposed, bias;
};

// What a failing case prints (instead of the bytes of the struct).
std::ostream& operator<<(std::ostream& os, const ConvCase& c) {
  return os << c.name << " (n " << c.n << ", " << c.h << "x" << c.w << "x" << c.c_in << " -> "
            << c.c_out << ", kernel " << c.k << ", stride " << c.stride << ", pad " << c.pad
            << (c.transposed ? ", transposed" : "") << (c.bias ? ", bias" : "") << ")";
}

class GpuConvOp : public ::testing::TestWithParam<ConvCase> {};

TEST_P(GpuConvOp, MatchesCpu) {
  RG_SKIP_WITHOUT_GPU();
  const ConvCase c = GetParam();
  const Conv2dParams p = Conv2dParams::make(c.stride, c.pad);
  const Shape w_shape = c.transposed ? Shape{c.c_in, c.k, c.k, c.c_out}
                                     : Shape{c.c_out, c.k, c.k, c.c_in};
  std::vector<Shape> shapes = {{c.n, c.h, c.w, c.c_in}, w_shape};
  if (c.bias) shapes.push_back({c.c_out});
  expect_matches_cpu(c.name, [c, p](const std::vector<Tensor>& x) {
    const Tensor bias = c.bias ? x[2] : Tensor();
    Tensor y = c.transposed ? conv_transpose2d(x[0], mul(x[1], 0.1), bias, p)
                            : conv2d(x[0], mul(x[1], 0.1), bias, p);
    return weighted_sum(y, 8);
  }, shapes, 60);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, GpuConvOp,
    ::testing::Values(
        ConvCase{"unet_down0_1to64", 2, 32, 32, 1, 64, 4, 2, 1, false, false},
        ConvCase{"unet_down_64to128", 1, 16, 16, 64, 128, 4, 2, 1, false, false},
        ConvCase{"unet_innermost_2x2", 2, 2, 2, 64, 64, 4, 2, 1, false, false},
        ConvCase{"unet_up_innermost_1x1", 2, 1, 1, 64, 64, 4, 2, 1, true, false},
        ConvCase{"unet_up_128to64", 1, 8, 8, 128, 64, 4, 2, 1, true, false},
        ConvCase{"unet_outermost_up_to_1", 2, 16, 16, 16, 1, 4, 2, 1, true, true},
        ConvCase{"patchgan_first_2to64", 2, 32, 32, 2, 64, 4, 2, 1, false, true},
        ConvCase{"patchgan_last_512to1", 1, 7, 7, 64, 1, 4, 1, 1, false, true},
        ConvCase{"odd_3x3_c7", 3, 9, 11, 7, 13, 3, 1, 1, false, true},
        ConvCase{"odd_1x1_c3", 1, 5, 7, 3, 5, 1, 1, 0, false, true}),
    [](const ::testing::TestParamInfo<ConvCase>& info) { return info.param.name; });

TEST(GpuOps, BatchNormTrainAndEval) {
  RG_SKIP_WITHOUT_GPU();
  expect_matches_cpu("batch_norm train", [](const std::vector<Tensor>& x) {
    return weighted_sum(batch_norm(x[0], add(x[1], 1.0), x[2], Tensor(), Tensor(), true), 9);
  }, {{4, 5, 6, 7}, {7}, {7}}, 70);
  expect_matches_cpu("batch_norm eval", [](const std::vector<Tensor>& x) {
    Tensor rm = Tensor::zeros({7}, DType::F32, x[0].device());
    Tensor rv = Tensor::full({7}, 2.0, DType::F32, x[0].device());
    return weighted_sum(batch_norm(x[0], add(x[1], 1.0), x[2], rm, rv, false), 10);
  }, {{4, 5, 6, 7}, {7}, {7}}, 80);
}

TEST(GpuOps, BatchNormRunningStatistics) {
  RG_SKIP_WITHOUT_GPU();
  const Tensor x = random_input({8, 4, 4, 5}, 90, DType::F32).to(DType::F32);
  Tensor rm_cpu = Tensor::zeros({5}), rv_cpu = Tensor::ones({5});
  Tensor rm_gpu = rm_cpu.to(Device::cuda(0)), rv_gpu = rv_cpu.to(Device::cuda(0));
  for (int i = 0; i < 3; ++i) {
    batch_norm(x, Tensor(), Tensor(), rm_cpu, rv_cpu, true, 0.1);
    batch_norm(x.to(Device::cuda(0)), Tensor(), Tensor(), rm_gpu, rv_gpu, true, 0.1);
  }
  EXPECT_TRUE(all_close(rm_gpu.to(Device::cpu()).to_vector<float>(),
                        rm_cpu.to_vector<float>(), gpu_test::kTolFp32, "running mean"));
  EXPECT_TRUE(all_close(rv_gpu.to(Device::cpu()).to_vector<float>(),
                        rv_cpu.to_vector<float>(), gpu_test::kTolFp32, "running var"));
}

TEST(GpuOps, InstanceNorm) {
  RG_SKIP_WITHOUT_GPU();
  expect_matches_cpu("instance_norm", [](const std::vector<Tensor>& x) {
    return weighted_sum(instance_norm(x[0], add(x[1], 1.0), x[2]), 11);
  }, {{3, 5, 7, 6}, {6}, {6}}, 100);
}

TEST(GpuOps, Losses) {
  RG_SKIP_WITHOUT_GPU();
  expect_matches_cpu("bce_with_logits", [](const std::vector<Tensor>& x) {
    return bce_with_logits(mul(x[0], 3.0), sigmoid(x[1]));
  }, {{4, 9, 9, 1}, {4, 9, 9, 1}}, 110);
  expect_matches_cpu("l1 + mse", [](const std::vector<Tensor>& x) {
    return add(l1_loss(x[0], x[1]), mse_loss(x[0], x[1]));
  }, {{2, 7, 5, 3}, {2, 7, 5, 3}}, 120);
  expect_matches_cpu("soft dice", [](const std::vector<Tensor>& x) {
    return soft_dice_loss(sigmoid(x[0]), sigmoid(x[1]));
  }, {{3, 8, 8, 1}, {3, 8, 8, 1}}, 130);
}

TEST(GpuTensor, CopiesAcrossDevicesAndLayouts) {
  RG_SKIP_WITHOUT_GPU();
  const Tensor host = random_input({2, 3, 4, 5}, 140, DType::F32).to(DType::F32);
  const Tensor dev = host.to(Device::cuda(0));
  // A strided view copied back, a dtype conversion on the device, and a fill.
  EXPECT_EQ(dev.permute({0, 3, 1, 2}).contiguous().to(Device::cpu()).to_vector<float>(),
            host.permute({0, 3, 1, 2}).contiguous().to_vector<float>());
  EXPECT_EQ(dev.slice(1, 1, 3).to(Device::cpu()).to_vector<float>(),
            host.slice(1, 1, 3).contiguous().to_vector<float>());
  EXPECT_EQ(dev.to(DType::BF16).to(Device::cpu()).to(DType::F32).to_vector<float>(),
            host.to(DType::BF16).to(DType::F32).to_vector<float>());
  Tensor filled = Tensor::full({3, 7}, 2.5, DType::F32, Device::cuda(0));
  EXPECT_EQ(filled.to(Device::cpu()).to_vector<float>(), std::vector<float>(21, 2.5f));
  // A strided destination on the device.
  Tensor dst = Tensor::zeros({4, 6}, DType::F32, Device::cuda(0));
  Tensor window = dst.slice(1, 2, 5);
  window.copy_(Tensor::ones({4, 3}));
  std::vector<float> want(24, 0.f);
  for (int r = 0; r < 4; ++r)
    for (int c = 2; c < 5; ++c) want[r * 6 + c] = 1.f;
  EXPECT_EQ(dst.to(Device::cpu()).to_vector<float>(), want);
}

TEST(GpuTensor, PhiloxFillsMatchCpu) {
  RG_SKIP_WITHOUT_GPU();
  Generator cpu_gen(7), gpu_gen(7);
  Tensor a = Tensor::empty({1001});
  Tensor b = Tensor::empty({1001}, DType::F32, Device::cuda(0));
  uniform_(a, -1.0, 2.0, cpu_gen);
  uniform_(b, -1.0, 2.0, gpu_gen);
  EXPECT_EQ(b.to(Device::cpu()).to_vector<float>(), a.to_vector<float>());
  bernoulli_(a, 0.3, cpu_gen);
  bernoulli_(b, 0.3, gpu_gen);
  EXPECT_EQ(b.to(Device::cpu()).to_vector<float>(), a.to_vector<float>());
  normal_(a, 0.5, 2.0, cpu_gen);
  normal_(b, 0.5, 2.0, gpu_gen);
  EXPECT_TRUE(all_close(b.to(Device::cpu()).to_vector<float>(), a.to_vector<float>(), 1e-6,
                        "normal_"));
  EXPECT_EQ(cpu_gen.offset(), gpu_gen.offset());
}

TEST(GpuOptim, AdamMatchesCpu) {
  RG_SKIP_WITHOUT_GPU();
  Tensor p_cpu = random_input({4099}, 150, DType::F32).to(DType::F32);
  Tensor p_gpu = p_cpu.to(Device::cuda(0));
  p_cpu.set_requires_grad(true);
  p_gpu.set_requires_grad(true);
  optim::AdamOptions o;
  o.lr = 1e-2;
  o.beta1 = 0.5;
  optim::Adam cpu_opt({p_cpu}, o), gpu_opt({p_gpu}, o);
  for (int step = 0; step < 3; ++step) {
    const Tensor g = random_input({4099}, 160 + step, DType::F32).to(DType::F32);
    p_cpu.set_grad(g);
    p_gpu.set_grad(g.to(Device::cuda(0)));
    cpu_opt.step();
    gpu_opt.step();
  }
  EXPECT_TRUE(all_close(p_gpu.to(Device::cpu()).to_vector<float>(), p_cpu.to_vector<float>(),
                        gpu_test::kTolFp32, "Adam parameters after 3 steps"));
}

// One GAN step of a small U-Net + PatchGAN (the seg256 step's structure at a size the CPU
// reference computes quickly): every parameter gradient of G and D matches the CPU backend.
TEST(GpuModel, SmallUnetPatchGanGradientsMatchCpu) {
  RG_SKIP_WITHOUT_GPU();
  UnetConfig gc;
  gc.num_downs = 5;
  gc.ngf = 8;
  PatchGanConfig dc;
  dc.ndf = 8;
  dc.n_layers = 2;
  const Tensor image = random_input({2, 32, 32, 1}, 170, DType::F32).to(DType::F32);
  const Tensor mask = sigmoid(mul(random_input({2, 32, 32, 1}, 171, DType::F32), 50.0))
                          .to(DType::F32);  // nearly binary
  struct Result {
    std::vector<std::vector<float>> g_grads, d_grads;
    float loss = 0;
  };
  auto run = [&](Device device) {
    Generator g_init(1), d_init(2);
    UnetGenerator g(gc, g_init);
    PatchDiscriminator d(dc, d_init);
    g.to(device);
    d.to(device);
    const Tensor x = image.to(device), m = mask.to(device);
    Tensor logits = g.forward(x);
    Tensor p = sigmoid(logits);
    Tensor fake = d.forward(concat({x, p}, -1));
    Tensor loss = add(bce_with_logits(fake, Tensor::ones(fake.shape(), DType::F32, device)),
                      mul(add(bce_with_logits(logits, m), soft_dice_loss(p, m)), 100.0));
    loss.backward();
    Result r;
    r.loss = loss.to(Device::cpu()).to_vector<float>()[0];
    for (const Tensor& t : g.parameters()) r.g_grads.push_back(t.grad().to(Device::cpu()).to_vector<float>());
    for (const Tensor& t : d.parameters()) r.d_grads.push_back(t.grad().to(Device::cpu()).to_vector<float>());
    return r;
  };
  const Result want = run(Device::cpu());
  const Result got = run(Device::cuda(0));
  // Batch norm over few values divides by small standard deviations, which amplifies the
  // rounding differences of two correct fp32 implementations through the network's depth:
  // 1e-4 of each gradient's scale, not 1e-5.
  constexpr double kTol = 1e-4;
  EXPECT_NEAR(got.loss, want.loss, kTol * std::max(1.0f, std::abs(want.loss)));
  for (size_t i = 0; i < want.g_grads.size(); ++i) {
    EXPECT_TRUE(all_close(got.g_grads[i], want.g_grads[i], kTol, "G parameter " + std::to_string(i)));
  }
  for (size_t i = 0; i < want.d_grads.size(); ++i) {
    EXPECT_TRUE(all_close(got.d_grads[i], want.d_grads[i], kTol, "D parameter " + std::to_string(i)));
  }
}

}  // namespace
}  // namespace rg
