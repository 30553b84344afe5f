// Error check for cuBLAS calls, in the format of RG_CUDA_CHECK (engine/cuda/runtime.h): the
// error names the call, the file and line, and cuBLAS's status.
#pragma once

#include <cublas_v2.h>

#include "engine/error.h"

// Throws rg::Error unless the cuBLAS call returns CUBLAS_STATUS_SUCCESS.
#define RG_CUBLAS_CHECK(call)                                                                 \
  do {                                                                                        \
    const cublasStatus_t rg_cublas_status_ = (call);                                          \
    RG_CHECK(rg_cublas_status_ == CUBLAS_STATUS_SUCCESS, #call, " failed at ", __FILE__, ":", \
             __LINE__, ": ", cublasGetStatusName(rg_cublas_status_), ": ",                    \
             cublasGetStatusString(rg_cublas_status_));                                       \
  } while (0)
