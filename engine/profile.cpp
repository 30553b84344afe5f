#include "engine/profile.h"

#include <cstdlib>
#include <cstring>

#ifdef RG_WITH_CUDA
#include <nvtx3/nvToolsExt.h>
#endif

namespace rg {

namespace detail {

std::string join_profile_label(const char* op, std::initializer_list<const Shape*> shapes) {
  std::string label = op != nullptr ? op : "";
  for (const Shape* shape : shapes) {
    label += " [";
    for (size_t i = 0; i < shape->size(); ++i) {
      if (i > 0) label += ',';
      label += std::to_string((*shape)[i]);
    }
    label += ']';
  }
  return label;
}

}  // namespace detail

#ifdef RG_WITH_CUDA

namespace {

nvtxDomainHandle_t roentgen_domain() {
  static const nvtxDomainHandle_t domain = nvtxDomainCreateA("roentgen");
  return domain;
}

}  // namespace

bool profiling_enabled() {
  static const bool enabled = [] {
    const char* value = std::getenv("RG_NVTX");
    return value != nullptr && std::strcmp(value, "1") == 0;
  }();
  return enabled;
}

ProfileRange::ProfileRange(const char* message) {
  if (message == nullptr || message[0] == '\0') return;
  nvtxEventAttributes_t attributes = {};
  attributes.version = NVTX_VERSION;
  attributes.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
  attributes.messageType = NVTX_MESSAGE_TYPE_ASCII;
  attributes.message.ascii = message;  // NVTX copies the string
  nvtxDomainRangePushEx(roentgen_domain(), &attributes);
  active_ = true;
}

ProfileRange::~ProfileRange() {
  if (active_) nvtxDomainRangePop(roentgen_domain());
}

#endif  // RG_WITH_CUDA

}  // namespace rg
