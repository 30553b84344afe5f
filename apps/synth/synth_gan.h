// Mask -> image synthesis trains with pix2pix's step (train/pix2pix_step.h), shared with paired
// modality translation; these are its names in apps/synth.
#pragma once

#include "train/pix2pix_step.h"

namespace rg::app {

using SynthGanConfig = train::Pix2PixConfig;
using SynthGanStep = train::Pix2PixStep;

}  // namespace rg::app
