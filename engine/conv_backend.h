// Which implementation runs a convolution on the GPU: our own kernels (kernels/cuda/conv.h), the
// vendor libraries (cuDNN, and cuBLAS where the convolution is a plain GEMM), or whichever of the
// two measured faster for that exact case (autotuning). The setting and the autotune cache live
// here, free of CUDA types, so every build has them and the CPU tests cover them; the CUDA side
// (engine/cuda/conv_dispatch.h) supplies the timings.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/dtype.h"
#include "kernels/conv.h"

namespace rg {

enum class ConvBackend : uint8_t { Own, Cudnn, Auto };

const char* conv_backend_name(ConvBackend backend);  // "own", "cudnn", "auto"

// Parses "own", "cudnn" or "auto" (case-insensitive). `source` names where the text came from (a
// flag such as "--conv-backend", or "RG_CONV_BACKEND"); the error names it and the valid values.
ConvBackend parse_conv_backend(const std::string& text, const std::string& source);

// The process-wide setting. Until set_conv_backend() is called it is the environment variable
// RG_CONV_BACKEND when set (a bad value throws, naming the variable), else Auto.
void set_conv_backend(ConvBackend backend);
ConvBackend conv_backend();
// Forgets set_conv_backend() and the value read from the environment: the next conv_backend()
// reads RG_CONV_BACKEND again (tests; a program sets the backend once at start).
void reset_conv_backend();

// ---- autotuning

enum class ConvDirection : uint8_t { Forward, BackwardData, BackwardWeight };
const char* conv_direction_name(ConvDirection direction);  // "forward", "backward_data", ...

// Everything that can change which implementation is faster. tf32 is only meaningful for f32
// (bf16 always multiplies on bf16 tensor cores): make_conv_tune_key() clears it otherwise, so
// keys of one case compare equal however the caller's math setting was.
struct ConvTuneKey {
  int device = 0;
  ConvDirection direction = ConvDirection::Forward;
  kernels::Conv2dShape shape;
  DType dtype = DType::F32;
  bool tf32 = false;

  bool operator==(const ConvTuneKey& other) const;
};

ConvTuneKey make_conv_tune_key(int device, ConvDirection direction,
                               const kernels::Conv2dShape& shape, DType dtype, bool tf32);

// "cuda:0 forward f32 n16 256x256x1 -> 64, k4x4 s2x2 p1x1" (logs, benchmark output).
std::string describe(const ConvTuneKey& key);

struct ConvTuneKeyHash {
  size_t operator()(const ConvTuneKey& key) const;
};

// What autotuning measured for one key. A time < 0 means that implementation does not support
// the case. winner is Own or Cudnn, never Auto.
struct ConvTuneResult {
  ConvBackend winner = ConvBackend::Own;
  double own_ms = -1.0;
  double cudnn_ms = -1.0;
};

// Maps each key to the faster implementation. choose() measures a key once: the first call for
// a new key runs both timing callbacks (each returns milliseconds, or a negative value when its
// implementation cannot run the case) and caches the faster; later calls return the cached
// winner without timing. A tie, or both unsupported, goes to Own. Thread-safe: concurrent calls
// for the same new key time it once (the others wait), different keys do not wait for each
// other. A callback that throws leaves the key unmeasured (the next call times it again).
class ConvAutotuneCache {
 public:
  using TimingFn = std::function<double()>;

  ConvBackend choose(const ConvTuneKey& key, const TimingFn& time_own, const TimingFn& time_cudnn);
  // The measurement of a key, if it has one.
  std::optional<ConvTuneResult> lookup(const ConvTuneKey& key) const;
  // Every measured key, in no particular order.
  std::vector<std::pair<ConvTuneKey, ConvTuneResult>> entries() const;
  // One line per measured key: the case, both times and the winner, sorted by key description.
  std::string report() const;
  size_t size() const;
  void clear();

 private:
  // One per key being (or once) timed: held while the key is timed, so a second caller of the
  // same key waits for the first one's result instead of timing again.
  struct TimingSlot {
    std::mutex mutex;
  };
  mutable std::mutex mutex_;  // guards both maps; never held while timing
  std::unordered_map<ConvTuneKey, ConvTuneResult, ConvTuneKeyHash> results_;
  std::unordered_map<ConvTuneKey, std::shared_ptr<TimingSlot>, ConvTuneKeyHash> slots_;
};

// The process-wide cache the CUDA conv dispatch uses.
ConvAutotuneCache& conv_autotune_cache();

}  // namespace rg
