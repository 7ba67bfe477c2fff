// sweep/mpi: MPI for xfer — initialisation (MPI_THREAD_MULTIPLE: rank 0 runs the coordinator beside a worker) and the
// data-parallel group of a trial over an MPI communicator. MPI appears here and in the rest of sweep/ only.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "xfer/train/group.hpp"

namespace xfer::sweep {

class MpiRuntime {
 public:
  MpiRuntime(int* argc, char*** argv);
  // Shuts HDF5 down (store::close_library), then MPI: main() destroys this after every store object.
  ~MpiRuntime();
  MpiRuntime(const MpiRuntime&) = delete;
  MpiRuntime& operator=(const MpiRuntime&) = delete;
  int rank() const { return rank_; }
  int size() const { return size_; }
  int local_rank() const { return local_rank_; }  // rank among the ranks on this node
  static std::string library_version();

 private:
  int rank_ = 0, size_ = 1, local_rank_ = 0;
  bool owner_ = false;
};

// The trial's rank group. Owns its communicator when built from a member list.
class MpiGroup final : public train::Group {
 public:
  // The whole world (`xfer train` under mpirun).
  static std::unique_ptr<MpiGroup> world();
  // Only the members call this (MPI_Comm_create_group), all with the same sorted list and tag.
  static std::unique_ptr<MpiGroup> of(const std::vector<int>& world_ranks, int tag);
  ~MpiGroup() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void allreduce_sum(float* data, size_t n) override;
  void allreduce_sum(double* data, size_t n) override;
  bool accepts_device_pointers() const override;
  void start_allreduce_sum(float* data, size_t n) override;  // MPI_Iallreduce
  void progress() override;                                  // MPI_Testall
  void wait_all() override;                                  // MPI_Waitall
  void broadcast(float* data, size_t n, int root) override;
  void broadcast(std::string& bytes, int root) override;
  std::vector<float> gather(const std::vector<float>& mine, int root) override;
  std::vector<int64_t> gather(const std::vector<int64_t>& mine, int root) override;
  bool any(bool flag) override;
  void barrier() override;
  // Options every member must share, as (option, value) pairs in the same order on every member (e.g.
  // {"--gradient-exchange", "overlap"}): collective, at the group's start, before any of the trial's collectives —
  // members that differ would wait in different collectives for ever (reliability probe 3, BAD-10). A difference is
  // an Error (input) on every member, naming the option and each member's value.
  void agree(const std::vector<std::pair<std::string, std::string>>& settings);
  // Served by group rank 0 over a communicator of its own (sweep/mpi_kv_store.hpp); one per member list.
  std::shared_ptr<KeyValueStore> key_value_store() override;

 private:
  MpiGroup(void* comm, bool owned, std::vector<int> members);
  void* comm_;  // MPI_Comm, kept opaque so this header needs no mpi.h
  bool owned_;
  int rank_ = 0, size_ = 1;
  std::vector<int> members_;     // world ranks, in group rank order
  std::vector<void*> requests_;  // MPI_Request each, started by start_allreduce_sum
};

}  // namespace xfer::sweep
