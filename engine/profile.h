// NVTX ranges for Nsight Systems: a named range on the timeline around a scope.
//
// Two levels:
//  - phase ranges (forward, backward, optimizer, D step, G step, ...): RG_PROFILE_RANGE("name").
//    Always emitted in a CUDA build: they are few per step, and a push/pop costs next to
//    nothing when no profiler is attached.
//  - op ranges ("conv2d [16,128,128,64]"): RG_PROFILE_OP("conv2d", x.shape(), w.shape()).
//    Building the label costs a string per op, so they are emitted only when the environment
//    variable RG_NVTX=1 is set (read once). Run e.g. `RG_NVTX=1 nsys profile ./rg_train ...`.
// All ranges live in the NVTX domain "roentgen". In a build without CUDA they compile to nothing.
#pragma once

#include <initializer_list>
#include <string>
#include <type_traits>

#include "engine/tensor.h"

namespace rg {

// True when op-level ranges are wanted (RG_NVTX=1 in a CUDA build).
#ifdef RG_WITH_CUDA
bool profiling_enabled();
#else
constexpr bool profiling_enabled() {
  return false;
}
#endif

namespace detail {
std::string join_profile_label(const char* op, std::initializer_list<const Shape*> shapes);
}  // namespace detail

// "op [a,b,c] [d,e]": the op name followed by the given shapes.
template <typename... Shapes>
std::string profile_label(const char* op, const Shapes&... shapes) {
  static_assert((std::is_convertible_v<const Shapes&, const Shape&> && ...),
                "profile_label takes Shapes");
  return detail::join_profile_label(op, {static_cast<const Shape*>(&shapes)...});
}

// Pushes a range on construction and pops it on destruction (same thread). An empty or null
// message makes an inactive range (what RG_PROFILE_OP uses when op ranges are off).
class ProfileRange {
 public:
#ifdef RG_WITH_CUDA
  explicit ProfileRange(const char* message);
  explicit ProfileRange(const std::string& message) : ProfileRange(message.c_str()) {}
  ~ProfileRange();
#else
  explicit ProfileRange(const char*) {}
  explicit ProfileRange(const std::string&) {}
#endif
  ProfileRange(const ProfileRange&) = delete;
  ProfileRange& operator=(const ProfileRange&) = delete;

 private:
#ifdef RG_WITH_CUDA
  bool active_ = false;
#endif
};

}  // namespace rg

#define RG_PROFILE_CONCAT_INNER(a, b) a##b
#define RG_PROFILE_CONCAT(a, b) RG_PROFILE_CONCAT_INNER(a, b)

#ifdef RG_WITH_CUDA
// A phase range around the rest of the enclosing scope.
#define RG_PROFILE_RANGE(name) \
  ::rg::ProfileRange RG_PROFILE_CONCAT(rg_profile_range_, __LINE__)(name)
// An op range labelled with the op and shapes, built only when profiling_enabled().
#define RG_PROFILE_OP(op, ...)                                                       \
  ::rg::ProfileRange RG_PROFILE_CONCAT(rg_profile_op_, __LINE__)(                    \
      ::rg::profiling_enabled() ? ::rg::profile_label(op __VA_OPT__(, ) __VA_ARGS__) \
                                : std::string())
#else
#define RG_PROFILE_RANGE(name) \
  do {                         \
  } while (0)
#define RG_PROFILE_OP(op, ...) \
  do {                         \
  } while (0)
#endif
