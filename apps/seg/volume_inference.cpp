#include "apps/seg/volume_inference.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "apps/seg/seg_predict.h"
#include "data/progress.h"
#include "data/slice_dataset.h"
#include "data/volume_io.h"
#include "engine/checkpoint.h"
#include "engine/error.h"
#include "engine/roentgen.h"
#include "models/pix2pix_names.h"
#include "models/unet.h"
#include "train/settings.h"

namespace rg::app {

namespace fs = std::filesystem;
using train::compute_metrics;
using train::SegMetrics;
using train::Spacing3;
using nlohmann::json;

// ---------------------------------------------------------------- the model

SliceModel generator_slice_model(models::UnetGenerator& g, int64_t size, bool bf16, int64_t contrasts,
                                 bool test_time_flip) {
  const int64_t n = g.config.num_downs;
  RG_CHECK(n < 62 && size % (int64_t{1} << n) == 0, "the generator (U-Net num_downs ", n,
           ") needs slices whose size divides by 2^", n, " = ", (n < 62 ? (int64_t{1} << n) : 0),
           ", but the slices are ", size, "x", size);
  const int64_t channels = g.config.in_channels;
  RG_CHECK(contrasts >= 1 && channels >= 1 && channels % contrasts == 0 && (channels / contrasts) % 2 == 1 &&
               g.config.out_channels == 1,
           "the generator has ", channels, " input and ", g.config.out_channels, " output channels; segmentation of ",
           contrasts, " contrast(s) needs an odd number per contrast (the slice and its neighbours) and 1");
  return [&g, size, bf16, channels, test_time_flip](const float* slices, int64_t count, float* probs) {
    const int64_t hw = size * size;
    Tensor x = Tensor::empty({count, size, size, channels});
    std::copy(slices, slices + count * hw * channels, x.data<float>());
    const Tensor p = predict_probabilities(g, x, bf16 ? DType::BF16 : DType::F32, Device::cpu(), test_time_flip);
    std::copy(p.data<float>(), p.data<float>() + count * hw, probs);
  };
}

// ---------------------------------------------------------------- inference

namespace {

// One pass of slicing, model, and mapping back; fills `probs` (source voxel order).
// `contrasts`: the image and its other contrasts, each with the pass's geometry and its own
// normalization range.
int64_t run_pass(const std::vector<std::pair<const data::Volume*, SliceGeometry>>& contrasts,
                 const SliceModel& model, const InferenceOptions& opt, const std::string& label,
                 std::vector<float>& probs) {
  const data::Volume& image = *contrasts[0].first;
  const SliceGeometry& g = contrasts[0].second;
  probs.assign(static_cast<size_t>(image.voxel_count()), 0.0f);
  const int64_t S = g.size, hw = S * S, total = g.num_slices();
  const int64_t batch = std::max<int64_t>(1, opt.batch_size);
  const int64_t context = opt.context_slices, per_contrast = 2 * context + 1;
  const int64_t channels = static_cast<int64_t>(contrasts.size()) * per_contrast;
  std::vector<float> in(static_cast<size_t>(batch * hw * channels)), out(static_cast<size_t>(batch * hw));
  std::vector<float> plane(static_cast<size_t>(channels > 1 ? hw : 0));
  data::ProgressBar bar(label, static_cast<double>(total), "slices", opt.progress);
  for (int64_t first = 0; first < total; first += batch) {
    const int64_t n = std::min(batch, total - first);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t s = g.slice_begin + first + i;
      if (channels == 1) {
        extract_slice(image, g, s, in.data() + i * hw);
        continue;
      }
      float* dst = in.data() + i * hw * channels;
      for (int64_t ch = 0; ch < channels; ++ch) {
        const auto& [volume, geometry] = contrasts[static_cast<size_t>(ch / per_contrast)];
        const int64_t c = ch % per_contrast;
        extract_slice(*volume, geometry, std::clamp(s + c - context, g.slice_begin, g.slice_end - 1), plane.data());
        for (int64_t p = 0; p < hw; ++p) dst[p * channels + ch] = plane[static_cast<size_t>(p)];
      }
    }
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

// Two pass geometries crop the same window and slice range, to a source voxel (a mask edge that
// moves by one voxel between passes moves its box by one voxel: that is as still as it gets).
bool same_window(const SliceGeometry& a, const SliceGeometry& b) {
  const double S = static_cast<double>(a.size);
  return std::abs(a.slice_begin - b.slice_begin) <= 1 && std::abs(a.slice_end - b.slice_end) <= 1 &&
         std::fabs(a.x0 - b.x0) <= 1.0 && std::fabs(a.y0 - b.y0) <= 1.0 && std::fabs(a.step_c - b.step_c) * S <= 1.0 &&
         std::fabs(a.step_r - b.step_r) * S <= 1.0;
}

std::vector<uint8_t> threshold_mask(const std::vector<float>& probs, float threshold) {
  std::vector<uint8_t> m(probs.size());
  for (size_t i = 0; i < probs.size(); ++i) m[i] = probs[i] >= threshold ? 1 : 0;
  return m;
}

}  // namespace

InferenceResult infer_volume(const data::Volume& image, const SlicePreprocessing& p, const SliceModel& model,
                             const InferenceOptions& opt, const std::vector<ContrastInput>& more_contrasts) {
  RG_CHECK(model != nullptr, "infer_volume: no model");
  RG_CHECK(opt.batch_size >= 1, "--batch-size must be >= 1, got ", opt.batch_size);
  RG_CHECK(opt.context_slices >= 0, "infer_volume: context_slices must be >= 0, got ", opt.context_slices);
  RG_CHECK(opt.largest_components >= 0, "--largest-components must be >= 0, got ", opt.largest_components);
  const auto t0 = std::chrono::steady_clock::now();
  // Every contrast is sliced with the image's geometry (its crop) and its own intensity range.
  std::vector<std::array<double, 2>> ranges;
  for (const ContrastInput& c : more_contrasts) {
    RG_CHECK(c.volume, "infer_volume: a contrast without a volume");
    check_same_grid(image, *c.volume);
    ranges.push_back(plan_slices(*c.volume, c.preprocessing).norm_range);
  }
  auto contrasts_of = [&](const SliceGeometry& g) {
    std::vector<std::pair<const data::Volume*, SliceGeometry>> out{{&image, g}};
    for (size_t q = 0; q < more_contrasts.size(); ++q) {
      out.emplace_back(more_contrasts[q].volume, g);
      out.back().second.norm_range = ranges[q];
    }
    return out;
  };
  InferenceResult r;
  r.geometry = plan_slices(image, p);
  r.slices_run += run_pass(contrasts_of(r.geometry), model, opt, "infer", r.probabilities);
  r.passes = 1;
  r.mask = threshold_mask(r.probabilities, opt.threshold);
  if (p.crop == data::CropMode::Mask) {
    // Training cropped to the mask's box. The first pass (a body crop, wider than any training
    // slice) finds where the mask is; each further pass crops to the box of the previous pass's
    // mask, until the box stops moving: a model trained on mask crops may paint what it never
    // saw in a wider view (the air around the body, the abdomen), and a pass over a tighter box
    // no longer does. Only the mask inside the body counts towards the box.
    for (int pass = 2;; ++pass) {
      std::vector<uint8_t> crop_mask = r.mask;
      data::clear_outside_body(image, r.geometry, crop_mask);
      if (opt.largest_components > 0) keep_largest_components(crop_mask, image.dims, opt.largest_components);
      SliceGeometry next = plan_slices(image, p, &crop_mask);
      if (next.crop_used != "mask (predicted)") {
        r.geometry.warnings.push_back("pass " + std::to_string(pass - 1) +
                                      " predicted no mask inside the body: kept its result");
        break;
      }
      if (pass > 2 && same_window(next, r.geometry)) {
        r.crop_converged = true;
        break;
      }
      if (pass > kMaxMaskCropPasses) break;
      next.warnings.insert(next.warnings.begin(), r.geometry.warnings.begin(), r.geometry.warnings.end());
      r.geometry = std::move(next);
      r.slices_run += run_pass(contrasts_of(r.geometry), model, opt, "infer (mask crop)", r.probabilities);
      r.passes = pass;
      r.mask = threshold_mask(r.probabilities, opt.threshold);
    }
    if (r.passes == kMaxMaskCropPasses && !r.crop_converged)
      r.geometry.warnings.push_back("the mask crop still moved after " + std::to_string(r.passes) +
                                    " passes: the model may be finding the mask in places it was not trained on; "
                                    "check the result (--largest-components may help)");
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

json number_or_null(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

}  // namespace

json run_infer_seg(const InferSegOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  RG_CHECK(!o.checkpoint.empty(), "--checkpoint: no checkpoint given");
  RG_CHECK(!o.input.empty(), "--input: no input volume given");
  RG_CHECK(!o.output.empty(), "--output: no output path given");
  data::check_nifti_output_path(o.output, "--output");
  if (!o.probabilities.empty()) data::check_nifti_output_path(o.probabilities, "--probabilities");
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
  // A train_seg --ema run validated and tested the average of G's weights (G_ema.*): use it.
  const std::string g_prefix = models::inference_generator_prefix(ck);
  RG_CHECK(!g_prefix.empty(), o.checkpoint, ": holds no generator tensors (G.*)");
  const bool weight_average = g_prefix == "G_ema.";
  try {
    load_module_state(g, ck.tensors, g_prefix);  // entries under other prefixes (D., opt_) are skipped
  } catch (const Error& e) {
    RG_FAIL(o.checkpoint, ": generator weights do not match its generator_config: ", e.what());
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

  // ---- the other contrasts (train_seg --image-channel): their training files give their
  // normalization; the preprocessing flags above concern --input alone.
  std::vector<std::string> channel_files;
  if (run.contains("image_channels") && run["image_channels"].is_array())
    for (const auto& f : run["image_channels"]) channel_files.push_back(f.get<std::string>());
  if (!o.prepared_channels.empty()) {
    RG_CHECK(o.prepared_channels.size() == channel_files.size(), "--prepared-channel: the model of ", o.checkpoint,
             " takes ", channel_files.size(), " other contrast(s), got ", o.prepared_channels.size(), " file(s)");
    channel_files = o.prepared_channels;
  }
  RG_CHECK(o.input_channels.size() == channel_files.size(), "the model of ", o.checkpoint, " was trained on ",
           1 + channel_files.size(), " contrast(s) but the input gives ", 1 + o.input_channels.size(), " (--input and ",
           o.input_channels.size(), " --input-channel volume(s)); pass one --input-channel per other contrast, in the "
           "order of the run's image_channels");
  std::vector<SlicePreprocessing> channel_pre;
  for (size_t q = 0; q < channel_files.size(); ++q) {
    RG_CHECK(fs::exists(channel_files[q], ec), "the training file ", channel_files[q], " of contrast ", q + 2,
             " is not available: pass --prepared-channel FILE.h5 for every other contrast");
    channel_pre.push_back(preprocessing_from_prepared_file(channel_files[q]));
  }
  const auto contrasts = static_cast<int64_t>(1 + channel_files.size());
  const train::Precision precision = train::parse_precision(
      run.value("precision", std::string("fp32")), o.checkpoint + " (the run's precision)");
  const bool test_time_flip = o.test_time_flip.value_or(run.value("test_time_flip", false));
  SliceModel model = generator_slice_model(g, pre.size, precision == train::Precision::Bf16, contrasts, test_time_flip);

  // ---- volumes
  const data::Volume image = data::read_volume(o.input);
  RG_CHECK(image.voxel_count() > 0, o.input, ": empty volume");
  std::vector<data::Volume> channel_volumes;
  for (const std::string& f : o.input_channels) {
    channel_volumes.push_back(data::read_volume(f));
    check_same_grid(image, channel_volumes.back());
  }
  std::vector<ContrastInput> more_contrasts;
  for (size_t q = 0; q < channel_volumes.size(); ++q) more_contrasts.push_back({&channel_volumes[q], channel_pre[q]});
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
            << " mm); G unet num_downs " << gc.num_downs << " ngf " << gc.ngf
            << (gc.in_channels > contrasts ? " (2.5-D: " + std::to_string(gc.in_channels / contrasts) + " slices per input)" : std::string())
            << (contrasts > 1 ? " (" + std::to_string(contrasts) + " contrasts)" : std::string())
            << "; preprocessing from "
            << pre.origin << ": " << data::modality_name(pre.modality) << ", crop " << data::crop_name(pre.crop)
            << ", " << pre.size << "x" << pre.size
            << (test_time_flip ? "; each slice averaged with its left-right mirror (test-time flip)" : "")
            << (weight_average ? "; the run's average of G's weights (G_ema, train_seg --ema)" : "") << "\n";
  for (const auto& n : notes) std::cerr << "infer_seg: note: " << n << "\n";
  InferenceOptions inference = o.inference;
  inference.context_slices = static_cast<int>(gc.in_channels / contrasts / 2);  // a 2.5-D model's neighbours
  InferenceResult r = infer_volume(image, pre, model, inference, more_contrasts);
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
              {"input_channels", o.input_channels},
              {"output", o.output},
              {"dims", image.dims},
              {"spacing_mm", image.spacing},
              {"generator", models::to_json(gc)},
              {"weights", g_prefix.substr(0, g_prefix.size() - 1)},
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
              {"mask_crop_converged", r.crop_converged},
              {"slices_run", r.slices_run},
              {"threshold", o.inference.threshold},
              {"test_time_flip", test_time_flip},
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
