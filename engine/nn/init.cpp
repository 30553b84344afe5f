#include "engine/nn/init.h"

#include "engine/nn/layers.h"

namespace rg::nn::init {

void normal(Tensor& t, double mean, double stddev, Generator& gen) { normal_(t, mean, stddev, gen); }
void uniform(Tensor& t, double low, double high, Generator& gen) { uniform_(t, low, high, gen); }
void constant(Tensor& t, double value) { t.fill_(value); }

void pix2pix(Module& root, double gain, Generator& gen) {
  root.apply([&](Module& m) {
    if (auto* conv = dynamic_cast<Conv2d*>(&m)) {
      normal(conv->weight, 0.0, gain, gen);
      if (conv->bias.defined()) constant(conv->bias, 0.0);
    } else if (auto* convt = dynamic_cast<ConvTranspose2d*>(&m)) {
      normal(convt->weight, 0.0, gain, gen);
      if (convt->bias.defined()) constant(convt->bias, 0.0);
    } else if (auto* bn = dynamic_cast<BatchNorm2d*>(&m)) {
      if (bn->weight.defined()) {
        normal(bn->weight, 1.0, gain, gen);
        constant(bn->bias, 0.0);
      }
    } else if (auto* in = dynamic_cast<InstanceNorm2d*>(&m)) {
      if (in->weight.defined()) {
        normal(in->weight, 1.0, gain, gen);
        constant(in->bias, 0.0);
      }
    }
  });
}

}  // namespace rg::nn::init
