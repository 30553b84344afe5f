// What the mpirun test programs share: checks that count failures and print them as FAIL lines
// (their CTests pass on "PASS" and fail on "FAIL"), the verdict over all ranks, a scratch
// directory named after rank 0's pid and the world size, which every rank learns, and main().
#pragma once

#include <unistd.h>

#include <cstdio>
#include <exception>
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

// shared_scratch_dir, emptied and filled by rank 0 with write(dir); every rank returns once the
// files exist (collective).
template <class Write>
std::filesystem::path shared_scratch_files(dist::Communicator& comm, const std::string& prefix, Write write) {
  const std::filesystem::path dir = shared_scratch_dir(comm, prefix);
  if (comm.rank() == 0) {
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    write(dir);
  }
  comm.barrier();
  return dir;
}

// Every rank's failures summed (collective); rank 0 prints PASS or FAIL with the count. Returns
// the exit code, the same on every rank.
inline int verdict(dist::Communicator& comm) {
  std::vector<double> total{static_cast<double>(failures())};
  comm.all_reduce_sum(total);
  if (comm.rank() == 0) {
    if (total[0] == 0) std::printf("PASS\n");
    else std::printf("FAIL: %g failure(s)\n", total[0]);
    std::fflush(stdout);
  }
  return total[0] == 0 ? 0 : 1;
}

// main() of an mpirun test program: `run(comm)` on the environment's communicator, where a rank
// that throws ends every rank (dist::run_or_abort); an error is printed with the program's name.
template <class Run>
int run_main(int argc, char** argv, const char* program, Run run) {
  auto comm = dist::init_from_environment(argc, argv);
  try {
    return dist::run_or_abort(*comm, 2, [&] { return run(*comm); });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", program, e.what());
    return 1;
  }
}

}  // namespace rg::mpi_check
