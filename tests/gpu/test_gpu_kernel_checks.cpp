// The error handling shared by the CUDA kernels (kernels/cuda/common.h): a launch check reports
// the error of its own launch, once, and does not keep blaming later kernels for it.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <stdexcept>

#include "kernels/cuda/common.h"
#include "tests/gpu/gpu_test_util.h"

namespace {

void launch_check() { RG_KERNEL_LAUNCH_CHECK("test_kernel"); }

TEST(GpuKernelChecks, LaunchCheckConsumesTheErrorItReports) {
  RG_SKIP_WITHOUT_GPU();
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  // A failed runtime call leaves its error behind, like a failed launch.
  int count = 0;
  ASSERT_EQ(cudaGetDeviceCount(&count), cudaSuccess);
  ASSERT_NE(cudaSetDevice(count + 7), cudaSuccess);
  EXPECT_THROW(launch_check(), std::runtime_error);
  // Reported once: the next check (a later, good launch) passes.
  EXPECT_NO_THROW(launch_check());
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

}  // namespace
