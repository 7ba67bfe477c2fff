#include "xfer/train/schedule.hpp"

#include <algorithm>
#include <cmath>

namespace xfer::train {

LearningRateSchedule LearningRateSchedule::of(const grid::TrialConfig& t) {
  return {t.schedule, t.lr, t.epochs, t.warmup_epochs, t.step_milestones, t.step_gamma};
}

double learning_rate(const LearningRateSchedule& s, int epoch, int64_t step, int64_t steps_per_epoch) {
  const int warm = s.warmup_epochs;
  const int64_t spe = std::max<int64_t>(1, steps_per_epoch);
  if (warm > 0 && epoch < warm)
    return s.base * static_cast<double>(epoch * spe + step + 1) / static_cast<double>(warm * spe);
  const int e = epoch - warm, E = s.epochs - warm;
  switch (s.kind) {
    case Schedule::cosine:
      return s.base * (1.0 + std::cos(M_PI * e / E)) / 2.0;
    case Schedule::cosine_step:
      return s.base * (1.0 + std::cos(M_PI * static_cast<double>(e * spe + step) / static_cast<double>(E * spe))) / 2.0;
    case Schedule::step: {
      int passed = 0;
      for (int m : s.milestones) passed += epoch >= m;
      return s.base * std::pow(s.gamma, passed);
    }
  }
  return s.base;
}

}  // namespace xfer::train
