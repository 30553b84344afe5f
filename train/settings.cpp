#include "train/settings.h"

#include <algorithm>
#include <cctype>

#include "engine/dist/communicator.h"
#include "engine/error.h"
#include "engine/math_mode.h"
#include "engine/device.h"

namespace rg::train {

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string joined(const std::vector<std::string>& values) {
  std::string out;
  for (size_t i = 0; i < values.size(); ++i) {
    out += i == 0 ? "" : (i + 1 == values.size() ? " or " : ", ");
    out += values[i];
  }
  return out;
}

}  // namespace

const std::vector<std::string>& precision_names() {
  static const std::vector<std::string> names{"fp32", "tf32", "bf16"};
  return names;
}

Precision parse_precision(const std::string& text, const std::string& source) {
  const std::string t = lower(text);
  if (t == "fp32") return Precision::Fp32;
  if (t == "tf32") return Precision::Tf32;
  if (t == "bf16") return Precision::Bf16;
  RG_FAIL(source, ": unknown precision '", text, "' (expected ", joined(precision_names()), ")");
}

const char* precision_name(Precision precision) {
  switch (precision) {
    case Precision::Fp32: return "fp32";
    case Precision::Tf32: return "tf32";
    case Precision::Bf16: return "bf16";
  }
  return "?";
}

DType apply_precision(Precision precision, Device device, std::string* note) {
  set_float32_math(precision == Precision::Tf32 ? Float32Math::Tf32 : Float32Math::Exact);
  if (precision == Precision::Tf32 && device.is_cpu() && note) {
    *note += "tf32 on the CPU computes in fp32";
  }
  return precision == Precision::Bf16 ? DType::BF16 : DType::F32;
}

const std::vector<std::string>& device_examples() {
  static const std::vector<std::string> names{"auto", "cpu", "cuda", "cuda:N"};
  return names;
}

Device resolve_device(const std::string& text, const std::string& source) {
  if (lower(text) == "auto") return cuda_device_count() > 0 ? Device::cuda(0) : Device::cpu();
  Device d;
  try {
    d = Device::parse(text);
  } catch (const Error& e) {
    RG_FAIL(source, ": ", e.what(), " (expected ", joined(device_examples()), ")");
  }
  if (d.is_cuda()) {
    const int count = cuda_device_count();
    RG_CHECK(d.index < count, source, " ", text, ": ", count,
             " CUDA device(s) usable by this process (a CPU-only build or no GPU has 0)");
  }
  return d;
}

Device device_for_rank(Device requested, const dist::Communicator& comm) {
  if (!requested.is_cuda() || comm.world_size() == 1) return requested;
  return Device::cuda(comm.local_rank());
}

const std::vector<std::string>& norm_names() {
  static const std::vector<std::string> names{"batch", "instance", "none"};
  return names;
}

models::NormKind parse_norm(const std::string& text, const std::string& source) {
  const std::string t = lower(text);
  for (const std::string& name : norm_names()) {
    if (t == name) return models::norm_kind_from_name(name);
  }
  RG_FAIL(source, ": unknown normalization '", text, "' (expected ", joined(norm_names()), ")");
}

const std::vector<std::string>& conv_backend_names() {
  static const std::vector<std::string> names{"own", "cudnn", "auto"};
  return names;
}

const std::vector<std::string>& lr_policy_names() {
  static const std::vector<std::string> names{"linear", "cosine"};
  return names;
}

LrPolicy parse_lr_policy(const std::string& text, const std::string& source) {
  const std::string t = lower(text);
  if (t == "linear") return LrPolicy::Linear;
  if (t == "cosine") return LrPolicy::Cosine;
  RG_FAIL(source, ": unknown learning-rate policy '", text, "' (expected ",
          joined(lr_policy_names()), ")");
}

const char* lr_policy_name(LrPolicy policy) {
  return policy == LrPolicy::Linear ? "linear" : "cosine";
}

std::unique_ptr<optim::LrSchedule> make_lr_schedule(LrPolicy policy, double lr, int64_t epochs,
                                                    int64_t epochs_decay) {
  if (policy == LrPolicy::Linear) {
    return std::make_unique<optim::LinearDecayLr>(lr, epochs, epochs_decay);
  }
  return std::make_unique<optim::CosineLr>(lr, epochs + epochs_decay);
}

}  // namespace rg::train
