#include "xfer/train/oom_policy.hpp"

#include <algorithm>

namespace xfer::train {

int effective_micro_batches(int requested, int64_t shard_samples) {
  const int64_t finest = std::max<int64_t>(1, shard_samples / 2);
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(requested, finest)));
}

OomDecision after_out_of_memory(int micro_batches, int64_t shard_samples, bool retry_allowed) {
  OomDecision d;
  d.micro_batches = micro_batches;
  if (!retry_allowed) return d;
  const int doubled = micro_batches * 2;
  if (effective_micro_batches(doubled, shard_samples) <= effective_micro_batches(micro_batches, shard_samples))
    return d;
  d.retry = true;
  d.micro_batches = doubled;
  return d;
}

bool retry_out_of_memory(int& micro_batches, int64_t shard_samples, bool retry_allowed,
                         const std::function<bool(int)>& out_of_memory_at, const std::function<bool(bool)>& agree,
                         const std::function<void(int)>& before_retry) {
  while (agree(out_of_memory_at(micro_batches))) {
    const OomDecision next = after_out_of_memory(micro_batches, shard_samples, retry_allowed);
    if (agree(!next.retry)) return false;
    micro_batches = next.micro_batches;
    before_retry(micro_batches);
  }
  return true;
}

}  // namespace xfer::train
