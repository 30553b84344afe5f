// Conversions between the engine's layouts and PyTorch's, for file I/O and export.
// Each returns a new contiguous tensor.
#pragma once

#include "engine/tensor.h"

namespace rg {

// Activations: [N,C,H,W] <-> [N,H,W,C].
Tensor nchw_to_nhwc(const Tensor& t);
Tensor nhwc_to_nchw(const Tensor& t);
// Conv weights: PyTorch [O,I,kh,kw] <-> ours [O,kh,kw,I].
Tensor oihw_to_ohwi(const Tensor& t);
Tensor ohwi_to_oihw(const Tensor& t);
// Transposed-conv weights: PyTorch [I,O,kh,kw] <-> ours [I,kh,kw,O]; the same permutation.
inline Tensor iohw_to_ihwo(const Tensor& t) { return oihw_to_ohwi(t); }
inline Tensor ihwo_to_iohw(const Tensor& t) { return ohwi_to_oihw(t); }

}  // namespace rg
