// train/torch_engine: the LibTorch engine (CPU, or CUDA with bf16/fp16 autocast) behind train/engine.hpp —
// model::Classifier, torch's AdamW or SGD, the step of train/step.hpp, the exchange of train/gradient_exchange.hpp.
#pragma once

#include "xfer/train/engine.hpp"

namespace xfer::train {

class TorchEngineFactory final : public EngineFactory {
 public:
  std::unique_ptr<Engine> make(const EngineContext& context) const override;
  // c10 out-of-memory errors (and messages saying "out of memory", the TorchScript interpreter's included) are
  // out-of-memory (step.hpp, is_out_of_memory); messages lose their backtrace.
  Fault classify(const std::exception& e) const override;
};

}  // namespace xfer::train
