// CycleGAN's training step (Zhu et al. 2017; the reference's cycle_gan_model.py) on the training
// layer's alternating update: two players, {G_A, G_B} and {D_A, D_B}.
//
//   G_A: A -> B (e.g. MR -> CT), G_B: B -> A; D_A judges domain B (real B vs G_A(A)), D_B judges
//   domain A. Unconditional PatchGANs: they see single images, since A and B are unpaired.
//
//   G update (D_A, D_B frozen):
//     fake_B = G_A(a), rec_A = G_B(fake_B), fake_A = G_B(b), rec_B = G_A(fake_A)
//     L_G = g_loss(D_A(fake_B)) + g_loss(D_B(fake_A))
//         + lambda_A |rec_A - a|_1 + lambda_B |rec_B - b|_1                   (cycle)
//         + lambda_idt (lambda_B |G_A(b) - b|_1 + lambda_A |G_B(a) - a|_1)    (identity)
//   D update (G frozen), on the image pools' answers (train/image_pool.h):
//     L_D = d_loss(D_A(b), D_A(pool_B(fake_B))) + d_loss(D_B(a), D_B(pool_A(fake_A)))
//     (d_loss halves each, as the reference's 0.5 (real + fake)).
//
// The identity term needs as many channels in A as in B; lambda_idt 0 turns it off.
#pragma once

#include "engine/rng.h"
#include "engine/tensor.h"
#include "train/alternating_update.h"
#include "train/gan_loss.h"
#include "train/image_pool.h"

namespace rg::nn {
class Module;
}
namespace rg::models {
class PatchDiscriminator;
}

namespace rg::app {

struct CycleGanConfig {
  train::GanMode mode = train::GanMode::LSGAN;  // the reference's default
  double lambda_a = 10.0, lambda_b = 10.0;      // cycle weights (A -> B -> A, B -> A -> B)
  double lambda_idt = 0.5;                      // identity weight, relative to lambda_a / lambda_b
  int64_t pool_size = 50;
};

class CycleGanStep {
 public:
  // `pool_gen` draws the pools' choices (a checkpointed generator).
  CycleGanStep(nn::Module& g_a, nn::Module& g_b, models::PatchDiscriminator& d_a,
               models::PatchDiscriminator& d_b, optim::Optimizer& opt_g, optim::Optimizer& opt_d,
               CycleGanConfig config, Generator& pool_gen);
  // One G update then one D update on a batch of A images [N,H,W,Ca] and B images [N,H,W,Cb]
  // in [-1, 1]. Returns on the device: g_adv_a, g_adv_b, cycle_a, cycle_b, (idt_a, idt_b),
  // g_total, d_a, d_b, d_loss.
  train::StepLosses step(const Tensor& a, const Tensor& b);
  // Data parallelism: gradients of {G_A, G_B} and of {D_A, D_B} averaged over the ranks (one
  // sync per player, over both of its networks' parameters). Not owned; null in one process.
  void set_gradient_sync(dist::GradientSync* g_sync, dist::GradientSync* d_sync);
  const CycleGanConfig& config() const { return config_; }

 private:
  nn::Module &g_a_, &g_b_;
  models::PatchDiscriminator &d_a_, &d_b_;
  CycleGanConfig config_;
  train::ImagePool pool_a_, pool_b_;
  train::Player g_player_, d_player_;
};

}  // namespace rg::app
