// The rank group's key-value store over MPI (sweep/mpi_kv_store.cpp) in a real MPI job: run by ctest as
// `mpirun -n 3 key_value_store_test`, every rank runs every test, and a failure on any rank fails the job. Then the
// store behind PJRT_Client_Create's callbacks, through the C ABI, with a probe plugin (pjrt_kv_probe_plugin.cpp) that
// exchanges node addresses the way a multi-process plugin does.
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "xfer/core/error.hpp"
#include "xfer/core/key_value_store.hpp"
#include "xfer/pjrt/runtime.hpp"
#include "xfer/sweep/mpi.hpp"

namespace xfer {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

struct World {
  std::unique_ptr<sweep::MpiGroup> group = sweep::MpiGroup::world();
  std::shared_ptr<KeyValueStore> store = group->key_value_store();
};
World& world() {
  static World w;
  return w;
}

TEST(MpiKeyValueStore, EveryRankReadsWhatEveryOtherRankPut) {
  auto& w = world();
  ASSERT_GE(w.group->size(), 2) << "run under mpirun -n 3";
  const int me = w.group->rank(), n = w.group->size();
  // Values up to 1 MB: larger than MPI's eager limit, so replies take the rendezvous path.
  auto value_of = [](int r) { return std::string(static_cast<size_t>(1) << (10 + 5 * r), static_cast<char>('a' + r)); };
  w.store->put("a/" + std::to_string(me), value_of(me));
  for (int r = 0; r < n; ++r) {
    auto v = w.store->get("a/" + std::to_string(r), 30s);
    ASSERT_TRUE(v) << "rank " << me << " never saw rank " << r << "'s key";
    EXPECT_EQ(*v, value_of(r)) << r;
  }
  w.group->barrier();
  EXPECT_EQ(w.group->key_value_store(), w.store) << "one store per group for the life of the process";
}

TEST(MpiKeyValueStore, AGetWaitsForALaterPutFromAnotherRankInEveryThread) {
  auto& w = world();
  const int me = w.group->rank(), last = w.group->size() - 1;
  w.group->barrier();
  if (me == last) {
    std::this_thread::sleep_for(400ms);
    w.store->put("late", "at last");
  } else {
    const auto t0 = Clock::now();
    std::atomic<int> got{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 6; ++t)
      threads.emplace_back([&] {
        if (auto v = w.store->get("late", 30s); v && *v == "at last") ++got;
      });
    for (auto& t : threads) t.join();
    EXPECT_EQ(got.load(), 6);
    EXPECT_GE(Clock::now() - t0, 300ms) << "the gets returned before the put";
  }
  w.group->barrier();
}

TEST(MpiKeyValueStore, AMissingKeyTimesOutAndTryGetDoesNotWait) {
  auto& w = world();
  auto t0 = Clock::now();
  EXPECT_FALSE(w.store->get("never/" + std::to_string(w.group->rank()), 250ms));
  const auto waited = Clock::now() - t0;
  EXPECT_GE(waited, 240ms);
  EXPECT_LT(waited, 10s);
  t0 = Clock::now();
  EXPECT_FALSE(w.store->try_get("never"));
  EXPECT_LT(Clock::now() - t0, 2s);
  w.store->put("there/" + std::to_string(w.group->rank()), "yes");
  EXPECT_EQ(w.store->try_get("there/" + std::to_string(w.group->rank())).value_or(""), "yes");
  w.group->barrier();
}

TEST(MpiKeyValueStore, ManyThreadsOnEveryRankPutAndGetAtOnce) {
  auto& w = world();
  const int me = w.group->rank(), n = w.group->size();
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      for (int k = 0; k < 40; ++k) {
        w.store->put("m/" + std::to_string(me) + "/" + std::to_string(t) + "/" + std::to_string(k), std::to_string(me * k + t));
        const int other = (me + 1) % n;
        auto v = w.store->get("m/" + std::to_string(other) + "/" + std::to_string(t) + "/" + std::to_string(k), 60s);
        if (!v || *v != std::to_string(other * k + t)) ++wrong;
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
  w.group->barrier();
  // A later put replaces the value, for everyone.
  if (me == 0) w.store->put("replaced", "first");
  w.group->barrier();
  if (me == n - 1) w.store->put("replaced", "second");
  w.group->barrier();
  EXPECT_EQ(w.store->try_get("replaced").value_or(""), "second");
  w.group->barrier();
}

TEST(MpiKeyValueStore, APjrtPluginExchangesItsNodesAddressesThroughTheStoreCallbacks) {
  auto& w = world();
  const int me = w.group->rank(), n = w.group->size();
  try {
    pjrt::Client::open(XFER_PJRT_KV_PROBE, {w.store, me, n});
    FAIL() << "the probe plugin makes no client";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("probe node " + std::to_string(me) + " of " + std::to_string(n) + " saw"), std::string::npos) << m;
    for (int r = 0; r < n; ++r) {
      const std::string seen = "[" + std::to_string(r) + " value:host-" + std::to_string(r) + ":";
      EXPECT_NE(m.find(seen), std::string::npos) << "rank " << me << " did not see node " << r << ": " << m;
      EXPECT_NE(m.find(" " + std::to_string(6 + 7 + 1000 * r) + "]"), std::string::npos) << "node " << r << "'s size: " << m;
    }
    EXPECT_NE(m.find("try_get missing: code 5"), std::string::npos) << "NOT_FOUND: " << m;
    EXPECT_NE(m.find("get missing: code 4"), std::string::npos) << "DEADLINE_EXCEEDED: " << m;
  }
  w.group->barrier();
}

}  // namespace
}  // namespace xfer

int main(int argc, char** argv) {
  xfer::sweep::MpiRuntime mpi(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  int rc = RUN_ALL_TESTS();
  // Every rank's verdict: a failure anywhere fails the job.
  auto& w = xfer::world();
  float failed = rc != 0 ? 1.0f : 0.0f;
  w.group->allreduce_sum(&failed, 1);
  w.group.reset();
  return failed > 0 ? 1 : 0;
}
