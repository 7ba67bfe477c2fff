// sweep/transport: the coordinator's and the workers' messages (messages.hpp) over a Boost.MPI communicator of
// their own, received by probing with a back-off rather than a spinning or a blocking receive (rank 0 runs the
// coordinator beside a worker, each on its own thread).
#pragma once

#include <optional>
#include <vector>

#include <boost/mpi/communicator.hpp>
#include <boost/mpi/request.hpp>

#include "messages.hpp"

namespace xfer::sweep {

class Transport {
 public:
  // A duplicate of MPI_COMM_WORLD, so that no trial's own traffic can match these messages.
  static Transport over_world();
  int rank() const { return ctrl_.rank(); }
  int size() const { return ctrl_.size(); }

  // The coordinator's side.
  std::optional<Report> receive_report(double wait_s);  // nothing within wait_s: nullopt (time for housekeeping)
  // Orders go out without waiting for the worker to take them: an order carries its resolved trial (~1 KB), and
  // Open MPI's shared-memory transport completes a send above its inline size (256 bytes) only once the receiver
  // copies it — a blocking send would hold the coordinator up to a worker's probe interval per order (measured:
  // makespan/bound 1.29 instead of 1.05 on bench/sweep_bench.py). complete_sends() waits for those in flight.
  void send_order(int rank, const Order& o);
  void send_stop(int rank, int64_t trial);               // trial < 0: whatever the rank runs
  void send_shutdown(int rank);
  void complete_sends();

  // A worker's side.
  Order receive_order();  // waits as long as it takes
  void send_report(const Report& r);
  std::optional<int64_t> poll_stop();
  void drain_stops();     // stop notices that arrived after their trial ended

 private:
  explicit Transport(boost::mpi::communicator c) : ctrl_(std::move(c)) {}
  boost::mpi::communicator ctrl_;
  std::vector<boost::mpi::request> in_flight_;  // orders not yet taken
};

}  // namespace xfer::sweep
