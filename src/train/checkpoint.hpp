// train/checkpoint: one trial's checkpoint files — <dir>/epoch-<E>-step-<B>.ckpt — written atomically (temp file,
// fsync, rename, fsync of the folder), checked by SHA-256 on load, the two newest kept so a corrupt newest falls
// back to the one before. The metadata travels as a Boost.Serialization text archive; the tensors (model,
// optimizer) as a torch archive, kept as opaque bytes here.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "xfer/train/trial.hpp"

namespace xfer::train {

struct CheckpointMeta {
  std::string trial_key;
  std::string canonical;        // the trial's canonical configuration: a checkpoint of another trial is refused
  int epochs_done = 0;          // complete epochs
  int64_t next_batch = 0;       // > 0: stopped inside epoch `epochs_done`, resume at this batch
  double partial_loss_sum = 0;  // the unfinished epoch's progress
  int64_t partial_steps = 0;
  int64_t partial_images = 0;
  double partial_seconds = 0;
  std::vector<EpochRecord> epochs;
  int best_epoch = -1;
  double best_val = 0, test_at_best = 0;
  Predictions val, test;
  std::string rng_state;        // torch's CPU generator (dropout in some backbones)
  int micro_batches = 1;
  double loss_scale = 1.0;
  int64_t loss_scale_good_steps = 0;  // fp16: steps since the scale last changed (archive version 1)
  double first_loss = 0;        // the trial's first step loss (divergence bound)
};

struct Checkpoint {
  CheckpointMeta meta;
  std::string tensors;  // torch::serialize archive bytes
  std::string path;
};

// Writes atomically; keeps the newest `keep` files of the folder. Throws Error on I/O failure (disk full, …).
std::string write_checkpoint(const std::string& dir, const Checkpoint& c, int keep = 2);
// The newest readable checkpoint of `key`, or nullopt. Corrupt or foreign files are skipped with a warning naming
// them, falling back to older ones.
std::optional<Checkpoint> load_latest_checkpoint(const std::string& dir, const std::string& key,
                                                 const std::string& canonical);
void remove_checkpoints(const std::string& dir, bool keep_best_model);

}  // namespace xfer::train
