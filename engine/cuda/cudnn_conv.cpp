#include "engine/cuda/cudnn_conv.h"

#include <algorithm>
#include <climits>
#include <initializer_list>
#include <iomanip>
#include <memory>
#include <mutex>
#include <sstream>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "engine/cuda/cublas_conv.h"
#include "engine/cuda/cudnn_check.h"
#include "engine/cuda/cudnn_common.h"
#include "engine/error.h"
#include "kernels/cuda/elementwise.h"

// cuDNN 9 marks the legacy convolution API deprecated (a warning only under
// CUDNN_WARN_DEPRECATED). It is still complete and supported for NHWC convolutions; the graph API
// would buy nothing here, so the warning is silenced for this file.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

namespace rg::cuda {

namespace {

namespace kc = kernels::cuda;
using kernels::Conv2dShape;

template <typename T>
struct ElemInfo;
template <>
struct ElemInfo<float> {
  static constexpr cudnnDataType_t cudnn = CUDNN_DATA_FLOAT;
  static constexpr DType dtype = DType::F32;
};
template <>
struct ElemInfo<kc::bf16> {
  static constexpr cudnnDataType_t cudnn = CUDNN_DATA_BFLOAT16;
  static constexpr DType dtype = DType::BF16;
};

// The algorithm search may use this much scratch memory at most (the chosen algorithm's own
// workspace is usually far smaller; FFT variants can ask for gigabytes).
constexpr size_t kMaxSearchWorkspace = size_t{512} << 20;

// Product of positive dims below 2^31 (cuDNN's legacy tensors hold fewer than 2^31 elements).
bool count_fits(std::initializer_list<int64_t> dims) {
  int64_t product = 1;
  for (int64_t d : dims) {
    if (d <= 0 || product > (int64_t{INT_MAX}) / d) return false;
    product *= d;
  }
  return true;
}

// Whether the legacy API's int descriptors can describe the case at all.
bool describable(const Conv2dShape& s) {
  for (int64_t v : {s.n, s.h, s.w, s.c_in, s.c_out, s.kh, s.kw, s.stride_h, s.stride_w}) {
    if (v <= 0 || v > INT_MAX) return false;
  }
  if (s.pad_h < 0 || s.pad_w < 0 || s.pad_h > INT_MAX / 4 || s.pad_w > INT_MAX / 4) return false;
  if (s.h + 2 * s.pad_h < s.kh || s.w + 2 * s.pad_w < s.kw) return false;
  const int64_t oh = s.out_h(), ow = s.out_w();
  return count_fits({s.n, s.h, s.w, s.c_in}) && count_fits({s.n, oh, ow, s.c_out}) &&
         count_fits({s.c_out, s.kh, s.kw, s.c_in});
}

// The descriptors and the chosen algorithm of one (device, direction, shape, dtype, math).
// x_desc describes the convolution's input (x, or dx), y_desc its output (y, or dy).
struct ConvPlan {
  bool supported = false;
  cudnnTensorDescriptor_t x_desc = nullptr;
  cudnnTensorDescriptor_t y_desc = nullptr;
  cudnnFilterDescriptor_t w_desc = nullptr;
  cudnnConvolutionDescriptor_t conv_desc = nullptr;
  int algo = 0;  // the direction's algorithm enum value
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  size_t workspace_bytes = 0;
  bool measured = false;  // cudnnFind (measured) or cudnnGet_v7 (heuristic)
  float measured_ms = 0.f;

  ConvPlan() = default;
  ConvPlan(const ConvPlan&) = delete;
  ConvPlan& operator=(const ConvPlan&) = delete;
  ~ConvPlan() {
    // Destroy errors are ignored: nothing useful can be done with them in a destructor.
    if (x_desc) cudnnDestroyTensorDescriptor(x_desc);
    if (y_desc) cudnnDestroyTensorDescriptor(y_desc);
    if (w_desc) cudnnDestroyFilterDescriptor(w_desc);
    if (conv_desc) cudnnDestroyConvolutionDescriptor(conv_desc);
  }
};

// A plan is found for a shape and for the alignment of the buffers it was searched on: cuDNN may
// pick an algorithm that needs more alignment than an offset view of the same shape has, and it
// then refuses the view. Keyed by alignment, such a refusal marks only that alignment
// unsupported (falling back to our kernels), not the shape for good.
struct PlanKey {
  ConvTuneKey tune;
  int alignment = 0;  // operand_alignment of the call
  bool operator==(const PlanKey& o) const { return tune == o.tune && alignment == o.alignment; }
};

struct PlanKeyHash {
  size_t operator()(const PlanKey& k) const {
    return ConvTuneKeyHash{}(k.tune) * 31 + static_cast<size_t>(k.alignment);
  }
};

// Measured plans, for the whole process (never destroyed: see cudnn_common.cpp's handles). All
// use of one device's plans happens under that device's CudnnHandle lease; the mutex guards
// the map and `supported` against the description readers.
struct PlanCache {
  std::mutex mutex;
  std::unordered_map<PlanKey, std::unique_ptr<ConvPlan>, PlanKeyHash> plans;
};

PlanCache& plan_cache() {
  static auto* cache = new PlanCache();
  return *cache;
}

// The buffers of one call, in the roles the three directions give them.
struct ConvOperands {
  const void* a;  // forward: x    backward data: dy   backward weight: x
  const void* b;  // forward: w    backward data: w    backward weight: dy
  void* out;      // forward: y    backward data: dx   backward weight: dw
};

// The largest power of two, up to 256 bytes, that divides the address of every operand.
int operand_alignment(const ConvOperands& op) {
  const uintptr_t bits = reinterpret_cast<uintptr_t>(op.a) | reinterpret_cast<uintptr_t>(op.b) |
                         reinterpret_cast<uintptr_t>(op.out) | uintptr_t{256};
  return static_cast<int>(bits & (~bits + 1));
}

// Exact fp32 excludes the FFT and Winograd algorithms: they transform the operands, and their
// error grows with the transform (beyond the fp32 tolerance the own kernels are held to) rather
// than staying at the rounding of a plain sum of products.
bool exact_algorithm(ConvDirection dir, int algo) {
  switch (dir) {
    case ConvDirection::Forward:
      return algo != CUDNN_CONVOLUTION_FWD_ALGO_FFT && algo != CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING &&
             algo != CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD &&
             algo != CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED;
    case ConvDirection::BackwardData:
      return algo != CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT &&
             algo != CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING &&
             algo != CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD &&
             algo != CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED;
    case ConvDirection::BackwardWeight:
      return algo != CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT &&
             algo != CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING &&
             algo != CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD &&
             algo != CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED;
  }
  return false;
}

struct Candidate {
  int algo;
  cudnnStatus_t status;
  float time_ms;
  size_t memory;
  cudnnMathType_t math;
};

template <typename Perf>
void collect(const Perf* perf, int count, std::vector<Candidate>* out) {
  for (int i = 0; i < count; ++i) {
    out->push_back({static_cast<int>(perf[i].algo), perf[i].status, perf[i].time, perf[i].memory,
                    perf[i].mathType});
  }
}

bool build_descriptors(ConvPlan& p, const Conv2dShape& s, cudnnDataType_t io_type,
                       cudnnMathType_t math) {
  RG_CUDNN_CHECK(cudnnCreateTensorDescriptor(&p.x_desc));
  RG_CUDNN_CHECK(cudnnCreateTensorDescriptor(&p.y_desc));
  RG_CUDNN_CHECK(cudnnCreateFilterDescriptor(&p.w_desc));
  RG_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&p.conv_desc));
  const int n = static_cast<int>(s.n), h = static_cast<int>(s.h), w = static_cast<int>(s.w);
  const int c_in = static_cast<int>(s.c_in), c_out = static_cast<int>(s.c_out);
  const int oh = static_cast<int>(s.out_h()), ow = static_cast<int>(s.out_w());
  const int kh = static_cast<int>(s.kh), kw = static_cast<int>(s.kw);
  if (!RG_CUDNN_SUPPORTS(
          cudnnSetTensor4dDescriptor(p.x_desc, CUDNN_TENSOR_NHWC, io_type, n, c_in, h, w)) ||
      !RG_CUDNN_SUPPORTS(
          cudnnSetTensor4dDescriptor(p.y_desc, CUDNN_TENSOR_NHWC, io_type, n, c_out, oh, ow)) ||
      // NHWC filter format = KRSC = our OHWI [c_out][kh][kw][c_in].
      !RG_CUDNN_SUPPORTS(
          cudnnSetFilter4dDescriptor(p.w_desc, io_type, CUDNN_TENSOR_NHWC, c_out, c_in, kh, kw)) ||
      !RG_CUDNN_SUPPORTS(cudnnSetConvolution2dDescriptor(
          p.conv_desc, static_cast<int>(s.pad_h), static_cast<int>(s.pad_w),
          static_cast<int>(s.stride_h), static_cast<int>(s.stride_w), 1, 1, CUDNN_CROSS_CORRELATION,
          CUDNN_DATA_FLOAT)) ||
      !RG_CUDNN_SUPPORTS(cudnnSetConvolutionMathType(p.conv_desc, math))) {
    return false;
  }
  int got_n = 0, got_c = 0, got_h = 0, got_w = 0;
  RG_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(p.conv_desc, p.x_desc, p.w_desc, &got_n,
                                                       &got_c, &got_h, &got_w));
  RG_CHECK(got_n == n && got_c == c_out && got_h == oh && got_w == ow, "cuDNN convolution: output ",
           got_n, "x", got_h, "x", got_w, "x", got_c, " disagrees with Conv2dShape's ", n, "x", oh,
           "x", ow, "x", c_out);
  return true;
}

int algo_count(ConvDirection dir) {
  switch (dir) {
    case ConvDirection::Forward:
      return CUDNN_CONVOLUTION_FWD_ALGO_COUNT;
    case ConvDirection::BackwardData:
      return CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT;
    case ConvDirection::BackwardWeight:
      return CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
  }
  return 0;
}

// Workspace an algorithm needs with the plan's current math type.
cudnnStatus_t workspace_size(ConvDirection dir, cudnnHandle_t h, const ConvPlan& p, int algo,
                             size_t* bytes) {
  switch (dir) {
    case ConvDirection::Forward:
      return cudnnGetConvolutionForwardWorkspaceSize(h, p.x_desc, p.w_desc, p.conv_desc, p.y_desc,
                                                     static_cast<cudnnConvolutionFwdAlgo_t>(algo),
                                                     bytes);
    case ConvDirection::BackwardData:
      return cudnnGetConvolutionBackwardDataWorkspaceSize(
          h, p.w_desc, p.y_desc, p.conv_desc, p.x_desc,
          static_cast<cudnnConvolutionBwdDataAlgo_t>(algo), bytes);
    case ConvDirection::BackwardWeight:
      return cudnnGetConvolutionBackwardFilterWorkspaceSize(
          h, p.x_desc, p.y_desc, p.conv_desc, p.w_desc,
          static_cast<cudnnConvolutionBwdFilterAlgo_t>(algo), bytes);
  }
  return CUDNN_STATUS_BAD_PARAM;
}

// The most any algorithm of the direction asks for (those cuDNN rejects do not count).
size_t largest_workspace(ConvDirection dir, cudnnHandle_t h, const ConvPlan& p) {
  size_t most = 0;
  for (int algo = 0; algo < algo_count(dir); ++algo) {
    size_t bytes = 0;
    if (workspace_size(dir, h, p, algo, &bytes) == CUDNN_STATUS_SUCCESS) {
      most = std::max(most, bytes);
    }
  }
  return most;
}

// cudnnFind*AlgorithmEx (measure: runs every algorithm on the buffers, writing `out`) or
// cudnnGet*_v7 (heuristics, launches nothing). Results come sorted best first.
bool search(ConvDirection dir, cudnnHandle_t h, const ConvPlan& p, const ConvOperands& op,
            bool measure, void* workspace, size_t workspace_bytes, std::vector<Candidate>* out) {
  int returned = 0;
  switch (dir) {
    case ConvDirection::Forward: {
      cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
      const bool ok =
          measure
              ? RG_CUDNN_SUPPORTS(cudnnFindConvolutionForwardAlgorithmEx(
                    h, p.x_desc, op.a, p.w_desc, op.b, p.conv_desc, p.y_desc, op.out,
                    CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &returned, perf, workspace, workspace_bytes))
              : RG_CUDNN_SUPPORTS(cudnnGetConvolutionForwardAlgorithm_v7(
                    h, p.x_desc, p.w_desc, p.conv_desc, p.y_desc, CUDNN_CONVOLUTION_FWD_ALGO_COUNT,
                    &returned, perf));
      if (!ok) return false;
      collect(perf, returned, out);
      return true;
    }
    case ConvDirection::BackwardData: {
      cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
      const bool ok = measure ? RG_CUDNN_SUPPORTS(cudnnFindConvolutionBackwardDataAlgorithmEx(
                                    h, p.w_desc, op.b, p.y_desc, op.a, p.conv_desc, p.x_desc,
                                    op.out, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &returned, perf,
                                    workspace, workspace_bytes))
                              : RG_CUDNN_SUPPORTS(cudnnGetConvolutionBackwardDataAlgorithm_v7(
                                    h, p.w_desc, p.y_desc, p.conv_desc, p.x_desc,
                                    CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &returned, perf));
      if (!ok) return false;
      collect(perf, returned, out);
      return true;
    }
    case ConvDirection::BackwardWeight: {
      cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
      const bool ok = measure ? RG_CUDNN_SUPPORTS(cudnnFindConvolutionBackwardFilterAlgorithmEx(
                                    h, p.x_desc, op.a, p.y_desc, op.b, p.conv_desc, p.w_desc,
                                    op.out, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &returned,
                                    perf, workspace, workspace_bytes))
                              : RG_CUDNN_SUPPORTS(cudnnGetConvolutionBackwardFilterAlgorithm_v7(
                                    h, p.x_desc, p.y_desc, p.conv_desc, p.w_desc,
                                    CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &returned, perf));
      if (!ok) return false;
      collect(perf, returned, out);
      return true;
    }
  }
  return false;
}

// Scratch for the search: as much as the hungriest algorithm wants, capped, and less when the
// device is short of memory (algorithms that need more are then skipped by cuDNN).
std::unique_ptr<DeviceScratch> search_workspace(int device, size_t wanted, cudaStream_t stream) {
  size_t bytes = std::min(wanted, kMaxSearchWorkspace);
  while (true) {
    try {
      return std::make_unique<DeviceScratch>(device, bytes, stream);
    } catch (const Error&) {
      if (bytes == 0) throw;
      bytes = bytes >= (size_t{4} << 20) ? bytes / 4 : 0;
    }
  }
}

bool tensor_op_math(cudnnMathType_t m) {
  return m == CUDNN_TENSOR_OP_MATH || m == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
}

// Builds the descriptors and picks the algorithm. `exact_fp32`: float data with no TF32; the
// search then runs under CUDNN_FMA_MATH and anything reported as tensor-op math is refused.
std::unique_ptr<ConvPlan> make_plan(ConvDirection dir, const CudnnHandle& handle,
                                    const Conv2dShape& s, cudnnDataType_t io_type, bool exact_fp32,
                                    const ConvOperands& op, bool measure, cudaStream_t stream) {
  auto plan = std::make_unique<ConvPlan>();
  if (!describable(s)) return plan;
  const cudnnMathType_t search_math = exact_fp32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH;
  if (!build_descriptors(*plan, s, io_type, search_math)) return plan;
  cudnnHandle_t h = handle.get();
  std::vector<Candidate> candidates;
  if (measure) {
    const auto workspace =
        search_workspace(handle.device(), largest_workspace(dir, h, *plan), stream);
    if (!search(dir, h, *plan, op, true, workspace->get(), workspace->bytes(), &candidates)) {
      return plan;
    }
  } else if (!search(dir, h, *plan, op, false, nullptr, 0, &candidates)) {
    return plan;
  }
  for (const Candidate& c : candidates) {
    if (c.status != CUDNN_STATUS_SUCCESS) continue;
    if (exact_fp32 && (tensor_op_math(c.math) || !exact_algorithm(dir, c.algo))) continue;
    // cuDNN may report an algorithm with a math type other than the descriptor's (e.g. default
    // math when tensor ops bring nothing); run it the way it was measured, except that exact
    // fp32 always runs under FMA math so TF32 can never slip in.
    const cudnnMathType_t run_math = exact_fp32 ? CUDNN_FMA_MATH : c.math;
    if (!RG_CUDNN_SUPPORTS(cudnnSetConvolutionMathType(plan->conv_desc, run_math))) continue;
    size_t bytes = 0;
    if (workspace_size(dir, h, *plan, c.algo, &bytes) != CUDNN_STATUS_SUCCESS) continue;
    plan->algo = c.algo;
    plan->math = run_math;
    plan->workspace_bytes = std::max(bytes, c.memory);
    plan->measured = measure;
    plan->measured_ms = c.time_ms;
    plan->supported = true;
    break;
  }
  return plan;
}

cudnnStatus_t execute(ConvDirection dir, cudnnHandle_t h, const ConvPlan& p, const ConvOperands& op,
                      void* workspace, size_t workspace_bytes, float beta) {
  const float alpha = 1.f;
  switch (dir) {
    case ConvDirection::Forward:
      return cudnnConvolutionForward(h, &alpha, p.x_desc, op.a, p.w_desc, op.b, p.conv_desc,
                                     static_cast<cudnnConvolutionFwdAlgo_t>(p.algo), workspace,
                                     workspace_bytes, &beta, p.y_desc, op.out);
    case ConvDirection::BackwardData:
      return cudnnConvolutionBackwardData(h, &alpha, p.w_desc, op.b, p.y_desc, op.a, p.conv_desc,
                                          static_cast<cudnnConvolutionBwdDataAlgo_t>(p.algo),
                                          workspace, workspace_bytes, &beta, p.x_desc, op.out);
    case ConvDirection::BackwardWeight:
      return cudnnConvolutionBackwardFilter(h, &alpha, p.x_desc, op.a, p.y_desc, op.b, p.conv_desc,
                                            static_cast<cudnnConvolutionBwdFilterAlgo_t>(p.algo),
                                            workspace, workspace_bytes, &beta, p.w_desc, op.out);
  }
  return CUDNN_STATUS_BAD_PARAM;
}

// Runs one direction through cuDNN. `before_run` is called after the algorithm is chosen and
// before the convolution (the search overwrites the output, so a bias prefill must wait for
// it); `beta` blends the convolution into what the output holds then.
template <typename BeforeRun>
bool run_cudnn(ConvDirection dir, int device, const Conv2dShape& s, DType dtype,
               cudnnDataType_t io_type, bool exact_fp32, const ConvOperands& op, float beta,
               cudaStream_t stream, BeforeRun&& before_run) {
  if (!describable(s)) return false;
  const PlanKey key{make_conv_tune_key(device, dir, s, dtype, !exact_fp32), operand_alignment(op)};
  CudnnHandle handle(device, stream);
  PlanCache& cache = plan_cache();
  ConvPlan* plan = nullptr;
  {
    std::lock_guard<std::mutex> lock(cache.mutex);
    if (auto it = cache.plans.find(key); it != cache.plans.end()) plan = it->second.get();
  }
  // A plan made by heuristics during graph capture is used for that call only, so the first
  // call outside a capture still measures.
  std::unique_ptr<ConvPlan> capture_plan;
  if (plan == nullptr) {
    const bool measure = !stream_is_capturing(stream);
    std::unique_ptr<ConvPlan> made =
        make_plan(dir, handle, s, io_type, exact_fp32, op, measure, stream);
    if (measure) {
      std::lock_guard<std::mutex> lock(cache.mutex);
      plan = cache.plans.emplace(key, std::move(made)).first->second.get();
    } else {
      capture_plan = std::move(made);
      plan = capture_plan.get();
    }
  }
  {
    std::lock_guard<std::mutex> lock(cache.mutex);
    if (!plan->supported) return false;
  }
  before_run();
  DeviceScratch workspace(device, plan->workspace_bytes, stream);
  const cudnnStatus_t status =
      execute(dir, handle.get(), *plan, op, workspace.get(), workspace.bytes(), beta);
  if (cudnn_refused(status)) {
    // Do not try this case again -- unless only the blend (beta = 1, the bias) was refused:
    // the case without a bias may still run.
    if (beta == 0.f) {
      std::lock_guard<std::mutex> lock(cache.mutex);
      plan->supported = false;
    }
    return false;
  }
  RG_CUDNN_CHECK(status);
  return true;
}

void no_prefill() {}

const char* algo_name(ConvDirection dir, int algo) {
  static const char* const kForward[] = {
      "IMPLICIT_GEMM", "IMPLICIT_PRECOMP_GEMM", "GEMM", "DIRECT", "FFT", "FFT_TILING",
      "WINOGRAD",      "WINOGRAD_NONFUSED"};
  static const char* const kBackwardData[] = {"ALGO_0",     "ALGO_1",   "FFT",
                                              "FFT_TILING", "WINOGRAD", "WINOGRAD_NONFUSED"};
  static const char* const kBackwardFilter[] = {
      "ALGO_0", "ALGO_1", "FFT", "ALGO_3", "WINOGRAD", "WINOGRAD_NONFUSED", "FFT_TILING"};
  auto pick = [algo](const char* const* names, int count) {
    return algo >= 0 && algo < count ? names[algo] : "?";
  };
  switch (dir) {
    case ConvDirection::Forward:
      return pick(kForward, 8);
    case ConvDirection::BackwardData:
      return pick(kBackwardData, 6);
    case ConvDirection::BackwardWeight:
      return pick(kBackwardFilter, 7);
  }
  return "?";
}

const char* math_name(cudnnMathType_t m) {
  switch (m) {
    case CUDNN_DEFAULT_MATH:
      return "default math";
    case CUDNN_TENSOR_OP_MATH:
      return "tensor-op math";
    case CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION:
      return "tensor-op math (conversion allowed)";
    case CUDNN_FMA_MATH:
      return "FMA math";
  }
  return "? math";
}

bool exact_fp32_of(DType dtype, kc::ConvMath math) {
  return dtype == DType::F32 && math == kc::ConvMath::Fp32;
}

}  // namespace

template <typename T>
bool cudnn_conv2d_forward(int device, const Conv2dShape& s, const T* x, const T* w,
                          const float* bias, T* y, kc::ConvMath math, cudaStream_t stream) {
  constexpr DType dtype = ElemInfo<T>::dtype;
  const ConvOperands op{x, w, y};
  const int64_t rows = s.n * s.out_h() * s.out_w();
  auto prefill = [&] {
    if (bias != nullptr) fill_rows_with_bias<T>(rows, s.c_out, bias, y, stream);
  };
  return run_cudnn(ConvDirection::Forward, device, s, dtype, ElemInfo<T>::cudnn,
                   exact_fp32_of(dtype, math), op, bias != nullptr ? 1.f : 0.f, stream, prefill);
}

template <typename T>
bool cudnn_conv2d_backward_data(int device, const Conv2dShape& s, const T* dy, const T* w, T* dx,
                                kc::ConvMath math, cudaStream_t stream) {
  constexpr DType dtype = ElemInfo<T>::dtype;
  const ConvOperands op{dy, w, dx};
  return run_cudnn(ConvDirection::BackwardData, device, s, dtype, ElemInfo<T>::cudnn,
                   exact_fp32_of(dtype, math), op, 0.f, stream, no_prefill);
}

template <typename T>
bool cudnn_conv2d_backward_weight(int device, const Conv2dShape& s, const T* x, const T* dy,
                                  float* dw, float* dbias, kc::ConvMath math, cudaStream_t stream) {
  constexpr DType dtype = ElemInfo<T>::dtype;
  const bool exact = exact_fp32_of(dtype, math);
  if constexpr (std::is_same_v<T, float>) {
    const ConvOperands op{x, dy, dw};
    if (!run_cudnn(ConvDirection::BackwardWeight, device, s, dtype, ElemInfo<T>::cudnn, exact, op,
                   0.f, stream, no_prefill)) {
      return false;
    }
  } else {
    // cuDNN writes dw in the inputs' type: a bf16 temporary, widened into the fp32 dw (the
    // header explains the precision this gives).
    if (!describable(s)) return false;
    const int64_t count = s.c_out * s.kh * s.kw * s.c_in;
    DeviceScratch dw_bf16(device, static_cast<size_t>(count) * sizeof(kc::bf16), stream);
    const ConvOperands op{x, dy, dw_bf16.get()};
    if (!run_cudnn(ConvDirection::BackwardWeight, device, s, dtype, ElemInfo<T>::cudnn, exact, op,
                   0.f, stream, no_prefill)) {
      return false;
    }
    widen_bf16(count, dw_bf16.as<kc::bf16>(), dw, stream);
  }
  if (dbias != nullptr) kc::sum_columns<T>(s.n * s.out_h() * s.out_w(), s.c_out, dy, dbias, stream);
  return true;
}

std::string cudnn_conv_plan_description(const ConvTuneKey& key) {
  PlanCache& cache = plan_cache();
  std::lock_guard<std::mutex> lock(cache.mutex);
  // The plan of whole allocations (256-byte aligned) first, else any alignment's.
  auto it = cache.plans.find(PlanKey{key, 256});
  if (it == cache.plans.end()) {
    it = std::find_if(cache.plans.begin(), cache.plans.end(),
                      [&](const auto& entry) { return entry.first.tune == key; });
  }
  if (it == cache.plans.end()) return "";
  const ConvPlan& p = *it->second;
  if (!p.supported) return "unsupported";
  std::ostringstream os;
  os << algo_name(key.direction, p.algo) << ", " << math_name(p.math) << ", "
     << std::setprecision(3) << static_cast<double>(p.workspace_bytes) / (1 << 20)
     << " MiB workspace";
  if (p.measured) {
    os << ", measured " << std::fixed << std::setprecision(3) << p.measured_ms << " ms";
  } else {
    os << ", heuristic";
  }
  return os.str();
}

template <typename T>
bool library_conv2d_forward(int device, const Conv2dShape& s, const T* x, const T* w,
                            const float* bias, T* y, kc::ConvMath math, cudaStream_t stream) {
  if (cublas_conv_is_gemm(s) && cublas_conv2d_forward<T>(device, s, x, w, bias, y, math, stream)) {
    return true;
  }
  return cudnn_conv2d_forward<T>(device, s, x, w, bias, y, math, stream);
}

template <typename T>
bool library_conv2d_backward_data(int device, const Conv2dShape& s, const T* dy, const T* w, T* dx,
                                  kc::ConvMath math, cudaStream_t stream) {
  if (cublas_conv_is_gemm(s) &&
      cublas_conv2d_backward_data<T>(device, s, dy, w, dx, math, stream)) {
    return true;
  }
  return cudnn_conv2d_backward_data<T>(device, s, dy, w, dx, math, stream);
}

template <typename T>
bool library_conv2d_backward_weight(int device, const Conv2dShape& s, const T* x, const T* dy,
                                    float* dw, float* dbias, kc::ConvMath math,
                                    cudaStream_t stream) {
  if (cublas_conv_is_gemm(s) &&
      cublas_conv2d_backward_weight<T>(device, s, x, dy, dw, dbias, math, stream)) {
    return true;
  }
  return cudnn_conv2d_backward_weight<T>(device, s, x, dy, dw, dbias, math, stream);
}

#define RG_INSTANTIATE_LIBRARY_CONV(PREFIX, T)                                                    \
  template bool PREFIX##_conv2d_forward<T>(int, const Conv2dShape&, const T*, const T*,           \
                                           const float*, T*, kc::ConvMath, cudaStream_t);         \
  template bool PREFIX##_conv2d_backward_data<T>(int, const Conv2dShape&, const T*, const T*, T*, \
                                                 kc::ConvMath, cudaStream_t);                     \
  template bool PREFIX##_conv2d_backward_weight<T>(int, const Conv2dShape&, const T*, const T*,   \
                                                   float*, float*, kc::ConvMath, cudaStream_t);
RG_INSTANTIATE_LIBRARY_CONV(cudnn, float)
RG_INSTANTIATE_LIBRARY_CONV(cudnn, kc::bf16)
RG_INSTANTIATE_LIBRARY_CONV(library, float)
RG_INSTANTIATE_LIBRARY_CONV(library, kc::bf16)
#undef RG_INSTANTIATE_LIBRARY_CONV

}  // namespace rg::cuda

#pragma GCC diagnostic pop
