#include "train/seg_metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "engine/error.h"

namespace rg::train {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

size_t voxel_count(int width, int height, int depth) {
  return static_cast<size_t>(width) * static_cast<size_t>(height) * static_cast<size_t>(depth);
}

void check_grid(const char* what, int width, int height, int depth, Spacing3 spacing) {
  RG_CHECK(width > 0 && height > 0 && depth > 0, what, ": grid must be positive, got W=", width,
           " H=", height, " D=", depth);
  RG_CHECK(spacing.sx > 0 && spacing.sy > 0 && spacing.sz > 0 && std::isfinite(spacing.sx) &&
               std::isfinite(spacing.sy) && std::isfinite(spacing.sz),
           what, ": spacing must be positive and finite, got (", spacing.sx, ", ", spacing.sy,
           ", ", spacing.sz, ")");
}

size_t count_nonzero(const uint8_t* m, size_t n) {
  size_t c = 0;
  for (size_t i = 0; i < n; ++i) c += m[i] != 0;
  return c;
}

// Surfaces of both masks on the full grid, then the distance computations on the bounding box of
// the union of the two surfaces only: every surface voxel lies inside it, so distances between
// them are unchanged, and small structures in large volumes stay cheap.
struct SurfacePair {
  std::vector<double> a_to_b, b_to_a;
};

SurfacePair surface_distances_both(const uint8_t* a, const uint8_t* b, int width, int height,
                                   int depth, Spacing3 spacing) {
  const std::vector<uint8_t> sa = mask_surface(a, width, height, depth);
  const std::vector<uint8_t> sb = mask_surface(b, width, height, depth);
  int x0 = width, y0 = height, z0 = depth, x1 = -1, y1 = -1, z1 = -1;
  for (int z = 0; z < depth; ++z)
    for (int y = 0; y < height; ++y)
      for (int x = 0; x < width; ++x) {
        const size_t i = (static_cast<size_t>(z) * height + y) * width + x;
        if (sa[i] || sb[i]) {
          x0 = std::min(x0, x), x1 = std::max(x1, x);
          y0 = std::min(y0, y), y1 = std::max(y1, y);
          z0 = std::min(z0, z), z1 = std::max(z1, z);
        }
      }
  SurfacePair out;
  if (x1 < 0) return out;
  const int cw = x1 - x0 + 1, ch = y1 - y0 + 1, cd = z1 - z0 + 1;
  std::vector<uint8_t> ca(voxel_count(cw, ch, cd)), cb(ca.size());
  for (int z = 0; z < cd; ++z)
    for (int y = 0; y < ch; ++y)
      for (int x = 0; x < cw; ++x) {
        const size_t src = (static_cast<size_t>(z + z0) * height + (y + y0)) * width + (x + x0);
        const size_t dst = (static_cast<size_t>(z) * ch + y) * cw + x;
        ca[dst] = sa[src];
        cb[dst] = sb[src];
      }
  const std::vector<double> dt_b = squared_distance_transform(cb.data(), cw, ch, cd, spacing);
  const std::vector<double> dt_a = squared_distance_transform(ca.data(), cw, ch, cd, spacing);
  for (size_t i = 0; i < ca.size(); ++i) {
    if (ca[i]) out.a_to_b.push_back(std::sqrt(dt_b[i]));
    if (cb[i]) out.b_to_a.push_back(std::sqrt(dt_a[i]));
  }
  return out;
}

MetricStats stats_of(const std::vector<double>& v) {
  MetricStats s;
  s.count = static_cast<int>(v.size());
  if (v.empty()) return s;
  double sum = 0.0;
  for (double x : v) sum += x;
  s.mean = sum / static_cast<double>(v.size());
  if (v.size() >= 2) {
    double ss = 0.0;
    for (double x : v) ss += (x - s.mean) * (x - s.mean);
    s.std = std::sqrt(ss / static_cast<double>(v.size() - 1));
  }
  return s;
}

}  // namespace

// ---- building blocks -------------------------------------------------------------------------

std::vector<uint8_t> binarize(const float* values, size_t n, float threshold) {
  std::vector<uint8_t> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = values[i] >= threshold ? 1 : 0;  // NaN compares false
  return out;
}

double dice(const uint8_t* a, const uint8_t* b, size_t n) {
  size_t na = 0, nb = 0, both = 0;
  for (size_t i = 0; i < n; ++i) {
    const bool x = a[i] != 0, y = b[i] != 0;
    na += x, nb += y, both += x && y;
  }
  if (na + nb == 0) return 1.0;
  return 2.0 * static_cast<double>(both) / static_cast<double>(na + nb);
}

double iou(const uint8_t* a, const uint8_t* b, size_t n) {
  size_t both = 0, either = 0;
  for (size_t i = 0; i < n; ++i) {
    const bool x = a[i] != 0, y = b[i] != 0;
    both += x && y, either += x || y;
  }
  if (either == 0) return 1.0;
  return static_cast<double>(both) / static_cast<double>(either);
}

double percentile_linear(std::vector<double>& values, double q) {
  RG_CHECK(q >= 0.0 && q <= 100.0, "percentile_linear: q must be in [0, 100], got ", q);
  if (values.empty()) return std::numeric_limits<double>::quiet_NaN();
  std::sort(values.begin(), values.end());
  const double pos = q / 100.0 * static_cast<double>(values.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  if (lo + 1 >= values.size()) return values.back();
  const double frac = pos - static_cast<double>(lo);
  if (frac == 0.0) return values[lo];  // also keeps inf - inf out of the way
  return values[lo] + frac * (values[lo + 1] - values[lo]);
}

void squared_edt_1d(double* f, int n, size_t stride, double step, std::vector<int>& v,
                    std::vector<double>& z, std::vector<double>& g) {
  if (n <= 0) return;
  const size_t un = static_cast<size_t>(n);
  if (g.size() < un) g.resize(un);
  if (v.size() < un) v.resize(un);
  if (z.size() < un + 1) z.resize(un + 1);
  for (int p = 0; p < n; ++p) g[p] = f[static_cast<size_t>(p) * stride];
  const double w = step * step;
  // Lower envelope of the parabolas y = g[q] + w (x - q)^2 over the finite samples q; v holds
  // the parabolas in the envelope, z the boundaries between them.
  int k = -1;
  for (int q = 0; q < n; ++q) {
    if (!(g[q] < kInf)) continue;  // no feature here
    if (k < 0) {
      k = 0;
      v[0] = q;
      z[0] = -kInf;
      z[1] = kInf;
      continue;
    }
    const double dq = static_cast<double>(q);
    double s;
    for (;;) {
      const double dr = static_cast<double>(v[k]);
      s = ((g[q] + w * dq * dq) - (g[v[k]] + w * dr * dr)) / (2.0 * w * (dq - dr));
      if (s <= z[k] && k > 0) {
        --k;  // parabola v[k] is hidden by q everywhere it was lowest
      } else {
        break;
      }
    }
    ++k;
    v[k] = q;
    z[k] = s;
    z[k + 1] = kInf;
  }
  if (k < 0) return;  // nothing finite: leave the infinities
  k = 0;
  for (int p = 0; p < n; ++p) {
    const double dp = static_cast<double>(p);
    while (z[k + 1] < dp) ++k;
    const double d = dp - static_cast<double>(v[k]);
    f[static_cast<size_t>(p) * stride] = w * d * d + g[v[k]];
  }
}

std::vector<double> squared_distance_transform(const uint8_t* feature, int width, int height,
                                               int depth, Spacing3 spacing) {
  check_grid("squared_distance_transform", width, height, depth, spacing);
  const size_t n = voxel_count(width, height, depth);
  std::vector<double> f(n);
  for (size_t i = 0; i < n; ++i) f[i] = feature[i] ? 0.0 : kInf;
  std::vector<int> v;
  std::vector<double> z, g;
  const size_t W = static_cast<size_t>(width), H = static_cast<size_t>(height);
  for (size_t zz = 0; zz < static_cast<size_t>(depth); ++zz)
    for (size_t y = 0; y < H; ++y) squared_edt_1d(&f[(zz * H + y) * W], width, 1, spacing.sx, v, z, g);
  if (height > 1)
    for (size_t zz = 0; zz < static_cast<size_t>(depth); ++zz)
      for (size_t x = 0; x < W; ++x) squared_edt_1d(&f[zz * H * W + x], height, W, spacing.sy, v, z, g);
  if (depth > 1)
    for (size_t i = 0; i < H * W; ++i) squared_edt_1d(&f[i], depth, H * W, spacing.sz, v, z, g);
  return f;
}

std::vector<uint8_t> mask_surface(const uint8_t* mask, int width, int height, int depth) {
  RG_CHECK(width > 0 && height > 0 && depth > 0, "mask_surface: grid must be positive, got W=",
           width, " H=", height, " D=", depth);
  const size_t W = static_cast<size_t>(width), HW = W * static_cast<size_t>(height);
  std::vector<uint8_t> s(voxel_count(width, height, depth), 0);
  for (int z = 0; z < depth; ++z)
    for (int y = 0; y < height; ++y)
      for (int x = 0; x < width; ++x) {
        const size_t i = static_cast<size_t>(z) * HW + static_cast<size_t>(y) * W + x;
        if (!mask[i]) continue;
        bool edge = x == 0 || x == width - 1 || y == 0 || y == height - 1;
        if (depth > 1) edge = edge || z == 0 || z == depth - 1;
        if (!edge) {
          edge = !mask[i - 1] || !mask[i + 1] || !mask[i - W] || !mask[i + W];
          if (depth > 1) edge = edge || !mask[i - HW] || !mask[i + HW];
        }
        s[i] = edge ? 1 : 0;
      }
  return s;
}

std::vector<double> directed_surface_distances(const uint8_t* from, const uint8_t* to, int width,
                                               int height, int depth, Spacing3 spacing) {
  check_grid("directed_surface_distances", width, height, depth, spacing);
  const std::vector<uint8_t> sf = mask_surface(from, width, height, depth);
  const std::vector<uint8_t> st = mask_surface(to, width, height, depth);
  const std::vector<double> dt = squared_distance_transform(st.data(), width, height, depth, spacing);
  std::vector<double> out;
  for (size_t i = 0; i < sf.size(); ++i)
    if (sf[i]) out.push_back(std::sqrt(dt[i]));
  return out;
}

// ---- metrics ----------------------------------------------------------------------------------

double hd95(const uint8_t* pred, const uint8_t* target, int width, int height, int depth,
            Spacing3 spacing, Hd95Convention convention) {
  check_grid("hd95", width, height, depth, spacing);
  const size_t n = voxel_count(width, height, depth);
  const bool pe = count_nonzero(pred, n) == 0, te = count_nonzero(target, n) == 0;
  if (pe && te) return 0.0;
  if (pe || te) return kHd95OneEmpty;
  SurfacePair d = surface_distances_both(pred, target, width, height, depth, spacing);
  if (convention == Hd95Convention::max_directed) {
    const double p1 = percentile_linear(d.a_to_b, 95.0);
    const double p2 = percentile_linear(d.b_to_a, 95.0);
    return std::max(p1, p2);
  }
  std::vector<double> pooled = std::move(d.a_to_b);
  pooled.insert(pooled.end(), d.b_to_a.begin(), d.b_to_a.end());
  return percentile_linear(pooled, 95.0);
}

SegMetrics compute_metrics(const uint8_t* pred, const uint8_t* target, int width, int height,
                           int depth, Spacing3 spacing, Hd95Convention convention) {
  check_grid("compute_metrics", width, height, depth, spacing);
  const size_t n = voxel_count(width, height, depth);
  SegMetrics m;
  m.dice = dice(pred, target, n);
  m.iou = iou(pred, target, n);
  m.hd95 = hd95(pred, target, width, height, depth, spacing, convention);
  return m;
}

SegMetrics compute_metrics_2d(const float* pred_prob, const float* target, int height, int width,
                              double sx, double sy, float threshold) {
  RG_CHECK(width > 0 && height > 0, "compute_metrics_2d: size must be positive, got H=", height,
           " W=", width);
  const size_t n = voxel_count(width, height, 1);
  const std::vector<uint8_t> p = binarize(pred_prob, n, threshold);
  const std::vector<uint8_t> t = binarize(target, n, threshold);
  return compute_metrics(p.data(), t.data(), width, height, 1, Spacing3{sx, sy, 1.0});
}

// ---- accumulation -----------------------------------------------------------------------------

MetricSummary summarize(const std::vector<SegMetrics>& items,
                        const std::vector<uint8_t>& target_empty,
                        const std::vector<uint8_t>& pred_empty) {
  RG_CHECK(target_empty.size() == items.size() && pred_empty.size() == items.size(),
           "summarize: ", items.size(), " items but ", target_empty.size(), " target flags and ",
           pred_empty.size(), " prediction flags");
  MetricSummary s;
  s.items = static_cast<int>(items.size());
  std::vector<double> d, j, h, dn;
  for (size_t i = 0; i < items.size(); ++i) {
    d.push_back(items[i].dice);
    j.push_back(items[i].iou);
    if (std::isfinite(items[i].hd95)) {
      h.push_back(items[i].hd95);
    } else {
      ++s.hd95_infinite;
    }
    if (!target_empty[i]) dn.push_back(items[i].dice);
    s.empty_target += target_empty[i] != 0;
    s.empty_pred += pred_empty[i] != 0;
    s.empty_both += target_empty[i] && pred_empty[i];
  }
  s.dice = stats_of(d);
  s.iou = stats_of(j);
  s.hd95 = stats_of(h);
  s.dice_nonempty = stats_of(dn);
  return s;
}

std::string format_summary(const MetricSummary& s) {
  char buf[512];
  std::snprintf(buf, sizeof(buf),
                "dice %.4f +- %.4f (n=%d; non-empty target %.4f, n=%d) iou %.4f +- %.4f "
                "hd95 %.3f +- %.3f mm (n=%d, %d inf) empty: target %d pred %d both %d",
                s.dice.mean, s.dice.std, s.dice.count, s.dice_nonempty.mean, s.dice_nonempty.count,
                s.iou.mean, s.iou.std, s.hd95.mean, s.hd95.std, s.hd95.count, s.hd95_infinite,
                s.empty_target, s.empty_pred, s.empty_both);
  std::string out = buf;
  if (s.missing_slices > 0) out += " missing slices " + std::to_string(s.missing_slices);
  return out;
}

MetricAccumulator::MetricAccumulator(Spacing3 default_spacing, float threshold,
                                     Hd95Convention convention)
    : default_spacing_(default_spacing), threshold_(threshold), convention_(convention) {
  check_grid("MetricAccumulator", 1, 1, 1, default_spacing);
}

void MetricAccumulator::set_volume_spacing(int64_t volume_id, Spacing3 spacing) {
  check_grid("MetricAccumulator::set_volume_spacing", 1, 1, 1, spacing);
  spacings_[volume_id] = spacing;
}

Spacing3 MetricAccumulator::spacing_for(int64_t volume_id) const {
  const auto it = spacings_.find(volume_id);
  return it == spacings_.end() ? default_spacing_ : it->second;
}

void MetricAccumulator::add_slice(int64_t volume_id, int slice_index, const float* pred_prob,
                                  const float* target, int height, int width) {
  RG_CHECK(width > 0 && height > 0, "MetricAccumulator::add_slice: size must be positive, got H=",
           height, " W=", width);
  const size_t n = voxel_count(width, height, 1);
  const std::vector<uint8_t> p = binarize(pred_prob, n, threshold_);
  const std::vector<uint8_t> t = binarize(target, n, threshold_);
  add_slice(volume_id, slice_index, p.data(), t.data(), height, width);
}

void MetricAccumulator::add_slice(int64_t volume_id, int slice_index, const uint8_t* pred,
                                  const uint8_t* target, int height, int width) {
  RG_CHECK(width > 0 && height > 0, "MetricAccumulator::add_slice: size must be positive, got H=",
           height, " W=", width);
  VolumeSlices& vol = volumes_[volume_id];
  if (vol.slices.empty()) {
    vol.height = height;
    vol.width = width;
  }
  RG_CHECK(vol.height == height && vol.width == width, "MetricAccumulator::add_slice: volume ",
           volume_id, " slice ", slice_index, " is ", height, " x ", width,
           " but earlier slices are ", vol.height, " x ", vol.width);
  RG_CHECK(vol.slices.count(slice_index) == 0, "MetricAccumulator::add_slice: volume ", volume_id,
           " slice ", slice_index, " was already added");
  const size_t n = voxel_count(width, height, 1);
  SliceMasks masks;
  masks.pred.resize(n);
  masks.target.resize(n);
  for (size_t i = 0; i < n; ++i) {
    masks.pred[i] = pred[i] ? 1 : 0;
    masks.target[i] = target[i] ? 1 : 0;
  }
  const Spacing3 sp = spacing_for(volume_id);
  slice_metrics_.push_back(compute_metrics(masks.pred.data(), masks.target.data(), width, height, 1,
                                           Spacing3{sp.sx, sp.sy, 1.0}, convention_));
  slice_target_empty_.push_back(count_nonzero(masks.target.data(), n) == 0);
  slice_pred_empty_.push_back(count_nonzero(masks.pred.data(), n) == 0);
  vol.slices.emplace(slice_index, std::move(masks));
}

MetricSummary MetricAccumulator::slice_summary() const {
  return summarize(slice_metrics_, slice_target_empty_, slice_pred_empty_);
}

std::vector<VolumeMetrics> MetricAccumulator::volume_results() const {
  std::vector<VolumeMetrics> out;
  for (const auto& [id, vol] : volumes_) {
    if (vol.slices.empty()) continue;
    VolumeMetrics r;
    r.volume_id = id;
    r.slices = static_cast<int>(vol.slices.size());
    r.first_slice = vol.slices.begin()->first;
    const int64_t depth64 =
        static_cast<int64_t>(vol.slices.rbegin()->first) - static_cast<int64_t>(r.first_slice) + 1;
    RG_CHECK(depth64 <= (1 << 20), "MetricAccumulator: volume ", id, " spans slice indices ",
             r.first_slice, "..", vol.slices.rbegin()->first, "; too far apart to reassemble");
    r.depth = static_cast<int>(depth64);
    const size_t slice_n = voxel_count(vol.width, vol.height, 1);
    std::vector<uint8_t> pred(slice_n * static_cast<size_t>(r.depth), 0), target(pred.size(), 0);
    for (const auto& [index, masks] : vol.slices) {
      const size_t off = static_cast<size_t>(index - r.first_slice) * slice_n;
      std::copy(masks.pred.begin(), masks.pred.end(), pred.begin() + static_cast<std::ptrdiff_t>(off));
      std::copy(masks.target.begin(), masks.target.end(),
                target.begin() + static_cast<std::ptrdiff_t>(off));
    }
    r.metrics = compute_metrics(pred.data(), target.data(), vol.width, vol.height, r.depth,
                                spacing_for(id), convention_);
    r.pred_empty = count_nonzero(pred.data(), pred.size()) == 0;
    r.target_empty = count_nonzero(target.data(), target.size()) == 0;
    out.push_back(r);
  }
  return out;
}

MetricSummary MetricAccumulator::volume_summary() const {
  const std::vector<VolumeMetrics> vols = volume_results();
  std::vector<SegMetrics> items;
  std::vector<uint8_t> te, pe;
  int missing = 0;
  for (const VolumeMetrics& v : vols) {
    items.push_back(v.metrics);
    te.push_back(v.target_empty);
    pe.push_back(v.pred_empty);
    missing += v.depth - v.slices;
  }
  MetricSummary s = summarize(items, te, pe);
  s.missing_slices = missing;
  return s;
}

void MetricAccumulator::clear() {
  volumes_.clear();
  slice_metrics_.clear();
  slice_target_empty_.clear();
  slice_pred_empty_.clear();
}

}  // namespace rg::train
