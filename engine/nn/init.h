// Weight initialization helpers.
#pragma once

#include "engine/nn/module.h"
#include "engine/rng.h"

namespace rg::nn::init {

void normal(Tensor& t, double mean, double stddev, Generator& gen = default_generator());
void uniform(Tensor& t, double low, double high, Generator& gen = default_generator());
void constant(Tensor& t, double value);

// pix2pix's init_weights('normal', 0.02): every conv / transposed-conv weight ~ N(0, gain),
// conv biases 0, batch-norm (and affine instance-norm) gamma ~ N(1, gain), beta 0. Modules are
// visited parents first, in registration order, so the draw order is deterministic.
void pix2pix(Module& root, double gain = 0.02, Generator& gen = default_generator());

}  // namespace rg::nn::init
