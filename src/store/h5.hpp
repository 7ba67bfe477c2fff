// store/h5: RAII handles and the few HDF5 operations the results file needs (compound tables that grow by
// appending, fixed-width strings, string attributes), each failure an xfer::Error naming the file and object.
#pragma once

#include <hdf5.h>

#include <cstring>
#include <string>
#include <vector>

#include "xfer/core/error.hpp"

namespace xfer::store::h5 {

// The innermost message of HDF5's error stack (printing is turned off; this is what the user sees).
std::string last_error();

class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer close) : id_(id), close_(close) {}
  Handle(Handle&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = -1; }
  Handle& operator=(Handle&& o) noexcept {
    reset();
    id_ = o.id_;
    close_ = o.close_;
    o.id_ = -1;
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }
  void reset() {
    if (id_ >= 0 && close_) close_(id_);
    id_ = -1;
  }
  hid_t id() const { return id_; }
  operator hid_t() const { return id_; }
  bool valid() const { return id_ >= 0; }

 private:
  hid_t id_ = -1;
  Closer close_ = nullptr;
};

// Throws Error naming `what` if id < 0 (or status < 0).
hid_t check(hid_t id, const std::string& what);
void check_status(herr_t status, const std::string& what);

Handle open_file(const std::string& path, bool write);
Handle create_file(const std::string& path);
bool exists(hid_t loc, const std::string& path);
Handle open_group(hid_t loc, const std::string& name);
Handle ensure_group(hid_t loc, const std::string& name);
Handle open_dataset(hid_t loc, const std::string& name);

// A compound type built field by field over a C struct.
class Compound {
 public:
  explicit Compound(size_t size);
  Compound(Compound&&) = default;
  void text(const char* name, size_t offset, size_t width);
  void f64(const char* name, size_t offset);
  void f32(const char* name, size_t offset);
  void i64(const char* name, size_t offset);
  void i32(const char* name, size_t offset);
  void i8(const char* name, size_t offset);
  hid_t id() const { return type_.id(); }

 private:
  Handle type_;
  std::vector<Handle> strings_;
};

// 1-D chunked, unlimited dataset of `type` rows.
void create_table(hid_t loc, const std::string& name, hid_t type, hsize_t chunk, const std::string& description,
                  int deflate = 0);
hsize_t rows(hid_t dset);
void append(hid_t dset, hid_t type, const void* data, hsize_t n);
void write_rows(hid_t dset, hid_t type, const void* data, hsize_t first, hsize_t n);
void read_rows(hid_t dset, hid_t type, void* data, hsize_t first, hsize_t n);

void set_attr(hid_t obj, const std::string& name, const std::string& value);
std::string get_attr(hid_t obj, const std::string& name);  // "" if absent
std::vector<std::string> attr_names(hid_t obj);
void write_string_dataset(hid_t loc, const std::string& name, const std::string& text);
std::string read_string_dataset(hid_t loc, const std::string& name);

}  // namespace xfer::store::h5
