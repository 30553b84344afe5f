#include "engine/layout.h"

namespace rg {

namespace {
Tensor permute4(const Tensor& t, const std::vector<int64_t>& dims, const char* what) {
  check_defined(t, what, "t");
  RG_CHECK(t.dim() == 4, what, ": expected a 4-D tensor, got shape ", shape_str(t.shape()));
  return t.permute(dims).contiguous();
}
}  // namespace

Tensor nchw_to_nhwc(const Tensor& t) { return permute4(t, {0, 2, 3, 1}, "nchw_to_nhwc"); }
Tensor nhwc_to_nchw(const Tensor& t) { return permute4(t, {0, 3, 1, 2}, "nhwc_to_nchw"); }
Tensor oihw_to_ohwi(const Tensor& t) { return permute4(t, {0, 2, 3, 1}, "oihw_to_ohwi"); }
Tensor ohwi_to_oihw(const Tensor& t) { return permute4(t, {0, 3, 1, 2}, "ohwi_to_oihw"); }

}  // namespace rg
