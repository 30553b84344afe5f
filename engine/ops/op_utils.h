// Helpers shared by the op implementations (internal to engine/ops).
#pragma once

#include <initializer_list>
#include <vector>

#include "engine/autograd.h"
#include "engine/core_backend.h"
#include "engine/tensor.h"

namespace rg::ops_detail {

inline constexpr bool kCudaBuild = core_backend::kCudaBuild;

// True when t's kernels are the CUDA backend's. Each op's dispatch point reads
//   if (on_cuda(x)) { if constexpr (kCudaBuild) cuda_ops::...; } else { kernels::cpu::...; }
// so a CPU-only build never references the CUDA entry points (engine/cuda/ops_cuda.h).
inline bool on_cuda(const Tensor& t) { return kCudaBuild && t.device().is_cuda(); }

// The dtype the kernels of `device` compute in for data stored as `t`. CPU: f64 stays f64,
// the rest use f32. CUDA: bf16 stays bf16 (tensor cores and fp32 accumulation inside the
// kernels), the rest use f32; f64 has no CUDA kernels and is refused with the op's name.
DType compute_dtype(DType t, Device device, const char* op);

// Promotion between floating dtypes for binary ops: f64 > f32 > (bf16, f16); bf16 with f16 -> f32.
DType promote(DType a, DType b);

// A contiguous copy (or the tensor itself) in `dtype`, detached from autograd: the input a
// kernel reads.
Tensor kernel_input(const Tensor& t, DType dtype);

// Converts a kernel result to the dtype the op returns (no-op when equal).
Tensor kernel_output(const Tensor& t, DType dtype);

// For the few ops that have no CUDA kernels: names the op and the tensor.
void require_cpu(const char* op, std::initializer_list<const Tensor*> tensors);

// The values of a CPU tensor, as double, for a CPU kernel's own use (an upstream scalar
// gradient, running statistics). Not counted by host_read_count(): on the CPU there is no
// device to wait for, and the CUDA branches of the same ops keep these values on the device.
std::vector<double> cpu_values(const Tensor& t);
double cpu_scalar(const Tensor& t);

// Throws unless t is floating point.
void require_floating(const Tensor& t, const char* op, const char* arg);

}  // namespace rg::ops_detail
