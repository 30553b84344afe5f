#include "data/label_map.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "engine/error.h"

namespace rg::data {

std::vector<std::string> label_class_names(bool with_lesions) {
  std::vector<std::string> names{"background", "body", "mask"};
  if (with_lesions) names.push_back("lesion");
  return names;
}

std::string join_label_classes(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ",") + n;
  return out;
}

std::vector<std::string> parse_label_classes(const std::string& text, const std::string& what) {
  std::vector<std::string> names;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    RG_CHECK(!item.empty(), what, ": empty class name in label_classes '", text, "'");
    names.push_back(item);
  }
  RG_CHECK(names.size() >= 2 && names.size() <= 255, what, ": label_classes '", text,
           "' must name 2 to 255 classes");
  return names;
}

void mark_background(const float* image, float body_threshold, int64_t h, int64_t w, uint8_t* background,
                     const uint8_t* also_passable) {
  // An explicit-stack flood fill from every border pixel.
  std::fill(background, background + h * w, uint8_t{0});
  std::vector<int64_t> stack;
  auto push = [&](int64_t y, int64_t x) {
    const int64_t p = y * w + x;
    if (background[p] || (image[p] > body_threshold && !(also_passable && also_passable[p]))) return;
    background[p] = 1;
    stack.push_back(p);
  };
  for (int64_t x = 0; x < w; ++x) push(0, x), push(h - 1, x);
  for (int64_t y = 0; y < h; ++y) push(y, 0), push(y, w - 1);
  while (!stack.empty()) {
    const int64_t p = stack.back();
    stack.pop_back();
    const int64_t y = p / w, x = p % w;
    if (y > 0) push(y - 1, x);
    if (y + 1 < h) push(y + 1, x);
    if (x > 0) push(y, x - 1);
    if (x + 1 < w) push(y, x + 1);
  }
}

void make_label_map(const float* image, float body_threshold, const uint8_t* mask,
                    const uint8_t* lesions, int64_t h, int64_t w, uint8_t* labels) {
  const int64_t n = h * w;
  std::vector<uint8_t> outside(static_cast<size_t>(n));
  mark_background(image, body_threshold, h, w, outside.data());
  for (int64_t p = 0; p < n; ++p) {
    uint8_t c = outside[static_cast<size_t>(p)] ? kLabelBackground : kLabelBody;
    if (mask[p]) c = kLabelMask;
    if (lesions && lesions[p]) c = kLabelLesion;
    labels[p] = c;
  }
}

void one_hot(const float* labels, int64_t n_pixels, int classes, float* out) {
  for (int64_t p = 0; p < n_pixels; ++p) {
    const float v = labels[p];
    const long c = std::lround(v);
    RG_CHECK(std::isfinite(v) && c >= 0 && c < classes, "one_hot: class ", v, " at pixel ", p,
             " is outside [0, ", classes, ")");
    float* o = out + p * classes;
    for (int k = 0; k < classes; ++k) o[k] = k == c ? 1.0f : 0.0f;
  }
}

std::vector<float> label_picture(const float* labels, int64_t n_pixels, int classes) {
  std::vector<float> out(static_cast<size_t>(n_pixels));
  const float step = classes > 1 ? 2.0f / static_cast<float>(classes - 1) : 0.0f;
  for (int64_t p = 0; p < n_pixels; ++p) out[static_cast<size_t>(p)] = -1.0f + step * labels[p];
  return out;
}

}  // namespace rg::data
