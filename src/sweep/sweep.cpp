// The sweep: ledger, coordinator and workers.
#include "xfer/sweep/sweep.hpp"

#include <mpi.h>
#include <unistd.h>

#include <boost/mpi/communicator.hpp>
#include <boost/mpi/collectives.hpp>
#include <boost/optional.hpp>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <iostream>
#include <map>
#include <numeric>
#include <unordered_map>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "messages.hpp"
#include "xfer/core/build_info.hpp"
#include "xfer/core/digest.hpp"
#include "xfer/core/error.hpp"
#include "xfer/core/stop.hpp"
#include "xfer/data/dataset.hpp"
#include "xfer/grid/grid.hpp"
#include "xfer/metrics/metrics.hpp"
#include "xfer/spec/spec.hpp"
#include "xfer/store/store.hpp"
#include "xfer/train/trial.hpp"

namespace fs = std::filesystem;
namespace bmpi = boost::mpi;

namespace xfer::sweep {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

using Clock = std::chrono::steady_clock;

std::string hostname() {
  char h[256] = {0};
  gethostname(h, sizeof h - 1);
  return h;
}

std::string env_or(const char* name, const std::string& dflt = "") {
  const char* v = std::getenv(name);
  return v ? v : dflt;
}

// Waits for a message without spinning: probes, then sleeps, backing off to 50 ms.
boost::optional<bmpi::status> wait_probe(const bmpi::communicator& c, int source, int tag,
                                         const std::function<bool()>& give_up) {
  int sleep_us = 200;
  while (true) {
    if (auto s = c.iprobe(source, tag)) return s;
    if (give_up && give_up()) return boost::none;
    std::this_thread::sleep_for(std::chrono::microseconds(sleep_us));
    sleep_us = std::min(50000, sleep_us * 2);
  }
}

}  // namespace

std::string results_path(const RunOptions& o, const std::string& spec_results) {
  if (!o.results.empty()) return o.results;
  if (o.shards <= 1) return spec_results;
  const fs::path p(spec_results);
  return (p.parent_path() / (p.stem().string() + fmt::format(".shard-{}-of-{}", o.shard, o.shards) + p.extension().string())).string();
}

double parse_slurm_time(const std::string& t) {
  if (t == "UNLIMITED" || t == "INFINITE") return 0;
  int days = 0;
  std::string rest = t;
  if (auto dash = t.find('-'); dash != std::string::npos) {
    const std::string d = t.substr(0, dash);
    if (d.empty() || d.find_first_not_of("0123456789") != std::string::npos) return -1;
    days = std::stoi(d);
    rest = t.substr(dash + 1);
  }
  std::vector<int> parts;
  std::string cur;
  for (char c : rest + ":") {
    if (c == ':') {
      if (cur.empty() || cur.size() > 4 || cur.find_first_not_of("0123456789") != std::string::npos) return -1;
      parts.push_back(std::stoi(cur));
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (parts.empty() || parts.size() > 3) return -1;
  const bool with_days = t.find('-') != std::string::npos;
  double s = 0;
  if (!with_days) {
    if (parts.size() == 1) s = parts[0] * 60.0;                                        // minutes
    else if (parts.size() == 2) s = parts[0] * 60.0 + parts[1];                        // MM:SS
    else s = parts[0] * 3600.0 + parts[1] * 60.0 + parts[2];                           // HH:MM:SS
  } else {
    if (parts.size() == 1) s = parts[0] * 3600.0;                                      // D-HH
    else if (parts.size() == 2) s = parts[0] * 3600.0 + parts[1] * 60.0;               // D-HH:MM
    else s = parts[0] * 3600.0 + parts[1] * 60.0 + parts[2];                           // D-HH:MM:SS
  }
  return days * 86400.0 + s;
}

double slurm_end_time() {
  if (const char* v = std::getenv("SLURM_JOB_END_TIME"); v && *v) return std::atof(v);
  const char* job = std::getenv("SLURM_JOB_ID");
  if (!job || !*job) return 0;
  // squeue's %L: the time left, in SLURM's format.
  const std::string cmd = "squeue -h -j " + std::to_string(std::atol(job)) + " -o %L 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return 0;
  char buf[64] = {0};
  const bool got = std::fgets(buf, sizeof buf, p) != nullptr;
  pclose(p);
  if (!got) return 0;
  std::string left(buf);
  while (!left.empty() && (left.back() == '\n' || left.back() == ' ')) left.pop_back();
  const double s = parse_slurm_time(left);
  return s > 0 ? store::now_unix() + s : 0;
}

namespace {

// ---- the ledger ----------------------------------------------------------------------------------------------
enum class Action { done, final, resume, retry, fresh, exhausted };

Action decide(const store::TrialRow* row, int max_attempts) {
  if (!row || row->status == "pending") return Action::fresh;
  const std::string& s = row->status;
  if (s == "done") return Action::done;
  if (s == "diverged") return Action::final;
  if (s == "running" || s == "interrupted") return Action::resume;  // orphaned by a killed job, or preempted
  if (s == "failed" || s == "oom") return row->attempts < max_attempts ? Action::retry : Action::exhausted;
  return Action::fresh;
}

const char* action_name(Action a) {
  switch (a) {
    case Action::done: return "done";
    case Action::final: return "diverged (final)";
    case Action::resume: return "resume";
    case Action::retry: return "retry";
    case Action::fresh: return "new";
    case Action::exhausted: return "failed (attempts exhausted)";
  }
  return "?";
}

store::TrialRow fresh_row(const spec::Spec& spec, const grid::Trial& t, double cost) {
  const auto& c = t.config;
  store::TrialRow r;
  r.key = t.key.str();
  r.model = c.model;
  r.dataset = c.dataset;
  r.kind = c.kind;
  r.metric = c.metric;
  r.optimizer = c.optimizer;
  r.wd_mode = c.wd_mode;
  r.augmentation = c.augmentation;
  r.schedule = c.schedule;
  r.precision = c.precision;
  r.lr = c.lr;
  r.weight_decay = c.weight_decay;
  r.imagenet_top1 = spec.models[t.model_index].imagenet_top1;
  r.cost_gflop = cost;
  r.seed = c.seed;
  r.epochs = c.epochs;
  r.batch_size = c.batch_size;
  r.input_size = c.input_size;
  r.ranks_per_trial = c.ranks_per_trial;
  r.weights = c.weights;
  r.crop_pct = c.crop_pct;
  r.mean = c.mean;
  r.std = c.std;
  r.flips = c.flips;
  r.bgr_quirk = c.bgr_quirk;
  r.validation = c.validation;
  r.heldout_fraction = c.heldout_fraction;
  r.heldout_seed = c.heldout_seed;
  r.val_fraction = c.val_fraction;
  r.val_seed = c.val_seed;
  r.limit_train = c.limit_train;
  r.limit_test = c.limit_test;
  r.melanoma_2019 = c.melanoma_2019;
  r.manifest = c.manifest;
  r.split_file = c.split_file;
  r.momentum = c.momentum;
  r.nesterov = c.nesterov;
  r.beta1 = c.beta1;
  r.beta2 = c.beta2;
  r.eps = c.eps;
  r.step_milestones.assign(c.step_milestones.begin(), c.step_milestones.end());
  r.step_gamma = c.step_gamma;
  r.warmup_epochs = c.warmup_epochs;
  r.label_smoothing = c.label_smoothing;
  r.canonical = c.canonical_text();
  r.status = "pending";
  r.val_metric = r.test_metric = kNaN;
  r.order = static_cast<int64_t>(t.order);
  return r;
}

// Everything every rank derives identically from the spec.
struct Shared {
  spec::Spec spec;
  std::vector<grid::Trial> trials;
};

std::string resolved_or_throw(const spec::SpecPath& p, const std::string& what) {
  if (!p.resolved())
    throw Error::input(p.where.str() + ": " + what + " \"" + p.raw + "\" names ${" + p.unset_var +
                       "}, which is unset — set it before `xfer run` (xfer plan lists every such path)");
  return p.path;
}

// ---- the worker ----------------------------------------------------------------------------------------------
class Worker {
 public:
  Worker(const Shared& sh, const RunOptions& o, MpiRuntime& mpi, bmpi::communicator ctrl)
      : sh_(sh), o_(o), mpi_(mpi), ctrl_(std::move(ctrl)) {}

  void loop() {
    report(Report::ready, -1);
    while (true) {
      auto st = wait_probe(ctrl_, 0, kToWorker, nullptr);
      Order order;
      ctrl_.recv(0, kToWorker, order);
      if (order.kind == Order::shutdown) break;
      run(order);
    }
    // Stop notices that arrived after their trial ended.
    while (auto st = ctrl_.iprobe(0, kStop)) {
      int64_t ignored;
      ctrl_.recv(0, kStop, ignored);
    }
  }

 private:
  void report(int kind, int64_t trial, Report r = {}) {
    r.kind = kind;
    r.rank = mpi_.rank();
    r.trial = trial;
    r.host = hostname();
    r.message = stop_requested().load() && kind == Report::ready ? "stop requested" : r.message;
    ctrl_.send(0, kToCoordinator, r);
  }

  const data::Dataset& dataset(size_t index) {
    auto it = datasets_.find(index);
    if (it == datasets_.end()) it = datasets_.emplace(index, data::open(sh_.spec, sh_.spec.datasets[index])).first;
    return it->second;
  }

  void run(const Order& order) {
    const grid::Trial& trial = sh_.trials[static_cast<size_t>(order.trial)];
    const bool leader = order.members.front() == mpi_.rank();
    std::unique_ptr<MpiGroup> group;
    if (order.members.size() > 1) group = MpiGroup::of(std::vector<int>(order.members.begin(), order.members.end()), order.group_tag);
    if (leader) report(Report::started, order.trial);

    // A companion thread: heartbeats for the coordinator (leader), and the coordinator's stop notice (everyone).
    std::atomic<bool> done{false};
    std::thread companion([&] {
      auto last = Clock::now();
      while (!done.load()) {
        if (auto st = ctrl_.iprobe(0, kStop)) {
          int64_t which = -1;
          ctrl_.recv(0, kStop, which);
          if (which == order.trial || which < 0) stop_requested().store(true);
        }
        if (leader && std::chrono::duration<double>(Clock::now() - last).count() >= o_.heartbeat) {
          report(Report::heartbeat, order.trial);
          last = Clock::now();
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    });

    Report fin;
    if (o_.simulate > 0) {
      simulate(trial, order, fin);
    } else {
      try {
        train(trial, order, group.get(), leader, fin);
      } catch (const std::exception& e) {  // e.g. the dataset cannot be opened on this node
        fin.status = "failed";
        fin.message = e.what();
      }
    }
    done.store(true);
    companion.join();
    group.reset();
    if (leader) report(Report::finished, order.trial, std::move(fin));
    else report(Report::ready, -1);
  }

  void simulate(const grid::Trial& trial, const Order& order, Report& fin) {
    // Benchmark executor: sleep for the trial's cost, in slices so a stop is honoured.
    const double cost = grid::trial_cost_gflop(trial.config, std::max(1e-9, sh_.spec.models[trial.model_index].gmacs),
                                               grid::catalog_size(sh_.spec, sh_.spec.datasets[trial.dataset_index]));
    const auto began = Clock::now();
    const auto until = began + std::chrono::duration_cast<Clock::duration>(
                                   std::chrono::duration<double>(cost * o_.simulate * 1e-6));
    while (Clock::now() < until) {
      if (stop_requested().load()) {
        fin.status = "interrupted";
        fin.message = "simulated trial stopped";
        return;
      }
      std::this_thread::sleep_for(std::min<Clock::duration>(until - Clock::now(), std::chrono::milliseconds(20)));
    }
    fin.status = "done";
    fin.message = "simulated";
    fin.seconds = std::chrono::duration<double>(Clock::now() - began).count();
    fin.best_val = fin.test_at_best = kNaN;
    (void)order;
  }

  void train(const grid::Trial& trial, const Order& order, MpiGroup* group, bool leader, Report& fin) {
    const data::Dataset& d = dataset(trial.dataset_index);
    train::Environment env = train::environment_for(sh_.spec, trial);
    env.group = group;
    env.local_rank = mpi_.local_rank();
    env.device = o_.device;
    env.threads = o_.threads;
    env.stop = &stop_requested();
    env.remove_checkpoints = false;  // the coordinator removes them once the result is recorded
    if (order.deadline_unix > 0)
      env.deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                        std::chrono::duration<double>(order.deadline_unix - store::now_unix()));
    if (leader)
      env.on_epoch = [&](const train::EpochRecord& e) {
        Report r;
        r.epoch_record = e;
        report(Report::epoch, order.trial, std::move(r));
      };
    const train::Result res = train::run(trial.config, d, env);
    fin.status = train::status_name(res.status);
    fin.message = res.message;
    fin.best_epoch = res.best_epoch;
    fin.best_val = res.best_val;
    fin.test_at_best = res.test_at_best;
    fin.seconds = res.seconds;
    fin.resumed_from_epoch = res.resumed_from_epoch;
    fin.device = res.device;
    fin.epochs = res.epochs;
    fin.classes = res.val.classes;
    fin.val_samples = res.val.samples;
    fin.val_scores = res.val.scores;
    fin.test_samples = res.test.samples;
    fin.test_scores = res.test.scores;
    for (const auto& p : res.data_problems) fin.problems.push_back({p.id, p.path, p.reason});
  }

  const Shared& sh_;
  const RunOptions& o_;
  MpiRuntime& mpi_;
  bmpi::communicator ctrl_;
  std::map<size_t, data::Dataset> datasets_;
};

// ---- the coordinator -----------------------------------------------------------------------------------------
class Coordinator {
 public:
  struct Job {
    int64_t trial;
    Action action;
  };

  Coordinator(const Shared& sh, const RunOptions& o, MpiRuntime& mpi, bmpi::communicator ctrl, store::Results& results,
              store::WriterLock& lock, std::vector<store::TrialRow> rows, std::vector<double> cost,
              std::vector<Job> jobs, double deadline_unix)
      : sh_(sh), o_(o), mpi_(mpi), ctrl_(std::move(ctrl)), results_(results), lock_(lock), rows_(std::move(rows)),
        cost_(std::move(cost)), deadline_(deadline_unix) {
    for (const auto& j : jobs) {
      pending_[sh_.trials[static_cast<size_t>(j.trial)].config.ranks_per_trial].insert({-cost_[j.trial], j.trial});
      action_[j.trial] = j.action;
      remaining_cost_ += cost_[j.trial];
    }
    total_jobs_ = jobs.size();
    started_ = Clock::now();
  }

  std::string end_reason() const { return end_reason_; }
  int64_t trials_run() const { return finished_; }
  std::exception_ptr error() const { return error_; }

  void operator()() {
    try {
      loop();
    } catch (...) {
      error_ = std::current_exception();
      end_reason_ = "error";
      // Let every worker go home; those in a trial get the stop first.
      for (auto& [t, r] : running_)
        for (int m : r.members) ctrl_.send(m, kStop, t);
      for (int r = 0; r < mpi_.size(); ++r) {
        Order o;
        o.kind = Order::shutdown;
        ctrl_.send(r, kToWorker, o);
      }
    }
  }

 private:
  struct Running {
    std::vector<int> members;
    Clock::time_point last_seen;
    bool stop_sent = false;
  };

  void loop() {
    auto last_beat = Clock::now();
    while (true) {
      const auto now = Clock::now();
      if (std::chrono::duration<double>(now - last_beat).count() > 60) lock_.heartbeat(), last_beat = now;
      watch_time_and_signals();
      check_hung();
      if (!stopping_) dispatch();
      progress(false);
      const size_t alive = static_cast<size_t>(mpi_.size()) - hung_.size();
      const bool nothing_left = stopping_ || pending_count() == 0;
      if (nothing_left && running_.empty() && idle_.size() >= alive) break;
      if (stopping_ && running_.empty() && idle_.size() < alive && stop_time_ &&
          std::chrono::duration<double>(now - *stop_time_).count() > o_.grace) {
        spdlog::error("{} rank(s) did not report back within {} s of the stop", alive - idle_.size(), o_.grace);
        break;
      }
      auto st = wait_probe(ctrl_, bmpi::any_source, kToCoordinator, [&] {
        return std::chrono::duration<double>(Clock::now() - now).count() > 1.0;  // wake up for housekeeping
      });
      if (!st) continue;
      Report r;
      ctrl_.recv(st->source(), kToCoordinator, r);
      handle(std::move(r));
    }
    for (int r : idle_) {
      Order o;
      o.kind = Order::shutdown;
      ctrl_.send(r, kToWorker, o);
    }
    if (end_reason_.empty()) end_reason_ = "finished";
    progress(true);
  }

  size_t pending_count() const {
    size_t n = 0;
    for (const auto& [g, s] : pending_) n += s.size();
    return n;
  }

  void watch_time_and_signals() {
    if (stopping_) return;
    std::string why;
    if (stop_requested().load()) why = stop_signal() ? fmt::format("signal {}", strsignal(stop_signal())) : "stop requested";
    else if (deadline_ > 0 && store::now_unix() > deadline_) why = "time limit";
    if (why.empty()) return;
    stopping_ = true;
    stop_time_ = Clock::now();
    end_reason_ = why;
    spdlog::warn("stopping the sweep ({}): running trials checkpoint and stop; pending ones stay pending", why);
    for (auto& [t, r] : running_)
      if (!r.stop_sent) {
        for (int m : r.members) ctrl_.send(m, kStop, t);
        r.stop_sent = true;
      }
  }

  void check_hung() {
    const auto now = Clock::now();
    for (auto it = running_.begin(); it != running_.end();) {
      const double silent = std::chrono::duration<double>(now - it->second.last_seen).count();
      if (silent < o_.heartbeat_timeout) {
        ++it;
        continue;
      }
      auto& row = rows_[static_cast<size_t>(it->first)];
      row.status = "failed";
      row.message = fmt::format("no heartbeat from rank group {} for {:.0f} s (hung or dead); ranks taken out of this job",
                                it->second.members.front(), silent);
      row.finished_at = store::now_unix();
      results_.update_trial(row);
      spdlog::error("trial {}: {}", row.key, row.message);
      for (int m : it->second.members) hung_.insert(m);
      requeue_if_retryable(it->first);
      it = running_.erase(it);
    }
  }

  void requeue_if_retryable(int64_t trial) {
    const auto& row = rows_[static_cast<size_t>(trial)];
    if (row.attempts < sh_.spec.study.max_attempts) {
      pending_[sh_.trials[static_cast<size_t>(trial)].config.ranks_per_trial].insert({-cost_[trial], trial});
      action_[trial] = Action::retry;
    }
  }

  double seconds_per_gflop() const { return epoch_cost_ > 0 ? epoch_seconds_ / epoch_cost_ : 0; }

  void dispatch() {
    const int alive = mpi_.size() - static_cast<int>(hung_.size());
    while (!idle_.empty()) {
      // The costliest pending trial whose group fits in the idle ranks.
      int best_g = -1;
      std::pair<double, int64_t> best{0, -1};
      for (auto& [g, s] : pending_) {
        if (s.empty()) continue;
        if (g > alive) {  // can never run in this job
          for (const auto& [c, t] : s) {
            auto& row = rows_[static_cast<size_t>(t)];
            row.status = "failed";
            row.message = fmt::format("needs {} ranks (ranks_per_trial), this job has {}", g, alive);
            results_.update_trial(row);
          }
          s.clear();
          continue;
        }
        if (g <= static_cast<int>(idle_.size()) && (best.second < 0 || *s.begin() < best)) best = *s.begin(), best_g = g;
      }
      if (best.second < 0) return;
      const int64_t t = best.second;
      // Do not start a trial whose first epoch cannot finish before the end.
      if (deadline_ > 0 && seconds_per_gflop() > 0) {
        const auto& cfg = sh_.trials[static_cast<size_t>(t)].config;
        const double epoch_s = cost_[t] / cfg.epochs * seconds_per_gflop() / best_g;
        if (store::now_unix() + 1.1 * epoch_s > deadline_) {
          pending_[best_g].erase(best);
          skipped_for_time_.push_back(t);
          continue;
        }
      }
      pending_[best_g].erase(best);
      std::vector<int> members;
      for (auto it = idle_.begin(); static_cast<int>(members.size()) < best_g; it = idle_.erase(it)) members.push_back(*it);
      start(t, members);
    }
  }

  void start(int64_t t, const std::vector<int>& members) {
    auto& row = rows_[static_cast<size_t>(t)];
    const Action a = action_[t];
    const bool fresh = a == Action::fresh || a == Action::retry;
    if (fresh) {
      row.attempts += 1;
      // A retry starts from scratch: the old checkpoints may be what failed.
      if (a == Action::retry && o_.simulate <= 0) {
        try {
          auto env = train::environment_for(sh_.spec, sh_.trials[static_cast<size_t>(t)]);
          std::error_code ec;
          fs::remove_all(env.checkpoint_dir, ec);
        } catch (const Error&) {
        }
      }
    }
    row.status = "running";
    row.rank_group = members.front();
    row.group_size = static_cast<int32_t>(members.size());
    row.started_at = store::now_unix();
    row.slurm_job_id = env_or("SLURM_JOB_ID");
    row.slurm_array_task_id = env_or("SLURM_ARRAY_TASK_ID");
    row.message.clear();
    results_.record_started(row);
    Order o;
    o.kind = Order::assign;
    o.trial = t;
    o.attempt = row.attempts;
    o.members.assign(members.begin(), members.end());
    o.group_tag = static_cast<int32_t>(++tags_ % 30000 + 1);
    o.deadline_unix = deadline_ > 0 ? deadline_ : 0;
    for (int m : members) ctrl_.send(m, kToWorker, o);
    running_[t] = {members, Clock::now(), false};
  }

  void handle(Report r) {
    if (!r.message.empty() && r.kind == Report::ready && r.message == "stop requested") stop_requested().store(true);
    switch (r.kind) {
      case Report::ready: idle_.insert(r.rank); break;
      case Report::heartbeat:
        if (auto it = running_.find(r.trial); it != running_.end()) it->second.last_seen = Clock::now();
        break;
      case Report::started: {
        auto& row = rows_[static_cast<size_t>(r.trial)];
        row.host = r.host;
        results_.record_started(row);
        break;
      }
      case Report::epoch: {
        if (auto it = running_.find(r.trial); it != running_.end()) it->second.last_seen = Clock::now();
        auto& row = rows_[static_cast<size_t>(r.trial)];
        row.epochs_done = r.epoch_record.epoch + 1;
        results_.record_epoch(row, curve_row(row, r.epoch_record));
        const auto& cfg = sh_.trials[static_cast<size_t>(r.trial)].config;
        epoch_cost_ += cost_[r.trial] / cfg.epochs / std::max(1, cfg.ranks_per_trial);
        epoch_seconds_ += r.epoch_record.train_seconds + r.epoch_record.eval_seconds;
        break;
      }
      case Report::finished: finish(r); break;
      default: break;
    }
  }

  static store::CurveRow curve_row(const store::TrialRow& row, const train::EpochRecord& e) {
    store::CurveRow c;
    c.key = row.key;
    c.attempt = row.attempts;
    c.epoch = e.epoch;
    c.lr = e.lr;
    c.train_loss = e.train_loss;
    c.val_metric = e.val_metric;
    c.test_metric = e.test_metric;
    c.val_loss = e.val_loss;
    c.train_seconds = e.train_seconds;
    c.eval_seconds = e.eval_seconds;
    c.images_per_second = e.images_per_second;
    c.peak_memory_bytes = e.peak_memory_bytes;
    return c;
  }

  void finish(const Report& r) {
    const int64_t t = r.trial;
    auto it = running_.find(t);
    if (it == running_.end()) return;  // declared hung meanwhile
    const auto members = it->second.members;
    running_.erase(it);
    idle_.insert(r.rank);
    auto& row = rows_[static_cast<size_t>(t)];
    row.status = r.status;
    row.message = r.message;
    row.device = r.device;
      row.best_epoch = r.best_epoch;
    row.resumed_from = r.resumed_from_epoch;
    row.val_metric = r.best_val;
    row.test_metric = r.test_at_best;
    row.seconds += r.seconds;
    row.finished_at = store::now_unix();
    row.epochs_done = r.epochs.empty() ? row.epochs_done : r.epochs.back().epoch + 1;
    // Curves: the trial's own record is authoritative (a resumed trial carries its earlier epochs).
    std::vector<store::CurveRow> curves;
    for (const auto& e : r.epochs) curves.push_back(curve_row(row, e));
    const auto& trial = sh_.trials[static_cast<size_t>(t)];
    const std::string& ds = sh_.spec.datasets[trial.dataset_index].name;
    const bool final = r.status == "done" || r.status == "diverged";
    // Predictions of the selected epoch, once the trial is over (an interrupted trial carries them in its checkpoint).
    std::vector<store::PredictionSet> predictions;
    if (final && !r.val_samples.empty())
      predictions.push_back({row.key, "val", ds, r.classes, r.val_samples, r.val_scores});
    if (final && !r.test_samples.empty())
      predictions.push_back({row.key, "test", ds, r.classes, r.test_samples, r.test_scores});
    std::vector<store::ProblemRow> problems;
    for (const auto& x : r.problems) problems.push_back({ds, x.id, x.path, x.reason});
    results_.record_finished(row, curves, predictions, problems);
    ++finished_;
    const bool exhausted = (r.status == "failed" || r.status == "oom") && row.attempts >= sh_.spec.study.max_attempts;
    if ((final || exhausted) && o_.simulate <= 0) {
      try {
        train::remove_trial_checkpoints(train::environment_for(sh_.spec, trial).checkpoint_dir,
                                        sh_.spec.study.keep_best_model);
      } catch (const Error&) {
      }
    }
    if (r.status == "done" || r.status == "diverged") remaining_cost_ -= cost_[t], done_cost_ += cost_[t];
    if (r.status == "failed" || r.status == "oom") {
      spdlog::warn("trial {} ({} on {}): {} — {}", row.key, row.model, row.dataset, r.status, r.message);
      requeue_if_retryable(t);
    }
    if (r.status == "interrupted" && !stopping_) {  // a stop only this group saw: the sweep stops too
      stop_requested().store(true);
    }
    (void)members;
  }

  void progress(bool final) {
    if (!o_.progress) return;
    const auto now = Clock::now();
    if (!final && std::chrono::duration<double>(now - last_progress_).count() < 5) return;
    last_progress_ = now;
    size_t done = 0, failed = 0, diverged = 0;
    for (const auto& [t, a] : action_) {
      const auto& s = rows_[static_cast<size_t>(t)].status;
      done += s == "done";
      failed += s == "failed" || s == "oom";
      diverged += s == "diverged";
    }
    const double elapsed = std::chrono::duration<double>(now - started_).count();
    std::string eta = "–";
    if (done_cost_ > 0 && remaining_cost_ > 0) {
      const double s = remaining_cost_ * elapsed / done_cost_;
      eta = fmt::format("{}h{:02d}m", static_cast<int>(s / 3600), static_cast<int>(std::fmod(s, 3600) / 60));
    }
    std::cerr << fmt::format("[xfer] {}/{} done · {} running · {} pending · {} failed · {} diverged · {:.0f}s elapsed · ETA {}{}\n",
                             done, total_jobs_, running_.size(), pending_count(), failed, diverged, elapsed, eta,
                             stopping_ ? " · stopping" : "");
  }

  const Shared& sh_;
  const RunOptions& o_;
  MpiRuntime& mpi_;
  bmpi::communicator ctrl_;
  store::Results& results_;
  store::WriterLock& lock_;
  std::vector<store::TrialRow> rows_;  // by trial index
  std::vector<double> cost_;
  double deadline_;
  std::map<int, std::set<std::pair<double, int64_t>>> pending_;  // ranks_per_trial → (-cost, trial)
  std::map<int64_t, Action> action_;
  std::map<int64_t, Running> running_;
  std::set<int> idle_, hung_;
  std::vector<int64_t> skipped_for_time_;
  bool stopping_ = false;
  std::optional<Clock::time_point> stop_time_;
  std::string end_reason_;
  std::exception_ptr error_;
  int64_t finished_ = 0;
  size_t total_jobs_ = 0;
  int tags_ = 0;
  double remaining_cost_ = 0, done_cost_ = 0, epoch_cost_ = 0, epoch_seconds_ = 0;
  Clock::time_point started_, last_progress_{};
};

// ---- set-up on rank 0 ----------------------------------------------------------------------------------------
struct Prepared {
  std::string results_path;
  std::vector<double> cost;
  std::vector<data::Dataset> datasets;
};

Prepared prepare(const Shared& sh, const RunOptions& o) {
  Prepared p;
  const auto& spec = sh.spec;
  p.results_path = results_path(o, o.results.empty() ? resolved_or_throw(spec.study.results, "results") : o.results);
  std::vector<grid::DataSize> sizes;
  if (o.simulate > 0) {
    for (const auto& d : spec.datasets) sizes.push_back(grid::catalog_size(spec, d));
  } else {
    resolved_or_throw(spec.study.checkpoint_dir, "checkpoint_dir");
    for (const auto& m : spec.models) resolved_or_throw(m.backbone, "backbone of " + m.name);
    for (const auto& d : spec.datasets) {
      resolved_or_throw(d.root, "root of dataset " + d.name);
      p.datasets.push_back(data::open(spec, d));
      const auto& ds = p.datasets.back();
      grid::DataSize z;
      z.n_train = static_cast<int64_t>(ds.indices(data::Split::train).size());
      z.n_val = static_cast<int64_t>(ds.indices(data::Split::val).size());
      z.n_test = static_cast<int64_t>(ds.indices(data::Split::test).size());
      z.val_is_test = ds.validation == "paper";
      sizes.push_back(z);
    }
  }
  for (const auto& t : sh.trials)
    p.cost.push_back(grid::trial_cost_gflop(t.config, std::max(1e-3, spec.models[t.model_index].gmacs),
                                            sizes[t.dataset_index]));
  return p;
}

void write_study(const Shared& sh, const Prepared& p, store::Results& results, int ranks,
                 const std::vector<std::string>& hosts) {
  const auto& spec = sh.spec;
  std::vector<store::ModelRow> models;
  for (const auto& m : spec.models) {
    store::ModelRow r;
    r.name = m.name;
    r.weights = m.weights;
    r.backbone = m.backbone.resolved() ? m.backbone.path : m.backbone.raw;
    if (m.backbone.resolved() && fs::exists(m.backbone.path)) r.backbone_sha256 = sha256_file_hex(m.backbone.path);
    r.imagenet_top1 = m.imagenet_top1;
    r.gmacs = m.gmacs;
    r.feature_dim = m.feature_dim;
    models.push_back(r);
  }
  std::vector<store::DatasetRow> rows;
  for (size_t i = 0; i < spec.datasets.size(); ++i) {
    const auto& d = spec.datasets[i];
    store::DatasetRow r;
    r.name = d.name;
    r.kind = d.kind;
    r.metric = d.metric;
    r.root = d.root.resolved() ? d.root.path : d.root.raw;
    r.validation = spec.validation_of(d);
    if (i < p.datasets.size()) {
      const auto& ds = p.datasets[i];
      r.validation = ds.validation;
      r.split_sha256 = ds.split_hash;
      r.n_train = static_cast<int64_t>(ds.indices(data::Split::train).size());
      r.n_val = static_cast<int64_t>(ds.indices(data::Split::val).size());
      r.n_test = static_cast<int64_t>(ds.indices(data::Split::test).size());
      r.problems = static_cast<int64_t>(ds.problems.size());
      r.classes = ds.num_classes();
      r.multilabel = ds.multilabel;
    }
    rows.push_back(r);
  }
  results.write_study(spec.text, models, rows);
  std::vector<store::ProblemRow> problems;
  for (size_t i = 0; i < p.datasets.size(); ++i) {
    const auto& ds = p.datasets[i];
    std::vector<store::SampleRow> samples;
    for (size_t s = 0; s < ds.samples.size(); ++s) {
      store::SampleRow r;
      r.index = static_cast<int64_t>(s);
      r.id = ds.samples[s].id;
      r.split = data::split_name(ds.split[s]);
      r.label = ds.samples[s].label;
      if (ds.multilabel)
        for (size_t k = 0; k < ds.samples[s].labels.size(); ++k)
          r.labels += (k ? " " : "") + std::to_string(ds.samples[s].labels[k]);
      else r.labels = std::to_string(r.label);
      r.group = ds.samples[s].group;
      samples.push_back(std::move(r));
    }
    results.write_samples(ds.name, samples);
    for (const auto& pr : ds.problems) problems.push_back({ds.name, pr.id, pr.path, pr.reason});
  }
  // Index-time problems: appended only when they differ from the ones last recorded.
  results.add_index_problems(problems);
  const auto be = train::backend();
  std::string host_list;
  for (const auto& h : std::set<std::string>(hosts.begin(), hosts.end())) host_list += (host_list.empty() ? "" : " ") + h;
  std::string split_hashes;
  for (const auto& ds : p.datasets) split_hashes += ds.name + ":" + ds.split_hash + " ";
  results.write_provenance({{"xfer_version", build_info::version()},
                            {"git_commit", build_info::git_commit()},
                            {"git_dirty", build_info::git_dirty() ? "true" : "false"},
                            {"compiler", build_info::compiler()},
                            {"build_type", build_info::build_type()},
                            {"libtorch", be.torch_version},
                            {"cuda", be.cuda_version},
                            {"cudnn", be.cudnn_version},
                            {"devices", be.devices},
                            {"kokkos_backend", metrics::Runtime::backend()},
                            {"mpi", MpiRuntime::library_version()},
                            {"hosts", host_list},
                            {"ranks", std::to_string(ranks)},
                            {"split_sha256", split_hashes},
                            {"slurm_job_id", env_or("SLURM_JOB_ID")},
                            {"updated_utc", store::iso_utc(store::now_unix())}});
}

// When to stop on our own, should no signal come: `grace` seconds before the allocation ends, but never more than a
// fifth of the allocation (a grace meant for a four-hour job must not swallow a one-minute one).
double deadline_from(const RunOptions& o, double start) {
  const double end = o.time_limit > 0 ? start + o.time_limit : slurm_end_time();
  if (end <= 0) return 0;
  return end - std::min(o.grace, std::max(0.0, 0.2 * (end - start)));
}

// The trial indices of this run: all of them, or a job array's shard — every shards-th trial by the cost model on
// catalog sizes (no data needed, so every array task and every --dry-run agrees on the split).
std::vector<size_t> shard_of(const Shared& sh, int shard, int shards) {
  std::vector<double> cost;
  for (const auto& t : sh.trials)
    cost.push_back(grid::trial_cost_gflop(t.config, std::max(1e-3, sh.spec.models[t.model_index].gmacs),
                                          grid::catalog_size(sh.spec, sh.spec.datasets[t.dataset_index])));
  std::vector<size_t> all(cost.size());
  std::iota(all.begin(), all.end(), 0);
  if (shards <= 1) return all;
  std::stable_sort(all.begin(), all.end(), [&](size_t a, size_t b) { return cost[a] > cost[b]; });
  std::vector<size_t> mine;
  for (size_t i = 0; i < all.size(); ++i)
    if (static_cast<int>(i % static_cast<size_t>(shards)) == shard) mine.push_back(all[i]);
  std::sort(mine.begin(), mine.end());
  return mine;
}

}  // namespace

int run(const RunOptions& o, MpiRuntime& mpi) {
  bmpi::communicator world;
  bmpi::communicator ctrl(MPI_COMM_WORLD, bmpi::comm_duplicate);
  const double start = store::now_unix();
  // Rank 0 reads and checks everything first; the others wait for its verdict.
  std::string spec_text, failure;
  Shared sh;
  std::unique_ptr<store::WriterLock> lock;
  std::unique_ptr<store::Results> results;
  Prepared prep;
  std::vector<Coordinator::Job> jobs;
  std::vector<store::TrialRow> rows;
  if (mpi.rank() == 0) {
    try {
      sh.spec = spec::load(o.spec);
      sh.trials = grid::expand(sh.spec);
      prep = prepare(sh, o);
      lock = std::make_unique<store::WriterLock>(prep.results_path);
      results = std::make_unique<store::Results>(store::Results::open_or_create(prep.results_path, sh.spec.study.name, sh.spec.text));
      // The ledger.
      std::unordered_map<std::string, store::TrialRow> existing;
      {
        auto all = results->trials();
        existing.reserve(all.size());
        for (auto& r : all) existing.emplace(r.key, std::move(r));
      }
      std::vector<store::TrialRow> fresh;
      std::vector<bool> in_shard(sh.trials.size(), false);
      for (size_t i : shard_of(sh, o.shard, o.shards)) in_shard[i] = true;
      for (size_t i = 0; i < sh.trials.size(); ++i) {
        const auto& t = sh.trials[i];
        auto it = existing.find(t.key.str());
        store::TrialRow row = it != existing.end() ? it->second : fresh_row(sh.spec, t, prep.cost[i]);
        if (it == existing.end() && in_shard[i]) fresh.push_back(row);  // another shard's trials stay out
        row.order = static_cast<int64_t>(i);
        row.cost_gflop = prep.cost[i];
        const Action a = decide(it == existing.end() ? nullptr : &it->second, sh.spec.study.max_attempts);
        if (in_shard[i] && (a == Action::fresh || a == Action::resume || a == Action::retry))
          jobs.push_back({static_cast<int64_t>(i), a});
        rows.push_back(std::move(row));
      }
      results->add_trials(fresh);
      spec_text = sh.spec.text;
    } catch (const std::exception& e) {
      failure = e.what();
      if (const auto* x = dynamic_cast<const Error*>(&e); x && x->kind() == Error::Kind::input) failure = "input:" + failure;
    }
  }
  bmpi::broadcast(world, failure, 0);
  if (!failure.empty()) {
    if (mpi.rank() != 0) return failure.rfind("input:", 0) == 0 ? 2 : 1;
    throw failure.rfind("input:", 0) == 0 ? Error::input(failure.substr(6)) : Error(failure);
  }
  // Every rank expands the same spec (relative paths resolve against the same spec file).
  bmpi::broadcast(world, spec_text, 0);
  if (mpi.rank() != 0) {
    sh.spec = spec::parse(spec_text, o.spec);
    sh.trials = grid::expand(sh.spec);
  }
  std::vector<std::string> hosts;
  bmpi::gather(world, hostname(), hosts, 0);

  install_stop_handlers({SIGTERM, SIGINT, SIGUSR1, SIGUSR2});
  std::unique_ptr<Coordinator> coord;
  std::thread coord_thread;
  int64_t run_row = -1;
  store::RunRow run_info;
  if (mpi.rank() == 0) {
    write_study(sh, prep, *results, mpi.size(), hosts);
    run_info.host = hostname();
    run_info.slurm_job_id = env_or("SLURM_JOB_ID");
    run_info.git_commit = build_info::git_commit().substr(0, 40);
    run_info.started_at = start;
    run_info.ranks = mpi.size();
    run_info.end_reason = "running";
    run_row = results->begin_run(run_info);
    size_t resumes = 0, retries = 0, fresh = 0;
    for (const auto& j : jobs) resumes += j.action == Action::resume, retries += j.action == Action::retry, fresh += j.action == Action::fresh;
    spdlog::info("{}: {} trials in the spec; {} to run ({} new, {} to resume, {} to retry) on {} rank(s)",
                 prep.results_path, sh.trials.size(), jobs.size(), fresh, resumes, retries, mpi.size());
    coord = std::make_unique<Coordinator>(sh, o, mpi, ctrl, *results, *lock, std::move(rows), prep.cost, jobs,
                                          deadline_from(o, start));
    coord_thread = std::thread([&] { (*coord)(); });
  }
  Worker worker(sh, o, mpi, ctrl);
  std::exception_ptr worker_error;
  try {
    worker.loop();
  } catch (...) {
    worker_error = std::current_exception();
  }
  if (mpi.rank() == 0) {
    coord_thread.join();
    run_info.finished_at = store::now_unix();
    run_info.end_reason = coord->end_reason();
    run_info.trials_run = coord->trials_run();
    results->end_run(run_row, run_info);
    if (coord->error()) std::rethrow_exception(coord->error());
  }
  if (worker_error) std::rethrow_exception(worker_error);
  world.barrier();
  return 0;
}

int dry_run(const RunOptions& o, bool json) {
  Shared sh;
  sh.spec = spec::load(o.spec);
  sh.trials = grid::expand(sh.spec);
  const std::string path = results_path(o, o.results.empty() ? resolved_or_throw(sh.spec.study.results, "results") : o.results);
  std::vector<bool> in_shard(sh.trials.size(), o.shards <= 1);
  if (o.shards > 1)
    for (size_t i : shard_of(sh, o.shard, o.shards)) in_shard[i] = true;
  std::unordered_map<std::string, store::TrialRow> existing;
  if (fs::exists(path)) {
    const auto ledger = store::Results::open_existing(path).ledger();
    existing.reserve(ledger.size());
    for (const auto& e : ledger) {
      store::TrialRow r;
      r.status = e.status;
      r.attempts = e.attempts;
      existing.emplace(e.key, std::move(r));
    }
  }
  std::map<std::string, size_t> counts;
  std::vector<std::pair<size_t, Action>> would_run;
  for (size_t i = 0; i < sh.trials.size(); ++i) {
    if (!in_shard[i]) continue;
    auto it = existing.find(sh.trials[i].key.str());
    const Action a = decide(it == existing.end() ? nullptr : &it->second, sh.spec.study.max_attempts);
    counts[action_name(a)]++;
    if (a == Action::fresh || a == Action::resume || a == Action::retry) would_run.emplace_back(i, a);
  }
  auto entry = [&](const std::pair<size_t, Action>& w) {
    const auto& t = sh.trials[w.first];
    return nlohmann::ordered_json{{"key", t.key.str()}, {"model", t.config.model}, {"dataset", t.config.dataset},
                                  {"optimizer", t.config.optimizer}, {"lr", t.config.lr},
                                  {"weight_decay", t.config.weight_decay}, {"seed", t.config.seed},
                                  {"action", action_name(w.second)}};
  };
  if (json) {
    nlohmann::ordered_json list = nlohmann::json::array();
    for (const auto& w : would_run) list.push_back(entry(w));
    nlohmann::ordered_json j{{"results", path}, {"total", sh.trials.size()}, {"counts", counts}, {"would_run", list}};
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << fmt::format("{} ({}): {} trials\n", o.spec, path, sh.trials.size());
  for (const auto& [k, n] : counts) std::cout << fmt::format("  {:<28} {}\n", k, n);
  std::cout << fmt::format("would run {} trial(s){}:\n", would_run.size(),
                           would_run.size() > 50 ? " (the first 50; --json lists all)" : "");
  for (size_t i = 0; i < would_run.size() && i < 50; ++i) {
    const auto& t = sh.trials[would_run[i].first];
    std::cout << fmt::format("  {} {:<24} {:<14} {} lr={} wd={} seed={}  [{}]\n", t.key.str(), t.config.model,
                             t.config.dataset, t.config.optimizer, t.config.lr, t.config.weight_decay, t.config.seed,
                             action_name(would_run[i].second));
  }
  return 0;
}

}  // namespace xfer::sweep
