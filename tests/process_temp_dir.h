// A scratch folder per test process: temp/rg_<name>_<pid>, emptied the first time the process
// asks for it. Process ids are reused (pid_max is 32768 on Debian), and a folder left by an
// earlier process with the same id would otherwise hold its run directories, which training
// refuses to overwrite: a failure that depends on which tests ran on the machine before.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <mutex>
#include <set>
#include <string>

namespace rg::test {

inline std::filesystem::path process_temp_dir(const std::string& name) {
  static std::mutex mutex;
  static std::set<std::string> emptied;
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("rg_" + name + "_" + std::to_string(::getpid()));
  std::lock_guard<std::mutex> lock(mutex);
  if (emptied.insert(name).second) std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace rg::test
