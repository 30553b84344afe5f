#include "engine/checkpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <set>
#include <unordered_map>

#include "engine/autograd.h"

namespace rg {

static_assert(std::endian::native == std::endian::little,
              "safetensors I/O copies bytes as they are: a little-endian host is assumed");

namespace {

// Largest header we accept (the reference implementation uses the same 100 MB bound).
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

const char* safetensors_dtype(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F64: return "F64";
    case DType::BF16: return "BF16";
    case DType::F16: return "F16";
    case DType::I32: return "I32";
    case DType::U8: return "U8";
  }
  return "?";
}

// Element size of every dtype the format defines; 0 for unknown names.
size_t safetensors_dtype_size(const std::string& name) {
  static const std::unordered_map<std::string, size_t> sizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1},
      {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
      {"U32", 4},  {"F32", 4}, {"F64", 8}, {"I64", 8},     {"U64", 8}};
  auto it = sizes.find(name);
  return it == sizes.end() ? 0 : it->second;
}

bool engine_dtype(const std::string& name, DType& out) {
  static const std::unordered_map<std::string, DType> map = {
      {"F32", DType::F32}, {"F64", DType::F64}, {"BF16", DType::BF16},
      {"F16", DType::F16}, {"I32", DType::I32}, {"U8", DType::U8}};
  auto it = map.find(name);
  if (it == map.end()) return false;
  out = it->second;
  return true;
}

std::string errno_text() { return std::strerror(errno); }

// Writes everything `produce` emits through `write` into a temporary file next to `path`, then
// fsyncs and renames it over `path`. The temporary is removed on any failure.
void atomic_write(const std::string& path,
                  const std::function<void(const std::function<void(const void*, size_t)>&)>& produce) {
  RG_CHECK(!path.empty(), "write_file_atomic: empty path");
  namespace fs = std::filesystem;
  const fs::path target(path);
  std::string tmpl = path + ".tmp.XXXXXX";
  std::vector<char> name(tmpl.begin(), tmpl.end());
  name.push_back('\0');
  int fd = ::mkstemp(name.data());
  RG_CHECK(fd >= 0, "cannot write '", path, "': creating a temporary file in its directory failed: ",
           errno_text());
  const std::string tmp(name.data());
  try {
    // mkstemp creates 0600; give the file the mode of the one it replaces, or rw-r--r--.
    struct stat st {};
    const mode_t mode = ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) ? (st.st_mode & 07777) : 0644;
    ::fchmod(fd, mode);
    auto write_all = [&](const void* data, size_t n) {
      const char* p = static_cast<const char*>(data);
      while (n > 0) {
        const size_t chunk = std::min<size_t>(n, size_t{1} << 30);
        const ssize_t w = ::write(fd, p, chunk);
        if (w < 0 && errno == EINTR) continue;
        RG_CHECK(w > 0, "cannot write '", path, "': writing ", tmp, " failed: ", errno_text());
        p += w;
        n -= static_cast<size_t>(w);
      }
    };
    produce(write_all);
    RG_CHECK(::fsync(fd) == 0, "cannot write '", path, "': fsync failed: ", errno_text());
    const int rc = ::close(fd);
    fd = -1;
    RG_CHECK(rc == 0, "cannot write '", path, "': close failed: ", errno_text());
    RG_CHECK(::rename(tmp.c_str(), path.c_str()) == 0, "cannot write '", path,
             "': renaming the temporary file over it failed: ", errno_text());
  } catch (...) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  // Make the rename itself durable (best effort: some file systems refuse fsync on directories).
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

struct Entry {
  std::string name;
  std::string dtype;
  Shape shape;
  const void* data = nullptr;
  size_t nbytes = 0;
};

}  // namespace

RawTensor raw_i64(const std::vector<int64_t>& values, const Shape& shape) {
  for (int64_t d : shape) RG_CHECK(d >= 0, "raw_i64: negative dimension in shape ", shape_str(shape));
  RG_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape), "raw_i64: ", values.size(),
           " values do not fill shape ", shape_str(shape));
  RawTensor r{"I64", shape, std::vector<uint8_t>(values.size() * 8)};
  if (!values.empty()) std::memcpy(r.bytes.data(), values.data(), r.bytes.size());
  return r;
}

std::vector<int64_t> raw_i64_values(const RawTensor& raw) {
  RG_CHECK(raw.dtype == "I64", "raw_i64_values: tensor has dtype ", raw.dtype, ", not I64");
  RG_CHECK(raw.bytes.size() % 8 == 0, "raw_i64_values: ", raw.bytes.size(), " bytes is not a whole number of I64");
  std::vector<int64_t> v(raw.bytes.size() / 8);
  if (!v.empty()) std::memcpy(v.data(), raw.bytes.data(), raw.bytes.size());
  return v;
}

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata, const NamedRawTensors& raw) {
  // Validate and stage everything before touching the file system.
  std::vector<Tensor> keep;  // host, contiguous copies kept alive while writing
  std::vector<Entry> entries;
  std::set<std::string> names;
  auto check_name = [&](const std::string& name) {
    RG_CHECK(!name.empty(), "save_safetensors '", path, "': empty tensor name");
    RG_CHECK(name != "__metadata__", "save_safetensors '", path, "': '__metadata__' is reserved");
    RG_CHECK(names.insert(name).second, "save_safetensors '", path, "': duplicate tensor name '", name, "'");
  };
  for (const auto& [name, t] : tensors) {
    check_name(name);
    RG_CHECK(t.defined(), "save_safetensors '", path, "': tensor '", name, "' is undefined");
    Tensor host = t.detach();
    if (!host.device().is_cpu()) host = host.to(Device::cpu());
    host = host.contiguous();
    keep.push_back(host);
    entries.push_back({name, safetensors_dtype(host.dtype()), host.shape(), host.raw_data(), host.nbytes()});
  }
  for (const auto& [name, r] : raw) {
    check_name(name);
    const size_t es = safetensors_dtype_size(r.dtype);
    RG_CHECK(es > 0, "save_safetensors '", path, "': tensor '", name, "' has unknown dtype '", r.dtype, "'");
    for (int64_t d : r.shape) {
      RG_CHECK(d >= 0, "save_safetensors '", path, "': tensor '", name, "' has shape ", shape_str(r.shape));
    }
    RG_CHECK(static_cast<size_t>(shape_numel(r.shape)) * es == r.bytes.size(), "save_safetensors '", path,
             "': tensor '", name, "' of dtype ", r.dtype, " and shape ", shape_str(r.shape), " needs ",
             static_cast<size_t>(shape_numel(r.shape)) * es, " bytes, has ", r.bytes.size());
    entries.push_back({name, r.dtype, r.shape, r.bytes.data(), r.bytes.size()});
  }

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = meta;
  }
  uint64_t offset = 0;
  for (const Entry& e : entries) {
    header[e.name] = {{"dtype", e.dtype},
                      {"shape", e.shape},
                      {"data_offsets", {offset, offset + e.nbytes}}};
    offset += e.nbytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keep the data section 8-byte aligned
  const uint64_t header_len = text.size();

  atomic_write(path, [&](const std::function<void(const void*, size_t)>& write) {
    write(&header_len, 8);
    write(text.data(), text.size());
    for (const Entry& e : entries) {
      if (e.nbytes > 0) write(e.data, e.nbytes);
    }
  });
}

bool has_tensor_prefix(const SafetensorsFile& file, const std::string& prefix) {
  return std::any_of(file.tensors.begin(), file.tensors.end(),
                     [&prefix](const auto& t) { return t.first.rfind(prefix, 0) == 0; });
}

SafetensorsFile load_safetensors(const std::string& path) {
  const std::string where = "load_safetensors '" + path + "': ";
  std::FILE* f = std::fopen(path.c_str(), "rb");
  RG_CHECK(f != nullptr, where, "cannot open: ", errno_text());
  struct Closer {
    std::FILE* f;
    ~Closer() { std::fclose(f); }
  } closer{f};
  std::error_code ec;
  const uint64_t file_size = std::filesystem::file_size(path, ec);
  RG_CHECK(!ec, where, "cannot read the file size: ", ec.message());
  RG_CHECK(file_size >= 8, where, "file is ", file_size, " bytes, shorter than the 8-byte header length");
  uint64_t header_len = 0;
  RG_CHECK(std::fread(&header_len, 8, 1, f) == 1, where, "cannot read the header length");
  RG_CHECK(header_len <= file_size - 8, where, "header length ", header_len, " exceeds the ",
           file_size - 8, " bytes that follow it (truncated or not a safetensors file)");
  RG_CHECK(header_len <= kMaxHeaderBytes, where, "header length ", header_len, " exceeds the limit of ",
           kMaxHeaderBytes, " bytes");
  std::string text(header_len, '\0');
  RG_CHECK(header_len == 0 || std::fread(text.data(), header_len, 1, f) == 1, where, "cannot read the ",
           header_len, "-byte header");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    RG_FAIL(where, "header is not valid JSON: ", e.what());
  }
  RG_CHECK(header.is_object(), where, "header is not a JSON object");

  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = file_size - data_start;
  SafetensorsFile out;
  struct Item {
    std::string name, dtype;
    Shape shape;
    uint64_t begin, end;
  };
  std::vector<Item> items;
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      RG_CHECK(value.is_object(), where, "__metadata__ is not a JSON object");
      for (const auto& [k, v] : value.items()) {
        RG_CHECK(v.is_string(), where, "__metadata__ value of '", k, "' is not a string");
        out.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    const std::string what = where + "tensor '" + name + "': ";
    RG_CHECK(value.is_object(), what, "entry is not a JSON object");
    for (const auto& [k, v] : value.items()) {
      (void)v;
      RG_CHECK(k == "dtype" || k == "shape" || k == "data_offsets", what, "unexpected key '", k, "'");
    }
    RG_CHECK(value.contains("dtype") && value["dtype"].is_string(), what, "missing or non-string dtype");
    Item item{name, value["dtype"].get<std::string>(), {}, 0, 0};
    const size_t es = safetensors_dtype_size(item.dtype);
    RG_CHECK(es > 0, what, "unknown dtype '", item.dtype, "'");
    RG_CHECK(value.contains("shape") && value["shape"].is_array(), what, "missing or non-array shape");
    uint64_t numel = 1;
    for (const auto& d : value["shape"]) {
      RG_CHECK(d.is_number_unsigned(), what, "shape ", value["shape"].dump(),
               " has an entry that is not a non-negative integer");
      const uint64_t dim = d.get<uint64_t>();
      RG_CHECK(dim <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) &&
                   (dim == 0 || numel <= std::numeric_limits<uint64_t>::max() / dim),
               what, "shape ", value["shape"].dump(), " is too large");
      numel *= dim;
      item.shape.push_back(static_cast<int64_t>(dim));
    }
    const auto& offs = value.contains("data_offsets") ? value["data_offsets"] : nlohmann::json();
    RG_CHECK(offs.is_array() && offs.size() == 2 && offs[0].is_number_unsigned() &&
                 offs[1].is_number_unsigned(),
             what, "data_offsets must be [begin, end] with non-negative integers");
    item.begin = offs[0].get<uint64_t>();
    item.end = offs[1].get<uint64_t>();
    RG_CHECK(item.begin <= item.end, what, "data_offsets [", item.begin, ", ", item.end, "] are reversed");
    RG_CHECK(item.end <= data_size, what, "data_offsets [", item.begin, ", ", item.end,
             "] run past the data section of ", data_size, " bytes (truncated file?)");
    RG_CHECK(numel <= std::numeric_limits<uint64_t>::max() / es && numel * es == item.end - item.begin,
             what, "shape ", shape_str(item.shape), " of ", item.dtype, " needs ", numel * es,
             " bytes but data_offsets [", item.begin, ", ", item.end, "] hold ", item.end - item.begin);
    items.push_back(std::move(item));
  }
  std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t covered = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    const Item& it = items[i];
    RG_CHECK(it.begin >= covered, where, "tensor '", it.name, "' (bytes [", it.begin, ", ", it.end,
             ")) overlaps tensor '", items[i - 1].name, "' (bytes [", items[i - 1].begin, ", ",
             items[i - 1].end, "))");
    RG_CHECK(it.begin == covered, where, "bytes [", covered, ", ", it.begin,
             ") of the data section belong to no tensor");
    covered = it.end;
  }
  RG_CHECK(covered == data_size, where, "the data section has ", data_size, " bytes but the tensors cover ",
           covered, " (trailing bytes)");

  for (const Item& it : items) {
    RG_CHECK(std::fseek(f, static_cast<long>(data_start + it.begin), SEEK_SET) == 0, where,
             "cannot seek to tensor '", it.name, "'");
    const size_t n = it.end - it.begin;
    DType dt;
    void* dst = nullptr;
    if (engine_dtype(it.dtype, dt)) {
      RG_CHECK(static_cast<int>(it.shape.size()) <= kMaxDims, where, "tensor '", it.name, "' has shape ",
               shape_str(it.shape), ": the engine holds at most ", kMaxDims, " dimensions");
      Tensor t = Tensor::empty(it.shape, dt);
      dst = n > 0 ? t.raw_data() : nullptr;
      out.tensors.emplace_back(it.name, t);
    } else {
      out.raw.emplace_back(it.name, RawTensor{it.dtype, it.shape, std::vector<uint8_t>(n)});
      dst = out.raw.back().second.bytes.data();
    }
    RG_CHECK(n == 0 || std::fread(dst, n, 1, f) == 1, where, "cannot read the ", n, " bytes of tensor '",
             it.name, "'");
  }
  return out;
}

NamedTensors module_state(const nn::Module& module, const std::string& prefix) {
  NamedTensors out;
  for (const auto& [name, t] : module.named_parameters()) out.emplace_back(prefix + name, t.detach());
  for (const auto& [name, t] : module.named_buffers()) out.emplace_back(prefix + name, t.detach());
  return out;
}

void load_module_state(nn::Module& module, const NamedTensors& tensors, const std::string& prefix) {
  std::unordered_map<std::string, const Tensor*> given;
  for (const auto& [name, t] : tensors) {
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    RG_CHECK(given.emplace(name.substr(prefix.size()), &t).second, "load_module_state: duplicate entry '",
             name, "'");
  }
  std::vector<std::pair<std::string, Tensor*>> slots = module.named_parameter_slots();
  for (auto& s : module.named_buffer_slots()) slots.push_back(s);

  std::vector<std::string> missing, mismatched, unexpected;
  std::set<std::string> used;
  for (const auto& [name, slot] : slots) {
    auto it = given.find(name);
    if (it == given.end()) {
      missing.push_back(prefix + name);
      continue;
    }
    used.insert(name);
    const Tensor& src = *it->second;
    if (!src.defined() || src.shape() != slot->shape()) {
      mismatched.push_back(prefix + name + " (module " + shape_str(slot->shape()) + ", given " +
                           (src.defined() ? shape_str(src.shape()) : std::string("undefined")) + ")");
    }
  }
  for (const auto& [name, t] : tensors) {
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    if (!used.count(name.substr(prefix.size()))) unexpected.push_back(name);
  }
  if (!missing.empty() || !mismatched.empty() || !unexpected.empty()) {
    auto list = [](const std::vector<std::string>& v) {
      std::string s;
      const size_t shown = std::min<size_t>(v.size(), 20);
      for (size_t i = 0; i < shown; ++i) s += (i ? ", " : "") + v[i];
      if (v.size() > shown) s += ", ... (" + std::to_string(v.size() - shown) + " more)";
      return s;
    };
    std::string msg = "load_module_state(" + module.type_name() + (prefix.empty() ? "" : ", prefix '" + prefix + "'") + "):";
    if (!missing.empty()) msg += " missing [" + list(missing) + "]";
    if (!unexpected.empty()) msg += " unexpected [" + list(unexpected) + "]";
    if (!mismatched.empty()) msg += " shape mismatch [" + list(mismatched) + "]";
    RG_FAIL(msg);
  }
  NoGradGuard no_grad;
  for (auto& [name, slot] : slots) slot->copy_(*given.at(name));
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  atomic_write(path, [&](const std::function<void(const void*, size_t)>& write) {
    if (!bytes.empty()) write(bytes.data(), bytes.size());
  });
}

}  // namespace rg
