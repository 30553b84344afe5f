// What the mpirun test programs share: checks that count failures and print them as FAIL lines
// (their CTests pass on "PASS" and fail on "FAIL"), and a scratch directory named after rank 0's
// pid and the world size, which every rank learns.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/dist/communicator.h"

namespace rg::mpi_check {

inline int& failures() {
  static int count = 0;
  return count;
}

inline void expect(bool ok, const std::string& what) {
  if (!ok) {
    std::printf("FAIL: %s\n", what.c_str());
    ++failures();
  }
}

// <temp>/<prefix>_<rank 0's pid>_<world size>; collective (every rank calls it).
inline std::filesystem::path shared_scratch_dir(dist::Communicator& comm, const std::string& prefix) {
  std::vector<double> pid{comm.rank() == 0 ? static_cast<double>(getpid()) : 0.0};
  comm.all_reduce_sum(pid);
  return std::filesystem::temp_directory_path() /
         (prefix + "_" + std::to_string(static_cast<long long>(pid[0])) + "_" + std::to_string(comm.world_size()));
}

}  // namespace rg::mpi_check
