#include "apps/translate/translate_volume.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>

#include "data/nifti.h"
#include "data/slice_geometry.h"
#include "data/volume_io.h"
#include "engine/checkpoint.h"
#include "engine/roentgen.h"
#include "models/resnet_generator.h"
#include "models/unet.h"
#include "train/settings.h"

namespace rg::app {

namespace fs = std::filesystem;
using nlohmann::json;

LoadedTranslator load_translator(const std::string& checkpoint) {
  std::error_code ec;
  RG_CHECK(fs::exists(checkpoint, ec), "--checkpoint: ", checkpoint, " does not exist");
  SafetensorsFile ck = load_safetensors(checkpoint);
  RG_CHECK(ck.metadata.count("roentgen"), checkpoint, ": not a roentgen checkpoint (no roentgen metadata)");
  LoadedTranslator out;
  out.meta = json::parse(ck.metadata["roentgen"], nullptr, false);
  RG_CHECK(!out.meta.is_discarded() && out.meta.value("kind", "") == "translate", checkpoint,
           ": not a train_translate checkpoint (kind ", out.meta.is_discarded() ? "?" : out.meta.value("kind", "?"), ")");
  RG_CHECK(out.meta.contains("generator") && out.meta.contains("generator_module"), checkpoint,
           ": the checkpoint does not describe its generator");
  const json& gj = out.meta["generator"];
  Generator init(0);
  try {
    if (gj.value("model", "") == "resnet")
      out.generator = std::make_unique<models::ResnetGenerator>(gj.get<models::ResnetConfig>(), init);
    else
      out.generator = std::make_unique<models::UnetGenerator>(gj.get<models::UnetConfig>(), init);
    load_module_state(*out.generator, ck.tensors, out.meta["generator_module"].get<std::string>() + ".");
  } catch (const Error& e) {
    RG_FAIL(checkpoint, ": generator weights do not match its configuration: ", e.what());
  }
  out.generator->eval();
  return out;
}

json run_translate_volume(const TranslateVolumeOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  RG_CHECK(!o.checkpoint.empty(), "--checkpoint: no checkpoint given");
  RG_CHECK(!o.input.empty(), "--input: no input volume given");
  RG_CHECK(!o.output.empty(), "--output: no output path given");
  RG_CHECK(o.batch_size > 0, "--batch-size must be > 0, got ", o.batch_size);
  data::check_nifti_output_path(o.output, "--output");
  LoadedTranslator tr = load_translator(o.checkpoint);
  // The training file of every source channel (the checkpoint names them; --prepared replaces the
  // first), and the channels G takes.
  std::vector<std::string> prepared;
  if (tr.meta.contains("source_channels_prepared"))
    for (const auto& p : tr.meta["source_channels_prepared"]) prepared.push_back(p.get<std::string>());
  if (prepared.empty()) prepared.push_back(tr.meta.value("source_prepared", ""));
  if (!o.prepared.empty()) prepared[0] = o.prepared;
  std::error_code ec;
  for (const std::string& p : prepared)
    RG_CHECK(!p.empty() && fs::exists(p, ec), "the source training file '", p, "' of checkpoint ", o.checkpoint,
             " is not available: pass --prepared FILE.h5 (the source modality's file)");
  RG_CHECK(tr.meta.contains("hu_window") && tr.meta["hu_window"].size() == 2, o.checkpoint,
           ": the checkpoint lacks the target's HU window");
  const double lo = tr.meta["hu_window"][0].get<double>(), hi = tr.meta["hu_window"][1].get<double>();

  // The source channels: the volumes of --input (all of a 4-D NIfTI), then --input-channel files.
  std::vector<data::Volume> channels;
  int64_t volumes = 1;
  if (fs::exists(o.input, ec) && data::detect_volume_format(o.input) == data::VolumeFormat::Nifti) {
    const data::NiftiHeader h = data::read_nifti_header(o.input);
    if (h.dim[0] >= 4) volumes = std::max<int64_t>(1, h.dim[4]);
  }
  for (int64_t v = 0; v < volumes; ++v)
    channels.push_back(volumes > 1 ? data::read_nifti(o.input, v) : data::read_volume(o.input));
  for (const std::string& p : o.input_channels) channels.push_back(data::read_volume(p));
  const int64_t C = static_cast<int64_t>(channels.size());
  RG_CHECK(C == static_cast<int64_t>(prepared.size()), "the generator of ", o.checkpoint, " takes ", prepared.size(),
           " source channel(s) but the input gives ", C, " (", o.input, " has ", volumes, " volume(s), plus ",
           o.input_channels.size(), " --input-channel file(s)): a channel is missing or extra");
  for (int64_t k = 1; k < C; ++k) data::check_same_grid(channels[0], channels[static_cast<size_t>(k)]);
  const data::Volume& image = channels[0];
  data::Volume reference;
  if (!o.reference.empty()) {
    reference = data::read_volume(o.reference);
    data::check_same_grid(image, reference);
  }
  // Each channel is normalized as its own training file was; the slicing must agree.
  std::vector<data::SliceGeometry> geometry;
  data::SlicePreprocessing pre;
  for (int64_t k = 0; k < C; ++k) {
    const data::SlicePreprocessing p = data::preprocessing_from_prepared_file(prepared[static_cast<size_t>(k)]);
    if (k == 0) pre = p;
    geometry.push_back(data::plan_slices(channels[static_cast<size_t>(k)], p));
    const data::SliceGeometry& a = geometry[0];
    const data::SliceGeometry& b = geometry.back();
    RG_CHECK(b.size == a.size && b.slice_begin == a.slice_begin && b.slice_end == a.slice_end &&
                 std::fabs(b.x0 - a.x0) < 1e-6 && std::fabs(b.y0 - a.y0) < 1e-6 && std::fabs(b.step_c - a.step_c) < 1e-9,
             "source channel ", k, " (", prepared[static_cast<size_t>(k)], ") is sliced differently from channel 0: ",
             "prepare every channel with the same crop and size");
  }
  const data::SliceGeometry& g = geometry[0];
  const Device device = train::resolve_device(o.device);
  tr.generator->to(device);
  // Normalized target values on the input's grid; -1 (the window's low end) outside the slices.
  std::vector<float> out(image.voxels.size(), -1.0f);
  const int64_t S = g.size;
  std::vector<float> plane(static_cast<size_t>(S * S));
  NoGradGuard no_grad;
  for (int64_t s0 = g.slice_begin; s0 < g.slice_end; s0 += o.batch_size) {
    const int64_t n = std::min(o.batch_size, g.slice_end - s0);
    Tensor x = Tensor::empty({n, S, S, C});
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < C; ++k) {
        data::extract_slice(channels[static_cast<size_t>(k)], geometry[static_cast<size_t>(k)], s0 + i, plane.data());
        float* dst = x.data<float>() + i * S * S * C;
        for (int64_t q = 0; q < S * S; ++q) dst[q * C + k] = plane[static_cast<size_t>(q)];
      }
    const Tensor y = tr.generator->forward(x.to(device)).to(Device::cpu()).contiguous();
    for (int64_t i = 0; i < n; ++i) data::place_slice(g, s0 + i, y.data<float>() + i * S * S, out.data());
  }
  data::Volume ct;
  ct.dims = image.dims;
  ct.spacing = image.spacing;
  ct.affine = image.affine;
  ct.source = o.output;
  ct.voxels.resize(out.size());
  float vmin = 1e30f, vmax = -1e30f;
  for (size_t i = 0; i < out.size(); ++i) {
    const float hu = static_cast<float>(lo + (std::clamp(out[i], -1.0f, 1.0f) + 1.0) * 0.5 * (hi - lo));
    ct.voxels[i] = hu;
    vmin = std::min(vmin, hu);
    vmax = std::max(vmax, hu);
  }
  data::write_nifti(o.output, ct, data::NiftiOut::Float32);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  json extra = json::object();
  if (!o.reference.empty()) {
    double body = 0, all = 0;
    int64_t body_n = 0;
    for (size_t i = 0; i < ct.voxels.size(); ++i) {
      const double d = std::fabs(static_cast<double>(ct.voxels[i]) - reference.voxels[i]);
      all += d;
      if (reference.voxels[i] > -500.0f) {
        body += d;
        ++body_n;
      }
    }
    extra = json{{"reference", o.reference},
                 {"mae_hu_body", body_n ? body / static_cast<double>(body_n) : 0.0},
                 {"body_voxels", body_n},
                 {"body_rule", "reference > -500 HU"},
                 {"mae_hu_all", all / static_cast<double>(ct.voxels.size())}};
  }
  json report = json{{"input", o.input},
              {"output", o.output},
              {"checkpoint", o.checkpoint},
              {"model", tr.meta.value("model", "")},
              {"preprocessing", pre.to_json()},
              {"dims", {image.dims[0], image.dims[1], image.dims[2]}},
              {"channels", C},
              {"slices", g.num_slices()},
              {"hu_window", {lo, hi}},
              {"hu_min", vmin},
              {"hu_max", vmax},
              {"seconds", seconds}};
  report.update(extra);
  return report;
}

}  // namespace rg::app
