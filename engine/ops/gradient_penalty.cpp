#include "engine/ops/gradient_penalty.h"

#include "engine/autograd.h"
#include "engine/ops/ops.h"
#include "engine/rng.h"

namespace rg {

namespace {

void check_batch(const Tensor& x, const char* api, const char* arg) {
  check_defined(x, api, arg);
  RG_CHECK(is_floating(x.dtype()), api, ": '", arg, "' must be floating point, got ",
           dtype_name(x.dtype()));
  RG_CHECK(x.dim() >= 2 && x.size(0) > 0, api, ": '", arg, "' must be a batch [N, ...], got shape ",
           shape_str(x.shape()));
}

// The input gradient, taking the critic's score from `api`'s point of view (its errors name it).
Tensor input_gradient(const Critic& critic, const Tensor& batch, const char* api) {
  // The input gradient needs a recorded forward whatever the caller's mode (a penalty computed
  // for logging under NoGradGuard still has to differentiate the critic once).
  GradModeGuard grad_mode(true);
  Tensor x = batch.detach();  // the point the gradient is taken at: a leaf of its own
  x.set_requires_grad(true);
  Tensor score = critic(x);
  RG_CHECK(score.defined() && score.dim() >= 1 && score.size(0) == x.size(0), api,
           ": the critic must return one score per sample ([N]) or per patch ([N, ...]) for an "
           "input of shape ", shape_str(x.shape()), ", got ",
           score.defined() ? shape_str(score.shape()) : std::string("an undefined tensor"));
  // The gradient of the per-sample total score. A patch critic scores every patch, and the
  // penalty constrains how fast the sample's score as a whole changes with its input, so the
  // patch scores are summed per sample first (the mean would only scale the gradient by
  // 1/patches; the critic decides which one it returns). Summing over the samples as well is
  // exact: sample i's score depends on sample i's input only, so d(sum_j s_j)/dx_i = ds_i/dx_i,
  // and one backward gives every sample's gradient.
  RG_CHECK(score.requires_grad(), api, ": the critic's score of shape ", shape_str(score.shape()),
           " does not depend on its input (nothing in it requires grad)");
  std::vector<Tensor> g = grad({sum(score)}, {x}, {}, /*create_graph=*/true, std::nullopt,
                               /*allow_unused=*/true);
  RG_CHECK(g[0].defined(), api, ": the critic's score does not depend on its input of shape ",
           shape_str(x.shape()), ", so its input gradient is undefined");
  return g[0];
}

// ||g_i||^2 per sample: [N].
Tensor squared_norms(const Tensor& g) { return sum(square(g.reshape({g.size(0), -1})), {1}); }

}  // namespace

Tensor critic_input_gradient(const Critic& critic, const Tensor& x) {
  check_batch(x, "critic_input_gradient", "x");
  return input_gradient(critic, x, "critic_input_gradient");
}

Tensor gradient_penalty(const Critic& critic, const Tensor& real, const Tensor& fake,
                        Generator& rng, double target_norm) {
  check_batch(real, "gradient_penalty", "real");
  check_batch(fake, "gradient_penalty", "fake");
  RG_CHECK(real.shape() == fake.shape(), "gradient_penalty: real ", shape_str(real.shape()),
           " and fake ", shape_str(fake.shape()), " differ in shape");
  check_same_device(real, fake, "gradient_penalty");
  Tensor x_hat;
  {
    NoGradGuard no_grad;  // the interpolate is data: no gradient into real or fake
    Shape eps_shape(real.dim(), 1);
    eps_shape[0] = real.size(0);
    Tensor eps = Tensor::empty(eps_shape, real.dtype(), real.device());
    uniform_(eps, 0.0, 1.0, rng);
    x_hat = add(fake.detach(), mul(eps, sub(real.detach(), fake.detach())));
  }
  Tensor g = input_gradient(critic, x_hat, "gradient_penalty");
  // sqrt has an infinite derivative at 0: a sample whose gradient vanishes exactly (e.g. every
  // unit of a ReLU critic dead) would turn the penalty's gradient into 0 * inf = NaN. The tiny
  // offset keeps it finite and changes a norm of order 1 by about 1e-12.
  Tensor norms = sqrt(add(squared_norms(g), 1e-12));
  return mean(square(add(norms, -target_norm)));
}

Tensor r1_penalty(const Critic& critic, const Tensor& real) {
  check_batch(real, "r1_penalty", "real");
  return mean(squared_norms(input_gradient(critic, real, "r1_penalty")));
}

}  // namespace rg
