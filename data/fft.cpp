#include "data/fft.h"

#include <fftw3.h>

#include <algorithm>
#include <mutex>

#include "engine/error.h"

namespace rg::data {

namespace {

std::mutex& planner_mutex() {
  static std::mutex m;
  return m;
}

// Buffers from fftw_malloc (aligned as FFTW wants), freed with the plan.
struct Plan {
  fftw_plan plan = nullptr;
  ~Plan() {
    if (plan) {
      std::lock_guard<std::mutex> lock(planner_mutex());
      fftw_destroy_plan(plan);
    }
  }
};

template <class T>
struct FftwBuffer {
  T* p;
  explicit FftwBuffer(size_t n) : p(static_cast<T*>(fftw_malloc(sizeof(T) * std::max<size_t>(n, 1)))) {
    RG_CHECK(p, "fftw_malloc: out of memory (", n, " values)");
  }
  ~FftwBuffer() { fftw_free(p); }
  FftwBuffer(const FftwBuffer&) = delete;
  FftwBuffer& operator=(const FftwBuffer&) = delete;
};

std::vector<std::complex<double>> fft_2d_sign(const std::vector<std::complex<double>>& x, int64_t h, int64_t w,
                                              int sign) {
  RG_CHECK(h > 0 && w > 0 && x.size() == static_cast<size_t>(h * w), "fft_2d: ", x.size(), " values for ", h,
           " x ", w);
  const size_t n = x.size();
  FftwBuffer<fftw_complex> in(n), out(n);
  Plan plan;
  {
    std::lock_guard<std::mutex> lock(planner_mutex());
    plan.plan = fftw_plan_dft_2d(static_cast<int>(h), static_cast<int>(w), in.p, out.p, sign, FFTW_ESTIMATE);
  }
  RG_CHECK(plan.plan, "FFTW could not plan a ", h, " x ", w, " transform");
  for (size_t i = 0; i < n; ++i) {
    in.p[i][0] = x[i].real();
    in.p[i][1] = x[i].imag();
  }
  fftw_execute(plan.plan);
  const double scale = sign == FFTW_BACKWARD ? 1.0 / static_cast<double>(n) : 1.0;
  std::vector<std::complex<double>> y(n);
  for (size_t i = 0; i < n; ++i) y[i] = {out.p[i][0] * scale, out.p[i][1] * scale};
  return y;
}

}  // namespace

std::vector<std::complex<double>> fft_real_1d(const std::vector<double>& x) {
  const size_t n = x.size();
  RG_CHECK(n > 0, "fft_real_1d: empty input");
  FftwBuffer<double> in(n);
  FftwBuffer<fftw_complex> out(n / 2 + 1);
  Plan plan;
  {
    std::lock_guard<std::mutex> lock(planner_mutex());
    plan.plan = fftw_plan_dft_r2c_1d(static_cast<int>(n), in.p, out.p, FFTW_ESTIMATE);
  }
  RG_CHECK(plan.plan, "FFTW could not plan a transform of length ", n);
  std::copy(x.begin(), x.end(), in.p);
  fftw_execute(plan.plan);
  std::vector<std::complex<double>> y(n / 2 + 1);
  for (size_t i = 0; i < y.size(); ++i) y[i] = {out.p[i][0], out.p[i][1]};
  return y;
}

std::vector<double> ifft_real_1d(const std::vector<std::complex<double>>& spectrum, int64_t n) {
  RG_CHECK(n > 0 && spectrum.size() == static_cast<size_t>(n / 2 + 1), "ifft_real_1d: ", spectrum.size(),
           " frequencies for length ", n);
  FftwBuffer<fftw_complex> in(spectrum.size());
  FftwBuffer<double> out(static_cast<size_t>(n));
  Plan plan;
  {
    std::lock_guard<std::mutex> lock(planner_mutex());
    // c2r overwrites its input: plan and fill afterwards.
    plan.plan = fftw_plan_dft_c2r_1d(static_cast<int>(n), in.p, out.p, FFTW_ESTIMATE);
  }
  RG_CHECK(plan.plan, "FFTW could not plan an inverse transform of length ", n);
  for (size_t i = 0; i < spectrum.size(); ++i) {
    in.p[i][0] = spectrum[i].real();
    in.p[i][1] = spectrum[i].imag();
  }
  fftw_execute(plan.plan);
  std::vector<double> y(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) y[static_cast<size_t>(i)] = out.p[i] / static_cast<double>(n);
  return y;
}

std::vector<std::complex<double>> fft_2d(const std::vector<std::complex<double>>& x, int64_t h, int64_t w) {
  return fft_2d_sign(x, h, w, FFTW_FORWARD);
}
std::vector<std::complex<double>> ifft_2d(const std::vector<std::complex<double>>& x, int64_t h, int64_t w) {
  return fft_2d_sign(x, h, w, FFTW_BACKWARD);
}

}  // namespace rg::data
