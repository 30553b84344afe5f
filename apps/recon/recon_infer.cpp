#include "apps/recon/recon_infer.h"

#include <algorithm>
#include <filesystem>
#include <sstream>

#include "apps/recon/recon_run.h"
#include "data/nifti.h"
#include "data/prepare.h"
#include "data/recon_pairs.h"
#include "data/volume_io.h"
#include "engine/checkpoint.h"
#include "engine/roentgen.h"
#include "models/residual.h"
#include "train/checkpoint.h"
#include "train/settings.h"

namespace rg::app {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

data::Volume read_checked(const std::string& path, const std::string& flag) {
  std::error_code ec;
  RG_CHECK(fs::exists(path, ec), flag, ": ", path, " does not exist");
  return data::read_volume(path);
}

void check_same_grid(const data::Volume& a, const std::string& a_name, const data::Volume& b, const std::string& b_name) {
  RG_CHECK(a.dims == b.dims, "grid mismatch: ", a_name, " is ", a.dims[0], "x", a.dims[1], "x", a.dims[2], " but ", b_name,
           " is ", b.dims[0], "x", b.dims[1], "x", b.dims[2]);
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 4; ++c)
      RG_CHECK(std::fabs(a.affine[r][c] - b.affine[r][c]) <= 1e-3 * (1 + std::fabs(a.affine[r][c])), "grid mismatch: ",
               a_name, " and ", b_name, " have different voxel-to-world affines");
}

std::array<double, 2> percentiles_of(const json& meta) {
  // The training file's "percentiles" attribute as text ("0.5, 99.5"); default prepare's.
  std::array<double, 2> p{0.5, 99.5};
  if (meta.contains("percentiles") && meta["percentiles"].is_string()) {
    std::istringstream is(meta["percentiles"].get<std::string>());
    char comma = 0;
    double a = 0, b = 0;
    if (is >> a >> comma >> b && b > a) p = {a, b};
  }
  return p;
}

}  // namespace

ReconInferResult run_recon_inference(const ReconInferOptions& o) {
  RG_CHECK(!o.input.empty(), "--input: no volume given");
  RG_CHECK(!o.output.empty(), "--output: no output path given");
  RG_CHECK(o.batch_size > 0, "--batch-size must be > 0, got ", o.batch_size);
  RG_CHECK(o.mask.empty() || !o.reference.empty(), "--mask: needs --reference (the mask is the metrics' region)");
  const auto [dir, tag] = train::checkpoint_location(o.checkpoint, "--checkpoint", "train_recon");
  const json meta = train::read_checkpoint_json(dir, tag, "recon");
  RG_CHECK(meta.contains("generator") && meta.contains("modality") && meta.contains("file_range"), "--checkpoint: ",
           (dir / tag).string(), " lacks the generator or normalization entries of a train_recon checkpoint");
  const models::ResidualGenerator::BodyConfig body = models::ResidualGenerator::body_from_json(meta["generator"]);
  const bool ct = meta["modality"].get<std::string>() == "ct";

  // Every input is read and checked before anything is written.
  data::Volume in = read_checked(o.input, "--input");
  data::Volume ref, mask;
  if (!o.reference.empty()) {
    ref = read_checked(o.reference, "--reference");
    check_same_grid(in, o.input, ref, o.reference);
  }
  if (!o.mask.empty()) {
    mask = read_checked(o.mask, "--mask");
    check_same_grid(in, o.input, mask, o.mask);
  }
  const fs::path out_path(o.output);
  std::error_code ec;
  RG_CHECK(!out_path.has_parent_path() || fs::is_directory(out_path.parent_path(), ec), "--output: directory ",
           out_path.parent_path().string(), " does not exist");

  const Device device = train::resolve_device(o.device);
  Generator init(0);
  models::ResidualGenerator g(body, init, meta.value("residual_scale", 1.0));
  train::TrainState state;
  state.modules.emplace_back("G", &g);
  train::load_checkpoint(dir, tag, state, "recon");
  g.to(device);
  g.eval();

  // Normalization of this volume (see recon_infer.h).
  std::array<double, 2> range{meta["file_range"][0].get<double>(), meta["file_range"][1].get<double>()};
  if (!ct) {
    const auto p = percentiles_of(meta);
    range = {data::percentile(in.voxels, p[0]), data::percentile(in.voxels, p[1])};
    if (!(range[1] > range[0])) range[1] = range[0] + 1;
  }
  const double scale = 2.0 / (range[1] - range[0]);
  auto normalize = [&](float v) {
    return std::isfinite(v) ? static_cast<float>(std::clamp((v - range[0]) * scale - 1.0, -1.0, 1.0)) : -1.0f;
  };
  auto units = [&](float v) { return static_cast<float>(range[0] + (static_cast<double>(v) + 1.0) / scale); };

  const data::SliceOrientation ori = data::orientation_of(in, true);
  const int64_t W = ori.dims[0], H = ori.dims[1], D = ori.dims[2];
  // The ResNet body's reflection pads need at least 8 rows and columns.
  const int64_t mult = g.size_multiple();
  const int64_t Wp = std::max<int64_t>((W + mult - 1) / mult * mult, 8),
                Hp = std::max<int64_t>((H + mult - 1) / mult * mult, 8);
  data::Volume out = in;
  out.source_dtype = "float32";
  {
    NoGradGuard no_grad;
    for (int64_t s0 = 0; s0 < D; s0 += o.batch_size) {
      const int64_t count = std::min(o.batch_size, D - s0);
      Tensor x = Tensor::full({count, Hp, Wp, 1}, -1.0f);
      float* xp = x.data<float>();
      for (int64_t i = 0; i < count; ++i)
        for (int64_t r = 0; r < H; ++r)
          for (int64_t c = 0; c < W; ++c)
            xp[(i * Hp + r) * Wp + c] = normalize(in.voxels[static_cast<size_t>(ori.index(c, r, s0 + i))]);
      const Tensor y = g.forward(x.to(device)).to(Device::cpu()).contiguous();
      const float* yp = y.data<float>();
      for (int64_t i = 0; i < count; ++i)
        for (int64_t r = 0; r < H; ++r)
          for (int64_t c = 0; c < W; ++c)
            out.voxels[static_cast<size_t>(ori.index(c, r, s0 + i))] = units(yp[(i * Hp + r) * Wp + c]);
    }
  }

  ReconInferResult result;
  result.report = json{{"input", o.input},
                       {"output", o.output},
                       {"checkpoint", (dir / tag).string()},
                       {"grid", {in.dims[0], in.dims[1], in.dims[2]}},
                       {"spacing_mm", {in.spacing[0], in.spacing[1], in.spacing[2]}},
                       {"normalization", {{"units_of_-1", range[0]}, {"units_of_+1", range[1]}}},
                       {"training_slice_size", meta.value("slice_size", json::array())},
                       {"note", "slices run at the volume's own pixel size, no resampling"}};
  result.summary = "wrote " + o.output + " (" + std::to_string(in.dims[0]) + "x" + std::to_string(in.dims[1]) + "x" +
                   std::to_string(in.dims[2]) + ", float32, the input's grid)";
  if (!o.reference.empty()) {
    const std::string region_text = o.mask.empty() ? (ct ? "body: reference > -500 HU" : "body: reference above 5% of the normalized range")
                                              : "mask " + o.mask + " > 0";
    const ReconMetricSettings st =
        ct ? ct_metric_settings(range, region_text)
           : mri_metric_settings("intensities normalized by the input's percentile range to [-1, 1]", region_text);
    ReconScorer scorer(st);
    std::vector<float> ou(static_cast<size_t>(W * H)), iu(ou.size()), ru(ou.size());
    std::vector<uint8_t> region(ou.size());
    for (int64_t s = 0; s < D; ++s) {
      for (int64_t r = 0; r < H; ++r)
        for (int64_t c = 0; c < W; ++c) {
          const size_t k = static_cast<size_t>(r * W + c), v = static_cast<size_t>(ori.index(c, r, s));
          if (ct) {
            ou[k] = out.voxels[v];
            iu[k] = in.voxels[v];
            ru[k] = ref.voxels[v];
            region[k] = o.mask.empty() ? ref.voxels[v] > -500.0f : mask.voxels[v] > 0;
          } else {
            ou[k] = normalize(out.voxels[v]);
            iu[k] = normalize(in.voxels[v]);
            ru[k] = normalize(ref.voxels[v]);
            region[k] = o.mask.empty() ? ru[k] > -0.9f : mask.voxels[v] > 0;
          }
        }
      scorer.add(ou.data(), iu.data(), ru.data(), region.data(), static_cast<int>(H), static_cast<int>(W));
    }
    result.report["reference"] = o.reference;
    result.report["metrics"] = recon_metrics_json(st, scorer.output(), scorer.input());
    result.summary += "\n" + recon_metrics_summary(st, scorer.output(), scorer.input());
    if (const std::optional<ReconNoisePower> nps = scorer.noise_power()) {
      result.report["metrics"]["nps"] = noise_power_json(*nps);
      result.summary += "\n" + noise_power_summary(*nps);
    }
  }
  data::write_nifti(o.output, out, data::NiftiOut::Float32);
  if (!o.report.empty()) write_file_atomic(o.report, result.report.dump(2) + "\n");
  return result;
}

}  // namespace rg::app
