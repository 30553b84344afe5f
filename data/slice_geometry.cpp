// Slicing a volume exactly as prepare_slices sliced training data, and mapping slices back onto
// the volume's grid (moved here from apps/seg so that every inference tool shares it).
#include "data/slice_geometry.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <sstream>

#include "data/label_map.h"
#include "data/slice_dataset.h"
#include "engine/error.h"

namespace rg::data {

using nlohmann::json;

// ---------------------------------------------------------------- preprocessing

json SlicePreprocessing::to_json() const {
  json j{{"origin", origin},
         {"modality", modality_name(modality)},
         {"crop", crop_name(crop)},
         {"margin_mm", margin_mm},
         {"size", size},
         {"reorient", reorient}};
  if (modality == Modality::CT) j["window"] = window;
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
  const SlicesFileInfo info = read_slices_info(path);  // validates the format
  const auto& attrs = info.attributes;
  auto need = [&](const char* name) -> const std::string& {
    const std::string* v = find_attr(attrs, name);
    RG_CHECK(v != nullptr, path, ": prepared file lacks the root attribute '", name, "'");
    return *v;
  };
  SlicePreprocessing p;
  p.origin = "training file " + path;
  p.modality = parse_modality(need("modality"));
  if (p.modality == Modality::CT) {
    const auto w = parse_numbers(need("window"), "window", path);
    RG_CHECK(w.size() == 2, path, ": attribute window must hold 2 values");
    p.window = {w[0], w[1]};
  } else {
    const auto q = parse_numbers(need("percentiles"), "percentiles", path);
    RG_CHECK(q.size() == 2, path, ": attribute percentiles must hold 2 values");
    p.percentiles = {q[0], q[1]};
  }
  p.crop = parse_crop(need("crop"));
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

SliceGeometry plan_slices(const Volume& image, const SlicePreprocessing& p,
                          const std::vector<uint8_t>* crop_mask) {
  RG_CHECK(image.voxel_count() > 0 && image.voxels.size() == static_cast<size_t>(image.voxel_count()),
           image.source, ": empty or inconsistent volume");
  RG_CHECK(p.size >= 8, "slice size must be >= 8, got ", p.size);
  PrepareOptions po;
  po.modality = p.modality;
  po.window = p.window;
  po.percentiles = p.percentiles;
  SliceGeometry g;
  g.size = p.size;
  g.orientation = orientation_of(image, p.reorient);
  const SliceOrientation& o = g.orientation;
  if (o.fallback) g.warnings.push_back("oblique affine: voxel order kept (no reorientation), as in training");
  g.norm_range = normalization_range(image, po);

  // The crop box, as prepare_slices step 4 computes it.
  CropBox box;
  box.lo = {0, 0, 0};
  box.hi = {o.dims[0] - 1, o.dims[1] - 1, o.dims[2] - 1};
  CropMode crop = p.crop;
  g.crop_used = crop_name(crop);
  if (crop == CropMode::Mask) {
    CropBox b;
    if (crop_mask) b = mask_box(*crop_mask, o);
    if (!crop_mask || b.empty()) {
      if (crop_mask) g.warnings.push_back("predicted mask is empty: cropped to the body instead");
      crop = CropMode::Body;
      g.crop_used = "body (mask crop without a mask)";
    } else {
      box = b;
      g.crop_used = "mask (predicted)";
    }
  }
  g.body_threshold = body_threshold_or_default(p.body_threshold, p.modality, g.norm_range);
  if (crop == CropMode::Body) {
    const CropBox b = body_box(image, o, g.body_threshold);
    if (b.empty()) g.warnings.push_back("no body found above the threshold: not cropped");
    else box = b;
  }
  if (crop != CropMode::None) {
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

void clear_outside_body(const Volume& image, const SliceGeometry& g, std::vector<uint8_t>& mask) {
  const SliceOrientation& o = g.orientation;
  const int64_t W = o.dims[0], H = o.dims[1];
  RG_CHECK(mask.size() == image.voxels.size(), "clear_outside_body: the mask has ", mask.size(),
           " voxels, the image ", image.voxels.size());
  std::vector<float> slice(static_cast<size_t>(W * H));
  std::vector<uint8_t> background(static_cast<size_t>(W * H)), in_mask(static_cast<size_t>(W * H));
  for (int64_t s = 0; s < o.dims[2]; ++s) {
    for (int64_t r = 0; r < H; ++r)
      for (int64_t c = 0; c < W; ++c) {
        const size_t i = static_cast<size_t>(o.index(c, r, s));
        slice[static_cast<size_t>(r * W + c)] = image.voxels[i];
        in_mask[static_cast<size_t>(r * W + c)] = mask[i];
      }
    mark_background(slice.data(), static_cast<float>(g.body_threshold), H, W, background.data(), in_mask.data());
    for (int64_t r = 0; r < H; ++r)
      for (int64_t c = 0; c < W; ++c)
        if (background[static_cast<size_t>(r * W + c)]) mask[static_cast<size_t>(o.index(c, r, s))] = 0;
  }
}

void extract_slice(const Volume& image, const SliceGeometry& g, int64_t s, float* out) {
  const SliceOrientation& o = g.orientation;
  const int64_t W = o.dims[0], H = o.dims[1], S = g.size;
  const double scale = 2.0 / (g.norm_range[1] - g.norm_range[0]);
  std::vector<float> slice(static_cast<size_t>(W * H));
  for (int64_t r = 0; r < H; ++r)
    for (int64_t c = 0; c < W; ++c) {
      const float v = image.voxels[static_cast<size_t>(o.index(c, r, s))];
      const double t = std::isfinite(v) ? (v - g.norm_range[0]) * scale - 1.0 : -1.0;
      slice[static_cast<size_t>(r * W + c)] = static_cast<float>(std::clamp(t, -1.0, 1.0));
    }
  resample_plane(slice.data(), W, H, S, g.x0, g.y0, g.step_c, g.step_r, g.nsx, g.nsy, -1.0f, out);
}

void place_slice(const SliceGeometry& g, int64_t s, const float* probs, float* out) {
  const SliceOrientation& o = g.orientation;
  const int64_t W = o.dims[0], H = o.dims[1], S = g.size;
  // Output pixel u covers oriented columns [x0 + u step, x0 + (u + 1) step) (pixel edges);
  // voxel c's centre c + 0.5 sits at output pixel-centre coordinate (c + 0.5 - x0) / step - 0.5.
  for (int64_t r = 0; r < H; ++r) {
    const double v = (static_cast<double>(r) + 0.5 - g.y0) / g.step_r - 0.5;
    for (int64_t c = 0; c < W; ++c) {
      const double u = (static_cast<double>(c) + 0.5 - g.x0) / g.step_c - 0.5;
      out[o.index(c, r, s)] = sample_clamped(probs, S, S, u, v, 0.0f);
    }
  }
}

void check_same_grid(const Volume& image, const Volume& other) {
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

bool is_nifti_path(const std::string& p) {
  auto ends = [&](const std::string& e) { return p.size() > e.size() && p.compare(p.size() - e.size(), e.size(), e) == 0; };
  return ends(".nii") || ends(".nii.gz");
}

void check_nifti_output_path(const std::string& path, const char* flag) {
  RG_CHECK(is_nifti_path(path), flag, " ", path, ": the output must be a NIfTI file (.nii or .nii.gz)");
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  std::error_code ec;
  RG_CHECK(parent.empty() || std::filesystem::is_directory(parent, ec), flag, " ", path, ": directory ",
           parent.string(), " does not exist");
}

}  // namespace rg::data
