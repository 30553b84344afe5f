#include "engine/rng.h"

#include <cmath>
#include <vector>

#include "engine/core_backend.h"
#include "engine/dispatch.h"

namespace rg {

std::array<uint32_t, 4> philox4x32(uint64_t key, uint64_t counter_lo, uint64_t counter_hi) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  uint32_t c[4] = {static_cast<uint32_t>(counter_lo), static_cast<uint32_t>(counter_lo >> 32),
                   static_cast<uint32_t>(counter_hi), static_cast<uint32_t>(counter_hi >> 32)};
  uint32_t k[2] = {static_cast<uint32_t>(key), static_cast<uint32_t>(key >> 32)};
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(kMul0) * c[0];
    const uint64_t p1 = static_cast<uint64_t>(kMul1) * c[2];
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    c[0] = hi1 ^ c[1] ^ k[0];
    c[1] = lo1;
    c[2] = hi0 ^ c[3] ^ k[1];
    c[3] = lo0;
    k[0] += kWeyl0;
    k[1] += kWeyl1;
  }
  return {c[0], c[1], c[2], c[3]};
}

Generator& default_generator() {
  static Generator gen(0);
  return gen;
}

void manual_seed(uint64_t seed) { default_generator().set_state(seed, 0); }

namespace {

// Computes values on the host in f32 and copies them into t (any floating dtype, any device).
template <typename F>
void fill_with(Tensor& t, const char* op, F&& value_of) {
  check_defined(t, op, "t");
  RG_CHECK(is_floating(t.dtype()), op, ": tensor must be floating point, got ",
           dtype_name(t.dtype()));
  const int64_t n = t.numel();
  Tensor host = Tensor::empty(t.shape(), DType::F32);
  float* p = host.data<float>();
#pragma omp parallel for schedule(static) if (n > 1 << 15)
  for (int64_t i = 0; i < n; ++i) p[i] = value_of(i);
  t.copy_(host);
}

// GPU tensors are filled by the CUDA Philox kernels, which use the same element mapping;
// true when that happened.
bool fill_on_device(Tensor& t, const char* op, core_backend::RandomFill kind, double a, double b,
                    uint64_t key, uint64_t start) {
  if (!core_backend::kCudaBuild || !t.device().is_cuda()) return false;
  RG_CHECK(is_floating(t.dtype()), op, ": tensor must be floating point, got ",
           dtype_name(t.dtype()));
  if constexpr (core_backend::kCudaBuild) core_backend::cuda_random_fill(kind, t, a, b, key, start);
  return true;
}

}  // namespace

void uniform_(Tensor& t, double low, double high, Generator& gen) {
  RG_CHECK(low <= high, "uniform_: low ", low, " > high ", high);
  const uint64_t key = gen.seed();
  const uint64_t start = gen.reserve((static_cast<uint64_t>(t.numel()) + 3) / 4);
  const float lo = static_cast<float>(low), span = static_cast<float>(high - low);
  if (fill_on_device(t, "uniform_", core_backend::RandomFill::Uniform, low, high, key, start)) return;
  fill_with(t, "uniform_", [&](int64_t i) {
    const auto r = philox4x32(key, start + static_cast<uint64_t>(i) / 4);
    // (0,1] -> [low, high): 1 - u is in [0, 1).
    return lo + span * (1.0f - uint32_to_unit_float(r[i % 4]));
  });
}

void normal_(Tensor& t, double mean, double stddev, Generator& gen) {
  RG_CHECK(stddev >= 0, "normal_: stddev must be >= 0, got ", stddev);
  const uint64_t key = gen.seed();
  const uint64_t start = gen.reserve((static_cast<uint64_t>(t.numel()) + 1) / 2);
  const float m = static_cast<float>(mean), s = static_cast<float>(stddev);
  if (fill_on_device(t, "normal_", core_backend::RandomFill::Normal, mean, stddev, key, start)) return;
  fill_with(t, "normal_", [&](int64_t i) {
    const auto r = philox4x32(key, start + static_cast<uint64_t>(i) / 2);
    const int w = 2 * static_cast<int>(i % 2);
    const float u1 = uint32_to_unit_float(r[w]);
    const float u2 = uint32_to_unit_float(r[w + 1]);
    const float radius = std::sqrt(-2.0f * std::log(u1));
    return m + s * radius * std::cos(6.2831853071795864f * u2);
  });
}

void bernoulli_(Tensor& t, double p, Generator& gen) {
  RG_CHECK(p >= 0.0 && p <= 1.0, "bernoulli_: p must be in [0, 1], got ", p);
  const uint64_t key = gen.seed();
  const uint64_t start = gen.reserve((static_cast<uint64_t>(t.numel()) + 3) / 4);
  const float threshold = static_cast<float>(p);
  if (fill_on_device(t, "bernoulli_", core_backend::RandomFill::Bernoulli, p, 0.0, key, start)) return;
  fill_with(t, "bernoulli_", [&](int64_t i) {
    const auto r = philox4x32(key, start + static_cast<uint64_t>(i) / 4);
    // u in (0,1]: P(u <= p) = p.
    return uint32_to_unit_float(r[i % 4]) <= threshold ? 1.0f : 0.0f;
  });
}

}  // namespace rg
