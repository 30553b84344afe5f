#include "engine/cuda/cudnn_norm.h"

#include <climits>
#include <type_traits>

#include "engine/cuda/cudnn_check.h"
#include "engine/cuda/cudnn_common.h"
#include "engine/cuda/runtime.h"
#include "kernels/cuda/tensor_ops.h"

// cuDNN 9 marks the legacy batch-norm API deprecated (a warning only under
// CUDNN_WARN_DEPRECATED); it is present and is what this file wraps.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

namespace rg::cuda {

namespace {

namespace kc = kernels::cuda;
using kernels::NormShape;

template <typename T>
constexpr cudnnDataType_t cudnn_type() {
  if constexpr (std::is_same_v<T, float>) {
    return CUDNN_DATA_FLOAT;
  } else {
    static_assert(std::is_same_v<T, kc::bf16>, "float or bf16");
    return CUDNN_DATA_BFLOAT16;
  }
}

constexpr cudnnBatchNormMode_t kMode = CUDNN_BATCHNORM_SPATIAL;

// x as NHWC [n][hw][1][c], and the derived [1][c][1][1] fp32 parameter descriptor.
class BnDescriptors {
 public:
  BnDescriptors() {
    RG_CUDNN_CHECK(cudnnCreateTensorDescriptor(&x_));
    RG_CUDNN_CHECK(cudnnCreateTensorDescriptor(&param_));
  }
  ~BnDescriptors() {
    cudnnDestroyTensorDescriptor(x_);
    cudnnDestroyTensorDescriptor(param_);
  }
  BnDescriptors(const BnDescriptors&) = delete;
  BnDescriptors& operator=(const BnDescriptors&) = delete;

  // False when cuDNN cannot describe the case.
  bool set(const NormShape& s, cudnnDataType_t type) {
    if (s.n <= 0 || s.hw <= 0 || s.c <= 0 || s.n > INT_MAX || s.hw > INT_MAX || s.c > INT_MAX) {
      return false;
    }
    if (s.hw > INT_MAX / s.n || s.c > INT_MAX / (s.n * s.hw)) return false;
    return RG_CUDNN_SUPPORTS(
               cudnnSetTensor4dDescriptor(x_, CUDNN_TENSOR_NHWC, type, static_cast<int>(s.n),
                                          static_cast<int>(s.c), static_cast<int>(s.hw), 1)) &&
           RG_CUDNN_SUPPORTS(cudnnDeriveBNTensorDescriptor(param_, x_, kMode));
  }
  cudnnTensorDescriptor_t x() const { return x_; }
  cudnnTensorDescriptor_t param() const { return param_; }

 private:
  cudnnTensorDescriptor_t x_ = nullptr;
  cudnnTensorDescriptor_t param_ = nullptr;
};

// `given` when non-null, else c fp32 values of `value` in `scratch`.
const float* or_constant(const float* given, DeviceScratch& scratch, int64_t c, double value,
                         cudaStream_t stream) {
  if (given != nullptr) return given;
  if (value == 0.0) {
    RG_CUDA_CHECK(cudaMemsetAsync(scratch.get(), 0, scratch.bytes(), stream));
  } else {
    kc::fill(kc::ElemType::F32, c, value, scratch.get(), stream);
  }
  return scratch.as<float>();
}

size_t param_bytes(const float* given, int64_t c) {
  return given != nullptr ? 0 : static_cast<size_t>(c) * sizeof(float);
}

bool eps_ok(float eps) {
  return static_cast<double>(eps) >= CUDNN_BN_MIN_EPSILON;
}

}  // namespace

template <typename T>
bool cudnn_batch_norm_forward_train(int device, const NormShape& s, const T* x, const float* gamma,
                                    const float* beta, float eps, T* y, float* save_mean,
                                    float* save_invstd, cudaStream_t stream) {
  const kc::NormFusion none{};
  BnDescriptors desc;
  // One value per channel has no variance to normalize by; our kernel defines that case.
  const bool can = eps_ok(eps) && s.n * s.hw >= 2 && desc.set(s, cudnn_type<T>());
  if (can) {
    CudnnHandle handle(device, stream);
    DeviceScratch ones(device, param_bytes(gamma, s.c), stream);
    DeviceScratch zeros(device, param_bytes(beta, s.c), stream);
    const float* scale = or_constant(gamma, ones, s.c, 1.0, stream);
    const float* bias = or_constant(beta, zeros, s.c, 0.0, stream);
    const float one = 1.f, zero = 0.f;
    if (RG_CUDNN_SUPPORTS(cudnnBatchNormalizationForwardTraining(
            handle.get(), kMode, &one, &zero, desc.x(), x, desc.x(), y, desc.param(), scale, bias,
            /*exponentialAverageFactor=*/0.0, /*resultRunningMean=*/nullptr,
            /*resultRunningVariance=*/nullptr, static_cast<double>(eps), save_mean, save_invstd))) {
      return true;
    }
  }
  kc::batch_norm_forward_train<T>(s, x, gamma, beta, eps, none, y, save_mean, save_invstd, stream);
  return false;
}

template <typename T>
bool cudnn_batch_norm_forward_eval(int device, const NormShape& s, const T* x, const float* gamma,
                                   const float* beta, const float* mean, const float* var,
                                   float eps, T* y, cudaStream_t stream) {
  const kc::NormFusion none{};
  BnDescriptors desc;
  if (eps_ok(eps) && desc.set(s, cudnn_type<T>())) {
    CudnnHandle handle(device, stream);
    DeviceScratch ones(device, param_bytes(gamma, s.c), stream);
    DeviceScratch zeros(device, param_bytes(beta, s.c), stream);
    const float* scale = or_constant(gamma, ones, s.c, 1.0, stream);
    const float* bias = or_constant(beta, zeros, s.c, 0.0, stream);
    const float one = 1.f, zero = 0.f;
    if (RG_CUDNN_SUPPORTS(cudnnBatchNormalizationForwardInference(
            handle.get(), kMode, &one, &zero, desc.x(), x, desc.x(), y, desc.param(), scale, bias,
            mean, var, static_cast<double>(eps)))) {
      return true;
    }
  }
  kc::batch_norm_forward_eval<T>(s, x, gamma, beta, mean, var, eps, none, y, stream);
  return false;
}

template <typename T>
bool cudnn_batch_norm_backward_train(int device, const NormShape& s, const T* x, const T* dy,
                                     const float* gamma, const float* save_mean,
                                     const float* save_invstd, float eps, T* dx, float* dgamma,
                                     float* dbeta, cudaStream_t stream) {
  const kc::NormFusion none{};
  BnDescriptors desc;
  const bool can = eps_ok(eps) && s.n * s.hw >= 2 && desc.set(s, cudnn_type<T>());
  if (can) {
    CudnnHandle handle(device, stream);
    DeviceScratch ones(device, param_bytes(gamma, s.c), stream);
    DeviceScratch dgamma_scratch(device, param_bytes(dgamma, s.c), stream);
    DeviceScratch dbeta_scratch(device, param_bytes(dbeta, s.c), stream);
    const float* scale = or_constant(gamma, ones, s.c, 1.0, stream);
    float* dscale = dgamma != nullptr ? dgamma : dgamma_scratch.as<float>();
    float* dbias = dbeta != nullptr ? dbeta : dbeta_scratch.as<float>();
    const float one = 1.f, zero = 0.f;
    if (RG_CUDNN_SUPPORTS(cudnnBatchNormalizationBackward(
            handle.get(), kMode, &one, &zero, &one, &zero, desc.x(), x, desc.x(), dy, desc.x(), dx,
            desc.param(), scale, dscale, dbias, static_cast<double>(eps), save_mean,
            save_invstd))) {
      return true;
    }
  }
  kc::batch_norm_backward_train<T>(s, x, nullptr, dy, gamma, save_mean, save_invstd, none, dx,
                                   dgamma, dbeta, stream);
  return false;
}

#define RG_INSTANTIATE_CUDNN_NORM(T)                                                              \
  template bool cudnn_batch_norm_forward_train<T>(int, const NormShape&, const T*, const float*,  \
                                                  const float*, float, T*, float*, float*,        \
                                                  cudaStream_t);                                  \
  template bool cudnn_batch_norm_forward_eval<T>(int, const NormShape&, const T*, const float*,   \
                                                 const float*, const float*, const float*, float, \
                                                 T*, cudaStream_t);                               \
  template bool cudnn_batch_norm_backward_train<T>(int, const NormShape&, const T*, const T*,     \
                                                   const float*, const float*, const float*,      \
                                                   float, T*, float*, float*, cudaStream_t);
RG_INSTANTIATE_CUDNN_NORM(float)
RG_INSTANTIATE_CUDNN_NORM(kc::bf16)
#undef RG_INSTANTIATE_CUDNN_NORM

}  // namespace rg::cuda

#pragma GCC diagnostic pop
