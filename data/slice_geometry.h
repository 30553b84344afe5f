// The slicing geometry of prepared training data (data/prepare.h, docs/data_hdf5.md), for tools
// that run a slice model over a whole volume (apps/seg/volume_inference, apps/translate):
//   forward   reorient (orientation_of) -> normalize (window / percentiles, clamped to [-1, 1])
//             -> crop window (square in mm, may extend past the volume: -1 there) ->
//             area-averaged bilinear resize to size x size (sample_clamped);
//   backward  each voxel of an oriented slice inside the crop's slice range takes the bilinear
//             interpolation of the slice values at its position in the size x size grid (voxels
//             outside the crop window get 0); the oriented index maps straight back to the
//             source voxel, so no resampling of the volume itself happens.
#pragma once

#include <array>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/prepare.h"
#include "data/volume.h"

namespace rg::data {

// How training slices were made: the subset of PrepareOptions that shapes the input.
struct SlicePreprocessing {
  Modality modality = Modality::CT;
  std::array<double, 2> window{-1000.0, 400.0};   // CT
  std::array<double, 2> percentiles{0.5, 99.5};   // MRI
  CropMode crop = CropMode::Body;
  double margin_mm = 10.0;
  double body_threshold = std::numeric_limits<double>::quiet_NaN();  // NaN: prepare's default
  bool reorient = true;
  int64_t size = 256;
  // Where the values came from ("training file <path>", "flags"), for the report.
  std::string origin = "defaults";
  // The training file's mask rule (to binarize a ground truth the same way by default).
  std::vector<int> mask_labels;
  double mask_threshold = 0.0;

  nlohmann::json to_json() const;
};

// Reads the root attributes of a prepared slices file (modality, window or percentiles, crop,
// margin_mm, size, orientation, mask rule). Throws naming the file when it is not one.
SlicePreprocessing preprocessing_from_prepared_file(const std::string& path);

// The slicing of one volume: orientation, intensity range, crop window and resampling steps,
// all as prepare_slices computes them.
struct SliceGeometry {
  SliceOrientation orientation;
  std::array<double, 2> norm_range{0.0, 1.0};  // source values mapped to -1 and +1
  int64_t size = 0;                            // output slices are size x size
  int64_t slice_begin = 0, slice_end = 0;      // oriented slices [begin, end) that are predicted
  double x0 = 0, y0 = 0;                       // left / top edge of the crop window (oriented px)
  double step_c = 1, step_r = 1;               // source pixels per output pixel
  int nsx = 1, nsy = 1;                        // sub-samples per output pixel (area filter)
  double body_threshold = 0;                   // raw value above which a voxel is body
  std::string crop_used;                       // "none", "body", "mask", "mask (predicted)", ...
  std::vector<std::string> warnings;

  int64_t num_slices() const { return slice_end - slice_begin; }
};

// Plans the slicing. `crop_mask` (source voxel order, 0/1) is used for CropMode::Mask; without
// it a Mask crop falls back to the body crop (infer_volume then runs the second pass).
SliceGeometry plan_slices(const Volume& image, const SlicePreprocessing& p,
                          const std::vector<uint8_t>* crop_mask = nullptr);

// Zeroes the voxels of `mask` (source voxel order, 0/1) that belong to the air around the body
// on their oriented slice: connected to the slice border through voxels that are not above
// g.body_threshold or are in the mask (the label map's background rule, data/label_map.h, with
// the mask passable, so that what bleeds from the air into the body's edge goes too). A model
// trained on mask crops never saw the air around the body that a body crop shows, and may paint
// it; the mask crop of inference must not follow that. A mask inside the body (lungs behind the
// chest wall, a brain inside the skull) does not touch that air and stays.
void clear_outside_body(const Volume& image, const SliceGeometry& g, std::vector<uint8_t>& mask);

// The normalized, resized oriented slice `s` (size*size floats, row-major), exactly as
// prepare_slices writes it to the training file.
void extract_slice(const Volume& image, const SliceGeometry& g, int64_t s, float* out);

// Maps a size x size probability slice back onto oriented slice `s` of the original grid:
// writes every voxel of that slice in `out` (source voxel order, image.voxel_count() floats).
void place_slice(const SliceGeometry& g, int64_t s, const float* probs, float* out);

// Throws unless both volumes share dims and (to 1e-3 mm) affine; names both files.
void check_same_grid(const Volume& image, const Volume& other);

// Whether a path names a NIfTI file (.nii or .nii.gz), and the check every tool that writes one
// runs before any work: the extension and an existing directory (errors name `flag`).
bool is_nifti_path(const std::string& path);
void check_nifti_output_path(const std::string& path, const char* flag);

}  // namespace rg::data
