// train/pjrt_checks: what the PJRT engine (train/pjrt_engine) asks of a trial's exported bundle, torch-free, so that
// `xfer run` can check every trial's bundle before its first trial: a bundle fault is the same on every attempt.
#pragma once

#include <string>

#include "xfer/data/dataset.hpp"
#include "xfer/grid/grid.hpp"
#include "xfer/pjrt/bundle.hpp"

namespace xfer::train {

// "pjrt" or "pjrt:<plugin>"?
bool is_pjrt_device(const std::string& request);
// The plugin a pjrt device names: the path after "pjrt:", else XFER_PJRT_PLUGIN; "" if neither.
std::string pjrt_plugin_path(const std::string& request);

// XFER_PJRT_DEVICES: the devices a one-process PJRT trial runs its program over (default 1).
int pjrt_requested_devices();
// The bundle a trial needs: its shape, optimizer and the hyperparameters a program bakes in.
pjrt::BundleRequest pjrt_bundle_request(const grid::TrialConfig& t, const std::string& backbone, const data::Dataset& d,
                                        int devices);
// Before a sweep's first trial: the bundle of a one-process PJRT trial found and whole (pjrt::check_bundle), or an
// Error (input) naming the manifest. Trials over several processes are checked when they start (their devices are
// known only then).
void check_pjrt_bundle(const grid::TrialConfig& t, const std::string& backbone, const data::Dataset& d);

}  // namespace xfer::train
