// How far apart two sets of images are as distributions (mask -> image synthesis, issue 15): the
// Fréchet distance (FID's formula) and the kernel distance (KID: the unbiased MMD^2 estimate with
// a cubic polynomial kernel), both on the features of a fixed network.
//
// The network. No pretrained Inception exists offline (and none for CT or MR), so the features
// come from FeatureEncoder: four 4x4 stride-2 convolutions (1 -> 32 -> 64 -> 128 -> 128
// channels), each followed by LeakyReLU(0.2), then the mean over all pixels: 128 features per
// image. Its weights are He-normal from a fixed seed (kFeatureSeed) and never trained, so every
// run, machine and app computes the same features. Random convolutional features compare local
// texture, edges and intensity statistics at several scales (Naeem et al. 2020 found random
// embeddings usable for such distances); they know nothing of anatomy. So the numbers are for
// comparing runs of this project with one another (lower is closer to the real images), never
// with published FID/KID values, and they are secondary to the Dice the synthetic data buys.
//
// Small samples. A test split holds tens of slices, fewer than the 128 feature dimensions: the
// covariances are then rank-deficient, and FD is biased upwards by a term that shrinks as 1/n;
// it is still exact as a formula (the matrix square root is taken by symmetric eigendecomposition
// and negative eigenvalues from rounding are clipped at 0). KID is unbiased at any sample size,
// which is why it is reported next to FD.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "engine/tensor.h"

namespace rg::train {

inline constexpr uint64_t kFeatureSeed = 20261206;
inline constexpr int64_t kFeatureDim = 128;

// Features a [n_a, d] and b [n_b, d], row-major, n >= 2 each:
// |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a^1/2 S_b S_a^1/2)^1/2), covariances over n - 1.
double frechet_distance(const std::vector<double>& a, const std::vector<double>& b, int64_t d);

// Unbiased MMD^2 between a [n_a, d] and b [n_b, d] with k(x, y) = (x.y / d + 1)^3, averaged over
// `subsets` random draws (without replacement, from `seed`) of m = min(n_a, n_b, subset_size)
// rows of each; sd is over the draws (0 with one draw). With m = n_a = n_b and one subset it is
// the full-sample estimate.
struct KernelDistance {
  double mean = 0, sd = 0;
  int64_t subset_size = 0, subsets = 0;
};
KernelDistance kernel_distance(const std::vector<double>& a, const std::vector<double>& b, int64_t d,
                               int64_t subsets = 100, int64_t subset_size = 1000,
                               uint64_t seed = 1);

// The fixed feature network (see above). Images are [N, H, W, 1] float on the CPU, H and W at
// least 16; returns N x kFeatureDim features, row-major.
class FeatureEncoder {
 public:
  FeatureEncoder();
  ~FeatureEncoder();
  std::vector<double> features(const Tensor& images);

 private:
  struct Layers;
  std::unique_ptr<Layers> layers_;
};

// Both distances between real and synthetic feature sets.
struct DistributionDistance {
  double frechet = 0;
  KernelDistance kid;
  int64_t real = 0, synthetic = 0;
};
DistributionDistance distribution_distance(const std::vector<double>& real,
                                           const std::vector<double>& synthetic);

}  // namespace rg::train
