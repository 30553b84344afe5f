// CUDA loss kernels (kernels/cuda/loss.h): results stay on the device.
//
// Forward sums are deterministic two-level reductions. A segment (the whole input for the
// pointwise losses, one sample for Dice) is split into chunks of at least 4096 elements, at
// most 1024 chunks in all; each block accumulates its chunk in fp32 per thread (grid-stride
// inside the chunk), reduces with warp shuffles and a shared-memory tree, and writes one
// partial per quantity. A second one-block-per-segment kernel adds the partials in a fixed
// tree order. The split depends only on the sizes, so a result never depends on timing.
//
// Where the partials go: the kernel library has no allocator, a static __device__ scratch
// array would race between streams, and atomics would make the sum order (and the result)
// vary from run to run. So the partials live in a buffer from cudaMallocAsync/cudaFreeAsync on
// the caller's stream: stream ordered (safe on any stream, freed after the finishing kernel
// has run), served by the driver's memory pool without a device synchronization, and allowed
// inside CUDA graph capture. Inputs that fit one chunk per segment skip the buffer and the
// second kernel.
#include <algorithm>
#include <cstdint>

#include "kernels/cuda/loss.h"
#include "kernels/cuda/device_util.cuh"

namespace rg::kernels::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMinChunk = 4096;
constexpr int64_t kMaxChunksTotal = 1024;




// Sums K values over the block (blockDim.x a multiple of 32, at most 1024); the results are
// valid in thread 0. Ends with a barrier so `scratch` can be reused at once.
template <int K>
__device__ void block_sums(float (&v)[K], float (&scratch)[K][32]) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int warps = blockDim.x >> 5;
#pragma unroll
  for (int k = 0; k < K; ++k) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
      v[k] += __shfl_down_sync(0xffffffffu, v[k], offset);
    }
    if (lane == 0) scratch[k][warp] = v[k];
  }
  __syncthreads();
  if (warp == 0) {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      v[k] = lane < warps ? scratch[k][lane] : 0.f;
#pragma unroll
      for (int offset = 16; offset > 0; offset >>= 1) {
        v[k] += __shfl_down_sync(0xffffffffu, v[k], offset);
      }
    }
  }
  __syncthreads();
}

// Per-element loss terms in fp32, the CPU reference's formulas.
template <typename T>
struct PointwiseTerms {
  static constexpr int K = 1;
  PointwiseLoss loss;
  const T* x;
  const T* t;
  __device__ void operator()(int64_t i, float (&acc)[K]) const {
    const float xv = to_f32(x[i]), tv = to_f32(t[i]);
    switch (loss) {
      case PointwiseLoss::BceWithLogits:
        acc[0] += fmaxf(xv, 0.f) - xv * tv + log1pf(expf(-fabsf(xv)));
        break;
      case PointwiseLoss::L1:
        acc[0] += fabsf(xv - tv);
        break;
      case PointwiseLoss::Mse: {
        const float d = xv - tv;
        acc[0] += d * d;
        break;
      }
    }
  }
};

template <typename T>
struct DiceTerms {
  static constexpr int K = 3;
  const T* p;
  const T* t;
  __device__ void operator()(int64_t i, float (&acc)[K]) const {
    const float pv = to_f32(p[i]), tv = to_f32(t[i]);
    acc[0] += pv * tv;
    acc[1] += pv;
    acc[2] += tv;
  }
};

// Block (chunk, segment) sums Terms over elements [chunk * chunk_len, ...) of its segment and
// writes out[(segment * gridDim.x + chunk) * K + k]; with one chunk that is out[segment*K + k].
template <typename Terms>
__global__ void chunk_sums_kernel(int64_t segments, int64_t segment_len, int64_t chunk_len,
                                  Terms terms, float* out) {
  constexpr int K = Terms::K;
  __shared__ float scratch[K][32];
  const int64_t begin = static_cast<int64_t>(blockIdx.x) * chunk_len;
  const int64_t end = begin + chunk_len < segment_len ? begin + chunk_len : segment_len;
  for (int64_t seg = blockIdx.y; seg < segments; seg += gridDim.y) {
    float acc[K];
#pragma unroll
    for (int k = 0; k < K; ++k) acc[k] = 0.f;
    const int64_t base = seg * segment_len;
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) terms(base + i, acc);
    block_sums<K>(acc, scratch);
    if (threadIdx.x == 0) {
#pragma unroll
      for (int k = 0; k < K; ++k) out[(seg * gridDim.x + blockIdx.x) * K + k] = acc[k];
    }
  }
}

// Block `segment` adds the `chunks` partials of each quantity: out[segment * K + k].
template <int K>
__global__ void finish_sums_kernel(int64_t segments, int64_t chunks, const float* partials,
                                   float* out) {
  __shared__ float scratch[K][32];
  for (int64_t seg = blockIdx.x; seg < segments; seg += gridDim.x) {
    float acc[K];
#pragma unroll
    for (int k = 0; k < K; ++k) acc[k] = 0.f;
    for (int64_t c = threadIdx.x; c < chunks; c += blockDim.x) {
#pragma unroll
      for (int k = 0; k < K; ++k) acc[k] += partials[(seg * chunks + c) * K + k];
    }
    block_sums<K>(acc, scratch);
    if (threadIdx.x == 0) {
#pragma unroll
      for (int k = 0; k < K; ++k) out[seg * K + k] = acc[k];
    }
  }
}

class StreamScratch {
 public:
  StreamScratch(size_t bytes, cudaStream_t stream) : stream_(stream) {
    RG_KERNEL_CUDA_CHECK(cudaMallocAsync(&ptr_, bytes, stream));
  }
  ~StreamScratch() {
    if (ptr_ != nullptr) cudaFreeAsync(ptr_, stream_);
  }
  StreamScratch(const StreamScratch&) = delete;
  StreamScratch& operator=(const StreamScratch&) = delete;
  float* floats() const { return static_cast<float*>(ptr_); }

 private:
  void* ptr_ = nullptr;
  cudaStream_t stream_;
};

// out[segment * K + k] = sum over the segment's elements of Terms' k-th quantity.
template <typename Terms>
void segmented_sums(int64_t segments, int64_t segment_len, const Terms& terms, float* out,
                    cudaStream_t stream) {
  constexpr int K = Terms::K;
  if (segments <= 0) return;
  if (segment_len <= 0) {
    RG_KERNEL_CUDA_CHECK(
        cudaMemsetAsync(out, 0, static_cast<size_t>(segments) * K * sizeof(float), stream));
    return;
  }
  const int64_t chunk_cap = std::max<int64_t>(1, kMaxChunksTotal / segments);
  int64_t chunks = std::min((segment_len + kMinChunk - 1) / kMinChunk, chunk_cap);
  const int64_t chunk_len = (segment_len + chunks - 1) / chunks;
  chunks = (segment_len + chunk_len - 1) / chunk_len;
  const dim3 grid(static_cast<unsigned>(chunks),
                  static_cast<unsigned>(std::min<int64_t>(segments, 65535)));
  if (chunks == 1) {
    chunk_sums_kernel<Terms>
        <<<grid, kThreads, 0, stream>>>(segments, segment_len, chunk_len, terms, out);
    RG_KERNEL_LAUNCH_CHECK("chunk_sums_kernel");
    return;
  }
  StreamScratch partials(static_cast<size_t>(segments * chunks) * K * sizeof(float), stream);
  chunk_sums_kernel<Terms>
      <<<grid, kThreads, 0, stream>>>(segments, segment_len, chunk_len, terms, partials.floats());
  RG_KERNEL_LAUNCH_CHECK("chunk_sums_kernel");
  finish_sums_kernel<K>
      <<<static_cast<unsigned>(std::min<int64_t>(segments, kMaxBlocks)), kThreads, 0, stream>>>(
          segments, chunks, partials.floats(), out);
  RG_KERNEL_LAUNCH_CHECK("finish_sums_kernel");
}

template <typename T>
__global__ void pointwise_loss_backward_kernel(PointwiseLoss loss, int64_t n, const T* x,
                                               const T* t, const float* grad_out, float scale,
                                               T* dx, T* dt) {
  const float g = *grad_out * scale;
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const float xv = to_f32(x[i]), tv = to_f32(t[i]);
    float gx = 0.f, gt = 0.f;
    switch (loss) {
      case PointwiseLoss::BceWithLogits: {
        // d/dz = sigmoid(z) - t without overflow; d/dt = -z.
        const float e = expf(-fabsf(xv));
        const float sig = xv >= 0.f ? 1.f / (1.f + e) : e / (1.f + e);
        gx = sig - tv;
        gt = -xv;
        break;
      }
      case PointwiseLoss::L1: {
        const float d = xv - tv;
        gx = d > 0.f ? 1.f : (d < 0.f ? -1.f : 0.f);
        gt = -gx;
        break;
      }
      case PointwiseLoss::Mse:
        gx = 2.f * (xv - tv);
        gt = -gx;
        break;
    }
    if (dx != nullptr) dx[i] = from_f32<T>(g * gx);
    if (dt != nullptr) dt[i] = from_f32<T>(g * gt);
  }
}

// One sample per grid row (strided), its elements over the grid's x dimension.
template <typename T>
__global__ void dice_backward_kernel(int64_t batch, int64_t per_sample, const T* p, const T* t,
                                     const float* sums, float smooth, const float* grad_out, T* dp,
                                     T* dt) {
  const float g = *grad_out;
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    // L_b = 1 - N/D, N = 2I + s, D = P + T + s: dL/dp_i = -(2 t_i D - N) / D^2 (t: p and t
    // swapped), averaged over the batch.
    const float num = 2.f * sums[3 * b] + smooth;
    const float den = sums[3 * b + 1] + sums[3 * b + 2] + smooth;
    const float k = -g / (static_cast<float>(batch) * den * den);
    const int64_t base = b * per_sample;
    for (int64_t i = global_thread(); i < per_sample; i += grid_threads()) {
      const int64_t j = base + i;
      if (dp != nullptr) dp[j] = from_f32<T>(k * (2.f * to_f32(t[j]) * den - num));
      if (dt != nullptr) dt[j] = from_f32<T>(k * (2.f * to_f32(p[j]) * den - num));
    }
  }
}

__global__ void dice_loss_kernel(int64_t batch, const float* sums, float smooth, float* loss_out) {
  __shared__ float scratch[1][32];
  float acc[1] = {0.f};
  for (int64_t b = threadIdx.x; b < batch; b += blockDim.x) {
    acc[0] += 1.f - (2.f * sums[3 * b] + smooth) / (sums[3 * b + 1] + sums[3 * b + 2] + smooth);
  }
  block_sums<1>(acc, scratch);
  if (threadIdx.x == 0) *loss_out = acc[0] / static_cast<float>(batch);
}

}  // namespace

template <typename T>
void pointwise_loss_forward(PointwiseLoss loss, int64_t n, const T* x, const T* t, float* sum_out,
                            cudaStream_t stream) {
  if (n <= 0) {
    RG_KERNEL_CUDA_CHECK(cudaMemsetAsync(sum_out, 0, sizeof(float), stream));
    return;
  }
  segmented_sums(1, n, PointwiseTerms<T>{loss, x, t}, sum_out, stream);
}

template <typename T>
void pointwise_loss_backward(PointwiseLoss loss, int64_t n, const T* x, const T* t,
                             const float* grad_out, float scale, T* dx, T* dt,
                             cudaStream_t stream) {
  if (n <= 0 || (dx == nullptr && dt == nullptr)) return;
  pointwise_loss_backward_kernel<T>
      <<<grid_for(n), kThreads, 0, stream>>>(loss, n, x, t, grad_out, scale, dx, dt);
  RG_KERNEL_LAUNCH_CHECK("pointwise_loss_backward_kernel");
}

template <typename T>
void dice_sums(int64_t batch, int64_t per_sample, const T* p, const T* t, float* sums,
               cudaStream_t stream) {
  segmented_sums(batch, per_sample, DiceTerms<T>{p, t}, sums, stream);
}

void dice_loss_from_sums(int64_t batch, const float* sums, float smooth, float* loss_out,
                         cudaStream_t stream) {
  if (batch <= 0) {  // the mean of no samples: 0 rather than 0/0
    RG_KERNEL_CUDA_CHECK(cudaMemsetAsync(loss_out, 0, sizeof(float), stream));
    return;
  }
  dice_loss_kernel<<<1, kThreads, 0, stream>>>(batch, sums, smooth, loss_out);
  RG_KERNEL_LAUNCH_CHECK("dice_loss_kernel");
}

template <typename T>
void dice_backward(int64_t batch, int64_t per_sample, const T* p, const T* t, const float* sums,
                   float smooth, const float* grad_out, T* dp, T* dt, cudaStream_t stream) {
  if (batch <= 0 || per_sample <= 0 || (dp == nullptr && dt == nullptr)) return;
  const int64_t x_blocks =
      std::max<int64_t>(1, grid_for(per_sample) / std::min<int64_t>(batch, 64));
  const dim3 grid(static_cast<unsigned>(x_blocks),
                  static_cast<unsigned>(std::min<int64_t>(batch, 65535)));
  dice_backward_kernel<T>
      <<<grid, kThreads, 0, stream>>>(batch, per_sample, p, t, sums, smooth, grad_out, dp, dt);
  RG_KERNEL_LAUNCH_CHECK("dice_backward_kernel");
}

#define RG_INSTANTIATE(T)                                                                     \
  template void pointwise_loss_forward<T>(PointwiseLoss, int64_t, const T*, const T*, float*, \
                                          cudaStream_t);                                      \
  template void pointwise_loss_backward<T>(PointwiseLoss, int64_t, const T*, const T*,        \
                                           const float*, float, T*, T*, cudaStream_t);        \
  template void dice_sums<T>(int64_t, int64_t, const T*, const T*, float*, cudaStream_t);     \
  template void dice_backward<T>(int64_t, int64_t, const T*, const T*, const float*, float,   \
                                 const float*, T*, T*, cudaStream_t);
RG_INSTANTIATE(float)
RG_INSTANTIATE(bf16)
#undef RG_INSTANTIATE

}  // namespace rg::kernels::cuda
