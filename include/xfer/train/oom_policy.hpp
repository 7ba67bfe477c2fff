// train/oom_policy: what a trial does after an out-of-memory in its step — split this rank's shard into twice as
// many micro-batches and accumulate their gradients (the effective batch is unchanged), until a split cannot get
// finer. Plain C++, no torch: the engine reports the out-of-memory, the epoch loop asks here.
#pragma once

#include <cstdint>
#include <functional>

namespace xfer::train {

// The micro-batches a shard of `shard_samples` is cut into when `requested` are asked for: never a micro-batch of
// one sample (BatchNorm cannot train on it), so at most shard_samples / 2, and at least 1.
int effective_micro_batches(int requested, int64_t shard_samples);

struct OomDecision {
  bool retry = false;     // false: the trial ends as out of memory
  int micro_batches = 1;  // the count to retry with
};

// After an out-of-memory with `micro_batches` requested on a shard of `shard_samples`: retry with twice as many when
// retries are allowed and the doubled count splits the shard finer; give up otherwise (the same split again would
// run out of memory again).
OomDecision after_out_of_memory(int micro_batches, int64_t shard_samples, bool retry_allowed);

// One step's forward and backward under this policy, as every rank of a group runs it alike: `out_of_memory_at(m)`
// tries the step in m micro-batches and says whether this rank ran out of memory; `agree(flag)` is the group's "any
// rank" (each rank calls it the same number of times); after an out-of-memory on any rank, `before_retry(m)` (release
// the engine's cached memory) and the step again with m = twice as many, while after_out_of_memory allows. Returns
// false when the policy gave up; `micro_batches` is then the count that ran out of memory, else the one that fit.
bool retry_out_of_memory(int& micro_batches, int64_t shard_samples, bool retry_allowed,
                         const std::function<bool(int)>& out_of_memory_at, const std::function<bool(bool)>& agree,
                         const std::function<void(int)>& before_retry);

}  // namespace xfer::train
