#include "data/prepare.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <memory>
#include <numeric>
#include <sstream>
#include <unistd.h>

#include "data/h5.h"
#include "data/label_map.h"
#include "data/nifti.h"
#include "data/progress.h"
#include "data/rng.h"
#include "data/volume_io.h"
#include "engine/error.h"

namespace rg::data {
namespace fs = std::filesystem;

const char* modality_name(Modality m) { return m == Modality::CT ? "ct" : "mri"; }
const char* crop_name(CropMode c) {
  return c == CropMode::None ? "none" : c == CropMode::Body ? "body" : "mask";
}
const char* mask_resampling_name(MaskResampling m) { return m == MaskResampling::Nearest ? "nearest" : "linear"; }
const char* split_by_name(SplitBy s) {
  return s == SplitBy::Subject ? "subject" : s == SplitBy::Slab ? "slab" : "interleaved";
}

Modality parse_modality(const std::string& s) {
  if (s == "ct" || s == "CT") return Modality::CT;
  if (s == "mri" || s == "MRI" || s == "mr") return Modality::MRI;
  RG_FAIL("unknown modality '", s, "' (expected ct or mri)");
}
CropMode parse_crop(const std::string& s) {
  if (s == "none") return CropMode::None;
  if (s == "body") return CropMode::Body;
  if (s == "mask") return CropMode::Mask;
  RG_FAIL("unknown crop mode '", s, "' (expected none, body or mask)");
}
MaskResampling parse_mask_resampling(const std::string& s) {
  if (s == "nearest") return MaskResampling::Nearest;
  if (s == "linear") return MaskResampling::Linear;
  RG_FAIL("unknown mask resampling '", s, "' (expected nearest or linear)");
}
SplitBy parse_split_by(const std::string& s) {
  if (s == "subject") return SplitBy::Subject;
  if (s == "slab") return SplitBy::Slab;
  if (s == "interleaved") return SplitBy::Interleaved;
  RG_FAIL("unknown split mode '", s, "' (expected subject, slab or interleaved)");
}

// ---------------------------------------------------------------- subject sources

namespace {

std::string stem_of(const std::string& path) {
  std::string name = fs::path(path).filename().string();
  for (const char* ext : {".nii.gz", ".hdr.gz", ".img.gz", ".nii", ".mhd", ".mha", ".hdr", ".img"}) {
    const std::string e(ext);
    if (name.size() > e.size() && name.compare(name.size() - e.size(), e.size(), e) == 0)
      return name.substr(0, name.size() - e.size());
  }
  return fs::path(path).stem().string();
}

bool is_inside(const fs::path& p, const fs::path& dir) {
  const std::string a = p.string(), d = dir.string();
  return !d.empty() && a.size() > d.size() && a.compare(0, d.size(), d) == 0 &&
         (a[d.size()] == '/' || d.back() == '/');
}

}  // namespace

std::vector<SubjectSource> luna16_subjects(const std::string& scans_dir,
                                           const std::string& masks_dir, int max_subjects) {
  std::error_code ec;
  RG_CHECK(fs::is_directory(scans_dir, ec), "luna16: scans directory ", scans_dir, " does not exist");
  RG_CHECK(fs::is_directory(masks_dir, ec), "luna16: masks directory ", masks_dir, " does not exist");
  const fs::path masks_canon = fs::weakly_canonical(masks_dir, ec);
  std::vector<fs::path> scans;
  for (auto it = fs::recursive_directory_iterator(scans_dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (!it->is_regular_file()) continue;
    std::string ext = it->path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    if (ext != ".mhd") continue;
    if (is_inside(fs::weakly_canonical(it->path()), masks_canon)) continue;
    scans.push_back(it->path());
  }
  RG_CHECK(!ec, "luna16: cannot list ", scans_dir, ": ", ec.message());
  RG_CHECK(!scans.empty(), "luna16: no .mhd scans under ", scans_dir);
  std::sort(scans.begin(), scans.end(), [](const fs::path& a, const fs::path& b) {
    return a.filename().string() < b.filename().string();
  });
  if (max_subjects > 0 && scans.size() > static_cast<size_t>(max_subjects))
    scans.resize(static_cast<size_t>(max_subjects));
  std::vector<SubjectSource> out;
  for (const fs::path& scan : scans) {
    SubjectSource s;
    s.name = scan.stem().string();
    s.image_path = scan.string();
    s.mask_path = (fs::path(masks_dir) / (s.name + ".mhd")).string();
    RG_CHECK(fs::exists(s.mask_path, ec), "luna16: no lung mask for scan ", s.image_path,
             " (expected ", s.mask_path, ")");
    s.load = [img = s.image_path, msk = s.mask_path] {
      return std::make_pair(read_volume(img), read_volume(msk));
    };
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<SubjectSource> volume_pair_subjects(const std::vector<std::string>& images,
                                                const std::vector<std::string>& masks, int64_t image_volume) {
  RG_CHECK(!images.empty(), "no image given");
  RG_CHECK(images.size() == masks.size(), "got ", images.size(), " image(s) but ", masks.size(),
           " mask(s); give one mask per image");
  RG_CHECK(image_volume >= 0, "volume index must be >= 0, got ", image_volume);
  std::vector<SubjectSource> out;
  for (size_t i = 0; i < images.size(); ++i) {
    // Checked before any subject is read, so that nothing is half-prepared.
    RG_CHECK(image_volume == 0 || detect_volume_format(images[i]) == VolumeFormat::Nifti, "volume ", image_volume,
             " of ", images[i], ": only NIfTI files hold several volumes");
    SubjectSource s;
    s.name = stem_of(images[i]);
    s.image_path = images[i];
    s.mask_path = masks[i];
    s.load = [img = images[i], msk = masks[i], image_volume] {
      Volume image = image_volume > 0 ? read_nifti(img, image_volume) : read_volume(img);
      return std::make_pair(std::move(image), read_volume(msk));
    };
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<SubjectSource> phantom_subjects(int subjects, uint64_t seed, const PhantomOptions& options) {
  RG_CHECK(subjects >= 1, "phantom: need at least one subject, got ", subjects);
  std::vector<SubjectSource> out;
  for (int i = 0; i < subjects; ++i) {
    SubjectSource s;
    s.name = phantom_uid(seed, i);
    s.load = [seed, i, options, name = s.name] {
      Phantom ph = make_lung_phantom(phantom_subject_seed(seed, i), options);
      ph.ct.source = ph.lungs.source = "phantom:" + name;
      return std::make_pair(std::move(ph.ct), std::move(ph.lungs));
    };
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<SubjectSource> phantom_view_subjects(PhantomView view, int subjects, uint64_t seed,
                                                 const PhantomOptions& options, const MrOptions& mr) {
  RG_CHECK(subjects >= 1, "phantom: need at least one subject, got ", subjects);
  std::vector<SubjectSource> out;
  for (int i = 0; i < subjects; ++i) {
    SubjectSource s;
    s.name = phantom_uid(seed, i);
    s.load = [view, seed, i, options, mr, name = s.name] {
      const uint64_t subject_seed = phantom_subject_seed(seed, i);
      Phantom ph = make_lung_phantom(subject_seed, options);
      // The tissue view's mask is the lesions (solid part and halo); every other view's the body.
      Volume mask = ph.tissue;
      const bool lesions = view == PhantomView::Tissue;
      for (float& v : mask.voxels) {
        const int t = static_cast<int>(v);
        v = static_cast<float>(lesions ? t == kTissueLesion || t == kTissueHalo : t != kTissueAir);
      }
      Volume image = view == PhantomView::CT   ? std::move(ph.ct)
                     : view == PhantomView::MR ? render_phantom_mr(ph.tissue, subject_seed, mr)
                                               : std::move(ph.tissue);
      const char* what = view == PhantomView::CT       ? "ct"
                         : view == PhantomView::Tissue ? "tissue"
                         : mr.contrast == MrContrast::T2 ? "mr_t2"
                                                         : "mr";
      image.source = "phantom:" + name + ":" + what;
      mask.source = "phantom:" + name + (lesions ? ":lesion" : ":body");
      return std::make_pair(std::move(image), std::move(mask));
    };
    out.push_back(std::move(s));
  }
  return out;
}

namespace {

// Phantom subjects carrying their lesion masks; lesion_free(i) says which get none.
std::vector<SubjectSource> phantom_subjects_with_lesion_masks(int subjects, uint64_t seed,
                                                              const PhantomOptions& options,
                                                              const std::function<bool(int)>& lesion_free) {
  std::vector<SubjectSource> out = phantom_subjects(subjects, seed, options);
  for (int i = 0; i < subjects; ++i) {
    PhantomOptions po = options;
    if (lesion_free(i)) po.lesions = 0;
    // load() keeps the lesion mask here for load_lesions(), called right after it.
    auto lesions = std::make_shared<Volume>();
    SubjectSource& s = out[static_cast<size_t>(i)];
    s.load = [seed, i, po, name = s.name, lesions] {
      Phantom ph = make_lung_phantom(phantom_subject_seed(seed, i), po);
      ph.ct.source = ph.lungs.source = "phantom:" + name;
      ph.lesion_mask.source = "phantom:" + name + " lesions";
      *lesions = std::move(ph.lesion_mask);
      return std::make_pair(std::move(ph.ct), std::move(ph.lungs));
    };
    s.load_lesions = [lesions] { return std::move(*lesions); };
  }
  return out;
}

}  // namespace

std::vector<SubjectSource> phantom_anomaly_subjects(int subjects, uint64_t seed,
                                                    const PhantomOptions& options,
                                                    const std::array<double, 3>& fractions,
                                                    uint64_t split_seed) {
  RG_CHECK(options.lesions > 0, "phantom for anomaly detection: --lesions must be > 0 (the validation "
           "and test subjects need lesions)");
  const std::vector<int> split = assign_subject_splits(subjects, fractions, split_seed);
  // Train: normal anatomy only.
  return phantom_subjects_with_lesion_masks(subjects, seed, options,
                                            [split](int i) { return split[static_cast<size_t>(i)] == 0; });
}

std::vector<SubjectSource> phantom_lesion_subjects(int subjects, uint64_t seed, const PhantomOptions& options) {
  RG_CHECK(options.lesions > 0, "phantom with lesion masks: --lesions must be > 0");
  return phantom_subjects_with_lesion_masks(subjects, seed, options, [](int) { return false; });
}

TranslationFiles translation_file_names(const std::string& dir, const std::string& stem) {
  const std::string base = (fs::path(dir) / stem).string();
  return {base + "_ct.h5", base + "_mr.h5", base + "_mr_t2.h5", base + "_tissue.h5"};
}

TranslationFiles prepare_phantom_translation(const std::string& dir, const std::string& stem,
                                             int subjects, uint64_t seed, int64_t size,
                                             uint64_t split_seed, PhantomOptions options,
                                             const MrOptions& mr, bool progress) {
  if (options.lesions == 0) options.lesions = 2;
  const TranslationFiles files = translation_file_names(dir, stem);
  PrepareOptions o;
  o.crop = CropMode::None;
  o.size = size;
  o.split_by = SplitBy::Subject;
  o.seed = split_seed;
  o.mask_threshold = 0.5;
  o.progress = progress;
  o.source = "lung phantom, seed " + std::to_string(seed) + ", " + std::to_string(subjects) + " subjects";
  o.source_kind = "phantom-translation";
  PrepareOptions ct = o;
  ct.window = {-1000.0, 1000.0};
  prepare_slices(phantom_view_subjects(PhantomView::CT, subjects, seed, options, mr), ct, files.ct);
  PrepareOptions m = o;
  m.modality = Modality::MRI;
  prepare_slices(phantom_view_subjects(PhantomView::MR, subjects, seed, options, mr), m, files.mr);
  MrOptions t2 = mr;
  t2.contrast = MrContrast::T2;
  prepare_slices(phantom_view_subjects(PhantomView::MR, subjects, seed, options, t2), m, files.mr_t2);
  PrepareOptions t = o;
  t.window = {0.0, static_cast<double>(kPhantomTissueClasses - 1)};
  prepare_slices(phantom_view_subjects(PhantomView::Tissue, subjects, seed, options, mr), t, files.tissue);
  return files;
}

// ---------------------------------------------------------------- splits

namespace {

std::array<double, 3> normalized_fractions(const std::array<double, 3>& f) {
  for (double v : f) RG_CHECK(v >= 0 && std::isfinite(v), "split fractions must be >= 0, got ", v);
  const double sum = f[0] + f[1] + f[2];
  RG_CHECK(sum > 0, "split fractions must not all be zero");
  return {f[0] / sum, f[1] / sum, f[2] / sum};
}

// Counts per split for n items: rounding, at least one per positive fraction when n >= 3, and
// at least one train item.
std::array<int64_t, 3> split_counts(int64_t n, const std::array<double, 3>& fr) {
  std::array<int64_t, 3> c{0, 0, 0};
  for (int s = 1; s < 3; ++s) {
    c[s] = std::llround(n * fr[s]);
    if (n >= 3 && fr[s] > 0) c[s] = std::max<int64_t>(1, c[s]);
  }
  while (c[1] + c[2] > n - 1 && c[1] + c[2] > 0) {
    if (c[1] >= c[2]) --c[1];
    else --c[2];
  }
  c[0] = n - c[1] - c[2];
  return c;
}

}  // namespace

std::vector<int> assign_subject_splits(int64_t n, const std::array<double, 3>& fractions, uint64_t seed) {
  RG_CHECK(n >= 0, "assign_subject_splits: n must be >= 0");
  const auto counts = split_counts(n, normalized_fractions(fractions));
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  Rng rng(derive_seed(seed, {0x73706c6974ULL}));
  rng.shuffle(order);
  std::vector<int> split(static_cast<size_t>(n), 0);
  int64_t pos = 0;
  for (int s = 0; s < 3; ++s)
    for (int64_t c = 0; c < counts[s]; ++c) split[static_cast<size_t>(order[static_cast<size_t>(pos++)])] = s;
  return split;
}

namespace {

// Slices [0, n) cut into labels.size() contiguous slabs, slab i getting split labels[i]; between
// adjacent slabs of different splits `gap` slices are dropped (split -1): gap/2 before the
// boundary, the rest after it.
std::vector<int> slabs_to_slices(int64_t n, const std::vector<int>& labels, int gap) {
  const int64_t S = static_cast<int64_t>(labels.size());
  std::vector<int> split(static_cast<size_t>(n), 0);
  std::vector<int64_t> bound(static_cast<size_t>(S + 1));
  for (int64_t i = 0; i <= S; ++i) bound[static_cast<size_t>(i)] = (i * n) / S;
  for (int64_t i = 0; i < S; ++i)
    for (int64_t z = bound[static_cast<size_t>(i)]; z < bound[static_cast<size_t>(i + 1)]; ++z)
      split[static_cast<size_t>(z)] = labels[static_cast<size_t>(i)];
  std::vector<int> out = split;
  for (int64_t i = 1; i < S; ++i) {
    if (labels[static_cast<size_t>(i - 1)] == labels[static_cast<size_t>(i)]) continue;
    const int64_t b = bound[static_cast<size_t>(i)];
    const int64_t before = gap / 2, after = gap - gap / 2;
    for (int64_t z = std::max<int64_t>(0, b - before); z < std::min<int64_t>(n, b + after); ++z)
      out[static_cast<size_t>(z)] = -1;
  }
  return out;
}

void check_slab_options(int slabs, int gap) {
  RG_CHECK(slabs >= 1, "split by slab: --slabs must be >= 1, got ", slabs);
  RG_CHECK(gap >= 0, "split by slab: --slab-gap must be >= 0, got ", gap);
}

}  // namespace

std::vector<int> assign_slab_splits(int64_t n, int slabs, int gap, const std::array<double, 3>& fractions,
                                    uint64_t seed) {
  check_slab_options(slabs, gap);
  if (n <= 0) return {};
  const int64_t S = std::min<int64_t>(slabs, n);
  const auto counts = split_counts(S, normalized_fractions(fractions));
  std::vector<int> label;
  for (int s = 0; s < 3; ++s) label.insert(label.end(), static_cast<size_t>(counts[s]), s);
  Rng rng(derive_seed(seed, {0x736c6162ULL}));
  rng.shuffle(label);
  return slabs_to_slices(n, label, gap);
}

std::vector<int> assign_interleaved_splits(int64_t n, int slabs, int gap,
                                           const std::array<double, 3>& fractions, uint64_t seed) {
  check_slab_options(slabs, gap);
  if (n <= 0) return {};
  const int64_t S = std::min<int64_t>(slabs, n);
  auto counts = split_counts(S, normalized_fractions(fractions));
  // Both end slabs are training slabs whenever train has two: the ends of a volume are where
  // the anatomy starts and stops (the vertex above the brain, the lung bases), and a model that
  // never saw such slices would be tested on extrapolation (measured on Colin27: a test slab at
  // the vertex, with its brain-free slices, cost 0.03-0.06 Dice per volume).
  const bool ends_train = counts[0] >= 2 && S >= 3;
  const int64_t interior = ends_train ? S - 2 : S;
  if (ends_train) counts[0] -= 2;
  // Each split's ideal positions over the interior slabs, (j + 0.5) * S' / c_s; slabs go to the
  // splits in the order of those positions. The seed offsets validation's and test's positions
  // by up to half a spacing (train fills what is left), so seeds give different but still even
  // layouts.
  Rng rng(derive_seed(seed, {0x696e746cULL}));
  std::vector<std::pair<double, int>> wanted;
  for (int s = 0; s < 3; ++s) {
    const double c = static_cast<double>(counts[s]);
    const double shift = s == 0 ? 0.5 : 0.25 + 0.5 * rng.uniform();
    for (int64_t j = 0; j < counts[s]; ++j) {
      wanted.emplace_back((static_cast<double>(j) + shift) * static_cast<double>(interior) / c, s);
    }
  }
  // Validation and test first at equal positions: they are the scarce ones.
  std::stable_sort(wanted.begin(), wanted.end(), [](const auto& a, const auto& b) {
    return a.first < b.first || (a.first == b.first && a.second > b.second);
  });
  std::vector<int> label;
  if (ends_train) label.push_back(0);
  for (const auto& w : wanted) label.push_back(w.second);
  if (ends_train) label.push_back(0);
  return slabs_to_slices(n, label, gap);
}

std::vector<int> assign_interleaved_fold(int64_t n, int slabs, int gap, int folds, int fold) {
  check_slab_options(slabs, gap);
  if (n <= 0) return {};
  const int64_t S = std::min<int64_t>(slabs, n);
  const int64_t interior = S - 2;
  RG_CHECK(folds >= 3, "split by interleaved folds: --folds must be >= 3 (validation, test and at "
           "least one training group), got ", folds);
  RG_CHECK(fold >= 0 && fold < folds, "split by interleaved folds: --fold must be in [0, ", folds - 1,
           "], got ", fold);
  // Equal groups, so that every fold's validation and test slabs are evenly spaced over the
  // volume and every interior slab is tested in exactly one fold.
  RG_CHECK(interior >= folds && interior % folds == 0, "split by interleaved folds: --folds ", folds,
           " must divide the ", interior, " slabs between the two end slabs (--slabs ", S,
           "; the end slabs always train)");
  // Interior slab i belongs to group i mod K: group `fold` is test, the group before it
  // validation, so the two alternate along the volume like the default layout's.
  std::vector<int> label(static_cast<size_t>(S), 0);
  for (int64_t i = 0; i < interior; ++i) {
    const int64_t group = i % folds;
    label[static_cast<size_t>(i + 1)] = group == fold ? 2 : group == (fold + folds - 1) % folds ? 1 : 0;
  }
  return slabs_to_slices(n, label, gap);
}

// ---------------------------------------------------------------- normalization

double percentile(std::vector<float> values, double p) {
  values.erase(std::remove_if(values.begin(), values.end(), [](float v) { return !std::isfinite(v); }),
               values.end());
  RG_CHECK(!values.empty(), "percentile of an empty set");
  p = std::clamp(p, 0.0, 100.0);
  const double pos = p / 100.0 * static_cast<double>(values.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(lo), values.end());
  const double a = values[lo];
  if (lo + 1 >= values.size()) return a;
  const double b = *std::min_element(values.begin() + static_cast<std::ptrdiff_t>(lo + 1), values.end());
  return a + (pos - static_cast<double>(lo)) * (b - a);
}

std::array<double, 2> normalization_range(const Volume& image, const PrepareOptions& o) {
  if (o.modality == Modality::CT) {
    RG_CHECK(o.window[1] > o.window[0], "CT window must have low < high, got [", o.window[0], ", ",
             o.window[1], "]");
    return o.window;
  }
  RG_CHECK(o.percentiles[0] >= 0 && o.percentiles[1] <= 100 && o.percentiles[0] < o.percentiles[1],
           "MRI percentiles must satisfy 0 <= low < high <= 100, got [", o.percentiles[0], ", ",
           o.percentiles[1], "]");
  double lo = percentile(image.voxels, o.percentiles[0]);
  double hi = percentile(image.voxels, o.percentiles[1]);
  if (!(hi > lo)) hi = lo + 1.0;  // constant image: avoid dividing by zero
  return {lo, hi};
}

// ---------------------------------------------------------------- geometry

SliceOrientation orientation_of(const Volume& v, bool reorient) {
  SliceOrientation o;
  if (reorient) {
    // Dominant world axis (RAS) and direction of each voxel axis.
    std::array<int, 3> world{};
    std::array<double, 3> sign{};
    for (int a = 0; a < 3; ++a) {
      int best = 0;
      for (int w = 1; w < 3; ++w)
        if (std::fabs(v.affine[w][a]) > std::fabs(v.affine[best][a])) best = w;
      world[a] = best;
      sign[a] = v.affine[best][a] >= 0 ? 1.0 : -1.0;
    }
    const bool perm_ok = world[0] != world[1] && world[1] != world[2] && world[0] != world[2];
    if (perm_ok) {
      for (int a = 0; a < 3; ++a) {
        const int w = world[a];
        o.perm[w] = a;
        // Wanted: columns towards -x (patient left), rows towards -y (posterior), slices +z.
        o.flip[w] = (w == 2) ? sign[a] < 0 : sign[a] > 0;
      }
    } else {
      o.fallback = true;
    }
  }
  const std::array<int64_t, 3> src_stride{1, v.dims[0], v.dims[0] * v.dims[1]};
  for (int a = 0; a < 3; ++a) {
    const int p = o.perm[a];
    o.dims[a] = v.dims[p];
    o.spacing[a] = v.spacing[p];
    o.stride[a] = o.flip[a] ? -src_stride[p] : src_stride[p];
    if (o.flip[a]) o.base += (v.dims[p] - 1) * src_stride[p];
  }
  return o;
}

CropBox mask_box(const std::vector<uint8_t>& bm, const SliceOrientation& o) {
  CropBox b;
  b.lo = {o.dims[0], o.dims[1], o.dims[2]};
  b.hi = {-1, -1, -1};
  for (int64_t s = 0; s < o.dims[2]; ++s)
    for (int64_t r = 0; r < o.dims[1]; ++r)
      for (int64_t c = 0; c < o.dims[0]; ++c)
        if (bm[static_cast<size_t>(o.index(c, r, s))]) {
          const int64_t p[3] = {c, r, s};
          for (int a = 0; a < 3; ++a) {
            b.lo[a] = std::min(b.lo[a], p[a]);
            b.hi[a] = std::max(b.hi[a], p[a]);
          }
        }
  return b;
}

// Body: voxels above the threshold, ignoring speckle: a pixel counts when it is above the
// threshold in at least 2% of the slices, a slice when at least 0.1% of its pixels are.
CropBox body_box(const Volume& v, const SliceOrientation& o, double threshold) {
  const int64_t W = o.dims[0], H = o.dims[1], D = o.dims[2];
  std::vector<int32_t> count2d(static_cast<size_t>(W * H), 0);
  std::vector<int64_t> per_slice(static_cast<size_t>(D), 0);
  for (int64_t s = 0; s < D; ++s)
    for (int64_t r = 0; r < H; ++r)
      for (int64_t c = 0; c < W; ++c)
        if (v.voxels[static_cast<size_t>(o.index(c, r, s))] > threshold) {
          ++count2d[static_cast<size_t>(r * W + c)];
          ++per_slice[static_cast<size_t>(s)];
        }
  CropBox b;
  const int64_t min_px = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(0.02 * D)));
  const int64_t min_slice = std::max<int64_t>(1, (W * H) / 1000);
  b.lo = {W, H, D};
  b.hi = {-1, -1, -1};
  for (int64_t r = 0; r < H; ++r)
    for (int64_t c = 0; c < W; ++c)
      if (count2d[static_cast<size_t>(r * W + c)] >= min_px) {
        b.lo[0] = std::min(b.lo[0], c);
        b.hi[0] = std::max(b.hi[0], c);
        b.lo[1] = std::min(b.lo[1], r);
        b.hi[1] = std::max(b.hi[1], r);
      }
  for (int64_t s = 0; s < D; ++s)
    if (per_slice[static_cast<size_t>(s)] >= min_slice) {
      b.lo[2] = std::min(b.lo[2], s);
      b.hi[2] = std::max(b.hi[2], s);
    }
  return b;
}

float sample_clamped(const float* img, int64_t W, int64_t H, double x, double y, float fill) {
  if (x < -0.5 || y < -0.5 || x > W - 0.5 || y > H - 0.5) return fill;
  x = std::clamp(x, 0.0, static_cast<double>(W - 1));
  y = std::clamp(y, 0.0, static_cast<double>(H - 1));
  const int64_t x0 = std::min<int64_t>(static_cast<int64_t>(x), W - 1);
  const int64_t y0 = std::min<int64_t>(static_cast<int64_t>(y), H - 1);
  const int64_t x1 = std::min<int64_t>(x0 + 1, W - 1), y1 = std::min<int64_t>(y0 + 1, H - 1);
  const double ax = x - static_cast<double>(x0), ay = y - static_cast<double>(y0);
  const double top = img[y0 * W + x0] * (1 - ax) + img[y0 * W + x1] * ax;
  const double bot = img[y1 * W + x0] * (1 - ax) + img[y1 * W + x1] * ax;
  return static_cast<float>(top * (1 - ay) + bot * ay);
}

void resample_plane(const float* plane, int64_t W, int64_t H, int64_t S, double x0, double y0, double step_c,
                    double step_r, int nsx, int nsy, float fill, float* out) {
  for (int64_t v = 0; v < S; ++v)
    for (int64_t u = 0; u < S; ++u) {
      double acc = 0;
      for (int qy = 0; qy < nsy; ++qy) {
        const double y = y0 + (static_cast<double>(v) + (qy + 0.5) / nsy) * step_r - 0.5;
        for (int qx = 0; qx < nsx; ++qx) {
          const double x = x0 + (static_cast<double>(u) + (qx + 0.5) / nsx) * step_c - 0.5;
          acc += sample_clamped(plane, W, H, x, y, fill);
        }
      }
      out[v * S + u] = static_cast<float>(acc / (nsx * nsy));
    }
}

double body_threshold_or_default(double threshold, Modality m, const std::array<double, 2>& norm_range) {
  if (!std::isnan(threshold)) return threshold;
  return m == Modality::CT ? -500.0 : norm_range[0] + 0.05 * (norm_range[1] - norm_range[0]);
}

namespace {

std::string human_bytes(uint64_t b) {
  char buf[32];
  if (b >= (uint64_t(1) << 30)) std::snprintf(buf, sizeof buf, "%.2f GiB", b / double(uint64_t(1) << 30));
  else if (b >= (uint64_t(1) << 20)) std::snprintf(buf, sizeof buf, "%.1f MiB", b / double(uint64_t(1) << 20));
  else std::snprintf(buf, sizeof buf, "%.1f KiB", b / 1024.0);
  return buf;
}

// Removes the temporary output unless commit() ran.
struct TempFileGuard {
  std::string path;
  bool committed = false;
  ~TempFileGuard() {
    if (!committed) {
      std::error_code ec;
      fs::remove(path, ec);
    }
  }
};

}  // namespace

// ---------------------------------------------------------------- summary

std::string PrepareSummary::str() const {
  std::ostringstream os;
  os << "wrote " << path << " (" << human_bytes(bytes) << ") in " << format_duration(seconds) << ": "
     << subjects << " subject(s), slices " << size << "x" << size << "\n";
  char line[128];
  std::snprintf(line, sizeof line, "  %-6s %9s %8s %8s\n", "split", "subjects", "slices", "mask %");
  os << line;
  for (int s = 0; s < 3; ++s) {
    std::snprintf(line, sizeof line, "  %-6s %9lld %8lld %8.2f\n", kSplitNames[s],
                  static_cast<long long>(splits[s].subjects), static_cast<long long>(splits[s].slices),
                  100.0 * splits[s].mask_fraction);
    os << line;
  }
  if (dropped_gap_slices > 0) os << "  " << dropped_gap_slices << " slice(s) dropped in slab gaps\n";
  for (const auto& w : warnings) os << "  warning: " << w << "\n";
  return os.str();
}

// ---------------------------------------------------------------- the conversion

PrepareSummary prepare_slices(const std::vector<SubjectSource>& subjects, const PrepareOptions& opt,
                              const std::string& out_path) {
  RG_CHECK(!subjects.empty(), "prepare: no subjects to convert");
  RG_CHECK(opt.size >= 8 && opt.size <= 4096, "prepare: --size must be in [8, 4096], got ", opt.size);
  RG_CHECK(opt.margin_mm >= 0, "prepare: --margin must be >= 0, got ", opt.margin_mm);
  RG_CHECK(opt.compression >= 0 && opt.compression <= 9, "prepare: compression must be 0..9, got ",
           opt.compression);
  RG_CHECK(!out_path.empty(), "prepare: no output path");
  normalized_fractions(opt.fractions);  // validates
  if (opt.split_by != SplitBy::Subject) {
    RG_CHECK(opt.slabs >= 1, "prepare: --slabs must be >= 1, got ", opt.slabs);
    RG_CHECK(opt.slab_gap >= 0, "prepare: --slab-gap must be >= 0, got ", opt.slab_gap);
  }
  if (opt.folds != 0) {
    RG_CHECK(opt.split_by == SplitBy::Interleaved, "prepare: --folds needs --split-by interleaved, got --split-by ",
             split_by_name(opt.split_by));
    // The layout of a volume of one slice per slab, so that a bad --folds/--fold/--slabs
    // combination fails (with assign_interleaved_fold's own message) before any volume is read.
    assign_interleaved_fold(opt.slabs, opt.slabs, 0, opt.folds, opt.fold);
  }
  const bool paired = static_cast<bool>(opt.make_pair) ||
                      std::any_of(subjects.begin(), subjects.end(), [](const SubjectSource& s) { return static_cast<bool>(s.load_input); });
  RG_CHECK(!(paired && opt.label_map), "prepare: --label-map is for (image, mask) files, not pair files");
  if (paired && !opt.make_pair)
    for (const SubjectSource& s : subjects)
      RG_CHECK(static_cast<bool>(s.load_input), "prepare: subject ", s.name,
               " has no input volume but others do; give an input for every reference");
  const auto t_start = std::chrono::steady_clock::now();
  const int64_t S = opt.size;
  const int64_t nsub = static_cast<int64_t>(subjects.size());
  const auto with_lesions_count = std::count_if(subjects.begin(), subjects.end(),
                                                [](const SubjectSource& s) { return bool(s.load_lesions); });
  const bool with_lesions = with_lesions_count > 0;
  RG_CHECK(!with_lesions || with_lesions_count == nsub, "prepare: ", with_lesions_count, " of ", nsub,
           " subjects have lesion masks (all or none)");
  PrepareSummary summary;
  summary.path = out_path;
  summary.size = S;
  summary.subjects = nsub;

  std::vector<int> subject_split;
  if (opt.split_by == SplitBy::Subject) {
    subject_split = assign_subject_splits(nsub, opt.fractions, opt.seed);
    if (nsub < 3 && (opt.fractions[1] > 0 || opt.fractions[2] > 0))
      summary.warnings.push_back("only " + std::to_string(nsub) +
                                 " subject(s): validation/test splits are empty; use --split-by slab "
                                 "for a single volume");
  }

  // Output goes to <out>.tmp, renamed at the end; the guard removes it on any error.
  const fs::path out(out_path);
  std::error_code ec;
  if (out.has_parent_path()) {
    fs::create_directories(out.parent_path(), ec);
    RG_CHECK(!ec, out_path, ": cannot create directory ", out.parent_path().string(), ": ", ec.message());
  }
  TempFileGuard guard{out_path + ".tmp"};
  {
    h5::Handle file = h5::create_file(guard.path);
    const hid_t F = file.get();
    const std::vector<hsize_t> img_row{static_cast<hsize_t>(S), static_cast<hsize_t>(S)};
    struct SplitOut {
      h5::Handle group;
      h5::RowWriter images, masks, lesions, labels, targets, subject, slice, source_slice;
      std::vector<int64_t> subjects_seen;
      double mask_sum = 0;
    };
    std::array<SplitOut, 3> so;
    for (int s = 0; s < 3; ++s) {
      so[s].group = h5::create_group(F, kSplitNames[s], guard.path);
      const hid_t G = so[s].group.get();
      so[s].images = h5::RowWriter(G, "images", H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, img_row, opt.compression, guard.path);
      so[s].masks = h5::RowWriter(G, "masks", H5T_NATIVE_UINT8, H5T_STD_U8LE, img_row, opt.compression, guard.path);
      if (with_lesions)
        so[s].lesions = h5::RowWriter(G, "lesions", H5T_NATIVE_UINT8, H5T_STD_U8LE, img_row, opt.compression, guard.path);
      if (opt.label_map)
        so[s].labels = h5::RowWriter(G, "labels", H5T_NATIVE_UINT8, H5T_STD_U8LE, img_row, opt.compression, guard.path);
      if (paired)
        so[s].targets = h5::RowWriter(G, "targets", H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, img_row, opt.compression, guard.path);
      so[s].subject = h5::RowWriter(G, "subject", H5T_NATIVE_INT32, H5T_STD_I32LE, {}, 0, guard.path);
      so[s].slice = h5::RowWriter(G, "slice", H5T_NATIVE_INT32, H5T_STD_I32LE, {}, 0, guard.path);
      so[s].source_slice = h5::RowWriter(G, "source_slice", H5T_NATIVE_INT32, H5T_STD_I32LE, {}, 0, guard.path);
    }

    // Per-subject metadata, written at the end.
    std::vector<std::string> names, image_paths, mask_paths, input_paths, split_names, orient_codes;
    std::vector<int64_t> dims_v, crop_v, axes_v;
    std::vector<double> spacing_v, affine_v, norm_v, pixel_v;

    ProgressBar bar("prepare", static_cast<double>(nsub), "subjects", opt.progress);
    std::vector<float> slice_img, out_img(static_cast<size_t>(S * S)), out_ref, mask_plane(static_cast<size_t>(S * S));
    std::vector<uint8_t> out_mask(static_cast<size_t>(S * S)), out_lesion(static_cast<size_t>(S * S)),
        out_labels(static_cast<size_t>(S * S));
    for (int64_t si = 0; si < nsub; ++si) {
      const SubjectSource& src = subjects[static_cast<size_t>(si)];
      auto [image, mask] = src.load();
      Volume lesions;
      if (with_lesions) lesions = src.load_lesions();
      const std::string img_name = !src.image_path.empty() ? src.image_path : (image.source.empty() ? src.name : image.source);
      const std::string msk_name = !src.mask_path.empty() ? src.mask_path : (mask.source.empty() ? src.name : mask.source);
      RG_CHECK(image.voxel_count() > 0 && image.voxels.size() == static_cast<size_t>(image.voxel_count()),
               img_name, ": empty or inconsistent volume (", image.dims[0], "x", image.dims[1], "x",
               image.dims[2], ", ", image.voxels.size(), " voxels)");
      RG_CHECK(mask.dims == image.dims && mask.voxels.size() == image.voxels.size(), "image/mask size mismatch: ",
               img_name, " is ", image.dims[0], "x", image.dims[1], "x", image.dims[2], " but ", msk_name, " is ",
               mask.dims[0], "x", mask.dims[1], "x", mask.dims[2]);
      RG_CHECK(!with_lesions || (lesions.dims == image.dims && lesions.voxels.size() == image.voxels.size()),
               "image/lesion mask size mismatch: ", img_name, " is ", image.dims[0], "x", image.dims[1], "x",
               image.dims[2], " but its lesion mask ", lesions.source, " is ", lesions.dims[0], "x",
               lesions.dims[1], "x", lesions.dims[2]);
      Volume input;
      if (src.load_input) {
        input = src.load_input();
        const std::string in_name = !src.input_path.empty() ? src.input_path : input.source;
        RG_CHECK(input.dims == image.dims && input.voxels.size() == image.voxels.size(), "input/reference grid mismatch: ",
                 in_name, " is ", input.dims[0], "x", input.dims[1], "x", input.dims[2], " but the reference ", img_name,
                 " is ", image.dims[0], "x", image.dims[1], "x", image.dims[2]);
        for (int r = 0; r < 4; ++r)
          for (int c = 0; c < 4; ++c)
            RG_CHECK(std::fabs(input.affine[r][c] - image.affine[r][c]) <= 1e-3 * (1 + std::fabs(image.affine[r][c])),
                     "input/reference grid mismatch: ", in_name, " and ", img_name,
                     " have different voxel-to-world affines (same size, different position or spacing)");
      }

      // 1-3: orientation, normalization range, binary mask.
      const SliceOrientation o = orientation_of(image, opt.reorient);
      if (o.fallback)
        summary.warnings.push_back(src.name + ": oblique affine, voxel order kept (no reorientation)");
      const auto range = normalization_range(image, opt);
      const double scale = 2.0 / (range[1] - range[0]);
      std::vector<uint8_t> bm(mask.voxels.size());
      if (opt.labels.empty()) {
        for (size_t i = 0; i < bm.size(); ++i) bm[i] = mask.voxels[i] > opt.mask_threshold;
      } else {
        for (size_t i = 0; i < bm.size(); ++i) {
          const float v = mask.voxels[i];
          bm[i] = std::any_of(opt.labels.begin(), opt.labels.end(), [v](int l) { return v == static_cast<float>(l); });
        }
      }

      // 4: crop box (oriented, inclusive), margin, square in mm.
      CropBox box;
      box.lo = {0, 0, 0};
      box.hi = {o.dims[0] - 1, o.dims[1] - 1, o.dims[2] - 1};
      CropMode crop = opt.crop;
      if (crop == CropMode::Mask) {
        CropBox b = mask_box(bm, o);
        if (b.empty()) {
          summary.warnings.push_back(src.name + ": mask is empty, cropped to the body instead");
          crop = CropMode::Body;
        } else {
          box = b;
        }
      }
      const double body_thr = body_threshold_or_default(opt.body_threshold, opt.modality, range);
      if (crop == CropMode::Body) {
        CropBox b = body_box(image, o, body_thr);
        if (b.empty()) summary.warnings.push_back(src.name + ": no body found above threshold, not cropped");
        else box = b;
      }
      if (crop != CropMode::None) {
        for (int a = 0; a < 3; ++a) {
          const int64_t m = static_cast<int64_t>(std::ceil(opt.margin_mm / o.spacing[a] - 1e-9));
          box.lo[a] -= m;
          box.hi[a] += m;
        }
        box.lo[2] = std::max<int64_t>(0, box.lo[2]);
        box.hi[2] = std::min<int64_t>(o.dims[2] - 1, box.hi[2]);
      }
      const double cc = 0.5 * static_cast<double>(box.lo[0] + box.hi[0]);
      const double rc = 0.5 * static_cast<double>(box.lo[1] + box.hi[1]);
      const double side_mm = std::max((box.hi[0] - box.lo[0] + 1) * o.spacing[0], (box.hi[1] - box.lo[1] + 1) * o.spacing[1]);
      const double step_c = side_mm / o.spacing[0] / static_cast<double>(S);  // source px per output px
      const double step_r = side_mm / o.spacing[1] / static_cast<double>(S);
      const double x0 = cc + 0.5 - 0.5 * side_mm / o.spacing[0];  // continuous left edge (pixel units)
      const double y0 = rc + 0.5 - 0.5 * side_mm / o.spacing[1];
      const int nsx = std::max(1, static_cast<int>(std::ceil(step_c - 1e-6)));
      const int nsy = std::max(1, static_cast<int>(std::ceil(step_r - 1e-6)));

      // 6: split per slice.
      const int64_t z0 = box.lo[2], nz = box.hi[2] - box.lo[2] + 1;
      std::vector<int> slice_split;
      if (opt.split_by == SplitBy::Subject) {
        slice_split.assign(static_cast<size_t>(nz), subject_split[static_cast<size_t>(si)]);
      } else {
        const uint64_t subject_seed = derive_seed(opt.seed, {static_cast<uint64_t>(si)});
        slice_split = opt.split_by == SplitBy::Slab
                          ? assign_slab_splits(nz, opt.slabs, opt.slab_gap, opt.fractions, subject_seed)
                      : opt.folds > 0
                          ? assign_interleaved_fold(nz, opt.slabs, opt.slab_gap, opt.folds, opt.fold)
                          : assign_interleaved_splits(nz, opt.slabs, opt.slab_gap, opt.fractions,
                                                      subject_seed);
      }

      // 5: resample and write each slice.
      const int64_t W = o.dims[0], H = o.dims[1];
      slice_img.resize(static_cast<size_t>(W * H));
      std::array<bool, 3> seen{false, false, false};
      for (int64_t zi = 0; zi < nz; ++zi) {
        const int sp = slice_split[static_cast<size_t>(zi)];
        if (sp < 0) {
          ++summary.dropped_gap_slices;
          continue;
        }
        const int64_t s = z0 + zi;
        // Images and, with MaskResampling::Linear, masks go through the same resize.
        auto resize = [&](const float* plane, float fill, float* dst) {
          resample_plane(plane, W, H, S, x0, y0, step_c, step_r, nsx, nsy, fill, dst);
        };
        // Normalize slice s of a volume and resample it to S x S.
        auto resample = [&](const Volume& vol, std::vector<float>& dst) {
          for (int64_t r = 0; r < H; ++r)
            for (int64_t c = 0; c < W; ++c) {
              const float v = vol.voxels[static_cast<size_t>(o.index(c, r, s))];
              const double t = std::isfinite(v) ? (v - range[0]) * scale - 1.0 : -1.0;
              slice_img[static_cast<size_t>(r * W + c)] = static_cast<float>(std::clamp(t, -1.0, 1.0));
            }
          resize(slice_img.data(), -1.0f, dst.data());
        };
        resample(image, out_img);
        if (paired) {
          // The resampled image is the reference; the input comes from the user's volume or
          // from the simulation.
          out_ref = out_img;
          if (src.load_input) {
            resample(input, out_img);
          } else {
            PairSlice ps{.reference = &out_ref, .input = &out_img, .size = S, .pixel_mm = side_mm / static_cast<double>(S),
                         .range = range, .seed = derive_seed(opt.seed, {0x70616972ULL, static_cast<uint64_t>(si), static_cast<uint64_t>(s)})};
            opt.make_pair(ps);
            RG_CHECK(out_img.size() == static_cast<size_t>(S * S) && out_ref.size() == static_cast<size_t>(S * S),
                     "prepare: the pair simulation returned ", out_img.size(), " and ", out_ref.size(),
                     " pixels for a ", S, "x", S, " slice");
          }
        }
        if (opt.mask_resampling == MaskResampling::Nearest) {
          // The voxel whose centre is nearest to the output pixel's centre.
          for (int64_t v = 0; v < S; ++v)
            for (int64_t u = 0; u < S; ++u) {
              const int64_t mc = static_cast<int64_t>(std::floor(x0 + (static_cast<double>(u) + 0.5) * step_c - 0.5 + 0.5));
              const int64_t mr = static_cast<int64_t>(std::floor(y0 + (static_cast<double>(v) + 0.5) * step_r - 0.5 + 0.5));
              uint8_t m = 0, l = 0;
              if (mc >= 0 && mr >= 0 && mc < W && mr < H) {
                m = bm[static_cast<size_t>(o.index(mc, mr, s))];
                if (with_lesions) l = lesions.voxels[static_cast<size_t>(o.index(mc, mr, s))] >= 0.5f;
              }
              out_lesion[static_cast<size_t>(v * S + u)] = l;
              out_mask[static_cast<size_t>(v * S + u)] = m;
            }
        } else {
          // The binary mask resampled exactly like the image, then >= 0.5: the label follows
          // the edge the network sees (nearest-neighbour labels put staircase corners where
          // the interpolated image has none).
          auto resample_binary = [&](auto&& inside, std::vector<uint8_t>& dst) {
            for (int64_t r = 0; r < H; ++r)
              for (int64_t c = 0; c < W; ++c)
                slice_img[static_cast<size_t>(r * W + c)] = inside(o.index(c, r, s)) ? 1.0f : 0.0f;
            resize(slice_img.data(), 0.0f, mask_plane.data());
            for (int64_t q = 0; q < S * S; ++q) dst[static_cast<size_t>(q)] = mask_plane[static_cast<size_t>(q)] >= 0.5f;
          };
          resample_binary([&](int64_t i) { return bm[static_cast<size_t>(i)] != 0; }, out_mask);
          if (with_lesions)
            resample_binary([&](int64_t i) { return lesions.voxels[static_cast<size_t>(i)] >= 0.5f; }, out_lesion);
          else
            std::fill(out_lesion.begin(), out_lesion.end(), uint8_t{0});
        }
        int64_t mask_px = 0;
        for (const uint8_t m : out_mask) mask_px += m;
        SplitOut& dst = so[static_cast<size_t>(sp)];
        if (opt.label_map) {
          // On the prepared slice's scale, as the network sees it.
          const float thr = static_cast<float>(std::clamp((body_thr - range[0]) * scale - 1.0, -1.0, 1.0));
          make_label_map(out_img.data(), thr, out_mask.data(), with_lesions ? out_lesion.data() : nullptr, S, S,
                         out_labels.data());
          dst.labels.append(out_labels.data(), 1);
        }
        dst.images.append(out_img.data(), 1);
        dst.masks.append(out_mask.data(), 1);
        if (with_lesions) dst.lesions.append(out_lesion.data(), 1);
        if (paired) dst.targets.append(out_ref.data(), 1);
        const int32_t sub32 = static_cast<int32_t>(si), slice32 = static_cast<int32_t>(s),
                      src32 = static_cast<int32_t>(o.source_slice(s));
        dst.subject.append(&sub32, 1);
        dst.slice.append(&slice32, 1);
        dst.source_slice.append(&src32, 1);
        dst.mask_sum += static_cast<double>(mask_px) / static_cast<double>(S * S);
        if (!seen[static_cast<size_t>(sp)]) {
          seen[static_cast<size_t>(sp)] = true;
          dst.subjects_seen.push_back(si);
        }
        bar.update(static_cast<double>(si) + static_cast<double>(zi + 1) / static_cast<double>(nz));
      }

      names.push_back(src.name);
      image_paths.push_back(img_name);
      mask_paths.push_back(msk_name);
      input_paths.push_back(src.load_input ? (!src.input_path.empty() ? src.input_path : input.source)
                                           : std::string(paired ? "simulated" : ""));
      split_names.push_back(opt.split_by == SplitBy::Subject ? kSplitNames[subject_split[static_cast<size_t>(si)]] : split_by_name(opt.split_by));
      for (int a = 0; a < 3; ++a) {
        dims_v.push_back(image.dims[a]);
        spacing_v.push_back(image.spacing[a]);
        axes_v.push_back(o.flip[a] ? -(o.perm[a] + 1) : (o.perm[a] + 1));
      }
      for (int r = 0; r < 4; ++r)
        for (int c = 0; c < 4; ++c) affine_v.push_back(image.affine[r][c]);
      for (int a = 0; a < 3; ++a) {
        crop_v.push_back(a < 2 ? static_cast<int64_t>(std::floor(a == 0 ? x0 : y0)) : box.lo[2]);
        crop_v.push_back(a < 2 ? static_cast<int64_t>(std::ceil(a == 0 ? x0 + side_mm / o.spacing[0] : y0 + side_mm / o.spacing[1]))
                               : box.hi[2] + 1);
      }
      norm_v.push_back(range[0]);
      norm_v.push_back(range[1]);
      pixel_v.push_back(side_mm / static_cast<double>(S));
      pixel_v.push_back(side_mm / static_cast<double>(S));
      pixel_v.push_back(o.spacing[2]);
      bar.update(static_cast<double>(si + 1));
    }
    bar.finish();

    // /subjects
    {
      h5::Handle g = h5::create_group(F, "subjects", guard.path);
      const hid_t G = g.get();
      const hsize_t n = static_cast<hsize_t>(nsub);
      h5::write_strings(G, "name", names, guard.path);
      h5::write_strings(G, "image_path", image_paths, guard.path);
      h5::write_strings(G, "mask_path", mask_paths, guard.path);
      if (paired) h5::write_strings(G, "input_path", input_paths, guard.path);
      h5::write_strings(G, "split", split_names, guard.path);
      h5::write_dataset(G, "dims", H5T_NATIVE_INT64, H5T_STD_I64LE, {n, 3}, dims_v.data(), guard.path);
      h5::write_dataset(G, "spacing", H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, {n, 3}, spacing_v.data(), guard.path);
      h5::write_dataset(G, "affine", H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, {n, 4, 4}, affine_v.data(), guard.path);
      h5::write_dataset(G, "oriented_axes", H5T_NATIVE_INT64, H5T_STD_I64LE, {n, 3}, axes_v.data(), guard.path);
      h5::write_dataset(G, "crop", H5T_NATIVE_INT64, H5T_STD_I64LE, {n, 6}, crop_v.data(), guard.path);
      h5::write_dataset(G, "norm_range", H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, {n, 2}, norm_v.data(), guard.path);
      h5::write_dataset(G, "pixel_spacing", H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, {n, 3}, pixel_v.data(), guard.path);
    }

    // Root attributes.
    h5::write_attr(F, "format", std::string("roentgen-slices"));
    h5::write_attr(F, "format_version", int64_t{1});
    h5::write_attr(F, "created_by", std::string("roentgen prepare_data"));
    h5::write_attr(F, "source", opt.source);
    h5::write_attr(F, "source_kind", opt.source_kind);
    if (opt.label_map) {
      h5::write_attr(F, "label_classes", join_label_classes(label_class_names(with_lesions)));
      h5::write_attr(F, "label_map", std::string("/<split>/labels: 0 outside the body, 1 body (prepared slice above the body "
                                                 "threshold, holes filled), 2 mask") +
                                         (with_lesions ? ", 3 lesion" : "") + " (data/label_map.h)");
    }
    if (with_lesions)
      h5::write_attr(F, "lesion_masks", std::string("/<split>/lesions: the subjects' lesion masks, resampled like the masks"));
    h5::write_attr(F, "modality", std::string(modality_name(opt.modality)));
    std::ostringstream norm;
    if (opt.modality == Modality::CT) {
      norm << "window [" << opt.window[0] << ", " << opt.window[1] << "] HU -> [-1, 1], clamped";
      h5::write_attr(F, "window", std::vector<double>{opt.window[0], opt.window[1]});
    } else {
      norm << "percentiles [" << opt.percentiles[0] << ", " << opt.percentiles[1]
           << "] per subject -> [-1, 1], clamped";
      h5::write_attr(F, "percentiles", std::vector<double>{opt.percentiles[0], opt.percentiles[1]});
    }
    h5::write_attr(F, "normalization", norm.str());
    std::vector<int64_t> labels(opt.labels.begin(), opt.labels.end());
    h5::write_attr(F, "mask_labels", labels);
    h5::write_attr(F, "mask_rule", labels.empty() ? "value > " + std::to_string(opt.mask_threshold)
                                                  : std::string("value in mask_labels"));
    h5::write_attr(F, "crop", std::string(crop_name(opt.crop)));
    h5::write_attr(F, "mask_resampling", std::string(mask_resampling_name(opt.mask_resampling)));
    h5::write_attr(F, "margin_mm", opt.margin_mm);
    h5::write_attr(F, "size", std::vector<int64_t>{S, S});
    h5::write_attr(F, "orientation", std::string(opt.reorient ? "rows anterior->posterior, columns patient right->left, "
                                                                "slices inferior->superior"
                                                              : "voxel order (rows j, columns i, slices k)"));
    h5::write_attr(F, "split_by", std::string(split_by_name(opt.split_by)));
    if (opt.folds == 0)  // folds set the split's sizes themselves
      h5::write_attr(F, "split_fractions", std::vector<double>{opt.fractions[0], opt.fractions[1], opt.fractions[2]});
    if (opt.split_by != SplitBy::Subject) {
      h5::write_attr(F, "slabs", int64_t{opt.slabs});
      h5::write_attr(F, "slab_gap", int64_t{opt.slab_gap});
    }
    if (opt.folds > 0) {
      h5::write_attr(F, "folds", int64_t{opt.folds});
      h5::write_attr(F, "fold", int64_t{opt.fold});
    }
    h5::write_attr(F, "seed", static_cast<int64_t>(opt.seed));
    h5::write_attr(F, "num_subjects", nsub);
    if (paired) {
      h5::write_attr(F, "pairs", opt.pairs.empty() ? std::string("volume-pairs") : opt.pairs);
      h5::write_attr(F, "pair_layout", std::string("images = degraded input, targets = reference, masks = region of the metrics"));
      for (const auto& [k, v] : opt.pair_attributes) h5::write_attr(F, k, v);
    }
    for (int s = 0; s < 3; ++s) {
      SplitOut& x = so[static_cast<size_t>(s)];
      SplitSummary& ss = summary.splits[static_cast<size_t>(s)];
      ss.slices = static_cast<int64_t>(x.images.rows());
      ss.subjects = static_cast<int64_t>(x.subjects_seen.size());
      ss.mask_fraction = ss.slices ? x.mask_sum / static_cast<double>(ss.slices) : 0.0;
      h5::write_attr(x.group.get(), "count", ss.slices);
      h5::write_attr(x.group.get(), "subjects", x.subjects_seen);
      h5::write_attr(x.group.get(), "mask_fraction", ss.mask_fraction);
      h5::write_attr(F, std::string("num_") + kSplitNames[s], ss.slices);
    }
    // Make sure everything reached the disk before the rename.
    RG_CHECK(H5Fflush(F, H5F_SCOPE_GLOBAL) >= 0, guard.path, ": flush failed (disk full?)");
    for (auto& x : so) x = SplitOut{};
  }  // file closed here
  fs::rename(guard.path, out_path, ec);
  RG_CHECK(!ec, "cannot rename ", guard.path, " to ", out_path, ": ", ec.message());
  guard.committed = true;
  summary.bytes = fs::file_size(out_path, ec);
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  return summary;
}

}  // namespace rg::data
