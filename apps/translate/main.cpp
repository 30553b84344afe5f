// translate: a source volume in (NIfTI, MetaImage or DICOM), the translated volume out (float32
// NIfTI on the input's grid, in HU for a CT target), with a train_translate checkpoint:
//   translate --checkpoint runs/translate/checkpoints/best.safetensors --input mr.nii.gz --output ct.nii.gz
#include <CLI/CLI.hpp>
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
  app.add_option("--batch-size", o.batch_size, "slices per forward pass")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--device", o.device, "auto, cpu, cuda or cuda:N")->capture_default_str();
  app.add_flag("--json", json_out, "print the report as JSON");
  CLI11_PARSE(app, argc, argv);
  try {
    const auto report = rg::app::run_translate_volume(o);
    if (json_out) {
      std::cout << report.dump(2) << "\n";
    } else {
      std::cout << "translate: " << o.input << " -> " << o.output << " (" << report["slices"] << " slices, "
                << report["model"].get<std::string>() << ", HU " << report["hu_min"] << " .. " << report["hu_max"]
                << ", " << report["seconds"] << " s)\n";
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "translate: error: " << e.what() << "\n";
    return 1;
  }
}
