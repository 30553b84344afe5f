// CPU emulation of CUDA (tests/emu): stands in for the toolkit header of the same name.
#pragma once
#include "tests/emu/emu_wmma.h"
