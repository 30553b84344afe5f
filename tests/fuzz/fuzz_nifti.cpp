// libFuzzer target: the NIfTI parser on arbitrary bytes (plain or gzip, NIfTI-1 or -2).
// Any rg::Error is a clean rejection; anything else (crash, sanitizer report, other exception,
// huge allocation) is a bug.
#include <cstddef>
#include <cstdint>

#include "data/nifti.h"
#include "engine/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const rg::data::Volume v = rg::data::read_nifti_from_memory(data, size, "fuzz.nii");
    // Touch the result so the conversion cannot be optimized away.
    volatile float sink = v.voxels.empty() ? 0.0f : v.voxels.back();
    (void)sink;
  } catch (const rg::Error&) {
  }
  try {
    (void)rg::data::parse_nifti_header(data, size, "fuzz-header");
  } catch (const rg::Error&) {
  }
  return 0;
}
