// CPU emulation of CUDA (tests/emu): stands in for the toolkit header of the same name
// (the runtime API with its typed template overloads, plus the device side).
#pragma once
#include "tests/emu/emu_bf16.h"
#include "tests/emu/emu_device.h"
#include "tests/emu/emu_runtime.h"
