#include "xfer/train/loss_scale.hpp"

namespace xfer::train {

bool LossScale::update(bool overflow) {
  if (!enabled_) return true;
  if (overflow) {
    scale_ *= kBackoff;
    good_steps_ = 0;
    return false;
  }
  if (++good_steps_ >= kGrowthInterval) {
    scale_ *= kGrowth;
    good_steps_ = 0;
  }
  return true;
}

void LossScale::restore(double scale, int64_t good_steps) {
  if (!enabled_) return;
  scale_ = scale;
  good_steps_ = good_steps;
}

}  // namespace xfer::train
