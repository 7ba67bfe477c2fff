// metrics/csv: the plain prediction files `xfer score` reads — no header, one row per sample.
// Labels: one integer class per row, or for multi-label a row of k 0/1 values. Scores: k numbers per row.
#pragma once

#include <string>

#include "xfer/metrics/metrics.hpp"

namespace xfer::metrics {

// Throws Error (input) naming file:line and what was wrong.
Labels read_labels_csv(const std::string& path);
Scores read_scores_csv(const std::string& path);

}  // namespace xfer::metrics
