#include "xfer/sweep/mpi.hpp"

#include <mpi.h>

#include <climits>
#include <cstdlib>

#include "mpi_check.hpp"
#include "mpi_kv_store.hpp"
#include "xfer/core/error.hpp"
#include "xfer/store/store.hpp"

#if __has_include(<mpi-ext.h>)
#include <mpi-ext.h>
#endif

namespace xfer::sweep {

namespace {
MPI_Comm as_comm(void* p) { return *static_cast<MPI_Comm*>(p); }
void check(int rc, const char* what) { check_mpi(rc, what); }
// MPI counts are ints: move large buffers in pieces.
template <class F>
void in_chunks(size_t n, F f) {
  constexpr size_t kMax = static_cast<size_t>(INT_MAX / 2);
  for (size_t at = 0; at < n; at += kMax) f(at, static_cast<int>(std::min(kMax, n - at)));
}
}  // namespace

MpiRuntime::MpiRuntime(int* argc, char*** argv) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    check(MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided), "init");
    owner_ = true;
    if (provided < MPI_THREAD_MULTIPLE)
      throw Error("this MPI library does not provide MPI_THREAD_MULTIPLE, which xfer's coordinator needs (rank 0 "
                  "runs it beside a worker)");
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  MPI_Comm local;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local);
  MPI_Comm_rank(local, &local_rank_);
  MPI_Comm_free(&local);
}

MpiRuntime::~MpiRuntime() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) close_key_value_stores();  // their servers use MPI
  if (owner_ && !finalized) {
    // HDF5 (parallel build) shuts itself down from an MPI_COMM_SELF attribute inside MPI_Finalize; shut it down
    // first, while every store object is already closed, so that nothing of it runs inside MPI_Finalize.
    // If HDF5 cannot be shut down safely (a file's close failed), MPI_Finalize would run HDF5's shutdown and crash:
    // the process ends without it (mpirun reports that; the error that caused it was already thrown).
    if (store::close_library()) MPI_Finalize();
  }
}

std::string MpiRuntime::library_version() {
  char v[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  MPI_Get_library_version(v, &len);
  std::string s(v, static_cast<size_t>(len));
  if (auto nl = s.find('\n'); nl != std::string::npos) s.resize(nl);
  while (!s.empty() && (s.back() == ',' || s.back() == ' ')) s.pop_back();
  return s;
}

MpiGroup::MpiGroup(void* comm, bool owned, std::vector<int> members)
    : comm_(comm), owned_(owned), members_(std::move(members)) {
  MPI_Comm_rank(as_comm(comm_), &rank_);
  MPI_Comm_size(as_comm(comm_), &size_);
}

std::unique_ptr<MpiGroup> MpiGroup::world() {
  auto* c = new MPI_Comm(MPI_COMM_WORLD);
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  std::vector<int> all(static_cast<size_t>(size));
  for (int i = 0; i < size; ++i) all[static_cast<size_t>(i)] = i;
  return std::unique_ptr<MpiGroup>(new MpiGroup(c, false, std::move(all)));
}

std::unique_ptr<MpiGroup> MpiGroup::of(const std::vector<int>& world_ranks, int tag) {
  MPI_Group world_group, group;
  MPI_Comm_group(MPI_COMM_WORLD, &world_group);
  MPI_Group_incl(world_group, static_cast<int>(world_ranks.size()), world_ranks.data(), &group);
  auto* c = new MPI_Comm;
  check(MPI_Comm_create_group(MPI_COMM_WORLD, group, tag, c), "create the trial's group");
  MPI_Group_free(&group);
  MPI_Group_free(&world_group);
  return std::unique_ptr<MpiGroup>(new MpiGroup(c, true, world_ranks));
}

MpiGroup::~MpiGroup() {
  for (void* r : requests_) delete static_cast<MPI_Request*>(r);  // only after a failure: wait_all frees them
  auto* c = static_cast<MPI_Comm*>(comm_);
  if (owned_) MPI_Comm_free(c);
  delete c;
}

void MpiGroup::allreduce_sum(float* data, size_t n) {
  in_chunks(n, [&](size_t at, int k) {
    check(MPI_Allreduce(MPI_IN_PLACE, data + at, k, MPI_FLOAT, MPI_SUM, as_comm(comm_)), "allreduce");
  });
}
void MpiGroup::allreduce_sum(double* data, size_t n) {
  in_chunks(n, [&](size_t at, int k) {
    check(MPI_Allreduce(MPI_IN_PLACE, data + at, k, MPI_DOUBLE, MPI_SUM, as_comm(comm_)), "allreduce");
  });
}

void MpiGroup::start_allreduce_sum(float* data, size_t n) {
  in_chunks(n, [&](size_t at, int k) {
    auto* r = new MPI_Request;
    check(MPI_Iallreduce(MPI_IN_PLACE, data + at, k, MPI_FLOAT, MPI_SUM, as_comm(comm_), r), "allreduce");
    requests_.push_back(r);
  });
}

void MpiGroup::progress() {
  for (void* r : requests_) {
    int done = 0;
    check(MPI_Test(static_cast<MPI_Request*>(r), &done, MPI_STATUS_IGNORE), "test");
  }
}

void MpiGroup::wait_all() {
  std::vector<void*> started;
  started.swap(requests_);
  int rc = MPI_SUCCESS;
  for (void* r : started) {
    auto* q = static_cast<MPI_Request*>(r);
    const int k = MPI_Wait(q, MPI_STATUS_IGNORE);
    if (rc == MPI_SUCCESS) rc = k;
    delete q;
  }
  check(rc, "allreduce");
}

bool MpiGroup::accepts_device_pointers() const {
  if (const char* v = std::getenv("XFER_CUDA_AWARE_MPI")) return std::string(v) == "1";
#if defined(MPIX_CUDA_AWARE_SUPPORT) && MPIX_CUDA_AWARE_SUPPORT
  return MPIX_Query_cuda_support() == 1;
#else
  return false;
#endif
}

void MpiGroup::broadcast(float* data, size_t n, int root) {
  in_chunks(n, [&](size_t at, int k) { check(MPI_Bcast(data + at, k, MPI_FLOAT, root, as_comm(comm_)), "broadcast"); });
}

void MpiGroup::broadcast(std::string& bytes, int root) {
  uint64_t n = bytes.size();
  check(MPI_Bcast(&n, 1, MPI_UINT64_T, root, as_comm(comm_)), "broadcast");
  bytes.resize(n);
  in_chunks(n, [&](size_t at, int k) { check(MPI_Bcast(bytes.data() + at, k, MPI_CHAR, root, as_comm(comm_)), "broadcast"); });
}

namespace {
template <class T>
std::vector<T> gather_v(const std::vector<T>& mine, int root, MPI_Comm comm, MPI_Datatype type, int size, int rank) {
  int n = static_cast<int>(mine.size());
  std::vector<int> counts(static_cast<size_t>(size)), displs(static_cast<size_t>(size));
  check(MPI_Gather(&n, 1, MPI_INT, counts.data(), 1, MPI_INT, root, comm), "gather");
  std::vector<T> all;
  if (rank == root) {
    int total = 0;
    for (int i = 0; i < size; ++i) displs[i] = total, total += counts[i];
    all.resize(static_cast<size_t>(total));
  }
  check(MPI_Gatherv(mine.data(), n, type, all.data(), counts.data(), displs.data(), type, root, comm), "gatherv");
  return all;
}
}  // namespace

std::vector<float> MpiGroup::gather(const std::vector<float>& mine, int root) {
  return gather_v(mine, root, as_comm(comm_), MPI_FLOAT, size_, rank_);
}
std::vector<int64_t> MpiGroup::gather(const std::vector<int64_t>& mine, int root) {
  return gather_v(mine, root, as_comm(comm_), MPI_INT64_T, size_, rank_);
}

bool MpiGroup::any(bool flag) {
  int v = flag ? 1 : 0, out = 0;
  check(MPI_Allreduce(&v, &out, 1, MPI_INT, MPI_LOR, as_comm(comm_)), "allreduce");
  return out != 0;
}

void MpiGroup::barrier() { check(MPI_Barrier(as_comm(comm_)), "barrier"); }

void MpiGroup::agree(const std::vector<std::pair<std::string, std::string>>& settings) {
  std::string mine;
  for (const auto& [option, value] : settings) mine += option + '\t' + value + '\n';
  std::string first = mine;
  broadcast(first, 0);
  if (!any(first != mine)) return;
  // Someone differs: every member gathers every member's settings, so each throws the same message.
  const MPI_Comm c = as_comm(comm_);
  int n = static_cast<int>(mine.size());
  std::vector<int> counts(static_cast<size_t>(size_)), displs(static_cast<size_t>(size_));
  check(MPI_Allgather(&n, 1, MPI_INT, counts.data(), 1, MPI_INT, c), "allgather");
  int total = 0;
  for (int i = 0; i < size_; ++i) displs[static_cast<size_t>(i)] = total, total += counts[static_cast<size_t>(i)];
  std::string all(static_cast<size_t>(total), '\0');
  check(MPI_Allgatherv(mine.data(), n, MPI_CHAR, all.data(), counts.data(), displs.data(), MPI_CHAR, c), "allgatherv");
  std::string differences;
  for (size_t k = 0; k < settings.size(); ++k) {
    std::vector<std::string> values;
    for (int i = 0; i < size_; ++i) {
      std::string text = all.substr(static_cast<size_t>(displs[static_cast<size_t>(i)]),
                                    static_cast<size_t>(counts[static_cast<size_t>(i)]));
      size_t at = 0;
      for (size_t line = 0; line < k && at != std::string::npos; ++line) at = text.find('\n', at), at += at != std::string::npos;
      const size_t tab = text.find('\t', at), end = text.find('\n', at);
      values.push_back(tab == std::string::npos || end == std::string::npos ? "?" : text.substr(tab + 1, end - tab - 1));
    }
    bool same = true;
    for (const auto& v : values) same = same && v == values.front();
    if (same) continue;
    std::string list;
    for (int i = 0; i < size_; ++i)
      list += (i ? ", " : "") + (values[static_cast<size_t>(i)].empty() ? "(none)" : values[static_cast<size_t>(i)]) +
              " on world rank " + std::to_string(members_[static_cast<size_t>(i)]);
    differences += (differences.empty() ? "" : "; ") + settings[k].first + ": " + list;
  }
  throw Error::input("the ranks of one group were started with different options that every rank of a group must "
                     "share (" + differences + "); start every rank with the same ones");
}

std::shared_ptr<KeyValueStore> MpiGroup::key_value_store() { return group_key_value_store(comm_, members_); }

}  // namespace xfer::sweep
