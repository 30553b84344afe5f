#include "apps/translate/cyclegan_step.h"

#include "engine/error.h"
#include "engine/ops/ops.h"
#include "engine/profile.h"
#include "models/patchgan.h"

namespace rg::app {

using train::GanMode;

CycleGanStep::CycleGanStep(nn::Module& g_a, nn::Module& g_b, models::PatchDiscriminator& d_a,
                           models::PatchDiscriminator& d_b, optim::Optimizer& opt_g,
                           optim::Optimizer& opt_d, CycleGanConfig config, Generator& pool_gen)
    : g_a_(g_a),
      g_b_(g_b),
      d_a_(d_a),
      d_b_(d_b),
      config_(config),
      pool_a_(config.pool_size, pool_gen),
      pool_b_(config.pool_size, pool_gen) {
  RG_CHECK(config.mode != GanMode::None && config.mode != GanMode::WganGp,
           "CycleGAN: --gan-mode must be vanilla, lsgan or hinge, got ", train::gan_mode_name(config.mode));
  RG_CHECK(config.lambda_a >= 0 && config.lambda_b >= 0 && config.lambda_idt >= 0,
           "CycleGAN: --lambda-cycle and --lambda-identity must be >= 0");
  g_player_ = {.name = "G", .networks = {&g_a, &g_b}, .optimizer = &opt_g};
  d_player_ = {.name = "D", .networks = {&d_a, &d_b}, .optimizer = &opt_d};
}

void CycleGanStep::set_gradient_sync(dist::GradientSync* g_sync, dist::GradientSync* d_sync) {
  g_player_.gradient_sync = g_sync;
  d_player_.gradient_sync = d_sync;
}

train::StepLosses CycleGanStep::step(const Tensor& a, const Tensor& b) {
  RG_CHECK(a.dim() == 4 && b.dim() == 4 && a.size(0) == b.size(0) && a.size(1) == b.size(1) &&
               a.size(2) == b.size(2),
           "CycleGAN step: domain A ", shape_str(a.shape()), " and domain B ", shape_str(b.shape()),
           " must be [N,H,W,C] batches of the same N, H, W");
  RG_CHECK(config_.lambda_idt == 0 || a.size(3) == b.size(3), "CycleGAN step: the identity loss needs ",
           "as many channels in A (", a.size(3), ") as in B (", b.size(3), "); use --lambda-identity 0");
  train::StepLosses losses;
  Tensor fake_a, fake_b;
  train::update(g_player_, {&d_player_}, [&] {
    fake_b = g_a_.forward(a);
    fake_a = g_b_.forward(b);
    const Tensor rec_a = g_b_.forward(fake_b);
    const Tensor rec_b = g_a_.forward(fake_a);
    const Tensor adv_a = train::g_loss(config_.mode, d_a_.forward(fake_b));
    const Tensor adv_b = train::g_loss(config_.mode, d_b_.forward(fake_a));
    const Tensor cyc_a = l1_loss(rec_a, a), cyc_b = l1_loss(rec_b, b);
    losses.add("g_adv_a", adv_a);
    losses.add("g_adv_b", adv_b);
    losses.add("cycle_a", cyc_a);
    losses.add("cycle_b", cyc_b);
    Tensor total = add(add(adv_a, adv_b), add(mul(cyc_a, config_.lambda_a), mul(cyc_b, config_.lambda_b)));
    if (config_.lambda_idt > 0) {
      // G_A should leave a B image alone, G_B an A image.
      const Tensor idt_a = l1_loss(g_a_.forward(b), b), idt_b = l1_loss(g_b_.forward(a), a);
      losses.add("idt_a", idt_a);
      losses.add("idt_b", idt_b);
      total = add(total, mul(add(mul(idt_a, config_.lambda_b), mul(idt_b, config_.lambda_a)),
                             config_.lambda_idt));
    }
    return total;
  }, losses, "g_total");

  const Tensor pooled_b = pool_b_.query(fake_b), pooled_a = pool_a_.query(fake_a);
  train::update(d_player_, {&g_player_}, [&] {
    const train::CriticLoss la = train::d_loss(config_.mode, d_a_.forward(b), d_a_.forward(pooled_b));
    const train::CriticLoss lb = train::d_loss(config_.mode, d_b_.forward(a), d_b_.forward(pooled_a));
    losses.add("d_a", la.total);
    losses.add("d_b", lb.total);
    return add(la.total, lb.total);
  }, losses, "d_loss");
  return losses;
}

}  // namespace rg::app
