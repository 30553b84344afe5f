// The correspondence between our module state and PyTorch pix2pix's state_dict
// (junyanz/pytorch-CycleGAN-and-pix2pix networks.py: UnetGenerator, NLayerDiscriminator,
// PixelDiscriminator), with the layout change each tensor needs. docs/export.md has the full
// tables for unet_256 and the n_layers=3 discriminator.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/checkpoint.h"
#include "models/patchgan.h"
#include "models/resnet_generator.h"
#include "models/unet.h"

namespace rg::models {

enum class TorchLayout {
  Plain,                // vectors (biases, norm parameters and running statistics): as is
  ConvWeight,           // ours OHWI [O][kh][kw][I] -> PyTorch OIHW
  ConvTransposeWeight,  // ours [I][kh][kw][O] -> PyTorch IOHW
  BatchCounter,         // BatchNorm num_batches_tracked: I64 scalar with no tensor of ours
};

struct Pix2PixName {
  std::string ours;   // name in module_state(); empty for BatchCounter
  std::string torch;  // name in PyTorch's state_dict
  TorchLayout layout;
  Shape torch_shape;  // shape in PyTorch's layout ({} for num_batches_tracked)
};

// Every entry of PyTorch's state_dict, in its order. Every parameter and buffer of ours appears
// exactly once.
std::vector<Pix2PixName> pix2pix_names(const UnetConfig& config);
std::vector<Pix2PixName> pix2pix_names(const PatchGanConfig& config);
// ResnetGenerator (CycleGAN's netG resnet_9blocks / resnet_6blocks): model.1, model.4, model.7,
// model.<10+b>.conv_block.{1,5} (.{1,6} with dropout), model.<10+n>, model.<13+n>, model.<17+n>.
std::vector<Pix2PixName> pix2pix_names(const ResnetConfig& config);

struct TorchState {
  NamedTensors tensors;      // PyTorch names and layouts, in state_dict order
  NamedRawTensors counters;  // num_batches_tracked entries (I64 scalars), in state_dict order
};
// Renames and re-lays-out `ours` (e.g. module_state(G)); every name the table needs must be
// present (an error lists the missing ones), extra entries are an error too.
// num_batches_tracked is written as `batches_tracked` (our BatchNorm does not count batches; it
// only matters to PyTorch when momentum is None, which pix2pix never uses).
TorchState to_pix2pix_state(const NamedTensors& ours, const std::vector<Pix2PixName>& names,
                            int64_t batches_tracked = 0);
// The inverse: PyTorch-named tensors (e.g. load_safetensors of a pix2pix export) to our names
// and layouts, ready for load_module_state. Counters are not needed.
NamedTensors from_pix2pix_state(const NamedTensors& torch, const std::vector<Pix2PixName>& names);

// The prefix of a training checkpoint's generator for inference: "G_ema." when the run kept an
// exponential moving average of G's weights (train_seg --ema: its validation and test used the
// average), else "G."; "" when the file holds neither (a bare network file).
std::string inference_generator_prefix(const SafetensorsFile& checkpoint);

// What apps/export does per network: checks `ours` (a loaded checkpoint of ours; entries named
// "<prefix><module_state name>") against a freshly built network of `config` (names and shapes,
// via load_module_state), converts it with to_pix2pix_state and writes `out_path` atomically.
// The file's metadata: "format" = "pt", "source" = "roentgen", "config" = our config JSON,
// "pix2pix" = the matching pix2pix command-line options.
void write_pix2pix_safetensors(const std::string& out_path, const SafetensorsFile& ours,
                               const UnetConfig& config, const std::string& prefix = "",
                               int64_t batches_tracked = 0);
void write_pix2pix_safetensors(const std::string& out_path, const SafetensorsFile& ours,
                               const PatchGanConfig& config, const std::string& prefix = "",
                               int64_t batches_tracked = 0);
void write_pix2pix_safetensors(const std::string& out_path, const SafetensorsFile& ours,
                               const ResnetConfig& config, const std::string& prefix = "",
                               int64_t batches_tracked = 0);
// pix2pix options that build the same network, e.g. "--netG unet_256 --ngf 64 --norm batch
// --input_nc 1 --output_nc 1" and "--netD basic --ndf 64 --norm batch" ("--netD n_layers
// --n_layers_D 4" for other depths, "--netD pixel"). Generic UnetGenerator depths without a
// pix2pix name are written "--netG unet(num_downs=N)".
std::string pix2pix_options(const UnetConfig& config);
std::string pix2pix_options(const PatchGanConfig& config);
// "--netG resnet_9blocks --ngf 64 --norm instance --input_nc 1 --output_nc 1 --no_dropout"
// (resnet_6blocks for 6 blocks; "resnet(n_blocks=N)" otherwise).
std::string pix2pix_options(const ResnetConfig& config);

}  // namespace rg::models
