#include "train/gan_loss.h"

#include "engine/error.h"
#include "engine/ops/ops.h"

namespace rg::train {

const std::vector<std::string>& gan_mode_names() {
  static const std::vector<std::string> names{"vanilla", "lsgan", "hinge", "wgan-gp", "none"};
  return names;
}

GanMode parse_gan_mode(const std::string& text, const std::string& source) {
  if (text == "vanilla") return GanMode::Vanilla;
  if (text == "lsgan") return GanMode::LSGAN;
  if (text == "hinge") return GanMode::Hinge;
  if (text == "wgan-gp" || text == "wgangp") return GanMode::WganGp;
  if (text == "none") return GanMode::None;
  RG_FAIL(source, ": unknown GAN mode '", text,
          "' (expected vanilla, lsgan, hinge, wgan-gp or none)");
}

const char* gan_mode_name(GanMode mode) {
  switch (mode) {
    case GanMode::Vanilla: return "vanilla";
    case GanMode::LSGAN: return "lsgan";
    case GanMode::Hinge: return "hinge";
    case GanMode::WganGp: return "wgan-gp";
    case GanMode::None: return "none";
  }
  return "?";
}

namespace {

Tensor constant_like(const Tensor& t, double value) {
  return Tensor::full(t.shape(), value, t.dtype(), t.device());
}

// The critic's loss on one kind of sample: `real` says which label the scores should earn.
Tensor critic_term(GanMode mode, const Tensor& scores, bool real) {
  switch (mode) {
    case GanMode::Vanilla: return bce_with_logits(scores, constant_like(scores, real ? 1.0 : 0.0));
    case GanMode::LSGAN: return mse_loss(scores, constant_like(scores, real ? 1.0 : 0.0));
    case GanMode::Hinge: return real ? mean(relu(1.0 - scores)) : mean(relu(add(scores, 1.0)));
    case GanMode::WganGp: return real ? neg(mean(scores)) : mean(scores);
    case GanMode::None: break;
  }
  RG_FAIL("GAN loss: mode none has no critic");
}

}  // namespace

CriticLoss d_loss(GanMode mode, const Tensor& real_scores, const Tensor& fake_scores) {
  CriticLoss out;
  out.real_term = critic_term(mode, real_scores, true);
  out.fake_term = critic_term(mode, fake_scores, false);
  out.total = add(out.real_term, out.fake_term);
  if (mode != GanMode::WganGp) out.total = mul(out.total, 0.5);
  return out;
}

Tensor g_loss(GanMode mode, const Tensor& fake_scores) {
  switch (mode) {
    case GanMode::Vanilla:
    case GanMode::LSGAN: return critic_term(mode, fake_scores, true);
    case GanMode::Hinge:
    case GanMode::WganGp: return neg(mean(fake_scores));
    case GanMode::None: break;
  }
  RG_FAIL("GAN loss: mode none has no generator adversarial term");
}

}  // namespace rg::train
