#include "apps/seg/seg_predict.h"

#include <algorithm>

#include "engine/error.h"
#include "engine/roentgen.h"
#include "models/unet.h"

namespace rg::app {

Tensor mirror_columns(const Tensor& x) {
  RG_CHECK(x.dim() == 4 && x.dtype() == DType::F32 && x.device().is_cpu(),
           "mirror_columns: expects [N, H, W, C] float32 on the CPU, got ", shape_str(x.shape()), " ",
           dtype_name(x.dtype()), " on ", x.device().str());
  const Tensor src = x.contiguous();
  const int64_t rows = src.size(0) * src.size(1), w = src.size(2), c = src.size(3);
  Tensor out = Tensor::empty(src.shape());
  const float* s = src.data<float>();
  float* d = out.data<float>();
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = s + r * w * c;
    float* dst = d + r * w * c;
    for (int64_t col = 0; col < w; ++col) std::copy_n(row + (w - 1 - col) * c, c, dst + col * c);
  }
  return out;
}

Tensor predict_probabilities(models::UnetGenerator& g, const Tensor& x, DType act_dtype, Device device,
                             bool test_time_flip) {
  NoGradGuard no_grad;
  g.eval();
  auto probabilities = [&](const Tensor& slices) {
    return sigmoid(g.forward(slices.to(device).to(act_dtype))).to(DType::F32).to(Device::cpu()).contiguous();
  };
  Tensor p = probabilities(x);
  if (!test_time_flip) return p;
  const Tensor mirrored = mirror_columns(probabilities(mirror_columns(x)));
  float* dst = p.data<float>();
  const float* other = mirrored.data<float>();
  for (int64_t i = 0, n = p.numel(); i < n; ++i) dst[i] = 0.5f * (dst[i] + other[i]);
  return p;
}

}  // namespace rg::app
