// How float32 convolutions multiply on the GPU: exactly (fp32 FMA) or on TF32 tensor cores
// (10-bit mantissa products, fp32 accumulation). A process-wide setting, like PyTorch's
// allow_tf32; exact by default so results match the CPU reference to fp32 tolerance. bf16
// tensors always use bf16 tensor cores; the CPU backend always computes in fp32/fp64.
#pragma once

namespace rg {

enum class Float32Math { Exact, Tf32 };

void set_float32_math(Float32Math math);
Float32Math float32_math();

}  // namespace rg
