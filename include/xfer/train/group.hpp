// train/group: the communication a data-parallel trial needs from its rank group — gradient all-reduce, buffer
// broadcast, gathering predictions, agreeing on a flag. The trainer sees only this interface; the MPI
// implementation lives with the sweep (sweep/mpi_group.cpp), so MPI stays out of the training code.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace xfer {
class KeyValueStore;  // core/key_value_store.hpp
}

namespace xfer::train {

class Group {
 public:
  virtual ~Group() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // In place, over the group. `data` may be device memory when the implementation says it accepts it.
  virtual void allreduce_sum(float* data, size_t n) = 0;
  virtual void allreduce_sum(double* data, size_t n) = 0;
  virtual bool accepts_device_pointers() const { return false; }  // CUDA-aware MPI
  // Non-blocking sum, for reductions overlapped with backward (train/gradient_exchange): starts the sum of `data` in
  // place and returns; `data` must stay untouched until wait_all(). Every rank starts its reductions in the same
  // order. progress() lets started reductions advance (MPI progresses only inside MPI calls); wait_all() completes
  // every one started. The default is the blocking sum, done when start returns.
  virtual void start_allreduce_sum(float* data, size_t n) { allreduce_sum(data, n); }
  virtual void progress() {}
  virtual void wait_all() {}
  virtual void broadcast(float* data, size_t n, int root) = 0;
  virtual void broadcast(std::string& bytes, int root) = 0;
  // Concatenates every rank's vector on `root` (rank order); other ranks get an empty vector.
  virtual std::vector<float> gather(const std::vector<float>& mine, int root) = 0;
  virtual std::vector<int64_t> gather(const std::vector<int64_t>& mine, int root) = 0;
  // True on every rank if it is true on any rank.
  virtual bool any(bool flag) = 0;
  virtual void barrier() = 0;
  // A key-value store shared by the group's processes (a PJRT plugin's multi-process client is formed through one).
  // It lives as long as the process, beyond this group object: a plugin's client outlives the trial. The first call
  // may be collective, so every member makes it at the same point. nullptr: the group has none (a group of one
  // needs none).
  virtual std::shared_ptr<KeyValueStore> key_value_store() { return nullptr; }
};

// A group of one: a trial on a single rank (tests derive their in-process groups from it).
class SoloGroup : public Group {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void allreduce_sum(float*, size_t) override {}
  void allreduce_sum(double*, size_t) override {}
  bool accepts_device_pointers() const override { return true; }
  void broadcast(float*, size_t, int) override {}
  void broadcast(std::string&, int) override {}
  std::vector<float> gather(const std::vector<float>& mine, int) override { return mine; }
  std::vector<int64_t> gather(const std::vector<int64_t>& mine, int) override { return mine; }
  bool any(bool flag) override { return flag; }
  void barrier() override {}
};

}  // namespace xfer::train
