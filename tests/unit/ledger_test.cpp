// The sweep's policy in-process: the ledger's decisions and effects (README "After a failure"), and the
// scheduler's rules — longest first, the deadline, hung groups, the end of the sweep, a job array's shards — and a
// worker's heartbeat against the scheduler's hung check, on a fake clock.
#include <algorithm>
#include <numeric>
#include <set>

#include <gtest/gtest.h>

#include "xfer/sweep/heartbeat.hpp"
#include "xfer/sweep/ledger.hpp"
#include "xfer/sweep/scheduler.hpp"

namespace xfer::sweep {
namespace {

// ---- the ledger ------------------------------------------------------------------------------------------------

TEST(Ledger, DoneAndDivergedAreNeverRerunWhateverTheirAttempts) {
  for (int attempts : {0, 1, 3, 7}) {
    EXPECT_EQ(decide(TrialStatus::done, attempts, 3), Action::done);
    EXPECT_EQ(decide(TrialStatus::diverged, attempts, 3), Action::final);
  }
  EXPECT_FALSE(runs(Action::done));
  EXPECT_FALSE(runs(Action::final));
  EXPECT_FALSE(runs(Action::exhausted));
}

TEST(Ledger, RunningAndInterruptedTrialsResumeWithoutCountingAnAttempt) {
  for (auto s : {TrialStatus::running, TrialStatus::interrupted}) {
    EXPECT_EQ(decide(s, 3, 3), Action::resume) << name(s) << ": a resume is not a new attempt, even at the limit";
    EXPECT_TRUE(runs(Action::resume));
  }
  const Start s = on_start(Action::resume, 2);
  EXPECT_EQ(s.attempts, 2);
  EXPECT_FALSE(s.clear_checkpoints) << "a resume continues from its checkpoint";
}

TEST(Ledger, NewAndPendingTrialsStartAsTheFirstAttempt) {
  EXPECT_EQ(decide(std::nullopt, 0, 3), Action::fresh);
  EXPECT_EQ(decide(TrialStatus::pending, 0, 3), Action::fresh);
  const Start s = on_start(Action::fresh, 0);
  EXPECT_EQ(s.attempts, 1);
  EXPECT_FALSE(s.clear_checkpoints);
}

TEST(Ledger, FailedAndOutOfMemoryAreRetriedUntilMaxAttemptsThenExhausted) {
  for (auto s : {TrialStatus::failed, TrialStatus::oom}) {
    EXPECT_EQ(decide(s, 1, 3), Action::retry) << name(s);
    EXPECT_EQ(decide(s, 2, 3), Action::retry) << name(s);
    EXPECT_EQ(decide(s, 3, 3), Action::exhausted) << name(s);
    EXPECT_EQ(decide(s, 4, 3), Action::exhausted) << name(s);
    EXPECT_EQ(decide(s, 1, 1), Action::exhausted) << name(s) << ": max_attempts = 1 never retries";
  }
}

TEST(Ledger, ARetryCountsOneMoreAttemptAndStartsFromScratch) {
  const Start s = on_start(Action::retry, 1);
  EXPECT_EQ(s.attempts, 2);
  EXPECT_TRUE(s.clear_checkpoints) << "the old checkpoints may be what failed";
}

TEST(Ledger, ATrialThatAlwaysFailsRunsExactlyMaxAttemptsTimesAcrossRuns) {
  const int max_attempts = 3;
  std::optional<TrialStatus> status;  // not in the file
  int attempts = 0, started = 0;
  for (int run = 0; run < 6; ++run) {  // each run of `xfer run`, and the retries inside it
    Action a = decide(status, attempts, max_attempts);
    while (runs(a)) {
      attempts = on_start(a, attempts).attempts;
      ++started;
      const Finish f = on_finish(TrialStatus::failed, attempts, max_attempts, false);
      status = f.status;
      if (!f.retry) {
        EXPECT_TRUE(f.exhausted);
        EXPECT_TRUE(f.remove_checkpoints);
        break;
      }
      a = Action::retry;
    }
  }
  EXPECT_EQ(started, max_attempts);
  EXPECT_EQ(attempts, max_attempts);
  EXPECT_EQ(decide(status, attempts, max_attempts), Action::exhausted);
}

TEST(Ledger, AFinishedReportSaysWhatHappensToTheRow) {
  const Finish done = on_finish(TrialStatus::done, 1, 3, false);
  EXPECT_EQ(done.status, TrialStatus::done);
  EXPECT_TRUE(done.final);
  EXPECT_TRUE(done.remove_checkpoints);
  EXPECT_FALSE(done.retry);
  EXPECT_FALSE(done.stop_sweep);
  const Finish diverged = on_finish(TrialStatus::diverged, 3, 3, false);
  EXPECT_TRUE(diverged.final) << "diverged is a result, not a failure";
  EXPECT_FALSE(diverged.retry);
  EXPECT_FALSE(diverged.exhausted);
  const Finish oom = on_finish(TrialStatus::oom, 2, 3, false);
  EXPECT_TRUE(oom.retry);
  EXPECT_FALSE(oom.final);
  EXPECT_FALSE(oom.remove_checkpoints);
  const Finish last = on_finish(TrialStatus::failed, 3, 3, false);
  EXPECT_FALSE(last.retry);
  EXPECT_TRUE(last.exhausted);
  EXPECT_TRUE(last.remove_checkpoints);
  // An interrupted trial keeps its checkpoint and resumes next run; if the sweep was not stopping, only this
  // group saw the stop and the sweep stops too.
  const Finish alone = on_finish(TrialStatus::interrupted, 1, 3, false);
  EXPECT_TRUE(alone.stop_sweep);
  EXPECT_FALSE(alone.final);
  EXPECT_FALSE(alone.remove_checkpoints);
  EXPECT_FALSE(alone.retry);
  EXPECT_FALSE(on_finish(TrialStatus::interrupted, 1, 3, true).stop_sweep);
  EXPECT_EQ(decide(alone.status, 1, 3), Action::resume);
}

// Reliability probe B1/B2: a fault of the machine (disk full, no such device) is not the trial's — it keeps its
// attempt and resumes, a result it has is kept, and the sweep stops instead of failing every trial in turn.
TEST(Ledger, AnEnvironmentFaultStopsTheSweepAndSpendsNoAttempt) {
  const Finish full = on_finish(TrialStatus::failed, 1, 3, false, Cause::environment);
  EXPECT_EQ(full.status, TrialStatus::interrupted);
  EXPECT_TRUE(full.environment_stop);
  EXPECT_FALSE(full.retry) << "the same fault would meet it again at once";
  EXPECT_FALSE(full.exhausted);
  EXPECT_FALSE(full.remove_checkpoints) << "it resumes from them";
  EXPECT_EQ(decide(full.status, 1, 3), Action::resume);
  EXPECT_EQ(on_start(Action::resume, 1).attempts, 1) << "the resumed run is the same attempt";
  const Finish last = on_finish(TrialStatus::failed, 3, 3, false, Cause::environment);
  EXPECT_EQ(last.status, TrialStatus::interrupted) << "even on its last attempt: the attempt was not its fault";
  const Finish kept = on_finish(TrialStatus::done, 1, 3, false, Cause::environment);
  EXPECT_EQ(kept.status, TrialStatus::done) << "a result is never thrown away for a checkpoint";
  EXPECT_TRUE(kept.final);
  EXPECT_TRUE(kept.environment_stop);
}

// Reliability probe B8: a trial that fails on its data is not retried in the same run (nothing would change); the
// next run, after the data is fixed, retries it as usual.
TEST(Ledger, AnInputFaultIsNotRetriedInTheSameRun) {
  const Finish f = on_finish(TrialStatus::failed, 1, 3, false, Cause::input);
  EXPECT_EQ(f.status, TrialStatus::failed);
  EXPECT_FALSE(f.retry);
  EXPECT_FALSE(f.exhausted);
  EXPECT_FALSE(f.environment_stop);
  EXPECT_EQ(decide(f.status, 1, 3), Action::retry);
  EXPECT_TRUE(on_finish(TrialStatus::failed, 1, 3, false, Cause::trial).retry);
}

TEST(Ledger, AHungGroupsTrialFailsAndIsRetriedLikeAnyFailure) {
  const Finish h = on_hung(1, 3);
  EXPECT_EQ(h.status, TrialStatus::failed);
  EXPECT_TRUE(h.retry);
  EXPECT_FALSE(h.remove_checkpoints) << "the silent group may still be writing them";
  EXPECT_TRUE(on_hung(3, 3).exhausted);
}

// ---- the scheduler ---------------------------------------------------------------------------------------------

std::vector<int64_t> run_one_rank(Scheduler& s) {
  std::vector<int64_t> order;
  s.ready(0);
  for (double now = 0;; now += 1) {
    const auto d = s.dispatch(now);
    if (d.starts.empty()) break;
    EXPECT_EQ(d.starts.size(), 1u);
    order.push_back(d.starts[0].trial);
    EXPECT_TRUE(s.finish(d.starts[0].trial, 0));
  }
  return order;
}

TEST(Scheduler, HandsOutTheCostliestTrialFirstTiesInSpecOrder) {
  Scheduler s(1, 0);
  const std::vector<double> cost = {1, 5, 3, 5, 0.5};
  for (size_t i = 0; i < cost.size(); ++i) s.add({static_cast<int64_t>(i), cost[i], 1, 10});
  EXPECT_EQ(run_one_rank(s), (std::vector<int64_t>{1, 3, 2, 0, 4}));
  EXPECT_EQ(s.over(10, 60), Scheduler::End::finished);
}

TEST(Scheduler, AGroupTrialWaitsForEnoughIdleRanksAndGetsTheLowest) {
  Scheduler s(3, 0);
  s.add({0, 10, 2, 1});  // the costliest, needs two ranks
  s.add({1, 1, 1, 1});
  s.ready(2);
  auto d = s.dispatch(0);
  ASSERT_EQ(d.starts.size(), 1u) << "one idle rank: only the one-rank trial fits";
  EXPECT_EQ(d.starts[0].trial, 1);
  EXPECT_EQ(d.starts[0].members, (std::vector<int>{2}));
  s.ready(1);
  s.ready(0);
  d = s.dispatch(1);
  ASSERT_EQ(d.starts.size(), 1u);
  EXPECT_EQ(d.starts[0].trial, 0);
  EXPECT_EQ(d.starts[0].members, (std::vector<int>{0, 1}));
  EXPECT_EQ(s.idle(), 0u);
  EXPECT_EQ(s.running(), 2u);
}

TEST(Scheduler, ATrialWiderThanTheJobIsReportedNeverStarted) {
  Scheduler s(2, 0);
  s.add({0, 10, 3, 1});
  s.add({1, 1, 1, 1});
  s.ready(0);
  s.ready(1);
  const auto d = s.dispatch(0);
  EXPECT_EQ(d.too_wide, (std::vector<int64_t>{0}));
  ASSERT_EQ(d.starts.size(), 1u);
  EXPECT_EQ(d.starts[0].trial, 1);
  EXPECT_EQ(s.pending(), 0u);
}

TEST(Scheduler, ATrialWhoseEpochDoesNotFitBeforeTheDeadlineIsNotStarted) {
  Scheduler s(1, 100);  // stop at t = 100
  s.add({0, 10, 1, 10});
  s.ready(0);
  // No throughput measured yet: nothing to estimate with, so the first trial starts even late.
  auto d = s.dispatch(95);
  ASSERT_EQ(d.starts.size(), 1u);
  s.record_epoch(0, 2.0);  // 1 GFLOP per epoch took 2 s: 2 s per GFLOP
  EXPECT_DOUBLE_EQ(s.seconds_per_gflop(), 2.0);
  EXPECT_TRUE(s.finish(0, 0));
  s.add({1, 100, 1, 2});  // 50 GFLOP per epoch: 100 s
  s.add({2, 20, 1, 2});   // 10 GFLOP per epoch: 20 s (+10 %: 22 s)
  d = s.dispatch(50);
  EXPECT_EQ(d.out_of_time, (std::vector<int64_t>{1}));
  ASSERT_EQ(d.starts.size(), 1u);
  EXPECT_EQ(d.starts[0].trial, 2);
  EXPECT_EQ(s.pending(), 0u) << "left pending in the file, not in this run's queue";
  // The same trial one second later would not fit: 79 + 22 > 100.
  Scheduler late(1, 100);
  late.add({0, 10, 1, 10});
  late.ready(0);
  late.dispatch(0);
  late.record_epoch(0, 2.0);
  late.finish(0, 0);
  late.add({2, 20, 1, 2});
  EXPECT_EQ(late.dispatch(79).out_of_time, (std::vector<int64_t>{2}));
}

TEST(Scheduler, TheDeadlineKeepsTheGraceButNeverMoreThanAFifthOfTheAllocation) {
  EXPECT_DOUBLE_EQ(stop_deadline(1000, 1000 + 4 * 3600, 60), 1000 + 4 * 3600 - 60);
  EXPECT_DOUBLE_EQ(stop_deadline(1000, 1060, 60), 1060 - 12) << "a one-minute job keeps 12 s, not 60";
  EXPECT_DOUBLE_EQ(stop_deadline(1000, 0, 60), 0) << "no end known: no deadline";
  Scheduler s(1, 100);
  EXPECT_FALSE(s.past_deadline(100));
  EXPECT_TRUE(s.past_deadline(100.5));
  EXPECT_FALSE(Scheduler(1, 0).past_deadline(1e12));
}

TEST(Scheduler, AfterTheStopNothingStartsAndTheSweepEndsWhenEveryRankReportsOrTheGracePasses) {
  Scheduler s(2, 0);
  s.add({0, 1, 1, 1});
  s.add({1, 1, 1, 1});
  s.add({2, 1, 1, 1});
  s.ready(0);
  s.ready(1);
  ASSERT_EQ(s.dispatch(0).starts.size(), 2u);
  s.stop(10);
  EXPECT_TRUE(s.stopping());
  EXPECT_TRUE(s.finish(0, 0));
  EXPECT_TRUE(s.dispatch(11).starts.empty()) << "pending trials stay pending";
  EXPECT_EQ(s.pending(), 1u);
  EXPECT_EQ(s.over(11, 60), Scheduler::End::no) << "trial 1 is still checkpointing";
  EXPECT_TRUE(s.finish(1, 1));
  EXPECT_EQ(s.over(12, 60), Scheduler::End::finished);
  // A rank that never reports back after the stop: the sweep waits the grace, then gives up on it.
  Scheduler t(2, 0);
  t.ready(0);
  t.stop(100);
  EXPECT_EQ(t.over(150, 60), Scheduler::End::no);
  EXPECT_EQ(t.over(161, 60), Scheduler::End::stragglers);
}

TEST(Scheduler, ASilentGroupIsHungItsRanksAreNotReusedUntilTheyReport) {
  Scheduler s(3, 0);
  s.add({0, 5, 1, 1});
  s.add({1, 4, 2, 1});
  for (int r : {0, 1, 2}) s.ready(r);
  const auto d = s.dispatch(0);
  ASSERT_EQ(d.starts.size(), 2u);
  EXPECT_EQ(d.starts[0].trial, 0);
  EXPECT_EQ(d.starts[0].members, (std::vector<int>{0}));
  EXPECT_EQ(d.starts[1].members, (std::vector<int>{1, 2}));
  s.heartbeat(0, 50);
  EXPECT_TRUE(s.take_hung(59, 60).empty()) << "trial 1's group has been silent 59 s of 60";
  const auto hung = s.take_hung(100, 60);
  ASSERT_EQ(hung.size(), 1u) << "trial 0 beat at 50: silent 50 s";
  EXPECT_EQ(hung[0].trial, 1);
  EXPECT_EQ(hung[0].members, (std::vector<int>{1, 2}));
  EXPECT_DOUBLE_EQ(hung[0].silent_s, 100);
  EXPECT_EQ(s.alive(), 1u);
  EXPECT_EQ(s.running(), 1u);
  // Its trial is retried (the coordinator queues it again): only rank 0 may take it, once free.
  s.add({1, 4, 1, 1});
  EXPECT_TRUE(s.dispatch(101).starts.empty()) << "ranks 1 and 2 are out; rank 0 is busy";
  EXPECT_TRUE(s.finish(0, 0));
  auto again = s.dispatch(102);
  ASSERT_EQ(again.starts.size(), 1u);
  EXPECT_EQ(again.starts[0].members, (std::vector<int>{0}));
  // The hung group's leader reports after all: its result is stale (the trial runs elsewhere), its rank is back.
  EXPECT_FALSE(s.finish(1, 1));
  EXPECT_EQ(s.running(), 1u) << "the new run of trial 1 is untouched";
  EXPECT_EQ(s.idle_ranks(), (std::set<int>{1}));
  s.ready(2);
  EXPECT_TRUE(s.hung_ranks().empty());
  EXPECT_EQ(s.alive(), 3u);
  EXPECT_TRUE(s.finish(1, 0));
  EXPECT_EQ(s.over(103, 60), Scheduler::End::finished);
}

// ---- the heartbeat (gpu-review H4) ----------------------------------------------------------------------------

// A worker's companion thread and the coordinator on one fake clock: every `tick` seconds the worker's Heartbeat
// looks at the trial's progress count (`progress(t)`) and, when due, the scheduler hears the beat; the coordinator
// checks for hung groups at each tick. Returns when the group was declared hung (-1: never, up to `until`), and the
// time of the last beat heard.
struct Watched {
  double hung_at = -1, last_beat = -1;
};
template <class Progress>
Watched watch(Progress progress, double until, double interval = 30, double timeout = 600, double tick = 0.5) {
  Scheduler s(2, 0);
  s.add({0, 1, 2, 1});
  s.ready(0), s.ready(1);
  EXPECT_EQ(s.dispatch(0).starts.size(), 1u);
  Heartbeat beat(interval, timeout, 0);
  Watched w;
  for (double t = tick; t <= until; t += tick) {
    if (beat.due(progress(t), t)) s.heartbeat(0, t), w.last_beat = t;
    if (!s.take_hung(t, timeout).empty()) {
      w.hung_at = t;
      break;
    }
  }
  return w;
}

TEST(Heartbeat, AGroupWhoseStepsStandStillFallsSilentAndIsDeclaredHungWithinTheBound) {
  // 1000 s of setup (backbone, input cache: no step to count), steps every 2 s until 3000 s, then none: the group
  // is stuck in a collective while its companion thread runs on.
  const double last_step = 3000;
  const auto w = watch([&](double t) { return t < 1000 ? 0 : static_cast<int64_t>(std::min(t, last_step) / 2); }, 20000);
  ASSERT_GT(w.hung_at, 0) << "a trial whose count stands still must fall silent and be declared hung";
  EXPECT_GE(w.hung_at, last_step + 600) << "not before a whole timeout has passed since the last step";
  EXPECT_LE(w.hung_at, last_step + 600 / 2 + 600 + 30) << "the bound: half the timeout, the timeout, one interval";
  EXPECT_LE(w.last_beat, last_step + 600 / 2) << "no beat once the count stood still for half the timeout";
  EXPECT_GT(w.last_beat, last_step + 600 / 2 - 30 - 1) << "beats went on while the count was still fresh";
}

TEST(Heartbeat, SetupWithoutStepsAndSlowStepsKeepBeating) {
  // No step for ten timeouts (a cache built over a slow file system): not hung.
  EXPECT_LT(watch([](double) { return int64_t(0); }, 6000).hung_at, 0);
  // A step every 290 s, under half the 600 s timeout: slow, not hung.
  EXPECT_LT(watch([](double t) { return static_cast<int64_t>(t / 290) + 1; }, 20000).hung_at, 0);
  // A count that stands still for 500 s once, then moves again: silent for a while, beating again in time.
  EXPECT_LT(watch([](double t) { return static_cast<int64_t>(t < 2000 ? t : t < 2500 ? 2000 : t); }, 20000).hung_at, 0);
}

TEST(Heartbeat, ACountThatMovesAgainBringsTheBeatBackAtOnce) {
  Heartbeat beat(30, 600, 0);
  EXPECT_FALSE(beat.due(0, 10)) << "the first beat one interval after the start";
  EXPECT_TRUE(beat.due(0, 30));
  EXPECT_TRUE(beat.due(5, 60));
  EXPECT_FALSE(beat.due(5, 361)) << "5 stood still from 60 to 361: over half the timeout";
  EXPECT_TRUE(beat.stalled());
  EXPECT_TRUE(beat.due(6, 362)) << "it moved: the beat is due at once, the last one being long ago";
  EXPECT_FALSE(beat.stalled());
  EXPECT_FALSE(beat.due(7, 370)) << "then every interval again";
  EXPECT_TRUE(beat.due(8, 392));
}

// Reliability probe B7: with every rank taken out as hung and trials left, nothing can run them: the sweep ends
// (they stay pending) instead of waiting for ever.
TEST(Scheduler, WithEveryRankHungTheSweepEndsWithTheTrialsLeft) {
  Scheduler s(1, 0);
  s.add({0, 5, 1, 1});
  s.add({1, 4, 1, 1});
  s.ready(0);
  ASSERT_EQ(s.dispatch(0).starts.size(), 1u);
  EXPECT_EQ(s.over(1, 60), Scheduler::End::no);
  ASSERT_EQ(s.take_hung(700, 600).size(), 1u);
  EXPECT_EQ(s.alive(), 0u);
  EXPECT_EQ(s.pending(), 1u);
  EXPECT_EQ(s.over(701, 60), Scheduler::End::no_ranks);
  s.ready(0);  // the rank comes back after all
  EXPECT_EQ(s.over(702, 60), Scheduler::End::no);
}

TEST(Scheduler, TheSweepIsNotOverWhileAnyLiveRankHasNotReported) {
  Scheduler s(2, 0);
  s.ready(0);
  EXPECT_EQ(s.over(0, 60), Scheduler::End::no) << "rank 1 has not said it is ready";
  s.ready(1);
  EXPECT_EQ(s.over(0, 60), Scheduler::End::finished);
}

// ---- shards ----------------------------------------------------------------------------------------------------

TEST(Shards, EveryKthTrialByCostCostliestFirst) {
  const std::vector<double> cost = {3, 1, 2, 5, 4};
  // By cost: 3 (5), 4 (4), 0 (3), 2 (2), 1 (1).
  EXPECT_EQ(shard_of(cost, 0, 2), (std::vector<size_t>{0, 1, 3}));
  EXPECT_EQ(shard_of(cost, 1, 2), (std::vector<size_t>{2, 4}));
  EXPECT_EQ(shard_of(cost, 0, 1), (std::vector<size_t>{0, 1, 2, 3, 4}));
}

TEST(Shards, PartitionTheTrialsWithBalancedCounts) {
  std::vector<double> cost(103);
  for (size_t i = 0; i < cost.size(); ++i) cost[i] = static_cast<double>((i * 37) % 11);  // many ties
  for (int k : {2, 3, 7}) {
    std::vector<int> seen(cost.size(), 0);
    size_t smallest = cost.size(), largest = 0;
    for (int i = 0; i < k; ++i) {
      const auto mine = shard_of(cost, i, k);
      EXPECT_TRUE(std::is_sorted(mine.begin(), mine.end()));
      for (size_t t : mine) seen[t]++;
      smallest = std::min(smallest, mine.size());
      largest = std::max(largest, mine.size());
    }
    EXPECT_TRUE(std::all_of(seen.begin(), seen.end(), [](int n) { return n == 1; })) << k << " shards";
    EXPECT_LE(largest - smallest, 1u);
  }
}

}  // namespace
}  // namespace xfer::sweep
