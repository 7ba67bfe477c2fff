// sweep/upstream_backbone: the file pair a pre-training ([[upstream]]) trial leaves behind — <key>.pt, the TorchScript
// backbone of its best-by-validation epoch, and <key>.json, its metadata in the form tools/export_backbones.py writes
// (weights tag, input size, normalisation, feature dimension, SHA-256) plus what the stage measured (upstream top-1 on
// the stage's test split, the trial, the dataset). Downstream trials are given the SHA-256 and check it before they
// load the file.
#pragma once

#include <string>

#include "xfer/grid/grid.hpp"

namespace xfer::sweep {

struct UpstreamBackbone {
  std::string backbone;   // <upstream_dir>/<key>.pt
  std::string sha256;     // of that file
  double top1 = 0;        // measured: the stage's test accuracy at the selected epoch, percent
  int best_epoch = -1;
};

// <x>.pt → <x>.json
std::string metadata_path(const std::string& backbone);
// Writes <backbone>.json (atomically) for a finished pre-training trial; returns the backbone's SHA-256.
std::string write_upstream_metadata(const std::string& backbone, const std::string& key, const grid::TrialConfig& t,
                                    double test_accuracy, int best_epoch, int feature_dim);
// Reads it back; Error (input) naming the file when it is missing or malformed.
UpstreamBackbone read_upstream_metadata(const std::string& backbone);

}  // namespace xfer::sweep
