// Safetensors checkpoints: round trips, validation errors naming the file, module state, and
// atomic writes.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "engine/checkpoint.h"
#include "engine/roentgen.h"

namespace rg {
namespace {

namespace fs = std::filesystem;

class Checkpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("rg_ckpt_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::vector<std::string> listing() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
  static std::string read(const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
  }
  static void write(const std::string& p, const std::string& bytes) {
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  // A file with a hand-written header and `data_bytes` zero bytes of data.
  static std::string make_file(const std::string& header, size_t data_bytes) {
    std::string out(8, '\0');
    const uint64_t n = header.size();
    std::memcpy(out.data(), &n, 8);
    return out + header + std::string(data_bytes, '\0');
  }
  void expect_load_error(const std::string& p, const std::string& fragment) {
    try {
      load_safetensors(p);
      ADD_FAILURE() << "expected an error containing '" << fragment << "'";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(p), std::string::npos) << msg;  // names the file
      EXPECT_NE(msg.find(fragment), std::string::npos) << msg;
    }
  }
  fs::path dir_;
};

Tensor counting(const Shape& shape, DType dtype) {
  std::vector<double> v(static_cast<size_t>(shape_numel(shape)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>(static_cast<int>(i % 200) - 50) * 0.5;
  if (dtype == DType::U8 || dtype == DType::I32) {
    for (auto& x : v) x = std::abs(std::round(x));
  }
  return Tensor::from_vector(v, shape, DType::F64).to(dtype);
}

TEST_F(Checkpoint, RoundTripEveryDtypeAndShape) {
  NamedTensors tensors;
  const std::vector<DType> dtypes = {DType::F32, DType::F64, DType::BF16, DType::F16, DType::I32, DType::U8};
  const std::vector<Shape> shapes = {{}, {7}, {3, 5}, {2, 3, 4, 5}, {2, 1, 3, 2, 2}, {0, 4}};
  for (DType dt : dtypes) {
    for (size_t s = 0; s < shapes.size(); ++s) {
      tensors.emplace_back(std::string(dtype_name(dt)) + "/" + std::to_string(s), counting(shapes[s], dt));
    }
  }
  // A non-contiguous view is written as its logical values.
  Tensor base = counting({4, 6}, DType::F32);
  tensors.emplace_back("transposed", base.permute({1, 0}));
  const std::map<std::string, std::string> meta = {{"config", "{\"ngf\": 64}"}, {"step", "12"}};
  const std::string p = path("all.safetensors");
  save_safetensors(p, tensors, meta);

  SafetensorsFile f = load_safetensors(p);
  EXPECT_EQ(f.metadata, meta);
  EXPECT_TRUE(f.raw.empty());
  ASSERT_EQ(f.tensors.size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& [name, want] = tensors[i];
    const auto& [got_name, got] = f.tensors[i];  // data-offset order = write order
    EXPECT_EQ(got_name, name);
    EXPECT_EQ(got.dtype(), want.dtype()) << name;
    EXPECT_EQ(got.shape(), want.shape()) << name;
    EXPECT_EQ(got.to_vector<double>(), want.to_vector<double>()) << name;
  }
  // The on-disk layout: header length, JSON, 8-byte aligned data, safetensors dtype names.
  const std::string bytes = read(p);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  const std::string header = bytes.substr(8, n);
  EXPECT_NE(header.find("\"__metadata__\""), std::string::npos);
  EXPECT_NE(header.find("\"BF16\""), std::string::npos);
  EXPECT_NE(header.find("\"U8\""), std::string::npos);
  // f32 [7] tensor bytes are plain little-endian floats.
  EXPECT_NE(header.find("\"f32/1\":{\"dtype\":\"F32\",\"shape\":[7],\"data_offsets\":[4,32]}"),
            std::string::npos) << header;
  float first;
  std::memcpy(&first, bytes.data() + 8 + n + 4, 4);
  EXPECT_EQ(first, -25.0f);
}

TEST_F(Checkpoint, RawI64Entries) {
  const std::string p = path("raw.safetensors");
  save_safetensors(p, {{"w", Tensor::ones({2})}}, {},
                   {{"count", raw_i64({42}, {})}, {"v", raw_i64({-1, 5, 7}, {3})}});
  SafetensorsFile f = load_safetensors(p);
  ASSERT_EQ(f.tensors.size(), 1u);
  ASSERT_EQ(f.raw.size(), 2u);
  EXPECT_EQ(f.raw[0].first, "count");
  EXPECT_EQ(f.raw[0].second.dtype, "I64");
  EXPECT_EQ(f.raw[0].second.shape, Shape{});
  EXPECT_EQ(raw_i64_values(f.raw[0].second), std::vector<int64_t>{42});
  EXPECT_EQ(raw_i64_values(f.raw[1].second), (std::vector<int64_t>{-1, 5, 7}));
  EXPECT_THROW(save_safetensors(p, {}, {}, {{"x", RawTensor{"I64", {2}, std::vector<uint8_t>(8)}}}), Error);
  EXPECT_THROW(save_safetensors(p, {}, {}, {{"x", RawTensor{"Q7", {1}, std::vector<uint8_t>(1)}}}), Error);
}

TEST_F(Checkpoint, ModuleStateRoundTrip) {
  auto make = [](uint64_t seed) {
    auto net = std::make_shared<nn::Sequential>();
    Generator gen(seed);
    net->push_back(std::make_shared<nn::Conv2d>(2, 3, nn::ConvOptions{.kernel = 3, .padding = 1}, gen));
    net->push_back(std::make_shared<nn::BatchNorm2d>(3));
    net->push_back(std::make_shared<nn::ConvTranspose2d>(3, 1, nn::ConvOptions{.kernel = 4, .stride = 2, .padding = 1}, gen));
    return net;
  };
  auto a = make(1);
  auto b = make(2);
  // Give the BN running statistics non-default values.
  Generator gen(3);
  Tensor x = Tensor::empty({2, 4, 4, 2});
  normal_(x, 0.0, 1.0, gen);
  (*a)(x);
  const std::string p = path("net.safetensors");
  save_safetensors(p, module_state(*a, "G."), {{"config", "{}"}});
  SafetensorsFile f = load_safetensors(p);
  EXPECT_EQ(f.tensors.size(), 6u + 2u);  // conv, BN, convT weight+bias; BN running stats
  EXPECT_EQ(f.tensors[0].first, "G.0.weight");
  // Keep the parameter handles: loading copies in place, so an optimizer's references stay valid.
  const Tensor w_before = b->named_parameters()[0].second;
  load_module_state(*b, f.tensors, "G.");
  EXPECT_TRUE(b->named_parameters()[0].second.same(w_before));
  for (const auto& [name, t] : b->named_parameters()) EXPECT_TRUE(t.requires_grad()) << name;
  a->eval();
  b->eval();
  EXPECT_EQ((*a)(x).to_vector<float>(), (*b)(x).to_vector<float>());
  const auto sa = module_state(*a), sb = module_state(*b);
  for (size_t i = 0; i < sa.size(); ++i) {
    EXPECT_EQ(sa[i].first, sb[i].first);
    EXPECT_EQ(sa[i].second.to_vector<float>(), sb[i].second.to_vector<float>()) << sa[i].first;
    EXPECT_FALSE(sa[i].second.requires_grad());  // detached
  }
  // Entries outside the prefix are ignored; a file may hold several modules.
  NamedTensors two = module_state(*a, "G.");
  for (auto& e : module_state(*a, "D.")) two.push_back(e);
  EXPECT_NO_THROW(load_module_state(*b, two, "D."));
}

TEST_F(Checkpoint, ModuleStateMismatchesAreListed) {
  auto net = std::make_shared<nn::Sequential>();
  net->push_back(std::make_shared<nn::Conv2d>(2, 3, nn::ConvOptions{.kernel = 3}));
  net->push_back(std::make_shared<nn::BatchNorm2d>(3));
  NamedTensors state = module_state(*net);
  const Tensor before = net->named_parameters()[0].second.clone();
  NamedTensors bad;
  for (auto& [n, t] : state) {
    if (n == "1.running_var") continue;                        // missing
    if (n == "0.bias") bad.emplace_back(n, Tensor::zeros({4}));  // wrong shape
    else bad.emplace_back(n, Tensor::zeros(t.shape()));
  }
  bad.emplace_back("2.weight", Tensor::zeros({1}));  // unexpected
  try {
    load_module_state(*net, bad);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("missing [1.running_var]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("unexpected [2.weight]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("0.bias (module [3], given [4])"), std::string::npos) << msg;
  }
  // Nothing was copied.
  EXPECT_EQ(net->named_parameters()[0].second.to_vector<float>(), before.to_vector<float>());
}

TEST_F(Checkpoint, CorruptFilesNameTheFileAndTheProblem) {
  const std::string good = path("good.safetensors");
  save_safetensors(good, {{"a", Tensor::ones({4})}, {"b", Tensor::ones({2, 2})}});
  const std::string bytes = read(good);
  const std::string p = path("bad.safetensors");

  write(p, bytes.substr(0, bytes.size() - 3));
  expect_load_error(p, "run past the data section");
  write(p, bytes.substr(0, 5));
  expect_load_error(p, "shorter than the 8-byte header length");
  {
    std::string b = bytes;
    const uint64_t huge = 1ull << 40;
    std::memcpy(b.data(), &huge, 8);
    write(p, b);
    expect_load_error(p, "header length 1099511627776 exceeds");
  }
  write(p, make_file("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], ", 4));
  expect_load_error(p, "not valid JSON");
  write(p, make_file("[1, 2]", 0));
  expect_load_error(p, "not a JSON object");
  write(p, make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4));
  expect_load_error(p, "run past the data section of 4 bytes");
  write(p, make_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8));
  expect_load_error(p, "needs 12 bytes");
  write(p, make_file(R"({"a":{"dtype":"F17","shape":[2],"data_offsets":[0,8]}})", 8));
  expect_load_error(p, "unknown dtype 'F17'");
  write(p, make_file(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8));
  expect_load_error(p, "not a non-negative integer");
  write(p, make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                     R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12));
  expect_load_error(p, "overlaps tensor 'a'");
  write(p, make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8));
  expect_load_error(p, "belong to no tensor");
  write(p, make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 8));
  expect_load_error(p, "trailing bytes");
  write(p, make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", 8));
  expect_load_error(p, "reversed");
  write(p, make_file(R"({"__metadata__":{"k":3}})", 0));
  expect_load_error(p, "not a string");
  expect_load_error(path("missing.safetensors"), "cannot open");
}

TEST_F(Checkpoint, FailedWritesLeaveTheOldFileAndNoTemporaries) {
  const std::string p = path("model.safetensors");
  save_safetensors(p, {{"w", Tensor::full({3}, 2.0)}});
  const std::string before = read(p);
  // Invalid input: nothing is written.
  EXPECT_THROW(save_safetensors(p, {{"w", Tensor::ones({3})}, {"w", Tensor::ones({3})}}), Error);
  EXPECT_THROW(save_safetensors(p, {{"u", Tensor()}}), Error);
  EXPECT_THROW(save_safetensors(p, {{"__metadata__", Tensor::ones({1})}}), Error);
  EXPECT_EQ(read(p), before);
  // A directory that does not exist (and cannot be created by us).
  try {
    save_safetensors(path("no/such/dir/x.safetensors"), {{"w", Tensor::ones({1})}});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no/such/dir/x.safetensors"), std::string::npos) << e.what();
  }
  // The rename fails (the target is a non-empty directory) after the temporary was written:
  // the temporary is removed and the directory is untouched.
  fs::create_directories(path("taken/inner"));
  EXPECT_THROW(save_safetensors(path("taken"), {{"w", Tensor::ones({1})}}), Error);
  EXPECT_THROW(write_file_atomic(path("taken"), "{}"), Error);
  EXPECT_TRUE(fs::is_directory(path("taken/inner")));
  EXPECT_EQ(listing(), (std::vector<std::string>{"model.safetensors", "taken"}));
  EXPECT_EQ(read(p), before);
  EXPECT_EQ(load_safetensors(p).tensors[0].second.to_vector<float>(), (std::vector<float>{2, 2, 2}));

  // A successful overwrite replaces the file and leaves nothing else behind.
  save_safetensors(p, {{"w", Tensor::full({3}, 5.0)}});
  EXPECT_EQ(load_safetensors(p).tensors[0].second.to_vector<float>(), (std::vector<float>{5, 5, 5}));
  write_file_atomic(path("side.json"), "{\"ok\": true}\n");
  EXPECT_EQ(read(path("side.json")), "{\"ok\": true}\n");
  write_file_atomic(path("side.json"), "");
  EXPECT_EQ(read(path("side.json")), "");
  EXPECT_EQ(listing(), (std::vector<std::string>{"model.safetensors", "side.json", "taken"}));
}

}  // namespace
}  // namespace rg
