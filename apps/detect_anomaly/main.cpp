// detect_anomaly: a trained anomaly detector (a train_anomaly run: f-AnoGAN stage 2, --method ae
// or --method threshold) + a volume -> per-slice scores, a float anomaly map on the volume's grid
// (NIfTI), overlays, and metrics against a lesion mask when one is given. apps/anomaly/detect.h
// describes the outputs; docs/anomaly.md the method.
#include <CLI/CLI.hpp>
#include <iostream>

#include "apps/anomaly/detect.h"
#include "engine/error.h"

int main(int argc, char** argv) {
  rg::app::DetectOptions o;
  CLI::App app{"detect_anomaly: anomaly maps and per-slice scores of a volume with a trained detector"};
  app.add_option("--model", o.model, "train_anomaly run directory (stage 2, ae or threshold)")->required();
  app.add_option("--input,-i", o.input, "volume (NIfTI, MetaImage, DICOM directory) or a prepared .h5")->required();
  app.add_option("--split", o.split, "prepared .h5 input: which split")
      ->check(CLI::IsMember({"train", "val", "test"}))->capture_default_str();
  app.add_option("--out,-o", o.out, "output directory (anomaly_map.nii.gz, scores.csv, report.json, overlays.png)")
      ->required();
  app.add_option("--organ-mask", o.organ_mask, "brain/lung mask on the input's grid: crop and region of the map");
  app.add_option("--lesions", o.lesions, "lesion mask on the input's grid: evaluate the map against it");
  app.add_option("--prepared", o.prepared, "the detector's training file, when it moved");
  app.add_flag("--overwrite", o.overwrite, "replace --out if it exists");
  app.add_option("--batch-size", o.batch_size, "slices per batch")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--overlays", o.overlays, "highest-scoring slices in overlays.png")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--device", o.device, "auto, cpu, cuda or cuda:N")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    const nlohmann::json r = rg::app::run_detect_anomaly(o);
    if (r.contains("warnings")) {
      for (const auto& w : r["warnings"]) std::cerr << "detect_anomaly: warning: " << w.get<std::string>() << "\n";
    }
    std::cout << "detect_anomaly: " << r["method"].get<std::string>() << " on " << o.input << ": "
              << r["slices"].size() << " slices scored; wrote";
    for (const auto& f : r["outputs"]) std::cout << " " << o.out << "/" << f.get<std::string>();
    std::cout << "\n";
    if (r.contains("metrics")) {
      const auto& m = r["metrics"];
      const auto show = [&](const char* k) { return m.contains(k) && !m[k].is_null() ? m[k].dump() : std::string("n/a"); };
      std::cout << "  image AUROC " << show("image_auroc") << ", pixel AUROC " << show("pixel_auroc") << ", AUPRC "
                << show("pixel_auprc") << ", best Dice " << show("best_dice") << ", Dice at the threshold "
                << show("dice_at_val_threshold") << "\n";
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "detect_anomaly: error: " << e.what() << "\n";
    return 1;
  }
}
