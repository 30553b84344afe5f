#include "engine/math_mode.h"

#include <atomic>

namespace rg {

namespace {
std::atomic<Float32Math> g_float32_math{Float32Math::Exact};
}

void set_float32_math(Float32Math math) { g_float32_math.store(math); }
Float32Math float32_math() { return g_float32_math.load(); }

}  // namespace rg
