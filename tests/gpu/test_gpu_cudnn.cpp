// The library paths of the CUDA backend against the CPU reference instantiated for double:
// cuDNN convolutions (forward, backward-data, backward-weight with dbias), the cuBLAS path of
// 1x1 convolutions, and the conv dispatch in each backend mode (own, cudnn,
// auto). Precisions fp32 (exact), tf32 and bf16 on seg256 layer shapes (spatial size reduced)
// and awkward ones (1 channel in or out, odd sizes, batch 1, non-square kernels and strides).
// Inputs are rounded to T first and the reference sees the rounded values.
// cuda_runtime.h (not only _api.h): DeviceBuffer's cudaMalloc(T**) needs its template overload.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <iostream>
#include <string>
#include <type_traits>
#include <vector>

#include "engine/conv_backend.h"
#include "engine/cuda/conv_dispatch.h"
#include "engine/cuda/cublas_conv.h"
#include "engine/cuda/cudnn_conv.h"
#include "kernels/conv.h"
#include "tests/gpu/gpu_test_util.h"

namespace {

using rg::gpu_test::all_close;
using rg::gpu_test::convert;
using rg::gpu_test::DeviceBuffer;
using rg::gpu_test::kTolBf16;
using rg::gpu_test::kTolFp32;
using rg::gpu_test::kTolTf32;
using rg::gpu_test::random_floats;
using rg::gpu_test::to_floats;
using rg::kernels::Conv2dShape;
using rg::kernels::cuda::bf16;
using rg::kernels::cuda::ConvMath;
namespace cpu = rg::kernels::cpu;
namespace rc = rg::cuda;

constexpr int kDevice = 0;

// ---------------------------------------------------------------- shapes

Conv2dShape conv(int64_t n, int64_t h, int64_t w, int64_t c_in, int64_t c_out, int64_t kh,
                 int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
  Conv2dShape s;
  s.n = n;
  s.h = h;
  s.w = w;
  s.c_in = c_in;
  s.c_out = c_out;
  s.kh = kh;
  s.kw = kw;
  s.stride_h = sh;
  s.stride_w = sw;
  s.pad_h = ph;
  s.pad_w = pw;
  return s;
}
// pix2pix 4x4 stride 2 pad 1 (U-Net down convs, the adjoints of its up convs, D's first three).
Conv2dShape k4s2(int64_t n, int64_t hw, int64_t c_in, int64_t c_out) {
  return conv(n, hw, hw, c_in, c_out, 4, 4, 2, 2, 1, 1);
}
// 4x4 stride 1 pad 1 (D's last two).
Conv2dShape k4s1(int64_t n, int64_t hw, int64_t c_in, int64_t c_out) {
  return conv(n, hw, hw, c_in, c_out, 4, 4, 1, 1, 1, 1);
}
Conv2dShape k1(int64_t n, int64_t h, int64_t w, int64_t c_in, int64_t c_out) {
  return conv(n, h, w, c_in, c_out, 1, 1, 1, 1, 0, 0);
}

struct NamedShape {
  std::string name;
  Conv2dShape s;
};

// seg256's layers with the channel counts kept and the spatial size reduced (the reference runs
// in double on the CPU). A transposed conv (G.up) runs as the adjoint convolution: input =
// the up conv's output, c_in = its output channels, c_out = its input channels.
std::vector<NamedShape> seg256_shapes() {
  return {{"G.down0 1->64", k4s2(2, 64, 1, 64)},
          {"G.down1 64->128", k4s2(2, 32, 64, 128)},
          {"G.down3 256->512", k4s2(2, 8, 256, 512)},
          {"G.down7 512->512 @2", k4s2(2, 2, 512, 512)},
          {"G.up6 adjoint 512<-1024 @4", k4s2(2, 4, 512, 1024)},
          {"G.up0 adjoint 1<-128", k4s2(2, 64, 1, 128)},
          {"D.c0 2->64", k4s2(2, 32, 2, 64)},
          {"D.c3 256->512 s1", k4s1(1, 6, 256, 512)},
          {"D.c4 512->1 s1", k4s1(2, 7, 512, 1)}};
}

std::vector<NamedShape> awkward_shapes() {
  return {
      {"batch 1, 3->5, 3x3 s1 p1, 7x5", conv(1, 7, 5, 3, 5, 3, 3, 1, 1, 1, 1)},
      {"odd: 7->9, 3x5 kernel, stride 2x1, pad 1x2, 9x11", conv(3, 9, 11, 7, 9, 3, 5, 2, 1, 1, 2)},
      {"1->1, 2x2 s1 p0, 5x5", conv(1, 5, 5, 1, 1, 2, 2, 1, 1, 0, 0)},
      {"kernel = whole input, 4x4 -> 1x1, 6->3", conv(2, 4, 4, 6, 3, 4, 4, 1, 1, 0, 0)},
      {"13->1, 4x4 s2 p1, 10x6", conv(1, 10, 6, 13, 1, 4, 4, 2, 2, 1, 1)}};
}

// 1x1 stride 1 pad 0: the cuBLAS GEMM path.
std::vector<NamedShape> gemm_shapes() {
  return {{"1x1 13->9, 5x7", k1(2, 5, 7, 13, 9)},
          {"1x1 64->128, 8x8", k1(2, 8, 8, 64, 128)},
          {"1x1 1->1, 3x3", k1(1, 3, 3, 1, 1)},
          {"1x1 1->64, 16x16", k1(1, 16, 16, 1, 64)},
          {"1x1 128->1 (PixelGAN head), 9x9", k1(2, 9, 9, 128, 1)}};
}

// ---------------------------------------------------------------- precisions and paths

struct Precision {
  const char* name;
  ConvMath math;
  double tol;
};
constexpr Precision kFp32{"fp32", ConvMath::Fp32, kTolFp32};
constexpr Precision kTf32{"tf32", ConvMath::Tf32, kTolTf32};
constexpr Precision kBf16{"bf16", ConvMath::Fp32, kTolBf16};  // math is ignored for bf16

enum class Path { Cudnn, Cublas, Library, Dispatch };
const char* path_name(Path p) {
  switch (p) {
    case Path::Cudnn:
      return "cudnn";
    case Path::Cublas:
      return "cublas";
    case Path::Library:
      return "library";
    case Path::Dispatch:
      return "dispatch";
  }
  return "?";
}

template <typename T>
bool run_forward(Path p, const Conv2dShape& s, const T* x, const T* w, const float* b, T* y,
                 ConvMath m, cudaStream_t st) {
  switch (p) {
    case Path::Cudnn:
      return rc::cudnn_conv2d_forward<T>(kDevice, s, x, w, b, y, m, st);
    case Path::Cublas:
      return rc::cublas_conv2d_forward<T>(kDevice, s, x, w, b, y, m, st);
    case Path::Library:
      return rc::library_conv2d_forward<T>(kDevice, s, x, w, b, y, m, st);
    case Path::Dispatch:
      rc::conv2d_forward<T>(kDevice, s, x, w, b, y, m, st);
      return true;
  }
  return false;
}

template <typename T>
bool run_backward_data(Path p, const Conv2dShape& s, const T* dy, const T* w, T* dx, ConvMath m,
                       cudaStream_t st) {
  switch (p) {
    case Path::Cudnn:
      return rc::cudnn_conv2d_backward_data<T>(kDevice, s, dy, w, dx, m, st);
    case Path::Cublas:
      return rc::cublas_conv2d_backward_data<T>(kDevice, s, dy, w, dx, m, st);
    case Path::Library:
      return rc::library_conv2d_backward_data<T>(kDevice, s, dy, w, dx, m, st);
    case Path::Dispatch:
      rc::conv2d_backward_data<T>(kDevice, s, dy, w, dx, m, st);
      return true;
  }
  return false;
}

template <typename T>
bool run_backward_weight(Path p, const Conv2dShape& s, const T* x, const T* dy, float* dw,
                         float* db, ConvMath m, cudaStream_t st) {
  switch (p) {
    case Path::Cudnn:
      return rc::cudnn_conv2d_backward_weight<T>(kDevice, s, x, dy, dw, db, m, st);
    case Path::Cublas:
      return rc::cublas_conv2d_backward_weight<T>(kDevice, s, x, dy, dw, db, m, st);
    case Path::Library:
      return rc::library_conv2d_backward_weight<T>(kDevice, s, x, dy, dw, db, m, st);
    case Path::Dispatch:
      rc::conv2d_backward_weight<T>(kDevice, s, x, dy, dw, db, m, st);
      return true;
  }
  return false;
}

// Host values rounded to T, as floats.
template <typename T>
std::vector<float> rounded(const std::vector<float>& v) {
  return to_floats(convert<T>(v));
}
std::vector<double> widen(const std::vector<float>& v) {
  return {v.begin(), v.end()};
}

// all_close with its scale (the reference's largest magnitude) raised to at least `floor`. The
// outputs of a reduction with few results (dbias or dw of one channel, a channel mean) can land
// near zero by cancellation, while their rounding error scales with the magnitude of the terms:
// `floor` is the typical size of such a sum (sqrt(terms) * rms of a term). Done by appending
// one matching element, so the report is all_close's own.
::testing::AssertionResult all_close_floor(std::vector<float> got, std::vector<double> want,
                                           double tol, double floor, const std::string& what) {
  got.push_back(static_cast<float>(floor));
  want.push_back(static_cast<double>(static_cast<float>(floor)));
  return all_close(got, want, tol, what);
}

// Inputs are uniform in [-1, 1) (rms 1/sqrt(3)), weights in [-0.5, 0.5) (rms 1/sqrt(12)).
constexpr double kRmsX = 0.57735, kRmsW = 0.288675;

size_t count(std::initializer_list<int64_t> dims) {
  int64_t c = 1;
  for (int64_t d : dims) c *= d;
  return static_cast<size_t>(c);
}

// Whether a path must run the case (else a decline is reported and the comparison skipped).
enum class Support { Required, Optional };

class GpuLibraryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!rg::gpu_test::have_gpu()) return;
    RG_TEST_CUDA(cudaSetDevice(kDevice));
    // A blocking stream: DeviceBuffer fills, poisons and uploads on the legacy default
    // stream, and this stream's work must come after them.
    RG_TEST_CUDA(cudaStreamCreate(&stream_));
  }
  void TearDown() override {
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
    rg::reset_conv_backend();
  }

  // All three directions of one convolution on `path`, against the double reference.
  template <typename T>
  void check_conv(const NamedShape& ns, Path path, const Precision& p, Support support,
                  uint32_t seed) {
    const Conv2dShape& s = ns.s;
    const std::string what = ns.name + " [" + path_name(path) + " " + p.name + "]";
    SCOPED_TRACE(what);
    const size_t xs = count({s.n, s.h, s.w, s.c_in});
    const size_t ws = count({s.c_out, s.kh, s.kw, s.c_in});
    const size_t ys = count({s.n, s.out_h(), s.out_w(), s.c_out});
    const auto x = rounded<T>(random_floats(xs, seed));
    const auto w = rounded<T>(random_floats(ws, seed + 1, -0.5f, 0.5f));
    const auto b = random_floats(static_cast<size_t>(s.c_out), seed + 2);
    const auto dy = rounded<T>(random_floats(ys, seed + 3));

    std::vector<double> y_ref(ys), dx_ref(xs), dw_ref(ws), db_ref(static_cast<size_t>(s.c_out));
    const auto xd = widen(x), wd = widen(w), bd = widen(b), dyd = widen(dy);
    cpu::conv2d_forward<double>(s, xd.data(), wd.data(), bd.data(), y_ref.data());
    cpu::conv2d_backward_data<double>(s, dyd.data(), wd.data(), dx_ref.data());
    cpu::conv2d_backward_weight<double>(s, xd.data(), dyd.data(), dw_ref.data(), db_ref.data());
    // Typical magnitudes of each output's sum (see all_close_floor).
    const double rows = static_cast<double>(s.n * s.out_h() * s.out_w());
    const double y_floor = std::sqrt(static_cast<double>(s.kh * s.kw * s.c_in)) * kRmsX * kRmsW;
    const double dx_floor =
        std::sqrt(std::max(1.0, static_cast<double>(s.kh * s.kw * s.c_out) /
                                    static_cast<double>(s.stride_h * s.stride_w))) *
        kRmsX * kRmsW;
    const double dw_floor = std::sqrt(rows) * kRmsX * kRmsX;
    const double db_floor = std::sqrt(rows) * kRmsX;

    DeviceBuffer<T> x_d(convert<T>(x)), w_d(convert<T>(w)), dy_d(convert<T>(dy));
    DeviceBuffer<float> b_d(b);
    DeviceBuffer<T> y_d(ys), dx_d(xs);
    DeviceBuffer<float> dw_d(ws), db_d(static_cast<size_t>(s.c_out));

    auto declined = [&](const char* direction) {
      if (support == Support::Required) {
        ADD_FAILURE() << what << " " << direction << ": the library declined a case it must run";
      } else {
        std::cout << "[ note ] " << what << " " << direction
                  << ": declined by the library (the dispatch falls back to our kernels)\n";
      }
    };
    if (run_forward<T>(path, s, x_d.get(), w_d.get(), b_d.get(), y_d.get(), p.math, stream_)) {
      EXPECT_TRUE(all_close_floor(to_floats(y_d.download()), y_ref, p.tol, y_floor, "forward"));
    } else {
      declined("forward");
    }
    if (run_backward_data<T>(path, s, dy_d.get(), w_d.get(), dx_d.get(), p.math, stream_)) {
      EXPECT_TRUE(
          all_close_floor(to_floats(dx_d.download()), dx_ref, p.tol, dx_floor, "backward data"));
    } else {
      declined("backward data");
    }
    if (run_backward_weight<T>(path, s, x_d.get(), dy_d.get(), dw_d.get(), db_d.get(), p.math,
                               stream_)) {
      EXPECT_TRUE(all_close_floor(dw_d.download(), dw_ref, p.tol, dw_floor, "backward weight"));
      EXPECT_TRUE(all_close_floor(db_d.download(), db_ref, p.tol, db_floor, "backward bias"));
    } else {
      declined("backward weight");
    }
    // Forward without bias, and backward weight without dbias (the optional pointers).
    y_d.poison();
    dw_d.poison();
    std::vector<double> y_nobias(ys);
    cpu::conv2d_forward<double>(s, xd.data(), wd.data(), nullptr, y_nobias.data());
    if (run_forward<T>(path, s, x_d.get(), w_d.get(), nullptr, y_d.get(), p.math, stream_)) {
      EXPECT_TRUE(
          all_close_floor(to_floats(y_d.download()), y_nobias, p.tol, y_floor, "forward, no bias"));
    }
    if (run_backward_weight<T>(path, s, x_d.get(), dy_d.get(), dw_d.get(), nullptr, p.math,
                               stream_)) {
      EXPECT_TRUE(
          all_close_floor(dw_d.download(), dw_ref, p.tol, dw_floor, "backward weight, no dbias"));
    }
    RG_TEST_CUDA(cudaStreamSynchronize(stream_));
  }

  template <typename T>
  void check_all(const std::vector<NamedShape>& shapes, Path path, const Precision& p,
                 Support support) {
    uint32_t seed = 100;
    for (const NamedShape& ns : shapes) {
      check_conv<T>(ns, path, p, support, seed);
      seed += 10;
    }
  }

  cudaStream_t stream_ = nullptr;
};

// ---------------------------------------------------------------- cuDNN convolutions

TEST_F(GpuLibraryTest, CudnnConvSeg256Fp32) {
  RG_SKIP_WITHOUT_GPU();
  check_all<float>(seg256_shapes(), Path::Cudnn, kFp32, Support::Required);
}

TEST_F(GpuLibraryTest, CudnnConvSeg256Tf32) {
  RG_SKIP_WITHOUT_GPU();
  check_all<float>(seg256_shapes(), Path::Cudnn, kTf32, Support::Required);
}

TEST_F(GpuLibraryTest, CudnnConvSeg256Bf16) {
  RG_SKIP_WITHOUT_GPU();
  // cuDNN's legacy API may decline bf16 NHWC with 1 or 2 channels (the outermost layers; it
  // reports CUDNN_STATUS_BAD_PARAM), and the dispatch then runs our kernels (checked by the
  // Dispatch tests); every other seg256 layer it must run.
  std::vector<NamedShape> narrow, wide;
  for (const NamedShape& ns : seg256_shapes()) {
    (std::min(ns.s.c_in, ns.s.c_out) <= 2 ? narrow : wide).push_back(ns);
  }
  check_all<bf16>(wide, Path::Cudnn, kBf16, Support::Required);
  check_all<bf16>(narrow, Path::Cudnn, kBf16, Support::Optional);
}

TEST_F(GpuLibraryTest, CudnnConvAwkwardShapes) {
  RG_SKIP_WITHOUT_GPU();
  check_all<float>(awkward_shapes(), Path::Cudnn, kFp32, Support::Optional);
  check_all<float>(awkward_shapes(), Path::Cudnn, kTf32, Support::Optional);
  check_all<bf16>(awkward_shapes(), Path::Cudnn, kBf16, Support::Optional);
}

TEST_F(GpuLibraryTest, CudnnConvOn1x1Shapes) {
  RG_SKIP_WITHOUT_GPU();
  check_all<float>(gemm_shapes(), Path::Cudnn, kFp32, Support::Optional);
  check_all<bf16>(gemm_shapes(), Path::Cudnn, kBf16, Support::Optional);
}

// A plan made while the stream is captured into a CUDA graph comes from cuDNN's heuristics
// (nothing may synchronize); the graph replays it correctly.
TEST_F(GpuLibraryTest, CudnnConvUnderGraphCaptureUsesHeuristics) {
  RG_SKIP_WITHOUT_GPU();
  // Create the handle outside the capture (cudnnCreate may allocate and synchronize).
  check_conv<float>({"warm-up", k4s2(1, 8, 4, 8)}, Path::Cudnn, kFp32, Support::Required, 7);
  const Conv2dShape s = conv(2, 12, 10, 5, 6, 3, 3, 1, 1, 1, 1);  // not planned before
  const size_t xs = count({s.n, s.h, s.w, s.c_in}), ws = count({s.c_out, s.kh, s.kw, s.c_in});
  const size_t ys = count({s.n, s.out_h(), s.out_w(), s.c_out});
  const auto x = random_floats(xs, 11), w = random_floats(ws, 12), b = random_floats(6, 13);
  std::vector<double> y_ref(ys);
  const auto xd = widen(x), wd = widen(w), bd = widen(b);
  cpu::conv2d_forward<double>(s, xd.data(), wd.data(), bd.data(), y_ref.data());
  DeviceBuffer<float> x_d(x), w_d(w), b_d(b), y_d(ys);
  RG_TEST_CUDA(cudaDeviceSynchronize());

  // A non-blocking stream of its own (nothing on the legacy stream may join the capture);
  // relaxed mode: the caching allocator may need to grow during the capture.
  cudaStream_t capture = nullptr;
  RG_TEST_CUDA(cudaStreamCreateWithFlags(&capture, cudaStreamNonBlocking));
  RG_TEST_CUDA(cudaStreamBeginCapture(capture, cudaStreamCaptureModeRelaxed));
  bool ran = false;
  try {
    ran = rc::cudnn_conv2d_forward<float>(kDevice, s, x_d.get(), w_d.get(), b_d.get(), y_d.get(),
                                          ConvMath::Fp32, capture);
  } catch (...) {
    cudaGraph_t aborted = nullptr;
    cudaStreamEndCapture(capture, &aborted);
    if (aborted != nullptr) cudaGraphDestroy(aborted);
    throw;
  }
  cudaGraph_t graph = nullptr;
  RG_TEST_CUDA(cudaStreamEndCapture(capture, &graph));
  ASSERT_TRUE(ran) << "cuDNN declined a plain 3x3 fp32 convolution under capture";
  cudaGraphExec_t exec = nullptr;
  RG_TEST_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  RG_TEST_CUDA(cudaGraphLaunch(exec, capture));
  RG_TEST_CUDA(cudaStreamSynchronize(capture));
  EXPECT_TRUE(all_close(y_d.download(), y_ref, kTolFp32, "forward replayed from a graph"));
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(capture);
  rg::ConvTuneKey key =
      rg::make_conv_tune_key(kDevice, rg::ConvDirection::Forward, s, rg::DType::F32, false);
  // The heuristic plan was not cached: the first call outside a capture still measures.
  EXPECT_EQ(rc::cudnn_conv_plan_description(key), "");
  ASSERT_TRUE(rc::cudnn_conv2d_forward<float>(kDevice, s, x_d.get(), w_d.get(), b_d.get(),
                                              y_d.get(), ConvMath::Fp32, stream_));
  EXPECT_NE(rc::cudnn_conv_plan_description(key).find("measured"), std::string::npos);
}

TEST_F(GpuLibraryTest, CudnnPlanDescriptionNamesTheAlgorithm) {
  RG_SKIP_WITHOUT_GPU();
  const NamedShape ns{"G.down1 64->128", k4s2(2, 32, 64, 128)};
  check_conv<bf16>(ns, Path::Cudnn, kBf16, Support::Required, 3);
  for (auto dir : {rg::ConvDirection::Forward, rg::ConvDirection::BackwardData,
                   rg::ConvDirection::BackwardWeight}) {
    const auto key = rg::make_conv_tune_key(kDevice, dir, ns.s, rg::DType::BF16, false);
    const std::string d = rc::cudnn_conv_plan_description(key);
    std::cout << "[ info ] " << rg::describe(key) << ": " << d << "\n";
    EXPECT_NE(d.find("workspace"), std::string::npos) << d;
  }
}

// ---------------------------------------------------------------- cuBLAS 1x1 path

TEST_F(GpuLibraryTest, CublasGemmConvFp32) {
  RG_SKIP_WITHOUT_GPU();
  check_all<float>(gemm_shapes(), Path::Cublas, kFp32, Support::Required);
}

TEST_F(GpuLibraryTest, CublasGemmConvTf32) {
  RG_SKIP_WITHOUT_GPU();
  check_all<float>(gemm_shapes(), Path::Cublas, kTf32, Support::Required);
}

TEST_F(GpuLibraryTest, CublasGemmConvBf16) {
  RG_SKIP_WITHOUT_GPU();
  check_all<bf16>(gemm_shapes(), Path::Cublas, kBf16, Support::Required);
}

TEST_F(GpuLibraryTest, CublasDeclinesWhatIsNotAGemm) {
  RG_SKIP_WITHOUT_GPU();
  EXPECT_FALSE(rc::cublas_conv_is_gemm(k4s2(1, 8, 4, 8)));
  EXPECT_FALSE(rc::cublas_conv_is_gemm(conv(1, 8, 8, 4, 8, 1, 1, 2, 2, 0, 0)));  // strided
  EXPECT_FALSE(rc::cublas_conv_is_gemm(conv(1, 8, 8, 4, 8, 1, 1, 1, 1, 1, 1)));  // padded
  EXPECT_TRUE(rc::cublas_conv_is_gemm(k1(1, 8, 8, 4, 8)));
  DeviceBuffer<float> x(1), w(1), y(1);
  EXPECT_FALSE(rc::cublas_conv2d_forward<float>(kDevice, k4s2(1, 8, 4, 8), x.get(), w.get(),
                                                nullptr, y.get(), ConvMath::Fp32, stream_));
}

TEST_F(GpuLibraryTest, LibraryPathOnEveryKindOfShape) {
  RG_SKIP_WITHOUT_GPU();
  check_all<float>(gemm_shapes(), Path::Library, kFp32, Support::Required);
  check_all<bf16>(gemm_shapes(), Path::Library, kBf16, Support::Required);
  check_all<float>(seg256_shapes(), Path::Library, kTf32, Support::Required);
}

// ---------------------------------------------------------------- dispatch

TEST_F(GpuLibraryTest, DispatchInEachBackendMode) {
  RG_SKIP_WITHOUT_GPU();
  std::vector<NamedShape> shapes = {seg256_shapes()[1], seg256_shapes()[5], seg256_shapes()[8],
                                    awkward_shapes()[1], gemm_shapes()[0]};
  for (rg::ConvBackend mode :
       {rg::ConvBackend::Own, rg::ConvBackend::Cudnn, rg::ConvBackend::Auto}) {
    SCOPED_TRACE(rg::conv_backend_name(mode));
    rg::set_conv_backend(mode);
    rg::conv_autotune_cache().clear();
    check_all<float>(shapes, Path::Dispatch, kFp32, Support::Required);
    check_all<float>(shapes, Path::Dispatch, kTf32, Support::Required);
    check_all<bf16>(shapes, Path::Dispatch, kBf16, Support::Required);
    if (mode == rg::ConvBackend::Auto) {
      // Every case was timed once per direction and precision (bf16 ignores the math flag).
      EXPECT_EQ(rg::conv_autotune_cache().size(), shapes.size() * 3 * 3);
      for (const auto& [key, result] : rg::conv_autotune_cache().entries()) {
        EXPECT_GE(result.own_ms, 0.0) << rg::describe(key);
        EXPECT_NE(result.winner, rg::ConvBackend::Auto);
      }
      std::cout << "[ info ] autotune results:\n" << rg::conv_autotune_cache().report();
    } else {
      EXPECT_EQ(rg::conv_autotune_cache().size(), 0u) << "only auto mode measures";
    }
  }
}

}  // namespace
