// Small deterministic random numbers for the data pipeline (phantom, splits, shuffling,
// augmentation). Everything here is our own arithmetic, so a seed gives the same numbers with
// every standard library (std::*_distribution results are implementation-defined).
#pragma once

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <utility>
#include <vector>

namespace rg::data {

// SplitMix64 finalizer: a bijective 64-bit mix with good avalanche.
inline uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Derives a stream seed from a base seed and any number of integer keys (epoch, sample, ...).
inline uint64_t derive_seed(uint64_t seed, std::initializer_list<uint64_t> keys) {
  uint64_t h = mix64(seed ^ 0x5bd1e9955bd1e995ULL);
  for (uint64_t k : keys) h = mix64(h ^ mix64(k + 0x632be59bd9b4e019ULL));
  return h;
}

// Uniform double in [0, 1) from the top 53 bits.
inline double u64_to_unit(uint64_t x) { return static_cast<double>(x >> 11) * 0x1.0p-53; }

// A sequential generator (SplitMix64 stream) with our own uniform/normal transforms.
class Rng {
 public:
  explicit Rng(uint64_t seed = 0) : state_(mix64(seed)) {}

  uint64_t next_u64() {
    state_ += 0x9e3779b97f4a7c15ULL;
    uint64_t z = state_;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // [0, 1)
  double uniform() { return u64_to_unit(next_u64()); }
  // [lo, hi)
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // Integer in [0, n) (n > 0), by rejection so every value is equally likely.
  uint64_t below(uint64_t n) {
    const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = next_u64();
    while (x >= limit);
    return x % n;
  }
  bool bernoulli(double p) { return uniform() < p; }
  // Standard normal by Box-Muller (one value per call; the pair's second half is cached).
  double normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1 = uniform();
    while (u1 <= 0.0) u1 = uniform();
    const double u2 = uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double a = 6.283185307179586 * u2;
    spare_ = r * std::sin(a);
    has_spare_ = true;
    return r * std::cos(a);
  }
  double normal(double mean, double sd) { return mean + sd * normal(); }

  // Fisher-Yates shuffle.
  template <typename T>
  void shuffle(std::vector<T>& v) {
    for (size_t i = v.size(); i > 1; --i) {
      const size_t j = static_cast<size_t>(below(i));
      std::swap(v[i - 1], v[j]);
    }
  }

 private:
  uint64_t state_;
  double spare_ = 0.0;
  bool has_spare_ = false;
};

// Stateless standard normal for a (seed, counter) pair: the phantom's per-voxel noise, so it
// is the same however the volume is traversed.
inline double hashed_normal(uint64_t seed, uint64_t counter) {
  const uint64_t a = mix64(seed ^ mix64(counter * 2 + 1));
  const uint64_t b = mix64(a ^ 0xd6e8feb86659fd93ULL);
  double u1 = u64_to_unit(a);
  if (u1 <= 0.0) u1 = 0x1.0p-53;
  const double u2 = u64_to_unit(b);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

}  // namespace rg::data
