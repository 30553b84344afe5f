// Binary segmentation metrics: Dice, IoU and HD95 on 2-D masks and 3-D volumes, plus an
// accumulator that reports per-slice and per-volume (3-D) summaries over a validation pass.
//
// Layout. A 2-D mask is H x W, row-major: pixel (x, y) is m[y * W + x]. A 3-D volume is a stack
// of D such slices: voxel (x, y, z) is m[(z * H + y) * W + x]. Spacing (sx, sy, sz) is in mm:
// sx along x (columns), sy along y (rows), sz between slices.
// Argument order: the grid-level functions take (width, height, depth), matching (sx, sy, sz);
// the float 2-D entry point and the accumulator take (height, width), like an H x W tensor.
//
// Binarisation. Probabilities / float masks are foreground where value >= threshold (0.5 by
// default); NaN is background. uint8 masks are foreground where non-zero.
//
// Conventions (also tested):
//   Dice = 2|A n B| / (|A| + |B|), IoU = |A n B| / |A u B|; both empty -> 1, one empty -> 0.
//   HD95, both empty -> 0; exactly one empty -> +infinity (kHd95OneEmpty). Summaries average
//   HD95 over finite values only and report how many were infinite.
//
// HD95 definition (MedPy's medpy.metric.binary.hd95, the value people compare against):
//   surface(M) = voxels of M with at least one 4-neighbour (2-D) / 6-neighbour (3-D) outside M
//                or outside the image (border voxels of M are always surface);
//   d(A->B)    = for each surface voxel of A, the Euclidean distance in mm to the nearest
//                surface voxel of B;
//   HD95       = 95th percentile of the pooled list d(A->B) ++ d(B->A), with numpy's default
//                linear interpolation: sorted v[0..n-1], pos = 0.95 * (n - 1),
//                value = v[floor(pos)] + frac(pos) * (v[floor(pos) + 1] - v[floor(pos)]).
//   Hd95Convention::max_directed instead takes max(P95(d(A->B)), P95(d(B->A))), each with the
//   same interpolation (some papers use it); it is >= the pooled value.
// Distances come from an exact squared Euclidean distance transform (Felzenszwalb-Huttenlocher
// lower envelope of parabolas, separable per axis, anisotropic spacing), not brute force.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

namespace rg::train {

struct Spacing3 {
  double sx = 1.0, sy = 1.0, sz = 1.0;
};

inline constexpr double kHd95OneEmpty = std::numeric_limits<double>::infinity();

enum class Hd95Convention { medpy_pooled, max_directed };

struct SegMetrics {
  double dice = 0.0, iou = 0.0, hd95 = 0.0;
};

// ---- building blocks -------------------------------------------------------------------------

// 1 where v >= threshold (NaN -> 0).
std::vector<uint8_t> binarize(const float* values, size_t n, float threshold = 0.5f);

double dice(const uint8_t* a, const uint8_t* b, size_t n);
double iou(const uint8_t* a, const uint8_t* b, size_t n);

// Percentile q in [0, 100] of the values with numpy's default linear interpolation; the vector
// is sorted in place. Empty input -> NaN.
double percentile_linear(std::vector<double>& values, double q);

// In-place 1-D squared distance transform of a sampled function f with n samples at spacing
// `step`: f[p] <- min_q f[q] + (step * (p - q))^2. Entries equal to +infinity are "no feature";
// if all are infinite the result stays infinite. Scratch buffers are resized as needed.
void squared_edt_1d(double* f, int n, size_t stride, double step, std::vector<int>& v_scratch,
                    std::vector<double>& z_scratch, std::vector<double>& f_scratch);

// Squared Euclidean distance (mm^2) from every voxel of a W x H x D grid to the nearest voxel
// with feature[i] != 0; +infinity everywhere when there is no feature. Use depth = 1 for 2-D.
std::vector<double> squared_distance_transform(const uint8_t* feature, int width, int height,
                                               int depth, Spacing3 spacing = {});

// Surface voxels of a mask (see the definition above); 2-D (4-neighbours) when depth == 1.
std::vector<uint8_t> mask_surface(const uint8_t* mask, int width, int height, int depth);

// Distances (mm) from every surface voxel of `from` to the nearest surface voxel of `to`.
// Empty when `from` is empty; all +infinity when only `to` is empty.
std::vector<double> directed_surface_distances(const uint8_t* from, const uint8_t* to, int width,
                                               int height, int depth, Spacing3 spacing = {});

// ---- metrics ----------------------------------------------------------------------------------

double hd95(const uint8_t* pred, const uint8_t* target, int width, int height, int depth,
            Spacing3 spacing = {}, Hd95Convention convention = Hd95Convention::medpy_pooled);

// Masks already binary (non-zero = foreground).
SegMetrics compute_metrics(const uint8_t* pred, const uint8_t* target, int width, int height,
                           int depth = 1, Spacing3 spacing = {},
                           Hd95Convention convention = Hd95Convention::medpy_pooled);

// One 2-D slice: pred_prob and target are H x W floats, both thresholded at `threshold`.
SegMetrics compute_metrics_2d(const float* pred_prob, const float* target, int height, int width,
                              double sx = 1.0, double sy = 1.0, float threshold = 0.5f);

// ---- accumulation over a validation pass ------------------------------------------------------

// Mean / sample standard deviation (n - 1; 0 when n < 2) of a metric over the items that have a
// value. HD95 statistics use finite values only; `infinite` counts the rest.
struct MetricStats {
  int count = 0;  // items that entered the mean
  double mean = 0.0, std = 0.0;
};

struct MetricSummary {
  int items = 0;               // slices or volumes
  MetricStats dice, iou, hd95;  // Dice/IoU over all items (both-empty items count as 1)
  MetricStats dice_nonempty;    // Dice over items whose target is non-empty
  int hd95_infinite = 0;        // items where exactly one of pred / target is empty
  int empty_target = 0;         // target empty (whatever the prediction)
  int empty_pred = 0;           // prediction empty (whatever the target)
  int empty_both = 0;           // both empty: Dice = IoU = 1, HD95 = 0
  int missing_slices = 0;       // per-volume only: gaps in slice indices, filled as empty
};

struct VolumeMetrics {
  int64_t volume_id = 0;
  int slices = 0;          // slices added
  int depth = 0;           // max index - min index + 1 (gaps filled with empty slices)
  int first_slice = 0;     // smallest slice index
  SegMetrics metrics;      // 3-D metrics with the volume's spacing
  bool target_empty = false, pred_empty = false;
};

// Collects per-slice predictions and targets, tagged with a volume id and a slice index.
// Per-slice metrics are computed as slices arrive (HD95 in mm with the (sx, sy) of the volume's
// spacing known at that moment: set it before adding the slices); the binarised masks are kept so
// that
// volume_results() can reassemble each volume (slices ordered by index; missing indices between
// the smallest and largest are filled with empty slices and counted) and compute 3-D metrics.
// Adding the same (volume, slice) twice or slices of different sizes to one volume throws.
class MetricAccumulator {
 public:
  explicit MetricAccumulator(Spacing3 default_spacing = {}, float threshold = 0.5f,
                             Hd95Convention convention = Hd95Convention::medpy_pooled);

  // Spacing for one volume (else the default); may be set before or after its slices.
  void set_volume_spacing(int64_t volume_id, Spacing3 spacing);

  // pred_prob, target: H x W floats; thresholded at the accumulator's threshold.
  void add_slice(int64_t volume_id, int slice_index, const float* pred_prob, const float* target,
                 int height, int width);
  // Already-binary masks (non-zero = foreground).
  void add_slice(int64_t volume_id, int slice_index, const uint8_t* pred, const uint8_t* target,
                 int height, int width);

  size_t num_slices() const { return slice_metrics_.size(); }
  size_t num_volumes() const { return volumes_.size(); }

  // Per-slice metrics in the order added.
  const std::vector<SegMetrics>& slice_metrics() const { return slice_metrics_; }
  MetricSummary slice_summary() const;

  // 3-D metrics per volume, by increasing volume id (computed on each call).
  std::vector<VolumeMetrics> volume_results() const;
  MetricSummary volume_summary() const;

  // Drops all slices and metrics; keeps the spacings.
  void clear();

 private:
  struct SliceMasks {
    std::vector<uint8_t> pred, target;
  };
  struct VolumeSlices {
    int height = 0, width = 0;
    std::map<int, SliceMasks> slices;  // by slice index
  };

  Spacing3 spacing_for(int64_t volume_id) const;

  Spacing3 default_spacing_;
  float threshold_;
  Hd95Convention convention_;
  std::map<int64_t, Spacing3> spacings_;
  std::map<int64_t, VolumeSlices> volumes_;
  std::vector<SegMetrics> slice_metrics_;
  std::vector<uint8_t> slice_target_empty_, slice_pred_empty_;
};

// Summary over a list of metrics; flags say which items had an empty target / prediction.
MetricSummary summarize(const std::vector<SegMetrics>& items,
                        const std::vector<uint8_t>& target_empty,
                        const std::vector<uint8_t>& pred_empty);

// One line, e.g. "dice 0.8123 +- 0.1021 (n=40) iou ... hd95 3.21 +- 1.10 mm (n=38, 2 inf) ...".
std::string format_summary(const MetricSummary& s);

}  // namespace rg::train
