// Typed run settings shared by every application and benchmark: precision, device, GAN mode (in
// train/gan_loss.h), normalization, conv backend and learning-rate schedule. Each is parsed in
// exactly one place (here, or next to its type in the engine/models layer), and the list of
// allowed values that the command-line parsers check comes from the same place, so the apps'
// flags, the benchmarks and the error messages never disagree.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "engine/conv_backend.h"
#include "engine/device.h"
#include "engine/dtype.h"
#include "engine/optim/lr_schedule.h"
#include "models/norm_kind.h"

namespace rg::dist {
class Communicator;
}

namespace rg::train {

// --precision: how activations are stored and how float32 convolutions multiply.
//   fp32: fp32 activations, exact fp32 math; tf32: fp32 activations, TF32 tensor-core math on
//   the GPU (fp32 on the CPU); bf16: bf16 activations (master weights, optimizer state, norms
//   and losses stay fp32).
enum class Precision { Fp32, Tf32, Bf16 };
// `source` names the flag or variable the text came from; the error names it and the values.
Precision parse_precision(const std::string& text, const std::string& source = "--precision");
const char* precision_name(Precision precision);
const std::vector<std::string>& precision_names();  // {"fp32", "tf32", "bf16"}
// Sets the engine's process-wide float32 math mode for `precision` and returns the activation
// dtype. Appends a remark to *note where the device does not do what was asked (tf32 on a CPU).
DType apply_precision(Precision precision, Device device, std::string* note = nullptr);

// --device: "auto" is the first GPU when one is usable, else the CPU; "cpu"; "cuda" or
// "cuda:N" must name a GPU that exists (the error says how many there are).
Device resolve_device(const std::string& text, const std::string& source = "--device");
const std::vector<std::string>& device_examples();  // for --help: {"auto", "cpu", "cuda", "cuda:N"}
// One GPU per rank: under a multi-rank launch a CUDA device is the rank's local GPU.
Device device_for_rank(Device requested, const dist::Communicator& comm);

// --norm (models::NormKind).
models::NormKind parse_norm(const std::string& text, const std::string& source = "--norm");
const std::vector<std::string>& norm_names();  // {"batch", "instance", "none"}

// --conv-backend (engine/conv_backend.h parses it).
const std::vector<std::string>& conv_backend_names();  // {"own", "cudnn", "auto"}

// --lr-policy: linear = pix2pix (constant for `epochs`, then linear decay over `epochs_decay`);
// cosine = cosine annealing over all epochs.
enum class LrPolicy { Linear, Cosine };
LrPolicy parse_lr_policy(const std::string& text, const std::string& source = "--lr-policy");
const char* lr_policy_name(LrPolicy policy);
const std::vector<std::string>& lr_policy_names();  // {"linear", "cosine"}
std::unique_ptr<optim::LrSchedule> make_lr_schedule(LrPolicy policy, double lr, int64_t epochs,
                                                    int64_t epochs_decay);

}  // namespace rg::train
