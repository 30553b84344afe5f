// The NCCL communicator at world size 1 (a process not started by mpirun: the ncclUniqueId is
// drawn locally and NCCL runs with one rank). Collectives must leave values unchanged, run
// after the work already on the caller's stream, and order the caller's stream after them
// without blocking the host; a collective that never completes ends the process through the
// watchdog with a message naming it.
#include <cuda_runtime_api.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <thread>
#include <vector>

#include "engine/autograd.h"
#include "engine/cuda/runtime.h"
#include "engine/dist/communicator.h"
#include "engine/dist/data_parallel.h"
#include "engine/dist/nccl_communicator.h"
#include "engine/ops/ops.h"
#include "engine/tensor.h"
#include "tests/gpu/gpu_test_util.h"

namespace rg {
namespace {

using gpu_test::random_floats;
using Clock = std::chrono::steady_clock;

dist::LocalCommunicator& host() {
  static dist::LocalCommunicator local;
  return local;
}

// One communicator for the tests of this binary (creating NCCL communicators is slow),
// destroyed after the last test, before the CUDA runtime shuts down.
std::unique_ptr<dist::NcclCommunicator> g_comm;

class NcclEnvironment : public ::testing::Environment {
 public:
  void TearDown() override { g_comm.reset(); }
};
const bool g_environment_registered =
    (::testing::AddGlobalTestEnvironment(new NcclEnvironment), true);

dist::NcclCommunicator& nccl() {
  if (!g_comm) g_comm = std::make_unique<dist::NcclCommunicator>(host(), 0);
  return *g_comm;
}

// Blocks a stream for `ms` milliseconds from the host (a host function is stream work).
void hold_stream(cudaStream_t stream, int ms) {
  auto* duration = new int(ms);
  const cudaError_t err = cudaLaunchHostFunc(
      stream,
      [](void* p) {
        const int* d = static_cast<int*>(p);
        std::this_thread::sleep_for(std::chrono::milliseconds(*d));
        delete d;
      },
      duration);
  ASSERT_EQ(err, cudaSuccess) << cudaGetErrorString(err);
}

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

TEST(GpuNccl, WorldOfOneRank) {
  RG_SKIP_WITHOUT_GPU();
  dist::NcclCommunicator& comm = nccl();
  EXPECT_EQ(comm.name(), "nccl");
  EXPECT_EQ(comm.world_size(), 1);
  EXPECT_EQ(comm.rank(), 0);
  EXPECT_EQ(comm.device(), 0);
  EXPECT_TRUE(comm.supports(Device::cpu()));
  EXPECT_TRUE(comm.supports(Device::cuda(0)));
  EXPECT_FALSE(comm.supports(Device::cuda(1)));
  EXPECT_GT(comm.timeout_s(), 0.0);
  comm.check_health();
  comm.barrier();
  // make_device_communicator gives NCCL for a GPU and the host itself for the CPU.
  EXPECT_EQ(dist::make_device_communicator(host(), Device::cpu()).get(), &host());
}

TEST(GpuNccl, AllReduceOfOneRankLeavesValuesUnchanged) {
  RG_SKIP_WITHOUT_GPU();
  dist::NcclCommunicator& comm = nccl();
  for (DType dtype : {DType::F32, DType::F64, DType::BF16, DType::F16}) {
    for (int64_t n : {int64_t{1}, int64_t{17}, int64_t{1} << 20, (int64_t{1} << 20) + 3}) {
      const std::vector<float> values = random_floats(static_cast<size_t>(n), 7 + n);
      const Tensor host_values = Tensor::from_vector(values, {n}, dtype);  // rounded to dtype
      Tensor t = host_values.to(Device::cuda(0));
      comm.all_reduce_sum(t);
      cuda::synchronize_current_stream(0);
      EXPECT_EQ(t.to(Device::cpu()).to_vector<double>(), host_values.to_vector<double>())
          << dtype_name(dtype) << " n=" << n;
      Tensor u = host_values.to(Device::cuda(0));
      auto pending = comm.start_all_reduce_sum(u);
      pending->wait();
      pending->wait();  // idempotent
      cuda::synchronize_current_stream(0);
      EXPECT_TRUE(pending->test());
      EXPECT_EQ(u.to(Device::cpu()).to_vector<double>(), host_values.to_vector<double>())
          << dtype_name(dtype) << " n=" << n << " (start + wait)";
    }
  }
  // CPU tensors and host values go through the host communicator.
  Tensor cpu = Tensor::from_vector(std::vector<float>{1.5f, -2.0f}, {2});
  comm.all_reduce_sum(cpu);
  EXPECT_EQ(cpu.to_vector<float>(), (std::vector<float>{1.5f, -2.0f}));
  std::vector<double> scalars{3.25, -1.0};
  comm.all_reduce_sum(scalars);
  EXPECT_EQ(scalars, (std::vector<double>{3.25, -1.0}));
  // An empty tensor is fine; integers, strided views and undefined tensors are refused.
  Tensor empty = Tensor::empty({0}, DType::F32, Device::cuda(0));
  comm.all_reduce_sum(empty);
  Tensor ints = Tensor::empty({4}, DType::I32, Device::cuda(0));
  EXPECT_THROW(comm.all_reduce_sum(ints), Error);
  Tensor strided = Tensor::empty({4, 6}, DType::F32, Device::cuda(0)).slice(1, 0, 3);
  EXPECT_THROW(comm.all_reduce_sum(strided), Error);
  Tensor undefined;
  EXPECT_THROW(comm.all_reduce_sum(undefined), Error);
}

TEST(GpuNccl, BroadcastOfOneRankLeavesValuesUnchanged) {
  RG_SKIP_WITHOUT_GPU();
  dist::NcclCommunicator& comm = nccl();
  for (DType dtype : {DType::F32, DType::BF16, DType::U8}) {
    const std::vector<float> values = random_floats(1001, 3);
    std::vector<float> in_range(values.size());
    for (size_t i = 0; i < values.size(); ++i) in_range[i] = std::abs(values[i]) * 100.0f;
    const Tensor host_values = Tensor::from_vector(in_range, {1001}, dtype);
    Tensor t = host_values.to(Device::cuda(0));
    comm.broadcast(t, 0);
    cuda::synchronize_current_stream(0);
    EXPECT_EQ(t.to(Device::cpu()).to_vector<double>(), host_values.to_vector<double>())
        << dtype_name(dtype);
  }
  Tensor t = Tensor::zeros({3}, DType::F32, Device::cuda(0));
  EXPECT_THROW(comm.broadcast(t, 1), Error);  // no rank 1 in a world of one
}

TEST(GpuNccl, CollectiveRunsAfterTheCallersEarlierWork) {
  RG_SKIP_WITHOUT_GPU();
  dist::NcclCommunicator& comm = nccl();
  cuda::set_device(0);
  const cudaStream_t caller = cuda::current_stream(0);
  const int64_t n = 4096;
  const std::vector<float> before(n, 1.0f), after = random_floats(n, 11);
  Tensor t = Tensor::from_vector(before, {n}).to(Device::cuda(0));
  const Tensor source = Tensor::from_vector(after, {n}).to(Device::cuda(0));
  cuda::synchronize_current_stream(0);
  // The caller's stream: 300 ms of other work, then the tensor's final values.
  hold_stream(caller, 300);
  ASSERT_EQ(cudaMemcpyAsync(t.raw_data(), source.raw_data(), t.nbytes(), cudaMemcpyDeviceToDevice,
                            caller),
            cudaSuccess);
  const auto start = Clock::now();
  auto pending = comm.start_all_reduce_sum(t);
  EXPECT_LT(ms_since(start), 150.0) << "start_all_reduce_sum blocked the host";
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  // Still held back by the caller's stream: the collective waits for the copy before it.
  EXPECT_FALSE(pending->test());
  const auto wait_start = Clock::now();
  pending->wait();
  EXPECT_LT(ms_since(wait_start), 100.0) << "wait() synchronized the host";
  cuda::synchronize_current_stream(0);
  EXPECT_TRUE(pending->test());
  EXPECT_EQ(t.to(Device::cpu()).to_vector<float>(), after);
}

TEST(GpuNccl, WaitOrdersTheCallersStreamAfterTheCollective) {
  RG_SKIP_WITHOUT_GPU();
  dist::NcclCommunicator& comm = nccl();
  cuda::set_device(0);
  Tensor t = Tensor::from_vector(random_floats(1 << 16, 5), {1 << 16}).to(Device::cuda(0));
  cuda::synchronize_current_stream(0);
  // Hold the communicator's stream: the collective cannot finish for 300 ms.
  hold_stream(comm.stream(), 300);
  auto pending = comm.start_all_reduce_sum(t);
  pending->wait();  // returns at once; the caller's stream now waits for the collective
  cuda::Event marker;
  marker.record(cuda::current_stream(0));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(cudaEventQuery(marker.get()), cudaErrorNotReady)
      << "work enqueued after wait() ran before the collective finished";
  EXPECT_FALSE(pending->test());
  marker.synchronize();
  EXPECT_TRUE(pending->test());
  comm.check_health();
}

TEST(GpuNccl, GradientSyncOfOneRankKeepsGradients) {
  RG_SKIP_WITHOUT_GPU();
  dist::NcclCommunicator& comm = nccl();
  const std::vector<float> a = random_floats(300, 1), b = random_floats(41, 2);
  Tensor pa = Tensor::from_vector(a, {300}).to(Device::cuda(0));
  Tensor pb = Tensor::from_vector(b, {41}).to(Device::cuda(0));
  pa.set_requires_grad(true);
  pb.set_requires_grad(true);
  // Tiny buckets: one per parameter, both all-reduced during backward.
  dist::GradientSync sync({pa, pb}, comm, {.bucket_cap_mib = 1e-4});
  EXPECT_EQ(sync.bucket_count(), 2u);
  Tensor loss = add(sum(mul(pa, pa)), sum(mul(pb, 3.0)));
  loss.backward();
  sync.finish();
  cuda::synchronize_current_stream(0);
  const std::vector<float> ga = pa.grad().to(Device::cpu()).to_vector<float>();
  const std::vector<float> gb = pb.grad().to(Device::cpu()).to_vector<float>();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(ga[i], 2.0f * a[i]) << i;
  for (size_t i = 0; i < b.size(); ++i) EXPECT_EQ(gb[i], 3.0f) << i;
  EXPECT_EQ(sync.launches().size(), 2u);
}

TEST(GpuNccl, WatchdogEndsTheProcessWhenACollectiveHangs) {
  RG_SKIP_WITHOUT_GPU();
  // Re-executes this binary for the child: a forked CUDA context is unusable.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        dist::NcclCommunicator comm(host(), 0, {.timeout_s = 0.5, .abort_code = 3});
        Tensor t = Tensor::zeros({8}, DType::F32, Device::cuda(0));
        hold_stream(comm.stream(), 3000);  // the collective cannot complete for 3 s
        auto pending = comm.start_all_reduce_sum(t);
        std::this_thread::sleep_for(std::chrono::seconds(30));
        std::_Exit(99);  // the watchdog did not fire
      },
      ::testing::ExitedWithCode(3), "all_reduce_sum #0 .*did not complete within 0.5 s");
}

}  // namespace
}  // namespace rg
