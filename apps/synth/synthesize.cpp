#include "apps/synth/synthesize.h"

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "data/label_map.h"
#include "data/loader.h"
#include "data/png_io.h"
#include "data/progress.h"
#include "data/rng.h"
#include "data/slice_dataset.h"
#include "data/slice_writer.h"
#include "data/transforms.h"
#include "engine/roentgen.h"
#include "apps/synth/synth_run.h"
#include "models/unet.h"
#include "train/checkpoint.h"
#include "train/plots.h"
#include "train/settings.h"

namespace rg::app {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct MaskSource {
  std::string what;  // for messages
  int64_t height = 0, width = 0;
  std::vector<std::vector<float>> masks;  // 0/1
  std::vector<std::vector<float>> labels;  // class ids, when G is conditioned on label maps
};

// The source masks (and, with `label_classes` non-empty, label maps with exactly those
// classes) of a prepared file's train split or a PNG mask.
MaskSource masks_from_file(const std::string& path, const std::string& flag,
                           const std::vector<int64_t>* subset,
                           const std::vector<std::string>& label_classes) {
  std::error_code ec;
  RG_CHECK(fs::exists(path, ec), flag, ": ", path, " does not exist");
  MaskSource src;
  src.what = path;
  if (data::is_hdf5_file(path)) {
    data::SliceDataset ds(path, "train");
    RG_CHECK(label_classes.empty() || ds.label_classes() == label_classes, flag, ": ", path,
             ds.has_labels() ? " has label maps of other classes (" + data::join_label_classes(ds.label_classes()) + ")"
                             : std::string(" has no label maps"),
             " but the checkpoint's generator is conditioned on label maps of ",
             data::join_label_classes(label_classes), " (prepare_data ... --label-map)");
    src.height = ds.height();
    src.width = ds.width();
    std::vector<float> image(static_cast<size_t>(ds.height() * ds.width()));
    std::vector<int64_t> all;
    if (!subset) {
      for (int64_t i = 0; i < ds.size(); ++i) all.push_back(i);
      subset = &all;
    }
    for (int64_t i : *subset) {
      RG_CHECK(i >= 0 && i < ds.size(), path, ": training slice ", i, " out of range (", ds.size(), ")");
      std::vector<float> m(image.size());
      ds.read(i, image.data(), m.data());
      src.masks.push_back(std::move(m));
      if (!label_classes.empty()) {
        std::vector<uint8_t> l8(image.size());
        ds.read_labels(i, l8.data());
        src.labels.emplace_back(l8.begin(), l8.end());
      }
    }
    RG_CHECK(!src.masks.empty(), flag, ": ", path, " has no training slices");
    return src;
  }
  RG_CHECK(label_classes.empty(), flag, ": ", path, " is not a prepared HDF5 file; the checkpoint's "
           "generator is conditioned on label maps, which only prepared files (--label-map) hold");
  data::Image8 png;
  try {
    png = data::read_png(path);
  } catch (const Error& e) {
    RG_FAIL(flag, ": ", path, " is neither a prepared HDF5 file nor a readable PNG mask: ", e.what());
  }
  src.height = png.height;
  src.width = png.width;
  std::vector<float> m(static_cast<size_t>(png.width) * static_cast<size_t>(png.height));
  for (size_t i = 0; i < m.size(); ++i) {
    // Foreground: any nonzero colour channel (alpha ignored).
    const int colour = png.channels >= 3 ? 3 : 1;
    bool on = false;
    for (int c = 0; c < colour; ++c) on = on || png.pixels[i * static_cast<size_t>(png.channels) + static_cast<size_t>(c)] != 0;
    m[i] = on ? 1.0f : 0.0f;
  }
  src.masks.push_back(std::move(m));
  return src;
}

}  // namespace

SynthesizeSummary synthesize(const SynthesizeConfig& c) {
  RG_CHECK(!c.out.empty(), "--out: no output file given");
  RG_CHECK(c.count >= 0, "--count must be >= 0, got ", c.count);
  RG_CHECK(c.batch_size > 0, "--batch-size must be > 0, got ", c.batch_size);
  const auto [dir, tag] = train::checkpoint_location(c.checkpoint, "--checkpoint", "train_synth");
  const json meta = train::read_checkpoint_json(dir, tag, "synth");
  RG_CHECK(meta.contains("generator") && meta.contains("slice_size"), "--checkpoint: ",
           (dir / tag).string(), " lacks its generator configuration or slice size");
  const models::UnetConfig gc = meta.at("generator").get<models::UnetConfig>();
  const int64_t h = meta.at("slice_size").at(0).get<int64_t>();
  const int64_t w = meta.at("slice_size").at(1).get<int64_t>();
  const std::string condition = meta.value("condition", std::string("mask"));
  RG_CHECK(condition == "mask" || condition == "labels", "--checkpoint: ", (dir / tag).string(),
           " has an unknown condition '", condition, "'");
  const std::vector<std::string> label_classes =
      condition == "labels" ? meta.at("label_classes").get<std::vector<std::string>>() : std::vector<std::string>{};
  const int classes = static_cast<int>(label_classes.size());
  RG_CHECK(gc.in_channels == (classes ? classes : 1), "--checkpoint: ", (dir / tag).string(), ": its generator takes ",
           gc.in_channels, " channels but is conditioned on ", classes ? std::to_string(classes) + " label classes" : "the mask");

  // The masks, before anything is written.
  MaskSource src;
  if (c.masks.empty()) {
    const json run = meta.value("run", json::object());
    const std::string data = run.value("data", std::string());
    RG_CHECK(!data.empty(), "--masks: the checkpoint names no training file; pass --masks FILE");
    const double fraction = run.value("train_fraction", 1.0);
    const auto train_seed = run.value("train_seed", uint64_t{0});
    std::error_code ec;
    RG_CHECK(fs::exists(data, ec), "--masks: the checkpoint's training file ", data,
             " is gone; pass --masks FILE");
    const int64_t n = data::read_slices_info(data).counts[0];
    const std::vector<int64_t> subset = data::seeded_subset(n, fraction, train_seed);
    src = masks_from_file(data, "--masks (the checkpoint's training file)", &subset, label_classes);
  } else {
    src = masks_from_file(c.masks, "--masks", nullptr, label_classes);
  }
  RG_CHECK(src.height == h && src.width == w, "--masks: ", src.what, " has ", src.height, "x",
           src.width, " masks but the checkpoint's generator was trained on ", h, "x", w, " slices");
  const int64_t count = c.count > 0 ? c.count : static_cast<int64_t>(src.masks.size());
  const std::string montage = !c.montage.empty() ? c.montage
                              : fs::path(c.out).replace_extension(".png").string();
  RG_CHECK(fs::path(montage) != fs::path(c.out), "--montage must differ from --out (", c.out, ")");

  const Device device = train::resolve_device(c.device);
  Generator init_gen(0);
  models::UnetGenerator g(gc, init_gen);
  g.to(device);
  train::TrainState state;
  state.modules.emplace_back("G", &g);
  train::load_checkpoint(dir, tag, state, "synth");
  g.eval();

  // Source masks are used in a seeded order, cycling when count exceeds them; pair k's
  // deformation depends only on (seed, k).
  std::vector<int64_t> order(src.masks.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
  data::Rng order_rng(data::derive_seed(c.seed, {0x6f726465ULL}));
  order_rng.shuffle(order);
  data::AugmentOptions deform = data::AugmentOptions::none();
  deform.p_flip_h = 0.5;
  deform.rotate_deg = 10.0;
  deform.scale_min = 0.9;
  deform.scale_max = 1.1;
  deform.p_elastic = 1.0;
  deform.elastic_alpha = 4.0;
  deform.elastic_sigma = 12.0;
  // The mask (or the label map, with the mask alongside) travels as the "image": nearest keeps
  // 0/1 and class ids exact, and none() leaves intensities alone (no jitter, no clamp).
  deform.image_interp = data::Interp::Nearest;
  deform.image_fill = 0.0f;

  const size_t hw = static_cast<size_t>(h * w);
  data::SlicesFile file;
  file.height = h;
  file.width = w;
  file.subjects = {"synthetic"};
  file.created_by = "roentgen synthesize";
  file.source = "checkpoint " + (dir / tag).string() + ", masks " + src.what;
  file.source_kind = "synthetic";
  file.attributes = {{"synth_seed", std::to_string(c.seed)},
                     {"synth_deform", c.deform ? "elastic + affine" : "none"},
                     {"normalization", "as the checkpoint's training file ([-1, 1])"}};
  data::SlicesSplit& train_split = file.splits[0];
  train_split.images.resize(static_cast<size_t>(count) * hw);
  train_split.masks.resize(static_cast<size_t>(count) * hw);
  file.label_classes = label_classes;
  if (classes) train_split.labels.resize(static_cast<size_t>(count) * hw);
  std::vector<std::vector<std::vector<float>>> montage_rows;

  NoGradGuard no_grad;
  data::ProgressBar bar("synthesize", static_cast<double>(count), "pairs", c.progress);
  for (int64_t start = 0; start < count; start += c.batch_size) {
    const int64_t n = std::min(c.batch_size, count - start);
    Tensor x = Tensor::empty({n, h, w, 1});
    Tensor labels = classes ? Tensor::empty({n, h, w, 1}) : x;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t k = start + i;
      const size_t source = static_cast<size_t>(order[static_cast<size_t>(k) % order.size()]);
      const uint64_t seed = data::derive_seed(c.seed, {0x64656631ULL, static_cast<uint64_t>(k)});
      data::Image2D m(h, w), l;
      m.data = src.masks[source];
      if (classes) {
        l = data::Image2D(h, w);
        l.data = src.labels[source];
        if (c.deform) data::augment(l, m, deform, seed);  // one geometry for labels and mask
        std::copy(l.data.begin(), l.data.end(), labels.data<float>() + i * static_cast<int64_t>(hw));
      } else if (c.deform) {
        data::Image2D none;
        data::augment(m, none, deform, seed);
      }
      std::copy(m.data.begin(), m.data.end(), x.data<float>() + i * static_cast<int64_t>(hw));
    }
    const Tensor fake = g.forward(synth_condition(labels, classes).to(device)).to(DType::F32).to(Device::cpu()).contiguous();
    for (int64_t i = 0; i < n; ++i) {
      const int64_t k = start + i;
      const float* mi = x.data<float>() + i * static_cast<int64_t>(hw);
      const float* si = fake.data<float>() + i * static_cast<int64_t>(hw);
      std::copy(si, si + hw, train_split.images.begin() + static_cast<std::ptrdiff_t>(k * static_cast<int64_t>(hw)));
      for (size_t j = 0; j < hw; ++j)
        train_split.masks[static_cast<size_t>(k) * hw + j] = mi[j] >= 0.5f ? 1 : 0;
      const float* li = labels.data<float>() + i * static_cast<int64_t>(hw);
      if (classes)
        for (size_t j = 0; j < hw; ++j) train_split.labels[static_cast<size_t>(k) * hw + j] = static_cast<uint8_t>(li[j]);
      train_split.subject.push_back(0);
      train_split.slice.push_back(static_cast<int32_t>(k));
      if (static_cast<int64_t>(montage_rows.size()) < c.montage_rows) {
        std::vector<float> shown(mi, mi + hw);
        for (float& v : shown) v = v >= 0.5f ? 1.0f : -1.0f;
        if (classes) shown = data::label_picture(li, static_cast<int64_t>(hw), classes);
        montage_rows.push_back({std::move(shown), std::vector<float>(si, si + hw)});
      }
    }
    bar.update(static_cast<double>(start + n));
  }
  bar.finish();

  data::write_slices_file(c.out, file);
  try {
    if (!montage_rows.empty())
      train::write_image_grid_png(montage, montage_rows, static_cast<int>(h), static_cast<int>(w),
                                  {classes ? "labels" : "mask", "synthetic"});
  } catch (...) {
    std::error_code ec;
    fs::remove(c.out, ec);  // nothing half-done stays behind
    throw;
  }
  SynthesizeSummary s;
  s.out = c.out;
  s.montage = montage_rows.empty() ? "" : montage;
  s.pairs = count;
  s.source_masks = static_cast<int64_t>(src.masks.size());
  s.height = h;
  s.width = w;
  return s;
}

}  // namespace rg::app
