#include "mpi_kv_store.hpp"

#include <mpi.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <list>
#include <map>
#include <mutex>
#include <thread>

#include "mpi_check.hpp"
#include "xfer/core/error.hpp"

namespace xfer::sweep {

namespace {

constexpr int kRequestTag = 1;
enum Op : char { kPut = 'p', kGet = 'g', kTryGet = 't' };

void check(int rc, const char* what) { check_mpi(rc, std::string("key-value store, ") + what); }

template <class T>
void append(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}
template <class T>
T take(const std::string& in, size_t& at) {
  T v{};
  if (at + sizeof v > in.size()) throw Error("MPI key-value store: a truncated message");
  std::memcpy(&v, in.data() + at, sizeof v);
  at += sizeof v;
  return v;
}

// A message of any length from (source, tag): matched probe, so concurrent receivers on other tags cannot take it.
std::string receive(MPI_Comm comm, int source, int tag, int* from = nullptr) {
  MPI_Message m;
  MPI_Status st;
  check(MPI_Mprobe(source, tag, comm, &m, &st), "probe");
  int n = 0;
  MPI_Get_count(&st, MPI_CHAR, &n);
  std::string bytes(static_cast<size_t>(n), '\0');
  check(MPI_Mrecv(bytes.data(), n, MPI_CHAR, &m, MPI_STATUS_IGNORE), "receive");
  if (from) *from = st.MPI_SOURCE;
  return bytes;
}

class MpiKeyValueStore final : public KeyValueStore {
 public:
  explicit MpiKeyValueStore(MPI_Comm comm) : comm_(comm) {
    MPI_Comm_rank(comm_, &rank_);
    void* ub = nullptr;
    int flag = 0;
    MPI_Comm_get_attr(comm_, MPI_TAG_UB, &ub, &flag);
    tag_ub_ = flag ? std::min(*static_cast<int*>(ub), 1 << 22) : 32767;
    if (rank_ == 0) server_ = std::thread([this] { serve(); });
  }
  ~MpiKeyValueStore() override { close(); }

  void close() {
    if (closed_.exchange(true)) return;
    if (server_.joinable()) server_.join();
    MPI_Comm_free(&comm_);
  }

  void put(const std::string& key, const std::string& value) override {
    if (rank_ == 0) return ensure_open(), local_.put(key, value);
    request(kPut, key, value, 0);
  }
  std::optional<std::string> get(const std::string& key, std::chrono::milliseconds timeout) override {
    if (rank_ == 0) return ensure_open(), local_.get(key, timeout);
    return request(kGet, key, "", timeout.count());
  }
  std::optional<std::string> try_get(const std::string& key) override {
    if (rank_ == 0) return ensure_open(), local_.try_get(key);
    return request(kTryGet, key, "", 0);
  }

 private:
  void ensure_open() const {
    if (closed_.load()) throw Error("MPI key-value store: used after MPI was shut down");
  }

  // A member's request to rank 0 and its reply, on a reply tag of this request's own (requests come from any thread).
  std::optional<std::string> request(Op op, const std::string& key, const std::string& value, int64_t timeout_ms) {
    ensure_open();
    const int reply_tag = 2 + static_cast<int>(next_.fetch_add(1) % static_cast<unsigned>(tag_ub_ - 2));
    std::string msg(1, op);
    append<int32_t>(msg, reply_tag);
    append<int64_t>(msg, timeout_ms);
    append<uint32_t>(msg, static_cast<uint32_t>(key.size()));
    msg += key;
    msg += value;
    check(MPI_Send(msg.data(), static_cast<int>(msg.size()), MPI_CHAR, 0, kRequestTag, comm_), "send a request");
    const std::string reply = receive(comm_, 0, reply_tag);
    if (reply.empty() || reply[0] == 0) return std::nullopt;
    return reply.substr(1);
  }

  struct Waiting {
    int source, tag;
    std::string key;
    std::chrono::steady_clock::time_point deadline;
  };

  void reply(int source, int tag, const std::optional<std::string>& value) {
    std::string out(1, value ? 1 : 0);
    if (value) out += *value;
    check(MPI_Send(out.data(), static_cast<int>(out.size()), MPI_CHAR, source, tag, comm_), "reply");
  }

  // Rank 0's server: requests in arrival order, waiting gets answered when their key arrives or their time is up.
  // It polls (MPI_Improbe) so that it can also watch the waiting gets' deadlines and its stop flag.
  void serve() {
    std::list<Waiting> waiting;
    auto idle = std::chrono::microseconds(50);
    try {
      while (!closed_.load()) {
        int flag = 0;
        MPI_Message m;
        MPI_Status st;
        check(MPI_Improbe(MPI_ANY_SOURCE, kRequestTag, comm_, &flag, &m, &st), "probe");
        if (flag) {
          int n = 0;
          MPI_Get_count(&st, MPI_CHAR, &n);
          std::string msg(static_cast<size_t>(n), '\0');
          check(MPI_Mrecv(msg.data(), n, MPI_CHAR, &m, MPI_STATUS_IGNORE), "receive a request");
          size_t at = 1;
          const Op op = static_cast<Op>(msg.at(0));
          const int tag = take<int32_t>(msg, at);
          const int64_t timeout_ms = take<int64_t>(msg, at);
          const uint32_t key_size = take<uint32_t>(msg, at);
          if (at + key_size > msg.size()) throw Error("MPI key-value store: a truncated request");
          const std::string key = msg.substr(at, key_size), value = msg.substr(at + key_size);
          if (op == kPut) {
            local_.put(key, value);
            reply(st.MPI_SOURCE, tag, std::string());
          } else if (auto v = local_.try_get(key); v || op == kTryGet) {
            reply(st.MPI_SOURCE, tag, v);
          } else {
            waiting.push_back({st.MPI_SOURCE, tag, key,
                               std::chrono::steady_clock::now() + std::chrono::milliseconds(std::max<int64_t>(0, timeout_ms))});
          }
          idle = std::chrono::microseconds(50);
        }
        const auto now = std::chrono::steady_clock::now();
        for (auto it = waiting.begin(); it != waiting.end();) {
          auto v = local_.try_get(it->key);
          if (v || now >= it->deadline) {
            reply(it->source, it->tag, v);
            it = waiting.erase(it);
          } else {
            ++it;
          }
        }
        if (!flag) {
          std::this_thread::sleep_for(idle);
          idle = std::min(idle * 2, std::chrono::microseconds(2000));
        }
      }
      for (const auto& w : waiting) reply(w.source, w.tag, std::nullopt);  // nobody should wait at shutdown
    } catch (const std::exception& e) {
      // An MPI failure in the server: the members' requests cannot be answered. MPI's default error handler aborts
      // the job before this is reached; with another handler, say why before the process ends.
      std::fprintf(stderr, "xfer: %s\n", e.what());
      std::abort();
    }
  }

  MPI_Comm comm_;
  int rank_ = 0, tag_ub_ = 32767;
  std::atomic<bool> closed_{false};
  std::atomic<unsigned> next_{0};
  LocalKeyValueStore local_;  // rank 0's map
  std::thread server_;
};

std::mutex registry_mu;
std::map<std::vector<int>, std::shared_ptr<MpiKeyValueStore>>& registry() {
  static std::map<std::vector<int>, std::shared_ptr<MpiKeyValueStore>> r;
  return r;
}

}  // namespace

std::shared_ptr<KeyValueStore> group_key_value_store(void* comm, const std::vector<int>& members) {
  std::lock_guard<std::mutex> lock(registry_mu);
  auto& r = registry();
  if (auto it = r.find(members); it != r.end()) return it->second;
  MPI_Comm own;
  check(MPI_Comm_dup(*static_cast<MPI_Comm*>(comm), &own), "duplicate the group's communicator");
  auto store = std::make_shared<MpiKeyValueStore>(own);
  r.emplace(members, store);
  return store;
}

void close_key_value_stores() {
  std::lock_guard<std::mutex> lock(registry_mu);
  for (auto& [members, store] : registry()) store->close();
  registry().clear();
}

}  // namespace xfer::sweep
