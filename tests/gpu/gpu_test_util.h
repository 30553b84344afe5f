// Shared by the GPU tests: skipping where no GPU exists, device buffers, poisoning, random
// inputs and the comparison against the CPU reference.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>  // the typed cudaMalloc(T**) overload DeviceBuffer uses
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace rg::gpu_test {

inline bool have_gpu() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return count > 0;
}

// RG_GPU_TEST_SMALL=1 (the compute-sanitizer runs; the CPU emulation): the tests leave out
// their largest shapes (each test file says which); RG_GPU_TEST_SMALL=0 keeps them. Unset, the
// default is the full set, except in a binary built with RG_GPU_TEST_SMALL_DEFAULT (the CPU
// emulation's, whose test list CTest discovers at build time, without the variable).
inline bool small_test_set() {
  const char* v = std::getenv("RG_GPU_TEST_SMALL");
  if (v != nullptr && *v != '\0') return std::string(v) != "0";
#ifdef RG_GPU_TEST_SMALL_DEFAULT
  return true;
#else
  return false;
#endif
}

// Tolerances by precision, relative to the reference's largest magnitude: the project's rule for
// every CUDA kernel against the CPU reference (fp32 1e-5, tf32 1e-3, bf16 1e-2; NaN never passes).
constexpr double kTolFp32 = 1e-5;
constexpr double kTolTf32 = 1e-3;
constexpr double kTolBf16 = 1e-2;

#define RG_SKIP_WITHOUT_GPU()                                                        \
  do {                                                                               \
    if (!::rg::gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device on this machine"; \
  } while (0)

#define RG_TEST_CUDA(call) ASSERT_EQ((call), cudaSuccess) << #call

// A device array of T, freed on scope exit. Poisoned with 0xFF bytes (NaN for floats and
// bf16) on creation, so an element a kernel forgot to write fails the comparison.
template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n) : n_(n) {
    if (cudaMalloc(&ptr_, bytes() == 0 ? 1 : bytes()) != cudaSuccess) {
      ptr_ = nullptr;
      ADD_FAILURE() << "cudaMalloc of " << bytes() << " bytes failed";
      return;
    }
    poison();
  }
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { upload(host); }
  ~DeviceBuffer() { cudaFree(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  T* get() { return ptr_; }
  const T* get() const { return ptr_; }
  size_t size() const { return n_; }
  size_t bytes() const { return n_ * sizeof(T); }
  // Both wait for the device before returning. cudaMemset and cudaMemcpy run on the legacy
  // default stream, and the tests launch on non-blocking streams, which are not ordered after
  // it: without the wait a kernel may run before the poison or the upload lands (and the late
  // poison then overwrites its results with NaN).
  void poison() {
    if (cudaMemset(ptr_, 0xFF, bytes()) != cudaSuccess) ADD_FAILURE() << "cudaMemset failed";
    if (cudaDeviceSynchronize() != cudaSuccess) ADD_FAILURE() << "cudaDeviceSynchronize failed";
  }
  void upload(const std::vector<T>& host) {
    if (cudaMemcpy(ptr_, host.data(), bytes(), cudaMemcpyHostToDevice) != cudaSuccess) {
      ADD_FAILURE() << "cudaMemcpy to the device failed";
    }
    if (cudaDeviceSynchronize() != cudaSuccess) ADD_FAILURE() << "cudaDeviceSynchronize failed";
  }
  std::vector<T> download() const {
    std::vector<T> host(n_);
    cudaDeviceSynchronize();
    cudaMemcpy(host.data(), ptr_, bytes(), cudaMemcpyDeviceToHost);
    return host;
  }

 private:
  T* ptr_ = nullptr;
  size_t n_;
};

inline float to_float(float v) { return v; }
inline float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T>
T from_float(float v);
template <>
inline float from_float<float>(float v) { return v; }
template <>
inline __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16(v); }

// n values uniform in [lo, hi), from a fixed seed per call site (different per test).
inline std::vector<float> random_floats(size_t n, uint32_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

template <typename T>
std::vector<T> convert(const std::vector<float>& v) {
  std::vector<T> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = from_float<T>(v[i]);
  return out;
}
template <typename T>
std::vector<float> to_floats(const std::vector<T>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = to_float(v[i]);
  return out;
}

// Passes when every element is finite and |got - want| <= tol * max |want| (the error is
// measured against the reference's scale, since sums of products near zero have no meaningful
// per-element relative error; an all-zero reference is compared absolutely). NaN or inf in
// `got` never passes.
inline ::testing::AssertionResult all_close(const std::vector<float>& got,
                                            const std::vector<double>& want, double tol,
                                            const std::string& what = "") {
  if (got.size() != want.size()) {
    return ::testing::AssertionFailure()
           << what << ": " << got.size() << " values, expected " << want.size();
  }
  double scale = 0.0;
  for (double w : want) scale = std::max(scale, std::abs(w));
  if (scale == 0.0) scale = 1.0;
  size_t bad = 0, first = 0;
  double worst = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::abs(static_cast<double>(got[i]) - want[i]);
    if (!std::isfinite(got[i]) || err > tol * scale) {
      if (bad++ == 0) first = i;
    }
    if (std::isfinite(got[i])) worst = std::max(worst, err / scale);
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << what << ": " << bad << " of " << got.size() << " elements off (first at " << first
         << ": got " << got[first] << ", want " << want[first] << "), worst finite error "
         << worst << " of scale " << scale << ", tolerance " << tol;
}

inline ::testing::AssertionResult all_close(const std::vector<float>& got,
                                            const std::vector<float>& want, double tol,
                                            const std::string& what = "") {
  return all_close(got, std::vector<double>(want.begin(), want.end()), tol, what);
}

}  // namespace rg::gpu_test
