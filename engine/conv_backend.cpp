#include "engine/conv_backend.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <iomanip>
#include <sstream>

#include "engine/error.h"

namespace rg {

namespace {

constexpr int kUnset = -1;
// The explicit setting or the value read from the environment; kUnset until one is known.
std::atomic<int> g_conv_backend{kUnset};

std::string lowercase(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

ConvBackend backend_from_environment() {
  const char* value = std::getenv("RG_CONV_BACKEND");
  if (value == nullptr) return ConvBackend::Auto;
  return parse_conv_backend(value, "RG_CONV_BACKEND");
}

// A negative, NaN or infinite time means "cannot run this case".
bool usable(double ms) {
  return std::isfinite(ms) && ms >= 0.0;
}

}  // namespace

const char* conv_backend_name(ConvBackend backend) {
  switch (backend) {
    case ConvBackend::Own:
      return "own";
    case ConvBackend::Cudnn:
      return "cudnn";
    case ConvBackend::Auto:
      return "auto";
  }
  return "?";
}

ConvBackend parse_conv_backend(const std::string& text, const std::string& source) {
  const std::string t = lowercase(text);
  if (t == "own") return ConvBackend::Own;
  if (t == "cudnn") return ConvBackend::Cudnn;
  if (t == "auto") return ConvBackend::Auto;
  RG_FAIL(source, ": unknown conv backend \"", text, "\" (valid: own, cudnn, auto)");
}

void set_conv_backend(ConvBackend backend) {
  g_conv_backend.store(static_cast<int>(backend));
}

ConvBackend conv_backend() {
  const int current = g_conv_backend.load();
  if (current != kUnset) return static_cast<ConvBackend>(current);
  const ConvBackend from_env = backend_from_environment();  // throws on a bad value
  int expected = kUnset;
  // A concurrent set_conv_backend() wins over the environment.
  if (!g_conv_backend.compare_exchange_strong(expected, static_cast<int>(from_env))) {
    return static_cast<ConvBackend>(expected);
  }
  return from_env;
}

void reset_conv_backend() {
  g_conv_backend.store(kUnset);
}

const char* conv_direction_name(ConvDirection direction) {
  switch (direction) {
    case ConvDirection::Forward:
      return "forward";
    case ConvDirection::BackwardData:
      return "backward_data";
    case ConvDirection::BackwardWeight:
      return "backward_weight";
  }
  return "?";
}

bool ConvTuneKey::operator==(const ConvTuneKey& o) const {
  const kernels::Conv2dShape& a = shape;
  const kernels::Conv2dShape& b = o.shape;
  return device == o.device && direction == o.direction && dtype == o.dtype && tf32 == o.tf32 &&
         a.n == b.n && a.h == b.h && a.w == b.w && a.c_in == b.c_in && a.c_out == b.c_out &&
         a.kh == b.kh && a.kw == b.kw && a.stride_h == b.stride_h && a.stride_w == b.stride_w &&
         a.pad_h == b.pad_h && a.pad_w == b.pad_w;
}

ConvTuneKey make_conv_tune_key(int device, ConvDirection direction,
                               const kernels::Conv2dShape& shape, DType dtype, bool tf32) {
  ConvTuneKey key;
  key.device = device;
  key.direction = direction;
  key.shape = shape;
  key.dtype = dtype;
  key.tf32 = tf32 && dtype == DType::F32;
  return key;
}

std::string describe(const ConvTuneKey& key) {
  const kernels::Conv2dShape& s = key.shape;
  std::ostringstream os;
  os << "cuda:" << key.device << ' ' << conv_direction_name(key.direction) << ' '
     << dtype_name(key.dtype) << (key.tf32 ? "/tf32" : "") << " n" << s.n << ' ' << s.h << 'x'
     << s.w << 'x' << s.c_in << " -> " << s.c_out << ", k" << s.kh << 'x' << s.kw << " s"
     << s.stride_h << 'x' << s.stride_w << " p" << s.pad_h << 'x' << s.pad_w;
  return os.str();
}

size_t ConvTuneKeyHash::operator()(const ConvTuneKey& key) const {
  // FNV-1a over the fields, one 64-bit word each.
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      h ^= (v >> (8 * i)) & 0xffu;
      h *= 1099511628211ull;
    }
  };
  const kernels::Conv2dShape& s = key.shape;
  mix(static_cast<uint64_t>(key.device));
  mix(static_cast<uint64_t>(key.direction));
  mix(static_cast<uint64_t>(key.dtype));
  mix(key.tf32 ? 1u : 0u);
  for (int64_t v :
       {s.n, s.h, s.w, s.c_in, s.c_out, s.kh, s.kw, s.stride_h, s.stride_w, s.pad_h, s.pad_w}) {
    mix(static_cast<uint64_t>(v));
  }
  return static_cast<size_t>(h);
}

ConvBackend ConvAutotuneCache::choose(const ConvTuneKey& key, const TimingFn& time_own,
                                      const TimingFn& time_cudnn) {
  std::shared_ptr<TimingSlot> slot;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (auto it = results_.find(key); it != results_.end()) return it->second.winner;
    std::shared_ptr<TimingSlot>& s = slots_[key];
    if (!s) s = std::make_shared<TimingSlot>();
    slot = s;
  }
  std::lock_guard<std::mutex> timing(slot->mutex);
  {
    // Another caller may have timed the key while this one waited for the slot.
    std::lock_guard<std::mutex> lock(mutex_);
    if (auto it = results_.find(key); it != results_.end()) return it->second.winner;
  }
  ConvTuneResult r;
  r.own_ms = time_own();
  r.cudnn_ms = time_cudnn();
  if (!usable(r.own_ms)) r.own_ms = -1.0;
  if (!usable(r.cudnn_ms)) r.cudnn_ms = -1.0;
  const bool cudnn_faster = r.cudnn_ms >= 0.0 && (r.own_ms < 0.0 || r.cudnn_ms < r.own_ms);
  r.winner = cudnn_faster ? ConvBackend::Cudnn : ConvBackend::Own;
  std::lock_guard<std::mutex> lock(mutex_);
  results_[key] = r;
  return r.winner;
}

std::optional<ConvTuneResult> ConvAutotuneCache::lookup(const ConvTuneKey& key) const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (auto it = results_.find(key); it != results_.end()) return it->second;
  return std::nullopt;
}

std::vector<std::pair<ConvTuneKey, ConvTuneResult>> ConvAutotuneCache::entries() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return {results_.begin(), results_.end()};
}

std::string ConvAutotuneCache::report() const {
  std::vector<std::pair<std::string, ConvTuneResult>> rows;
  for (const auto& [key, result] : entries()) rows.emplace_back(describe(key), result);
  std::sort(rows.begin(), rows.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  auto time = [](double ms) {
    if (ms < 0.0) return std::string("unsupported");
    std::ostringstream os;
    os << std::fixed << std::setprecision(4) << ms << " ms";
    return os.str();
  };
  std::ostringstream os;
  for (const auto& [what, r] : rows) {
    os << what << ": own " << time(r.own_ms) << ", cudnn " << time(r.cudnn_ms) << " -> "
       << conv_backend_name(r.winner) << '\n';
  }
  return os.str();
}

size_t ConvAutotuneCache::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return results_.size();
}

void ConvAutotuneCache::clear() {
  std::lock_guard<std::mutex> lock(mutex_);
  results_.clear();
  slots_.clear();
}

ConvAutotuneCache& conv_autotune_cache() {
  static ConvAutotuneCache cache;
  return cache;
}

}  // namespace rg
