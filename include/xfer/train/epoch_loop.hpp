// train/epoch_loop: the paper's protocol, written once against train/engine.hpp — the learning-rate schedule per
// step, validation and test after every epoch, the best-by-validation epoch kept with its predictions, atomic
// checkpoints and exact resume, the stop signal and the deadline, divergence detection, the out-of-memory retry and
// fp16 loss scaling (their rules in oom_policy.hpp and loss_scale.hpp), on_epoch. Plain C++, no torch.
#pragma once

#include "xfer/train/engine.hpp"

namespace xfer::train {

// A loss above this multiple of the trial's first-step loss (about ln K with a fresh head) counts as diverged:
// batch-normalised networks at the grid's highest learning rates grow their loss by orders of magnitude long
// before it overflows to inf/NaN.
constexpr double kDivergenceFactor = 1000.0;
bool diverged(double loss, double first_loss);

// Runs (or resumes) the trial on the engine `factory` makes. Never throws for the trial's own faults (see
// train::run); `group` is the trial's data-parallel group (a SoloGroup alone).
Result run_epochs(const grid::TrialConfig& t, const data::Dataset& d, const Environment& env, Group& group,
                  const EngineFactory& factory);

}  // namespace xfer::train
