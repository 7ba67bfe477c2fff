// train/pjrt_engine: the PJRT engine behind train/engine.hpp — a trial's exported steps (pjrt/bundle.hpp, made by
// tools/export_pjrt.py) run through a PJRT plugin: libtpu.so on a TPU VM, a CPU plugin in CI. The train step is one
// program (forward, backward and the AdamW/SGD update, the state donated and kept on the device); the weights start
// as model::Classifier's (the same TorchScript backbone and seeded head as the LibTorch engine); checkpoints hold the
// device state copied to the host. Chosen by --device pjrt:<plugin> (or pjrt with XFER_PJRT_PLUGIN).
#pragma once

#include <string>

#include "xfer/train/engine.hpp"
#include "xfer/train/pjrt_checks.hpp"

namespace xfer::train {

class PjrtEngineFactory final : public EngineFactory {
 public:
  std::unique_ptr<Engine> make(const EngineContext& context) const override;
  Fault classify(const std::exception& e) const override;
};


}  // namespace xfer::train
