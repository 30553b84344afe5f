// CUDA optimizer kernels (kernels/cuda/optim.h): the arithmetic of kernels::cpu::adam_step and
// sgd_step in fp32, step-dependent scalars (bias corrections, decay factor) computed on the host
// in double. Every element is updated by one device function written with explicitly rounded
// intrinsics, so the single-tensor kernel, the multi-tensor kernel, and their float4 and scalar
// paths give the same bits for the same element whatever the compiler contracts.
//
// Work split: a block updates a chunk of kChunk consecutive elements of one tensor (float4 loads
// when the tensor's four arrays are 16-byte aligned, else scalar), looping over further chunks
// when the grid is smaller than the tensor. The multi-tensor launch puts the tensor index on
// gridDim.y and sizes gridDim.x for the largest tensor; blocks past the end of a smaller tensor
// exit at once.
#include "kernels/cuda/optim.h"
#include "kernels/cuda/device_util.cuh"

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace rg::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kChunk = int64_t{kThreads} * 4 * 8;  // 8 float4 per thread
constexpr int64_t kMaxBlocksX = int64_t{1} << 20;      // grid-stride beyond this
constexpr int kMaxTensorsPerLaunch = 65535;            // gridDim.y

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

enum class Decay : int { None, L2, Decoupled };

// Adam's per-launch scalars, as fp32.
struct AdamScalars {
  float beta1, one_minus_beta1;
  float beta2, one_minus_beta2;
  float step_size;     // lr / (1 - beta1^step)
  float inv_sqrt_bc2;  // 1 / sqrt(1 - beta2^step)
  float eps;
  float weight_decay;  // L2: added to the gradient times the parameter
  float decay_factor;  // decoupled: parameter multiplied by 1 - lr * weight_decay
  Decay decay;
};

AdamScalars adam_scalars(const AdamConfig& c) {
  const double step = static_cast<double>(c.step);
  const double bc1 = 1.0 - std::pow(c.beta1, step);
  const double bc2 = 1.0 - std::pow(c.beta2, step);
  AdamScalars a;
  a.beta1 = static_cast<float>(c.beta1);
  a.one_minus_beta1 = static_cast<float>(1.0 - c.beta1);
  a.beta2 = static_cast<float>(c.beta2);
  a.one_minus_beta2 = static_cast<float>(1.0 - c.beta2);
  a.step_size = static_cast<float>(c.lr / bc1);
  a.inv_sqrt_bc2 = static_cast<float>(1.0 / std::sqrt(bc2));
  a.eps = static_cast<float>(c.eps);
  a.weight_decay = static_cast<float>(c.weight_decay);
  a.decay_factor = static_cast<float>(1.0 - c.lr * c.weight_decay);
  a.decay = c.weight_decay == 0.0      ? Decay::None
            : c.decoupled_weight_decay ? Decay::Decoupled
                                       : Decay::L2;
  return a;
}

__device__ __forceinline__ void adam_element(const AdamScalars& a, float& p, float g, float& m,
                                             float& v) {
  if (a.decay == Decay::L2) {
    g = __fmaf_rn(a.weight_decay, p, g);
  } else if (a.decay == Decay::Decoupled) {
    p = __fmul_rn(p, a.decay_factor);
  }
  m = __fmaf_rn(a.beta1, m, __fmul_rn(a.one_minus_beta1, g));
  v = __fmaf_rn(a.beta2, v, __fmul_rn(__fmul_rn(a.one_minus_beta2, g), g));
  const float denom = __fadd_rn(__fmul_rn(__fsqrt_rn(v), a.inv_sqrt_bc2), a.eps);
  p = __fsub_rn(p, __fdiv_rn(__fmul_rn(a.step_size, m), denom));
}


// Updates elements [begin, end) of t; begin is a multiple of 4 (a chunk start).
__device__ __forceinline__ void adam_range(const AdamScalars& a, const AdamTensor& t, int64_t begin,
                                           int64_t end, bool vectorized) {
  int64_t scalar_begin = begin;
  if (vectorized) {
    const int64_t quads = (end - begin) / 4;
    for (int64_t q = threadIdx.x; q < quads; q += blockDim.x) {
      const int64_t i = begin + 4 * q;
      float4 p = *reinterpret_cast<const float4*>(t.param + i);
      const float4 g = *reinterpret_cast<const float4*>(t.grad + i);
      float4 m = *reinterpret_cast<const float4*>(t.m + i);
      float4 v = *reinterpret_cast<const float4*>(t.v + i);
      adam_element(a, p.x, g.x, m.x, v.x);
      adam_element(a, p.y, g.y, m.y, v.y);
      adam_element(a, p.z, g.z, m.z, v.z);
      adam_element(a, p.w, g.w, m.w, v.w);
      *reinterpret_cast<float4*>(t.param + i) = p;
      *reinterpret_cast<float4*>(t.m + i) = m;
      *reinterpret_cast<float4*>(t.v + i) = v;
    }
    scalar_begin = begin + 4 * quads;
  }
  for (int64_t i = scalar_begin + threadIdx.x; i < end; i += blockDim.x) {
    float p = t.param[i], m = t.m[i], v = t.v[i];
    adam_element(a, p, t.grad[i], m, v);
    t.param[i] = p;
    t.m[i] = m;
    t.v[i] = v;
  }
}

__device__ __forceinline__ void adam_tensor(const AdamScalars& a, const AdamTensor& t) {
  const bool vectorized =
      aligned16(t.param) && aligned16(t.grad) && aligned16(t.m) && aligned16(t.v);
  for (int64_t begin = static_cast<int64_t>(blockIdx.x) * kChunk; begin < t.n;
       begin += static_cast<int64_t>(gridDim.x) * kChunk) {
    adam_range(a, t, begin, min(t.n, begin + kChunk), vectorized);
  }
}

__global__ void __launch_bounds__(kThreads)
    adam_kernel(AdamScalars a, float* param, const float* grad, float* m, float* v, int64_t n) {
  adam_tensor(a, AdamTensor{param, grad, m, v, n});
}

__global__ void __launch_bounds__(kThreads)
    adam_multi_tensor_kernel(AdamScalars a, const AdamTensor* __restrict__ tensors) {
  const AdamTensor t = tensors[blockIdx.y];
  adam_tensor(a, t);
}

struct SgdScalars {
  float lr;
  float momentum;
  float one_minus_dampening;
  float weight_decay;
  bool use_momentum;
  bool nesterov;
  bool first_step;
};

__device__ __forceinline__ void sgd_element(const SgdScalars& s, float& p, float g, float* buf) {
  if (s.weight_decay != 0.f) g = __fmaf_rn(s.weight_decay, p, g);
  if (s.use_momentum) {
    const float b =
        s.first_step ? g : __fmaf_rn(s.momentum, *buf, __fmul_rn(s.one_minus_dampening, g));
    *buf = b;
    g = s.nesterov ? __fmaf_rn(s.momentum, b, g) : b;
  }
  p = __fsub_rn(p, __fmul_rn(s.lr, g));
}

__global__ void __launch_bounds__(kThreads)
    sgd_kernel(SgdScalars s, int64_t n, float* __restrict__ param, const float* __restrict__ grad,
               float* __restrict__ buf) {
  const bool vectorized =
      aligned16(param) && aligned16(grad) && (!s.use_momentum || aligned16(buf));
  for (int64_t begin = static_cast<int64_t>(blockIdx.x) * kChunk; begin < n;
       begin += static_cast<int64_t>(gridDim.x) * kChunk) {
    const int64_t end = min(n, begin + kChunk);
    int64_t scalar_begin = begin;
    if (vectorized) {
      const int64_t quads = (end - begin) / 4;
      for (int64_t q = threadIdx.x; q < quads; q += blockDim.x) {
        const int64_t i = begin + 4 * q;
        float4 p = *reinterpret_cast<const float4*>(param + i);
        const float4 g = *reinterpret_cast<const float4*>(grad + i);
        // The buffer is not read on the first step (it may be uninitialized memory).
        float4 b =
            s.use_momentum && !s.first_step ? *reinterpret_cast<const float4*>(buf + i) : float4{};
        sgd_element(s, p.x, g.x, &b.x);
        sgd_element(s, p.y, g.y, &b.y);
        sgd_element(s, p.z, g.z, &b.z);
        sgd_element(s, p.w, g.w, &b.w);
        *reinterpret_cast<float4*>(param + i) = p;
        if (s.use_momentum) *reinterpret_cast<float4*>(buf + i) = b;
      }
      scalar_begin = begin + 4 * quads;
    }
    for (int64_t i = scalar_begin + threadIdx.x; i < end; i += blockDim.x) {
      float p = param[i];
      float b = s.use_momentum && !s.first_step ? buf[i] : 0.f;
      sgd_element(s, p, grad[i], &b);
      param[i] = p;
      if (s.use_momentum) buf[i] = b;
    }
  }
}

unsigned blocks_for(int64_t n) {
  return static_cast<unsigned>(std::clamp<int64_t>(ceil_div(n, kChunk), 1, kMaxBlocksX));
}

}  // namespace

void adam_multi_tensor(const AdamConfig& c, const AdamTensor* tensors, int count, int64_t max_numel,
                       cudaStream_t stream) {
  if (count <= 0 || max_numel <= 0) return;
  const AdamScalars a = adam_scalars(c);
  for (int first = 0; first < count; first += kMaxTensorsPerLaunch) {
    const int in_launch = std::min(kMaxTensorsPerLaunch, count - first);
    adam_multi_tensor_kernel<<<dim3(blocks_for(max_numel), static_cast<unsigned>(in_launch)),
                               kThreads, 0, stream>>>(a, tensors + first);
    RG_KERNEL_LAUNCH_CHECK("adam_multi_tensor_kernel");
  }
}

void adam_step(const AdamConfig& c, int64_t n, float* param, const float* grad, float* m, float* v,
               cudaStream_t stream) {
  if (n <= 0) return;
  adam_kernel<<<blocks_for(n), kThreads, 0, stream>>>(adam_scalars(c), param, grad, m, v, n);
  RG_KERNEL_LAUNCH_CHECK("adam_kernel");
}

void sgd_step(const SgdConfig& c, int64_t n, float* param, const float* grad, float* buf,
              cudaStream_t stream) {
  if (n <= 0) return;
  SgdScalars s;
  s.lr = static_cast<float>(c.lr);
  s.momentum = static_cast<float>(c.momentum);
  s.one_minus_dampening = static_cast<float>(1.0 - c.dampening);
  s.weight_decay = static_cast<float>(c.weight_decay);
  s.use_momentum = c.momentum != 0.0;
  s.nesterov = c.nesterov;
  s.first_step = c.first_step;
  sgd_kernel<<<blocks_for(n), kThreads, 0, stream>>>(s, n, param, grad, buf);
  RG_KERNEL_LAUNCH_CHECK("sgd_kernel");
}

}  // namespace rg::kernels::cuda
