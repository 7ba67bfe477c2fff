// train/engine: what a training backend gives the epoch loop — a model and its optimizer set up from the trial, one
// optimisation step in phases (forward/backward over micro-batches, gradient exchange, unscaling, the update), a
// split's forward pass, its state as bytes for checkpoints, its device and memory. The loop (train/epoch_loop.hpp)
// is written once against this; LibTorch on CPU/CUDA implements it today (src/train/torch_engine.cpp), a CUDA-graph
// or PJRT (TPU) engine can sit beside it. Plain C++: no torch type appears here.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "xfer/core/error.hpp"
#include "xfer/core/vocabulary.hpp"
#include "xfer/data/dataset.hpp"
#include "xfer/data/loader.hpp"
#include "xfer/grid/grid.hpp"
#include "xfer/train/evaluation.hpp"
#include "xfer/train/group.hpp"
#include "xfer/train/trial.hpp"

namespace xfer::train {

// Everything an engine is built from. The trial's words (optimizer, precision, …) are the vocabulary's enums in
// grid::TrialConfig already, parsed where the spec was read.
struct EngineContext {
  const grid::TrialConfig& trial;
  const data::Dataset& data;
  const Environment& env;
  Group& group;
  const std::string& key;  // the trial key, for messages
};

// One forward/backward attempt on this rank. A fault is reported, not thrown, so the group can agree on it.
struct StepAttempt {
  double loss = 0;             // this shard's criterion sum / the global batch (unscaled)
  bool out_of_memory = false;
  std::string failure;         // any other fault
};

class Engine {
 public:
  virtual ~Engine() = default;

  // Built (by EngineFactory::make) the engine knows its device and threads; prepare() then loads the model and
  // builds the optimizer — what can fail for the trial's own reasons (a bad backbone), reported with the device.
  virtual void prepare() = 0;
  virtual std::string device() const = 0;     // e.g. "cpu", "cuda:0"
  virtual int threads() const = 0;            // compute threads in use
  virtual int64_t parameters() const = 0;     // after prepare()
  virtual int feature_dim() const = 0;        // after prepare()
  virtual bool scales_loss() const = 0;       // fp16 in force: the loop keeps a LossScale
  // Host buffers for the training loader (e.g. pinned memory for asynchronous copies to a GPU); default: the
  // loader's own.
  virtual void configure_loader(data::LoaderOptions&) {}
  // The engine's own batch source for a split (the device input pipeline: decoded once into a pixel cache, crops and
  // normalisation on the device), or nullptr for the host loader (data::Loader) with these settings.
  virtual std::unique_ptr<data::BatchSource> make_input(const std::vector<int64_t>& /*indices*/,
                                                        const data::TransformSettings& /*transform*/,
                                                        const data::LoaderOptions& /*options*/) {
    return nullptr;
  }

  // The step's learning rate, given before forward_backward: a backend whose step is one program (PJRT: forward,
  // backward and the update together) needs it there. Others take it in apply_step.
  virtual void begin_step(double learning_rate) {}
  // The step, in phases the loop interleaves with group agreement and its policies.
  // Zeroes the gradients, then forward and backward of this rank's shard in `micro_batches` parts, the loss
  // multiplied by `loss_scale` before backward.
  virtual StepAttempt forward_backward(const data::Batch& b, int micro_batches, double loss_scale) = 0;
  virtual void release_cached_memory() {}      // after an out-of-memory, before the retry
  virtual void exchange_gradients() = 0;       // sum over the group (train/gradient_exchange)
  // Every rank of the group at the same point, when the loop gives up a step forward_backward began (an agreed
  // out-of-memory give-up or failure): sums the exchange started are completed, matched across the group, before the
  // engine is destroyed.
  virtual void abandon_step() {}
  virtual bool unscale_gradients(double loss_scale) = 0;  // divides; false when a gradient is not finite
  virtual void apply_step(double learning_rate) = 0;      // the optimizer's update at this rate
  virtual void sync_buffers() = 0;             // non-learned state (BatchNorm statistics) from group rank 0

  // Evaluation-mode forward pass over this rank's shard of a split whose epoch the loop has started.
  virtual SplitOutputs forward_split(data::BatchSource& split) = 0;

  // Weights and optimizer state (checkpoints; exact resume), the random generator's state, the model alone.
  virtual std::string save_state() = 0;
  virtual void load_state(const std::string& bytes) = 0;
  virtual std::string random_state() = 0;
  virtual void restore_random_state(const std::string& bytes) = 0;
  virtual void save_model(const std::string& path) = 0;
  // The backbone alone, with its current weights, as a TorchScript file any engine can load (an [[upstream]]
  // pre-training trial's export). An engine that cannot write one says so.
  virtual void save_backbone(const std::string& path) {
    throw Error::input("this training engine cannot export a backbone (" + path + "); run [[upstream]] stages with "
                       "the LibTorch engine");
  }

  // CUDA: peak allocated on this device; CPU: process peak RSS.
  virtual int64_t peak_memory_bytes() = 0;
};

// What the backend's exceptions mean for the trial.
struct Fault {
  bool out_of_memory = false;
  std::string message;
};

// Builds a backend's engine for a trial and reads its exceptions.
class EngineFactory {
 public:
  virtual ~EngineFactory() = default;
  virtual std::unique_ptr<Engine> make(const EngineContext& context) const = 0;
  virtual Fault classify(const std::exception& e) const = 0;
};

}  // namespace xfer::train
