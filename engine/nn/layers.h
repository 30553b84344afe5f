// The layers the pix2pix networks are built from. Shapes follow the engine's conventions:
// inputs NHWC; Conv2d weight [out][kh][kw][in]; ConvTranspose2d weight [in][kh][kw][out].
#pragma once

#include <memory>
#include <vector>

#include "engine/nn/module.h"
#include "engine/ops/ops.h"
#include "engine/rng.h"

namespace rg::dist {
class Communicator;
}

namespace rg::nn {

struct ConvOptions {
  int64_t kernel = 3;
  int64_t stride = 1;
  int64_t padding = 0;
  int64_t output_padding = 0;  // ConvTranspose2d only
  bool bias = true;
  // Conv2d only: spectral normalization (Miyato et al. 2018, as PyTorch's spectral_norm): the
  // convolution uses weight / sigma, sigma the largest singular value of the weight as an
  // [out, kh*kw*in] matrix, estimated by one power iteration per training forward.
  bool spectral_norm = false;
};

// Weights and bias start uniform in +-1/sqrt(fan_in) (PyTorch's default); pix2pix re-initializes
// with init::pix2pix (engine/nn/init.h).
class Conv2d final : public Module {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, ConvOptions options,
         Generator& gen = default_generator());
  Tensor forward(const Tensor& x) override;
  Tensor weight, bias;  // bias undefined when options.bias is false
  const ConvOptions options;
  // Spectral normalization's power-iteration vectors (buffers "weight_u" [out] and "weight_v"
  // [kh*kw*in], unit length; undefined without it). In training mode every forward first does
  // one iteration (v = W^T u / |W^T u|, u = W v / |W v|, no gradient); eval mode uses them as
  // they are. sigma = u^T W v carries the gradient to the weight, with u and v constants.
  Tensor weight_u, weight_v;
  // Runs `iterations` power iterations now (e.g. after re-initializing the weight, so that the
  // first forward starts from a good estimate). No-op without spectral normalization.
  void reset_spectral_norm(int iterations = 15);
  // The current estimate of sigma (u^T W v), without updating u and v.
  double spectral_sigma() const;

 private:
  void power_iteration();
  Tensor sigma() const;  // u^T W v, differentiable in W
  Tensor normalized_weight() const;
};

class ConvTranspose2d final : public Module {
 public:
  ConvTranspose2d(int64_t in_channels, int64_t out_channels, ConvOptions options,
                  Generator& gen = default_generator());
  Tensor forward(const Tensor& x) override;
  Tensor weight, bias;
  const ConvOptions options;
};

class BatchNorm2d final : public Module {
 public:
  explicit BatchNorm2d(int64_t channels, double eps = 1e-5, double momentum = 0.1,
                       bool affine = true, bool track_running_stats = true);
  Tensor forward(const Tensor& x) override;
  Tensor weight, bias;               // gamma, beta (undefined without affine)
  Tensor running_mean, running_var;  // buffers (undefined without tracking)
  const double eps, momentum;
  // SyncBatchNorm: with a communicator, training-mode statistics are reduced over all ranks
  // (dist::sync_batch_norm; dist::convert_sync_batch_norm sets it on a whole model). Names,
  // parameters and buffers are unchanged. nullptr (the default): ordinary local batch norm.
  void set_sync(dist::Communicator* comm) { sync_ = comm; }
  dist::Communicator* sync() const { return sync_; }

 private:
  dist::Communicator* sync_ = nullptr;
};

// pix2pix uses InstanceNorm2d(affine=False, track_running_stats=False): statistics always come
// from the instance, in train and eval mode alike.
class InstanceNorm2d final : public Module {
 public:
  explicit InstanceNorm2d(int64_t channels, double eps = 1e-5, bool affine = false);
  Tensor forward(const Tensor& x) override;
  Tensor weight, bias;
  const double eps;
};

// Normalizes each sample over all its dimensions (layer_norm); with affine, a scale and shift
// per channel ([C], broadcast over H and W). The usual normalization of a WGAN-GP critic, which
// must not mix samples as batch norm does.
class LayerNorm final : public Module {
 public:
  explicit LayerNorm(int64_t channels, double eps = 1e-5, bool affine = true);
  Tensor forward(const Tensor& x) override;
  Tensor weight, bias;  // undefined without affine
  const double eps;
};

// x [..., in] -> [..., out]; weight [out][in] and bias [out] start uniform in +-1/sqrt(in).
class Linear final : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true,
         Generator& gen = default_generator());
  Tensor forward(const Tensor& x) override;
  Tensor weight, bias;
};

// PyTorch's ReflectionPad2d(pad) on NHWC inputs (reflection_pad2d); no parameters.
class ReflectionPad2d final : public Module {
 public:
  explicit ReflectionPad2d(int64_t pad) : Module("ReflectionPad2d"), pad(pad) {}
  Tensor forward(const Tensor& x) override { return reflection_pad2d(x, pad); }
  const int64_t pad;
};

class ReLU final : public Module {
 public:
  ReLU() : Module("ReLU") {}
  Tensor forward(const Tensor& x) override { return relu(x); }
};

class LeakyReLU final : public Module {
 public:
  explicit LeakyReLU(double negative_slope = 0.01)
      : Module("LeakyReLU"), negative_slope(negative_slope) {}
  Tensor forward(const Tensor& x) override { return leaky_relu(x, negative_slope); }
  const double negative_slope;
};

class Sigmoid final : public Module {
 public:
  Sigmoid() : Module("Sigmoid") {}
  Tensor forward(const Tensor& x) override { return sigmoid(x); }
};

class Tanh final : public Module {
 public:
  Tanh() : Module("Tanh") {}
  Tensor forward(const Tensor& x) override { return tanh(x); }
};

// Identity in eval mode. The mask stream comes from `gen` (kept by reference).
class Dropout final : public Module {
 public:
  explicit Dropout(double p = 0.5, Generator& gen = default_generator())
      : Module("Dropout"), p(p), gen_(gen) {}
  Tensor forward(const Tensor& x) override { return dropout(x, p, is_training(), gen_); }
  const double p;

 private:
  Generator& gen_;
};

// Applies its children in order; children are named "0", "1", ... as in PyTorch.
class Sequential final : public Module {
 public:
  Sequential() : Module("Sequential") {}
  explicit Sequential(std::vector<std::shared_ptr<Module>> modules);
  void push_back(std::shared_ptr<Module> module);
  Tensor forward(const Tensor& x) override;
  size_t size() const { return children().size(); }
  Module& operator[](size_t i) const { return *children()[i].second; }
};

}  // namespace rg::nn
