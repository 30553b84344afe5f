// Errors: every user-facing failure (bad shape, bad flag, bad file) throws rg::Error with a
// message that names the op/file/flag and the offending values. RG_CHECK is for conditions a
// caller can violate; internal invariants use the same macro so they never silently pass.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace rg {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
// Streams all arguments into one string: make_message("conv2d: got ", shape, " ...").
template <typename... Args>
std::string make_message(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

}  // namespace rg

// RG_CHECK(cond, "op: message ", value, ...): throws rg::Error with the streamed message.
#define RG_CHECK(cond, ...)                                       \
  do {                                                            \
    if (!(cond)) throw ::rg::Error(::rg::detail::make_message(__VA_ARGS__)); \
  } while (0)

#define RG_FAIL(...) throw ::rg::Error(::rg::detail::make_message(__VA_ARGS__))
