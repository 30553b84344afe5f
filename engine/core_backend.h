// What the engine core (tensor.cpp, rng.cpp, autograd.cpp) needs from the layers above it,
// declared here and defined there, so that the core includes neither the op layer nor the CUDA
// op dispatch: the arrows point core <- ops <- backends (scripts/check_layers.cmake checks it).
//
// The cuda_* functions are defined by the CUDA backend (engine/cuda/ops_cuda.cpp) in CUDA
// builds only; the core calls them behind `if constexpr (kCudaBuild)` and only for CUDA
// tensors, so a CPU-only build never references them. add_gradients and accumulate_into are
// defined by the op layer (engine/ops/elementwise.cpp).
#pragma once

#include <cstdint>

#include "engine/tensor.h"

namespace rg::core_backend {

#if RG_WITH_CUDA
inline constexpr bool kCudaBuild = true;
#else
inline constexpr bool kCudaBuild = false;
#endif

// Tensor::fill_ on a CUDA tensor (any layout, any dtype).
void cuda_fill(const Tensor& t, double value);
// Tensor::copy_ between two tensors of one CUDA device, same shape; converts dtypes, either
// may be strided.
void cuda_copy(const Tensor& dst, const Tensor& src);
// The Philox fills of engine/rng.h on a CUDA tensor, with the CPU's element mapping.
enum class RandomFill { Uniform, Normal, Bernoulli };
void cuda_random_fill(RandomFill kind, const Tensor& t, double a, double b, uint64_t seed,
                      uint64_t offset);

// The sum of two gradients arriving at one node (autograd's accumulation): rg::add, so it is
// recorded when the backward itself is recorded (create_graph).
Tensor add_gradients(const Tensor& a, const Tensor& b);
// A leaf's .grad += g, in place, not recorded (AccumulateGrad): rg::add_.
void accumulate_into(Tensor& grad, const Tensor& g);

}  // namespace rg::core_backend
