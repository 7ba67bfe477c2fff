#include "xfer/store/store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "h5.hpp"
#include "schema.hpp"
#include "xfer/core/build_info.hpp"
#include "xfer/core/digest.hpp"
#include "xfer/core/error.hpp"

namespace fs = std::filesystem;

namespace xfer::store {

using h5::Handle;

double now_unix() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

bool close_library() noexcept {
  // A file whose close failed is half-destroyed inside HDF5 and crashes any shutdown that touches it: leave the
  // library as it is (the process is ending; the file on disk is as the last successful session left it).
  if (h5::file_left_broken()) return false;
  H5Eclear2(H5E_DEFAULT);
  return H5close() >= 0;
}

std::string iso_utc(double t) {
  if (!(t > 0)) return "";
  const std::time_t s = static_cast<std::time_t>(t);
  std::tm tm{};
  gmtime_r(&s, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

namespace {

constexpr const char* kFormat = "xfer-results 4";
constexpr const char* kContentDigest = "content_sha256";

void check_format(hid_t file, const std::string& path) {
  const std::string format = h5::get_attr(file, "format");
  if (format.rfind("xfer-results ", 0) == 0 && format != kFormat)
    throw Error::input(path + ": written by an older xfer (format \"" + format + "\"; this xfer reads \"" + kFormat +
                       "\", whose columns differ); it was not modified — read it with the xfer that wrote it, or "
                       "run the study again into a new results file");
  if (format != kFormat)
    throw Error::input(path + ": not an xfer results file (attribute format is \"" + format + "\", expected \"" +
                       kFormat + "\"); it was not modified");
  for (const char* required : {"trials", "curves", "study", "predictions/index", "runs"})
    if (!h5::exists(file, required))
      throw Error::input(path + ": the results file lacks /" + std::string(required) +
                         " (truncated or corrupt); it was not modified — see README, \"After a failure\"");
}

// Replaces a write-once table unless its content digest is the one given; says what it did.
template <class Row>
void write_once(hid_t loc, const std::string& name, const std::string& shown, const table::Table<Row>& t,
                const std::vector<Row>& rows, const std::string& file) {
  const std::string digest = t.digest(rows);
  if (h5::exists(loc, name)) {
    Handle d = h5::open_dataset(loc, name);
    if (h5::get_attr(d, kContentDigest) == digest) {
      // The same content as recorded: written once, so check that the stored rows still are what was written —
      // or can be read at all (a chunk that no longer decompresses).
      std::string damage = "its rows no longer match their content_sha256";
      try {
        if (t.digest(t.read_all(d)) == digest) return;
      } catch (const Error& e) {
        if (e.kind() == Error::Kind::environment) throw;
        damage = std::string("its rows cannot be read: ") + e.what();
      }
      spdlog::warn("{}: {} is damaged ({}); writing it again", file, shown, damage);
    } else {
      spdlog::warn("{}: {} differs from the one the file holds; replacing it (the old table's space is not reclaimed)",
                   file, shown);
    }
    d.reset();
    h5::check_status(H5Ldelete(loc, name.c_str(), H5P_DEFAULT), file + ": delete " + shown);
  }
  t.create(loc, name);
  Handle d = h5::open_dataset(loc, name);
  t.append(d, rows, file, shown.substr(1));
  h5::set_attr(d, kContentDigest, digest);
}

}  // namespace

// An open file for the length of one event. A writing event ends with commit(): flushed and closed, and a
// failure (a full disk) is an Error naming the file. A session left by an exception closes the file without
// reporting (the exception says what went wrong); the strong close degree leaves nothing of it open.
struct Results::Session {
  // What a writing session sets aside on disk first (h5::reserve_space): room for a table chunk of each table it
  // may extend and the metadata, plus what the event itself carries (predictions, samples).
  static constexpr int64_t kReserve = 1 << 20;
  std::string path;
  h5::FileContext context;
  int64_t reserved = 0;
  Handle file;
  Session(const std::string& p, bool write, int64_t& count, int64_t payload = 0) : path(p), context(p) {
    if (write && fs::exists(path)) {
      reserved = kReserve + payload;
      h5::reserve_space(path, reserved);
    }
    // A reader may meet the writer mid-event: retry for a few seconds (not when the file is not writable or
    // readable by this user: that does not pass).
    for (int attempt = 0;; ++attempt) {
      try {
        file = h5::open_file(path, write);
        ++count;
        return;
      } catch (const Error& e) {
        if (attempt >= 50 || !fs::exists(path) || e.kind() == Error::Kind::environment) throw;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
  }
  void commit() {
    h5::close_file(file, path);
    release();
  }
  ~Session() {
    h5::close_quietly(file);
    release();
  }
  void release() noexcept {
    if (reserved > 0) h5::release_space(path, reserved);
    reserved = 0;
  }
};

// ---- the writer lock ------------------------------------------------------------------------------------------

namespace {
std::string hostname() {
  char h[256] = {0};
  gethostname(h, sizeof h - 1);
  return h;
}
// A lock whose heartbeat is older than this is taken over (the holder refreshes it every few minutes).
constexpr double kStaleSeconds = 900;
// Alive and not a zombie (a killed job's rank may linger as one).
bool process_alive(int pid) {
  if (::kill(pid, 0) != 0 && errno == ESRCH) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return true;
  const auto close = line.rfind(')');
  return !(close != std::string::npos && close + 2 < line.size() && line[close + 2] == 'Z');
}
}  // namespace

WriterLock::WriterLock(const std::string& results_path) : path_(results_path + ".lock") {
  const std::string host = hostname();
  if (!fs::path(path_).parent_path().empty()) {
    std::error_code ec;
    fs::create_directories(fs::path(path_).parent_path(), ec);
  }
  const char* job = std::getenv("SLURM_JOB_ID");
  nlohmann::json me{{"host", host}, {"pid", static_cast<int>(::getpid())}, {"slurm_job_id", job ? job : ""},
                    {"started_utc", iso_utc(now_unix())}};
  for (int attempt = 0; attempt < 2; ++attempt) {
    const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0 && errno != EEXIST) {
      const int e = errno;
      const std::string what = path_ + ": cannot create the writer lock";
      // A read-only file system or folder is the machine's state, not a bad input: exit 74, as the README says.
      if (environment_errno(e))
        throw errno_error(what + (e == EROFS ? " (the results folder is on a read-only file system)"
                                             : " (is the results folder writable by this user?)"), e);
      throw Error::input(what + " (" + std::string(std::strerror(e)) + "); is the results folder writable?");
    }
    if (fd >= 0) {
      const std::string text = me.dump() + "\n";
      (void)!::write(fd, text.data(), text.size());
      ::fsync(fd);
      ::close(fd);
      return;
    }
    // Held: refuse, unless the holder is provably gone (same host, dead pid) or silent for 15 minutes.
    nlohmann::json holder = nlohmann::json::object();
    try {
      std::ifstream in(path_);
      holder = nlohmann::json::parse(in);
      if (!holder.is_object()) holder = nlohmann::json::object();
    } catch (const std::exception&) {
      if (errno == ENOENT) continue;  // released meanwhile
    }
    struct stat st {};
    const double age = ::stat(path_.c_str(), &st) == 0 ? now_unix() - static_cast<double>(st.st_mtime) : 0;
    const std::string h = holder.value("host", "?");
    const int pid = holder.value("pid", 0);
    const bool dead_here = h == host && pid > 0 && !process_alive(pid);
    if (attempt == 0 && (dead_here || age > kStaleSeconds)) {
      spdlog::warn("{}: taking over a stale writer lock (held by {} pid {}, {}; last heartbeat {:.0f} s ago)", path_, h,
                   pid, dead_here ? "no longer running" : "silent", age);
      std::error_code ec;
      fs::remove(path_, ec);
      took_over_ = true;
      continue;
    }
    throw Error::input(fmt::format(
        "{} is being written by another xfer run (host {}, pid {}{}, since {}; heartbeat {:.0f} s ago). "
        "One writer per results file: wait for it, use --results for a separate file, or — if that job is dead — "
        "delete {}",
        results_path, h, pid,
        holder.value("slurm_job_id", "").empty() ? "" : ", SLURM job " + holder.value("slurm_job_id", ""),
        holder.value("started_utc", "?"), age, path_));
  }
}

WriterLock::State WriterLock::inspect(const std::string& results_path) {
  const std::string lock = results_path + ".lock";
  State st;
  nlohmann::json holder = nlohmann::json::object();
  {
    std::ifstream in(lock);
    if (!in) return st;  // none
    try {
      holder = nlohmann::json::parse(in);
      if (!holder.is_object()) holder = nlohmann::json::object();
    } catch (const std::exception&) {
      holder = nlohmann::json::object();  // being written, or damaged: judged by its age alone
    }
  }
  struct stat sb {};
  if (::stat(lock.c_str(), &sb) != 0) return st;
  const double age = now_unix() - static_cast<double>(sb.st_mtime);
  const std::string h = holder.value("host", "?");
  const int pid = holder.value("pid", 0);
  const bool dead_here = h == hostname() && pid > 0 && !process_alive(pid);
  st.who = fmt::format("host {} pid {}, since {}", h, pid, holder.value("started_utc", "?"));
  if (dead_here) {
    st.holder = Holder::stale;
    st.who += "; that process is no longer running";
  } else if (age > kStaleSeconds) {
    st.holder = Holder::stale;
    st.who += fmt::format("; silent for {:.0f} s", age);
  } else {
    st.holder = Holder::alive;
  }
  return st;
}

WriterLock::~WriterLock() {
  std::error_code ec;
  fs::remove(path_, ec);
}

void WriterLock::heartbeat() {
  ::utimensat(AT_FDCWD, path_.c_str(), nullptr, 0);
}

// ---- Results ---------------------------------------------------------------------------------------------------

Results Results::open_or_create(const std::string& path, const std::string& study, const std::string& spec_text) {
  if (fs::exists(path)) return open_existing(path);
  if (!fs::path(path).parent_path().empty()) fs::create_directories(fs::path(path).parent_path());
  const std::string tmp = path + ".creating";
  std::error_code ec;
  fs::remove(tmp, ec);
  // A file that could not be created whole (a full disk) leaves nothing behind.
  struct RemoveUnlessDone {
    const std::string& tmp;
    bool done = false;
    ~RemoveUnlessDone() {
      std::error_code e;
      if (!done) fs::remove(tmp, e);
    }
  } cleanup{tmp};
  {
    h5::FileContext context(tmp);
    // Room first (a full disk: ENOSPC now, before HDF5 has a file it cannot write), then HDF5 over the empty file.
    {
      const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      if (fd < 0) throw errno_error(tmp + ": cannot create", errno);
      ::close(fd);
    }
    h5::reserve_space(tmp, Session::kReserve);
    Handle f = h5::create_file(tmp);
    h5::set_attr(f, "format", kFormat);
    h5::set_attr(f, "xfer_version", build_info::version());
    h5::set_attr(f, "study", study);
    h5::set_attr(f, "created_utc", iso_utc(now_unix()));
    h5::set_attr(f, "spec_sha256", sha256_hex(spec_text));
    h5::set_attr(f, "layout", "see README.md, 'The results file'; every table has a 'description' attribute");
    Handle s = h5::ensure_group(f, "study");
    h5::write_string_dataset(s, "spec", spec_text);
    schema::specs().create(s, "specs");
    schema::trials().create(f, "trials");
    {
      Handle t = h5::open_dataset(f, "trials");
      auto names = [](const std::vector<std::string>& v) {
        std::string out;
        for (const auto& n : v) out += (out.empty() ? "" : " ") + n;
        return out;
      };
      const std::string encoding =
          "; CRC-32 (zlib.crc32) over the columns in this order, a number as 8 little-endian bytes (float64 as '<d', "
          "integers and flags as int64 '<q'), a text as its UTF-8 byte length ('<I') then its bytes";
      h5::set_attr(t, "config_crc32_columns", names(schema::trials().checksummed(table::Written::once)) + encoding);
      h5::set_attr(t, "state_crc32_columns", names(schema::trials().checksummed(table::Written::state)) + encoding);
    }
    schema::curves().create(f, "curves");
    Handle p = h5::ensure_group(f, "predictions");
    schema::prediction_index().create(p, "index");
    {
      hsize_t dims[1] = {0}, maxdims[1] = {H5S_UNLIMITED}, chunk[1] = {65536};
      Handle space(h5::check(H5Screate_simple(1, dims, maxdims), "space"), H5Sclose);
      Handle dcpl(h5::check(H5Pcreate(H5P_DATASET_CREATE), "dcpl"), H5Pclose);
      H5Pset_chunk(dcpl, 1, chunk);
      H5Pset_shuffle(dcpl);
      H5Pset_deflate(dcpl, 1);
      Handle a(h5::check(H5Dcreate2(p, "samples", H5T_NATIVE_INT64, space, H5P_DEFAULT, dcpl, H5P_DEFAULT), "samples"), H5Dclose);
      Handle b(h5::check(H5Dcreate2(p, "scores", H5T_NATIVE_FLOAT, space, H5P_DEFAULT, dcpl, H5P_DEFAULT), "scores"), H5Dclose);
    }
    schema::problems().create(f, "problems");
    schema::runs().create(f, "runs");
    h5::ensure_group(f, "provenance");
    s.reset();
    p.reset();
    h5::close_file(f, tmp);
  }
  fs::rename(tmp, path, ec);
  if (ec) throw errno_error(tmp + ": cannot rename to " + path, ec.value());
  cleanup.done = true;
  h5::release_space(path, Session::kReserve);
  return Results(path);
}

Results Results::open_existing(const std::string& path) {
  if (!fs::exists(path)) throw Error::input(path + ": no such results file");
  Results r(path);
  Session s(path, false, *r.sessions_);
  check_format(s.file, path);
  return r;
}

void Results::load_indexes(const Session& s) {
  if (indexed_) return;
  {
    Handle d = h5::open_dataset(s.file, "trials");
    trial_row_.clear();
    trial_row_.reserve(h5::rows(d));
    schema::trials().for_each(d, *schema::trials().only({"key"}),
                              [&](size_t i, const TrialRow& r) { trial_row_[r.key] = static_cast<int64_t>(i); });
  }
  {
    Handle d = h5::open_dataset(s.file, "curves");
    curve_row_.clear();
    schema::curves().for_each(d, *schema::curves().only({"key", "attempt", "epoch"}), [&](size_t i, const CurveRow& r) {
      curve_row_[std::make_tuple(r.key, r.attempt, r.epoch)] = static_cast<int64_t>(i);
    });
  }
  {
    Handle d = h5::open_dataset(s.file, "predictions/index");
    const auto ids = schema::prediction_index().read_all(d, *schema::prediction_index().only({"key", "split"}));
    prediction_row_.clear();
    for (size_t i = 0; i < ids.size(); ++i) prediction_row_[{ids[i].key, ids[i].split}] = static_cast<int64_t>(i);
  }
  indexed_ = true;
}

namespace {
// The rows given, then the file's rows whose name they lack: a spec that drops a model or dataset leaves the
// description of its earlier trials in place.
template <class Row>
std::vector<Row> with_recorded(hid_t study, const std::string& name, const table::Table<Row>& t, std::vector<Row> rows) {
  if (!h5::exists(study, name)) return rows;
  Handle d = h5::open_dataset(study, name);
  std::set<std::string> given;
  for (const auto& r : rows) given.insert(r.name);
  for (auto& r : t.read_all(d))
    if (!given.count(r.name)) rows.push_back(std::move(r));
  return rows;
}
std::vector<SpecRow> read_specs(hid_t file) {
  if (!h5::exists(file, "study/specs")) return {};
  Handle d = h5::open_dataset(file, "study/specs");
  return schema::specs().read_all(d);
}
}  // namespace

std::string describe_row(const TrialRow& row) {
  const bool printable = !row.key.empty() && std::all_of(row.key.begin(), row.key.end(), [](char c) {
    return std::isxdigit(static_cast<unsigned char>(c)) != 0;
  });
  return fmt::format("row {} ({})", row.row_index, printable ? "key " + row.key : std::string("key not readable"));
}

std::string Results::study() const {
  Session s(path_, false, *sessions_);
  return h5::get_attr(s.file, "study");
}

std::vector<SpecRow> Results::specs() const {
  Session s(path_, false, *sessions_);
  return read_specs(s.file);
}

void Results::check_run(const std::string& study, const std::string& spec_text,
                        const std::map<std::string, std::string>& split_sha256, bool extend) const {
  Session s(path_, false, *sessions_);
  const std::string held = h5::get_attr(s.file, "study");
  if (held != study)
    throw Error::input(fmt::format(
        "{}: this results file holds study \"{}\", not \"{}\" (the spec's study.name); one file holds one study, "
        "and it was not modified — use a new --results file",
        path_, held, study));
  // A dataset split differently: its earlier trials were trained and tested on other samples.
  if (h5::exists(s.file, "study/datasets")) {
    Handle d = h5::open_dataset(s.file, "study/datasets");
    for (const auto& r : schema::datasets().read_all(d)) {
      const auto it = split_sha256.find(r.name);
      if (r.split_sha256.empty() || it == split_sha256.end() || it->second.empty() || it->second == r.split_sha256)
        continue;
      throw Error::input(fmt::format(
          "{}: dataset {} is split differently now (split sha256 {} vs {} in the file); its trials there were run "
          "on the other split, and one results file holds one split per dataset — it was not modified (not even "
          "with --extend); use a new --results file",
          path_, r.name, it->second.substr(0, 12), r.split_sha256.substr(0, 12)));
    }
  }
  const std::string sha = sha256_hex(spec_text);
  bool known = h5::get_attr(s.file, "spec_sha256") == sha;
  for (const auto& r : read_specs(s.file)) known = known || r.sha256 == sha;
  if (!known && !extend)
    throw Error::input(fmt::format(
        "{}: study \"{}\" was run into this file from another spec (spec_sha256 {} there, {} for this one); it was "
        "not modified — to add this spec's trials to it, rerun with --extend (every spec run into the file is kept in "
        "/study/specs), or use a new --results file",
        path_, study, h5::get_attr(s.file, "spec_sha256").substr(0, 12), sha.substr(0, 12)));
}

void Results::add_specs(const std::vector<SpecRow>& rows) {
  Session s(path_, true, *sessions_);
  Handle g = h5::ensure_group(s.file, "study");
  if (!h5::exists(g, "specs")) schema::specs().create(g, "specs");
  std::set<std::string> have;
  for (const auto& r : read_specs(s.file)) have.insert(r.sha256);
  std::vector<SpecRow> fresh;
  for (const auto& r : rows)
    if (have.insert(r.sha256).second) fresh.push_back(r);
  Handle d = h5::open_dataset(g, "specs");
  schema::specs().append(d, fresh, path_, "study/specs");
  s.commit();
}

size_t Results::close_stale_runs(const std::string& reason) {
  {
    // Usually there is none: no writing session for nothing.
    const auto rows = runs();
    if (std::none_of(rows.begin(), rows.end(), [](const RunRow& r) { return r.end_reason == "running"; })) return 0;
  }
  Session s(path_, true, *sessions_);
  Handle d = h5::open_dataset(s.file, "runs");
  const auto layout = schema::runs().in_file(d, path_, "runs");
  auto rows = schema::runs().read_all(d, *layout);
  size_t n = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i].end_reason != "running") continue;
    rows[i].end_reason = reason;
    schema::runs().write(d, *layout, static_cast<hsize_t>(i), {rows[i]}, path_, "runs");
    ++n;
  }
  s.commit();
  return n;
}

void Results::write_study(const std::string& spec_text, const std::vector<ModelRow>& models,
                          const std::vector<DatasetRow>& datasets) {
  Session s(path_, true, *sessions_);
  Handle g = h5::ensure_group(s.file, "study");
  const std::string spec_sha = sha256_hex(spec_text);
  if (!h5::exists(g, "spec") || h5::get_attr(s.file, "spec_sha256") != spec_sha) {
    // The spec of the latest run is the one in force (a seed added, say); every earlier one stays in /study/specs.
    if (h5::exists(g, "spec")) spdlog::info("{}: the spec differs from the last run's; /study/spec now holds this one", path_);
    h5::write_string_dataset(g, "spec", spec_text);
    h5::set_attr(s.file, "spec_sha256", spec_sha);
  }
  if (!h5::exists(g, "specs")) schema::specs().create(g, "specs");
  {
    bool recorded = false;
    for (const auto& r : read_specs(s.file)) recorded = recorded || r.sha256 == spec_sha;
    Handle d = h5::open_dataset(g, "specs");
    if (!recorded) schema::specs().append(d, {SpecRow{spec_sha, spec_text, now_unix()}}, path_, "study/specs");
  }
  write_once(g, "models", "/study/models", schema::models(), with_recorded(g, "models", schema::models(), models), path_);
  write_once(g, "datasets", "/study/datasets", schema::datasets(),
             with_recorded(g, "datasets", schema::datasets(), datasets), path_);
  s.commit();
}

namespace {
int64_t bytes_of(const std::vector<PredictionSet>& sets) {
  int64_t n = 0;
  for (const auto& p : sets) n += static_cast<int64_t>(p.scores.size() * 4 + p.samples.size() * 8) + 256;
  return n;
}
}  // namespace

void Results::write_samples(const std::string& dataset, const std::vector<SampleRow>& samples) {
  int64_t payload = 0;
  for (const auto& r : samples) payload += 64 + static_cast<int64_t>(r.id.size() + r.labels.size() + r.group.size());
  Session s(path_, true, *sessions_, payload);
  Handle g = h5::ensure_group(s.file, "samples");
  write_once(g, dataset, "/samples/" + dataset, schema::samples(), samples, path_);
  s.commit();
}

void Results::write_provenance(const std::map<std::string, std::string>& attrs) {
  Session s(path_, true, *sessions_);
  Handle g = h5::ensure_group(s.file, "provenance");
  for (const auto& [k, v] : attrs)
    if (h5::get_attr(g, k) != v) h5::set_attr(g, k, v);
  s.commit();
}

std::map<std::string, std::string> Results::provenance() const {
  Session s(path_, false, *sessions_);
  std::map<std::string, std::string> out;
  if (!h5::exists(s.file, "provenance")) return out;
  Handle g = h5::open_group(s.file, "provenance");
  for (const auto& n : h5::attr_names(g)) out[n] = h5::get_attr(g, n);
  return out;
}

void Results::append_problems(const Session& s, const std::vector<ProblemRow>& rows) {
  if (rows.empty()) return;
  Handle d = h5::open_dataset(s.file, "problems");
  schema::problems().append(d, rows, path_, "problems");
}

void Results::add_problems(const std::vector<ProblemRow>& rows) {
  if (rows.empty()) return;
  Session s(path_, true, *sessions_);
  append_problems(s, rows);
  s.commit();
}

void Results::add_index_problems(const std::vector<ProblemRow>& rows) {
  const std::string digest = schema::problems().digest(rows);
  Session s(path_, true, *sessions_);
  Handle d = h5::open_dataset(s.file, "problems");
  if (h5::get_attr(d, "index_problems_sha256") == digest) return;  // the same datasets, indexed the same way
  schema::problems().append(d, rows, path_, "problems");
  h5::set_attr(d, "index_problems_sha256", digest);
  s.commit();
}

std::vector<ProblemRow> Results::problems() const {
  Session s(path_, false, *sessions_);
  Handle d = h5::open_dataset(s.file, "problems");
  return schema::problems().read_all(d);
}

std::vector<TrialRow> Results::trials() const {
  Session s(path_, false, *sessions_);
  Handle d = h5::open_dataset(s.file, "trials");
  auto rows = schema::trials().read_all(d);
  for (size_t i = 0; i < rows.size(); ++i) {
    rows[i].row_index = static_cast<int64_t>(i);
    rows[i].damage = schema::trials().damage(rows[i]);
  }
  return rows;
}

std::vector<TrialRow> Results::trial_states() const {
  static const auto* layout = [] {
    std::vector<std::string> names = {"key", "model", "dataset", "epochs"};
    for (const auto* c : schema::trials().state().columns()) names.push_back(c->name);
    return schema::trials().only(names).release();
  }();
  Session s(path_, false, *sessions_);
  Handle d = h5::open_dataset(s.file, "trials");
  return schema::trials().read_all(d, *layout);
}

std::vector<Results::LedgerEntry> Results::ledger() const {
  // Three of the table's columns: HDF5 matches them by name and reads nothing else.
  static const auto* layout = schema::trials().only({"key", "status", "attempts"}).release();
  Session s(path_, false, *sessions_);
  Handle d = h5::open_dataset(s.file, "trials");
  std::vector<LedgerEntry> out(h5::rows(d));
  schema::trials().for_each(d, *layout, [&](size_t i, const TrialRow& r) { out[i] = {r.key, r.status, r.attempts}; });
  return out;
}

size_t Results::add_trials(const std::vector<TrialRow>& rows) {
  if (rows.empty()) return 0;
  Session s(path_, true, *sessions_);
  load_indexes(s);
  std::vector<TrialRow> fresh;
  for (const auto& r : rows)
    if (!trial_row_.count(r.key)) fresh.push_back(r);
  if (fresh.empty()) return 0;
  Handle d = h5::open_dataset(s.file, "trials");
  const int64_t first = static_cast<int64_t>(h5::rows(d));
  schema::trials().append(d, fresh, path_, "trials");
  for (size_t i = 0; i < fresh.size(); ++i) trial_row_[fresh[i].key] = first + static_cast<int64_t>(i);
  s.commit();
  return fresh.size();
}

void Results::write_trial_states(const Session& s, const std::vector<TrialRow>& rows) {
  if (rows.empty()) return;
  load_indexes(s);
  Handle d = h5::open_dataset(s.file, "trials");
  for (const auto& r : rows) {
    auto it = trial_row_.find(r.key);
    if (it == trial_row_.end()) throw Error(path_ + ": /trials has no trial " + r.key + " to update");
    schema::trials().write(d, schema::trials().state(), static_cast<hsize_t>(it->second), {r}, path_, "trials");
  }
}

void Results::update_trials(const std::vector<TrialRow>& rows) {
  if (rows.empty()) return;
  Session s(path_, true, *sessions_);
  write_trial_states(s, rows);
  s.commit();
}

void Results::update_trial(const TrialRow& row) { update_trials({row}); }

void Results::write_curves(const Session& s, const std::vector<CurveRow>& rows) {
  if (rows.empty()) return;
  load_indexes(s);
  Handle d = h5::open_dataset(s.file, "curves");
  std::vector<CurveRow> fresh;
  int64_t next = static_cast<int64_t>(h5::rows(d));
  for (const auto& r : rows) {
    const auto id = std::make_tuple(r.key, r.attempt, r.epoch);
    if (auto it = curve_row_.find(id); it != curve_row_.end()) {
      schema::curves().write(d, schema::curves().all(), static_cast<hsize_t>(it->second), {r}, path_, "curves");
    } else {
      curve_row_[id] = next++;
      fresh.push_back(r);
    }
  }
  schema::curves().append(d, fresh, path_, "curves");
}

void Results::put_curves(const std::vector<CurveRow>& rows) {
  if (rows.empty()) return;
  Session s(path_, true, *sessions_);
  write_curves(s, rows);
  s.commit();
}

void Results::put_curve(const CurveRow& r) { put_curves({r}); }

std::vector<CurveRow> Results::curves() const {
  Session s(path_, false, *sessions_);
  Handle d = h5::open_dataset(s.file, "curves");
  return schema::curves().read_all(d);
}

void Results::write_prediction(const Session& s, const PredictionSet& p) {
  load_indexes(s);
  Handle index = h5::open_dataset(s.file, "predictions/index");
  Handle samples = h5::open_dataset(s.file, "predictions/samples");
  Handle scores = h5::open_dataset(s.file, "predictions/scores");
  schema::PredictionIndexRow row{p.key, p.split, p.dataset, p.classes, static_cast<int64_t>(h5::rows(samples)),
                                 static_cast<int64_t>(p.samples.size())};
  if (static_cast<int64_t>(h5::rows(scores)) != row.offset * p.classes) {
    // Scores are stored at offset · classes; keep the two arrays aligned for any classes count.
    hsize_t size[1] = {static_cast<hsize_t>(row.offset * p.classes)};
    if (static_cast<int64_t>(h5::rows(scores)) > row.offset * p.classes) {
      // More scores than samples·classes so far (mixed class counts): pad samples with -1 so offsets align.
      const int64_t need = (static_cast<int64_t>(h5::rows(scores)) + p.classes - 1) / p.classes;
      std::vector<int64_t> pad(static_cast<size_t>(need - row.offset), -1);
      h5::append(samples, H5T_NATIVE_INT64, pad.data(), pad.size());
      row.offset = need;
      size[0] = static_cast<hsize_t>(row.offset * p.classes);
    }
    h5::check_status(H5Dset_extent(scores, size), "align scores");
  }
  h5::append(samples, H5T_NATIVE_INT64, p.samples.data(), p.samples.size());
  h5::append(scores, H5T_NATIVE_FLOAT, p.scores.data(), p.scores.size());
  // One index row per (key, split): a newer set replaces the older one's entry (its values stay, unreferenced).
  const auto id = std::make_pair(p.key, p.split);
  if (auto it = prediction_row_.find(id); it != prediction_row_.end()) {
    schema::prediction_index().write(index, schema::prediction_index().all(), static_cast<hsize_t>(it->second), {row},
                                     path_, "predictions/index");
  } else {
    prediction_row_[id] = static_cast<int64_t>(h5::rows(index));
    schema::prediction_index().append(index, {row}, path_, "predictions/index");
  }
}

void Results::put_predictions(const PredictionSet& p) { put_predictions(std::vector<PredictionSet>{p}); }

void Results::put_predictions(const std::vector<PredictionSet>& sets) {
  if (sets.empty()) return;
  Session s(path_, true, *sessions_, bytes_of(sets));
  for (const auto& p : sets) write_prediction(s, p);
  s.commit();
}

void Results::record_started(const TrialRow& row) { update_trial(row); }

void Results::record_epoch(const TrialRow& row, const CurveRow& curve) {
  Session s(path_, true, *sessions_);
  write_curves(s, {curve});
  write_trial_states(s, {row});
  epochs_recorded_[curve.key].insert({curve.attempt, curve.epoch});
  s.commit();
}

void Results::record_finished(const TrialRow& row, const std::vector<CurveRow>& curves,
                              const std::vector<PredictionSet>& predictions, const std::vector<ProblemRow>& problems) {
  Session s(path_, true, *sessions_, bytes_of(predictions) + static_cast<int64_t>(curves.size() + problems.size()) * 256);
  // The trial's own record is authoritative (a resumed trial carries epochs an earlier run wrote); epochs this
  // object recorded as they came are already there.
  const auto seen = epochs_recorded_.find(row.key);
  std::vector<CurveRow> unwritten;
  for (const auto& c : curves)
    if (seen == epochs_recorded_.end() || !seen->second.count({c.attempt, c.epoch})) unwritten.push_back(c);
  write_curves(s, unwritten);
  for (const auto& p : predictions) write_prediction(s, p);
  append_problems(s, problems);
  write_trial_states(s, {row});
  if (seen != epochs_recorded_.end()) epochs_recorded_.erase(seen);
  s.commit();
}

namespace {
PredictionSet read_set(const schema::PredictionIndexRow& r, hid_t samples, hid_t scores) {
  PredictionSet p;
  p.key = r.key;
  p.split = r.split;
  p.dataset = r.dataset;
  p.classes = r.classes;
  p.samples.resize(static_cast<size_t>(r.n));
  p.scores.resize(static_cast<size_t>(r.n * r.classes));
  h5::read_rows(samples, H5T_NATIVE_INT64, p.samples.data(), static_cast<hsize_t>(r.offset), static_cast<hsize_t>(r.n));
  h5::read_rows(scores, H5T_NATIVE_FLOAT, p.scores.data(), static_cast<hsize_t>(r.offset * r.classes),
                static_cast<hsize_t>(r.n * r.classes));
  return p;
}
}  // namespace

std::vector<PredictionSet> Results::all_predictions() const {
  Session s(path_, false, *sessions_);
  Handle index = h5::open_dataset(s.file, "predictions/index");
  Handle samples = h5::open_dataset(s.file, "predictions/samples");
  Handle scores = h5::open_dataset(s.file, "predictions/scores");
  std::vector<PredictionSet> out;
  std::map<std::pair<std::string, std::string>, size_t> at;
  for (const auto& r : schema::prediction_index().read_all(index)) {
    PredictionSet p = read_set(r, samples, scores);
    const auto k = std::make_pair(p.key, p.split);
    if (auto it = at.find(k); it != at.end()) out[it->second] = std::move(p);
    else at[k] = out.size(), out.push_back(std::move(p));
  }
  return out;
}

std::vector<PredictionSet> Results::predictions(const std::string& key) const {
  Session s(path_, false, *sessions_);
  Handle index = h5::open_dataset(s.file, "predictions/index");
  Handle samples = h5::open_dataset(s.file, "predictions/samples");
  Handle scores = h5::open_dataset(s.file, "predictions/scores");
  std::vector<PredictionSet> out;
  for (const auto& r : schema::prediction_index().read_all(index)) {
    if (r.key != key) continue;
    PredictionSet p = read_set(r, samples, scores);
    // Files of format 1 could hold a (key, split) twice: the last one wins.
    auto same = std::find_if(out.begin(), out.end(), [&](const PredictionSet& q) { return q.split == p.split; });
    if (same != out.end()) *same = std::move(p);
    else out.push_back(std::move(p));
  }
  return out;
}

std::vector<ModelRow> Results::models() const {
  Session s(path_, false, *sessions_);
  if (!h5::exists(s.file, "study/models")) return {};
  Handle d = h5::open_dataset(s.file, "study/models");
  return schema::models().read_all(d);
}

std::vector<DatasetRow> Results::datasets() const {
  Session s(path_, false, *sessions_);
  if (!h5::exists(s.file, "study/datasets")) return {};
  Handle d = h5::open_dataset(s.file, "study/datasets");
  return schema::datasets().read_all(d);
}

std::vector<SampleRow> Results::samples(const std::string& dataset) const {
  Session s(path_, false, *sessions_);
  if (!h5::exists(s.file, "samples/" + dataset)) return {};
  Handle d = h5::open_dataset(s.file, "samples/" + dataset);
  auto rows = schema::samples().read_all(d);
  const std::string recorded = h5::get_attr(d, kContentDigest);
  if (!recorded.empty() && schema::samples().digest(rows) != recorded)
    throw Error::input(path_ + ": /samples/" + dataset + " is damaged: its rows no longer match their content_sha256 "
                       "(" + recorded.substr(0, 12) + "); it was not modified — `xfer run` of the study writes it "
                       "again from the dataset");
  return rows;
}

std::string Results::spec_text() const {
  Session s(path_, false, *sessions_);
  return h5::read_string_dataset(s.file, "study/spec");
}

int64_t Results::begin_run(const RunRow& r) {
  Session s(path_, true, *sessions_);
  Handle d = h5::open_dataset(s.file, "runs");
  const int64_t row = static_cast<int64_t>(h5::rows(d));
  schema::runs().append(d, *schema::runs().in_file(d, path_, "runs"), {r}, path_, "runs");
  s.commit();
  return row;
}

void Results::end_run(int64_t run, const RunRow& r) {
  Session s(path_, true, *sessions_);
  Handle d = h5::open_dataset(s.file, "runs");
  schema::runs().write(d, *schema::runs().in_file(d, path_, "runs"), static_cast<hsize_t>(run), {r}, path_, "runs");
  s.commit();
}

std::vector<RunRow> Results::runs() const {
  Session s(path_, false, *sessions_);
  Handle d = h5::open_dataset(s.file, "runs");
  return schema::runs().read_all(d, *schema::runs().in_file(d, path_, "runs"));
}

void Results::write_merge_conflicts(const std::vector<MergeConflict>& rows) {
  Session s(path_, true, *sessions_);
  Handle g = h5::ensure_group(s.file, "merge");
  if (h5::exists(g, "conflicts")) H5Ldelete(g, "conflicts", H5P_DEFAULT);
  schema::merge_conflicts().create(g, "conflicts");
  Handle d = h5::open_dataset(g, "conflicts");
  schema::merge_conflicts().append(d, rows, path_, "merge/conflicts");
  s.commit();
}

void Results::write_analysis_table(const std::string& name, const std::vector<std::string>& columns,
                                   const std::vector<std::vector<double>>& numeric,
                                   const std::vector<std::string>& labels,
                                   const std::map<std::string, std::string>& attrs) {
  Session s(path_, true, *sessions_);
  Handle g = h5::ensure_group(s.file, "analysis");
  // A compound of one text label (64) and the numeric columns.
  const size_t width = 64, size = width + 8 * columns.size();
  h5::Compound c(size);
  c.text("label", 0, width);
  for (size_t i = 0; i < columns.size(); ++i) c.f64(columns[i].c_str(), width + 8 * i);
  std::vector<char> buf(size * labels.size(), 0);
  for (size_t r = 0; r < labels.size(); ++r) {
    std::memcpy(buf.data() + r * size, labels[r].data(), std::min(width, labels[r].size()));
    for (size_t i = 0; i < columns.size(); ++i)
      std::memcpy(buf.data() + r * size + width + 8 * i, &numeric[r][i], 8);
  }
  if (h5::exists(g, name)) H5Ldelete(g, name.c_str(), H5P_DEFAULT);
  h5::create_table(g, name, c.id(), 64, "");
  Handle d = h5::open_dataset(g, name);
  h5::append(d, c.id(), buf.data(), labels.size());
  for (const auto& [k, v] : attrs) h5::set_attr(d, k, v);
  s.commit();
}

}  // namespace xfer::store
