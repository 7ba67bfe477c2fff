// sweep/messages: what the coordinator and the workers say to each other, serialised with Boost.Serialization.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <boost/serialization/string.hpp>
#include <boost/serialization/vector.hpp>

#include "xfer/core/vocabulary.hpp"
#include "xfer/sweep/resolved_trial.hpp"
#include "xfer/train/serialization.hpp"

namespace xfer::sweep {

enum Tag : int { kToCoordinator = 101, kToWorker = 102, kStop = 103 };

struct ProblemMsg {
  std::string id, path, reason;
  template <class A>
  void serialize(A& a, unsigned) {
    a& id& path& reason;
  }
};

// Worker → coordinator.
struct Report {
  enum Kind : int32_t { ready = 0, started = 1, epoch = 2, finished = 3, heartbeat = 4 };
  int32_t kind = ready;
  int32_t rank = 0;
  int64_t trial = -1;
  std::string host, device;
  train::EpochRecord epoch_record;
  // finished
  TrialStatus status = TrialStatus::failed;
  Cause cause = Cause::none;
  std::string message;
  int32_t best_epoch = -1, resumed_from_epoch = -1;
  double best_val = 0, test_at_best = 0, seconds = 0;
  std::vector<train::EpochRecord> epochs;
  int32_t classes = 0;
  std::vector<int64_t> val_samples, test_samples;
  std::vector<float> val_scores, test_scores;
  std::vector<ProblemMsg> problems;
  std::string backbone_sha256, exported_sha256;  // the backbone it trained from; a pre-training trial's export
  template <class A>
  void serialize(A& a, unsigned) {
    a& kind& rank& trial& host& device& epoch_record& status& cause& message& best_epoch& resumed_from_epoch& best_val&
        test_at_best& seconds& epochs& classes& val_samples& test_samples& val_scores& test_scores& problems&
        backbone_sha256& exported_sha256;
  }
};

// Coordinator → worker.
struct Order {
  enum Kind : int32_t { assign = 0, shutdown = 1 };
  int32_t kind = assign;
  int64_t trial = -1;
  int32_t attempt = 1;
  std::vector<int32_t> members;  // world ranks of the group, ascending; members[0] leads
  int32_t group_tag = 0;
  double deadline_unix = 0;      // 0: none
  ResolvedTrial resolved;        // what the trial is and where its files are: the worker reads no spec
  template <class A>
  void serialize(A& a, unsigned) {
    a& kind& trial& attempt& members& group_tag& deadline_unix& resolved;
  }
};

}  // namespace xfer::sweep
