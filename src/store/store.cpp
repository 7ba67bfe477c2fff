#include "xfer/store/store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
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

#include "hdf5_util.hpp"
#include "xfer/core/build_info.hpp"
#include "xfer/core/digest.hpp"
#include "xfer/core/error.hpp"

namespace fs = std::filesystem;

namespace xfer::store {

using h5::get;
using h5::Handle;
using h5::put;

double now_unix() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
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

constexpr const char* kFormat = "xfer-results 1";

// ---- the tables' C layouts and HDF5 types --------------------------------------------------------------------
struct TrialC {
  char key[16], model[48], dataset[48], kind[12], metric[20], optimizer[8], wd_mode[8], augmentation[16],
      schedule[12], precision[8];
  double lr, weight_decay, imagenet_top1, cost_gflop;
  int64_t seed;
  int32_t epochs, batch_size, input_size, ranks_per_trial;
  char status[12];
  int32_t attempts, best_epoch, epochs_done, resumed_from;
  double val_metric, test_metric, started_at, finished_at, seconds;
  char host[64];
  int32_t rank_group, group_size;
  char device[48], slurm_job_id[24], slurm_array_task_id[12];
  int64_t order;
  char message[256];
};

#define XFER_TEXT(c, S, f) c.text(#f, offsetof(S, f), sizeof(S::f))
const h5::Compound& trial_type() {
  static const h5::Compound* c = new h5::Compound([] {
    h5::Compound c(sizeof(TrialC));
    XFER_TEXT(c, TrialC, key);
    XFER_TEXT(c, TrialC, model);
    XFER_TEXT(c, TrialC, dataset);
    XFER_TEXT(c, TrialC, kind);
    XFER_TEXT(c, TrialC, metric);
    XFER_TEXT(c, TrialC, optimizer);
    XFER_TEXT(c, TrialC, wd_mode);
    XFER_TEXT(c, TrialC, augmentation);
    XFER_TEXT(c, TrialC, schedule);
    XFER_TEXT(c, TrialC, precision);
    c.f64("lr", offsetof(TrialC, lr));
    c.f64("weight_decay", offsetof(TrialC, weight_decay));
    c.f64("imagenet_top1", offsetof(TrialC, imagenet_top1));
    c.f64("cost_gflop", offsetof(TrialC, cost_gflop));
    c.i64("seed", offsetof(TrialC, seed));
    c.i32("epochs", offsetof(TrialC, epochs));
    c.i32("batch_size", offsetof(TrialC, batch_size));
    c.i32("input_size", offsetof(TrialC, input_size));
    c.i32("ranks_per_trial", offsetof(TrialC, ranks_per_trial));
    XFER_TEXT(c, TrialC, status);
    c.i32("attempts", offsetof(TrialC, attempts));
    c.i32("best_epoch", offsetof(TrialC, best_epoch));
    c.i32("epochs_done", offsetof(TrialC, epochs_done));
    c.i32("resumed_from", offsetof(TrialC, resumed_from));
    c.f64("val_metric", offsetof(TrialC, val_metric));
    c.f64("test_metric", offsetof(TrialC, test_metric));
    c.f64("started_at", offsetof(TrialC, started_at));
    c.f64("finished_at", offsetof(TrialC, finished_at));
    c.f64("seconds", offsetof(TrialC, seconds));
    XFER_TEXT(c, TrialC, host);
    c.i32("rank_group", offsetof(TrialC, rank_group));
    c.i32("group_size", offsetof(TrialC, group_size));
    XFER_TEXT(c, TrialC, device);
    XFER_TEXT(c, TrialC, slurm_job_id);
    XFER_TEXT(c, TrialC, slurm_array_task_id);
    c.i64("order", offsetof(TrialC, order));
    XFER_TEXT(c, TrialC, message);
    return c;
  }());  // never destroyed: HDF5 closes its types at exit before static destructors would run
  return *c;
}

const char* kTrialsDescription =
    "One row per trial (key: first 16 hex digits of the SHA-256 of its resolved configuration). "
    "lr, weight_decay: as in the spec (AdamW with wd_mode over_lr is given weight_decay / lr). "
    "status: pending | running | done | failed | diverged | oom | interrupted. attempts: starts so far. "
    "best_epoch: 0-based epoch with the best validation metric (-1: none). resumed_from: the epoch its latest run "
    "resumed from a checkpoint (-1: from scratch). val_metric, test_metric: at best_epoch, "
    "in the metric's own units (fractions, kappa, AUC; NaN if unknown). started_at, finished_at: Unix time in "
    "seconds (UTC) of the latest attempt. seconds: wall-clock seconds summed over attempts. cost_gflop: the cost "
    "model's estimate (GFLOP). rank_group: the first world rank of the group that ran it; group_size: its ranks. "
    "slurm_job_id, slurm_array_task_id: SLURM's, empty outside SLURM. order: position in the spec's expansion.";

TrialC to_c(const TrialRow& r) {
  TrialC c{};
  put(c.key, r.key);
  put(c.model, r.model);
  put(c.dataset, r.dataset);
  put(c.kind, r.kind);
  put(c.metric, r.metric);
  put(c.optimizer, r.optimizer);
  put(c.wd_mode, r.wd_mode);
  put(c.augmentation, r.augmentation);
  put(c.schedule, r.schedule);
  put(c.precision, r.precision);
  c.lr = r.lr;
  c.weight_decay = r.weight_decay;
  c.imagenet_top1 = r.imagenet_top1;
  c.cost_gflop = r.cost_gflop;
  c.seed = r.seed;
  c.epochs = r.epochs;
  c.batch_size = r.batch_size;
  c.input_size = r.input_size;
  c.ranks_per_trial = r.ranks_per_trial;
  put(c.status, r.status);
  c.attempts = r.attempts;
  c.best_epoch = r.best_epoch;
  c.epochs_done = r.epochs_done;
  c.resumed_from = r.resumed_from;
  c.val_metric = r.val_metric;
  c.test_metric = r.test_metric;
  c.started_at = r.started_at;
  c.finished_at = r.finished_at;
  c.seconds = r.seconds;
  put(c.host, r.host);
  c.rank_group = r.rank_group;
  c.group_size = r.group_size;
  put(c.device, r.device);
  put(c.slurm_job_id, r.slurm_job_id);
  put(c.slurm_array_task_id, r.slurm_array_task_id);
  c.order = r.order;
  put(c.message, r.message);
  return c;
}

TrialRow from_c(const TrialC& c) {
  TrialRow r;
  r.key = get(c.key);
  r.model = get(c.model);
  r.dataset = get(c.dataset);
  r.kind = get(c.kind);
  r.metric = get(c.metric);
  r.optimizer = get(c.optimizer);
  r.wd_mode = get(c.wd_mode);
  r.augmentation = get(c.augmentation);
  r.schedule = get(c.schedule);
  r.precision = get(c.precision);
  r.lr = c.lr;
  r.weight_decay = c.weight_decay;
  r.imagenet_top1 = c.imagenet_top1;
  r.cost_gflop = c.cost_gflop;
  r.seed = c.seed;
  r.epochs = c.epochs;
  r.batch_size = c.batch_size;
  r.input_size = c.input_size;
  r.ranks_per_trial = c.ranks_per_trial;
  r.status = get(c.status);
  r.attempts = c.attempts;
  r.best_epoch = c.best_epoch;
  r.epochs_done = c.epochs_done;
  r.resumed_from = c.resumed_from;
  r.val_metric = c.val_metric;
  r.test_metric = c.test_metric;
  r.started_at = c.started_at;
  r.finished_at = c.finished_at;
  r.seconds = c.seconds;
  r.host = get(c.host);
  r.rank_group = c.rank_group;
  r.group_size = c.group_size;
  r.device = get(c.device);
  r.slurm_job_id = get(c.slurm_job_id);
  r.slurm_array_task_id = get(c.slurm_array_task_id);
  r.order = c.order;
  r.message = get(c.message);
  return r;
}

struct CurveC {
  char key[16];
  int32_t attempt, epoch;
  double lr, train_loss, val_metric, test_metric, val_loss, train_seconds, eval_seconds, images_per_second;
  int64_t peak_memory_bytes;
};
const h5::Compound& curve_type() {
  static const h5::Compound* c = new h5::Compound([] {
    h5::Compound c(sizeof(CurveC));
    XFER_TEXT(c, CurveC, key);
    c.i32("attempt", offsetof(CurveC, attempt));
    c.i32("epoch", offsetof(CurveC, epoch));
    for (auto [name, off] : {std::pair<const char*, size_t>{"lr", offsetof(CurveC, lr)},
                             {"train_loss", offsetof(CurveC, train_loss)},
                             {"val_metric", offsetof(CurveC, val_metric)},
                             {"test_metric", offsetof(CurveC, test_metric)},
                             {"val_loss", offsetof(CurveC, val_loss)},
                             {"train_seconds", offsetof(CurveC, train_seconds)},
                             {"eval_seconds", offsetof(CurveC, eval_seconds)},
                             {"images_per_second", offsetof(CurveC, images_per_second)}})
      c.f64(name, off);
    c.i64("peak_memory_bytes", offsetof(CurveC, peak_memory_bytes));
    return c;
  }());  // never destroyed: HDF5 closes its types at exit before static destructors would run
  return *c;
}
const char* kCurvesDescription =
    "One row per (trial key, attempt, epoch). epoch: 0-based. lr: learning rate of the epoch. train_loss: mean "
    "training loss (cross-entropy, or BCE for multi-label). val_metric, test_metric: the dataset's metric after the "
    "epoch (NaN: undefined, e.g. one class). val_loss: mean validation loss. train_seconds, eval_seconds: wall-clock "
    "seconds. images_per_second: training images per second over the whole rank group. peak_memory_bytes: peak "
    "CUDA memory allocated on the device, or the process's peak resident memory on CPU (bytes).";

struct ModelC {
  char name[48], weights[96], backbone[256], backbone_sha256[64];
  double imagenet_top1, gmacs;
  int32_t feature_dim;
};
const h5::Compound& model_type() {
  static const h5::Compound* c = new h5::Compound([] {
    h5::Compound c(sizeof(ModelC));
    XFER_TEXT(c, ModelC, name);
    XFER_TEXT(c, ModelC, weights);
    XFER_TEXT(c, ModelC, backbone);
    XFER_TEXT(c, ModelC, backbone_sha256);
    c.f64("imagenet_top1", offsetof(ModelC, imagenet_top1));
    c.f64("gmacs", offsetof(ModelC, gmacs));
    c.i32("feature_dim", offsetof(ModelC, feature_dim));
    return c;
  }());  // never destroyed: HDF5 closes its types at exit before static destructors would run
  return *c;
}

struct DatasetC {
  char name[48], kind[12], metric[20], root[256], validation[8], split_sha256[64];
  int64_t n_train, n_val, n_test, problems;
  int32_t classes;
  int8_t multilabel;
};
const h5::Compound& dataset_type() {
  static const h5::Compound* c = new h5::Compound([] {
    h5::Compound c(sizeof(DatasetC));
    XFER_TEXT(c, DatasetC, name);
    XFER_TEXT(c, DatasetC, kind);
    XFER_TEXT(c, DatasetC, metric);
    XFER_TEXT(c, DatasetC, root);
    XFER_TEXT(c, DatasetC, validation);
    XFER_TEXT(c, DatasetC, split_sha256);
    c.i64("n_train", offsetof(DatasetC, n_train));
    c.i64("n_val", offsetof(DatasetC, n_val));
    c.i64("n_test", offsetof(DatasetC, n_test));
    c.i64("problems", offsetof(DatasetC, problems));
    c.i32("classes", offsetof(DatasetC, classes));
    c.i8("multilabel", offsetof(DatasetC, multilabel));
    return c;
  }());  // never destroyed: HDF5 closes its types at exit before static destructors would run
  return *c;
}

struct SampleC {
  int64_t index;
  char id[96], split[8];
  int32_t label;
  char labels[128], group[8];
};
const h5::Compound& sample_type() {
  static const h5::Compound* c = new h5::Compound([] {
    h5::Compound c(sizeof(SampleC));
    c.i64("index", offsetof(SampleC, index));
    XFER_TEXT(c, SampleC, id);
    XFER_TEXT(c, SampleC, split);
    c.i32("label", offsetof(SampleC, label));
    XFER_TEXT(c, SampleC, labels);
    XFER_TEXT(c, SampleC, group);
    return c;
  }());  // never destroyed: HDF5 closes its types at exit before static destructors would run
  return *c;
}

struct ProblemC {
  char dataset[48], id[96], path[256], reason[256];
};
const h5::Compound& problem_type() {
  static const h5::Compound* c = new h5::Compound([] {
    h5::Compound c(sizeof(ProblemC));
    XFER_TEXT(c, ProblemC, dataset);
    XFER_TEXT(c, ProblemC, id);
    XFER_TEXT(c, ProblemC, path);
    XFER_TEXT(c, ProblemC, reason);
    return c;
  }());  // never destroyed: HDF5 closes its types at exit before static destructors would run
  return *c;
}

struct RunC {
  char host[64], slurm_job_id[24], git_commit[40], end_reason[64];
  double started_at, finished_at;
  int32_t ranks;
  int64_t trials_run;
};
const h5::Compound& run_type() {
  static const h5::Compound* c = new h5::Compound([] {
    h5::Compound c(sizeof(RunC));
    XFER_TEXT(c, RunC, host);
    XFER_TEXT(c, RunC, slurm_job_id);
    XFER_TEXT(c, RunC, git_commit);
    XFER_TEXT(c, RunC, end_reason);
    c.f64("started_at", offsetof(RunC, started_at));
    c.f64("finished_at", offsetof(RunC, finished_at));
    c.i32("ranks", offsetof(RunC, ranks));
    c.i64("trials_run", offsetof(RunC, trials_run));
    return c;
  }());  // never destroyed: HDF5 closes its types at exit before static destructors would run
  return *c;
}

struct PredIndexC {
  char key[16], split[8], dataset[48];
  int32_t classes;
  int64_t offset, n;
};
const h5::Compound& pred_index_type() {
  static const h5::Compound* c = new h5::Compound([] {
    h5::Compound c(sizeof(PredIndexC));
    XFER_TEXT(c, PredIndexC, key);
    XFER_TEXT(c, PredIndexC, split);
    XFER_TEXT(c, PredIndexC, dataset);
    c.i32("classes", offsetof(PredIndexC, classes));
    c.i64("offset", offsetof(PredIndexC, offset));
    c.i64("n", offsetof(PredIndexC, n));
    return c;
  }());  // never destroyed: HDF5 closes its types at exit before static destructors would run
  return *c;
}
#undef XFER_TEXT

template <class C>
std::vector<C> read_all(hid_t file, const std::string& name, const h5::Compound& type) {
  Handle d = h5::open_dataset(file, name);
  std::vector<C> rows(h5::rows(d));
  h5::read_rows(d, type.id(), rows.data(), 0, rows.size());
  return rows;
}

template <class C>
void replace_table(hid_t file, const std::string& name, const h5::Compound& type, const std::vector<C>& rows,
                   const std::string& description) {
  if (h5::exists(file, name)) H5Ldelete(file, name.c_str(), H5P_DEFAULT);
  h5::create_table(file, name, type.id(), 64, description);
  Handle d = h5::open_dataset(file, name);
  h5::append(d, type.id(), rows.data(), rows.size());
}

// An open file for the length of one event; flushed and closed after it.
struct Session {
  Handle file;
  Session(const std::string& path, bool write) {
    // A reader may meet the writer mid-event: retry for a few seconds.
    for (int attempt = 0;; ++attempt) {
      try {
        file = h5::open_file(path, write);
        return;
      } catch (const Error&) {
        if (attempt >= 50 || !fs::exists(path)) throw;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
  }
  ~Session() {
    if (file.valid()) H5Fflush(file, H5F_SCOPE_GLOBAL);
  }
};

void check_format(hid_t file, const std::string& path) {
  const std::string format = h5::get_attr(file, "format");
  if (format != kFormat)
    throw Error::input(path + ": not an xfer results file (attribute format is \"" + format + "\", expected \"" +
                       kFormat + "\"); it was not modified");
  for (const char* required : {"trials", "curves", "study", "predictions/index", "runs"})
    if (!h5::exists(file, required))
      throw Error::input(path + ": the results file lacks /" + std::string(required) +
                         " (truncated or corrupt); it was not modified — see README, \"Recovering a results file\"");
}

}  // namespace

// ---- the writer lock ------------------------------------------------------------------------------------------

namespace {
std::string hostname() {
  char h[256] = {0};
  gethostname(h, sizeof h - 1);
  return h;
}
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
    if (fd < 0 && errno != EEXIST)
      throw Error::input(path_ + ": cannot create the writer lock (" + std::string(std::strerror(errno)) +
                         "); is the results folder writable?");
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
    if (attempt == 0 && (dead_here || age > 900)) {
      spdlog::warn("{}: taking over a stale writer lock (held by {} pid {}, {}; last heartbeat {:.0f} s ago)", path_, h,
                   pid, dead_here ? "no longer running" : "silent", age);
      std::error_code ec;
      fs::remove(path_, ec);
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

WriterLock::~WriterLock() {
  std::error_code ec;
  fs::remove(path_, ec);
}

void WriterLock::heartbeat() {
  ::utimensat(AT_FDCWD, path_.c_str(), nullptr, 0);
}

// ---- Results ---------------------------------------------------------------------------------------------------

Results Results::open_or_create(const std::string& path, const std::string& study, const std::string& spec_text) {
  if (fs::exists(path)) {
    Results r = open_existing(path);
    return r;
  }
  if (!fs::path(path).parent_path().empty()) fs::create_directories(fs::path(path).parent_path());
  const std::string tmp = path + ".creating";
  std::error_code ec;
  fs::remove(tmp, ec);
  {
    Handle f = h5::create_file(tmp);
    h5::set_attr(f, "format", kFormat);
    h5::set_attr(f, "xfer_version", build_info::version());
    h5::set_attr(f, "study", study);
    h5::set_attr(f, "created_utc", iso_utc(now_unix()));
    h5::set_attr(f, "spec_sha256", sha256_hex(spec_text));
    h5::set_attr(f, "layout", "see README.md, 'The results file'; every table has a 'description' attribute");
    Handle s = h5::ensure_group(f, "study");
    h5::write_string_dataset(s, "spec", spec_text);
    h5::create_table(f, "trials", trial_type().id(), 256, kTrialsDescription);
    h5::create_table(f, "curves", curve_type().id(), 1024, kCurvesDescription);
    Handle p = h5::ensure_group(f, "predictions");
    h5::create_table(p, "index", pred_index_type().id(), 256,
                     "One row per (trial key, split): the selected epoch's predictions are samples[offset:offset+n] "
                     "(indices into /samples/<dataset>) and scores[offset*classes:(offset+n)*classes] (probabilities, "
                     "row-major n × classes: softmax, or sigmoid for multi-label).");
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
    h5::create_table(f, "problems", problem_type().id(), 256, "Samples skipped: the dataset, the sample id, the file, why.");
    h5::create_table(f, "runs", run_type().id(), 16,
                     "One row per `xfer run`: host of rank 0, SLURM job, git commit of xfer, start and end (Unix s), "
                     "ranks, trials it ran, and how it ended (finished, time limit, signal, error).");
    h5::ensure_group(f, "provenance");
    H5Fflush(f, H5F_SCOPE_GLOBAL);
  }
  fs::rename(tmp, path);
  return Results(path);
}

Results Results::open_existing(const std::string& path) {
  if (!fs::exists(path)) throw Error::input(path + ": no such results file");
  Session s(path, false);
  check_format(s.file, path);
  return Results(path);
}

void Results::write_study(const std::string& spec_text, const std::vector<ModelRow>& models,
                          const std::vector<DatasetRow>& datasets) {
  Session s(path_, true);
  Handle g = h5::ensure_group(s.file, "study");
  h5::write_string_dataset(g, "spec", spec_text);
  h5::set_attr(s.file, "spec_sha256", sha256_hex(spec_text));
  std::vector<ModelC> mc;
  for (const auto& m : models) {
    ModelC c{};
    put(c.name, m.name);
    put(c.weights, m.weights);
    put(c.backbone, m.backbone);
    put(c.backbone_sha256, m.backbone_sha256);
    c.imagenet_top1 = m.imagenet_top1;
    c.gmacs = m.gmacs;
    c.feature_dim = m.feature_dim;
    mc.push_back(c);
  }
  replace_table(s.file, "study/models", model_type(), mc,
                "The models of the latest run: ImageNet top-1 in percent (the x-axis), the exact weights, the "
                "backbone file and its SHA-256, GMACs per 224x224 image (cost model), feature dimension.");
  std::vector<DatasetC> dc;
  for (const auto& d : datasets) {
    DatasetC c{};
    put(c.name, d.name);
    put(c.kind, d.kind);
    put(c.metric, d.metric);
    put(c.root, d.root);
    put(c.validation, d.validation);
    put(c.split_sha256, d.split_sha256);
    c.n_train = d.n_train;
    c.n_val = d.n_val;
    c.n_test = d.n_test;
    c.problems = d.problems;
    c.classes = d.classes;
    c.multilabel = d.multilabel ? 1 : 0;
    dc.push_back(c);
  }
  replace_table(s.file, "study/datasets", dataset_type(), dc,
                "The datasets of the latest run: the metric, the validation mode (fixed | paper | holdout), split "
                "sizes, SHA-256 of the sample_id,split rows, skipped samples.");
}

void Results::write_samples(const std::string& dataset, const std::vector<SampleRow>& samples) {
  Session s(path_, true);
  Handle g = h5::ensure_group(s.file, "samples");
  std::vector<SampleC> rows;
  rows.reserve(samples.size());
  for (const auto& r : samples) {
    SampleC c{};
    c.index = r.index;
    put(c.id, r.id);
    put(c.split, r.split);
    c.label = r.label;
    put(c.labels, r.labels);
    put(c.group, r.group);
    rows.push_back(c);
  }
  replace_table(g.id(), dataset, sample_type(), rows,
                "The dataset's samples as this run split them: index (what predictions refer to), id as the dataset "
                "names it, split (train | val | test), label (-1 for multi-label), labels (space-separated), group.");
}

void Results::write_provenance(const std::map<std::string, std::string>& attrs) {
  Session s(path_, true);
  Handle g = h5::ensure_group(s.file, "provenance");
  for (const auto& [k, v] : attrs) h5::set_attr(g, k, v);
}

std::map<std::string, std::string> Results::provenance() const {
  Session s(path_, false);
  std::map<std::string, std::string> out;
  if (!h5::exists(s.file, "provenance")) return out;
  Handle g = h5::open_group(s.file, "provenance");
  for (const auto& n : h5::attr_names(g)) out[n] = h5::get_attr(g, n);
  return out;
}

void Results::add_problems(const std::vector<ProblemRow>& rows) {
  if (rows.empty()) return;
  Session s(path_, true);
  std::vector<ProblemC> c(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    put(c[i].dataset, rows[i].dataset);
    put(c[i].id, rows[i].id);
    put(c[i].path, rows[i].path);
    put(c[i].reason, rows[i].reason);
  }
  Handle d = h5::open_dataset(s.file, "problems");
  h5::append(d, problem_type().id(), c.data(), c.size());
}

std::vector<ProblemRow> Results::problems() const {
  Session s(path_, false);
  std::vector<ProblemRow> out;
  for (const auto& c : read_all<ProblemC>(s.file, "problems", problem_type()))
    out.push_back({get(c.dataset), get(c.id), get(c.path), get(c.reason)});
  return out;
}

std::vector<TrialRow> Results::trials() const {
  Session s(path_, false);
  const auto rows = read_all<TrialC>(s.file, "trials", trial_type());
  std::vector<TrialRow> out;
  out.reserve(rows.size());
  trial_row_.clear();
  for (size_t i = 0; i < rows.size(); ++i) {
    out.push_back(from_c(rows[i]));
    trial_row_[out.back().key] = static_cast<int64_t>(i);
  }
  trial_index_ = true;
  return out;
}

std::vector<Results::LedgerEntry> Results::ledger() const {
  // A memory type with three of the table's fields: HDF5 matches them by name and reads nothing else.
  struct L {
    char key[16];
    char status[12];
    int32_t attempts;
  };
  static const h5::Compound* type = new h5::Compound([] {
    h5::Compound c(sizeof(L));
    c.text("key", offsetof(L, key), sizeof(L::key));
    c.text("status", offsetof(L, status), sizeof(L::status));
    c.i32("attempts", offsetof(L, attempts));
    return c;
  }());
  Session s(path_, false);
  const auto rows = read_all<L>(s.file, "trials", *type);
  std::vector<LedgerEntry> out(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) out[i] = {get(rows[i].key), get(rows[i].status), rows[i].attempts};
  return out;
}

size_t Results::add_trials(const std::vector<TrialRow>& rows) {
  if (!trial_index_) trials();
  std::vector<TrialC> fresh;
  for (const auto& r : rows)
    if (!trial_row_.count(r.key)) fresh.push_back(to_c(r));
  if (fresh.empty()) return 0;
  Session s(path_, true);
  Handle d = h5::open_dataset(s.file, "trials");
  const int64_t first = static_cast<int64_t>(h5::rows(d));
  h5::append(d, trial_type().id(), fresh.data(), fresh.size());
  for (size_t i = 0; i < fresh.size(); ++i) trial_row_[get(fresh[i].key)] = first + static_cast<int64_t>(i);
  return fresh.size();
}

void Results::update_trials(const std::vector<TrialRow>& rows) {
  if (rows.empty()) return;
  if (!trial_index_) trials();
  Session s(path_, true);
  Handle d = h5::open_dataset(s.file, "trials");
  for (const auto& r : rows) {
    auto it = trial_row_.find(r.key);
    if (it == trial_row_.end()) throw Error(path_ + ": no trial " + r.key + " to update");
    const TrialC c = to_c(r);
    h5::write_rows(d, trial_type().id(), &c, static_cast<hsize_t>(it->second), 1);
  }
}

void Results::update_trial(const TrialRow& row) { update_trials({row}); }

namespace {
CurveC curve_c(const CurveRow& r) {
  CurveC c{};
  put(c.key, r.key);
  c.attempt = r.attempt;
  c.epoch = r.epoch;
  c.lr = r.lr;
  c.train_loss = r.train_loss;
  c.val_metric = r.val_metric;
  c.test_metric = r.test_metric;
  c.val_loss = r.val_loss;
  c.train_seconds = r.train_seconds;
  c.eval_seconds = r.eval_seconds;
  c.images_per_second = r.images_per_second;
  c.peak_memory_bytes = r.peak_memory_bytes;
  return c;
}
}  // namespace

void Results::put_curves(const std::vector<CurveRow>& rows) {
  if (rows.empty()) return;
  if (!curve_index_) curves();
  Session s(path_, true);
  Handle d = h5::open_dataset(s.file, "curves");
  std::vector<CurveC> fresh;
  int64_t next = static_cast<int64_t>(h5::rows(d));
  for (const auto& r : rows) {
    const CurveC c = curve_c(r);
    const auto id = std::make_tuple(r.key, r.attempt, r.epoch);
    if (auto it = curve_row_.find(id); it != curve_row_.end()) {
      h5::write_rows(d, curve_type().id(), &c, static_cast<hsize_t>(it->second), 1);
    } else {
      curve_row_[id] = next++;
      fresh.push_back(c);
    }
  }
  h5::append(d, curve_type().id(), fresh.data(), fresh.size());
}

void Results::put_predictions(const std::vector<PredictionSet>& sets) {
  for (const auto& p : sets) put_predictions(p);
}

std::vector<PredictionSet> Results::all_predictions() const {
  Session s(path_, false);
  std::vector<PredictionSet> out;
  std::map<std::pair<std::string, std::string>, size_t> at;
  const auto rows = read_all<PredIndexC>(s.file, "predictions/index", pred_index_type());
  Handle samples = h5::open_dataset(s.file, "predictions/samples");
  Handle scores = h5::open_dataset(s.file, "predictions/scores");
  for (const auto& r : rows) {
    PredictionSet p;
    p.key = get(r.key);
    p.split = get(r.split);
    p.dataset = get(r.dataset);
    p.classes = r.classes;
    p.samples.resize(static_cast<size_t>(r.n));
    p.scores.resize(static_cast<size_t>(r.n * r.classes));
    h5::read_rows(samples, H5T_NATIVE_INT64, p.samples.data(), static_cast<hsize_t>(r.offset), static_cast<hsize_t>(r.n));
    h5::read_rows(scores, H5T_NATIVE_FLOAT, p.scores.data(), static_cast<hsize_t>(r.offset * r.classes),
                  static_cast<hsize_t>(r.n * r.classes));
    const auto k = std::make_pair(p.key, p.split);
    if (auto it = at.find(k); it != at.end()) out[it->second] = std::move(p);
    else at[k] = out.size(), out.push_back(std::move(p));
  }
  return out;
}

void Results::put_curve(const CurveRow& r) {
  if (!curve_index_) curves();
  CurveC c{};
  put(c.key, r.key);
  c.attempt = r.attempt;
  c.epoch = r.epoch;
  c.lr = r.lr;
  c.train_loss = r.train_loss;
  c.val_metric = r.val_metric;
  c.test_metric = r.test_metric;
  c.val_loss = r.val_loss;
  c.train_seconds = r.train_seconds;
  c.eval_seconds = r.eval_seconds;
  c.images_per_second = r.images_per_second;
  c.peak_memory_bytes = r.peak_memory_bytes;
  Session s(path_, true);
  Handle d = h5::open_dataset(s.file, "curves");
  const auto id = std::make_tuple(r.key, r.attempt, r.epoch);
  if (auto it = curve_row_.find(id); it != curve_row_.end()) {
    h5::write_rows(d, curve_type().id(), &c, static_cast<hsize_t>(it->second), 1);
  } else {
    const int64_t row = static_cast<int64_t>(h5::rows(d));
    h5::append(d, curve_type().id(), &c, 1);
    curve_row_[id] = row;
  }
}

std::vector<CurveRow> Results::curves() const {
  Session s(path_, false);
  const auto rows = read_all<CurveC>(s.file, "curves", curve_type());
  std::vector<CurveRow> out;
  out.reserve(rows.size());
  curve_row_.clear();
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& c = rows[i];
    out.push_back({get(c.key), c.attempt, c.epoch, c.lr, c.train_loss, c.val_metric, c.test_metric, c.val_loss,
                   c.train_seconds, c.eval_seconds, c.images_per_second, c.peak_memory_bytes});
    curve_row_[std::make_tuple(out.back().key, c.attempt, c.epoch)] = static_cast<int64_t>(i);
  }
  curve_index_ = true;
  return out;
}

void Results::put_predictions(const PredictionSet& p) {
  Session s(path_, true);
  Handle index = h5::open_dataset(s.file, "predictions/index");
  Handle samples = h5::open_dataset(s.file, "predictions/samples");
  Handle scores = h5::open_dataset(s.file, "predictions/scores");
  PredIndexC row{};
  put(row.key, p.key);
  put(row.split, p.split);
  put(row.dataset, p.dataset);
  row.classes = p.classes;
  row.offset = static_cast<int64_t>(h5::rows(samples));
  row.n = static_cast<int64_t>(p.samples.size());
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
  const auto existing = read_all<PredIndexC>(s.file, "predictions/index", pred_index_type());
  for (size_t i = 0; i < existing.size(); ++i)
    if (get(existing[i].key) == p.key && get(existing[i].split) == p.split) {
      h5::write_rows(index, pred_index_type().id(), &row, i, 1);
      return;
    }
  h5::append(index, pred_index_type().id(), &row, 1);
}

std::vector<PredictionSet> Results::predictions(const std::string& key) const {
  Session s(path_, false);
  std::vector<PredictionSet> out;
  const auto rows = read_all<PredIndexC>(s.file, "predictions/index", pred_index_type());
  Handle samples = h5::open_dataset(s.file, "predictions/samples");
  Handle scores = h5::open_dataset(s.file, "predictions/scores");
  for (const auto& r : rows) {
    if (get(r.key) != key) continue;
    PredictionSet p;
    p.key = key;
    p.split = get(r.split);
    p.dataset = get(r.dataset);
    p.classes = r.classes;
    p.samples.resize(static_cast<size_t>(r.n));
    p.scores.resize(static_cast<size_t>(r.n * r.classes));
    h5::read_rows(samples, H5T_NATIVE_INT64, p.samples.data(), static_cast<hsize_t>(r.offset), static_cast<hsize_t>(r.n));
    h5::read_rows(scores, H5T_NATIVE_FLOAT, p.scores.data(), static_cast<hsize_t>(r.offset * r.classes),
                  static_cast<hsize_t>(r.n * r.classes));
    // A re-run of the same trial appends a newer set: the last one wins.
    auto same = std::find_if(out.begin(), out.end(), [&](const PredictionSet& q) { return q.split == p.split; });
    if (same != out.end()) *same = std::move(p);
    else out.push_back(std::move(p));
  }
  return out;
}

std::vector<ModelRow> Results::models() const {
  Session s(path_, false);
  std::vector<ModelRow> out;
  if (!h5::exists(s.file, "study/models")) return out;
  for (const auto& c : read_all<ModelC>(s.file, "study/models", model_type()))
    out.push_back({get(c.name), get(c.weights), get(c.backbone), get(c.backbone_sha256), c.imagenet_top1, c.gmacs,
                   c.feature_dim});
  return out;
}

std::vector<DatasetRow> Results::datasets() const {
  Session s(path_, false);
  std::vector<DatasetRow> out;
  if (!h5::exists(s.file, "study/datasets")) return out;
  for (const auto& c : read_all<DatasetC>(s.file, "study/datasets", dataset_type())) {
    DatasetRow r;
    r.name = get(c.name);
    r.kind = get(c.kind);
    r.metric = get(c.metric);
    r.root = get(c.root);
    r.validation = get(c.validation);
    r.split_sha256 = get(c.split_sha256);
    r.n_train = c.n_train;
    r.n_val = c.n_val;
    r.n_test = c.n_test;
    r.problems = c.problems;
    r.classes = c.classes;
    r.multilabel = c.multilabel != 0;
    out.push_back(r);
  }
  return out;
}

std::vector<SampleRow> Results::samples(const std::string& dataset) const {
  Session s(path_, false);
  std::vector<SampleRow> out;
  if (!h5::exists(s.file, "samples/" + dataset)) return out;
  for (const auto& c : read_all<SampleC>(s.file, "samples/" + dataset, sample_type())) {
    SampleRow r;
    r.index = c.index;
    r.id = get(c.id);
    r.split = get(c.split);
    r.label = c.label;
    r.labels = get(c.labels);
    r.group = get(c.group);
    out.push_back(r);
  }
  return out;
}

std::string Results::spec_text() const {
  Session s(path_, false);
  return h5::read_string_dataset(s.file, "study/spec");
}

int64_t Results::begin_run(const RunRow& r) {
  Session s(path_, true);
  Handle d = h5::open_dataset(s.file, "runs");
  RunC c{};
  put(c.host, r.host);
  put(c.slurm_job_id, r.slurm_job_id);
  put(c.git_commit, r.git_commit);
  put(c.end_reason, r.end_reason);
  c.started_at = r.started_at;
  c.finished_at = r.finished_at;
  c.ranks = r.ranks;
  c.trials_run = r.trials_run;
  const int64_t row = static_cast<int64_t>(h5::rows(d));
  h5::append(d, run_type().id(), &c, 1);
  return row;
}

void Results::end_run(int64_t run, const RunRow& r) {
  Session s(path_, true);
  Handle d = h5::open_dataset(s.file, "runs");
  RunC c{};
  put(c.host, r.host);
  put(c.slurm_job_id, r.slurm_job_id);
  put(c.git_commit, r.git_commit);
  put(c.end_reason, r.end_reason);
  c.started_at = r.started_at;
  c.finished_at = r.finished_at;
  c.ranks = r.ranks;
  c.trials_run = r.trials_run;
  h5::write_rows(d, run_type().id(), &c, static_cast<hsize_t>(run), 1);
}

std::vector<RunRow> Results::runs() const {
  Session s(path_, false);
  std::vector<RunRow> out;
  for (const auto& c : read_all<RunC>(s.file, "runs", run_type()))
    out.push_back({get(c.host), get(c.slurm_job_id), get(c.git_commit), get(c.end_reason), c.started_at, c.finished_at,
                   c.ranks, c.trials_run});
  return out;
}

void Results::write_merge_conflicts(const std::vector<MergeConflict>& rows) {
  struct C {
    char key[16], kept_from[256], other[256], kept_status[16], other_status[16];
    double kept_test_metric, other_test_metric, kept_val_metric, other_val_metric;
    char reason[512];
  };
  h5::Compound type(sizeof(C));
  type.text("key", offsetof(C, key), sizeof(C::key));
  type.text("kept_from", offsetof(C, kept_from), sizeof(C::kept_from));
  type.text("other", offsetof(C, other), sizeof(C::other));
  type.text("kept_status", offsetof(C, kept_status), sizeof(C::kept_status));
  type.text("other_status", offsetof(C, other_status), sizeof(C::other_status));
  type.f64("kept_test_metric", offsetof(C, kept_test_metric));
  type.f64("other_test_metric", offsetof(C, other_test_metric));
  type.f64("kept_val_metric", offsetof(C, kept_val_metric));
  type.f64("other_val_metric", offsetof(C, other_val_metric));
  type.text("reason", offsetof(C, reason), sizeof(C::reason));
  std::vector<C> data(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    put(data[i].key, rows[i].key);
    put(data[i].kept_from, rows[i].kept_from);
    put(data[i].other, rows[i].other);
    put(data[i].kept_status, rows[i].kept_status);
    put(data[i].other_status, rows[i].other_status);
    data[i].kept_test_metric = rows[i].kept_test_metric;
    data[i].other_test_metric = rows[i].other_test_metric;
    data[i].kept_val_metric = rows[i].kept_val_metric;
    data[i].other_val_metric = rows[i].other_val_metric;
    put(data[i].reason, rows[i].reason);
  }
  Session s(path_, true);
  Handle g = h5::ensure_group(s.file, "merge");
  if (h5::exists(g, "conflicts")) H5Ldelete(g, "conflicts", H5P_DEFAULT);
  h5::create_table(g, "conflicts", type.id(), 64,
                   "Trial keys found in more than one shard with different results at the same stage (both done, "
                   "say, with different metrics): the shard whose row the merged file keeps (the first given), the "
                   "other shard, and both rows' status, test and validation metric. Nothing is averaged or dropped "
                   "silently: decide, then rerun the trial if neither is trusted.");
  Handle d = h5::open_dataset(g, "conflicts");
  h5::append(d, type.id(), data.data(), data.size());
}

void Results::write_analysis_table(const std::string& name, const std::vector<std::string>& columns,
                                   const std::vector<std::vector<double>>& numeric,
                                   const std::vector<std::string>& labels,
                                   const std::map<std::string, std::string>& attrs) {
  Session s(path_, true);
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
}

}  // namespace xfer::store
