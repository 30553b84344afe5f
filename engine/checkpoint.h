// Checkpoints: safetensors files (https://github.com/huggingface/safetensors format: an 8-byte
// little-endian header length, a JSON header, then the raw little-endian tensor data), module
// state, and atomic file writes.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/nn/module.h"
#include "engine/tensor.h"

namespace rg {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// A tensor in its file encoding, for safetensors dtypes the engine has no DType for (I64,
// BOOL, I8, I16, U16, U32, U64, F8_E4M3, F8_E5M2): PyTorch's BatchNorm num_batches_tracked is
// an I64 scalar. `bytes` are little-endian, row-major.
struct RawTensor {
  std::string dtype;  // safetensors name, e.g. "I64"
  Shape shape;
  std::vector<uint8_t> bytes;
};
using NamedRawTensors = std::vector<std::pair<std::string, RawTensor>>;
RawTensor raw_i64(const std::vector<int64_t>& values, const Shape& shape);
std::vector<int64_t> raw_i64_values(const RawTensor& raw);  // throws unless dtype is "I64"

// Writes a safetensors file atomically: a temporary file in the same directory, fsync, rename
// over `path`. On any error the temporary is removed, `path` is untouched, and rg::Error names
// the file. Tensors may live on any device, in any dtype (F32, F64, BF16, F16, I32, U8 ->
// "F32", "F64", "BF16", "F16", "I32", "U8"), and need not be contiguous. `raw` entries follow
// the tensors in the data section. Names must be unique, non-empty and not "__metadata__".
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {},
                      const NamedRawTensors& raw = {});

struct SafetensorsFile {
  NamedTensors tensors;  // CPU, contiguous, in data-offset order
  std::map<std::string, std::string> metadata;
  NamedRawTensors raw;   // entries whose dtype has no engine DType (e.g. I64), same order
};
// Reads and validates a whole file: header length against the file size, the JSON, dtypes,
// shapes, offsets (in range, non-overlapping, covering the data section, matching
// shape x dtype size). Errors name the file and the problem.
SafetensorsFile load_safetensors(const std::string& path);
// True when some tensor of `file` is named "<prefix>..." (e.g. "G." for a checkpoint's G).
bool has_tensor_prefix(const SafetensorsFile& file, const std::string& prefix);

// Parameters then buffers of `module`, as "<prefix><name>", detached (sharing storage).
NamedTensors module_state(const nn::Module& module, const std::string& prefix = "");
// Copies tensors into a module's parameters and buffers (converting dtype/device to the
// slot's). Entries are matched by "<prefix><name>"; with a non-empty prefix, entries that do
// not start with it are ignored (several modules can share one file). Missing, unexpected
// (under the prefix) or mis-shaped entries throw one error listing all of them; nothing is
// copied then. Parameters keep their requires_grad flag.
void load_module_state(nn::Module& module, const NamedTensors& tensors, const std::string& prefix = "");

// Writes `bytes` to `path` atomically (temporary in the same directory, fsync, rename).
void write_file_atomic(const std::string& path, const std::string& bytes);

}  // namespace rg
