#include "xfer/sweep/scheduler.hpp"

#include <algorithm>
#include <numeric>

namespace xfer::sweep {

Scheduler::Scheduler(int world_size, double deadline) : world_size_(world_size), deadline_(deadline) {}

void Scheduler::add(const Job& j) {
  jobs_[j.trial] = j;
  pending_[j.ranks].insert({-j.cost_gflop, j.trial});
}

void Scheduler::ready(int rank) {
  hung_.erase(rank);
  idle_.insert(rank);
}

Scheduler::Dispatch Scheduler::dispatch(double now) {
  Dispatch d;
  if (stopping()) return d;
  const int alive = static_cast<int>(this->alive());
  while (!idle_.empty()) {
    int best_g = -1;
    std::pair<double, int64_t> best{0, -1};
    for (auto& [g, s] : pending_) {
      if (s.empty()) continue;
      if (g > alive) {
        for (const auto& [c, t] : s) d.too_wide.push_back(t);
        s.clear();
        continue;
      }
      if (g <= static_cast<int>(idle_.size()) && (best.second < 0 || *s.begin() < best)) best = *s.begin(), best_g = g;
    }
    if (best.second < 0) break;
    pending_[best_g].erase(best);
    const Job& job = jobs_[best.second];
    // Do not start a trial whose first epoch cannot finish before the end (10 % margin on the estimate).
    if (deadline_ > 0 && seconds_per_gflop() > 0) {
      const double epoch_s = job.cost_gflop / std::max(1, job.epochs) * seconds_per_gflop() / best_g;
      if (now + 1.1 * epoch_s > deadline_) {
        d.out_of_time.push_back(job.trial);
        continue;
      }
    }
    Assignment a;
    a.trial = job.trial;
    for (auto it = idle_.begin(); static_cast<int>(a.members.size()) < best_g; it = idle_.erase(it)) a.members.push_back(*it);
    running_[a.trial] = {a.members, now};
    d.starts.push_back(std::move(a));
  }
  return d;
}

void Scheduler::heartbeat(int64_t trial, double now) {
  if (auto it = running_.find(trial); it != running_.end()) it->second.last_seen = now;
}

std::vector<Scheduler::Hung> Scheduler::take_hung(double now, double timeout) {
  std::vector<Hung> out;
  for (auto it = running_.begin(); it != running_.end();) {
    const double silent = now - it->second.last_seen;
    if (silent < timeout) {
      ++it;
      continue;
    }
    out.push_back({it->first, it->second.members, silent});
    hung_.insert(it->second.members.begin(), it->second.members.end());
    it = running_.erase(it);
  }
  return out;
}

bool Scheduler::finish(int64_t trial, int rank) {
  ready(rank);
  auto it = running_.find(trial);
  // A late report from a group declared hung, whose trial may be running elsewhere by now.
  if (it == running_.end() || it->second.members.front() != rank) return false;
  running_.erase(it);
  return true;
}

void Scheduler::record_epoch(int64_t trial, double seconds) {
  auto it = jobs_.find(trial);
  if (it == jobs_.end()) return;
  const Job& j = it->second;
  // GFLOP per rank, so that the estimate divides by the next trial's group size.
  epoch_gflop_ += j.cost_gflop / std::max(1, j.epochs) / std::max(1, j.ranks);
  epoch_seconds_ += seconds;
}

void Scheduler::stop(double now) {
  if (!stop_time_) stop_time_ = now;
}

Scheduler::End Scheduler::over(double now, double grace) const {
  const bool nothing_left = stopping() || pending() == 0;
  if (nothing_left && running_.empty() && idle_.size() >= alive()) return End::finished;
  if (stopping() && running_.empty() && idle_.size() < alive() && now - *stop_time_ > grace) return End::stragglers;
  if (alive() == 0 && running_.empty()) return End::no_ranks;
  return End::no;
}

size_t Scheduler::pending() const {
  size_t n = 0;
  for (const auto& [g, s] : pending_) n += s.size();
  return n;
}

std::map<int64_t, std::vector<int>> Scheduler::running_groups() const {
  std::map<int64_t, std::vector<int>> out;
  for (const auto& [t, r] : running_) out[t] = r.members;
  return out;
}

double stop_deadline(double start, double end, double grace) {
  if (end <= 0) return 0;
  return end - std::min(grace, std::max(0.0, 0.2 * (end - start)));
}

std::vector<size_t> shard_of(const std::vector<double>& cost, int shard, int shards) {
  std::vector<size_t> all(cost.size());
  std::iota(all.begin(), all.end(), 0);
  if (shards <= 1) return all;
  std::stable_sort(all.begin(), all.end(), [&](size_t a, size_t b) { return cost[a] > cost[b]; });
  std::vector<size_t> mine;
  for (size_t i = 0; i < all.size(); ++i)
    if (static_cast<int>(i % static_cast<size_t>(shards)) == shard) mine.push_back(all[i]);
  std::sort(mine.begin(), mine.end());
  return mine;
}

}  // namespace xfer::sweep
