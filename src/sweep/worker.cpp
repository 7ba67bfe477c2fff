#include "worker.hpp"

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <thread>

#include <fmt/format.h>

#include "slurm.hpp"
#include "upstream_backbone.hpp"
#include "xfer/core/digest.hpp"
#include "xfer/core/error.hpp"
#include "xfer/core/stop.hpp"
#include "xfer/store/store.hpp"
#include "xfer/sweep/heartbeat.hpp"
#include "xfer/train/trial.hpp"

namespace xfer::sweep {

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
using Clock = std::chrono::steady_clock;
}  // namespace

std::vector<std::pair<std::string, std::string>> shared_settings(const RunOptions& o) {
  return {{"--device", o.device.substr(0, o.device.find(':'))}, {"--input-pipeline", o.input_pipeline}};
}

void Worker::loop() {
  report(Report::ready, -1);
  while (true) {
    const Order order = transport_.receive_order();
    if (order.kind == Order::shutdown) break;
    run(order);
  }
  transport_.drain_stops();
}

void Worker::report(Report::Kind kind, int64_t trial, Report r) {
  r.kind = kind;
  r.rank = mpi_.rank();
  r.trial = trial;
  r.host = host_name();
  r.message = stop_requested().load() && kind == Report::ready ? "stop requested" : r.message;
  transport_.send_report(r);
}

// The dataset as rank 0 resolved it, never as this rank's spec would say.
const data::Dataset& Worker::dataset(const ResolvedDataset& d) {
  auto it = datasets_.find(d.spec.name);
  if (it == datasets_.end())
    it = datasets_.emplace(d.spec.name, data::open(d.spec.name, d.spec.kind, d.spec.root.path, d.split)).first;
  return it->second;
}

void Worker::run(const Order& order) {
  const bool leader = order.members.front() == mpi_.rank();
  std::unique_ptr<MpiGroup> group;
  if (order.members.size() > 1) group = MpiGroup::of(std::vector<int>(order.members.begin(), order.members.end()), order.group_tag);
  if (leader) report(Report::started, order.trial);

  // A companion thread: heartbeats for the coordinator (leader), and the coordinator's stop notice (everyone). Once
  // training has begun, a heartbeat also says the trial moved (sweep/heartbeat): a group stuck in NCCL or MPI falls
  // silent, and the coordinator declares it hung.
  std::atomic<bool> done{false};
  progress_.store(0);
  std::thread companion([&] {
    const auto began = Clock::now();
    auto seconds = [&] { return std::chrono::duration<double>(Clock::now() - began).count(); };
    Heartbeat beat(o_.heartbeat, o_.heartbeat_timeout, seconds());
    while (!done.load()) {
      if (auto which = transport_.poll_stop(); which && (*which == order.trial || *which < 0))
        stop_requested().store(true);
      if (beat.due(progress_.load(), seconds()) && leader) report(Report::heartbeat, order.trial);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });

  Report fin;
  if (o_.simulate > 0) {
    simulate(order, fin);
  } else {
    try {
      train(order, group.get(), leader, fin);
    } catch (const std::exception& e) {  // e.g. the dataset cannot be opened on this node
      fin.status = TrialStatus::failed;
      fin.message = e.what();
      const auto* x = dynamic_cast<const Error*>(&e);
      fin.cause = !x                                         ? Cause::trial
                  : x->kind() == Error::Kind::environment ? Cause::environment
                  : x->kind() == Error::Kind::input       ? Cause::input
                                                          : Cause::trial;
    }
  }
  done.store(true);
  companion.join();
  group.reset();
  if (leader) report(Report::finished, order.trial, std::move(fin));
  else report(Report::ready, -1);
}

void Worker::simulate(const Order& order, Report& fin) {
  // Benchmark executor: sleep for the trial's cost (the cost model's, as rank 0 computed it), in slices so a stop
  // is honoured.
  const auto began = Clock::now();
  const auto until = began + std::chrono::duration_cast<Clock::duration>(
                                 std::chrono::duration<double>(order.resolved.cost_gflop * o_.simulate * 1e-6));
  while (Clock::now() < until) {
    if (stop_requested().load()) {
      fin.status = TrialStatus::interrupted;
      fin.message = "simulated trial stopped";
      return;
    }
    std::this_thread::sleep_for(std::min<Clock::duration>(until - Clock::now(), std::chrono::milliseconds(20)));
  }
  fin.status = TrialStatus::done;
  fin.message = "simulated";
  fin.seconds = std::chrono::duration<double>(Clock::now() - began).count();
  fin.best_val = fin.test_at_best = kNaN;
}

void Worker::train(const Order& order, MpiGroup* group, bool leader, Report& fin) {
  const ResolvedTrial& trial = order.resolved;
  if (group) group->agree(shared_settings(o_));  // before anything collective (BAD-10)
  const data::Dataset& d = dataset(trial.dataset);
  // The backbone's SHA-256, recorded with the result; a pre-trained model's must be the one its upstream trial
  // exported (its metadata says which), or the trial does not start.
  // Every rank of the group checks, so they all start or none does.
  if (std::filesystem::is_regular_file(trial.backbone)) fin.backbone_sha256 = sha256_file_hex(trial.backbone);
  if (!trial.config.upstream.empty()) {
    if (trial.backbone_sha256.empty()) read_upstream_metadata(trial.backbone);  // throws, naming the missing file
    if (fin.backbone_sha256 != trial.backbone_sha256)
      throw Error::input(fmt::format("the pre-trained backbone {} has SHA-256 {}, but its upstream trial {} exported "
                                     "one with SHA-256 {} ({}): it was changed or replaced; rerun the upstream trial",
                                     trial.backbone, fin.backbone_sha256.empty() ? "(missing file)" : fin.backbone_sha256,
                                     trial.config.upstream, trial.backbone_sha256, metadata_path(trial.backbone)));
  }
  train::Environment env;
  env.export_backbone = trial.export_backbone;
  env.backbone = trial.backbone;
  env.checkpoint_dir = trial.checkpoint_dir;
  env.keep_best_model = trial.keep_best_model;
  env.group = group;
  env.local_rank = mpi_.local_rank();
  env.device = o_.device;
  env.threads = o_.threads;
  env.input_pipeline = parse<InputPipeline>(o_.input_pipeline, "--input-pipeline");
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
  fin.status = parse<TrialStatus>(train::status_name(res.status), "the trainer's status");
  fin.cause = res.cause;
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
  // A pre-training trial's backbone is exported by the trainer; its metadata (SHA-256, measured top-1) here.
  if (leader && res.status == train::Status::done && !trial.export_backbone.empty()) {
    try {
      fin.exported_sha256 = write_upstream_metadata(trial.export_backbone, trial.key, trial.config, res.test_at_best,
                                                    res.best_epoch, res.feature_dim);
    } catch (const std::exception& e) {
      fin.status = TrialStatus::failed;
      fin.cause = Cause::environment;
      fin.message = std::string("could not write the pre-trained backbone's metadata: ") + e.what();
    }
  }
}

}  // namespace xfer::sweep
