#include "data/h5.h"

#include <algorithm>
#include <filesystem>
#include <mutex>
#include <sstream>

#include "engine/error.h"

namespace rg::data::h5 {

void Handle::reset() {
  if (id_ < 0) return;
  switch (H5Iget_type(id_)) {
    case H5I_FILE: H5Fclose(id_); break;
    case H5I_GROUP: H5Gclose(id_); break;
    case H5I_DATASET: H5Dclose(id_); break;
    case H5I_DATASPACE: H5Sclose(id_); break;
    case H5I_DATATYPE: H5Tclose(id_); break;
    case H5I_ATTR: H5Aclose(id_); break;
    case H5I_GENPROP_LST: H5Pclose(id_); break;
    default: H5Idec_ref(id_); break;
  }
  id_ = H5I_INVALID_HID;
}

void quiet() {
  static std::once_flag once;
  std::call_once(once, [] { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); });
}

Handle create_file(const std::string& path) {
  quiet();
  Handle f(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT));
  RG_CHECK(f.valid(), path, ": cannot create HDF5 file");
  return f;
}

Handle open_file_readonly(const std::string& path) {
  quiet();
  std::error_code ec;
  RG_CHECK(std::filesystem::exists(path, ec), path, ": no such file");
  RG_CHECK(!std::filesystem::is_directory(path, ec), path, ": is a directory, not an HDF5 file");
  const htri_t is = H5Fis_hdf5(path.c_str());
  RG_CHECK(is > 0, path, ": not an HDF5 file (bad signature or unreadable)");
  Handle f(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  RG_CHECK(f.valid(), path, ": cannot open HDF5 file (truncated or corrupt?)");
  return f;
}

Handle create_group(hid_t parent, const std::string& name, const std::string& file) {
  Handle g(H5Gcreate2(parent, name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  RG_CHECK(g.valid(), file, ": cannot create group ", name);
  return g;
}

Handle open_group(hid_t parent, const std::string& name, const std::string& file) {
  RG_CHECK(exists(parent, name), file, ": missing group '", name, "'");
  Handle g(H5Gopen2(parent, name.c_str(), H5P_DEFAULT));
  RG_CHECK(g.valid(), file, ": cannot open group '", name, "'");
  return g;
}

bool exists(hid_t parent, const std::string& name) {
  return H5Lexists(parent, name.c_str(), H5P_DEFAULT) > 0;
}

namespace {

void write_attr_raw(hid_t obj, const std::string& name, hid_t mem_type, hid_t file_type,
                    hid_t space, const void* data) {
  if (H5Aexists(obj, name.c_str()) > 0) H5Adelete(obj, name.c_str());
  Handle a(H5Acreate2(obj, name.c_str(), file_type, space, H5P_DEFAULT, H5P_DEFAULT));
  RG_CHECK(a.valid(), "HDF5: cannot create attribute ", name);
  if (H5Sget_simple_extent_type(space) == H5S_NULL) return;  // empty array: nothing to write
  RG_CHECK(H5Awrite(a.get(), mem_type, data) >= 0, "HDF5: cannot write attribute ", name);
}

Handle string_type(size_t len) {
  Handle t(H5Tcopy(H5T_C_S1));
  H5Tset_size(t.get(), std::max<size_t>(1, len));
  H5Tset_strpad(t.get(), H5T_STR_NULLTERM);
  H5Tset_cset(t.get(), H5T_CSET_UTF8);
  return t;
}

Handle vlen_string_type() {
  Handle t(H5Tcopy(H5T_C_S1));
  H5Tset_size(t.get(), H5T_VARIABLE);
  H5Tset_cset(t.get(), H5T_CSET_UTF8);
  return t;
}

template <typename T>
std::vector<T> read_attr_numbers(hid_t obj, const std::string& name, const std::string& file,
                                 hid_t mem_type) {
  RG_CHECK(H5Aexists(obj, name.c_str()) > 0, file, ": missing attribute '", name, "'");
  Handle a(H5Aopen(obj, name.c_str(), H5P_DEFAULT));
  Handle space(H5Aget_space(a.get()));
  const hssize_t n = H5Sget_simple_extent_npoints(space.get());
  RG_CHECK(n >= 0, file, ": bad attribute '", name, "'");
  Handle type(H5Aget_type(a.get()));
  RG_CHECK(H5Tget_class(type.get()) == H5T_INTEGER || H5Tget_class(type.get()) == H5T_FLOAT,
           file, ": attribute '", name, "' is not numeric");
  std::vector<T> out(static_cast<size_t>(n));
  if (n > 0)
    RG_CHECK(H5Aread(a.get(), mem_type, out.data()) >= 0, file, ": cannot read attribute '", name, "'");
  return out;
}

}  // namespace

void write_attr(hid_t obj, const std::string& name, const std::string& value) {
  Handle t = string_type(value.size() + 1);
  Handle space(H5Screate(H5S_SCALAR));
  write_attr_raw(obj, name, t.get(), t.get(), space.get(), value.c_str());
}

void write_attr(hid_t obj, const std::string& name, const std::vector<double>& values) {
  const hsize_t n = values.size();
  Handle space(n ? H5Screate_simple(1, &n, nullptr) : H5Screate(H5S_NULL));
  write_attr_raw(obj, name, H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, space.get(), values.data());
}

void write_attr(hid_t obj, const std::string& name, const std::vector<int64_t>& values) {
  const hsize_t n = values.size();
  Handle space(n ? H5Screate_simple(1, &n, nullptr) : H5Screate(H5S_NULL));
  write_attr_raw(obj, name, H5T_NATIVE_INT64, H5T_STD_I64LE, space.get(), values.data());
}

void write_attr(hid_t obj, const std::string& name, double value) {
  Handle space(H5Screate(H5S_SCALAR));
  write_attr_raw(obj, name, H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, space.get(), &value);
}

void write_attr(hid_t obj, const std::string& name, int64_t value) {
  Handle space(H5Screate(H5S_SCALAR));
  write_attr_raw(obj, name, H5T_NATIVE_INT64, H5T_STD_I64LE, space.get(), &value);
}

bool has_attr(hid_t obj, const std::string& name) { return H5Aexists(obj, name.c_str()) > 0; }

std::string read_attr_string(hid_t obj, const std::string& name, const std::string& file) {
  RG_CHECK(has_attr(obj, name), file, ": missing attribute '", name, "'");
  Handle a(H5Aopen(obj, name.c_str(), H5P_DEFAULT));
  Handle type(H5Aget_type(a.get()));
  RG_CHECK(H5Tget_class(type.get()) == H5T_STRING, file, ": attribute '", name, "' is not a string");
  if (H5Tis_variable_str(type.get()) > 0) {
    char* s = nullptr;
    Handle mt = vlen_string_type();
    RG_CHECK(H5Aread(a.get(), mt.get(), &s) >= 0, file, ": cannot read attribute '", name, "'");
    std::string out = s ? s : "";
    H5free_memory(s);
    return out;
  }
  const size_t len = H5Tget_size(type.get());
  std::string buf(len + 1, '\0');
  Handle mt = string_type(len + 1);
  H5Tset_size(mt.get(), len);
  RG_CHECK(H5Aread(a.get(), mt.get(), buf.data()) >= 0, file, ": cannot read attribute '", name, "'");
  buf.resize(std::char_traits<char>::length(buf.c_str()));
  return buf;
}

std::vector<double> read_attr_doubles(hid_t obj, const std::string& name, const std::string& file) {
  return read_attr_numbers<double>(obj, name, file, H5T_NATIVE_DOUBLE);
}

std::vector<int64_t> read_attr_ints(hid_t obj, const std::string& name, const std::string& file) {
  return read_attr_numbers<int64_t>(obj, name, file, H5T_NATIVE_INT64);
}

std::vector<std::pair<std::string, std::string>> all_attrs(hid_t obj) {
  std::vector<std::pair<std::string, std::string>> out;
  std::vector<std::string> names;
  hsize_t idx = 0;
  H5Aiterate2(obj, H5_INDEX_NAME, H5_ITER_INC, &idx,
              [](hid_t, const char* name, const H5A_info_t*, void* data) -> herr_t {
                static_cast<std::vector<std::string>*>(data)->emplace_back(name);
                return 0;
              },
              &names);
  for (const std::string& name : names) {
    Handle a(H5Aopen(obj, name.c_str(), H5P_DEFAULT));
    if (!a.valid()) continue;
    Handle type(H5Aget_type(a.get()));
    std::ostringstream os;
    const H5T_class_t cls = H5Tget_class(type.get());
    try {
      if (cls == H5T_STRING) {
        os << read_attr_string(obj, name, "");
      } else if (cls == H5T_INTEGER) {
        const auto v = read_attr_ints(obj, name, "");
        for (size_t k = 0; k < v.size(); ++k) os << (k ? ", " : "") << v[k];
      } else if (cls == H5T_FLOAT) {
        const auto v = read_attr_doubles(obj, name, "");
        for (size_t k = 0; k < v.size(); ++k) os << (k ? ", " : "") << v[k];
      } else {
        os << "(unsupported type)";
      }
    } catch (const rg::Error&) {
      os << "(unreadable)";
    }
    out.emplace_back(name, os.str());
  }
  return out;
}

RowWriter::RowWriter(hid_t parent, const std::string& name, hid_t mem_type, hid_t file_type,
                     const std::vector<hsize_t>& row_dims, int compression, const std::string& file)
    : mem_type_(mem_type), row_dims_(row_dims), what_(file + ": dataset " + name) {
  const int rank = static_cast<int>(row_dims.size()) + 1;
  std::vector<hsize_t> dims(rank, 0), maxdims(rank, H5S_UNLIMITED), chunk(rank, 1);
  for (size_t d = 0; d < row_dims.size(); ++d) {
    dims[d + 1] = maxdims[d + 1] = chunk[d + 1] = row_dims[d];
  }
  // Small rows (per-slice scalars) are chunked by many rows at a time.
  hsize_t row_elems = 1;
  for (hsize_t d : row_dims) row_elems *= d;
  if (row_elems < 4096) chunk[0] = std::max<hsize_t>(1, 4096 / row_elems);
  Handle space(H5Screate_simple(rank, dims.data(), maxdims.data()));
  Handle dcpl(H5Pcreate(H5P_DATASET_CREATE));
  H5Pset_chunk(dcpl.get(), rank, chunk.data());
  if (compression > 0) {
    H5Pset_shuffle(dcpl.get());
    H5Pset_deflate(dcpl.get(), static_cast<unsigned>(std::min(compression, 9)));
  }
  dset_ = Handle(H5Dcreate2(parent, name.c_str(), file_type, space.get(), H5P_DEFAULT, dcpl.get(),
                            H5P_DEFAULT));
  RG_CHECK(dset_.valid(), what_, ": cannot create");
}

void RowWriter::append(const void* data, hsize_t rows) {
  if (rows == 0) return;
  const int rank = static_cast<int>(row_dims_.size()) + 1;
  std::vector<hsize_t> dims(rank), start(rank, 0), count(rank);
  dims[0] = rows_ + rows;
  count[0] = rows;
  start[0] = rows_;
  for (size_t d = 0; d < row_dims_.size(); ++d) dims[d + 1] = count[d + 1] = row_dims_[d];
  RG_CHECK(H5Dset_extent(dset_.get(), dims.data()) >= 0, what_, ": cannot extend");
  Handle fspace(H5Dget_space(dset_.get()));
  H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr);
  Handle mspace(H5Screate_simple(rank, count.data(), nullptr));
  RG_CHECK(H5Dwrite(dset_.get(), mem_type_, mspace.get(), fspace.get(), H5P_DEFAULT, data) >= 0,
           what_, ": write failed (disk full?)");
  rows_ += rows;
}

void write_dataset(hid_t parent, const std::string& name, hid_t mem_type, hid_t file_type,
                   const std::vector<hsize_t>& dims, const void* data, const std::string& file) {
  bool empty = false;
  for (hsize_t d : dims) empty |= d == 0;
  Handle space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr));
  Handle d(H5Dcreate2(parent, name.c_str(), file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT,
                      H5P_DEFAULT));
  RG_CHECK(d.valid(), file, ": cannot create dataset ", name);
  if (!empty)
    RG_CHECK(H5Dwrite(d.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0, file,
             ": cannot write dataset ", name);
}

void write_strings(hid_t parent, const std::string& name, const std::vector<std::string>& values,
                   const std::string& file) {
  std::vector<const char*> ptrs;
  for (const auto& v : values) ptrs.push_back(v.c_str());
  Handle t = vlen_string_type();
  write_dataset(parent, name, t.get(), t.get(), {values.size()}, ptrs.data(), file);
}

std::vector<std::string> read_strings(hid_t parent, const std::string& name, const std::string& file) {
  Handle d = open_dataset(parent, name, file);
  const auto dims = dataset_dims(d.get(), file + ": dataset " + name);
  RG_CHECK(dims.size() == 1, file, ": dataset ", name, " is not 1-D");
  std::vector<char*> ptrs(dims[0], nullptr);
  Handle t = vlen_string_type();
  std::vector<std::string> out;
  if (dims[0] == 0) return out;
  Handle ftype(H5Dget_type(d.get()));
  RG_CHECK(H5Tget_class(ftype.get()) == H5T_STRING && H5Tis_variable_str(ftype.get()) > 0, file,
           ": dataset ", name, " is not a list of strings");
  RG_CHECK(H5Dread(d.get(), t.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()) >= 0, file,
           ": cannot read dataset ", name);
  for (char* p : ptrs) {
    out.emplace_back(p ? p : "");
    H5free_memory(p);
  }
  return out;
}

Handle open_dataset(hid_t parent, const std::string& name, const std::string& file) {
  RG_CHECK(exists(parent, name), file, ": missing dataset '", name, "'");
  Handle d(H5Dopen2(parent, name.c_str(), H5P_DEFAULT));
  RG_CHECK(d.valid(), file, ": cannot open dataset '", name, "'");
  return d;
}

std::vector<hsize_t> dataset_dims(hid_t dset, const std::string& what) {
  Handle space(H5Dget_space(dset));
  const int rank = H5Sget_simple_extent_ndims(space.get());
  RG_CHECK(rank >= 0, what, ": bad dataspace");
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  return dims;
}

void read_rows(hid_t dset, hid_t mem_type, hsize_t first, hsize_t count, void* out,
               const std::string& what) {
  const auto dims = dataset_dims(dset, what);
  RG_CHECK(!dims.empty() && first + count <= dims[0], what, ": rows [", first, ", ", first + count,
           ") out of range (", dims.empty() ? 0 : dims[0], " rows)");
  if (count == 0) return;
  std::vector<hsize_t> start(dims.size(), 0), cnt = dims;
  start[0] = first;
  cnt[0] = count;
  Handle fspace(H5Dget_space(dset));
  H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, start.data(), nullptr, cnt.data(), nullptr);
  Handle mspace(H5Screate_simple(static_cast<int>(cnt.size()), cnt.data(), nullptr));
  RG_CHECK(H5Dread(dset, mem_type, mspace.get(), fspace.get(), H5P_DEFAULT, out) >= 0, what,
           ": read failed (corrupt or truncated file?)");
}

}  // namespace rg::data::h5
