// train/loss_scale: dynamic loss scaling for fp16 training, the rule of torch.cuda.amp.GradScaler (defaults: start
// at 2^16, halve and skip the step when a gradient overflows, double after 2000 steps in a row without one). The
// rule alone, plain C++: the engine multiplies the loss and divides the gradients, the epoch loop asks here.
#pragma once

#include <cstdint>

namespace xfer::train {

class LossScale {
 public:
  static constexpr double kInitial = 65536.0;
  static constexpr double kGrowth = 2.0, kBackoff = 0.5;
  static constexpr int64_t kGrowthInterval = 2000;

  LossScale() = default;                                  // off: a scale of 1, every step applied
  static LossScale fp16() { return LossScale(kInitial); }  // on, from GradScaler's initial scale

  bool enabled() const { return enabled_; }
  double value() const { return scale_; }
  int64_t good_steps() const { return good_steps_; }  // steps since the last overflow or growth

  // After a step's gradients were unscaled: whether to apply the step. An overflow (on any rank) skips it and backs
  // the scale off; a run of kGrowthInterval good steps grows it. Off: always true.
  bool update(bool overflow);
  // From a checkpoint (exact resume). Ignored when off.
  void restore(double scale, int64_t good_steps);

 private:
  explicit LossScale(double initial) : enabled_(true), scale_(initial) {}
  bool enabled_ = false;
  double scale_ = 1.0;
  int64_t good_steps_ = 0;
};

}  // namespace xfer::train
