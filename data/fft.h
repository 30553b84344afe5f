// Discrete Fourier transforms through FFTW (double precision), for the physics simulations
// (data/ct_sim.h's ramp filter, data/mri_sim.h's k-space). Unnormalized forward transforms
// (X[k] = sum_n x[n] e^{-2 pi i k n / N}); the inverses divide by N (by H W in 2-D), so
// inverse(forward(x)) == x. FFTW's planner is not thread-safe: plans are made under one lock.
#pragma once

#include <complex>
#include <cstdint>
#include <vector>

namespace rg::data {

// Real input of length N -> its N/2 + 1 non-negative frequencies.
std::vector<std::complex<double>> fft_real_1d(const std::vector<double>& x);
// The N/2 + 1 non-negative frequencies of a real signal of length n -> the signal.
std::vector<double> ifft_real_1d(const std::vector<std::complex<double>>& spectrum, int64_t n);
// 2-D complex transforms of an h x w row-major array (forward: sign -1; inverse: +1 and / (h w)).
std::vector<std::complex<double>> fft_2d(const std::vector<std::complex<double>>& x, int64_t h, int64_t w);
std::vector<std::complex<double>> ifft_2d(const std::vector<std::complex<double>>& x, int64_t h, int64_t w);

}  // namespace rg::data
