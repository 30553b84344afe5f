// Helpers shared by the op implementations (internal to engine/ops).
#pragma once

#include <initializer_list>

#include "engine/autograd.h"
#include "engine/tensor.h"

namespace rg::ops_detail {

// The dtype the CPU kernels compute in for data stored as t: f64 stays f64, the rest use f32.
inline DType compute_dtype(DType t) { return t == DType::F64 ? DType::F64 : DType::F32; }

// Promotion between floating dtypes for binary ops: f64 > f32 > (bf16, f16); bf16 with f16 -> f32.
DType promote(DType a, DType b);

// A contiguous copy (or the tensor itself) in `dtype`, detached from autograd: the input a
// kernel reads.
Tensor kernel_input(const Tensor& t, DType dtype);

// Converts a kernel result to the dtype the op returns (no-op when equal).
Tensor kernel_output(const Tensor& t, DType dtype);

// Every op runs on the CPU until the CUDA backend registers its kernels; this names the op.
void require_cpu(const char* op, std::initializer_list<const Tensor*> tensors);

// Throws unless t is floating point.
void require_floating(const Tensor& t, const char* op, const char* arg);

}  // namespace rg::ops_detail
