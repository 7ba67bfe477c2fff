#include "transport.hpp"

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <thread>

#include <boost/mpi/nonblocking.hpp>
#include <boost/optional.hpp>

namespace bmpi = boost::mpi;

namespace xfer::sweep {

namespace {

using Clock = std::chrono::steady_clock;

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

Transport Transport::over_world() { return Transport(bmpi::communicator(MPI_COMM_WORLD, bmpi::comm_duplicate)); }

std::optional<Report> Transport::receive_report(double wait_s) {
  const auto since = Clock::now();
  auto st = wait_probe(ctrl_, bmpi::any_source, kToCoordinator,
                       [&] { return std::chrono::duration<double>(Clock::now() - since).count() > wait_s; });
  if (!st) return std::nullopt;
  Report r;
  ctrl_.recv(st->source(), kToCoordinator, r);
  return r;
}

void Transport::send_order(int rank, const Order& o) {
  // The request keeps its own copy of the serialised order (boost::mpi::request::preserve).
  in_flight_.push_back(ctrl_.isend(rank, kToWorker, o));
  in_flight_.erase(std::remove_if(in_flight_.begin(), in_flight_.end(), [](bmpi::request& r) { return bool(r.test()); }),
                   in_flight_.end());
}

void Transport::complete_sends() {
  bmpi::wait_all(in_flight_.begin(), in_flight_.end());
  in_flight_.clear();
}

void Transport::send_stop(int rank, int64_t trial) { ctrl_.send(rank, kStop, trial); }

void Transport::send_shutdown(int rank) {
  Order o;
  o.kind = Order::shutdown;
  send_order(rank, o);
}

Order Transport::receive_order() {
  wait_probe(ctrl_, 0, kToWorker, nullptr);
  Order o;
  ctrl_.recv(0, kToWorker, o);
  return o;
}

void Transport::send_report(const Report& r) { ctrl_.send(0, kToCoordinator, r); }

std::optional<int64_t> Transport::poll_stop() {
  if (!ctrl_.iprobe(0, kStop)) return std::nullopt;
  int64_t which = -1;
  ctrl_.recv(0, kStop, which);
  return which;
}

void Transport::drain_stops() {
  while (poll_stop()) {
  }
}

}  // namespace xfer::sweep
