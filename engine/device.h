// Where a tensor lives. CUDA devices exist in every build's type system so code is written for
// them from day one; a build or machine without CUDA reports a clear error when one is used.
#pragma once

#include <string>

namespace rg {

enum class DeviceKind : uint8_t { CPU, CUDA };

struct Device {
  DeviceKind kind = DeviceKind::CPU;
  int index = 0;

  static Device cpu() { return {DeviceKind::CPU, 0}; }
  static Device cuda(int index = 0) { return {DeviceKind::CUDA, index}; }
  bool is_cpu() const { return kind == DeviceKind::CPU; }
  bool is_cuda() const { return kind == DeviceKind::CUDA; }
  bool operator==(const Device&) const = default;
  std::string str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }
  // Parses "cpu", "cuda", "cuda:1".
  static Device parse(const std::string& s);
};

// Number of CUDA devices usable by this process (0 in a CPU-only build or without a GPU).
int cuda_device_count();

}  // namespace rg
