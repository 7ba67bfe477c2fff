// train: fine-tunes one trial — a backbone, a dataset, a recipe — with the paper's protocol: per-epoch schedules,
// validation and test after every epoch, the best-by-validation epoch kept with its predictions; atomic
// checkpoints, exact resume, faults kept inside the trial, data parallelism over a rank group. This header is plain
// C++ (no torch); torch lives in the .cpp files of model/ and train/. Inside: the protocol (epoch_loop.hpp) written
// against a backend interface (engine.hpp), its rules as plain functions (schedule, oom_policy, loss_scale,
// evaluation), checkpoint files; the LibTorch engine (src/train/torch_engine, step, gradient_exchange) is the
// trainer module loaded on demand. Knows nothing of HDF5, the results schema or MPI (the group is an interface).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "xfer/core/vocabulary.hpp"
#include "xfer/data/dataset.hpp"
#include "xfer/grid/grid.hpp"
#include "xfer/train/group.hpp"

namespace xfer::train {

// The trainer's outcomes are the ledger's statuses (done, diverged, oom, failed, interrupted; never pending or
// running), so the sweep records them without a translation.
using Status = TrialStatus;
const char* status_name(Status s);  // name(s), as a C string

struct EpochRecord {
  int epoch = 0;                 // 0-based
  double lr = 0;                 // the learning rate used (per-epoch schedules; the first step's for per-step ones)
  double train_loss = 0;         // mean over the epoch's steps
  double val_metric = std::numeric_limits<double>::quiet_NaN();
  double test_metric = std::numeric_limits<double>::quiet_NaN();
  double val_loss = std::numeric_limits<double>::quiet_NaN();
  double train_seconds = 0, eval_seconds = 0;
  double images_per_second = 0;  // training images per second (all ranks)
  int64_t peak_memory_bytes = 0; // CUDA: peak allocated on this device; CPU: process peak RSS
  std::string note;              // e.g. why a metric is undefined
};

// Per-sample outputs at the selected epoch: probabilities (softmax, or sigmoid for multi-label), n × classes.
struct Predictions {
  int classes = 0;
  std::vector<int64_t> samples;     // dataset indices
  std::vector<float> scores;
  bool empty() const { return samples.empty(); }
};

using Cause = xfer::Cause;  // whose fault an end that is not done is (vocabulary.hpp)

struct Result {
  Status status = Status::failed;
  Cause cause = Cause::none;
  std::string message;
  std::vector<EpochRecord> epochs;
  int best_epoch = -1;
  double best_val = std::numeric_limits<double>::quiet_NaN();
  double test_at_best = std::numeric_limits<double>::quiet_NaN();
  Predictions val, test;            // at best_epoch; test empty when validation is the test set (paper mode)
  int resumed_from_epoch = -1;      // -1: started from scratch
  int micro_batches = 1;            // > 1 after an out-of-memory retry
  std::string device;
  int threads = 0;
  double seconds = 0;
  std::vector<data::Problem> data_problems;  // samples the loader could not decode
  int64_t parameters = 0;
  int feature_dim = 0;
};

// How a trial runs, as opposed to what it is (grid::TrialConfig).
struct Environment {
  std::string backbone;            // the model's TorchScript file
  std::string checkpoint_dir;      // this trial's folder (created if missing)
  Group* group = nullptr;          // data-parallel group; nullptr: alone
  int local_rank = 0;              // for the rank → GPU binding
  std::string device = "auto";     // auto | cpu | cuda | cuda:N
  int threads = 0;                 // torch intra-op threads; 0: from the allocation (see README)
  int loader_threads = 0;          // 0: derived from threads
  bool keep_best_model = false;    // keep <checkpoint_dir>/best.pt after the trial
  // An [[upstream]] pre-training trial: when it ends done, the backbone of its best-by-validation epoch is written
  // here as TorchScript (kept as <checkpoint_dir>/best_backbone.pt while it trains, so a resume keeps it).
  std::string export_backbone;
  // Remove the checkpoints when the trial ends (done, diverged, out of memory). The sweep says no and removes
  // them itself once the result is in the results file, so a job that dies in between loses nothing.
  bool remove_checkpoints = true;
  bool channels_last = true;        // NHWC convolutions (faster on CPU and CUDA; same values up to rounding)
  // CPU: keep freed activation memory in the heap (model::keep_host_memory); XFER_KEEP_HOST_MEMORY=0 turns it off.
  bool keep_host_memory = true;
  bool oom_retry = true;           // CUDA out of memory: halve the micro-batch and accumulate
  int micro_batches = 1;           // start with the batch split in this many micro-batches
  // How a data-parallel group sums gradients (train/gradient_exchange.hpp; core/vocabulary.hpp).
  ExchangeMode gradient_exchange = ExchangeMode::overlap;
  // Where batches are made: host (data::Loader) or device (train/device_input: a split decoded once into a uint8
  // cache in input_cache_dir — default <checkpoint_dir>/../input-cache — cropped, flipped and normalised on the
  // trial's device).
  InputPipeline input_pipeline = InputPipeline::host;
  std::string input_cache_dir;
  const std::atomic<bool>* stop = nullptr;  // set from a signal: checkpoint at the next step and return
  // Counted up after every training step and evaluation batch: the sweep's heartbeat stops when it stands still, so
  // a group stuck in a collective (NCCL, MPI) is declared hung like a dead one.
  std::atomic<int64_t>* progress = nullptr;
  std::optional<std::chrono::steady_clock::time_point> deadline;  // do not start an epoch that cannot finish
  std::function<void(const EpochRecord&)> on_epoch;                // after each epoch, on group rank 0
  // Reproducibility checks (parity with a PyTorch script): the eval transform for training and no shuffle, a head
  // initialisation from a file, a CSV of per-step losses and samples.
  bool deterministic_input = false;
  std::string head_init;
  std::string step_log;
};

// The environment the spec gives a trial: its backbone, its checkpoint folder (<checkpoint_dir>/<key>), whether to
// keep the best model. Throws Error (input) if the backbone path names an unset variable.
Environment environment_for(const spec::Spec& spec, const grid::Trial& trial);

// Runs (or resumes) the trial. Never throws for the trial's own faults: a diverged loss, an out-of-memory, a bad
// backbone or any other exception end as a Result with its status and message. Throws only for programming errors
// of the caller (e.g. no checkpoint_dir).
Result run(const grid::TrialConfig& t, const data::Dataset& d, const Environment& env);

// Removes a trial's checkpoint folder (keeping best.pt if asked).
void remove_trial_checkpoints(const std::string& checkpoint_dir, bool keep_best_model);

// Threads for this rank: SLURM_CPUS_PER_TASK, else the cores visible to the process divided by the ranks on this
// node (OMPI_COMM_WORLD_LOCAL_SIZE / SLURM_NTASKS_PER_NODE), at least 1 — never oversubscribed.
int default_threads();

// Information about the training backend for provenance: LibTorch version, CUDA, cuDNN, devices. The CUDA and
// cuDNN versions are those LibTorch was built with (e.g. "12.1", "8.9.2"), "none (CPU build)" without them.
struct Backend {
  std::string torch_version, cuda_version, cudnn_version, devices;
  int cuda_devices = 0;
};
Backend backend();

// Whether `request` is a device name: auto, cpu, cuda, cuda:N. Empty if it is, else an error message (input).
std::string device_syntax_problem(const std::string& request);
// Whether this process can train on `request`: empty if it can, else why not — a CUDA request on a host where
// torch sees no CUDA device, or cuda:N past the device count. Loads the trainer module for CUDA requests only.
std::string device_problem(const std::string& request);

// Version numbers as the libraries encode them, as text: CUDART_VERSION (major·1000 + minor·10: 12010 → "12.1"),
// CUDNN_VERSION (before 9: major·1000 + minor·100 + patch, 8902 → "8.9.2"; from 9: major·10000 + minor·100 + patch,
// 90100 → "9.1.0").
std::string cuda_version_text(long cudart_version);
std::string cudnn_version_text(long cudnn_version);

}  // namespace xfer::train
