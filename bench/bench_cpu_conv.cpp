// CPU convolution kernels on pix2pix U-Net shapes (batch 1, 4x4 stride 2 pad 1, float).
// Counter GFLOP/s = 2 * macs / wall time (the kernels are multithreaded, so real time is used).
// A plain square SGEMM is timed alongside as the attainable BLAS rate on this machine.
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <cstdint>
#include <random>
#include <vector>

#include "kernels/conv.h"

namespace {

using rg::kernels::Conv2dShape;
namespace cpu = rg::kernels::cpu;

struct NamedShape {
  const char* name;
  Conv2dShape s;
};

Conv2dShape down(int64_t hw, int64_t c_in, int64_t c_out) {
  Conv2dShape s;
  s.n = 1; s.h = hw; s.w = hw; s.c_in = c_in; s.c_out = c_out;
  s.kh = 4; s.kw = 4; s.stride_h = 2; s.stride_w = 2; s.pad_h = 1; s.pad_w = 1;
  return s;
}

// Encoder convolutions of the 256x256 pix2pix U-Net. The decoder's transposed convolutions are
// conv2d_backward_data of these shapes (with the decoder's doubled input channels as c_out).
const NamedShape kShapes[] = {
    {"1->64@256", down(256, 1, 64)},
    {"64->128@128", down(128, 64, 128)},
    {"128->256@64", down(64, 128, 256)},
    {"256->512@32", down(32, 256, 512)},
    {"512->512@8", down(8, 512, 512)},
    {"512->512@2", down(2, 512, 512)},
};

std::vector<float> random_vec(int64_t count, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  std::vector<float> v(static_cast<std::size_t>(count));
  for (auto& e : v) e = dist(rng);
  return v;
}

struct Buffers {
  std::vector<float> x, w, b, y, dy, dx, dw, db;
  explicit Buffers(const Conv2dShape& s) {
    const int64_t xc = s.n * s.h * s.w * s.c_in, wc = s.c_out * s.kh * s.kw * s.c_in;
    const int64_t yc = s.n * s.out_h() * s.out_w() * s.c_out;
    x = random_vec(xc, 1); w = random_vec(wc, 2); b = random_vec(s.c_out, 3);
    dy = random_vec(yc, 4);
    y.resize(yc); dx.resize(xc); dw.resize(wc); db.resize(s.c_out);
  }
};

void set_counters(benchmark::State& state, const NamedShape& ns) {
  state.SetLabel(ns.name);
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * static_cast<double>(ns.s.macs()) * 1e-9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

void BM_conv_forward(benchmark::State& state) {
  const NamedShape& ns = kShapes[state.range(0)];
  Buffers buf(ns.s);
  for (auto _ : state) {
    cpu::conv2d_forward<float>(ns.s, buf.x.data(), buf.w.data(), buf.b.data(), buf.y.data());
    benchmark::DoNotOptimize(buf.y.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, ns);
}

void BM_conv_backward_data(benchmark::State& state) {
  const NamedShape& ns = kShapes[state.range(0)];
  Buffers buf(ns.s);
  for (auto _ : state) {
    cpu::conv2d_backward_data<float>(ns.s, buf.dy.data(), buf.w.data(), buf.dx.data());
    benchmark::DoNotOptimize(buf.dx.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, ns);
}

void BM_conv_backward_weight(benchmark::State& state) {
  const NamedShape& ns = kShapes[state.range(0)];
  Buffers buf(ns.s);
  for (auto _ : state) {
    cpu::conv2d_backward_weight<float>(ns.s, buf.x.data(), buf.dy.data(), buf.dw.data(),
                                       buf.db.data());
    benchmark::DoNotOptimize(buf.dw.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, ns);
}

// Square SGEMM: the rate the GEMM inside the convolutions can reach at best.
void BM_sgemm_reference(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  auto a = random_vec(int64_t{n} * n, 5), b = random_vec(int64_t{n} * n, 6);
  std::vector<float> c(static_cast<std::size_t>(n) * n);
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.f, a.data(), n, b.data(), n,
                0.f, c.data(), n);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * n * double(n) * n * 1e-9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

void shape_args(benchmark::internal::Benchmark* b) {
  for (int i = 0; i < static_cast<int>(sizeof(kShapes) / sizeof(kShapes[0])); ++i) b->Arg(i);
  b->UseRealTime()->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_conv_forward)->Apply(shape_args);
BENCHMARK(BM_conv_backward_data)->Apply(shape_args);
BENCHMARK(BM_conv_backward_weight)->Apply(shape_args);
BENCHMARK(BM_sgemm_reference)->Arg(2048)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
