// infer_recon: a volume in, the reconstructed volume out (float32 NIfTI on the input's grid, in
// the input's units), with a report against --reference when given (apps/recon/recon_infer.h).
//   infer_recon --checkpoint runs/recon --input low.nii.gz --output rec.nii.gz [--reference full.nii.gz]
#include <CLI/CLI.hpp>
#include <iostream>

#include "apps/recon/recon_infer.h"

int main(int argc, char** argv) {
  rg::app::ReconInferOptions o;
  CLI::App app{"Reconstruction inference: volume in, reconstructed volume out (NIfTI, same grid)"};
  app.add_option("--checkpoint", o.checkpoint, "train_recon run directory, checkpoints folder or <dir>/<tag>")->required();
  app.add_option("--input", o.input, "degraded volume (NIfTI, MetaImage, DICOM directory)")->required();
  app.add_option("--output", o.output, "output NIfTI (.nii or .nii.gz; written atomically)")->required();
  app.add_option("--reference", o.reference, "reference volume on the same grid: report PSNR/SSIM/MAE");
  app.add_option("--mask", o.mask, "region of the report (default: the body of the reference)");
  app.add_option("--report", o.report, "also write the report as JSON here");
  app.add_option("--device", o.device, "auto, cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--batch-size", o.batch_size, "slices per forward pass")->check(CLI::PositiveNumber)->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    const rg::app::ReconInferResult r = rg::app::run_recon_inference(o);
    std::cout << r.summary << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "infer_recon: error: " << e.what() << "\n";
    return 1;
  }
}
