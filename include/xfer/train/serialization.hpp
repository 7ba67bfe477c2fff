// train/serialization: Boost.Serialization of the trainer's per-epoch record, shared by the checkpoints (text
// archives) and the sweep's messages (MPI archives). Doubles travel as their bit patterns: NaN (an undefined
// metric) does not survive a text archive.
#pragma once

#include <cstdint>
#include <cstring>

#include <boost/serialization/string.hpp>

#include "xfer/train/trial.hpp"

namespace boost::serialization {

template <class Archive>
void save_double(Archive& ar, double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  ar& bits;
}
template <class Archive>
double load_double(Archive& ar) {
  uint64_t bits = 0;
  ar& bits;
  double v;
  std::memcpy(&v, &bits, sizeof v);
  return v;
}

template <class Archive>
void serialize(Archive& ar, xfer::train::EpochRecord& r, const unsigned) {
  ar& r.epoch;
  for (double* d : {&r.lr, &r.train_loss, &r.val_metric, &r.test_metric, &r.val_loss, &r.train_seconds,
                    &r.eval_seconds, &r.images_per_second}) {
    if constexpr (Archive::is_saving::value) save_double(ar, *d);
    else *d = load_double(ar);
  }
  ar& r.peak_memory_bytes;
  ar& r.note;
}

}  // namespace boost::serialization
