#include "xfer/train/engine.hpp"

namespace xfer::train {

TrialChoices TrialChoices::of(const grid::TrialConfig& t, const data::Dataset& d, const std::string& where) {
  TrialChoices c;
  c.optimizer = parse<Optimizer>(t.optimizer, where);
  c.schedule = parse<Schedule>(t.schedule, where);
  c.precision = parse<Precision>(t.precision, where);
  c.augmentation = parse<Augmentation>(t.augmentation, where);
  c.metric = parse<Metric>(t.metric, where);
  c.validation = parse<Validation>(d.validation, "dataset " + d.name);
  return c;
}

}  // namespace xfer::train
