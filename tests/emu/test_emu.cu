// Tests of the CUDA emulation itself (tests/emu): that it computes what a GPU computes where the
// semantics are defined (shuffles, barriers, wmma), and that it refuses what a GPU leaves
// undefined or racy (a missing barrier, a deadlock, misaligned wmma pointers, unordered
// streams). Written in CUDA syntax; the build rewrites the launches like the kernels'.
#include <cuda_runtime.h>
#include <gtest/gtest.h>
#include <mma.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "tests/emu/emu_error.h"
#include "tests/emu/emu_scheduler.h"

namespace {

// Runs the test body once per thread order; restores the default afterwards.
class EmuOrders : public ::testing::TestWithParam<rg_emu::Order> {
 protected:
  void SetUp() override {
    saved_ = rg_emu::scheduler_options();
    rg_emu::SchedulerOptions o = saved_;
    o.order = GetParam();
    rg_emu::set_scheduler_options(o);
  }
  void TearDown() override { rg_emu::set_scheduler_options(saved_); }
  rg_emu::SchedulerOptions saved_;
};

INSTANTIATE_TEST_SUITE_P(Orders, EmuOrders,
                         ::testing::Values(rg_emu::Order::Forward, rg_emu::Order::Reverse,
                                           rg_emu::Order::Random));

template <typename T>
struct Buffer {
  explicit Buffer(size_t n) : n(n) { EXPECT_EQ(cudaMalloc(&p, n * sizeof(T)), cudaSuccess); }
  ~Buffer() { cudaFree(p); }
  std::vector<T> get() const {
    std::vector<T> h(n);
    EXPECT_EQ(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return h;
  }
  void put(const std::vector<T>& h) {
    EXPECT_EQ(cudaMemcpy(p, h.data(), n * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  T* p = nullptr;
  size_t n;
};

// ---- Shuffles ----------------------------------------------------------------------------

__global__ void shuffles_kernel(int* out) {
  const int t = threadIdx.x;
  const int lane = t % 32;
  out[4 * t + 0] = __shfl_down_sync(0xffffffffu, 100 + lane, 3);
  out[4 * t + 1] = __shfl_down_sync(0xffffffffu, 100 + lane, 2, 8);
  out[4 * t + 2] = __shfl_xor_sync(0xffffffffu, 100 + lane, 5);
  out[4 * t + 3] = __shfl_sync(0xffffffffu, 100 + lane, 7, 16);
}

TEST_P(EmuOrders, ShufflesFollowTheCudaSemantics) {
  Buffer<int> out(64 * 4);
  shuffles_kernel<<<1, 64>>>(out.p);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  const std::vector<int> got = out.get();
  for (int t = 0; t < 64; ++t) {
    const int lane = t % 32;
    // down: lanes past the end of the (sub)segment keep their own value.
    EXPECT_EQ(got[4 * t + 0], 100 + (lane + 3 < 32 ? lane + 3 : lane)) << t;
    EXPECT_EQ(got[4 * t + 1], 100 + (lane % 8 + 2 < 8 ? lane + 2 : lane)) << t;
    EXPECT_EQ(got[4 * t + 2], 100 + (lane ^ 5)) << t;
    EXPECT_EQ(got[4 * t + 3], 100 + (lane / 16 * 16 + 7)) << t;
  }
}

// ---- Barriers ----------------------------------------------------------------------------

// Each thread writes its slot, then reads its neighbour's: correct only with the barrier.
__global__ void neighbour_kernel(bool with_barrier, float* out) {
  __shared__ float slots[64];
  const int t = threadIdx.x;
  slots[t] = static_cast<float>(t);
  if (with_barrier) __syncthreads();
  out[t] = slots[(t + 1) % 64];
}

TEST_P(EmuOrders, MissingBarrierShows) {
  Buffer<float> out(64);
  neighbour_kernel<<<1, 64>>>(true, out.p);
  std::vector<float> got = out.get();
  for (int t = 0; t < 64; ++t) EXPECT_EQ(got[t], static_cast<float>((t + 1) % 64)) << t;

  // Without it, whichever thread runs first in the cycle reads a slot nobody wrote yet.
  neighbour_kernel<<<1, 64>>>(false, out.p);
  got = out.get();
  int wrong = 0;
  for (int t = 0; t < 64; ++t) wrong += got[t] != static_cast<float>((t + 1) % 64);
  EXPECT_GT(wrong, 0);
}

__global__ void early_exit_shuffle_kernel(int* out) {
  if (threadIdx.x >= 16) return;
  out[threadIdx.x] = __shfl_down_sync(0xffffffffu, static_cast<int>(threadIdx.x), 1);
}

TEST(Emu, CollectiveWithExitedLanesIsAnError) {
  Buffer<int> out(32);
  EXPECT_THROW(early_exit_shuffle_kernel<<<1, 32>>>(out.p), rg_emu::Error);
}

// Half of the second warp waits for the whole warp in __syncwarp while the other half waits at
// the block barrier: neither can complete.
__global__ void divergent_barrier_kernel() {
  if (threadIdx.x >= 32 && threadIdx.x < 48) {
    __syncwarp();
  } else {
    __syncthreads();
  }
}

TEST(Emu, DeadlockIsReported) {
  try {
    divergent_barrier_kernel<<<1, 64>>>();
    FAIL() << "no deadlock reported";
  } catch (const rg_emu::Error& e) {
    EXPECT_NE(std::string(e.what()).find("deadlock"), std::string::npos) << e.what();
  }
}

__global__ void partial_warp_shuffle_kernel(int* out) {
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1, 1);
}

TEST(Emu, FullMaskInAPartialWarpIsAnError) {
  Buffer<int> out(48);
  EXPECT_THROW(partial_warp_shuffle_kernel<<<1, 48>>>(out.p), rg_emu::Error);
}

// ---- Launch configuration ----------------------------------------------------------------

__global__ void noop_kernel() {}

TEST(Emu, BadLaunchConfigurationIsReportedOnce) {
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  noop_kernel<<<1, 2048>>>();
  EXPECT_EQ(cudaPeekAtLastError(), cudaErrorInvalidConfiguration);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

// ---- wmma --------------------------------------------------------------------------------

namespace wmma = nvcuda::wmma;

// C = A(16x8, row-major, tf32) * B(8x16, col-major) through one warp.
__global__ void wmma_tf32_kernel(const float* a, unsigned lda, const float* b, unsigned ldb,
                                 float* c) {
  wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc;
  wmma::fill_fragment(acc, 0.f);
  wmma::load_matrix_sync(fa, a, lda);
  wmma::load_matrix_sync(fb, b, ldb);
  for (int i = 0; i < fa.num_elements; ++i) fa.x[i] = wmma::__float_to_tf32(fa.x[i]);
  for (int i = 0; i < fb.num_elements; ++i) fb.x[i] = wmma::__float_to_tf32(fb.x[i]);
  wmma::mma_sync(acc, fa, fb, acc);
  wmma::store_matrix_sync(c, acc, 16, wmma::mem_row_major);
}

float tf32_round(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  u = (u + 0x1000u) & ~0x1fffu;
  std::memcpy(&v, &u, 4);
  return v;
}

TEST(Emu, WmmaTf32MatchesTheRoundedProduct) {
  Buffer<float> a(16 * 8), b(16 * 8), c(16 * 16);
  std::vector<float> ha(16 * 8), hb(16 * 8);
  for (size_t i = 0; i < ha.size(); ++i) ha[i] = 1.f + static_cast<float>(i) * 1.0001e-3f;
  for (size_t i = 0; i < hb.size(); ++i) hb[i] = 0.5f - static_cast<float>(i) * 0.7e-3f;
  a.put(ha);
  b.put(hb);
  wmma_tf32_kernel<<<1, 32>>>(a.p, 8, b.p, 8, c.p);
  const std::vector<float> got = c.get();
  for (int i = 0; i < 16; ++i) {
    for (int j = 0; j < 16; ++j) {
      double want = 0.0;
      for (int k = 0; k < 8; ++k) {
        want += static_cast<double>(tf32_round(ha[i * 8 + k])) * tf32_round(hb[j * 8 + k]);
      }
      EXPECT_NEAR(got[i * 16 + j], want, 1e-5 * std::abs(want)) << i << "," << j;
    }
  }
}

TEST(Emu, WmmaRefusesMisalignedPointers) {
  Buffer<float> a(16 * 8 + 8), b(16 * 8), c(16 * 16);
  // 16 bytes past a 256-byte boundary: aligned for float4, not for wmma (32 bytes).
  EXPECT_THROW(wmma_tf32_kernel<<<1, 32>>>(a.p + 4, 8, b.p, 8, c.p), rg_emu::Error);
}

TEST(Emu, WmmaRefusesABadLeadingDimension) {
  Buffer<float> a(16 * 10), b(16 * 8), c(16 * 16);
  // 10 floats = 40 bytes: not a multiple of 16 bytes.
  EXPECT_THROW(wmma_tf32_kernel<<<1, 32>>>(a.p, 10, b.p, 8, c.p), rg_emu::Error);
}

TEST(Emu, WmmaNeedsTheWholeWarp) {
  Buffer<float> a(16 * 8), b(16 * 8), c(16 * 16);
  EXPECT_THROW(wmma_tf32_kernel<<<1, 16>>>(a.p, 8, b.p, 8, c.p), rg_emu::Error);
}

// ---- Stream ordering ---------------------------------------------------------------------

__global__ void fill_kernel(float* p, int n, float v) {
  for (int i = threadIdx.x; i < n; i += blockDim.x) p[i] = v;
}

TEST(Emu, LegacyWorkThenNonBlockingStreamIsARace) {
  cudaStream_t s = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  Buffer<float> buf(256);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  ASSERT_EQ(cudaMemset(buf.p, 0, 256 * sizeof(float)), cudaSuccess);
  EXPECT_THROW((fill_kernel<<<1, 64, 0, s>>>(buf.p, 256, 1.f)), rg_emu::Error);
  // Waited for: ordered.
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  fill_kernel<<<1, 64, 0, s>>>(buf.p, 256, 1.f);
  // Through an event recorded on the legacy stream: ordered too.
  cudaEvent_t e = nullptr;
  ASSERT_EQ(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  ASSERT_EQ(cudaMemset(buf.p, 0, 256 * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(e, nullptr), cudaSuccess);
  ASSERT_EQ(cudaStreamWaitEvent(s, e, 0), cudaSuccess);
  fill_kernel<<<1, 64, 0, s>>>(buf.p, 256, 2.f);
  // Reading back on the legacy stream before waiting for s is the race the other way round.
  std::vector<float> host(256);
  EXPECT_THROW(cudaMemcpy(host.data(), buf.p, 256 * sizeof(float), cudaMemcpyDeviceToHost),
               rg_emu::Error);
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(buf.get()[255], 2.f);
  cudaEventDestroy(e);
  cudaStreamDestroy(s);
}

TEST(Emu, BlockingStreamsAreOrderedAfterTheLegacyStream) {
  cudaStream_t s = nullptr;
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  Buffer<float> buf(256);
  ASSERT_EQ(cudaMemset(buf.p, 0, 256 * sizeof(float)), cudaSuccess);
  fill_kernel<<<1, 64, 0, s>>>(buf.p, 256, 3.f);
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(buf.get()[0], 3.f);
  cudaStreamDestroy(s);
}

TEST(Emu, CopiesOutsideDeviceAllocationsAreRefused) {
  Buffer<float> buf(16);
  std::vector<float> host(32);
  EXPECT_EQ(cudaMemcpy(buf.p, host.data(), 32 * sizeof(float), cudaMemcpyHostToDevice),
            cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(host.data(), host.data() + 16, 16 * sizeof(float), cudaMemcpyDeviceToHost),
            cudaErrorInvalidValue);
  cudaGetLastError();
}

TEST(Emu, OneEmulatedDevice) {
  int count = 0;
  ASSERT_EQ(cudaGetDeviceCount(&count), cudaSuccess);
  EXPECT_EQ(count, 1);
  EXPECT_EQ(cudaSetDevice(1), cudaErrorInvalidDevice);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidDevice);
}

}  // namespace
