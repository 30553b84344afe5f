// An exponential moving average of a network's weights (Polyak averaging), kept in a second
// module of the same architecture and used for evaluation instead of the trained one:
//
//   after update k (k = 1, 2, ...):  average += (1 - d_k) * (live - average)
//   d_k = min(decay, (1 + k) / (10 + k))
//
// The ramp (TensorFlow's ExponentialMovingAverage with num_updates) lets the average follow the
// fast-changing first steps instead of remembering the random initialization for ~1 / (1 -
// decay) steps. Batch-norm running statistics (the buffers) are averaged the same way, so the
// average network normalizes with statistics that match its own weights' history.
//
// Why: at a high learning rate the trained network's validation score jumps from epoch to epoch
// (one Colin27 run: 0.95, 0.74, 0.95 Dice on consecutive epochs), and the best-epoch choice then
// picks noise. The average moves slowly. Measured on Colin27 (train_seg --ema 0.99, three seeds,
// docs/results.md): its validation curve is smooth, but its test Dice is no better.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace rg::nn {
class Module;
}

namespace rg::train {

class WeightAverage {
 public:
  // `average` must have live's parameter and buffer names and shapes (the same architecture);
  // it receives a copy of live's current values and is put in eval mode. decay in [0, 1). Both
  // are read through their registered slots at every update, so a tensor replaced in place
  // (checkpoint loading) is followed; construct it after moving the modules to their device.
  WeightAverage(nn::Module& live, nn::Module& average, double decay);
  // Folds live's current values in; `updates` is the number of updates including this one (the
  // global step after it: a resumed run continues the ramp where it stopped).
  void update(int64_t updates);
  // The factor d_k of update k.
  static double decay_at(double decay, int64_t updates);
  double decay() const { return decay_; }

 private:
  std::vector<Tensor*> live_, average_;  // parameters then buffers, in registration order
  double decay_;
};

}  // namespace rg::train
