// Thin RAII helpers over the HDF5 C API, for the prepared-slices files (prepare.cpp writes,
// slice_dataset.cpp reads). Every failure throws rg::Error naming the file and the object;
// HDF5's own error-stack printing is switched off. Internal to rg::data.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <string>
#include <vector>

namespace rg::data::h5 {

// Owns one hid_t (file, group, dataset, dataspace, type, property list, attribute).
class Handle {
 public:
  Handle() = default;
  explicit Handle(hid_t id) : id_(id) {}
  ~Handle() { reset(); }
  Handle(Handle&& o) noexcept : id_(o.id_) { o.id_ = H5I_INVALID_HID; }
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = o.id_;
      o.id_ = H5I_INVALID_HID;
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  void reset();

 private:
  hid_t id_ = H5I_INVALID_HID;
};

// Turns off HDF5's automatic error printing (once per process).
void quiet();

Handle create_file(const std::string& path);           // truncates
Handle open_file_readonly(const std::string& path);    // throws "<path>: not an HDF5 file" etc.
Handle create_group(hid_t parent, const std::string& name, const std::string& file);
Handle open_group(hid_t parent, const std::string& name, const std::string& file);
bool exists(hid_t parent, const std::string& name);

// ---- attributes (on a file/group/dataset)
void write_attr(hid_t obj, const std::string& name, const std::string& value);
void write_attr(hid_t obj, const std::string& name, const std::vector<double>& values);
void write_attr(hid_t obj, const std::string& name, const std::vector<int64_t>& values);
void write_attr(hid_t obj, const std::string& name, double value);
void write_attr(hid_t obj, const std::string& name, int64_t value);
bool has_attr(hid_t obj, const std::string& name);
std::string read_attr_string(hid_t obj, const std::string& name, const std::string& file);
std::vector<double> read_attr_doubles(hid_t obj, const std::string& name, const std::string& file);
std::vector<int64_t> read_attr_ints(hid_t obj, const std::string& name, const std::string& file);
// Every attribute of obj rendered as text ("a, b, c" for arrays), in name order.
std::vector<std::pair<std::string, std::string>> all_attrs(hid_t obj);

// ---- datasets
// A dataset of rows: shape [0, row_dims...] growing along the first axis, chunked one row per
// chunk, deflate level `compression` (0 = none) with the shuffle filter.
class RowWriter {
 public:
  RowWriter() = default;
  RowWriter(hid_t parent, const std::string& name, hid_t mem_type, hid_t file_type,
            const std::vector<hsize_t>& row_dims, int compression, const std::string& file);
  // Appends `rows` rows from `data` (mem_type elements, row-major).
  void append(const void* data, hsize_t rows);
  hsize_t rows() const { return rows_; }

 private:
  Handle dset_;
  hid_t mem_type_ = H5I_INVALID_HID;
  std::vector<hsize_t> row_dims_;
  hsize_t rows_ = 0;
  std::string what_;
};

// Fixed-size datasets written at once.
void write_dataset(hid_t parent, const std::string& name, hid_t mem_type, hid_t file_type,
                   const std::vector<hsize_t>& dims, const void* data, const std::string& file);
void write_strings(hid_t parent, const std::string& name, const std::vector<std::string>& values,
                   const std::string& file);
std::vector<std::string> read_strings(hid_t parent, const std::string& name, const std::string& file);

Handle open_dataset(hid_t parent, const std::string& name, const std::string& file);
std::vector<hsize_t> dataset_dims(hid_t dset, const std::string& what);
// Reads rows [first, first + count) of an N-D dataset into `out` as mem_type.
void read_rows(hid_t dset, hid_t mem_type, hsize_t first, hsize_t count, void* out,
               const std::string& what);

}  // namespace rg::data::h5
