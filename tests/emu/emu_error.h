// CPU emulation of CUDA: the exception a launch throws when the emulation sees a broken rule
// (a deadlocked barrier, a misaligned wmma pointer, unsynchronized streams, ...). It leaves the
// launch like any C++ exception, so GoogleTest reports it as the failure of the test that ran.
#pragma once

#include <stdexcept>
#include <string>

namespace rg_emu {

struct Error : std::runtime_error {
  explicit Error(const std::string& what) : std::runtime_error("CUDA emulation: " + what) {}
};

}  // namespace rg_emu
