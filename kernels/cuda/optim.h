// CUDA optimizer kernels. Adam runs as one multi-tensor launch over every parameter of a
// model (a list of pointers in device memory, chunked across blocks), instead of one launch
// per parameter: the generator has 100+ parameter tensors and per-tensor launches would
// dominate the optimizer's time. Parameters, gradients and moments are fp32.
#pragma once

#include "kernels/cuda/common.h"
#include "kernels/optim.h"

namespace rg::kernels::cuda {

// One tensor of a multi-tensor update.
struct AdamTensor {
  float* param;
  const float* grad;
  float* m;
  float* v;
  int64_t n;
};

// Applies Adam/AdamW (same arithmetic as kernels::cpu::adam_step, in fp32) to `count` tensors
// whose descriptors are in device memory at `tensors` (the engine uploads them once and reuses
// them while the parameter list is unchanged). lr and the bias corrections come from c, so a
// changing learning rate needs no new upload.
void adam_multi_tensor(const AdamConfig& c, const AdamTensor* tensors, int count,
                       int64_t max_numel, cudaStream_t stream);

// Single-tensor variants (also what the multi-tensor kernel is tested against).
void adam_step(const AdamConfig& c, int64_t n, float* param, const float* grad, float* m,
               float* v, cudaStream_t stream);
void sgd_step(const SgdConfig& c, int64_t n, float* param, const float* grad, float* buf,
              cudaStream_t stream);

}  // namespace rg::kernels::cuda
