// sweep/worker: one rank's side of the sweep — waits for an order, runs the trial it carries (alone or with its
// group), reports epochs, heartbeats and the result. It is given no spec: everything it needs comes in the order
// (sweep/resolved_trial.hpp), so a worker rank never reads the spec or stats its paths.
#pragma once

#include <atomic>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "transport.hpp"
#include "xfer/data/dataset.hpp"
#include "xfer/sweep/sweep.hpp"

namespace xfer::sweep {

// The options of `xfer run` every rank of a trial's group must share (MpiGroup::agree): the device's kind and the
// input pipeline.
std::vector<std::pair<std::string, std::string>> shared_settings(const RunOptions& o);

class Worker {
 public:
  Worker(const RunOptions& o, MpiRuntime& mpi, Transport transport)
      : o_(o), mpi_(mpi), transport_(std::move(transport)) {}
  // Until the coordinator's shutdown.
  void loop();

 private:
  void report(Report::Kind kind, int64_t trial, Report r = {});
  const data::Dataset& dataset(const ResolvedDataset& d);
  void run(const Order& order);
  void simulate(const Order& order, Report& fin);
  void train(const Order& order, MpiGroup* group, bool leader, Report& fin);

  const RunOptions& o_;
  std::atomic<int64_t> progress_{0};  // the running trial's steps and evaluation batches (train::Environment)
  MpiRuntime& mpi_;
  Transport transport_;
  std::map<std::string, data::Dataset> datasets_;  // by dataset name: opened once per rank
};

}  // namespace xfer::sweep
