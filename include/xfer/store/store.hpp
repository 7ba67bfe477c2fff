// store: the results file — one HDF5 file per study, one writer, self-describing (attributes state units and
// meaning; every table a compound dataset h5py and pandas read directly). Knows the results schema; nothing of
// torch, MPI or the trainer (the sweep converts its results into these rows).
//
// Layout (format "xfer-results 1"):
//   /              attrs: format, xfer_version, study, created_utc, spec_sha256
//   /study/spec    the spec's full text (string)
//   /study/models, /study/datasets      one row per model / dataset (checksums, split hashes, sizes)
//   /samples/<dataset>                  the dataset's samples: index, id, split, label(s), group
//   /trials        one row per trial key: configuration, status, attempts, best epoch, metrics, timing, host, SLURM
//   /curves        one row per (trial, epoch): lr, losses, metrics, throughput, memory
//   /predictions/index, /predictions/samples, /predictions/scores
//                  per (trial, split) the selected epoch's probabilities: rows [offset, offset + n) of samples and
//                  n × classes values from offset · classes of scores
//   /problems      samples skipped (dataset, id, path, reason)
//   /runs          one row per `xfer run`: when, where, how many ranks, how it ended
//   /provenance    attributes: git commit and dirty flag, library versions, devices
//   /analysis      written by `xfer analyze`
// The file is opened, written and closed around every event, so it is consistent whenever no event is being
// written and a killed job leaves it readable.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace xfer::store {

// Fixed-width text columns (null-padded): h5py returns bytes, pandas shows them as such.
struct TrialRow {
  std::string key, model, dataset, kind, metric, optimizer, wd_mode, augmentation, schedule, precision, status,
      host, device, slurm_job_id, slurm_array_task_id, message;
  double lr = 0, weight_decay = 0, imagenet_top1 = 0, cost_gflop = 0;
  int64_t seed = 0;
  int32_t epochs = 0, batch_size = 0, input_size = 0, ranks_per_trial = 1;
  int32_t attempts = 0, best_epoch = -1, epochs_done = 0, rank_group = -1, group_size = 0;
  int32_t resumed_from = -1;                // the epoch the latest run of it resumed from (-1: from scratch)
  double val_metric = 0, test_metric = 0;  // NaN until known
  double started_at = 0, finished_at = 0, seconds = 0;  // Unix seconds; seconds: summed over attempts
  int64_t order = 0;                        // position in the spec's expansion
};

struct CurveRow {
  std::string key;
  int32_t attempt = 1, epoch = 0;
  double lr = 0, train_loss = 0, val_metric = 0, test_metric = 0, val_loss = 0;
  double train_seconds = 0, eval_seconds = 0, images_per_second = 0;
  int64_t peak_memory_bytes = 0;
};

struct ModelRow {
  std::string name, weights, backbone, backbone_sha256;
  double imagenet_top1 = 0, gmacs = 0;
  int32_t feature_dim = 0;
};

struct DatasetRow {
  std::string name, kind, metric, root, validation, split_sha256;
  int64_t n_train = 0, n_val = 0, n_test = 0, problems = 0;
  int32_t classes = 0;
  bool multilabel = false;
};

struct SampleRow {
  int64_t index = 0;
  std::string id, split, labels, group;  // labels: "3" or "0 25" (multi-label)
  int32_t label = -1;
};

struct ProblemRow {
  std::string dataset, id, path, reason;
};

struct RunRow {
  std::string host, slurm_job_id, git_commit, end_reason;
  double started_at = 0, finished_at = 0;
  int32_t ranks = 0;
  int64_t trials_run = 0;
};

struct PredictionSet {
  std::string key, split, dataset;  // split: val | test
  int32_t classes = 0;
  std::vector<int64_t> samples;
  std::vector<float> scores;        // samples × classes
};

// Holds `<results>.lock` for as long as it lives: a second writer is refused with who holds it.
class WriterLock {
 public:
  explicit WriterLock(const std::string& results_path);
  ~WriterLock();
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;
  void heartbeat();  // refreshes the lock's timestamp (call every few minutes)

 private:
  std::string path_;
};

class Results {
 public:
  // Opens an existing results file or creates a new one (with the study's tables). An existing file that is not
  // an xfer results file, or is truncated or corrupt, raises Error (input) and is never modified.
  static Results open_or_create(const std::string& path, const std::string& study, const std::string& spec_text);
  static Results open_existing(const std::string& path);  // reading and analysis

  const std::string& path() const { return path_; }

  // Study metadata (replaced on every run: the spec of the latest run is the one in force).
  void write_study(const std::string& spec_text, const std::vector<ModelRow>& models,
                   const std::vector<DatasetRow>& datasets);
  void write_samples(const std::string& dataset, const std::vector<SampleRow>& samples);
  void write_provenance(const std::map<std::string, std::string>& attrs);
  void add_problems(const std::vector<ProblemRow>& rows);

  std::vector<TrialRow> trials() const;
  // Only what the ledger decides on (key, status, attempts): a fraction of the full rows to read.
  struct LedgerEntry {
    std::string key, status;
    int32_t attempts = 0;
  };
  std::vector<LedgerEntry> ledger() const;
  // Appends rows for keys not yet present; returns how many were added.
  size_t add_trials(const std::vector<TrialRow>& rows);
  void update_trial(const TrialRow& row);  // by key
  void update_trials(const std::vector<TrialRow>& rows);
  // Writes (or overwrites, for the same key, attempt and epoch) a curve row.
  void put_curve(const CurveRow& row);
  std::vector<CurveRow> curves() const;
  void put_predictions(const PredictionSet& p);
  void put_curves(const std::vector<CurveRow>& rows);            // one open/close for many rows
  void put_predictions(const std::vector<PredictionSet>& sets);  // likewise
  std::vector<PredictionSet> all_predictions() const;            // the latest set per (key, split)
  std::vector<PredictionSet> predictions(const std::string& key) const;
  std::vector<ModelRow> models() const;
  std::vector<DatasetRow> datasets() const;
  std::vector<SampleRow> samples(const std::string& dataset) const;
  std::string spec_text() const;
  std::map<std::string, std::string> provenance() const;
  std::vector<ProblemRow> problems() const;

  // /merge/conflicts: the duplicates `xfer merge` found (key, the shard kept, the other, why).
  void write_merge_conflicts(const std::vector<struct MergeConflict>& rows);

  int64_t begin_run(const RunRow& row);
  void end_run(int64_t run, const RunRow& row);
  std::vector<RunRow> runs() const;

  // /analysis: tables written by `xfer analyze` (replaced each time).
  void write_analysis_table(const std::string& name, const std::vector<std::string>& columns,
                            const std::vector<std::vector<double>>& numeric, const std::vector<std::string>& labels,
                            const std::map<std::string, std::string>& attrs);

 private:
  explicit Results(std::string path) : path_(std::move(path)) {}
  std::string path_;
  mutable std::map<std::string, int64_t> trial_row_;          // key → row
  mutable std::map<std::tuple<std::string, int, int>, int64_t> curve_row_;  // (key, attempt, epoch) → row
  mutable bool trial_index_ = false, curve_index_ = false;
};

// `xfer merge`: combines shard files (a job array's) into `out`, which must not exist. Each trial key once; a key in
// several shards keeps its most advanced state (done > diverged > interrupted/running > failed/oom > pending),
// and every duplicate whose rows differ is a conflict: reported here and in /merge/conflicts, never dropped
// silently. Shards of different specs or different splits are refused.
struct MergeConflict {
  std::string key, kept_from, other, kept_status, other_status, reason;
  double kept_test_metric = 0, other_test_metric = 0, kept_val_metric = 0, other_val_metric = 0;
};
struct MergeReport {
  size_t trials = 0, identical_duplicates = 0;
  size_t superseded = 0;  // keys also found in a less advanced state elsewhere (pending/failed there, done here)
  std::vector<MergeConflict> conflicts;
  std::vector<std::string> warnings;
};
MergeReport merge(const std::string& out, const std::vector<std::string>& shards);

std::string iso_utc(double unix_seconds);
double now_unix();

}  // namespace xfer::store
