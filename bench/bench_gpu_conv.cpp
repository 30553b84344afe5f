// GPU convolutions on every distinct conv shape of the seg256 step (docs: /work/shared
// BENCHMARK.md; batch 16): each direction (forward, backward-data, backward-weight), each backend
// (own = kernels/cuda/conv.h, cudnn = the library path of engine/cuda/cudnn_conv.h) and each
// precision (fp32 exact, tf32, bf16). Device time from CUDA events around each call (manual
// time); counter TFLOP/s = 2 * macs / time. The label names the layer and, for cudnn, the
// algorithm cuDNN chose. Filter with e.g. --benchmark_filter='fwd/.*/bf16/'.
//
// Each benchmark runs its case once before timing (cuDNN's algorithm search, lazy module
// loading). Without a CUDA device every benchmark reports "no CUDA device".
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

#include "engine/conv_backend.h"
#include "engine/cuda/cudnn_conv.h"
#include "kernels/conv.h"
#include "kernels/cuda/conv.h"
#include "kernels/cuda/tensor_ops.h"

namespace {

using rg::kernels::Conv2dShape;
using rg::kernels::cuda::bf16;
using rg::kernels::cuda::ConvMath;
namespace kc = rg::kernels::cuda;

constexpr int kDevice = 0;
constexpr int64_t kBatch = 16;

struct NamedShape {
  const char* name;
  Conv2dShape s;
};

Conv2dShape k4(int64_t hw, int64_t c_in, int64_t c_out, int64_t stride) {
  Conv2dShape s;
  s.n = kBatch;
  s.h = hw;
  s.w = hw;
  s.c_in = c_in;
  s.c_out = c_out;
  s.kh = 4;
  s.kw = 4;
  s.stride_h = stride;
  s.stride_w = stride;
  s.pad_h = 1;
  s.pad_w = 1;
  return s;
}

// The distinct convolutions of seg256 (G = unet_256 ngf 64 on 1x256x256, D = PatchGAN n_layers 3
// ndf 64 on 2x256x256). A transposed conv (G.up) runs as its adjoint convolution: the shape
// below has the up conv's output as input (c_in = its output channels, c_out = its input
// channels); its forward is this shape's backward-data, its backward-data this shape's forward,
// its weight gradient this shape's backward-weight. Shapes shared by several layers are listed
// once. Sum of forward MACs per image: G 5.95 G, D 3.13 G, as BENCHMARK.md says.
const NamedShape kShapes[] = {
    // G down path: Conv 4x4 s2 p1, input channels -> output channels @ input size.
    {"G.down0:1->64@256", k4(256, 1, 64, 2)},
    {"G.down1=D.c1:64->128@128", k4(128, 64, 128, 2)},
    {"G.down2=D.c2:128->256@64", k4(64, 128, 256, 2)},
    {"G.down3:256->512@32", k4(32, 256, 512, 2)},
    {"G.down4:512->512@16", k4(16, 512, 512, 2)},
    {"G.down5:512->512@8", k4(8, 512, 512, 2)},
    {"G.down6:512->512@4", k4(4, 512, 512, 2)},
    // Innermost level: its down conv (2x2 -> 1x1) and its up conv (512 -> 512, 1x1 -> 2x2) are
    // one convolution and its adjoint.
    {"G.down7=G.up7:512->512@2", k4(2, 512, 512, 2)},
    // G up path: ConvTranspose 4x4 s2 p1, up conv input channels -> output channels @ output
    // size (input = concat of skip and the level below).
    {"G.up6:1024->512@4", k4(4, 512, 1024, 2)},
    {"G.up5:1024->512@8", k4(8, 512, 1024, 2)},
    {"G.up4:1024->512@16", k4(16, 512, 1024, 2)},
    {"G.up3:1024->256@32", k4(32, 256, 1024, 2)},
    {"G.up2:512->128@64", k4(64, 128, 512, 2)},
    {"G.up1:256->64@128", k4(128, 64, 256, 2)},
    {"G.up0:128->1@256", k4(256, 1, 128, 2)},  // outermost: mask logits
    // D: first conv on (image, mask), then the stride-1 pair at 32x32 -> 31x31 -> 30x30 logits.
    {"D.c0:2->64@256", k4(256, 2, 64, 2)},
    {"D.c3:256->512@32s1", k4(32, 256, 512, 1)},
    {"D.c4:512->1@31s1", k4(31, 512, 1, 1)},
};

enum class Direction { Forward, BackwardData, BackwardWeight };
enum class Backend { Own, Cudnn };
enum class Precision { Fp32, Tf32, Bf16 };

const char* direction_name(Direction d) {
  return d == Direction::Forward ? "fwd" : d == Direction::BackwardData ? "bwd_data" : "bwd_weight";
}
const char* backend_name(Backend b) {
  return b == Backend::Own ? "own" : "cudnn";
}
const char* precision_name(Precision p) {
  return p == Precision::Fp32 ? "fp32" : p == Precision::Tf32 ? "tf32" : "bf16";
}
rg::ConvDirection tune_direction(Direction d) {
  return d == Direction::Forward        ? rg::ConvDirection::Forward
         : d == Direction::BackwardData ? rg::ConvDirection::BackwardData
                                        : rg::ConvDirection::BackwardWeight;
}

bool have_gpu() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return count > 0;
}

// Device buffers of one case, filled with uniform [-1, 1) values (bias and outputs too: every
// output is overwritten).
template <typename T>
struct Buffers {
  T *x = nullptr, *w = nullptr, *y = nullptr, *dy = nullptr, *dx = nullptr;
  float *bias = nullptr, *dw = nullptr, *dbias = nullptr;
  bool ok = true;

  Buffers(const Conv2dShape& s, cudaStream_t stream) {
    const int64_t xs = s.n * s.h * s.w * s.c_in, ws = s.c_out * s.kh * s.kw * s.c_in;
    const int64_t ys = s.n * s.out_h() * s.out_w() * s.c_out;
    alloc(&x, xs, 1, stream);
    alloc(&w, ws, 2, stream);
    alloc(&y, ys, 3, stream);
    alloc(&dy, ys, 4, stream);
    alloc(&dx, xs, 5, stream);
    alloc(&bias, s.c_out, 6, stream);
    alloc(&dw, ws, 7, stream);
    alloc(&dbias, s.c_out, 8, stream);
  }
  ~Buffers() {
    for (void* p : {static_cast<void*>(x), static_cast<void*>(w), static_cast<void*>(y),
                    static_cast<void*>(dy), static_cast<void*>(dx), static_cast<void*>(bias),
                    static_cast<void*>(dw), static_cast<void*>(dbias)}) {
      cudaFree(p);
    }
  }
  Buffers(const Buffers&) = delete;
  Buffers& operator=(const Buffers&) = delete;

 private:
  template <typename E>
  void alloc(E** p, int64_t n, uint64_t seed, cudaStream_t stream) {
    if (cudaMalloc(reinterpret_cast<void**>(p), static_cast<size_t>(n) * sizeof(E)) !=
        cudaSuccess) {
      cudaGetLastError();
      *p = nullptr;
      ok = false;
      return;
    }
    kc::uniform_fill<E>(n, -1.f, 1.f, seed, 0, *p, stream);
  }
};

// One call of the case; false when the library path declines it.
template <typename T>
bool run_once(Direction d, Backend b, const Conv2dShape& s, Buffers<T>& buf, ConvMath math,
              cudaStream_t stream) {
  const bool own = b == Backend::Own;
  switch (d) {
    case Direction::Forward:
      if (own) {
        kc::conv2d_forward<T>(s, buf.x, buf.w, nullptr, buf.y, math, stream);
        return true;
      }
      return rg::cuda::library_conv2d_forward<T>(kDevice, s, buf.x, buf.w, nullptr, buf.y, math,
                                                 stream);
    case Direction::BackwardData:
      if (own) {
        kc::conv2d_backward_data<T>(s, buf.dy, buf.w, buf.dx, math, stream);
        return true;
      }
      return rg::cuda::library_conv2d_backward_data<T>(kDevice, s, buf.dy, buf.w, buf.dx, math,
                                                       stream);
    case Direction::BackwardWeight:
      // dbias only where the layer has a bias and computes it here (the convs before a norm
      // have none; G.up0's bias gradient is summed by the op layer): leave it out everywhere, so
      // the number is the convolution alone.
      if (own) {
        kc::conv2d_backward_weight<T>(s, buf.x, buf.dy, buf.dw, nullptr, math, stream);
        return true;
      }
      return rg::cuda::library_conv2d_backward_weight<T>(kDevice, s, buf.x, buf.dy, buf.dw, nullptr,
                                                         math, stream);
  }
  return false;
}

template <typename T>
void run_case(benchmark::State& state, const NamedShape& ns, Direction d, Backend b, Precision p) {
  if (!have_gpu()) {
    state.SkipWithError("no CUDA device");
    return;
  }
  if (cudaSetDevice(kDevice) != cudaSuccess) {
    state.SkipWithError("cudaSetDevice(0) failed");
    return;
  }
  const Conv2dShape& s = ns.s;
  const ConvMath math = p == Precision::Tf32 ? ConvMath::Tf32 : ConvMath::Fp32;
  cudaStream_t stream = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
  cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  {
    Buffers<T> buf(s, stream);
    if (!buf.ok) {
      state.SkipWithError("out of device memory");
    } else if (!run_once<T>(d, b, s, buf, math, stream)) {
      state.SkipWithError("the library path declines this case");
    } else if (cudaStreamSynchronize(stream) != cudaSuccess) {
      state.SkipWithError("CUDA error in the warm-up call");
    } else {
      double total_s = 0.0;
      for (auto _ : state) {
        cudaEventRecord(start, stream);
        run_once<T>(d, b, s, buf, math, stream);
        cudaEventRecord(stop, stream);
        cudaEventSynchronize(stop);
        float ms = 0.f;
        cudaEventElapsedTime(&ms, start, stop);
        state.SetIterationTime(ms * 1e-3);
        total_s += ms * 1e-3;
      }
      const double flops =
          2.0 * static_cast<double>(s.macs()) * static_cast<double>(state.iterations());
      state.counters["TFLOP/s"] = total_s > 0.0 ? flops / total_s * 1e-12 : 0.0;
      std::string label = ns.name;
      if (b == Backend::Cudnn) {
        const rg::ConvTuneKey key = rg::make_conv_tune_key(
            kDevice, tune_direction(d), s, p == Precision::Bf16 ? rg::DType::BF16 : rg::DType::F32,
            p == Precision::Tf32);
        const std::string plan = rg::cuda::cudnn_conv_plan_description(key);
        label += plan.empty() ? " cuBLAS" : " " + plan;
      }
      state.SetLabel(label);
    }
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaStreamDestroy(stream);
}

void register_all() {
  for (const NamedShape& ns : kShapes) {
    for (Direction d : {Direction::Forward, Direction::BackwardData, Direction::BackwardWeight}) {
      for (Backend b : {Backend::Own, Backend::Cudnn}) {
        for (Precision p : {Precision::Fp32, Precision::Tf32, Precision::Bf16}) {
          const std::string name = std::string(direction_name(d)) + "/" + backend_name(b) + "/" +
                                   precision_name(p) + "/" + ns.name;
          benchmark::RegisterBenchmark(name.c_str(),
                                       [&ns, d, b, p](benchmark::State& state) {
                                         if (p == Precision::Bf16) {
                                           run_case<bf16>(state, ns, d, b, p);
                                         } else {
                                           run_case<float>(state, ns, d, b, p);
                                         }
                                       })
              ->UseManualTime()
              ->Unit(benchmark::kMillisecond);
        }
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
