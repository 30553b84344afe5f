// The CUDA optimizer kernels (kernels/cuda/optim.h) against the CPU reference in double over
// several steps: sizes 1, 5 and 4099 (not a multiple of the vector width), arrays misaligned by
// one element (scalar path), and the multi-tensor launch, which must give the single-tensor
// kernel's results bit for bit.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "kernels/cuda/optim.h"
#include "kernels/optim.h"
#include "tests/gpu/gpu_test_util.h"

namespace {

using rg::gpu_test::all_close;
using rg::gpu_test::DeviceBuffer;
using rg::gpu_test::kTolFp32;
using rg::gpu_test::random_floats;
using rg::kernels::AdamConfig;
using rg::kernels::SgdConfig;
namespace kc = rg::kernels::cpu;
namespace kg = rg::kernels::cuda;

// A device array of n floats starting `offset` elements into a poisoned allocation with one
// guard element on each side, so writes out of bounds show.
class Slot {
 public:
  Slot(size_t n, size_t offset) : n_(n), offset_(offset), buf_(n + offset + 1) {}
  float* get() { return buf_.get() + offset_; }
  void upload(const std::vector<float>& v) {
    ASSERT_EQ(v.size(), n_);
    ASSERT_EQ(cudaMemcpy(get(), v.data(), n_ * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  }
  std::vector<float> download() const {
    const std::vector<float> all = buf_.download();
    return std::vector<float>(all.begin() + static_cast<std::ptrdiff_t>(offset_),
                              all.begin() + static_cast<std::ptrdiff_t>(offset_ + n_));
  }
  // The elements around the array still hold the poison.
  bool guards_intact() const {
    const std::vector<float> all = buf_.download();
    for (size_t i = 0; i < offset_; ++i)
      if (!std::isnan(all[i])) return false;
    return std::isnan(all.back());
  }

 private:
  size_t n_, offset_;
  DeviceBuffer<float> buf_;
};

std::vector<double> to_doubles(const std::vector<float>& v) {
  return std::vector<double>(v.begin(), v.end());
}

struct SizeCase {
  size_t n;
  size_t offset;       // of param, m, v (elements)
  size_t grad_offset;  // of grad
};

std::string describe(const SizeCase& s) {
  return "[n=" + std::to_string(s.n) + " offset=" + std::to_string(s.offset) +
         " grad_offset=" + std::to_string(s.grad_offset) + "]";
}

const SizeCase kSizes[] = {{1, 0, 0},    {5, 0, 0},    {4099, 0, 0},
                           {4099, 1, 1}, {4099, 0, 1}, {70001, 0, 0}};

std::vector<AdamConfig> adam_configs() {
  AdamConfig adam;
  adam.lr = 1e-2;
  AdamConfig l2 = adam;
  l2.weight_decay = 1e-2;
  AdamConfig adamw = adam;
  adamw.lr = 2e-3;
  adamw.beta1 = 0.5;
  adamw.weight_decay = 5e-2;
  adamw.decoupled_weight_decay = true;
  return {adam, l2, adamw};
}

// The state of one tensor under Adam, on the host (double reference) and on the device.
struct AdamState {
  size_t n;
  std::vector<double> param, m, v;
  std::unique_ptr<Slot> d_param, d_grad, d_m, d_v;

  AdamState(const SizeCase& s, uint32_t seed) : n(s.n) {
    const std::vector<float> p0 = random_floats(n, seed);
    const std::vector<float> m0 = random_floats(n, seed + 1, -0.1f, 0.1f);
    const std::vector<float> v0 = random_floats(n, seed + 2, 0.f, 0.01f);
    param = to_doubles(p0);
    m = to_doubles(m0);
    v = to_doubles(v0);
    d_param = std::make_unique<Slot>(n, s.offset);
    d_grad = std::make_unique<Slot>(n, s.grad_offset);
    d_m = std::make_unique<Slot>(n, s.offset);
    d_v = std::make_unique<Slot>(n, s.offset);
    d_param->upload(p0);
    d_m->upload(m0);
    d_v->upload(v0);
  }
  kg::AdamTensor tensor() {
    return kg::AdamTensor{d_param->get(), d_grad->get(), d_m->get(), d_v->get(),
                          static_cast<int64_t>(n)};
  }
  // Uploads grad and applies the reference step.
  void reference_step(const AdamConfig& c, const std::vector<float>& grad) {
    d_grad->upload(grad);
    const std::vector<double> g = to_doubles(grad);
    kc::adam_step<double>(c, static_cast<int64_t>(n), param.data(), g.data(), m.data(), v.data());
  }
  void expect_matches_reference() const {
    EXPECT_TRUE(all_close(d_param->download(), param, kTolFp32, "param"));
    EXPECT_TRUE(all_close(d_m->download(), m, kTolFp32, "m"));
    EXPECT_TRUE(all_close(d_v->download(), v, kTolFp32, "v"));
    EXPECT_TRUE(d_param->guards_intact() && d_m->guards_intact() && d_v->guards_intact())
        << "write outside the arrays";
  }
};

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(GpuOptim, AdamStepMatchesCpu) {
  RG_SKIP_WITHOUT_GPU();
  int config_index = 0;
  for (const AdamConfig& base : adam_configs()) {
    for (const SizeCase& s : kSizes) {
      SCOPED_TRACE("config " + std::to_string(config_index) + " " + describe(s));
      const uint32_t seed = static_cast<uint32_t>(100 * config_index + s.n + s.offset);
      AdamState st(s, seed);
      for (int64_t step = 1; step <= 5; ++step) {
        AdamConfig c = base;
        c.step = step;
        st.reference_step(c, random_floats(s.n, seed + 10 + static_cast<uint32_t>(step)));
        kg::adam_step(c, static_cast<int64_t>(s.n), st.d_param->get(), st.d_grad->get(),
                      st.d_m->get(), st.d_v->get(), nullptr);
      }
      st.expect_matches_reference();
    }
    ++config_index;
  }
}

TEST(GpuOptim, AdamMultiTensorMatchesSingleTensorBitForBit) {
  RG_SKIP_WITHOUT_GPU();
  const SizeCase sizes[] = {{1, 0, 0},     {5, 0, 0}, {4099, 0, 0}, {4099, 1, 1},
                            {70001, 0, 0}, {3, 1, 0}, {4099, 0, 1}, {8192 * 3 + 1, 0, 0},
                            {64, 0, 0}};
  int config_index = 0;
  for (const AdamConfig& base : adam_configs()) {
    SCOPED_TRACE("config " + std::to_string(config_index));
    std::vector<std::unique_ptr<AdamState>> multi, single;
    std::vector<kg::AdamTensor> descriptors;
    int64_t max_numel = 0;
    uint32_t seed = 900 + 50 * static_cast<uint32_t>(config_index);
    for (const SizeCase& s : sizes) {
      multi.push_back(std::make_unique<AdamState>(s, seed));
      single.push_back(std::make_unique<AdamState>(s, seed));
      descriptors.push_back(multi.back()->tensor());
      max_numel = std::max<int64_t>(max_numel, static_cast<int64_t>(s.n));
      seed += 7;
    }
    DeviceBuffer<kg::AdamTensor> d_descriptors(descriptors);
    for (int64_t step = 1; step <= 4; ++step) {
      AdamConfig c = base;
      c.step = step;
      c.lr = base.lr * (1.0 - 0.1 * static_cast<double>(step));  // a schedule: no re-upload
      for (size_t t = 0; t < multi.size(); ++t) {
        const std::vector<float> grad =
            random_floats(multi[t]->n, seed + 100 * static_cast<uint32_t>(step + t));
        multi[t]->reference_step(c, grad);
        single[t]->reference_step(c, grad);
      }
      kg::adam_multi_tensor(c, d_descriptors.get(), static_cast<int>(descriptors.size()), max_numel,
                            nullptr);
      for (auto& st : single) {
        kg::adam_step(c, static_cast<int64_t>(st->n), st->d_param->get(), st->d_grad->get(),
                      st->d_m->get(), st->d_v->get(), nullptr);
      }
    }
    for (size_t t = 0; t < multi.size(); ++t) {
      SCOPED_TRACE("tensor " + std::to_string(t) + " " + describe(sizes[t]));
      multi[t]->expect_matches_reference();
      EXPECT_TRUE(same_bits(multi[t]->d_param->download(), single[t]->d_param->download()));
      EXPECT_TRUE(same_bits(multi[t]->d_m->download(), single[t]->d_m->download()));
      EXPECT_TRUE(same_bits(multi[t]->d_v->download(), single[t]->d_v->download()));
    }
    ++config_index;
  }
}

std::vector<SgdConfig> sgd_configs() {
  SgdConfig plain;
  plain.lr = 0.1;
  SgdConfig momentum = plain;
  momentum.momentum = 0.9;
  SgdConfig nesterov = momentum;
  nesterov.dampening = 0.1;
  nesterov.nesterov = true;
  nesterov.weight_decay = 1e-3;
  SgdConfig decay = plain;
  decay.weight_decay = 1e-2;
  return {plain, momentum, nesterov, decay};
}

TEST(GpuOptim, SgdStepMatchesCpu) {
  RG_SKIP_WITHOUT_GPU();
  int config_index = 0;
  for (const SgdConfig& base : sgd_configs()) {
    for (const SizeCase& s : kSizes) {
      SCOPED_TRACE("config " + std::to_string(config_index) + " " + describe(s));
      const uint32_t seed = static_cast<uint32_t>(300 + 100 * config_index + s.n + s.offset);
      const bool use_buf = base.momentum != 0.0;
      const std::vector<float> p0 = random_floats(s.n, seed);
      std::vector<double> param = to_doubles(p0), buf(s.n, 0.0);
      Slot d_param(s.n, s.offset), d_grad(s.n, s.grad_offset), d_buf(s.n, s.offset);
      d_param.upload(p0);
      // d_buf stays poisoned until the first step writes it: that step must not read it.
      for (int step = 0; step < 4; ++step) {
        SgdConfig c = base;
        c.first_step = step == 0;
        const std::vector<float> grad = random_floats(s.n, seed + 1 + static_cast<uint32_t>(step));
        d_grad.upload(grad);
        const std::vector<double> g = to_doubles(grad);
        kc::sgd_step<double>(c, static_cast<int64_t>(s.n), param.data(), g.data(), buf.data());
        kg::sgd_step(c, static_cast<int64_t>(s.n), d_param.get(), d_grad.get(),
                     use_buf ? d_buf.get() : nullptr, nullptr);
      }
      EXPECT_TRUE(all_close(d_param.download(), param, kTolFp32, "param"));
      if (use_buf) {
        EXPECT_TRUE(all_close(d_buf.download(), buf, kTolFp32, "momentum buffer"));
      }
      EXPECT_TRUE(d_param.guards_intact() && d_buf.guards_intact()) << "write outside the arrays";
    }
    ++config_index;
  }
}

}  // namespace
