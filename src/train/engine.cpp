#include "xfer/train/engine.hpp"

namespace xfer::train {

TrialChoices TrialChoices::of(const grid::TrialConfig& t, const data::Dataset& d) {
  TrialChoices c;
  c.optimizer = t.optimizer;
  c.schedule = t.schedule;
  c.precision = t.precision;
  c.augmentation = t.augmentation;
  c.metric = t.metric;
  c.validation = d.validation;
  return c;
}

}  // namespace xfer::train
