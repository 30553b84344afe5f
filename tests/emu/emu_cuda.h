// CPU emulation of CUDA: the header force-included (-include) into every emulated translation
// unit, i.e. the rewritten kernel sources and the GPU test files. Together with the stand-ins
// for the toolkit headers in tests/emu/include/ (cuda_runtime.h, cuda_runtime_api.h,
// cuda_bf16.h, mma.h) it gives them everything nvcc would: qualifiers, built-in variables and
// intrinsics (emu_device.h), bf16 (emu_bf16.h), the runtime API and launches (emu_runtime.h).
#pragma once

#include "tests/emu/emu_bf16.h"
#include "tests/emu/emu_device.h"
#include "tests/emu/emu_runtime.h"
