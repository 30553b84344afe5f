#include "data/recon_pairs.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <sstream>

#include "data/volume_io.h"
#include "engine/error.h"

namespace rg::data {

namespace {

std::string num(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

// [-1, 1] <-> source units of the slice's normalization range.
double to_units(float v, const std::array<double, 2>& r) { return r[0] + (static_cast<double>(v) + 1.0) * 0.5 * (r[1] - r[0]); }
float to_normalized(double u, const std::array<double, 2>& r) {
  return static_cast<float>(std::clamp(2.0 * (u - r[0]) / (r[1] - r[0]) - 1.0, -1.0, 1.0));
}

}  // namespace

PairMaker low_dose_ct_pairs(const LowDoseOptions& options) {
  options.validate();
  return [options](PairSlice& p) {
    std::vector<float> hu(p.reference->size());
    for (size_t i = 0; i < hu.size(); ++i) hu[i] = static_cast<float>(to_units((*p.reference)[i], p.range));
    const LowDosePair scans = simulate_low_dose(hu, p.size, p.pixel_mm, options, p.seed);
    p.reference->resize(hu.size());
    p.input->resize(hu.size());
    for (size_t i = 0; i < hu.size(); ++i) {
      (*p.reference)[i] = to_normalized(scans.full[i], p.range);
      (*p.input)[i] = to_normalized(scans.low[i], p.range);
    }
  };
}

PairMaker superres_pairs(SrDegradation degradation, int factor, double sigma) {
  RG_CHECK(factor >= 2 && factor <= 16, "super-resolution: --factor must be in [2, 16], got ", factor);
  return [=](PairSlice& p) {
    RG_CHECK(p.size % factor == 0, "super-resolution: --size ", p.size, " is not divisible by --factor ", factor);
    *p.input = simulate_low_resolution(*p.reference, p.size, p.size, degradation, factor, sigma);
  };
}

std::vector<std::pair<std::string, std::string>> low_dose_ct_attributes(const LowDoseOptions& o) {
  return {{"degradation", "parallel-beam projection, Poisson noise, log, FBP (" + std::string(ramp_window_name(o.window)) +
                              " ramp); input = " + num(o.dose_fraction) + " of the dose, target = full dose"},
          {"photons_per_ray", num(o.photons)},
          {"dose_fraction", num(o.dose_fraction)},
          {"fbp_window", ramp_window_name(o.window)},
          {"mu_water_per_mm", num(kMuWaterPerMm)},
          {"views", o.views ? num(static_cast<double>(o.views)) : std::string("ceil(pi size / 2)")},
          {"bins", o.bins ? num(static_cast<double>(o.bins)) : std::string("ceil(size sqrt 2) + 2")}};
}

std::vector<std::pair<std::string, std::string>> superres_attributes(SrDegradation d, int factor, double sigma) {
  std::string what = d == SrDegradation::Kspace
                         ? "central 1/" + std::to_string(factor) + " of k-space per in-plane axis"
                         : "Gaussian blur (sigma " + num(sigma > 0 ? sigma : 0.5 * factor) + " px) + downsampling by " +
                               std::to_string(factor);
  return {{"degradation", what + ", upsampled back by bicubic interpolation (Keys, a = -0.5); input = bicubic baseline"},
          {"sr_degradation", sr_degradation_name(d)},
          {"sr_factor", std::to_string(factor)}};
}

std::vector<SubjectSource> with_body_masks(std::vector<SubjectSource> subjects, double threshold) {
  for (SubjectSource& s : subjects) {
    s.load = [load = s.load, threshold] {
      auto [image, mask] = load();
      mask = image;
      for (float& v : mask.voxels) v = v > threshold ? 1.0f : 0.0f;
      mask.source = image.source + " > " + num(threshold);
      return std::make_pair(std::move(image), std::move(mask));
    };
    s.mask_path = "body: image > " + num(threshold);
  }
  return subjects;
}

std::vector<SubjectSource> paired_volume_subjects(const std::vector<std::string>& inputs,
                                                  const std::vector<std::string>& references,
                                                  const std::vector<std::string>& masks, double body_threshold) {
  RG_CHECK(!references.empty(), "no reference volume given (--reference)");
  RG_CHECK(inputs.size() == references.size(), "got ", inputs.size(), " input volume(s) but ", references.size(),
           " reference(s); give one --input per --reference");
  RG_CHECK(masks.empty() || masks.size() == references.size(), "got ", masks.size(), " mask(s) for ",
           references.size(), " reference(s); give one --mask per --reference or none");
  std::error_code ec;
  for (const auto& lists : {&inputs, &references, &masks})
    for (const std::string& f : *lists)
      RG_CHECK(std::filesystem::exists(f, ec), f, ": no such file");
  std::vector<SubjectSource> out;
  for (size_t i = 0; i < references.size(); ++i) {
    SubjectSource s;
    s.name = std::filesystem::path(references[i]).filename().string();
    s.image_path = references[i];
    s.input_path = inputs[i];
    const std::string mask = masks.empty() ? std::string() : masks[i];
    s.mask_path = mask.empty() ? "body: reference > " + num(body_threshold) : mask;
    s.load = [ref = references[i], mask, body_threshold] {
      Volume image = read_volume(ref);
      Volume m;
      if (!mask.empty()) {
        m = read_volume(mask);
      } else {
        m = image;
        for (float& v : m.voxels) v = v > body_threshold ? 1.0f : 0.0f;
      }
      return std::make_pair(std::move(image), std::move(m));
    };
    s.load_input = [in = inputs[i]] { return read_volume(in); };
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace rg::data
