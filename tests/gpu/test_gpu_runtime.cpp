// The CUDA runtime layer: the caching allocator behind device tensors, host<->device copies,
// current streams and guards, events, and the out-of-memory message.
#include <cuda_runtime_api.h>

#include <string>
#include <thread>
#include <vector>

#include "engine/allocator.h"
#include "engine/cuda/runtime.h"
#include "engine/error.h"
#include "engine/tensor.h"
#include "tests/gpu/gpu_test_util.h"

namespace rg {
namespace {

using gpu_test::random_floats;

TEST(GpuRuntime, DeviceTensorsReuseCachedMemory) {
  RG_SKIP_WITHOUT_GPU();
  Allocator& allocator = cuda_allocator(0);
  const size_t in_use_before = allocator.stats().in_use;
  auto one_step = [] {
    // A large activation, a mid-size one and small temporaries, freed in a different order.
    Tensor big = Tensor::empty({16, 128, 128, 64}, DType::F32, Device::cuda(0));  // 64 MiB
    Tensor mid = Tensor::empty({1000, 1000}, DType::F32, Device::cuda(0));
    for (int i = 0; i < 5; ++i) {
      Tensor tmp = Tensor::empty({7, 33 + i}, DType::BF16, Device::cuda(0));
    }
    big = Tensor();
    Tensor again = Tensor::empty({16, 128, 128, 32}, DType::F32, Device::cuda(0));
  };
  one_step();  // the first step may need fresh segments
  const size_t raw_after_first = allocator.stats().raw_allocations;
  for (int step = 0; step < 20; ++step) one_step();
  EXPECT_EQ(allocator.stats().raw_allocations, raw_after_first);
  EXPECT_EQ(allocator.stats().in_use, in_use_before);
  EXPECT_GE(allocator.stats().peak, size_t{64} << 20);
}

TEST(GpuRuntime, HostDeviceRoundTrip) {
  RG_SKIP_WITHOUT_GPU();
  const std::vector<float> values = random_floats(3 * 5 * 7 * 11, 101);
  Tensor host = Tensor::from_vector(values, {3, 5, 7, 11});
  Tensor device = host.to(Device::cuda(0));
  EXPECT_TRUE(device.device().is_cuda());
  Tensor copy = device.clone();  // device to device, on the current stream
  EXPECT_EQ(copy.to(Device::cpu()).to_vector<float>(), values);

  // Through page-locked host memory both ways.
  Tensor pinned = Tensor::empty_pinned({3, 5, 7, 11});
  pinned.copy_(host);
  Tensor from_pinned = Tensor::empty({3, 5, 7, 11}, DType::F32, Device::cuda(0));
  from_pinned.copy_(pinned);
  Tensor back = Tensor::empty_pinned({3, 5, 7, 11});
  back.copy_(from_pinned);
  EXPECT_EQ(back.to_vector<float>(), values);

  // A single element and an odd size (not a multiple of the allocator's rounding).
  Tensor one = Tensor::from_vector(std::vector<float>{3.5f}, {1}).to(Device::cuda(0));
  EXPECT_EQ(one.item(), 3.5);
}

TEST(GpuRuntime, StreamGuardSetsAndRestoresTheCurrentStream) {
  RG_SKIP_WITHOUT_GPU();
  cudaStream_t engine_stream = cuda::current_stream(0);
  ASSERT_NE(engine_stream, nullptr) << "the engine must not default to the legacy stream";
  unsigned int flags = 0;
  ASSERT_EQ(cudaStreamGetFlags(engine_stream, &flags), cudaSuccess);
  EXPECT_EQ(flags & cudaStreamNonBlocking, static_cast<unsigned int>(cudaStreamNonBlocking));
  {
    cuda::Stream side(0);
    {
      cuda::StreamGuard guard(0, side.get());
      EXPECT_EQ(cuda::current_stream(0), side.get());
      // Allocation and copies follow the guarded stream.
      const std::vector<float> values = random_floats(4097, 102);
      Tensor t = Tensor::from_vector(values, {4097}).to(Device::cuda(0));
      EXPECT_EQ(t.to(Device::cpu()).to_vector<float>(), values);
      // Another thread is not affected and starts on the engine's stream.
      cudaStream_t seen_by_other_thread = nullptr;
      std::thread([&] { seen_by_other_thread = cuda::current_stream(0); }).join();
      EXPECT_EQ(seen_by_other_thread, engine_stream);
    }
    EXPECT_EQ(cuda::current_stream(0), engine_stream);
    cuda::set_current_stream(0, side.get());
    EXPECT_EQ(cuda::current_stream(0), side.get());
    cuda::set_current_stream(0, nullptr);  // back to the engine's stream
    EXPECT_EQ(cuda::current_stream(0), engine_stream);
  }
  EXPECT_THROW(cuda::current_stream(-1), Error);
  EXPECT_THROW(cuda::current_stream(1 << 20), Error);
}

TEST(GpuRuntime, EventsTimeAndOrderWork) {
  RG_SKIP_WITHOUT_GPU();
  cudaStream_t stream = cuda::current_stream(0);
  const size_t n = size_t{32} << 20;  // 128 MiB of floats
  Tensor a = Tensor::empty({static_cast<int64_t>(n)}, DType::F32, Device::cuda(0));
  Tensor b = Tensor::empty({static_cast<int64_t>(n)}, DType::F32, Device::cuda(0));
  ASSERT_EQ(cudaMemsetAsync(a.raw_data(), 0, a.nbytes(), stream), cudaSuccess);
  cuda::Event start(true), stop(true);
  start.record(stream);
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(
        cudaMemcpyAsync(b.raw_data(), a.raw_data(), a.nbytes(), cudaMemcpyDeviceToDevice, stream),
        cudaSuccess);
  }
  stop.record(stream);
  stop.synchronize();
  EXPECT_GT(stop.elapsed_ms(start), 0.f);

  // A second stream waits for the first one's event before reading what it wrote.
  cuda::Stream reader(0);
  ASSERT_EQ(cudaMemsetAsync(a.raw_data(), 0x3F, a.nbytes(), stream), cudaSuccess);
  cuda::Event written;
  written.record(stream);
  written.wait(reader.get());
  std::vector<unsigned char> host(4096);
  const size_t tail = a.nbytes() - host.size();
  ASSERT_EQ(cudaMemcpyAsync(host.data(), static_cast<char*>(a.raw_data()) + tail, host.size(),
                            cudaMemcpyDeviceToHost, reader.get()),
            cudaSuccess);
  reader.synchronize();
  for (unsigned char byte : host) ASSERT_EQ(byte, 0x3F);
  cuda::synchronize_current_stream(0);
}

TEST(GpuRuntime, OutOfMemoryNamesTheRequest) {
  RG_SKIP_WITHOUT_GPU();
  Allocator& allocator = cuda_allocator(0);
  const size_t in_use_before = allocator.stats().in_use;
  try {
    Tensor t = Tensor::empty({int64_t{1} << 38}, DType::F32, Device::cuda(0));  // 1 TiB
    FAIL() << "a 1 TiB allocation succeeded";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("out of memory on cuda:0"), std::string::npos) << msg;
    EXPECT_NE(msg.find("1099511627776 bytes (1.00 TiB)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("in use by tensors"), std::string::npos) << msg;
    EXPECT_NE(msg.find("cached"), std::string::npos) << msg;
    EXPECT_NE(msg.find("peak"), std::string::npos) << msg;
  }
  // Nothing leaked, no error left behind, and the device still allocates.
  EXPECT_EQ(allocator.stats().in_use, in_use_before);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  Tensor ok = Tensor::full({1024}, 2.0, DType::F32, Device::cuda(0));
  EXPECT_EQ(ok.to(Device::cpu()).to_vector<float>(), std::vector<float>(1024, 2.f));
}

TEST(GpuRuntime, EmptyCacheReturnsFreeSegments) {
  RG_SKIP_WITHOUT_GPU();
  Allocator& allocator = cuda_allocator(0);
  { Tensor t = Tensor::empty({int64_t{16} << 20}, DType::F32, Device::cuda(0)); }  // 64 MiB
  const AllocatorStats before = allocator.stats();
  EXPECT_GE(before.cached, size_t{64} << 20);
  cuda_empty_cache(0);
  const AllocatorStats after = allocator.stats();
  EXPECT_LE(after.cached + (size_t{64} << 20), before.cached);
  EXPECT_EQ(after.in_use, before.in_use);
}

}  // namespace
}  // namespace rg
