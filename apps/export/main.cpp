// export: converts our generator (and discriminator) checkpoints into safetensors files that
// PyTorch pix2pix (junyanz/pytorch-CycleGAN-and-pix2pix) loads with load_state_dict:
// DIR/netG.safetensors, DIR/netD.safetensors and DIR/export.json. docs/export.md has the name
// tables and the layout conversions.
//
// Inputs: a file per network written as save_safetensors(path, module_state(net), {{"config",
// to_json(net.config).dump()}}), or a training checkpoint of apps/seg/seg_run (train/checkpoint.h) (entries
// "G.*", "D.*", "opt_*"; metadata "generator_config" and "roentgen"), from which both networks
// are exported unless --generator-only. The network config comes from the metadata ("config",
// else "generator_config" / "discriminator_config", else the "roentgen" JSON's "generator" /
// "discriminator"); flags given on the command line override single fields; without metadata
// the defaults are unet_256 (1 -> 1, ngf 64, batch norm) and the n_layers=3 PatchGAN, ndf 64.
//
// A train_translate checkpoint (kind "translate") exports every network it holds under the
// reference's file names: pix2pix netG (+ netD), CycleGAN netG_A, netG_B (ResnetGenerator) and
// netD_A, netD_B; the configs come from the checkpoint (flags other than --out and
// --generator-only do not apply).
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <iostream>

#include "engine/checkpoint.h"
#include "models/pix2pix_names.h"

namespace {

using rg::models::NormKind;
using rg::models::PatchGanConfig;
using rg::models::UnetConfig;

// The config JSON text for one network: metadata[key], else metadata[alt_key], else the
// "roentgen" metadata JSON's field `field`; empty when none is present.
std::string config_text(const rg::SafetensorsFile& f, const std::string& key, const std::string& alt_key,
                        const std::string& field) {
  if (auto it = f.metadata.find(key); it != f.metadata.end()) return it->second;
  if (auto it = f.metadata.find(alt_key); it != f.metadata.end()) return it->second;
  if (auto it = f.metadata.find("roentgen"); it != f.metadata.end()) {
    const auto j = nlohmann::json::parse(it->second, nullptr, false);
    if (j.is_object() && j.contains(field)) return j[field].dump();
  }
  return "";
}

// A train_translate checkpoint: every network under the reference's names (see the top).
nlohmann::json export_translate(const rg::SafetensorsFile& f, const nlohmann::json& meta,
                                const std::string& path, const std::string& out_dir, bool generator_only) {
  namespace fs = std::filesystem;
  const bool cyclegan = meta.value("model", "") == "cyclegan";
  RG_CHECK(meta.contains("generator"), path, ": the translate checkpoint does not describe its generator");
  const nlohmann::json& gj = meta["generator"];
  nlohmann::json report = nlohmann::json::object();
  auto write = [&](const std::string& module, const std::string& file, const auto& config) {
    const std::string out = (fs::path(out_dir) / file).string();
    rg::models::write_pix2pix_safetensors(out, f, config, module + ".");
    report[fs::path(file).stem().string()] = {{"file", file},
                                              {"config", rg::models::to_json(config)},
                                              {"pix2pix", rg::models::pix2pix_options(config)},
                                              {"source", fs::absolute(path).string() + " (" + module + ")"}};
    std::printf("export: %s (%s) -> %s (%s)\n", path.c_str(), module.c_str(), out.c_str(),
                rg::models::pix2pix_options(config).c_str());
  };
  auto write_g = [&](const std::string& module, const std::string& file) {
    if (gj.value("model", "") == "resnet") write(module, file, gj.get<rg::models::ResnetConfig>());
    else write(module, file, gj.get<UnetConfig>());
  };
  write_g(cyclegan ? "G_A" : "G", cyclegan ? "netG_A.safetensors" : "netG.safetensors");
  if (cyclegan) write_g("G_B", "netG_B.safetensors");
  if (!generator_only && meta.contains("discriminator")) {
    const auto d = rg::models::patchgan_config_from_json(meta["discriminator"].dump());
    if (cyclegan) {
      write("D_A", "netD_A.safetensors", d);
      write("D_B", "netD_B.safetensors", d);
    } else if (rg::has_tensor_prefix(f, "D.")) {
      write("D", "netD.safetensors", d);
    }
  }
  return report;
}

int64_t batches_from(const rg::SafetensorsFile& f, const CLI::Option* flag, int64_t flag_value) {
  if (flag->count()) return flag_value;
  auto it = f.metadata.find("num_batches_tracked");
  if (it == f.metadata.end()) return 0;
  try {
    size_t used = 0;
    const long long v = std::stoll(it->second, &used);
    if (used == it->second.size() && v >= 0) return v;
  } catch (const std::exception&) {
  }
  RG_FAIL("metadata num_batches_tracked '", it->second, "' is not a non-negative integer");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Export roentgen G/D checkpoints as PyTorch pix2pix state_dicts (safetensors)", "export"};
  std::string g_path, d_path, out_dir, g_prefix, d_prefix, norm;
  int64_t num_downs = 8, ngf = 64, in_channels = 1, out_channels = 1, ndf = 64, n_layers = 3;
  int64_t d_in_channels = 2, batches = 0;
  bool pixel = false, generator_only = false;
  app.add_option("--checkpoint", g_path, "generator checkpoint (safetensors, module_state names)")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("--discriminator", d_path, "discriminator checkpoint (optional)")->check(CLI::ExistingFile);
  app.add_option("--out", out_dir, "output directory (created if needed)")->required();
  auto* o_downs = app.add_option("--num-downs", num_downs, "U-Net levels (8: unet_256, 7: unet_128)");
  auto* o_ngf = app.add_option("--ngf", ngf, "U-Net base width");
  auto* o_norm = app.add_option("--norm", norm, "batch | instance | none (G and D)");
  auto* o_in = app.add_option("--in-channels", in_channels, "G input channels");
  auto* o_out = app.add_option("--out-channels", out_channels, "G output channels");
  auto* o_ndf = app.add_option("--ndf", ndf, "discriminator base width");
  auto* o_layers = app.add_option("--n-layers", n_layers, "PatchGAN depth (3: pix2pix 'basic')");
  auto* o_din = app.add_option("--d-in-channels", d_in_channels,
                               "discriminator input channels (default: G in + G out)");
  auto* o_pixel = app.add_flag("--pixel", pixel, "the discriminator is pix2pix's PixelDiscriminator");
  app.add_flag("--generator-only", generator_only,
               "with a training checkpoint holding D.* entries: export only netG");
  auto* o_gp = app.add_option("--g-prefix", g_prefix,
                              "name prefix of the generator's entries (default: 'G.' when the file "
                              "has such entries, else none)");
  auto* o_dp = app.add_option("--d-prefix", d_prefix,
                              "name prefix of the discriminator's entries (default: 'D.' when the "
                              "file has such entries, else none)");
  auto* o_batches = app.add_option("--batches-tracked", batches,
                                   "value for BatchNorm num_batches_tracked (default: the "
                                   "checkpoint's num_batches_tracked metadata, else 0)");
  CLI11_PARSE(app, argc, argv);

  try {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::create_directories(out_dir, ec);
    RG_CHECK(!ec && fs::is_directory(out_dir), "cannot create output directory '", out_dir, "': ",
             ec ? ec.message() : "not a directory");

    const rg::SafetensorsFile g_file = rg::load_safetensors(g_path);
    if (auto it = g_file.metadata.find("roentgen"); it != g_file.metadata.end()) {
      const auto meta = nlohmann::json::parse(it->second, nullptr, false);
      if (meta.is_object() && meta.value("kind", "") == "translate") {
        const auto report = export_translate(g_file, meta, g_path, out_dir, generator_only);
        rg::write_file_atomic((fs::path(out_dir) / "export.json").string(), report.dump(2) + "\n");
        return 0;
      }
    }

    // ---- generator
    UnetConfig g = UnetConfig::unet_256();
    if (const auto text = config_text(g_file, "config", "generator_config", "generator"); !text.empty()) {
      g = rg::models::unet_config_from_json(text);
    }
    if (!o_gp->count()) g_prefix = rg::models::inference_generator_prefix(g_file);
    if (o_downs->count()) g.num_downs = num_downs;
    if (o_ngf->count()) g.ngf = ngf;
    if (o_norm->count()) g.norm = rg::models::norm_kind_from_name(norm);
    if (o_in->count()) g.in_channels = in_channels;
    if (o_out->count()) g.out_channels = out_channels;
    g.validate();
    const std::string g_out = (fs::path(out_dir) / "netG.safetensors").string();
    rg::models::write_pix2pix_safetensors(g_out, g_file, g, g_prefix, batches_from(g_file, o_batches, batches));
    nlohmann::json report = {{"netG", {{"file", "netG.safetensors"},
                                       {"config", rg::models::to_json(g)},
                                       {"pix2pix", rg::models::pix2pix_options(g)},
                                       {"source", fs::absolute(g_path).string()}}}};
    std::printf("export: %s -> %s (%s)\n", g_path.c_str(), g_out.c_str(),
                rg::models::pix2pix_options(g).c_str());

    // ---- discriminator
    // From --discriminator, or from the generator's file when it is a training checkpoint with
    // D.* entries.
    const bool d_in_g_file = d_path.empty() && !generator_only && rg::has_tensor_prefix(g_file, "D.");
    if (!d_path.empty() || d_in_g_file) {
      const rg::SafetensorsFile d_file = d_in_g_file ? g_file : rg::load_safetensors(d_path);
      if (d_in_g_file) d_path = g_path;
      PatchGanConfig d;
      d.in_channels = g.in_channels + g.out_channels;
      d.norm = g.norm;
      if (const auto text = config_text(d_file, d_in_g_file ? "" : "config", "discriminator_config",
                                        "discriminator");
          !text.empty()) {
        d = rg::models::patchgan_config_from_json(text);
      }
      if (!o_dp->count() && rg::has_tensor_prefix(d_file, "D.")) d_prefix = "D.";
      if (o_ndf->count()) d.ndf = ndf;
      if (o_layers->count()) d.n_layers = n_layers;
      if (o_norm->count()) d.norm = rg::models::norm_kind_from_name(norm);
      if (o_din->count()) d.in_channels = d_in_channels;
      if (o_pixel->count()) d.pixel = pixel;
      d.validate();
      const std::string d_out = (fs::path(out_dir) / "netD.safetensors").string();
      rg::models::write_pix2pix_safetensors(d_out, d_file, d, d_prefix, batches_from(d_file, o_batches, batches));
      report["netD"] = {{"file", "netD.safetensors"},
                        {"config", rg::models::to_json(d)},
                        {"pix2pix", rg::models::pix2pix_options(d)},
                        {"source", fs::absolute(d_path).string()}};
      std::printf("export: %s -> %s (%s)\n", d_path.c_str(), d_out.c_str(),
                  rg::models::pix2pix_options(d).c_str());
    }
    if (g.head == UnetConfig::Head::Logits) {
      report["note"] =
          "netG was trained without the final Tanh: it outputs mask logits. pix2pix's outermost "
          "block ends in nn.Tanh() at model.model.4 (no parameters); replace it with nn.Identity() "
          "(net.model.model[4] = torch.nn.Identity()) to get our logits, then sigmoid for "
          "probabilities.";
    }
    rg::write_file_atomic((fs::path(out_dir) / "export.json").string(), report.dump(2) + "\n");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "export: error: %s\n", e.what());
    return 1;
  }
}
