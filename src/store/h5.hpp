// store/h5: RAII handles and the few HDF5 operations the results file needs (compound tables that grow by
// appending, fixed-width strings, string attributes), each failure an xfer::Error naming the file and object.
#pragma once

#include <hdf5.h>

#include <cstring>
#include <string>
#include <vector>

#include "xfer/core/error.hpp"

namespace xfer::store::h5 {

// The innermost message of HDF5's error stack (printing is turned off; this is what the user sees), and the
// errno of the system call that failed under it where the stack records one (the sec2 driver writes
// "errno = 28, error message = 'No space left on device'"; 0 if none). Clears the stack.
struct Failure {
  std::string message;
  int errno_value = 0;
};
Failure last_failure();
std::string last_error();
// The Error for a failed HDF5 call about `what`: environment (exit 74, "No space left on device (ENOSPC: disk
// full)") when the failing system call's errno says the machine is at fault, else runtime. Names the file of the
// FileContext in force if `what` does not.
Error failure_error(const std::string& what);

// The results file the calls on this thread are about, for errors whose object names no file (a write, a flush).
class FileContext {
 public:
  explicit FileContext(std::string path);
  ~FileContext();
  FileContext(const FileContext&) = delete;
  FileContext& operator=(const FileContext&) = delete;

 private:
  std::string previous_;
};

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
  // Closes the object; a failed close is not reported (a destructor must not throw) — use close() where it matters.
  void reset() noexcept {
    if (id_ >= 0 && close_) {
      if (close_(id_) < 0) H5Eclear2(H5E_DEFAULT);
    }
    id_ = -1;
  }
  // Closes the object and returns the close's status; the handle is released whatever it says.
  herr_t close() noexcept {
    herr_t status = 0;
    if (id_ >= 0 && close_) status = close_(id_);
    id_ = -1;
    return status;
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

// Opening for writing a file this process may not write says so: "read-only (permission denied)", an environment
// Error, not "cannot open as HDF5".
Handle open_file(const std::string& path, bool write);
Handle create_file(const std::string& path);  // over an existing empty file (O_TRUNC)
// Disk space for a writing session, set aside before HDF5 touches the file: `bytes` past its end are allocated
// (fallocate, FALLOC_FL_KEEP_SIZE — the file's size is unchanged), so that the session's writes land in blocks the
// file already owns. A full disk is then an error before anything is written (ENOSPC, naming the file), not a
// failed flush that leaves HDF5 with a file it can neither write nor close. A file system without fallocate
// (EOPNOTSUPP) goes on unreserved. release_space gives back what the session did not use.
void reserve_space(const std::string& path, int64_t bytes);
void release_space(const std::string& path, int64_t bytes) noexcept;

// Flushes and closes a file; Error naming it (ENOSPC where that is why) if either fails. Every object of the file
// is closed by then (the file is opened with the strong close degree), so a failure leaves nothing open.
void close_file(Handle& file, const std::string& path);
// Closes a file, not reporting a failure but remembering it: HDF5 keeps a file whose close failed half-destroyed,
// and touches it again when it shuts down (see store::close_library).
void close_quietly(Handle& file) noexcept;
bool file_left_broken() noexcept;
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
// The field names of a table's compound type, in the file's order.
std::vector<std::string> member_names(hid_t dset);

void set_attr(hid_t obj, const std::string& name, const std::string& value);
std::string get_attr(hid_t obj, const std::string& name);  // "" if absent
std::vector<std::string> attr_names(hid_t obj);
void write_string_dataset(hid_t loc, const std::string& name, const std::string& text);
std::string read_string_dataset(hid_t loc, const std::string& name);

}  // namespace xfer::store::h5
