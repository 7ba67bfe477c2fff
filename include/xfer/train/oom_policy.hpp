// train/oom_policy: what a trial does after an out-of-memory in its step — split this rank's shard into twice as
// many micro-batches and accumulate their gradients (the effective batch is unchanged), until a split cannot get
// finer. Plain C++, no torch: the engine reports the out-of-memory, the epoch loop asks here.
#pragma once

#include <cstdint>

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

}  // namespace xfer::train
