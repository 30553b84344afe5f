// Error checks for cuDNN calls, in the format of RG_CUDA_CHECK (engine/cuda/runtime.h): the
// error names the call, the file and line, and cuDNN's status.
#pragma once

#include <cudnn.h>

#include "engine/error.h"

// Throws rg::Error unless the cuDNN call returns CUDNN_STATUS_SUCCESS.
#define RG_CUDNN_CHECK(call)                                                                \
  do {                                                                                      \
    const cudnnStatus_t rg_cudnn_status_ = (call);                                          \
    RG_CHECK(rg_cudnn_status_ == CUDNN_STATUS_SUCCESS, #call, " failed at ", __FILE__, ":", \
             __LINE__, ": ", cudnnGetErrorString(rg_cudnn_status_), " (status ",            \
             static_cast<int>(rg_cudnn_status_), ")");                                      \
  } while (0)

// Evaluates a cuDNN call: true on success, false when cuDNN does not support the configuration
// (see cudnn_refused), throws rg::Error like RG_CUDNN_CHECK on any other status.
#define RG_CUDNN_SUPPORTS(call) ::rg::cuda::cudnn_supports((call), #call, __FILE__, __LINE__)

namespace rg::cuda {

// cuDNN declines a configuration (data type, layout, shape, architecture) with a status of the
// CUDNN_STATUS_NOT_SUPPORTED family; callers then fall back to our own kernels.
inline bool cudnn_not_supported(cudnnStatus_t status) {
  return static_cast<int>(status) >= static_cast<int>(CUDNN_STATUS_NOT_SUPPORTED) &&
         static_cast<int>(status) < static_cast<int>(CUDNN_STATUS_INTERNAL_ERROR);
}

// The legacy (cudnnConvolution*, cudnnBatchNormalization*) API declines some configurations it
// has no kernel for (NHWC bf16 with 1-2 channels, odd channel counts) with plain
// CUDNN_STATUS_BAD_PARAM instead, and operands it cannot use at their alignment with
// BAD_PARAM_MISALIGNED_POINTER: refusals as well, where we describe, plan or run an operation.
// The other BAD_PARAM statuses (null pointer, out of bound, ...) are our bugs and still throw.
inline bool cudnn_refused(cudnnStatus_t status) {
  return cudnn_not_supported(status) || status == CUDNN_STATUS_BAD_PARAM ||
         status == CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER;
}

inline bool cudnn_supports(cudnnStatus_t status, const char* call, const char* file, int line) {
  if (status == CUDNN_STATUS_SUCCESS) return true;
  if (cudnn_refused(status)) return false;
  RG_FAIL(call, " failed at ", file, ":", line, ": ", cudnnGetErrorString(status), " (status ",
          static_cast<int>(status), ")");
}

}  // namespace rg::cuda
