// The three anomaly detectors of issue 16 behind one interface, so that training (anomaly_run),
// the tests and apps/detect_anomaly score slices the same way:
//
//   fanogan    f-AnoGAN (stage 2): pixel map |x - G(E(x))|, slice score the izi_f residual
//              ||x - G(E(x))||^2 / n_pixels + kappa * ||f(x) - f(G(E(x)))||^2 / n_features.
//   ae         a convolutional autoencoder of the same size, x -> G(E(x)) with the encoder and
//              generator of models/dcgan.h trained together on L1 (AutoencoderStep): pixel map
//              |x - AE(x)|.
//   threshold  intensity thresholding: pixel map |x - median| / (1.4826 * MAD), median and MAD
//              (median absolute deviation) of the normal training pixels inside the organ mask,
//              a robust z-score: it flags pixels far from the normal intensities on both sides.
//
// The baselines' slice score is the mean of the top 1% of their pixel map inside the organ mask
// (at least one pixel): a small lesion raises it where a mean over the slice would dilute it.
// Outside the organ mask every map is 0 for the baselines (the metrics never look there).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "apps/anomaly/anomaly_gan.h"  // the DCGAN networks (declared) and their steps
#include "engine/device.h"
#include "engine/nn/module.h"

namespace rg::data {
class SliceDataset;
}

namespace rg::app {

enum class AnomalyMethod { FAnoGan, Autoencoder, Threshold };
AnomalyMethod parse_anomaly_method(const std::string& name);  // "fanogan", "ae", "threshold"
const char* anomaly_method_name(AnomalyMethod method);

// The threshold baseline's two numbers as a module (buffer "stats" = [median, scale]), so that a
// checkpoint holds them like any network.
class IntensityThreshold final : public nn::Module {
 public:
  IntensityThreshold();
  void set(double median, double scale);
  double median() const;
  double scale() const;

 private:
  Tensor stats_;
};
// Median and 1.4826 * MAD of every pixel inside the organ mask of the split (throws naming the
// file when no pixel is inside). A MAD of 0 is replaced by 1e-3 (a constant image).
void fit_intensity_threshold(const data::SliceDataset& split, IntensityThreshold& model);

// The fraction of a map's pixels averaged into the baselines' slice score.
inline constexpr double kTopFraction = 0.01;
// Mean of the largest ceil(fraction * n_inside) values of map[p] over the pixels with
// organ[p] != 0 (0 when none is inside).
double top_fraction_mean(const float* map, const uint8_t* organ, int64_t n, double fraction);

// Networks of one method (not owned; those a method does not use stay null).
struct AnomalyNets {
  AnomalyMethod method = AnomalyMethod::FAnoGan;
  models::DcganGenerator* g = nullptr;
  models::DcganCritic* d = nullptr;  // fanogan only
  models::DcganEncoder* e = nullptr;
  IntensityThreshold* threshold = nullptr;
  double kappa = 1.0;
};

struct AnomalyMaps {
  std::vector<double> slice_scores;  // one per slice, higher = more anomalous
  std::vector<float> maps;           // count * height * width
};
// Scores `count` slices (images in [-1, 1], organ masks 0/1; height * width each, row-major) in
// batches of `batch`, networks in eval mode (put back in train mode afterwards), without
// gradients.
AnomalyMaps score_slices(const AnomalyNets& nets, const float* images, const uint8_t* organ,
                         int64_t count, int64_t height, int64_t width, int64_t batch, Device device);

// A trained detector read from a run directory of train_anomaly (its checkpoints/best): stage 2
// of f-AnoGAN, the autoencoder or the threshold. Throws rg::Error naming the directory when it is
// missing, is no anomaly run, or is a stage-1 run (G and the critic alone detect nothing).
struct LoadedAnomalyModel {
  std::unique_ptr<models::DcganGenerator> g;
  std::unique_ptr<models::DcganCritic> d;
  std::unique_ptr<models::DcganEncoder> e;
  std::unique_ptr<IntensityThreshold> threshold;
  AnomalyNets nets;
  int64_t size = 0;       // slice side the networks take (the threshold: the training slices')
  nlohmann::json run;     // the run's configuration (config.json of the run)
  LoadedAnomalyModel();
  ~LoadedAnomalyModel();
  LoadedAnomalyModel(LoadedAnomalyModel&&) noexcept;
};
LoadedAnomalyModel load_anomaly_model(const std::filesystem::path& run_dir, Device device);

}  // namespace rg::app
