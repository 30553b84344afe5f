// Helpers for the format tests: a unique temporary directory removed at the end of each test,
// and little byte-level writers for hand-made files.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engine/error.h"

namespace rg::data::testing {

class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = info ? std::string(info->test_suite_name()) + "_" + info->name() : "x";
    for (auto& c : name)
      if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
    path_ = std::filesystem::temp_directory_path() /
            ("rg_data_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" + name);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::string str() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

inline void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

inline std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Byte buffer with explicit-endianness stores at given offsets.
class Bytes {
 public:
  explicit Bytes(size_t n = 0, bool big_endian = false) : b_(n, 0), big_(big_endian) {}
  template <typename T>
  void put(size_t off, T v) {
    if (off + sizeof(T) > b_.size()) b_.resize(off + sizeof(T), 0);
    uint8_t tmp[sizeof(T)];
    std::memcpy(tmp, &v, sizeof(T));
    const bool host_big = std::endian::native == std::endian::big;
    if (big_ != host_big)
      for (size_t a = 0, z = sizeof(T) - 1; a < z; ++a, --z) std::swap(tmp[a], tmp[z]);
    std::memcpy(b_.data() + off, tmp, sizeof(T));
  }
  void put_str(size_t off, const char* s, size_t n) {
    if (off + n > b_.size()) b_.resize(off + n, 0);
    std::memcpy(b_.data() + off, s, n);
  }
  template <typename T>
  void append(T v) { put<T>(b_.size(), v); }
  std::vector<uint8_t>& vec() { return b_; }
  size_t size() const { return b_.size(); }

 private:
  std::vector<uint8_t> b_;
  bool big_;
};

// Expects `fn` to throw rg::Error whose message contains every one of `parts`.
template <typename Fn>
void expect_error(Fn&& fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "expected rg::Error";
  } catch (const rg::Error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << "message: " << msg << "\nmissing: " << p;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected rg::Error, got another exception: " << e.what();
  }
}

}  // namespace rg::data::testing
