// train/schedule: the learning rate at a step — linear warm-up, then the paper's cosine (stepped once per epoch,
// as torch's CosineAnnealingLR(T_max = epochs - warm-up), eta_min 0), a per-step cosine, or step decay
// (× gamma at each milestone, MultiStepLR). Plain C++, no torch.
#pragma once

#include <cstdint>
#include <vector>

#include "xfer/core/vocabulary.hpp"
#include "xfer/grid/grid.hpp"

namespace xfer::train {

struct LearningRateSchedule {
  Schedule kind = Schedule::cosine;
  double base = 0;
  int epochs = 1;
  int warmup_epochs = 0;
  std::vector<int> milestones;  // step: epochs at which the rate is multiplied by gamma
  double gamma = 0.1;

  // The trial's schedule (its kind, base rate, epochs, warm-up, milestones).
  static LearningRateSchedule of(const grid::TrialConfig& t);
};

// The rate for step `step` (0-based within the epoch) of epoch `epoch` (0-based). Warm-up rises linearly per step to
// `base` at the end of the warm-up epochs; cosine and step count their epochs from the end of the warm-up.
double learning_rate(const LearningRateSchedule& s, int epoch, int64_t step, int64_t steps_per_epoch);

}  // namespace xfer::train
