#include "engine/nn/layers.h"

#include <cmath>

#include "engine/autograd.h"
#include "engine/dist/sync_batch_norm.h"

namespace rg::nn {

namespace {
// PyTorch's default (kaiming_uniform with a = sqrt(5)) reduces to U(-1/sqrt(fan_in), +).
Tensor uniform_fan_in(const Shape& shape, int64_t fan_in, Generator& gen) {
  Tensor t = Tensor::empty(shape);
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  uniform_(t, -bound, bound, gen);
  return t;
}

// x / (|x| + 1e-12), on x's device (nothing is read back to the host).
Tensor unit(const Tensor& x) { return div(x, add(sqrt(sum(square(x))), 1e-12)); }
}  // namespace

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, ConvOptions opts, Generator& gen)
    : Module("Conv2d"), options(opts) {
  RG_CHECK(in_channels > 0 && out_channels > 0 && opts.kernel > 0, "Conv2d: channels (", in_channels,
           ", ", out_channels, ") and kernel ", opts.kernel, " must be positive");
  const int64_t fan_in = in_channels * opts.kernel * opts.kernel;
  weight = uniform_fan_in({out_channels, opts.kernel, opts.kernel, in_channels}, fan_in, gen);
  register_parameter("weight", &weight);
  if (opts.bias) {
    bias = uniform_fan_in({out_channels}, fan_in, gen);
    register_parameter("bias", &bias);
  }
  if (opts.spectral_norm) {
    // Random unit vectors, drawn after the weight and bias so that those do not change.
    weight_u = Tensor::empty({out_channels});
    weight_v = Tensor::empty({fan_in});
    normal_(weight_u, 0.0, 1.0, gen);
    normal_(weight_v, 0.0, 1.0, gen);
    weight_u.copy_(unit(weight_u.reshape({1, -1})).reshape({-1}));
    weight_v.copy_(unit(weight_v.reshape({1, -1})).reshape({-1}));
    register_buffer("weight_u", &weight_u);
    register_buffer("weight_v", &weight_v);
    reset_spectral_norm();
  }
}

Tensor Conv2d::forward(const Tensor& x) {
  if (!options.spectral_norm) return conv2d(x, weight, bias, Conv2dParams::make(options.stride, options.padding));
  if (is_training()) power_iteration();
  return conv2d(x, normalized_weight(), bias, Conv2dParams::make(options.stride, options.padding));
}

void Conv2d::power_iteration() {
  NoGradGuard no_grad;
  const int64_t out = weight.size(0);
  const Tensor w = weight.detach().reshape({out, -1});                   // [out, K]
  const Tensor wt = w.permute({1, 0}).contiguous();                      // [K, out]
  const Tensor v = unit(linear(weight_u.reshape({1, out}), wt, Tensor()));  // (W^T u)^T
  const Tensor u = unit(linear(v, w, Tensor()));                         // (W v)^T
  weight_v.copy_(v.reshape({-1}));
  weight_u.copy_(u.reshape({-1}));
}

Tensor Conv2d::sigma() const {
  const int64_t out = weight.size(0);
  const Tensor wv = linear(weight_v.reshape({1, -1}), weight.reshape({out, -1}), Tensor());  // (W v)^T
  return sum(mul(weight_u.reshape({1, out}), wv));
}

Tensor Conv2d::normalized_weight() const { return div(weight, sigma()); }

void Conv2d::reset_spectral_norm(int iterations) {
  if (!options.spectral_norm) return;
  for (int i = 0; i < iterations; ++i) power_iteration();
}

double Conv2d::spectral_sigma() const {
  RG_CHECK(options.spectral_norm, "Conv2d::spectral_sigma: no spectral normalization");
  NoGradGuard no_grad;
  return sigma().item();
}

ConvTranspose2d::ConvTranspose2d(int64_t in_channels, int64_t out_channels, ConvOptions opts,
                                 Generator& gen)
    : Module("ConvTranspose2d"), options(opts) {
  RG_CHECK(in_channels > 0 && out_channels > 0 && opts.kernel > 0, "ConvTranspose2d: channels (",
           in_channels, ", ", out_channels, ") and kernel ", opts.kernel, " must be positive");
  // PyTorch computes fan_in of a transposed conv from weight.size(1) = out_channels.
  const int64_t fan_in = out_channels * opts.kernel * opts.kernel;
  weight = uniform_fan_in({in_channels, opts.kernel, opts.kernel, out_channels}, fan_in, gen);
  register_parameter("weight", &weight);
  if (opts.bias) {
    bias = uniform_fan_in({out_channels}, fan_in, gen);
    register_parameter("bias", &bias);
  }
}

Tensor ConvTranspose2d::forward(const Tensor& x) {
  return conv_transpose2d(
      x, weight, bias, Conv2dParams::make(options.stride, options.padding, options.output_padding));
}

BatchNorm2d::BatchNorm2d(int64_t channels, double eps, double momentum, bool affine,
                         bool track_running_stats)
    : Module("BatchNorm2d"), eps(eps), momentum(momentum) {
  RG_CHECK(channels > 0, "BatchNorm2d: channels must be positive, got ", channels);
  if (affine) {
    weight = Tensor::ones({channels});
    bias = Tensor::zeros({channels});
    register_parameter("weight", &weight);
    register_parameter("bias", &bias);
  }
  if (track_running_stats) {
    running_mean = Tensor::zeros({channels});
    running_var = Tensor::ones({channels});
    register_buffer("running_mean", &running_mean);
    register_buffer("running_var", &running_var);
  }
}

Tensor BatchNorm2d::forward(const Tensor& x) {
  // Without running statistics, eval mode also uses batch statistics (as PyTorch does).
  const bool use_batch_stats = is_training() || !running_mean.defined();
  if (sync_ && use_batch_stats) {
    return dist::sync_batch_norm(x, weight, bias, running_mean, running_var, true, momentum, eps,
                                 *sync_);
  }
  return batch_norm(x, weight, bias, running_mean, running_var, use_batch_stats, momentum, eps);
}

InstanceNorm2d::InstanceNorm2d(int64_t channels, double eps, bool affine)
    : Module("InstanceNorm2d"), eps(eps) {
  RG_CHECK(channels > 0, "InstanceNorm2d: channels must be positive, got ", channels);
  if (affine) {
    weight = Tensor::ones({channels});
    bias = Tensor::zeros({channels});
    register_parameter("weight", &weight);
    register_parameter("bias", &bias);
  }
}

Tensor InstanceNorm2d::forward(const Tensor& x) { return instance_norm(x, weight, bias, eps); }

LayerNorm::LayerNorm(int64_t channels, double eps, bool affine) : Module("LayerNorm"), eps(eps) {
  RG_CHECK(channels > 0, "LayerNorm: channels must be positive, got ", channels);
  if (affine) {
    weight = Tensor::ones({channels});
    bias = Tensor::zeros({channels});
    register_parameter("weight", &weight);
    register_parameter("bias", &bias);
  }
}

Tensor LayerNorm::forward(const Tensor& x) { return layer_norm(x, weight, bias, eps); }

Linear::Linear(int64_t in_features, int64_t out_features, bool with_bias, Generator& gen)
    : Module("Linear") {
  RG_CHECK(in_features > 0 && out_features > 0, "Linear: features (", in_features, ", ",
           out_features, ") must be positive");
  weight = uniform_fan_in({out_features, in_features}, in_features, gen);
  register_parameter("weight", &weight);
  if (with_bias) {
    bias = uniform_fan_in({out_features}, in_features, gen);
    register_parameter("bias", &bias);
  }
}

Tensor Linear::forward(const Tensor& x) { return linear(x, weight, bias); }

Sequential::Sequential(std::vector<std::shared_ptr<Module>> modules) : Sequential() {
  for (auto& m : modules) push_back(std::move(m));
}

void Sequential::push_back(std::shared_ptr<Module> module) {
  RG_CHECK(module != nullptr, "Sequential: null module");
  register_module(std::to_string(children().size()), std::move(module));
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor h = x;
  for (const auto& [name, child] : children()) h = child->forward(h);
  return h;
}

}  // namespace rg::nn
