#include "apps/anomaly/detect.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <numeric>
#include <optional>
#include <sstream>
#include <unistd.h>

#include "apps/anomaly/anomaly_eval.h"
#include "apps/anomaly/anomaly_model.h"
#include "apps/anomaly/anomaly_run.h"
#include "apps/seg/volume_inference.h"
#include "data/nifti.h"
#include "data/slice_dataset.h"
#include "data/volume_io.h"
#include "engine/checkpoint.h"
#include "engine/error.h"
#include "train/plots.h"
#include "train/settings.h"

namespace rg::app {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Removes a temporary output directory unless released.
struct TempDirGuard {
  fs::path path;
  bool keep = false;
  ~TempDirGuard() {
    if (keep) return;
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// The voxels of `mask` (> 0.5 inside) resampled onto the slices like the image (area-averaged,
// then >= 0.5), n slices of size*size.
std::vector<uint8_t> slice_mask(const data::Volume& mask, const SliceGeometry& g) {
  SliceGeometry identity = g;
  identity.norm_range = {-1.0, 1.0};  // extract_slice maps v -> v: a 0/1 mask stays 0/1
  data::Volume binary = mask;
  for (float& v : binary.voxels) v = v > 0.5f ? 1.0f : 0.0f;
  const int64_t hw = g.size * g.size;
  std::vector<float> tmp(static_cast<size_t>(hw));
  std::vector<uint8_t> out(static_cast<size_t>(g.num_slices() * hw));
  for (int64_t k = 0; k < g.num_slices(); ++k) {
    extract_slice(binary, identity, g.slice_begin + k, tmp.data());
    for (int64_t p = 0; p < hw; ++p) out[static_cast<size_t>(k * hw + p)] = tmp[static_cast<size_t>(p)] >= 0.5f;
  }
  return out;
}

// CT volumes hold air (HU well below -500); MRI volumes have no such values. A volume of the
// other kind than the detector was trained on is refused.
void check_modality(const data::Volume& image, const SlicePreprocessing& pre, const std::string& path) {
  float lo = std::numeric_limits<float>::infinity();
  for (float v : image.voxels) {
    if (std::isfinite(v)) lo = std::min(lo, v);
  }
  RG_CHECK(std::isfinite(lo), "--input ", path, ": no finite voxel");
  if (pre.modality == data::Modality::CT) {
    RG_CHECK(lo <= -500, "--input ", path, ": does not look like a CT in Hounsfield units (its minimum is ", lo,
             ", no air below -500 HU), but the detector was trained on CT (", pre.origin, ")");
  } else {
    RG_CHECK(lo > -500, "--input ", path, ": looks like a CT in Hounsfield units (minimum ", lo,
             "), but the detector was trained on MRI (", pre.origin, ")");
  }
}

// The normalized intensity above which a pixel is body (data/prepare's body threshold).
float body_level(const SlicePreprocessing& pre) {
  if (pre.modality == data::Modality::CT) {
    return static_cast<float>((-500.0 - pre.window[0]) / (pre.window[1] - pre.window[0]) * 2.0 - 1.0);
  }
  return -0.9f;  // 5% of the [-1, 1] range above its low end
}

// The validation threshold of the run's test (summary.json), if any.
std::optional<double> run_val_threshold(const fs::path& run_dir) {
  std::ifstream in(run_dir / "summary.json");
  if (!in) return std::nullopt;
  const json j = json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.contains("test") || !j["test"].contains("val_threshold")) return std::nullopt;
  if (!j["test"]["val_threshold"].is_number()) return std::nullopt;
  return j["test"]["val_threshold"].get<double>();
}

// What both inputs (a volume, a prepared file) produce before anything is written.
struct Detection {
  LesionSlices slices;
  AnomalyMaps maps;
  bool with_lesions = false;
  std::optional<data::Volume> map;  // volumes only: the map on the input's grid
  std::vector<std::string> csv_columns;
  std::vector<std::vector<json>> csv_rows;  // per slice, the identifying columns
  json report = json::object();
};

// The map counts inside the organ region only.
void zero_outside_organ(Detection& d) {
  for (size_t p = 0; p < d.maps.maps.size(); ++p) {
    if (!d.slices.organ[p]) d.maps.maps[p] = 0.0f;
  }
}

// A volume: sliced as the training file was prepared, scored, the maps put back on its grid.
Detection detect_volume(const DetectOptions& o, const LoadedAnomalyModel& model, Device device) {
  std::error_code ec;
  std::string prepared = o.prepared;
  if (prepared.empty() && model.run.contains("data") && model.run["data"].is_string()) {
    prepared = model.run["data"].get<std::string>();
  }
  RG_CHECK(!prepared.empty() && fs::exists(prepared, ec), "--model ", o.model, ": its training file ",
           prepared.empty() ? std::string("(not recorded)") : prepared,
           " is not there; pass --prepared FILE.h5 (the file the detector was trained on: it says how to slice)");
  const SlicePreprocessing pre = preprocessing_from_prepared_file(prepared);
  RG_CHECK(pre.size == model.size, "--model ", o.model, ": the detector takes ", model.size, "x", model.size,
           " slices but its training file ", prepared, " has ", pre.size, "x", pre.size);

  const data::Volume image = data::read_volume(o.input);
  RG_CHECK(image.voxel_count() > 0, "--input ", o.input, ": empty volume");
  RG_CHECK(image.dims[0] >= 8 && image.dims[1] >= 8, "--input ", o.input, ": ", image.dims[0], "x", image.dims[1],
           "x", image.dims[2], " voxels is too small for a slice (at least 8x8 in-plane)");
  check_modality(image, pre, o.input);
  data::Volume organ, lesions;
  if (!o.organ_mask.empty()) {
    organ = data::read_volume(o.organ_mask);
    check_same_grid(image, organ);
  }
  if (!o.lesions.empty()) {
    lesions = data::read_volume(o.lesions);
    check_same_grid(image, lesions);
  }

  std::vector<uint8_t> organ_voxels;
  if (!o.organ_mask.empty()) {
    organ_voxels.resize(organ.voxels.size());
    for (size_t i = 0; i < organ_voxels.size(); ++i) organ_voxels[i] = organ.voxels[i] > 0.5f;
  }
  const SliceGeometry g = plan_slices(image, pre, organ_voxels.empty() ? nullptr : &organ_voxels);
  RG_CHECK(g.num_slices() > 0, "--input ", o.input, ": no slice to score (crop ", g.crop_used, ")");
  const int64_t S = g.size, hw = S * S, n = g.num_slices();
  Detection d;
  LesionSlices& slices = d.slices;
  slices.count = n;
  slices.height = slices.width = S;
  slices.images.resize(static_cast<size_t>(n * hw));
  for (int64_t k = 0; k < n; ++k) extract_slice(image, g, g.slice_begin + k, slices.images.data() + k * hw);
  if (!o.organ_mask.empty()) {
    slices.organ = slice_mask(organ, g);
  } else {
    const float level = body_level(pre);
    slices.organ.resize(slices.images.size());
    for (size_t p = 0; p < slices.images.size(); ++p) slices.organ[p] = slices.images[p] > level;
  }
  d.with_lesions = !o.lesions.empty();
  slices.lesion = d.with_lesions ? slice_mask(lesions, g) : std::vector<uint8_t>(slices.images.size(), 0);
  set_lesion_sizes(slices);
  d.maps = score_slices(model.nets, slices.images.data(), slices.organ.data(), n, S, S, o.batch_size, device);
  zero_outside_organ(d);
  data::Volume map;
  map.dims = image.dims;
  map.spacing = image.spacing;
  map.affine = image.affine;
  map.voxels.assign(static_cast<size_t>(image.voxel_count()), 0.0f);
  for (int64_t k = 0; k < n; ++k) place_slice(g, g.slice_begin + k, d.maps.maps.data() + k * hw, map.voxels.data());
  d.map = std::move(map);

  d.csv_columns = {"slice", "source_slice"};
  for (int64_t k = 0; k < n; ++k) {
    const int64_t s = g.slice_begin + k;
    d.csv_rows.push_back({s, g.orientation.source_slice(s)});
  }
  d.report = {{"dims", image.dims},
              {"spacing_mm", image.spacing},
              {"preprocessing", pre.to_json()},
              {"geometry", {{"crop", g.crop_used}, {"slices", {g.slice_begin, g.slice_end}}, {"size", S}}},
              {"organ_region", o.organ_mask.empty() ? "body (normalized intensity above the body level)"
                                                     : "--organ-mask " + o.organ_mask},
              {"warnings", g.warnings}};
  if (pre.crop == data::CropMode::Mask && o.organ_mask.empty()) {
    d.report["warnings"].push_back("the training file was cropped to its mask (" + pre.origin +
                                   "); without --organ-mask the body crop is used, so the slices are scaled "
                                   "unlike the training slices");
  }
  if (d.with_lesions) d.report["lesions"] = o.lesions;
  return d;
}

// A prepared slices file (apps/prepare_data): the slices of one split as they are, the file's
// masks as the organ region, its lesion masks (if any) as the ground truth. No voxel grid, so
// no map NIfTI.
Detection detect_prepared(const DetectOptions& o, const LoadedAnomalyModel& model, Device device) {
  RG_CHECK(o.organ_mask.empty() && o.lesions.empty(), "--input ", o.input,
           ": a prepared file brings its own masks and lesions; --organ-mask and --lesions are for volumes");
  data::SliceDataset ds(o.input, o.split);
  RG_CHECK(ds.size() > 0, "--input ", o.input, ": the ", o.split, " split is empty (--split)");
  RG_CHECK(ds.height() == model.size && ds.width() == model.size, "--input ", o.input, ": its slices are ",
           ds.height(), "x", ds.width(), " but the detector --model ", o.model, " takes ", model.size, "x",
           model.size, " slices");
  Detection d;
  d.slices = read_lesion_slices(ds);
  LesionSlices& slices = d.slices;
  d.with_lesions = ds.has_lesions();
  d.maps = score_slices(model.nets, slices.images.data(), slices.organ.data(), slices.count, slices.height,
                        slices.width, o.batch_size, device);
  zero_outside_organ(d);
  d.csv_columns = {"index", "subject", "slice"};
  for (int64_t i = 0; i < slices.count; ++i) {
    d.csv_rows.push_back({i, ds.subject_names().at(static_cast<size_t>(ds.subject(i))), ds.slice(i)});
  }
  d.report = {{"split", o.split},
              {"organ_region", "the file's masks"},
              {"lesion_masks", ds.has_lesions() ? "the file's /" + o.split + "/lesions" : "none in the file"}};
  return d;
}

}  // namespace

json run_detect_anomaly(const DetectOptions& o) {
  // ---- check everything before computing anything
  RG_CHECK(!o.model.empty(), "--model: no run directory given");
  RG_CHECK(!o.input.empty(), "--input: no volume given");
  RG_CHECK(!o.out.empty(), "--out: no output directory given");
  RG_CHECK(o.batch_size > 0, "--batch-size must be > 0, got ", o.batch_size);
  RG_CHECK(o.overlays >= 0, "--overlays must be >= 0, got ", o.overlays);
  std::error_code ec;
  RG_CHECK(fs::is_directory(o.model, ec), "--model ", o.model, ": no such run directory");
  RG_CHECK(fs::exists(o.input, ec), "--input ", o.input, ": does not exist");
  const fs::path out = fs::path(o.out);
  RG_CHECK(o.overwrite || !fs::exists(out, ec), "--out ", o.out, ": exists (pass --overwrite to replace it)");
  const fs::path parent = out.has_parent_path() ? out.parent_path() : fs::path(".");
  RG_CHECK(fs::is_directory(parent, ec), "--out ", o.out, ": directory ", parent.string(), " does not exist");
  const Device device = train::resolve_device(o.device);
  const LoadedAnomalyModel model = load_anomaly_model(o.model, device);

  Detection d = data::is_hdf5_file(o.input) ? detect_prepared(o, model, device) : detect_volume(o, model, device);
  const LesionSlices& slices = d.slices;
  const AnomalyMaps& maps = d.maps;
  const int64_t n = slices.count, hw = slices.height * slices.width;

  // ---- report
  std::optional<double> threshold = run_val_threshold(o.model);
  std::string threshold_origin = "the run's validation threshold (summary.json)";
  if (!threshold) {
    std::vector<float> inside;
    for (size_t p = 0; p < maps.maps.size(); ++p) {
      if (slices.organ[p]) inside.push_back(maps.maps[p]);
    }
    threshold = inside.empty() ? 0.0 : data::percentile(inside, 99.0);
    threshold_origin = "the 99th percentile of this input's map (the run has no validation threshold)";
  }
  json report = d.report;
  report["model"] = o.model;
  report["method"] = anomaly_method_name(model.nets.method);
  report["input"] = o.input;
  report["threshold"] = *threshold;
  report["threshold_origin"] = threshold_origin;
  std::ostringstream csv;
  for (const auto& c : d.csv_columns) csv << c << ",";
  csv << "score,organ_pixels,lesion_pixels\n";
  json per_slice = json::array();
  for (int64_t k = 0; k < n; ++k) {
    const auto count = [&](const std::vector<uint8_t>& v) {
      return std::accumulate(v.begin() + k * hw, v.begin() + (k + 1) * hw, int64_t{0});
    };
    const int64_t organ_px = count(slices.organ), lesion_px = count(slices.lesion);
    const double score = maps.slice_scores[static_cast<size_t>(k)];
    json row = json::object();
    for (size_t c = 0; c < d.csv_columns.size(); ++c) {
      const json& v = d.csv_rows[static_cast<size_t>(k)][c];
      csv << (v.is_string() ? v.get<std::string>() : v.dump()) << ",";
      row[d.csv_columns[c]] = v;
    }
    csv << score << "," << organ_px << "," << lesion_px << "\n";
    row["score"] = score;
    row["organ_pixels"] = organ_px;
    row["lesion_pixels"] = lesion_px;
    per_slice.push_back(row);
  }
  report["slices"] = per_slice;
  if (d.with_lesions) {
    report["metrics"] = evaluate_anomaly_maps(slices, maps, threshold).metrics;
    report["metrics_grid"] = "the model's " + std::to_string(slices.height) + "x" + std::to_string(slices.width) +
                             " slices, inside the organ region";
  }

  // Overlays of the highest-scoring slices.
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return maps.slice_scores[static_cast<size_t>(a)] > maps.slice_scores[static_cast<size_t>(b)];
  });
  std::vector<train::SegGridRow> rows;
  for (int64_t r = 0; r < std::min(o.overlays, n); ++r) {
    const int64_t k = order[static_cast<size_t>(r)];
    train::SegGridRow row;
    row.height = static_cast<int>(slices.height);
    row.width = static_cast<int>(slices.width);
    row.image.assign(slices.images.begin() + k * hw, slices.images.begin() + (k + 1) * hw);
    row.target.assign(slices.lesion.begin() + k * hw, slices.lesion.begin() + (k + 1) * hw);
    row.prob.assign(maps.maps.begin() + k * hw, maps.maps.begin() + (k + 1) * hw);
    rows.push_back(std::move(row));
  }

  // ---- write everything into a temporary sibling, then rename
  TempDirGuard tmp{fs::path(out.string() + ".tmp-" + std::to_string(getpid()))};
  fs::remove_all(tmp.path, ec);
  fs::create_directories(tmp.path, ec);
  RG_CHECK(!ec, "--out ", o.out, ": cannot create ", tmp.path.string(), ": ", ec.message());
  report["outputs"] = json::array();
  if (d.map) {
    data::write_nifti((tmp.path / "anomaly_map.nii.gz").string(), *d.map, data::NiftiOut::Float32);
    report["outputs"].push_back("anomaly_map.nii.gz");
  }
  write_file_atomic((tmp.path / "scores.csv").string(), csv.str());
  report["outputs"].push_back("scores.csv");
  report["outputs"].push_back("report.json");
  if (!rows.empty()) {
    train::SegGridOptions go;
    go.column_titles = {"image", "lesion", "anomaly map"};
    go.threshold = static_cast<float>(*threshold);
    train::write_segmentation_grid_png((tmp.path / "overlays.png").string(), rows, go);
    report["outputs"].push_back("overlays.png");
  }
  write_file_atomic((tmp.path / "report.json").string(), report.dump(2) + "\n");
  if (fs::exists(out, ec)) {
    RG_CHECK(o.overwrite, "--out ", o.out, ": appeared while running");
    fs::remove_all(out, ec);
    RG_CHECK(!ec, "--out ", o.out, ": cannot replace it: ", ec.message());
  }
  fs::rename(tmp.path, out, ec);
  RG_CHECK(!ec, "--out ", o.out, ": cannot rename ", tmp.path.string(), ": ", ec.message());
  tmp.keep = true;
  return report;
}

}  // namespace rg::app
