// sweep/transport: the coordinator's and the workers' messages (messages.hpp) over a Boost.MPI communicator of
// their own, received by probing with a back-off rather than a spinning or a blocking receive (rank 0 runs the
// coordinator beside a worker, each on its own thread).
#pragma once

#include <optional>

#include <boost/mpi/communicator.hpp>

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
  void send_order(int rank, const Order& o);
  void send_stop(int rank, int64_t trial);               // trial < 0: whatever the rank runs
  void send_shutdown(int rank);

  // A worker's side.
  Order receive_order();  // waits as long as it takes
  void send_report(const Report& r);
  std::optional<int64_t> poll_stop();
  void drain_stops();     // stop notices that arrived after their trial ended

 private:
  explicit Transport(boost::mpi::communicator c) : ctrl_(std::move(c)) {}
  boost::mpi::communicator ctrl_;
};

}  // namespace xfer::sweep
