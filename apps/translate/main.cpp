// translate: a source volume in (NIfTI, MetaImage or DICOM), the translated volume out (float32
// NIfTI on the input's grid, in HU for a CT target), with a train_translate checkpoint:
//   translate --checkpoint runs/translate/checkpoints/best.safetensors --input mr.nii.gz --output ct.nii.gz
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>

#include "apps/translate/translate_volume.h"
#include "engine/error.h"

int main(int argc, char** argv) {
  rg::app::TranslateVolumeOptions o;
  bool json_out = false;
  CLI::App app{"Translate a volume with a train_translate checkpoint (e.g. MR -> CT in HU)"};
  app.add_option("--checkpoint", o.checkpoint, "train_translate checkpoint (.safetensors)")->required();
  app.add_option("--input", o.input, "source volume (NIfTI, MetaImage .mhd, DICOM directory)")->required();
  app.add_option("--output", o.output, "translated volume (.nii or .nii.gz, float32)")->required();
  app.add_option("--prepared", o.prepared, "the source modality's training file (default: the one the checkpoint names)");
  app.add_option("--input-channel", o.input_channels, "another source channel (repeat in the training order)");
  app.add_option("--reference", o.reference, "the real target volume (same grid): report the MAE in HU");
  app.add_option("--batch-size", o.batch_size, "slices per forward pass")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--device", o.device, "auto, cpu, cuda or cuda:N")->capture_default_str();
  app.add_flag("--json", json_out, "print the report as JSON");
  CLI11_PARSE(app, argc, argv);
  try {
    const auto report = rg::app::run_translate_volume(o);
    if (json_out) {
      std::cout << report.dump(2) << "\n";
    } else {
      std::printf("translate: %s -> %s (%lld slices, %s, HU %.0f .. %.0f, %.1f s)\n", o.input.c_str(), o.output.c_str(),
                  static_cast<long long>(report["slices"].get<int64_t>()), report["model"].get<std::string>().c_str(),
                  report["hu_min"].get<double>(), report["hu_max"].get<double>(), report["seconds"].get<double>());
      if (report.contains("mae_hu_body"))
        std::printf("  against %s: MAE %.1f HU inside the body (reference > -500 HU), %.1f HU over all voxels\n",
                    o.reference.c_str(), report["mae_hu_body"].get<double>(), report["mae_hu_all"].get<double>());
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "translate: error: " << e.what() << "\n";
    return 1;
  }
}
