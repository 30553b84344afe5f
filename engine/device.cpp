#include "engine/device.h"

#include "engine/error.h"

namespace rg {

Device Device::parse(const std::string& s) {
  if (s == "cpu") return cpu();
  if (s == "cuda") return cuda(0);
  if (s.rfind("cuda:", 0) == 0) {
    const std::string idx = s.substr(5);
    RG_CHECK(!idx.empty() && idx.find_first_not_of("0123456789") == std::string::npos,
             "bad device '", s, "' (expected cpu, cuda or cuda:N)");
    return cuda(std::stoi(idx));
  }
  RG_FAIL("bad device '", s, "' (expected cpu, cuda or cuda:N)");
}

#ifndef RG_WITH_CUDA
int cuda_device_count() { return 0; }
#endif

}  // namespace rg
