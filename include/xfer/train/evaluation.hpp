// train/evaluation: a split's scores into the trial's metric — the engine's per-rank outputs gathered over the rank
// group, the labels taken from the dataset, the metric computed by metrics/ on group rank 0. An undefined metric (one
// class present, NaN probabilities of a diverging model) is NaN with a note, never an exception. Plain C++, no torch.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "xfer/core/vocabulary.hpp"
#include "xfer/data/dataset.hpp"
#include "xfer/train/group.hpp"
#include "xfer/train/trial.hpp"

namespace xfer::train {

// What an engine's forward pass over its shard of a split gives on one rank.
struct SplitOutputs {
  double loss_sum = 0;           // training criterion summed over the samples
  int64_t count = 0;             // samples
  std::vector<int64_t> samples;  // dataset indices, in the order of `scores`' rows
  std::vector<float> scores;     // samples × classes probabilities (softmax, or sigmoid for multi-label)
};

struct Evaluation {
  double metric = std::numeric_limits<double>::quiet_NaN();  // group rank 0 only
  double loss = std::numeric_limits<double>::quiet_NaN();    // mean over the split, every rank
  std::string note;                                          // why the metric is undefined
  Predictions pred;                                          // group rank 0 only
};

// Collective over `group`: every rank calls it with its own outputs.
Evaluation evaluate_split(SplitOutputs mine, const data::Dataset& d, Metric metric, Group& group);

}  // namespace xfer::train
