// Gradient penalties for GAN critics, built on rg::grad with create_graph: the penalty contains
// the critic's input gradient and is differentiated again (w.r.t. the critic's parameters) by
// an ordinary backward of the critic loss.
#pragma once

#include <functional>

#include "engine/tensor.h"

namespace rg {

class Generator;

// A critic: a batch [N, ...] in, scores out, one per sample ([N]) or per patch ([N, ...],
// e.g. a PatchGAN map [N, h, w, 1]). A conditional critic is a closure over its condition
// (`[&](const Tensor& m) { return d.forward(image, m); }`). Samples must not interact inside the
// critic (no batch norm): the penalty needs each sample's own input gradient.
using Critic = std::function<Tensor(const Tensor&)>;

// WGAN-GP (Gulrajani et al. 2017): mean over samples of (||grad_x critic(x)||_2 - target_norm)^2
// at x = eps * real + (1 - eps) * fake, with one eps ~ U(0, 1) per sample (a single uniform_
// fill of shape [N, 1, ..., 1] in real's dtype, from `rng`). real and fake are treated as data
// (no gradient flows into them: pass fake detached or not, the generator gets nothing); the
// result is differentiable w.r.t. the critic's parameters. Multiply by the penalty weight
// (lambda, 10 in the paper) at the call site.
Tensor gradient_penalty(const Critic& critic, const Tensor& real, const Tensor& fake,
                        Generator& rng, double target_norm = 1.0);

// R1 (Mescheder et al. 2018): mean over samples of ||grad_x critic(x)||_2^2 at the real data.
// The paper's regularizer is gamma / 2 times this. Differentiable w.r.t. the critic's parameters.
Tensor r1_penalty(const Critic& critic, const Tensor& real);

// The gradient of the critic's summed score w.r.t. its input x, shaped like x, recorded
// (create_graph) so that it can be differentiated again; what both penalties are built on.
Tensor critic_input_gradient(const Critic& critic, const Tensor& x);

}  // namespace rg
