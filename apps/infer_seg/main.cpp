// infer_seg: segments a whole volume with a trained generator and writes the mask on the
// input's voxel grid (NIfTI, the input's affine), optionally the probability map and, against a
// ground truth, Dice / IoU / HD95 in mm. See docs/inference.md.
#include <CLI/CLI.hpp>
#include <iostream>
#include <sstream>

#include "apps/seg/volume_inference.h"
#include "engine/error.h"

namespace {

// "a,b" -> two numbers (CLI11 parses the pair; this only names the flag in errors).
std::array<double, 2> pair_of(const std::vector<double>& v, const char* flag) {
  RG_CHECK(v.size() == 2, flag, " needs two values a,b, got ", v.size());
  return {v[0], v[1]};
}

}  // namespace

int main(int argc, char** argv) {
  rg::app::InferSegOptions o;
  CLI::App app{"Segment a volume with a trained generator: mask (and probabilities) on the input's grid"};
  app.add_option("--checkpoint", o.checkpoint, "RUN/checkpoints/best.safetensors")->required();
  app.add_option("--input", o.input, "image volume: .nii, .nii.gz, .mhd/.mha or a DICOM directory")->required();
  app.add_option("--input-channel", o.input_channels,
                 "another contrast on --input's grid, for a model trained with train_seg --image-channel "
                 "(repeat, in training order)");
  app.add_option("--output", o.output, "mask to write (.nii or .nii.gz, uint8 0/1)")->required();
  app.add_option("--probabilities", o.probabilities, "also write the probability map (.nii/.nii.gz, float32)");
  app.add_option("--report", o.report, "write the report as JSON");
  auto* gt = app.add_option("--ground-truth", o.ground_truth, "mask volume on the input's grid: report Dice, IoU, HD95");
  std::vector<int> labels;
  double gt_thr = 0;
  auto* gl = app.add_option("--gt-labels", labels, "ground-truth values counted as foreground, e.g. 3,4")
                 ->delimiter(',')->needs(gt);
  auto* gtt = app.add_option("--gt-threshold", gt_thr, "ground truth foreground = value > T")->needs(gt);
  gl->excludes(gtt);
  app.add_option("--largest-components", o.inference.largest_components,
                 "keep the N largest 3-D connected components (6-connectivity); 0 keeps all")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  auto* flip = app.add_flag_callback("--test-time-flip", [&o] { o.test_time_flip = true; },
                                     "average each slice's prediction with that of its left-right mirror (default: "
                                     "as the run did, train_seg --test-time-flip)");
  auto* no_flip = app.add_flag_callback("--no-test-time-flip", [&o] { o.test_time_flip = false; },
                                        "one prediction per slice even if the run used --test-time-flip");
  flip->excludes(no_flip);
  app.add_option("--batch-size", o.inference.batch_size, "slices per forward pass")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--threshold", o.inference.threshold, "mask = probability >= T")->check(CLI::Range(0.0, 1.0))->capture_default_str();
  app.add_flag("!--no-progress", o.inference.progress, "no progress bar");
  auto* grp = app.add_option_group("preprocessing", "used when the training file recorded in the checkpoint is gone "
                                                     "(and overriding it when given)");
  std::string prepared, modality, crop;
  std::vector<double> window, percentiles;
  int64_t size = 0;
  double margin = 0;
  grp->add_option("--prepared", prepared, "the training HDF5 file, if it moved");
  grp->add_option("--prepared-channel", o.prepared_channels,
                  "the other contrasts' training HDF5 files, if they moved (repeat: all of them, in order)");
  auto* om = grp->add_option("--modality", modality, "ct or mri")->check(CLI::IsMember({"ct", "mri"}));
  auto* ow = grp->add_option("--window", window, "CT: HU mapped to -1 and +1, e.g. -1000,400")->delimiter(',');
  auto* op = grp->add_option("--percentiles", percentiles, "MRI: percentiles mapped to -1 and +1, e.g. 0.5,99.5")->delimiter(',');
  auto* os = grp->add_option("--size", size, "slice size N (N x N)")->check(CLI::PositiveNumber);
  auto* oc = grp->add_option("--crop", crop, "none, body or mask")->check(CLI::IsMember({"none", "body", "mask"}));
  auto* og = grp->add_option("--margin", margin, "crop margin in mm")->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);

  try {
    o.prepared = prepared;
    if (*gl) o.gt_labels = labels;
    if (*gtt) o.gt_threshold = gt_thr;
    if (*om) o.modality = modality;
    if (*ow) o.window = pair_of(window, "--window");
    if (*op) o.percentiles = pair_of(percentiles, "--percentiles");
    if (*os) o.size = size;
    if (*oc) o.crop = crop;
    if (*og) o.margin_mm = margin;
    const nlohmann::json report = rg::app::run_infer_seg(o);
    std::cout << rg::app::format_infer_report(report) << std::flush;
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "infer_seg: error: " << e.what() << "\n";
    return 1;
  }
}
