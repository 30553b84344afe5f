// GAN objectives as functions of a critic's scores, for conditional critics (D(x, y)) and
// unconditional ones (D(y)) alike: the caller runs the critic, these functions only see scores
// (any shape: a PatchGAN's score map or one score per sample).
//
//   mode      critic (D) loss on real r, fake f                   generator loss on f
//   vanilla   0.5 (BCE(r, 1) + BCE(f, 0))                          BCE(f, 1)  (non-saturating)
//   lsgan     0.5 (MSE(r, 1) + MSE(f, 0))                          MSE(f, 1)
//   hinge     0.5 (mean relu(1 - r) + mean relu(1 + f))            -mean f
//   wgan-gp   -mean r + mean f  (+ the gradient penalty)           -mean f
//
// The 0.5 of the first three is pix2pix's (it slows D relative to G); WGAN-GP's critic loss is
// the plain Wasserstein estimate, as in Gulrajani et al.
#pragma once

#include <string>
#include <vector>

#include "engine/tensor.h"

namespace rg::train {

// None: no adversarial term (the plain supervised baseline of an application).
enum class GanMode { Vanilla, LSGAN, Hinge, WganGp, None };
GanMode parse_gan_mode(const std::string& text, const std::string& source = "--gan-mode");
const char* gan_mode_name(GanMode mode);
const std::vector<std::string>& gan_mode_names();  // vanilla, lsgan, hinge, wgan-gp, none

// The critic's loss and its two terms (each already a scalar tensor on the scores' device).
struct CriticLoss {
  Tensor total;
  Tensor real_term;  // the term on real samples
  Tensor fake_term;  // the term on generated samples
};
CriticLoss d_loss(GanMode mode, const Tensor& real_scores, const Tensor& fake_scores);
// The generator's adversarial loss on the critic's scores of generated samples.
Tensor g_loss(GanMode mode, const Tensor& fake_scores);

// Gradient penalties (WGAN-GP's, exact through second-order autograd, and R1) take the critic
// as a callable and live in the engine: engine/ops/gradient_penalty.h.

}  // namespace rg::train
