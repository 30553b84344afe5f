#include "apps/seg/volume_inference.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "data/progress.h"
#include "data/slice_dataset.h"
#include "data/volume_io.h"
#include "engine/checkpoint.h"
#include "engine/error.h"
#include "engine/roentgen.h"
#include "models/unet.h"
#include "train/settings.h"

namespace rg::app {

namespace fs = std::filesystem;
using train::compute_metrics;
using train::SegMetrics;
using train::Spacing3;
using nlohmann::json;

// ---------------------------------------------------------------- preprocessing

json SlicePreprocessing::to_json() const {
  json j{{"origin", origin},
         {"modality", data::modality_name(modality)},
         {"crop", data::crop_name(crop)},
         {"margin_mm", margin_mm},
         {"size", size},
         {"reorient", reorient}};
  if (modality == data::Modality::CT) j["window"] = window;
  else j["percentiles"] = percentiles;
  return j;
}

namespace {

const std::string* find_attr(const std::vector<std::pair<std::string, std::string>>& attrs,
                             const std::string& name) {
  for (const auto& [k, v] : attrs)
    if (k == name) return &v;
  return nullptr;
}

// "a, b, c" (how read_slices_info renders numeric attributes) -> numbers.
std::vector<double> parse_numbers(const std::string& text, const std::string& what,
                                  const std::string& file) {
  std::vector<double> out;
  std::string s = text;
  std::replace(s.begin(), s.end(), ',', ' ');
  std::istringstream in(s);
  double v;
  while (in >> v) out.push_back(v);
  RG_CHECK(in.eof(), file, ": attribute ", what, " is not a list of numbers: '", text, "'");
  return out;
}

}  // namespace

SlicePreprocessing preprocessing_from_prepared_file(const std::string& path) {
  const data::SlicesFileInfo info = data::read_slices_info(path);  // validates the format
  const auto& attrs = info.attributes;
  auto need = [&](const char* name) -> const std::string& {
    const std::string* v = find_attr(attrs, name);
    RG_CHECK(v != nullptr, path, ": prepared file lacks the root attribute '", name, "'");
    return *v;
  };
  SlicePreprocessing p;
  p.origin = "training file " + path;
  p.modality = data::parse_modality(need("modality"));
  if (p.modality == data::Modality::CT) {
    const auto w = parse_numbers(need("window"), "window", path);
    RG_CHECK(w.size() == 2, path, ": attribute window must hold 2 values");
    p.window = {w[0], w[1]};
  } else {
    const auto q = parse_numbers(need("percentiles"), "percentiles", path);
    RG_CHECK(q.size() == 2, path, ": attribute percentiles must hold 2 values");
    p.percentiles = {q[0], q[1]};
  }
  p.crop = data::parse_crop(need("crop"));
  const auto m = parse_numbers(need("margin_mm"), "margin_mm", path);
  RG_CHECK(m.size() == 1, path, ": attribute margin_mm must hold 1 value");
  p.margin_mm = m[0];
  RG_CHECK(info.height == info.width && info.height > 0, path, ": slices are ", info.height, "x",
           info.width, ", expected square slices");
  p.size = info.height;
  p.reorient = need("orientation").rfind("voxel order", 0) != 0;
  if (const std::string* labels = find_attr(attrs, "mask_labels"); labels && !labels->empty())
    for (double v : parse_numbers(*labels, "mask_labels", path)) p.mask_labels.push_back(static_cast<int>(v));
  if (const std::string* rule = find_attr(attrs, "mask_rule"); rule && rule->rfind("value > ", 0) == 0)
    p.mask_threshold = std::stod(rule->substr(8));
  return p;
}

// ---------------------------------------------------------------- geometry

SliceGeometry plan_slices(const data::Volume& image, const SlicePreprocessing& p,
                          const std::vector<uint8_t>* crop_mask) {
  RG_CHECK(image.voxel_count() > 0 && image.voxels.size() == static_cast<size_t>(image.voxel_count()),
           image.source, ": empty or inconsistent volume");
  RG_CHECK(p.size >= 8, "slice size must be >= 8, got ", p.size);
  data::PrepareOptions po;
  po.modality = p.modality;
  po.window = p.window;
  po.percentiles = p.percentiles;
  SliceGeometry g;
  g.size = p.size;
  g.orientation = data::orientation_of(image, p.reorient);
  const data::SliceOrientation& o = g.orientation;
  if (o.fallback) g.warnings.push_back("oblique affine: voxel order kept (no reorientation), as in training");
  g.norm_range = data::normalization_range(image, po);

  // The crop box, as prepare_slices step 4 computes it.
  data::CropBox box;
  box.lo = {0, 0, 0};
  box.hi = {o.dims[0] - 1, o.dims[1] - 1, o.dims[2] - 1};
  data::CropMode crop = p.crop;
  g.crop_used = data::crop_name(crop);
  if (crop == data::CropMode::Mask) {
    data::CropBox b;
    if (crop_mask) b = data::mask_box(*crop_mask, o);
    if (!crop_mask || b.empty()) {
      if (crop_mask) g.warnings.push_back("predicted mask is empty: cropped to the body instead");
      crop = data::CropMode::Body;
      g.crop_used = "body (mask crop without a mask)";
    } else {
      box = b;
      g.crop_used = "mask (predicted)";
    }
  }
  if (crop == data::CropMode::Body) {
    double thr = p.body_threshold;
    if (std::isnan(thr))
      thr = p.modality == data::Modality::CT ? -500.0 : g.norm_range[0] + 0.05 * (g.norm_range[1] - g.norm_range[0]);
    const data::CropBox b = data::body_box(image, o, thr);
    if (b.empty()) g.warnings.push_back("no body found above the threshold: not cropped");
    else box = b;
  }
  if (crop != data::CropMode::None) {
    for (int a = 0; a < 3; ++a) {
      const int64_t m = static_cast<int64_t>(std::ceil(p.margin_mm / o.spacing[a] - 1e-9));
      box.lo[a] -= m;
      box.hi[a] += m;
    }
    box.lo[2] = std::max<int64_t>(0, box.lo[2]);
    box.hi[2] = std::min<int64_t>(o.dims[2] - 1, box.hi[2]);
  }
  const double S = static_cast<double>(p.size);
  const double cc = 0.5 * static_cast<double>(box.lo[0] + box.hi[0]);
  const double rc = 0.5 * static_cast<double>(box.lo[1] + box.hi[1]);
  const double side_mm = std::max((box.hi[0] - box.lo[0] + 1) * o.spacing[0], (box.hi[1] - box.lo[1] + 1) * o.spacing[1]);
  g.step_c = side_mm / o.spacing[0] / S;
  g.step_r = side_mm / o.spacing[1] / S;
  g.x0 = cc + 0.5 - 0.5 * side_mm / o.spacing[0];
  g.y0 = rc + 0.5 - 0.5 * side_mm / o.spacing[1];
  g.nsx = std::max(1, static_cast<int>(std::ceil(g.step_c - 1e-6)));
  g.nsy = std::max(1, static_cast<int>(std::ceil(g.step_r - 1e-6)));
  g.slice_begin = box.lo[2];
  g.slice_end = box.hi[2] + 1;
  return g;
}

void extract_slice(const data::Volume& image, const SliceGeometry& g, int64_t s, float* out) {
  const data::SliceOrientation& o = g.orientation;
  const int64_t W = o.dims[0], H = o.dims[1], S = g.size;
  const double scale = 2.0 / (g.norm_range[1] - g.norm_range[0]);
  std::vector<float> slice(static_cast<size_t>(W * H));
  for (int64_t r = 0; r < H; ++r)
    for (int64_t c = 0; c < W; ++c) {
      const float v = image.voxels[static_cast<size_t>(o.index(c, r, s))];
      const double t = std::isfinite(v) ? (v - g.norm_range[0]) * scale - 1.0 : -1.0;
      slice[static_cast<size_t>(r * W + c)] = static_cast<float>(std::clamp(t, -1.0, 1.0));
    }
  for (int64_t v = 0; v < S; ++v)
    for (int64_t u = 0; u < S; ++u) {
      double acc = 0;
      for (int qy = 0; qy < g.nsy; ++qy) {
        const double y = g.y0 + (static_cast<double>(v) + (qy + 0.5) / g.nsy) * g.step_r - 0.5;
        for (int qx = 0; qx < g.nsx; ++qx) {
          const double x = g.x0 + (static_cast<double>(u) + (qx + 0.5) / g.nsx) * g.step_c - 0.5;
          acc += data::sample_clamped(slice.data(), W, H, x, y, -1.0f);
        }
      }
      out[v * S + u] = static_cast<float>(acc / (g.nsx * g.nsy));
    }
}

void place_slice(const SliceGeometry& g, int64_t s, const float* probs, float* out) {
  const data::SliceOrientation& o = g.orientation;
  const int64_t W = o.dims[0], H = o.dims[1], S = g.size;
  // Output pixel u covers oriented columns [x0 + u step, x0 + (u + 1) step) (pixel edges);
  // voxel c's centre c + 0.5 sits at output pixel-centre coordinate (c + 0.5 - x0) / step - 0.5.
  for (int64_t r = 0; r < H; ++r) {
    const double v = (static_cast<double>(r) + 0.5 - g.y0) / g.step_r - 0.5;
    for (int64_t c = 0; c < W; ++c) {
      const double u = (static_cast<double>(c) + 0.5 - g.x0) / g.step_c - 0.5;
      out[o.index(c, r, s)] = data::sample_clamped(probs, S, S, u, v, 0.0f);
    }
  }
}

// ---------------------------------------------------------------- the model

SliceModel generator_slice_model(models::UnetGenerator& g, int64_t size, bool bf16) {
  const int64_t n = g.config.num_downs;
  RG_CHECK(n < 62 && size % (int64_t{1} << n) == 0, "the generator (U-Net num_downs ", n,
           ") needs slices whose size divides by 2^", n, " = ", (n < 62 ? (int64_t{1} << n) : 0),
           ", but the slices are ", size, "x", size);
  RG_CHECK(g.config.in_channels == 1 && g.config.out_channels == 1,
           "the generator has ", g.config.in_channels, " input and ", g.config.out_channels,
           " output channels; segmentation needs 1 and 1");
  return [&g, size, bf16](const float* slices, int64_t count, float* probs) {
    NoGradGuard no_grad;
    g.eval();
    const int64_t hw = size * size;
    Tensor x = Tensor::empty({count, size, size, 1});
    std::copy(slices, slices + count * hw, x.data<float>());
    Tensor logits = g.forward(bf16 ? x.to(DType::BF16) : x);
    Tensor p = sigmoid(logits).to(DType::F32).contiguous();
    std::copy(p.data<float>(), p.data<float>() + count * hw, probs);
  };
}

// ---------------------------------------------------------------- inference

namespace {

// One pass of slicing, model, and mapping back; fills `probs` (source voxel order).
int64_t run_pass(const data::Volume& image, const SliceGeometry& g, const SliceModel& model,
                 const InferenceOptions& opt, const std::string& label, std::vector<float>& probs) {
  probs.assign(static_cast<size_t>(image.voxel_count()), 0.0f);
  const int64_t S = g.size, hw = S * S, total = g.num_slices();
  const int64_t batch = std::max<int64_t>(1, opt.batch_size);
  std::vector<float> in(static_cast<size_t>(batch * hw)), out(static_cast<size_t>(batch * hw));
  data::ProgressBar bar(label, static_cast<double>(total), "slices", opt.progress);
  for (int64_t first = 0; first < total; first += batch) {
    const int64_t n = std::min(batch, total - first);
    for (int64_t i = 0; i < n; ++i) extract_slice(image, g, g.slice_begin + first + i, in.data() + i * hw);
    std::fill(out.begin(), out.begin() + n * hw, 0.0f);
    model(in.data(), n, out.data());
    for (int64_t i = 0; i < n; ++i) {
      float* p = out.data() + i * hw;
      for (int64_t k = 0; k < hw; ++k) p[k] = std::isfinite(p[k]) ? std::clamp(p[k], 0.0f, 1.0f) : 0.0f;
      place_slice(g, g.slice_begin + first + i, p, probs.data());
    }
    bar.update(static_cast<double>(first + n));
  }
  bar.finish();
  return total;
}

std::vector<uint8_t> threshold_mask(const std::vector<float>& probs, float threshold) {
  std::vector<uint8_t> m(probs.size());
  for (size_t i = 0; i < probs.size(); ++i) m[i] = probs[i] >= threshold ? 1 : 0;
  return m;
}

}  // namespace

InferenceResult infer_volume(const data::Volume& image, const SlicePreprocessing& p, const SliceModel& model,
                             const InferenceOptions& opt) {
  RG_CHECK(model != nullptr, "infer_volume: no model");
  RG_CHECK(opt.batch_size >= 1, "--batch-size must be >= 1, got ", opt.batch_size);
  RG_CHECK(opt.largest_components >= 0, "--largest-components must be >= 0, got ", opt.largest_components);
  const auto t0 = std::chrono::steady_clock::now();
  InferenceResult r;
  r.geometry = plan_slices(image, p);
  r.slices_run += run_pass(image, r.geometry, model, opt, "infer", r.probabilities);
  r.passes = 1;
  r.mask = threshold_mask(r.probabilities, opt.threshold);
  if (p.crop == data::CropMode::Mask) {
    // Training cropped to the mask's box; the first pass (body crop) found where the mask is.
    std::vector<uint8_t> crop_mask = r.mask;
    if (opt.largest_components > 0) keep_largest_components(crop_mask, image.dims, opt.largest_components);
    SliceGeometry second = plan_slices(image, p, &crop_mask);
    if (second.crop_used == "mask (predicted)") {
      second.warnings.insert(second.warnings.begin(), r.geometry.warnings.begin(), r.geometry.warnings.end());
      r.geometry = std::move(second);
      r.slices_run += run_pass(image, r.geometry, model, opt, "infer (mask crop)", r.probabilities);
      r.passes = 2;
      r.mask = threshold_mask(r.probabilities, opt.threshold);
    } else {
      r.geometry.warnings.push_back("the first pass predicted no mask: kept the body-crop result");
    }
  }
  if (opt.largest_components > 0)
    r.components_found = keep_largest_components(r.mask, image.dims, opt.largest_components);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

int64_t keep_largest_components(std::vector<uint8_t>& mask, const std::array<int64_t, 3>& dims, int64_t n) {
  const int64_t d0 = dims[0], d1 = dims[1], d2 = dims[2];
  RG_CHECK(d0 >= 0 && d1 >= 0 && d2 >= 0 && static_cast<int64_t>(mask.size()) == d0 * d1 * d2,
           "keep_largest_components: mask has ", mask.size(), " voxels, dims say ", d0 * d1 * d2);
  std::vector<int32_t> label(mask.size(), 0);
  std::vector<int64_t> sizes{0};  // sizes[k] = voxels of component k (1-based)
  std::vector<int64_t> stack;
  for (int64_t start = 0; start < static_cast<int64_t>(mask.size()); ++start) {
    if (!mask[static_cast<size_t>(start)] || label[static_cast<size_t>(start)]) continue;
    const int32_t id = static_cast<int32_t>(sizes.size());
    int64_t count = 0;
    label[static_cast<size_t>(start)] = id;
    stack.push_back(start);
    while (!stack.empty()) {
      const int64_t v = stack.back();
      stack.pop_back();
      ++count;
      const int64_t i = v % d0, j = (v / d0) % d1, k = v / (d0 * d1);
      auto visit = [&](int64_t w) {
        if (mask[static_cast<size_t>(w)] && !label[static_cast<size_t>(w)]) {
          label[static_cast<size_t>(w)] = id;
          stack.push_back(w);
        }
      };
      if (i > 0) visit(v - 1);
      if (i + 1 < d0) visit(v + 1);
      if (j > 0) visit(v - d0);
      if (j + 1 < d1) visit(v + d0);
      if (k > 0) visit(v - d0 * d1);
      if (k + 1 < d2) visit(v + d0 * d1);
    }
    sizes.push_back(count);
  }
  const int64_t found = static_cast<int64_t>(sizes.size()) - 1;
  if (n <= 0 || found <= n) return found;
  std::vector<int32_t> order(static_cast<size_t>(found));
  for (int32_t k = 0; k < found; ++k) order[static_cast<size_t>(k)] = k + 1;
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return sizes[static_cast<size_t>(a)] > sizes[static_cast<size_t>(b)];
  });
  std::vector<uint8_t> keep(sizes.size(), 0);
  for (int64_t k = 0; k < n; ++k) keep[static_cast<size_t>(order[static_cast<size_t>(k)])] = 1;
  for (size_t v = 0; v < mask.size(); ++v) mask[v] = keep[static_cast<size_t>(label[v])];
  return found;
}

std::vector<uint8_t> binarize_mask(const data::Volume& mask, const std::vector<int>& labels, double threshold) {
  std::vector<uint8_t> out(mask.voxels.size());
  for (size_t i = 0; i < out.size(); ++i) {
    const float v = mask.voxels[i];
    if (labels.empty()) out[i] = v > threshold;
    else out[i] = std::any_of(labels.begin(), labels.end(), [v](int l) { return v == static_cast<float>(l); });
  }
  return out;
}

void check_same_grid(const data::Volume& image, const data::Volume& other) {
  RG_CHECK(image.dims == other.dims, "grid mismatch: ", other.source, " is ", other.dims[0], "x",
           other.dims[1], "x", other.dims[2], " voxels but ", image.source, " is ", image.dims[0], "x",
           image.dims[1], "x", image.dims[2]);
  double worst = 0;
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 4; ++c) worst = std::max(worst, std::fabs(image.affine[r][c] - other.affine[r][c]));
  RG_CHECK(worst <= 1e-3, "grid mismatch: ", other.source, " and ", image.source,
           " have the same size but different affines (largest difference ", worst,
           " mm): they do not lie on the same voxel grid");
}

train::SegMetrics volume_metrics(const std::vector<uint8_t>& pred, const std::vector<uint8_t>& target,
                          const data::Volume& grid) {
  RG_CHECK(pred.size() == target.size() && static_cast<int64_t>(pred.size()) == grid.voxel_count(),
           "volume_metrics: sizes differ");
  return compute_metrics(pred.data(), target.data(), static_cast<int>(grid.dims[0]),
                         static_cast<int>(grid.dims[1]), static_cast<int>(grid.dims[2]),
                         Spacing3{grid.spacing[0], grid.spacing[1], grid.spacing[2]});
}

// ---------------------------------------------------------------- the tool

namespace {

bool is_nifti_path(const std::string& p) {
  auto ends = [&](const std::string& e) { return p.size() > e.size() && p.compare(p.size() - e.size(), e.size(), e) == 0; };
  return ends(".nii") || ends(".nii.gz");
}

void check_output_path(const std::string& path, const char* flag) {
  RG_CHECK(is_nifti_path(path), flag, " ", path, ": the output must be a NIfTI file (.nii or .nii.gz)");
  const fs::path parent = fs::path(path).parent_path();
  std::error_code ec;
  RG_CHECK(parent.empty() || fs::is_directory(parent, ec), flag, " ", path, ": directory ",
           parent.string(), " does not exist");
}

json number_or_null(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

}  // namespace

json run_infer_seg(const InferSegOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  RG_CHECK(!o.checkpoint.empty(), "--checkpoint: no checkpoint given");
  RG_CHECK(!o.input.empty(), "--input: no input volume given");
  RG_CHECK(!o.output.empty(), "--output: no output path given");
  check_output_path(o.output, "--output");
  if (!o.probabilities.empty()) check_output_path(o.probabilities, "--probabilities");
  RG_CHECK(!(o.gt_labels && o.gt_threshold), "--gt-labels and --gt-threshold exclude each other");
  RG_CHECK(o.inference.threshold > 0 && o.inference.threshold <= 1, "--threshold must be in (0, 1], got ",
           o.inference.threshold);
  std::error_code ec;
  RG_CHECK(fs::exists(o.checkpoint, ec), "--checkpoint: ", o.checkpoint, " does not exist");

  // ---- the checkpoint: G's config, weights, and the run that trained it
  SafetensorsFile ck = load_safetensors(o.checkpoint);
  RG_CHECK(ck.metadata.count("generator_config"), o.checkpoint,
           ": not a roentgen segmentation checkpoint (no generator_config metadata)");
  const models::UnetConfig gc = models::unet_config_from_json(ck.metadata["generator_config"]);
  json run;
  if (ck.metadata.count("roentgen")) {
    const json meta = json::parse(ck.metadata["roentgen"], nullptr, false);
    if (!meta.is_discarded() && meta.contains("run") && meta["run"].is_object()) run = meta["run"];
  }
  Generator init(0);
  models::UnetGenerator g(gc, init);
  {
    NamedTensors gstate;
    for (auto& [name, t] : ck.tensors)
      if (name.rfind("G.", 0) == 0) gstate.emplace_back(name, t);
    RG_CHECK(!gstate.empty(), o.checkpoint, ": holds no generator tensors (G.*)");
    try {
      load_module_state(g, gstate, "G.");
    } catch (const Error& e) {
      RG_FAIL(o.checkpoint, ": generator weights do not match its generator_config: ", e.what());
    }
  }
  ck.tensors.clear();

  // ---- preprocessing: the training file's attributes, else (and over them) the flags
  std::string prepared = o.prepared;
  if (prepared.empty() && run.contains("data") && run["data"].is_string()) prepared = run["data"].get<std::string>();
  SlicePreprocessing pre;
  std::vector<std::string> notes;
  const bool have_prepared = !prepared.empty() && fs::exists(prepared, ec);
  if (have_prepared) {
    pre = preprocessing_from_prepared_file(prepared);
  } else {
    RG_CHECK(o.prepared.empty(), "--prepared: ", o.prepared, " does not exist");
    RG_CHECK(o.modality && o.size, "the training file ", (prepared.empty() ? std::string("(not recorded)") : prepared),
             " of checkpoint ", o.checkpoint,
             " is not available, so the preprocessing must be given: --modality ct|mri and --size N "
             "(and --window a,b or --percentiles a,b, --crop, --margin as the data was prepared), "
             "or --prepared FILE.h5");
    pre.origin = "flags";
  }
  bool overridden = false;
  if (o.modality) { pre.modality = data::parse_modality(*o.modality); overridden = true; }
  if (o.window) { pre.window = *o.window; overridden = true; }
  if (o.percentiles) { pre.percentiles = *o.percentiles; overridden = true; }
  if (o.size) { pre.size = *o.size; overridden = true; }
  if (o.crop) { pre.crop = data::parse_crop(*o.crop); overridden = true; }
  if (o.margin_mm) { pre.margin_mm = *o.margin_mm; overridden = true; }
  if (have_prepared && overridden) {
    pre.origin += " (with flags overriding it)";
    notes.push_back("preprocessing flags override the training file's attributes: the model may see "
                    "slices unlike its training data");
  }
  RG_CHECK(pre.size >= 8 && pre.size <= 4096, "--size must be in [8, 4096], got ", pre.size);
  const train::Precision precision = train::parse_precision(
      run.value("precision", std::string("fp32")), o.checkpoint + " (the run's precision)");
  SliceModel model = generator_slice_model(g, pre.size, precision == train::Precision::Bf16);

  // ---- volumes
  const data::Volume image = data::read_volume(o.input);
  RG_CHECK(image.voxel_count() > 0, o.input, ": empty volume");
  data::Volume gt;
  std::vector<uint8_t> target;
  std::vector<int> gt_labels = pre.mask_labels;
  double gt_threshold = pre.mask_threshold;
  if (!o.ground_truth.empty()) {
    gt = data::read_volume(o.ground_truth);
    check_same_grid(image, gt);
    if (o.gt_labels) {
      gt_labels = *o.gt_labels;
    } else if (o.gt_threshold) {
      gt_labels.clear();
      gt_threshold = *o.gt_threshold;
    }
    target = binarize_mask(gt, gt_labels, gt_threshold);
  }

  // ---- run
  std::cerr << "infer_seg: " << o.input << " (" << image.dims[0] << "x" << image.dims[1] << "x" << image.dims[2]
            << ", " << image.spacing[0] << "x" << image.spacing[1] << "x" << image.spacing[2]
            << " mm); G unet num_downs " << gc.num_downs << " ngf " << gc.ngf << "; preprocessing from "
            << pre.origin << ": " << data::modality_name(pre.modality) << ", crop " << data::crop_name(pre.crop)
            << ", " << pre.size << "x" << pre.size << "\n";
  for (const auto& n : notes) std::cerr << "infer_seg: note: " << n << "\n";
  InferenceResult r = infer_volume(image, pre, model, o.inference);
  for (const auto& w : r.geometry.warnings) std::cerr << "infer_seg: warning: " << w << "\n";

  // ---- outputs (each written atomically)
  data::Volume out;
  out.dims = image.dims;
  out.spacing = image.spacing;
  out.affine = image.affine;
  out.voxels.assign(r.mask.begin(), r.mask.end());
  data::write_nifti(o.output, out, data::NiftiOut::UInt8);
  if (!o.probabilities.empty()) {
    out.voxels = r.probabilities;
    data::write_nifti(o.probabilities, out, data::NiftiOut::Float32);
  }

  int64_t fg = 0;
  for (uint8_t v : r.mask) fg += v;
  const double voxel_ml = image.spacing[0] * image.spacing[1] * image.spacing[2] / 1000.0;
  const SliceGeometry& geo = r.geometry;
  json report{{"checkpoint", o.checkpoint},
              {"input", o.input},
              {"output", o.output},
              {"dims", image.dims},
              {"spacing_mm", image.spacing},
              {"generator", models::to_json(gc)},
              {"preprocessing", pre.to_json()},
              {"geometry",
               {{"crop", geo.crop_used},
                {"slices", {geo.slice_begin, geo.slice_end}},
                {"window_origin_px", {geo.x0, geo.y0}},
                {"source_px_per_output_px", {geo.step_c, geo.step_r}},
                {"norm_range", geo.norm_range},
                {"oriented_axes",
                 {geo.orientation.flip[0] ? -(geo.orientation.perm[0] + 1) : geo.orientation.perm[0] + 1,
                  geo.orientation.flip[1] ? -(geo.orientation.perm[1] + 1) : geo.orientation.perm[1] + 1,
                  geo.orientation.flip[2] ? -(geo.orientation.perm[2] + 1) : geo.orientation.perm[2] + 1}}}},
              {"passes", r.passes},
              {"slices_run", r.slices_run},
              {"threshold", o.inference.threshold},
              {"foreground_voxels", fg},
              {"foreground_ml", static_cast<double>(fg) * voxel_ml},
              {"inference_seconds", r.seconds},
              {"warnings", geo.warnings}};
  if (!o.probabilities.empty()) report["probabilities"] = o.probabilities;
  if (o.inference.largest_components > 0) {
    report["largest_components"] = o.inference.largest_components;
    report["components_found"] = r.components_found;
  }
  if (!o.ground_truth.empty()) {
    const SegMetrics m = volume_metrics(r.mask, target, image);
    int64_t gt_fg = 0;
    for (uint8_t v : target) gt_fg += v;
    report["ground_truth"] = {{"path", o.ground_truth},
                              {"rule", gt_labels.empty() ? "value > " + detail::make_message(gt_threshold)
                                                         : std::string("value in labels")},
                              {"labels", gt_labels},
                              {"foreground_voxels", gt_fg},
                              {"foreground_ml", static_cast<double>(gt_fg) * voxel_ml}};
    report["metrics"] = {{"dice", m.dice}, {"iou", m.iou}, {"hd95_mm", number_or_null(m.hd95)}};
  }
  report["total_seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!o.report.empty()) write_file_atomic(o.report, report.dump(2) + "\n");
  return report;
}

std::string format_infer_report(const json& r) {
  std::ostringstream os;
  os << "wrote " << r.at("output").get<std::string>();
  if (r.contains("probabilities")) os << " and " << r["probabilities"].get<std::string>();
  const auto& d = r.at("dims");
  os << " (" << d[0] << "x" << d[1] << "x" << d[2] << ")\n";
  char line[256];
  std::snprintf(line, sizeof line, "  slices %lld in %d pass(es), %.1f s; foreground %lld voxels (%.1f mL)\n",
                static_cast<long long>(r.at("slices_run").get<int64_t>()), r.at("passes").get<int>(),
                r.at("inference_seconds").get<double>(),
                static_cast<long long>(r.at("foreground_voxels").get<int64_t>()), r.at("foreground_ml").get<double>());
  os << line;
  if (r.contains("components_found"))
    os << "  kept the " << r["largest_components"] << " largest of " << r["components_found"] << " components\n";
  if (r.contains("metrics")) {
    const auto& m = r["metrics"];
    std::snprintf(line, sizeof line, "  vs %s (%.1f mL): Dice %.4f  IoU %.4f  HD95 ",
                  r["ground_truth"]["path"].get<std::string>().c_str(),
                  r["ground_truth"]["foreground_ml"].get<double>(), m["dice"].get<double>(),
                  m["iou"].get<double>());
    os << line;
    if (m["hd95_mm"].is_null()) os << "inf (one mask is empty)\n";
    else {
      std::snprintf(line, sizeof line, "%.2f mm\n", m["hd95_mm"].get<double>());
      os << line;
    }
  }
  return os.str();
}

}  // namespace rg::app
