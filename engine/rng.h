// Counter-based random numbers (Philox-4x32-10, Salmon et al. 2011). The value of element i of
// a fill depends only on (seed, the generator's offset at the fill, i), never on the device or
// the number of threads, so CPU and GPU produce the same numbers for a seed.
//
// Element i of a fill that starts at offset o uses counter block (o + i / 4), word i % 4 for
// uniform and bernoulli, and block (o + i / 2), words (2*(i%2), 2*(i%2)+1) for normal
// (Box-Muller). The generator advances its offset by the number of blocks a fill used.
#pragma once

#include <array>
#include <cstdint>

#include "engine/tensor.h"

namespace rg {

// One Philox-4x32-10 evaluation: 128 random bits for (key, counter).
std::array<uint32_t, 4> philox4x32(uint64_t key, uint64_t counter_lo, uint64_t counter_hi = 0);

// Uniform in (0, 1]: never 0, so log() in Box-Muller is finite.
inline float uint32_to_unit_float(uint32_t x) {
  return (static_cast<float>(x >> 8) + 1.0f) * (1.0f / 16777216.0f);
}

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_state(uint64_t seed, uint64_t offset) {
    seed_ = seed;
    offset_ = offset;
  }
  // Reserves `blocks` counter blocks and returns the first.
  uint64_t reserve(uint64_t blocks) {
    const uint64_t start = offset_;
    offset_ += blocks;
    return start;
  }

 private:
  uint64_t seed_;
  uint64_t offset_ = 0;
};

// The process-wide generator used when none is passed; manual_seed resets it.
Generator& default_generator();
void manual_seed(uint64_t seed);

// In-place fills (not recorded by autograd), any floating dtype.
void uniform_(Tensor& t, double low, double high, Generator& gen = default_generator());
void normal_(Tensor& t, double mean, double stddev, Generator& gen = default_generator());
// 1 with probability p, else 0.
void bernoulli_(Tensor& t, double p, Generator& gen = default_generator());

}  // namespace rg
