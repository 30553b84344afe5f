// libFuzzer target: the MetaImage header parser and reader on arbitrary bytes. The input is
// "<header text>\0<data file bytes>": everything before the first NUL is the .mhd/.mha
// content, the rest plays the ElementDataFile (.raw or .zraw) when the header names one.
// Any rg::Error is a clean rejection; anything else is a bug.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "data/metaimage.h"
#include "engine/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const void* nul = std::memchr(data, 0, size);
  const size_t header_size = nul ? static_cast<size_t>(static_cast<const uint8_t*>(nul) - data) : size;
  const uint8_t* file = nul ? data + header_size + 1 : nullptr;
  const size_t file_size = nul ? size - header_size - 1 : 0;
  try {
    const rg::data::Volume v =
        rg::data::read_metaimage_from_memory(data, header_size, file, file_size, "fuzz.mhd");
    volatile float sink = v.voxels.empty() ? 0.0f : v.voxels.back();
    (void)sink;
  } catch (const rg::Error&) {
  }
  try {
    // The whole input as one .mha (LOCAL data after the header, NULs and all).
    (void)rg::data::read_metaimage_from_memory(data, size, nullptr, 0, "fuzz.mha");
  } catch (const rg::Error&) {
  }
  return 0;
}
