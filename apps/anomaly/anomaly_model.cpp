#include "apps/anomaly/anomaly_model.h"

#include <algorithm>
#include <cmath>
#include <functional>

#include "apps/anomaly/anomaly_gan.h"
#include "data/slice_dataset.h"
#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/ops.h"
#include "models/dcgan.h"
#include "train/checkpoint.h"

namespace rg::app {

namespace fs = std::filesystem;
using nlohmann::json;

AnomalyMethod parse_anomaly_method(const std::string& name) {
  if (name == "fanogan") return AnomalyMethod::FAnoGan;
  if (name == "ae") return AnomalyMethod::Autoencoder;
  if (name == "threshold") return AnomalyMethod::Threshold;
  RG_FAIL("--method: unknown method '", name, "' (expected fanogan, ae or threshold)");
}

const char* anomaly_method_name(AnomalyMethod method) {
  switch (method) {
    case AnomalyMethod::FAnoGan: return "fanogan";
    case AnomalyMethod::Autoencoder: return "ae";
    case AnomalyMethod::Threshold: return "threshold";
  }
  return "?";
}

IntensityThreshold::IntensityThreshold() : nn::Module("IntensityThreshold") {
  stats_ = Tensor::from_vector(std::vector<float>{0.0f, 1.0f}, {2});
  register_buffer("stats", &stats_);
}

void IntensityThreshold::set(double median, double scale) {
  RG_CHECK(std::isfinite(median) && std::isfinite(scale) && scale > 0,
           "intensity threshold: bad statistics (median ", median, ", scale ", scale, ")");
  stats_ = Tensor::from_vector(std::vector<float>{static_cast<float>(median), static_cast<float>(scale)},
                               {2}).to(stats_.device());
}

double IntensityThreshold::median() const { return stats_.to(Device::cpu()).to_vector<float>().at(0); }
double IntensityThreshold::scale() const { return stats_.to(Device::cpu()).to_vector<float>().at(1); }

void fit_intensity_threshold(const data::SliceDataset& split, IntensityThreshold& model) {
  const int64_t hw = split.height() * split.width();
  std::vector<float> image(static_cast<size_t>(hw)), mask(static_cast<size_t>(hw)), inside;
  for (int64_t i = 0; i < split.size(); ++i) {
    split.read(i, image.data(), mask.data());
    for (int64_t p = 0; p < hw; ++p) {
      if (mask[static_cast<size_t>(p)] >= 0.5f) inside.push_back(image[static_cast<size_t>(p)]);
    }
  }
  RG_CHECK(!inside.empty(), split.path(), ": the ", split.split(),
           " split has no pixel inside the organ mask (the threshold baseline fits nothing)");
  const auto median_of = [](std::vector<float>& v) {
    const size_t mid = v.size() / 2;
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid), v.end());
    double m = v[mid];
    if (v.size() % 2 == 0) m = 0.5 * (m + *std::max_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid)));
    return m;
  };
  const double median = median_of(inside);
  for (float& v : inside) v = static_cast<float>(std::fabs(v - median));
  const double mad = median_of(inside);
  // 1.4826 * MAD estimates the standard deviation of a normal distribution.
  model.set(median, std::max(1e-3, 1.4826 * mad));
}

double top_fraction_mean(const float* map, const uint8_t* organ, int64_t n, double fraction) {
  std::vector<float> inside;
  for (int64_t p = 0; p < n; ++p) {
    if (organ[p]) inside.push_back(map[p]);
  }
  if (inside.empty()) return 0.0;
  const auto k = static_cast<size_t>(std::max<double>(1.0, std::ceil(fraction * static_cast<double>(inside.size()))));
  std::partial_sort(inside.begin(), inside.begin() + static_cast<std::ptrdiff_t>(k), inside.end(), std::greater<>());
  double s = 0;
  for (size_t i = 0; i < k; ++i) s += inside[i];
  return s / static_cast<double>(k);
}

AnomalyMaps score_slices(const AnomalyNets& nets, const float* images, const uint8_t* organ,
                         int64_t count, int64_t height, int64_t width, int64_t batch, Device device) {
  RG_CHECK(batch > 0, "score_slices: batch must be > 0, got ", batch);
  const int64_t hw = height * width;
  AnomalyMaps out;
  out.maps.assign(static_cast<size_t>(count * hw), 0.0f);
  out.slice_scores.assign(static_cast<size_t>(count), 0.0);
  if (nets.method == AnomalyMethod::Threshold) {
    RG_CHECK(nets.threshold != nullptr, "score_slices: the threshold baseline has no statistics");
    const double median = nets.threshold->median(), scale = nets.threshold->scale();
    for (int64_t p = 0; p < count * hw; ++p) {
      if (organ[p]) out.maps[static_cast<size_t>(p)] = static_cast<float>(std::fabs(images[p] - median) / scale);
    }
  } else {
    RG_CHECK(nets.g != nullptr && nets.e != nullptr, "score_slices: ", anomaly_method_name(nets.method),
             " needs an encoder and a generator");
    RG_CHECK(nets.method != AnomalyMethod::FAnoGan || nets.d != nullptr, "score_slices: f-AnoGAN needs the critic");
    NoGradGuard no_grad;
    nets.g->eval();
    nets.e->eval();
    if (nets.d) nets.d->eval();
    for (int64_t start = 0; start < count; start += batch) {
      const int64_t n = std::min(batch, count - start);
      Tensor x = Tensor::empty({n, height, width, 1});
      std::copy(images + start * hw, images + (start + n) * hw, x.data<float>());
      x = x.to(device);
      Tensor reconstruction;
      if (nets.method == AnomalyMethod::FAnoGan) {
        const Residuals r = izif_residuals(*nets.g, *nets.d, *nets.e, x, nets.kappa);
        reconstruction = r.reconstruction;
        const auto sc = r.score.to(Device::cpu()).to_vector<float>();
        for (int64_t i = 0; i < n; ++i) out.slice_scores[static_cast<size_t>(start + i)] = sc[static_cast<size_t>(i)];
      } else {
        reconstruction = nets.g->forward(nets.e->forward(x));
      }
      const auto rv = reconstruction.to(Device::cpu()).to_vector<float>();
      for (int64_t p = 0; p < n * hw; ++p) {
        const int64_t q = start * hw + p;
        out.maps[static_cast<size_t>(q)] = std::fabs(images[q] - rv[static_cast<size_t>(p)]);
      }
    }
    nets.g->train();
    nets.e->train();
    if (nets.d) nets.d->train();
  }
  if (nets.method != AnomalyMethod::FAnoGan) {
    for (int64_t i = 0; i < count; ++i) {
      out.slice_scores[static_cast<size_t>(i)] =
          top_fraction_mean(out.maps.data() + i * hw, organ + i * hw, hw, kTopFraction);
    }
  }
  return out;
}

LoadedAnomalyModel::LoadedAnomalyModel() = default;
LoadedAnomalyModel::~LoadedAnomalyModel() = default;
LoadedAnomalyModel::LoadedAnomalyModel(LoadedAnomalyModel&&) noexcept = default;

LoadedAnomalyModel load_anomaly_model(const fs::path& run_dir, Device device) {
  const fs::path dir = run_dir / "checkpoints";
  json j;
  try {
    j = train::read_checkpoint_json(dir, "best", "anomaly");
  } catch (const Error& e) {
    RG_FAIL("--model ", run_dir.string(), ": no trained anomaly detector there (", e.what(), ")");
  }
  LoadedAnomalyModel m;
  m.run = j.value("run", json::object());
  const AnomalyMethod method = parse_anomaly_method(j.value("method", std::string("fanogan")));
  RG_CHECK(method != AnomalyMethod::FAnoGan || j.value("stage", 0) == 2, "--model ", run_dir.string(),
           ": a stage-1 f-AnoGAN run (G and critic only); detection needs the stage-2 run (--stage 2)");
  m.nets.method = method;
  m.nets.kappa = j.value("kappa", 1.0);
  train::TrainState state;
  if (method == AnomalyMethod::Threshold) {
    m.threshold = std::make_unique<IntensityThreshold>();
    state.modules = {{"T", m.threshold.get()}};
    m.size = j.value("size", int64_t{0});
  } else {
    RG_CHECK(j.contains("dcgan"), "--model ", run_dir.string(), ": checkpoint has no \"dcgan\" entry");
    models::DcganConfig net;
    models::from_json(j.at("dcgan"), net);
    net.validate();
    m.size = net.size;
    m.g = std::make_unique<models::DcganGenerator>(net);
    m.e = std::make_unique<models::DcganEncoder>(net);
    state.modules = {{"G", m.g.get()}, {"E", m.e.get()}};
    if (method == AnomalyMethod::FAnoGan) {
      m.d = std::make_unique<models::DcganCritic>(net);
      state.modules.emplace_back("D", m.d.get());
    }
  }
  train::load_checkpoint(dir, "best", state, "anomaly");
  for (auto& [name, module] : state.modules) module->to(device);
  m.nets.g = m.g.get();
  m.nets.d = m.d.get();
  m.nets.e = m.e.get();
  m.nets.threshold = m.threshold.get();
  return m;
}

}  // namespace rg::app
