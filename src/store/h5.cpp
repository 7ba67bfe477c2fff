#include "h5.hpp"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <mutex>

#include <fmt/format.h>

namespace xfer::store::h5 {

namespace {
void quiet() {
  static std::once_flag once;
  std::call_once(once, [] {
    // xfer shuts HDF5 down itself (store::close_library), not from atexit (where a broken file would crash it).
    H5dont_atexit();
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  });
}
herr_t walk(unsigned n, const H5E_error2_t* e, void* client) {
  auto* out = static_cast<Failure*>(client);
  if (!e || !e->desc) return 0;
  if (n == 0) out->message = e->desc;
  // The sec2 (POSIX) driver: "..., errno = 28, error message = 'No space left on device', ...".
  const std::string d = e->desc;
  if (const auto at = d.find("errno = "); at != std::string::npos && out->errno_value == 0)
    out->errno_value = std::atoi(d.c_str() + at + 8);
  return 0;
}
thread_local std::string current_file;
}  // namespace

FileContext::FileContext(std::string path) : previous_(std::move(current_file)) { current_file = std::move(path); }
FileContext::~FileContext() { current_file = std::move(previous_); }

Failure last_failure() {
  Failure f;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk, &f);
  H5Eclear2(H5E_DEFAULT);
  if (f.message.empty()) f.message = "HDF5 error";
  return f;
}

std::string last_error() { return last_failure().message; }

Error failure_error(const std::string& what) {
  const Failure f = last_failure();
  std::string where = what;
  if (!current_file.empty() && where.find(current_file) == std::string::npos) where = current_file + ": " + where;
  if (f.errno_value != 0 && environment_errno(f.errno_value))
    return errno_error(where + " (" + f.message + ")", f.errno_value);
  return Error(where + ": " + f.message);
}

hid_t check(hid_t id, const std::string& what) {
  if (id < 0) throw failure_error(what);
  return id;
}

void check_status(herr_t status, const std::string& what) {
  if (status < 0) throw failure_error(what);
}

namespace {
Handle fapl() {
  Handle p(check(H5Pcreate(H5P_FILE_ACCESS), "file access properties"), H5Pclose);
  // Use the file system's locks where it has them; on Lustre/GPFS mounts without flock, go on without (xfer holds
  // its own writer lock file).
  H5Pset_file_locking(p, true, true);
  // Closing the file closes every object still open in it: an error path that left a dataset open cannot keep the
  // file open until HDF5's own shutdown (which, under MPI_Finalize, is where a failed flush used to crash).
  H5Pset_fclose_degree(p, H5F_CLOSE_STRONG);
  return p;
}
}  // namespace

Handle open_file(const std::string& path, bool write) {
  quiet();
  const auto p = fapl();
  const hid_t f = H5Fopen(path.c_str(), write ? H5F_ACC_RDWR : H5F_ACC_RDONLY, p);
  if (f < 0) {
    const Failure why = last_failure();
    if (write && ::access(path.c_str(), W_OK) != 0 && (errno == EACCES || errno == EROFS || errno == EPERM))
      throw Error::environment(path + (errno == EROFS ? std::string(": on a read-only file system (EROFS) — nothing "
                                                                    "can write it there")
                                                      : std::string(": read-only (permission denied) — this user "
                                                                    "cannot write it")));
    if (::access(path.c_str(), R_OK) != 0 && errno == EACCES)
      throw Error::environment(path + ": cannot read it (permission denied)");
    throw Error::input(path + ": cannot open as HDF5 (" + why.message + ")");
  }
  return Handle(f, H5Fclose);
}

Handle create_file(const std::string& path) {
  quiet();
  const auto p = fapl();
  // TRUNC: the caller made the (empty) file, and set space aside for it.
  const hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, p);
  if (f < 0) {
    const int e = errno;  // HDF5's stack often hides it; the failed open(2) left it
    Failure why = last_failure();
    if (why.errno_value == 0 && environment_errno(e)) why.errno_value = e;
    if (why.errno_value != 0 && environment_errno(why.errno_value))
      throw errno_error(path + ": cannot create (" + why.message + ")", why.errno_value);
    throw Error(path + ": cannot create: " + why.message);
  }
  return Handle(f, H5Fclose);
}

void reserve_space(const std::string& path, int64_t bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return;  // opening it for HDF5 says why
  struct stat st {};
  int rc = ::fstat(fd, &st);
  if (rc == 0) rc = ::fallocate(fd, FALLOC_FL_KEEP_SIZE, st.st_size, bytes);
  const int e = errno;
  ::close(fd);
  if (rc != 0 && (e == ENOSPC || e == EDQUOT || e == EFBIG || e == EIO))
    throw errno_error(fmt::format("{}: no room to write the results file (reserving {} KiB past its {} bytes)", path,
                                  bytes / 1024, static_cast<int64_t>(st.st_size)),
                      e);
}

void release_space(const std::string& path, int64_t bytes) noexcept {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return;
  struct stat st {};
  if (::fstat(fd, &st) == 0) (void)::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, st.st_size, bytes);
  ::close(fd);
}

namespace {
std::atomic<bool> broken_file{false};
}  // namespace

bool file_left_broken() noexcept { return broken_file.load(); }

void close_quietly(Handle& file) noexcept {
  if (file.valid() && file.close() < 0) {
    broken_file = true;
    H5Eclear2(H5E_DEFAULT);
  }
}

void close_file(Handle& file, const std::string& path) {
  if (!file.valid()) return;
  FileContext context(path);
  const herr_t flushed = H5Fflush(file, H5F_SCOPE_GLOBAL);
  const Failure flush_failure = flushed < 0 ? last_failure() : Failure{};
  const herr_t closed = file.close();
  if (closed < 0) broken_file = true;
  const Failure close_failure = closed < 0 ? last_failure() : Failure{};
  const Failure& f = flushed < 0 ? flush_failure : close_failure;
  if (flushed >= 0 && closed >= 0) return;
  const int e = f.errno_value != 0 ? f.errno_value : (close_failure.errno_value != 0 ? close_failure.errno_value : 0);
  const std::string what = path + ": writing the results file failed (" + f.message + ")";
  if (e != 0) throw errno_error(what, e);
  throw Error(what);
}

bool exists(hid_t loc, const std::string& path) {
  // Checks each component, as H5Lexists requires.
  size_t start = 0;
  while (true) {
    const size_t slash = path.find('/', start);
    const std::string prefix = path.substr(0, slash);
    if (!prefix.empty() && H5Lexists(loc, prefix.c_str(), H5P_DEFAULT) <= 0) return false;
    if (slash == std::string::npos) return true;
    start = slash + 1;
  }
}

Handle open_group(hid_t loc, const std::string& name) {
  return Handle(check(H5Gopen2(loc, name.c_str(), H5P_DEFAULT), "group " + name), H5Gclose);
}

Handle ensure_group(hid_t loc, const std::string& name) {
  if (exists(loc, name)) return open_group(loc, name);
  return Handle(check(H5Gcreate2(loc, name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "create group " + name),
                H5Gclose);
}

Handle open_dataset(hid_t loc, const std::string& name) {
  return Handle(check(H5Dopen2(loc, name.c_str(), H5P_DEFAULT), "dataset " + name), H5Dclose);
}

Compound::Compound(size_t size) : type_(check(H5Tcreate(H5T_COMPOUND, size), "compound type"), H5Tclose) {}

void Compound::text(const char* name, size_t offset, size_t width) {
  Handle s(check(H5Tcopy(H5T_C_S1), "string type"), H5Tclose);
  H5Tset_size(s, width);
  H5Tset_strpad(s, H5T_STR_NULLPAD);
  H5Tset_cset(s, H5T_CSET_UTF8);
  check_status(H5Tinsert(type_, name, offset, s), std::string("field ") + name);
  strings_.push_back(std::move(s));
}
void Compound::f64(const char* name, size_t offset) { check_status(H5Tinsert(type_, name, offset, H5T_NATIVE_DOUBLE), name); }
void Compound::f32(const char* name, size_t offset) { check_status(H5Tinsert(type_, name, offset, H5T_NATIVE_FLOAT), name); }
void Compound::i64(const char* name, size_t offset) { check_status(H5Tinsert(type_, name, offset, H5T_NATIVE_INT64), name); }
void Compound::i32(const char* name, size_t offset) { check_status(H5Tinsert(type_, name, offset, H5T_NATIVE_INT32), name); }
void Compound::i8(const char* name, size_t offset) { check_status(H5Tinsert(type_, name, offset, H5T_NATIVE_INT8), name); }

void create_table(hid_t loc, const std::string& name, hid_t type, hsize_t chunk, const std::string& description,
                  int deflate) {
  hsize_t dims[1] = {0}, maxdims[1] = {H5S_UNLIMITED}, chunks[1] = {chunk};
  Handle space(check(H5Screate_simple(1, dims, maxdims), "dataspace"), H5Sclose);
  Handle dcpl(check(H5Pcreate(H5P_DATASET_CREATE), "dataset properties"), H5Pclose);
  H5Pset_chunk(dcpl, 1, chunks);
  if (deflate > 0) {
    H5Pset_shuffle(dcpl);
    H5Pset_deflate(dcpl, static_cast<unsigned>(deflate));
  }
  Handle d(check(H5Dcreate2(loc, name.c_str(), type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT), "create " + name), H5Dclose);
  if (!description.empty()) set_attr(d, "description", description);
}

hsize_t rows(hid_t dset) {
  Handle space(check(H5Dget_space(dset), "dataspace"), H5Sclose);
  hsize_t dims[1] = {0};
  H5Sget_simple_extent_dims(space, dims, nullptr);
  return dims[0];
}

namespace {
// Rows [first, first + n) of a 1-D table: the file's selection and the matching memory space.
struct RowSelection {
  Handle file, mem;
};
RowSelection select_rows(hid_t dset, hsize_t first, hsize_t n) {
  Handle file_space(check(H5Dget_space(dset), "dataspace"), H5Sclose);
  hsize_t start[1] = {first}, count[1] = {n};
  check_status(H5Sselect_hyperslab(file_space, H5S_SELECT_SET, start, nullptr, count, nullptr), "select rows");
  return {std::move(file_space), Handle(check(H5Screate_simple(1, count, nullptr), "memory space"), H5Sclose)};
}
}  // namespace

void write_rows(hid_t dset, hid_t type, const void* data, hsize_t first, hsize_t n) {
  if (n == 0) return;
  const RowSelection sel = select_rows(dset, first, n);
  check_status(H5Dwrite(dset, type, sel.mem, sel.file, H5P_DEFAULT, data), "write rows");
}

void append(hid_t dset, hid_t type, const void* data, hsize_t n) {
  if (n == 0) return;
  const hsize_t old = rows(dset);
  hsize_t size[1] = {old + n};
  check_status(H5Dset_extent(dset, size), "extend table");
  write_rows(dset, type, data, old, n);
}

void read_rows(hid_t dset, hid_t type, void* data, hsize_t first, hsize_t n) {
  if (n == 0) return;
  const RowSelection sel = select_rows(dset, first, n);
  if (H5Dread(dset, type, sel.mem, sel.file, H5P_DEFAULT, data) >= 0) return;
  // Bytes that no longer decompress, or a variable-length reference into nowhere: say which table, and that the
  // file is damaged there (an input fault: the file must change, not the machine).
  const Error e = failure_error("read rows");
  if (e.kind() == Error::Kind::environment) throw e;
  char name[256] = "";
  H5Iget_name(dset, name, sizeof name);
  throw Error::input(fmt::format("{} (table {}, rows {} to {}): the results file is damaged there", e.what(),
                                 name[0] ? name : "?", first, first + n - 1));
}

std::vector<std::string> member_names(hid_t dset) {
  Handle type(check(H5Dget_type(dset), "dataset type"), H5Tclose);
  const int n = H5Tget_nmembers(type);
  check_status(n, "compound members");
  std::vector<std::string> names;
  for (int i = 0; i < n; ++i) {
    char* name = H5Tget_member_name(type, static_cast<unsigned>(i));
    if (!name) throw failure_error("compound member " + std::to_string(i));
    names.emplace_back(name);
    H5free_memory(name);
  }
  return names;
}

namespace {
Handle vlen_string() {
  Handle t(check(H5Tcopy(H5T_C_S1), "string type"), H5Tclose);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  return t;
}
}  // namespace

void set_attr(hid_t obj, const std::string& name, const std::string& value) {
  if (H5Aexists(obj, name.c_str()) > 0) H5Adelete(obj, name.c_str());
  const auto type = vlen_string();
  Handle space(check(H5Screate(H5S_SCALAR), "scalar"), H5Sclose);
  Handle a(check(H5Acreate2(obj, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT), "attribute " + name), H5Aclose);
  const char* p = value.c_str();
  check_status(H5Awrite(a, type, &p), "write attribute " + name);
}

std::string get_attr(hid_t obj, const std::string& name) {
  if (H5Aexists(obj, name.c_str()) <= 0) return "";
  Handle a(check(H5Aopen(obj, name.c_str(), H5P_DEFAULT), "attribute " + name), H5Aclose);
  Handle ftype(check(H5Aget_type(a), "attribute type"), H5Tclose);
  if (H5Tis_variable_str(ftype) > 0) {
    // Read with the attribute's own character set: HDF5 does not convert ASCII to UTF-8.
    Handle type(check(H5Tcopy(ftype), "string type"), H5Tclose);
    char* p = nullptr;
    check_status(H5Aread(a, type, &p), "read attribute " + name);
    std::string s = p ? p : "";
    H5free_memory(p);
    return s;
  }
  const size_t n = H5Tget_size(ftype);
  std::string s(n, '\0');
  Handle mtype(check(H5Tcopy(H5T_C_S1), "string"), H5Tclose);
  H5Tset_size(mtype, n);
  check_status(H5Aread(a, mtype, s.data()), "read attribute " + name);
  s.resize(strnlen(s.c_str(), n));
  return s;
}

std::vector<std::string> attr_names(hid_t obj) {
  std::vector<std::string> out;
  hsize_t idx = 0;
  H5Aiterate2(obj, H5_INDEX_NAME, H5_ITER_INC, &idx,
              [](hid_t, const char* name, const H5A_info_t*, void* data) -> herr_t {
                static_cast<std::vector<std::string>*>(data)->emplace_back(name);
                return 0;
              },
              &out);
  return out;
}

void write_string_dataset(hid_t loc, const std::string& name, const std::string& text) {
  if (H5Lexists(loc, name.c_str(), H5P_DEFAULT) > 0) H5Ldelete(loc, name.c_str(), H5P_DEFAULT);
  const auto type = vlen_string();
  Handle space(check(H5Screate(H5S_SCALAR), "scalar"), H5Sclose);
  Handle d(check(H5Dcreate2(loc, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "create " + name),
           H5Dclose);
  const char* p = text.c_str();
  check_status(H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, &p), "write " + name);
}

std::string read_string_dataset(hid_t loc, const std::string& name) {
  Handle d = open_dataset(loc, name);
  const auto type = vlen_string();
  char* p = nullptr;
  check_status(H5Dread(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, &p), "read " + name);
  std::string s = p ? p : "";
  H5free_memory(p);
  return s;
}

}  // namespace xfer::store::h5
