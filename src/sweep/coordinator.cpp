#include "coordinator.hpp"

#include <csignal>
#include <cstring>
#include <filesystem>
#include <set>
#include <iostream>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "progress.hpp"
#include "slurm.hpp"
#include "xfer/core/error.hpp"
#include "xfer/core/stop.hpp"
#include "xfer/train/trial.hpp"

namespace fs = std::filesystem;

namespace xfer::sweep {

namespace {
double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
std::optional<TrialStatus> status_of(const store::TrialRow& row) {
  return try_parse<TrialStatus>(row.status);
}
}  // namespace

Coordinator::Coordinator(const Study& study, const Prepared& prep, const RunOptions& o, Transport transport,
                         store::Results& results, store::WriterLock& lock, std::vector<store::TrialRow> rows,
                         const std::vector<Job>& jobs, double deadline_unix)
    : study_(study), prep_(prep), o_(o), transport_(std::move(transport)), results_(results), lock_(lock),
      rows_(std::move(rows)), cost_(prep.cost), deadline_unix_(deadline_unix),
      scheduler_(transport_.size(), deadline_unix > 0 ? steady_seconds() + (deadline_unix - store::now_unix()) : 0) {
  std::set<int64_t> queued;
  for (const auto& j : jobs) queued.insert(j.trial);
  for (const auto& j : jobs) {
    action_[j.trial] = j.action;
    remaining_cost_ += cost_[j.trial];
    // A downstream trial of a pre-trained model starts only once its pre-training trial is done.
    const int64_t u = study_.trials[static_cast<size_t>(j.trial)].upstream_index;
    if (u >= 0 && rows_[static_cast<size_t>(u)].status != name(TrialStatus::done)) {
      if (queued.count(u)) waiting_[u].push_back(j.trial);
      else blocked_.push_back(j.trial);
      continue;
    }
    queue(j.trial);
  }
  total_jobs_ = jobs.size();
  started_ = Clock::now();
}

double Coordinator::now() const { return steady_seconds(); }

void Coordinator::operator()() {
  try {
    loop();
  } catch (...) {
    error_ = std::current_exception();
    abandon();
  }
  transport_.complete_sends();
}

// The coordinator cannot go on (typically the results file cannot be written: a full disk, a read-only remount):
// every group in a trial gets the stop, every rank its shutdown, and the reports of the ranks in a trial are taken
// (and dropped: nothing more can be recorded) until each has come back. A worker's report is a blocking send, so
// without this it would wait for ever on a coordinator that is gone (reliability probe 3, BAD-4). The process's own
// stop flag arms the watchdog (core/stop), which ends it with the fault's exit status should a rank never come back.
void Coordinator::abandon() {
  end_reason_ = "error";
  int status = exit_status::error;
  try {
    std::rethrow_exception(error_);
  } catch (const Error& e) {
    status = e.kind() == Error::Kind::environment ? exit_status::environment
             : e.kind() == Error::Kind::input     ? exit_status::input
                                                  : exit_status::error;
    end_reason_ = (e.kind() == Error::Kind::environment ? "environment: " : "error: ") + std::string(e.what()).substr(0, 200);
  } catch (const std::exception& e) {
    end_reason_ = "error: " + std::string(e.what()).substr(0, 200);
  } catch (...) {
  }
  set_stop_exit_status(status);
  stop_requested().store(true);
  std::set<int> busy;
  for (const auto& [t, members] : scheduler_.running_groups())
    for (int m : members) transport_.send_stop(m, t), busy.insert(m);
  for (int r = 0; r < transport_.size(); ++r) transport_.send_shutdown(r);
  const auto until = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o_.grace + 30));
  while (!busy.empty() && Clock::now() < until)
    if (auto r = transport_.receive_report(0.5); r && (r->kind == Report::finished || r->kind == Report::ready))
      busy.erase(r->rank);
}

void Coordinator::loop() {
  for (int64_t t : blocked_)
    block(t, rows_[static_cast<size_t>(study_.trials[static_cast<size_t>(t)].upstream_index)]);
  auto last_beat = Clock::now();
  while (true) {
    if (std::chrono::duration<double>(Clock::now() - last_beat).count() > 60) lock_.heartbeat(), last_beat = Clock::now();
    watch_time_and_signals();
    check_hung();
    dispatch();
    progress(false);
    const auto end = scheduler_.over(now(), o_.grace);
    if (end == Scheduler::End::finished) break;
    if (end == Scheduler::End::no_ranks) {
      hung_out_ = fmt::format("every rank group was declared hung (no heartbeat for {:.0f} s); {} trial(s) stay pending "
                              "for the next run", o_.heartbeat_timeout, scheduler_.pending());
      spdlog::error("{}", hung_out_);
      end_reason_ = "every rank hung";
      stop_requested().store(true);  // rank 0's own worker, if it is the hung one, stops — or the watchdog ends it
      for (int r = 0; r < transport_.size(); ++r) transport_.send_stop(r, -1);
      break;
    }
    if (end == Scheduler::End::stragglers) {
      spdlog::error("{} rank(s) did not report back within {} s of the stop", scheduler_.alive() - scheduler_.idle(),
                    o_.grace);
      break;
    }
    if (auto r = transport_.receive_report(1.0)) handle(*r);  // wakes up every second for housekeeping
  }
  for (int r : scheduler_.idle_ranks()) transport_.send_shutdown(r);
  if (!hung_out_.empty())
    for (int r : scheduler_.hung_ranks()) transport_.send_shutdown(r);
  if (end_reason_.empty()) end_reason_ = "finished";
  progress(true);
}

void Coordinator::watch_time_and_signals() {
  if (scheduler_.stopping()) return;
  std::string why;
  if (stop_requested().load())
    why = stop_signal() == SIGCONT ? "mpirun is ending the job (it got SIGTERM or SIGINT)"
          : stop_signal()          ? fmt::format("signal {}", strsignal(stop_signal()))
                                   : "stop requested";
  else if (scheduler_.past_deadline(now())) why = "time limit";
  if (!why.empty()) stop_sweep(why);
}

void Coordinator::stop_sweep(const std::string& why) {
  if (scheduler_.stopping()) return;
  scheduler_.stop(now());
  end_reason_ = why;
  spdlog::warn("stopping the sweep ({}): running trials checkpoint and stop; pending ones stay pending", why);
  for (const auto& [t, members] : scheduler_.running_groups())
    for (int m : members) transport_.send_stop(m, t);
}

Coordinator::Outcome Coordinator::outcome() const {
  Outcome o;
  for (const auto& [trial, a] : action_) {
    const auto s = status_of(rows_[static_cast<size_t>(trial)]);
    if (s && finished(*s)) ++o.finished;
    else if (s && retryable(*s)) ++o.failed;
    else ++o.left;
  }
  return o;
}

void Coordinator::check_hung() {
  for (const auto& h : scheduler_.take_hung(now(), o_.heartbeat_timeout)) {
    auto& row = rows_[static_cast<size_t>(h.trial)];
    const Finish f = on_hung(row.attempts, study_.spec.study.max_attempts);
    row.status = name_str(f.status);
    record_hung(row, h.members.front(), h.silent_s);
    if (f.retry) requeue(h.trial);
    upstream_ended(h.trial, row, false, f.retry);
  }
}

void Coordinator::requeue(int64_t t) {
  queue(t);
  action_[t] = Action::retry;
}

void Coordinator::queue(int64_t t) {
  const auto& cfg = study_.trials[static_cast<size_t>(t)].config;
  scheduler_.add({t, cost_[t], cfg.ranks_per_trial, cfg.epochs});
}

void Coordinator::upstream_ended(int64_t upstream, const store::TrialRow& row, bool done, bool will_run_again) {
  auto it = waiting_.find(upstream);
  if (it == waiting_.end()) return;
  if (done) {
    spdlog::info("upstream trial {} ({} on {}) is done: its {} downstream trial(s) are queued", row.key, row.model,
                 row.dataset, it->second.size());
    for (int64_t t : it->second) queue(t);
  } else if (will_run_again) {
    return;  // retried (or resumed by a later run): they keep waiting
  } else {
    for (int64_t t : it->second) block(t, row);
  }
  waiting_.erase(it);
}

void Coordinator::block(int64_t t, const store::TrialRow& upstream) {
  auto& row = rows_[static_cast<size_t>(t)];
  row.status = name_str(TrialStatus::failed);
  row.message = fmt::format("its upstream trial {} ({} on {}) is {}{}: there is no pre-trained backbone to fine-tune; "
                            "not started (no attempt spent) — the next run retries it after its upstream trial",
                            upstream.key, upstream.model, upstream.dataset, upstream.status,
                            upstream.message.empty() ? "" : " (" + upstream.message.substr(0, 200) + ")");
  row.finished_at = store::now_unix();
  results_.update_trial(row);
  spdlog::warn("trial {} ({} on {}): {}", row.key, row.model, row.dataset, row.message);
}

void Coordinator::dispatch() {
  const Scheduler::Dispatch d = scheduler_.dispatch(now());
  for (int64_t t : d.too_wide) {
    record_unrunnable(rows_[static_cast<size_t>(t)], study_.trials[static_cast<size_t>(t)].config.ranks_per_trial,
                      scheduler_.alive());
    upstream_ended(t, rows_[static_cast<size_t>(t)], false, false);
  }
  skipped_for_time_.insert(skipped_for_time_.end(), d.out_of_time.begin(), d.out_of_time.end());
  for (const auto& a : d.starts) start(a.trial, a.members);
}

void Coordinator::start(int64_t t, const std::vector<int>& members) {
  auto& row = rows_[static_cast<size_t>(t)];
  const Start s = on_start(action_[t], row.attempts);
  attempts_before_[t] = row.attempts;
  row.attempts = s.attempts;
  if (s.clear_checkpoints && o_.simulate <= 0) {
    try {
      auto env = train::environment_for(study_.spec, study_.trials[static_cast<size_t>(t)]);
      std::error_code ec;
      fs::remove_all(env.checkpoint_dir, ec);
    } catch (const Error&) {
    }
  }
  row.status = name_str(TrialStatus::running);
  row.rank_group = members.front();
  row.group_size = static_cast<int32_t>(members.size());
  row.started_at = store::now_unix();
  row.slurm_job_id = slurm_variable("SLURM_JOB_ID");
  row.slurm_array_task_id = slurm_variable("SLURM_ARRAY_TASK_ID");
  row.message.clear();
  record_assigned(row);
  Order o;
  o.kind = Order::assign;
  o.trial = t;
  o.attempt = row.attempts;
  o.members.assign(members.begin(), members.end());
  o.group_tag = static_cast<int32_t>(++tags_ % 30000 + 1);
  o.deadline_unix = deadline_unix_ > 0 ? deadline_unix_ : 0;
  o.resolved = resolve_trial(study_, prep_, static_cast<size_t>(t), o_);
  for (int m : members) transport_.send_order(m, o);
}

void Coordinator::handle(const Report& r) {
  if (r.kind == Report::ready && r.message == "stop requested") stop_requested().store(true);
  switch (r.kind) {
    case Report::ready: scheduler_.ready(r.rank); break;
    case Report::heartbeat: scheduler_.heartbeat(r.trial, now()); break;
    case Report::started: {
      auto& row = rows_[static_cast<size_t>(r.trial)];
      row.host = r.host;
      record_started(row);
      break;
    }
    case Report::epoch: {
      scheduler_.heartbeat(r.trial, now());
      auto& row = rows_[static_cast<size_t>(r.trial)];
      row.epochs_done = r.epoch_record.epoch + 1;
      record_epoch(row, r.epoch_record);
      scheduler_.record_epoch(r.trial, r.epoch_record.train_seconds + r.epoch_record.eval_seconds);
      break;
    }
    case Report::finished: finish(r); break;
    default: break;
  }
}

void Coordinator::finish(const Report& r) {
  const int64_t t = r.trial;
  if (!scheduler_.finish(t, r.rank)) return;  // declared hung meanwhile
  auto& row = rows_[static_cast<size_t>(t)];
  Finish f = on_finish(r.status, row.attempts, study_.spec.study.max_attempts, scheduler_.stopping(), r.cause);
  // A fault of the trial's data or spec (undecodable data, a bundle that does not fit) is the same on every attempt:
  // the trial is not to blame, so the attempt is given back — the run after the fix runs it, however often the fault
  // was met (reliability probe 3, BAD-1).
  const bool input_fault = r.cause == Cause::input && retryable(f.status) && !f.environment_stop;
  if (input_fault) {
    row.attempts = attempts_before_.count(t) ? attempts_before_[t] : row.attempts;
    f.exhausted = false;
    f.remove_checkpoints = f.final;
  }
  row.status = name_str(f.status);
  row.message = f.environment_stop && !f.final
                    ? r.message + " — not the trial's fault: the sweep stopped; it resumes on the next run"
                    : r.message;
  row.device = r.device;
  row.best_epoch = r.best_epoch;
  row.resumed_from = r.resumed_from_epoch;
  row.val_metric = r.best_val;
  row.test_metric = r.test_at_best;
  row.seconds += r.seconds;
  row.finished_at = store::now_unix();
  row.epochs_done = r.epochs.empty() ? row.epochs_done : r.epochs.back().epoch + 1;
  if (!r.backbone_sha256.empty()) row.backbone_sha256 = r.backbone_sha256;
  if (!r.exported_sha256.empty()) row.exported_sha256 = r.exported_sha256;
  const auto& trial = study_.trials[static_cast<size_t>(t)];
  record_finished(row, r, study_.spec.datasets[trial.dataset_index].name, f.final);
  ++finished_;
  if (f.remove_checkpoints && o_.simulate <= 0) {
    try {
      train::remove_trial_checkpoints(train::environment_for(study_.spec, trial).checkpoint_dir,
                                      study_.spec.study.keep_best_model);
    } catch (const Error&) {
    }
  }
  if (f.final) remaining_cost_ -= cost_[t], done_cost_ += cost_[t];
  if (retryable(f.status)) {
    spdlog::warn("trial {} ({} on {}): {} — {}", row.key, row.model, row.dataset, row.status, r.message);
    if (f.retry) requeue(t);
  }
  upstream_ended(t, row, f.status == TrialStatus::done,
                 f.retry || f.environment_stop || f.status == TrialStatus::interrupted);
  if (f.stop_sweep) stop_requested().store(true);  // a stop only this group saw: the sweep stops too
  if (f.environment_stop) {
    if (environment_fault_.empty()) environment_fault_ = r.message;
    spdlog::error("trial {} ({} on {}): {}", row.key, row.model, row.dataset, r.message);
    stop_sweep("environment: " + r.message.substr(0, 200));
  } else if (input_fault) {
    input_faults_.push_back(fmt::format("{} ({} on {}): {}", row.key, row.model, row.dataset, r.message));
    spdlog::warn("trial {}: not retried in this run — its data, spec or launch options must change first; it spent no "
                 "attempt",
                 row.key);
  }
}

void Coordinator::progress(bool final) {
  if (!o_.progress) return;
  const auto t = Clock::now();
  if (!final && std::chrono::duration<double>(t - last_progress_).count() < 5) return;
  last_progress_ = t;
  Progress p;
  for (const auto& [trial, a] : action_) {
    const auto s = status_of(rows_[static_cast<size_t>(trial)]);
    p.done += s == TrialStatus::done;
    p.failed += s && retryable(*s);
    p.diverged += s == TrialStatus::diverged;
  }
  p.total = total_jobs_;
  p.running = scheduler_.running();
  p.pending = scheduler_.pending();
  for (const auto& [upstream, list] : waiting_) p.pending += list.size();  // waiting for their pre-training trial
  p.elapsed_s = std::chrono::duration<double>(t - started_).count();
  p.done_gflop = done_cost_;
  p.remaining_gflop = remaining_cost_;
  p.stopping = scheduler_.stopping();
  std::cerr << progress_line(p);
}

// ---- the results-file writes -----------------------------------------------------------------------------------

void Coordinator::record_unrunnable(store::TrialRow& row, int ranks, size_t alive) {
  row.status = name_str(TrialStatus::failed);
  row.message = fmt::format("needs {} ranks (ranks_per_trial), this job has {}", ranks, alive);
  results_.update_trial(row);
}

void Coordinator::record_hung(store::TrialRow& row, int leader, double silent_s) {
  row.message = fmt::format("no heartbeat from rank group {} for {:.0f} s (hung or dead); ranks taken out of this job",
                            leader, silent_s);
  row.finished_at = store::now_unix();
  results_.update_trial(row);
  spdlog::error("trial {}: {}", row.key, row.message);
}

void Coordinator::record_assigned(const store::TrialRow& row) { results_.update_trial(row); }

void Coordinator::record_started(const store::TrialRow& row) { results_.record_started(row); }

// One session: the epoch's curve row and the trial row.
void Coordinator::record_epoch(const store::TrialRow& row, const train::EpochRecord& e) {
  results_.record_epoch(row, curve_row(row, e));
}

store::CurveRow Coordinator::curve_row(const store::TrialRow& row, const train::EpochRecord& e) {
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

void Coordinator::record_finished(const store::TrialRow& row, const Report& r, const std::string& ds, bool final) {
  // One session. Curves: the trial's own record is authoritative (a resumed trial carries its earlier epochs; the
  // store skips those its epoch events already wrote).
  std::vector<store::CurveRow> curves;
  for (const auto& e : r.epochs) curves.push_back(curve_row(row, e));
  // Predictions of the selected epoch, once the trial is over (an interrupted trial carries them in its checkpoint).
  std::vector<store::PredictionSet> predictions;
  if (final && !r.val_samples.empty()) predictions.push_back({row.key, "val", ds, r.classes, r.val_samples, r.val_scores});
  if (final && !r.test_samples.empty())
    predictions.push_back({row.key, "test", ds, r.classes, r.test_samples, r.test_scores});
  std::vector<store::ProblemRow> problems;
  for (const auto& x : r.problems) problems.push_back({ds, x.id, x.path, x.reason});
  results_.record_finished(row, curves, predictions, problems);
}

}  // namespace xfer::sweep
