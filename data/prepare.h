// Preparing training data: 3-D (image, mask) volumes -> one HDF5 file of normalized, cropped,
// resized 2-D axial slices with binary masks, split into train/val/test without leaks.
// The file layout is documented in docs/data_hdf5.md; data/slice_dataset.h reads it back.
//
// Per subject:
//   1. reorient so slices are axial, rows run anterior->posterior and columns the patient's
//      right->left (the radiological display convention), slices inferior->superior;
//   2. normalize: CT by an HU window, MRI by percentiles; linearly to [-1, 1], clamped;
//   3. binarize the mask (voxel in `labels`, or > `mask_threshold` when no labels are given);
//   4. crop to the body or the mask's 3-D bounding box plus a margin (square in mm, so the
//      resize keeps the aspect ratio);
//   5. resample each slice to size x size: area-averaged bilinear for the image, nearest for
//      the mask;
//   6. assign slices to splits: whole subjects (split by subject), or contiguous slabs of slices
//      with a gap of dropped slices between slabs of different splits (split by slab).
// Output is written to "<out>.tmp" and renamed at the end; on any error the temporary file is
// removed and nothing is left at <out>.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "data/phantom.h"
#include "data/volume.h"

namespace rg::data {

enum class Modality { CT, MRI };
enum class CropMode { None, Body, Mask };
// How masks (and lesion masks) reach the S x S grid: the label of the nearest voxel, or the
// binary mask resampled like the image (area-averaged bilinear) and thresholded at 0.5.
enum class MaskResampling { Nearest, Linear };
// Subject: whole subjects per split. Slab: each volume cut into contiguous slabs assigned to
// splits by a seeded shuffle (a split may land in one part of the body only). Interleaved: the
// same slabs, but each split's slabs spread evenly along the volume (validation and test then
// both sample the whole organ: their Dice can predict each other).
enum class SplitBy { Subject, Slab, Interleaved };

const char* modality_name(Modality m);  // "ct", "mri"
const char* crop_name(CropMode c);      // "none", "body", "mask"
const char* split_by_name(SplitBy s);   // "subject", "slab", "interleaved"
const char* mask_resampling_name(MaskResampling m);  // "nearest", "linear"
Modality parse_modality(const std::string& s);  // throws naming the value
CropMode parse_crop(const std::string& s);
SplitBy parse_split_by(const std::string& s);
MaskResampling parse_mask_resampling(const std::string& s);

// The three splits, in file order.
inline constexpr const char* kSplitNames[3] = {"train", "val", "test"};

// Paired data for reconstruction (docs/data_hdf5.md, "Pairs"): every written slice has a
// degraded input in /<split>/images and its reference in /<split>/targets. A PairMaker makes the
// input from the resampled slice (and may replace the reference, e.g. by the full-dose scan).
struct PairSlice {
  std::vector<float>* reference;   // in: the resampled slice, normalized; out: the reference
  std::vector<float>* input;       // out: the degraded input, normalized
  int64_t size = 0;                // slices are size x size
  double pixel_mm = 0;             // output pixel size
  std::array<double, 2> range{};   // source intensities mapped to -1 and +1
  uint64_t seed = 0;               // for this slice's noise (from the options' seed)
};
using PairMaker = std::function<void(PairSlice&)>;

struct PrepareOptions {
  Modality modality = Modality::CT;
  std::array<double, 2> window{-1000.0, 400.0};     // CT: HU mapped to -1 and +1
  std::array<double, 2> percentiles{0.5, 99.5};     // MRI: percentiles mapped to -1 and +1
  std::vector<int> labels;        // mask voxels with one of these values -> 1; empty: threshold
  double mask_threshold = 0.0;    // used when labels is empty: mask = value > threshold
  CropMode crop = CropMode::Mask;
  MaskResampling mask_resampling = MaskResampling::Nearest;
  double margin_mm = 10.0;        // added around the crop box (in-plane and along slices)
  // Body detection: raw value > body_threshold; NaN = default (CT: -500 HU; MRI: 5% of the
  // normalization range above its low end).
  double body_threshold = std::numeric_limits<double>::quiet_NaN();
  // Also write /<split>/labels, a label map per slice (background, body, mask and, with lesion
  // masks, lesion; data/label_map.h), for generators conditioned on more than the mask.
  bool label_map = false;
  bool reorient = true;           // to the display convention above; false keeps voxel order
  int64_t size = 256;             // output slices are size x size
  SplitBy split_by = SplitBy::Subject;
  std::array<double, 3> fractions{0.7, 0.15, 0.15};  // train, val, test
  int slabs = 10;                 // split by slab: slabs per subject
  int slab_gap = 2;               // split by slab: slices dropped between slabs of two splits
  int folds = 0;                  // split by interleaved: K folds over the slabs (0 = one layout
                                  // by `fractions` and `seed`)
  int fold = 0;                   // with folds: which fold, 0..K-1
  uint64_t seed = 0;              // split assignment
  int compression = 4;            // deflate level for the slice datasets (0 = none)
  bool progress = true;           // progress bar on stderr
  std::string source;             // free text stored as the file's "source" attribute
  std::string source_kind;        // "luna16", "nifti", "phantom", ...
  // Pairs: set make_pair to simulate the input from each slice, or give every subject a
  // load_input volume (the user's own pairs). `pairs` names the kind (root attribute "pairs",
  // e.g. "low-dose-ct"); pair_attributes describe the degradation (extra root attributes).
  PairMaker make_pair;
  std::string pairs;
  std::vector<std::pair<std::string, std::string>> pair_attributes;
};

// One subject: a name and a way to load its volumes (called once, when its turn comes, so only
// one subject is in memory at a time).
struct SubjectSource {
  std::string name;
  std::string image_path;  // for metadata and messages ("" for generated data)
  std::string mask_path;
  std::function<std::pair<Volume, Volume>()> load;  // (image, mask)
  // Optional: the subject's lesion mask on the image's grid (anomaly detection's ground truth),
  // called right after load(). When the subjects have it, prepare_slices writes it resampled
  // like the mask as /<split>/lesions (uint8 0/1) for every split; all subjects or none.
  std::function<Volume()> load_lesions;
  // Paired files only: the degraded input on the image's grid (the image is the reference).
  std::function<Volume()> load_input;
  std::string input_path;
};

// LUNA16-style directories: every *.mhd under `scans_dir` (recursively, e.g. subset0..9; files
// inside `masks_dir` are skipped) paired with <masks_dir>/<same name>.mhd. Sorted by name;
// `max_subjects` > 0 keeps the first ones. Throws if none are found or a mask is missing.
std::vector<SubjectSource> luna16_subjects(const std::string& scans_dir,
                                           const std::string& masks_dir, int max_subjects = 0);
// Image/mask file pairs in any format read_volume() reads (NIfTI, MetaImage, ...).
// `image_volume` picks one volume of 4-D NIfTI images (a contrast of a multi-contrast file;
// throws naming the file when it is out of range, or > 0 for an image that is not NIfTI).
std::vector<SubjectSource> volume_pair_subjects(const std::vector<std::string>& images,
                                                const std::vector<std::string>& masks,
                                                int64_t image_volume = 0);
// Phantom subjects generated in memory (same volumes as write_phantom_luna16 with this seed).
std::vector<SubjectSource> phantom_subjects(int subjects, uint64_t seed,
                                            const PhantomOptions& options = {});

// The lung phantom as two modalities of one anatomy (modality translation): per subject the CT
// (HU) or the MR-like rendering (render_phantom_mr, in mr.contrast) with the body mask (tissue
// != air), or the tissue map itself (class numbers as values) with the lesion mask (tissue ==
// lesion or halo). Subject i is the same anatomy in every view, with the same names.
enum class PhantomView { CT, MR, Tissue };
std::vector<SubjectSource> phantom_view_subjects(PhantomView view, int subjects, uint64_t seed,
                                                 const PhantomOptions& options = {},
                                                 const MrOptions& mr = {});

// Writes the four prepared files of a translation dataset into `dir`:
//   <stem>_ct.h5      CT, window [-1000, 1000] HU -> [-1, 1] (HU = 1000 x value), body mask
//   <stem>_mr.h5      MR rendering (T1), per-subject percentiles 0.5 / 99.5 -> [-1, 1], body mask
//   <stem>_mr_t2.h5   the same subjects' T2 rendering (same session: bias field and jitter
//                     draws), prepared the same way: a second source contrast
//   <stem>_tissue.h5  tissue classes, window [0, 7] (class = 3.5 (value + 1)), lesion mask
//                     (files made before the halo class have window [0, 6]: read the window)
// all uncropped (the whole field of view, so the three share one slice grid), size x size,
// split by subject with `split_seed`: slice k of a split is the same slice of the same subject
// in every file. Phantom subjects get `options.lesions` lesions (default 2 when 0 is given).
struct TranslationFiles {
  std::string ct, mr, mr_t2, tissue;
};
TranslationFiles translation_file_names(const std::string& dir, const std::string& stem);
TranslationFiles prepare_phantom_translation(const std::string& dir, const std::string& stem,
                                             int subjects, uint64_t seed, int64_t size,
                                             uint64_t split_seed, PhantomOptions options = {},
                                             const MrOptions& mr = {}, bool progress = true);

struct SplitSummary {
  int64_t subjects = 0;  // subjects with at least one slice in the split
  int64_t slices = 0;
  double mask_fraction = 0;  // mean fraction of mask pixels per slice
};

struct PrepareSummary {
  std::string path;
  int64_t size = 0;
  int64_t subjects = 0;
  std::array<SplitSummary, 3> splits{};
  int64_t dropped_gap_slices = 0;  // slab gaps
  double seconds = 0;
  uint64_t bytes = 0;
  std::vector<std::string> warnings;
  std::string str() const;  // a human-readable multi-line table
};

// Converts the subjects into one HDF5 file at out_path (atomically). Throws rg::Error naming
// the file and the problem on bad input (size mismatch image/mask, empty volumes, bad options).
PrepareSummary prepare_slices(const std::vector<SubjectSource>& subjects,
                              const PrepareOptions& options, const std::string& out_path);

// The phantom for anomaly detection: subjects that assign_subject_splits(subjects, fractions,
// split_seed) puts in train are generated without lesions (normal anatomy to learn), the others
// with options.lesions lesions each; every subject carries its lesion mask (load_lesions). Pass
// the same fractions and split_seed to prepare_slices (split by subject) so the splits agree.
std::vector<SubjectSource> phantom_anomaly_subjects(int subjects, uint64_t seed,
                                                    const PhantomOptions& options,
                                                    const std::array<double, 3>& fractions,
                                                    uint64_t split_seed);
// The phantom with lesions in every subject (options.lesions each) and their lesion masks
// (load_lesions), e.g. for label maps with a lesion class (prepare_data phantom --lesion-masks).
std::vector<SubjectSource> phantom_lesion_subjects(int subjects, uint64_t seed, const PhantomOptions& options);

// ---- building blocks (exposed for tests and other tools)

// Splits subjects 0..n-1 into train/val/test by `fractions` after a seeded shuffle; returns the
// split index (0, 1, 2) per subject. With n >= 3 and positive fractions every split gets at
// least one subject; train always gets at least one.
std::vector<int> assign_subject_splits(int64_t n, const std::array<double, 3>& fractions,
                                       uint64_t seed);

// Split by slab for slices [0, n): `slabs` contiguous slabs assigned to splits by a seeded
// shuffle; between adjacent slabs of different splits `gap` slices are dropped (split -1).
// Returns the split index (0, 1, 2, or -1 = dropped) per slice.
std::vector<int> assign_slab_splits(int64_t n, int slabs, int gap,
                                    const std::array<double, 3>& fractions, uint64_t seed);
// Split by interleaved slabs: the same slabs and gaps, but the first and the last slab are
// training slabs (when train has at least two: no split is tested on the volume's ends unseen in
// training) and split s's c_s slabs sit near evenly spaced positions over the slabs between
// them, so validation and test each span the volume from near its bottom to near its top (a
// seed shifts which slabs are validation and test).
std::vector<int> assign_interleaved_splits(int64_t n, int slabs, int gap,
                                           const std::array<double, 3>& fractions, uint64_t seed);
// Fold `fold` of K over interleaved slabs: the end slabs train, and the S - 2 slabs between them
// fall into K groups of every K-th slab (K must divide S - 2); group `fold` is test and the group
// before it (mod K) validation, so each is spread evenly over the volume and across the K folds
// every interior slab is tested once. The layout does not depend on a seed.
std::vector<int> assign_interleaved_fold(int64_t n, int slabs, int gap, int folds, int fold);

// Intensity mapping of a volume: values lo -> -1 and hi -> +1.
std::array<double, 2> normalization_range(const Volume& image, const PrepareOptions& options);
// The p-th percentile (0..100) of the values (linear interpolation between order statistics).
double percentile(std::vector<float> values, double p);

// ---- slicing geometry of prepare_slices (pure functions; exposed so that inference,
// apps/seg/volume_inference, slices a volume exactly as training data was sliced)

// Reoriented view of a volume: oriented axis a (0 = column, 1 = row, 2 = slice) reads source
// axis perm[a], reversed when flip[a].
struct SliceOrientation {
  std::array<int, 3> perm{0, 1, 2};
  std::array<bool, 3> flip{false, false, false};
  std::array<int64_t, 3> dims{};
  std::array<double, 3> spacing{};
  std::array<int64_t, 3> stride{};  // oriented stride in source elements (may be negative)
  int64_t base = 0;                 // source index of oriented (0, 0, 0)
  bool fallback = false;            // oblique affine: voxel order kept

  int64_t index(int64_t c, int64_t r, int64_t s) const {
    return base + c * stride[0] + r * stride[1] + s * stride[2];
  }
  int64_t source_slice(int64_t s) const { return flip[2] ? dims[2] - 1 - s : s; }
};
// Step 1: the display-convention orientation from the affine (identity when !reorient, and
// `fallback` set for oblique affines).
SliceOrientation orientation_of(const Volume& v, bool reorient);

// Inclusive oriented bounding box.
struct CropBox {
  std::array<int64_t, 3> lo{0, 0, 0}, hi{-1, -1, -1};
  bool empty() const { return hi[0] < lo[0] || hi[1] < lo[1] || hi[2] < lo[2]; }
};
// Step 4: bounding box of a binary mask (source voxel order), and the body box (see
// docs/data_hdf5.md for the speckle rules). Empty boxes when nothing qualifies.
CropBox mask_box(const std::vector<uint8_t>& bm, const SliceOrientation& o);
CropBox body_box(const Volume& v, const SliceOrientation& o, double threshold);
// The body threshold in raw units: `threshold`, or where it is NaN the default (CT -500 HU; MRI
// 5% of the normalization range above its low end).
double body_threshold_or_default(double threshold, Modality m, const std::array<double, 2>& norm_range);

// Step 5: bilinear sample of a W x H slice at pixel-centre coordinates (x, y); coordinates
// within half a pixel of the edge clamp to it, beyond that give `fill`.
float sample_clamped(const float* img, int64_t W, int64_t H, double x, double y, float fill);
// Step 5: area-averaged bilinear resize of a W x H plane (row-major) to S x S. Output pixel
// (u, v) covers source columns [x0 + u step_c, x0 + (u + 1) step_c) (rows likewise) and is the
// mean of nsx x nsy sample_clamped samples spread over it (`fill` outside the plane).
void resample_plane(const float* plane, int64_t W, int64_t H, int64_t S, double x0, double y0, double step_c,
                    double step_r, int nsx, int nsy, float fill, float* out);

}  // namespace rg::data
