// store: the results file — one HDF5 file per study, one writer, self-describing (attributes state units and
// meaning; every table a compound dataset h5py and pandas read directly). Knows the results schema; nothing of
// torch, MPI or the trainer (the sweep converts its results into these rows).
//
// Layout (format "xfer-results 4"; every table is declared once in schema.cpp, its columns listed in its
// `description` attribute):
//   /              attrs: format, xfer_version, study, created_utc, spec_sha256 (the SHA-256 of the latest run's spec)
//   /study/spec    the latest run's spec, full text (string)
//   /study/specs   every spec the file has been run with: sha256, first run, text — never lost when a spec changes
//                  (`xfer run --extend`); a run of another study, or of another spec without --extend, is refused
//   /study/models, /study/datasets      one row per model / dataset (checksums, split hashes, sizes)
//   /samples/<dataset>                  the dataset's samples: index, id, split, label(s), group
//                  /study and /samples are written once per study: a rerun with the same content (attribute
//                  content_sha256) writes nothing; different content replaces the table and says so in the log
//   /trials        one row per trial key: the resolved configuration and its canonical text (the text the key
//                  hashes), status, attempts, best epoch, metrics, timing, host, SLURM; two CRC-32 columns
//                  (config_crc32 over the configuration, state_crc32 over the state) make a damaged row known on read
//   /curves        one row per (trial, epoch): lr, losses, metrics, throughput, memory
//   /predictions/index, /predictions/samples, /predictions/scores
//                  per (trial, split) the selected epoch's probabilities: rows [offset, offset + n) of samples and
//                  n × classes values from offset · classes of scores
//   /problems      samples skipped (dataset, id, path, reason)
//   /runs          one row per `xfer run`: when, where, how many ranks, how it ended, which input pipeline
//   /provenance    attributes: git commit and dirty flag, library versions, devices
//   /analysis      written by `xfer analyze`
// The file is opened, written and closed around every event (one HDF5 session each: a trial costs at most
// epochs + 3), so it is consistent whenever no event is being written and a killed job leaves it readable. Text
// longer than its column is an Error naming the file, table, column and row, never cut.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <tuple>
#include <unordered_map>
#include <optional>
#include <string>
#include <vector>

namespace xfer::store {

// Text columns are fixed-width (null-padded) or variable-length HDF5 strings: h5py returns bytes or str, pandas
// shows them as such.
struct TrialRow {
  std::string key, model, dataset, kind, metric, optimizer, wd_mode, augmentation, schedule, precision, status,
      host, device, slurm_job_id, slurm_array_task_id, message;
  double lr = 0, weight_decay = 0, imagenet_top1 = 0, cost_gflop = 0;
  int64_t seed = 0;
  int32_t epochs = 0, batch_size = 0, input_size = 0, ranks_per_trial = 1;
  // The rest of the resolved configuration (grid::TrialConfig's fields that determine the result; the sweep copies
  // them), and the canonical text the key is the hash of.
  std::string weights, flips, validation, manifest, split_file, canonical;
  // The upstream stage: "upstream" for a pre-training trial, else "downstream"; the key of the pre-training trial
  // whose backbone a downstream trial fine-tunes ("" if none). State: the SHA-256 of the backbone file the trial
  // trained from, and of the backbone a pre-training trial exported.
  std::string stage = "downstream", upstream, backbone_sha256, exported_sha256;
  double crop_pct = 1;
  std::array<double, 3> mean{}, std{};
  bool bgr_quirk = false, melanoma_2019 = true;
  double heldout_fraction = 0.2, val_fraction = 0.1;
  int64_t heldout_seed = 0, val_seed = 0, limit_train = 0, limit_test = 0;
  double momentum = 0.9, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  bool nesterov = true;
  std::vector<int32_t> step_milestones;
  double step_gamma = 0.1, label_smoothing = 0;
  int32_t warmup_epochs = 0;
  int32_t attempts = 0, best_epoch = -1, epochs_done = 0, rank_group = -1, group_size = 0;
  int32_t resumed_from = -1;                // the epoch the latest run of it resumed from (-1: from scratch)
  double val_metric = 0, test_metric = 0;  // NaN until known
  double started_at = 0, finished_at = 0, seconds = 0;  // Unix seconds; seconds: summed over attempts
  int64_t order = 0;                        // position in the spec's expansion
  int64_t config_crc32 = 0, state_crc32 = 0;  // set by the writer (store/table.hpp); read back as stored
  // Not columns: set by Results::trials() on read. damage: which checksums fail ("" for an intact row; such a row's
  // values are not to be trusted, its key included); row_index: its row in /trials.
  std::string damage;
  int64_t row_index = -1;
};

// "row 3 (key 166bc038032c92a0)", or "row 3 (key not printable)": how a damaged row is named in messages.
std::string describe_row(const TrialRow& row);

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
  std::string input_pipeline;  // host | device (xfer run --input-pipeline); "" in files written before it was recorded
};

struct SpecRow {
  std::string sha256, text;
  double first_run_at = 0;
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
  // Whether this lock was taken over from a run that no longer holds it (dead pid on this host, or silent).
  bool took_over() const { return took_over_; }

  // Who holds `<results>.lock` now, by the same rule the constructor uses to take a lock over.
  enum class Holder { none, alive, stale };
  struct State {
    Holder holder = Holder::none;
    std::string who;  // "host h pid p, since …"; why stale: "no longer running" or "silent 1200 s"
  };
  static State inspect(const std::string& results_path);

 private:
  std::string path_;
  bool took_over_ = false;
};

class Results {
 public:
  // Opens an existing results file or creates a new one (with the study's tables). An existing file that is not
  // an xfer results file, or is truncated or corrupt, raises Error (input) and is never modified.
  static Results open_or_create(const std::string& path, const std::string& study, const std::string& spec_text);
  static Results open_existing(const std::string& path);  // reading and analysis

  const std::string& path() const { return path_; }
  std::string study() const;  // the root attribute `study`

  // Refuses (Error::input, naming the file, the studies or specs, and what to do), before anything is written,
  // a run of `study` under `spec_text` into this file when: the file holds another study; or it was never run with
  // this spec and `extend` is false; or a dataset it records was split differently (split_sha256 by dataset name;
  // empty hashes are not compared) — even with `extend`, as `xfer merge` refuses it.
  void check_run(const std::string& study, const std::string& spec_text,
                 const std::map<std::string, std::string>& split_sha256, bool extend) const;
  // Every spec the file has been run with (/study/specs), oldest first.
  std::vector<SpecRow> specs() const;
  void add_specs(const std::vector<SpecRow>& rows);  // those not yet recorded (merge)
  // /runs rows still saying "running" (a run that was killed) get `reason`; returns how many.
  size_t close_stale_runs(const std::string& reason);

  // Study metadata, written once per study: a table whose content is unchanged (its content_sha256 attribute) is
  // not written again; a different one replaces it, with a log line (HDF5 does not reclaim the old one's space).
  // Models and datasets the file records but this spec lacks are kept (their trials stay described); the spec
  // joins /study/specs if it is new there.
  void write_study(const std::string& spec_text, const std::vector<ModelRow>& models,
                   const std::vector<DatasetRow>& datasets);
  void write_samples(const std::string& dataset, const std::vector<SampleRow>& samples);
  void write_provenance(const std::map<std::string, std::string>& attrs);
  void add_problems(const std::vector<ProblemRow>& rows);
  // The problems found while indexing the datasets: appended only when they differ from the last recorded ones.
  void add_index_problems(const std::vector<ProblemRow>& rows);

  // A trial's events, one HDF5 session each. started: the row as the trial starts (or as it changes before its
  // first epoch). epoch: one curve row written (or overwritten, for the same key, attempt and epoch) and the
  // trial's row updated. finished: the trial's final row, its curves (rows this object already recorded through
  // record_epoch are not written again), its predictions and the problems its data loader met.
  void record_started(const TrialRow& row);
  void record_epoch(const TrialRow& row, const CurveRow& curve);
  void record_finished(const TrialRow& row, const std::vector<CurveRow>& curves,
                       const std::vector<PredictionSet>& predictions, const std::vector<ProblemRow>& problems);
  // How many HDF5 sessions (open … close of the file) this object has had: the benchmark's and tests' measure.
  int64_t sessions() const { return *sessions_; }

  // Every row; a row whose checksums fail is returned with `damage` set (see TrialRow), never dropped silently.
  std::vector<TrialRow> trials() const;
  // The rows with only key, model, dataset, epochs and the state columns (no configuration): what
  // `xfer status` needs, a fraction of the bytes to read.
  std::vector<TrialRow> trial_states() const;
  // Only what the ledger decides on (key, status, attempts): a fraction of the full rows to read.
  struct LedgerEntry {
    std::string key, status;
    int32_t attempts = 0;
  };
  std::vector<LedgerEntry> ledger() const;
  // Appends rows for keys not yet present; returns how many were added.
  size_t add_trials(const std::vector<TrialRow>& rows);
  // By key: writes the state columns (status, attempts, metrics, timing, …); the configuration is fixed by the key.
  void update_trial(const TrialRow& row);
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
  // A dataset's samples; Error (input) naming the dataset if they no longer match their content_sha256.
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
  struct Session;
  // The rows of the tables events write to, read once (key columns only) in the first session that needs them,
  // then kept up to date: no event reads a whole table.
  void load_indexes(const Session& s);
  void write_curves(const Session& s, const std::vector<CurveRow>& rows);
  void write_prediction(const Session& s, const PredictionSet& p);
  void write_trial_states(const Session& s, const std::vector<TrialRow>& rows);
  void append_problems(const Session& s, const std::vector<ProblemRow>& rows);

  std::string path_;
  std::shared_ptr<int64_t> sessions_ = std::make_shared<int64_t>(0);
  bool indexed_ = false;
  std::unordered_map<std::string, int64_t> trial_row_;          // key → row of /trials
  std::map<std::tuple<std::string, int, int>, int64_t> curve_row_;  // (key, attempt, epoch) → row of /curves
  std::map<std::pair<std::string, std::string>, int64_t> prediction_row_;  // (key, split) → row of /predictions/index
  std::unordered_map<std::string, std::set<std::pair<int, int>>> epochs_recorded_;  // key → (attempt, epoch)
};

// `xfer merge`: combines shard files (a job array's) into `out`, which must not exist. Each trial key once; a key in
// several shards keeps its most advanced state (done > diverged > interrupted/running > failed/oom > pending),
// and every duplicate whose rows differ is a conflict: reported here and in /merge/conflicts, never dropped
// silently. Shards of different specs or different splits are refused.
struct MergeConflict {
  std::string key, kept_from, other, kept_status, other_status, reason;
  bool damaged = false;  // `other` is a corrupted row (its reason says what the merged file holds); not a column
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
// Shuts HDF5 down (H5close) once every results file is closed; never throws. Called before MPI_Finalize: HDF5's
// own shutdown inside MPI_Finalize is where a file left open used to crash. false: a file's close failed earlier
// (every session reserves its disk space first, so this is rare), and HDF5 must not be shut down at all — not by
// MPI_Finalize either.
bool close_library() noexcept;
double now_unix();

}  // namespace xfer::store
