// pjrt/bundle: the exporter's artifact bundle (tools/export_pjrt.py) — <bundle>/<variant>/manifest.json and its
// StableHLO programs — read, validated and matched to a trial. A bundle sits beside its TorchScript backbone
// (<backbone without .pt>.pjrt/) or under a folder of XFER_PJRT_ARTIFACTS (<dir>/<backbone stem>.pjrt/).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "xfer/pjrt/runtime.hpp"

namespace xfer::pjrt {

struct TensorSpec {
  std::string name;   // model::Classifier's state name (backbone.<key>, head.weight), opt/<slot>/<name>, opt/step
  std::string role;   // param | buffer | optimizer
  DType dtype = DType::f32;
  std::vector<int64_t> shape;
  int64_t elements() const;
  size_t bytes() const { return static_cast<size_t>(elements()) * dtype_bytes(dtype); }
};

struct Program {
  std::string file;            // absolute path
  std::string sha256;          // of the file, as exported
  int batch = 0;               // global batch
  bool platform_index = false; // the module's first argument is the platform's index in Bundle::platforms
  int64_t bytes = -1;          // the file's size, as exported (-1: the manifest does not say)
  std::vector<std::string> inputs;  // the names of its arguments, as exported (empty: the manifest does not say)
};

struct Bundle {
  std::string manifest;        // path, for messages
  std::string arch;
  int input_size = 0, classes = 0, feature_dim = 0, batch = 0, devices = 1;
  // The jax.export platforms its programs were lowered for ("cpu", "tpu", "cuda"); a program with a platform index
  // argument takes the position of the plugin's platform here. Manifests without the field: {"cpu"}. A variant
  // exported for other platforms than cpu,tpu is its own folder (<variant>-cuda): tools/export_pjrt.py --platforms.
  std::vector<std::string> platforms;
  // The position of `platform` (a plugin's PJRT_Client_PlatformName; "gpu" is taken as "cuda") in `platforms`, or -1.
  int platform_position(const std::string& platform) const;
  std::string optimizer;       // adamw | sgd
  double beta1 = 0, beta2 = 0, eps = 0, momentum = 0;
  bool nesterov = false;
  double label_smoothing = 0;
  // The train step draws random numbers (dropout, stochastic depth): its last input is an int32 seed, a new one each
  // step, after the weight decay. Bundles without the field take none.
  bool random = false;
  // Multi-label (HPA): the train step's y is float32 [batch, classes] 0/1 targets and its loss binary cross-entropy
  // with logits averaged over samples and classes (the LibTorch engine's); else int32 class indices.
  bool multilabel = false;
  std::vector<TensorSpec> state;   // params, buffers, optimizer state: the train step's first inputs and outputs
  std::vector<Program> train;      // one per batch size
  Program eval;
  size_t parameters() const;       // state entries with role param
  size_t model_state() const;      // params + buffers (the eval step's inputs before x)

  // Reads and validates a manifest. Throws xfer::Error (input) naming the file: not JSON, another format, a field
  // missing or of the wrong type, a program file missing, outside the bundle folder or not of its size, a state
  // shape that is not positive or absurdly large, state and programs' inputs that disagree.
  static Bundle read(const std::string& manifest_path);
  // The program's bytes, checked against the manifest's SHA-256 (a corrupt or replaced file is named, before the
  // plugin sees it: plugins may abort the process on a malformed module).
  std::string code(const Program& p) const;
  const Program* train_program(int batch) const;  // nullptr when none was exported for this batch size
};

// What a trial needs from a bundle.
struct BundleRequest {
  std::string backbone;        // the TorchScript file
  int input_size = 0, classes = 0, batch = 0, devices = 1;  // classes 0: any (xfer submit checks before the data)
  std::string optimizer;
  bool multilabel = false;
  // The hyperparameters a program bakes in (the optimizer's, label smoothing): compared when given.
  std::optional<double> beta1, beta2, eps, momentum, label_smoothing;
  std::optional<bool> nesterov;
  std::string platform;        // the plugin's platform: only variants exported for it match (empty: any)
};

// Empty when `b` was exported with the request's hyperparameters, else the first that differs, as a sentence.
std::string hyperparameter_mismatch(const Bundle& b, const BundleRequest& r);

// The variant matching the request — shape, optimizer and hyperparameters — searched beside the backbone and under
// XFER_PJRT_ARTIFACTS. Throws xfer::Error (input) listing where it looked and what variants exist, with the exporter
// command that makes the missing one; or, when variants of the right shape differ only in a hyperparameter, naming it.
Bundle find_bundle(const BundleRequest& r);

// The first of `variant_dirs` (each a folder holding a manifest.json) exported for `platform`. Throws xfer::Error
// (input) naming every folder and the platforms it has when none was: "no program for platform cuda: ...".
Bundle bundle_for_platform(const std::vector<std::string>& variant_dirs, const std::string& platform);

// What `xfer run` checks before its first trial, so that a bundle fault (the same on every attempt) costs no trial an
// attempt: the variant found (find_bundle), every program of it read and matched to its SHA-256, and a train program
// for the last batch of an epoch of `train_samples` (one process's trial). Throws xfer::Error (input).
Bundle check_bundle(const BundleRequest& r, int64_t train_samples);

}  // namespace xfer::pjrt
