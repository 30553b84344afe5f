// synthesize: a trained train_synth checkpoint + masks -> a prepared HDF5 slices file of
// synthetic (mask, image) pairs (prepare_data's layout, all in the train split) and a PNG
// montage. The masks are the checkpoint's own training masks (or --masks FILE: a prepared .h5
// file or a PNG mask), each deformed by a seeded elastic + affine transform. Same seed, same
// file contents.
#include <CLI/CLI.hpp>
#include <iostream>

#include "apps/synth/synthesize.h"

int main(int argc, char** argv) {
  rg::app::SynthesizeConfig c;
  bool no_deform = false;
  CLI::App app{"Synthesize (mask, image) training pairs with a train_synth checkpoint"};
  app.add_option("--checkpoint", c.checkpoint,
                 "RUN/checkpoints/best.safetensors, or a train_synth run directory")->required();
  app.add_option("--out", c.out, "output HDF5 file (prepare_data's layout)")->required();
  app.add_option("--montage", c.montage, "PNG montage (default: --out with .png)");
  app.add_option("--masks", c.masks,
                 "mask source: a prepared .h5 (train split) or a PNG mask (default: the "
                 "checkpoint's training masks)");
  app.add_option("--count", c.count, "pairs to write (0 = one per source mask)")->check(CLI::NonNegativeNumber);
  app.add_option("--seed", c.seed, "seed of the deformations and the mask order")->capture_default_str();
  app.add_flag("--no-deform", no_deform, "use the masks as they are (no elastic/affine deformation)");
  app.add_option("--device", c.device, "auto, cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--batch-size", c.batch_size, "masks per generator call")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--montage-rows", c.montage_rows, "pairs shown in the montage")->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_flag("!--no-progress", c.progress, "no progress bar");
  CLI11_PARSE(app, argc, argv);
  c.deform = !no_deform;
  try {
    const rg::app::SynthesizeSummary s = rg::app::synthesize(c);
    std::cout << "synthesize: wrote " << s.pairs << " pairs of " << s.height << "x" << s.width
              << " (from " << s.source_masks << " source masks) to " << s.out << "; montage "
              << s.montage << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "synthesize: error: " << e.what() << "\n";
    return 1;
  }
}
