// Label maps: one class per pixel of a prepared slice, for generators conditioned on more than the
// binary mask (apps/synth: the lung phantom on body, lungs and lesions; Colin27 on head and
// brain). prepare_data --label-map stores them as /<split>/labels (uint8) with the root attribute
// label_classes naming the classes in order (docs/data_hdf5.md):
//   0 background  outside the body
//   1 body        inside the body, outside the mask
//   2 mask        the binarized mask (lungs, brain)
//   3 lesion      the subject's lesion mask, where the file has one (it wins over the mask)
// The body is the slice above the body threshold (prepare_data's --body-threshold, on the
// prepared slice) with its holes filled: everything not connected to the slice border through
// pixels below the threshold (air in the lungs or bowel, dark skull in a T1 image) is body.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace rg::data {

inline constexpr uint8_t kLabelBackground = 0;
inline constexpr uint8_t kLabelBody = 1;
inline constexpr uint8_t kLabelMask = 2;
inline constexpr uint8_t kLabelLesion = 3;

// The class names of a label map, in class order: background, body, mask (and lesion).
std::vector<std::string> label_class_names(bool with_lesions);

// The label_classes attribute's text ("background,body,mask") and back; parsing throws
// rg::Error naming `what` for an empty or malformed list.
std::string join_label_classes(const std::vector<std::string>& names);
std::vector<std::string> parse_label_classes(const std::string& text, const std::string& what);

// The background of one h x w slice: pixels not above `body_threshold` (NaN counts as below)
// that are connected to the slice border through such pixels (4-connectivity). Writes h * w 0/1
// flags to `background`; everything else, holes included, is body. `also_passable` (0/1, or
// null) marks more pixels that the background spreads through whatever their value.
void mark_background(const float* image, float body_threshold, int64_t h, int64_t w, uint8_t* background,
                     const uint8_t* also_passable = nullptr);
// The label map of one h x w slice: `image` the prepared slice, `body_threshold` on its scale,
// `mask` 0/1, `lesions` 0/1 or null. Writes h * w classes to `labels`.
void make_label_map(const float* image, float body_threshold, const uint8_t* mask,
                    const uint8_t* lesions, int64_t h, int64_t w, uint8_t* labels);

// One-hot encoding for a generator's input: `labels` holds n_pixels class ids (as floats, the
// way a Loader batch carries them), `out` n_pixels * classes floats, pixel-major (NHWC): out[p *
// classes + c] = 1 where labels[p] == c, else 0. A class id outside [0, classes) throws.
void one_hot(const float* labels, int64_t n_pixels, int classes, float* out);

// A label map as a picture cell: classes spread evenly over [-1, 1] (grey levels).
std::vector<float> label_picture(const float* labels, int64_t n_pixels, int classes);

}  // namespace rg::data
