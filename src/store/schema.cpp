#include "schema.hpp"

namespace xfer::store::schema {

using table::col;
using table::kVariable;

// Each table is built once and never destroyed: HDF5 closes its types at exit, before static destructors would run.

const table::Table<TrialRow>& trials() {
  using R = TrialRow;
  static const auto* t = new table::Table<R>(
      "trial",
      "One row per trial: its resolved configuration (everything that determines its result), the canonical text "
      "its key hashes, and its state in the ledger.",
      256, [](const R& r) { return r.key; },
      {
          col("key", &R::key, kKey, "first 16 hex digits of the SHA-256 of canonical"),
          col("model", &R::model, kName, "the model's name in the spec"),
          col("dataset", &R::dataset, kName, "the dataset's name in the spec"),
          col("kind", &R::kind, kWord, "the dataset's kind (cct20, aptos, …, imagefolder, csv, idx)"),
          col("metric", &R::metric, kWord, "the metric that selects the epoch and is reported"),
          col("optimizer", &R::optimizer, kWord, "adamw | sgd"),
          col("wd_mode", &R::wd_mode, kWord, "over_lr: AdamW is given weight_decay / lr (the paper's grid); plain"),
          col("augmentation", &R::augmentation, kWord, "none | randaugment | augmix | colour_affine"),
          col("schedule", &R::schedule, kWord, "cosine | cosine_step | step"),
          col("precision", &R::precision, kWord, "auto | fp32 | bf16 | fp16"),
          col("lr", &R::lr, "learning rate as in the spec"),
          col("weight_decay", &R::weight_decay, "weight decay as in the spec (see wd_mode)"),
          col("imagenet_top1", &R::imagenet_top1, "the model's ImageNet top-1 accuracy (percent)"),
          col("cost_gflop", &R::cost_gflop, "the cost model's estimate (GFLOP)").changes(),
          col("seed", &R::seed, "the trial's seed"),
          col("epochs", &R::epochs, "epochs to train"),
          col("batch_size", &R::batch_size, "global batch size (over the rank group)"),
          col("input_size", &R::input_size, "S: train and eval crops are S×S pixels"),
          col("ranks_per_trial", &R::ranks_per_trial, "ranks that train it together (not part of the key)"),
          col("weights", &R::weights, kVariable, "the exact pre-trained weights"),
          col("crop_pct", &R::crop_pct, "eval: resize to S / crop_pct, centre crop S"),
          col("mean_r", &R::mean, 0, "normalisation mean, red"),
          col("mean_g", &R::mean, 1, "normalisation mean, green"),
          col("mean_b", &R::mean, 2, "normalisation mean, blue"),
          col("std_r", &R::std, 0, "normalisation standard deviation, red"),
          col("std_g", &R::std, 1, "normalisation standard deviation, green"),
          col("std_b", &R::std, 2, "normalisation standard deviation, blue"),
          col("flips", &R::flips, kWord, "training flips: none | h | hv"),
          col("bgr_quirk", &R::bgr_quirk, "1: images reach the network in BGR order (the released code's quirk)"),
          col("validation", &R::validation, kWord, "fixed | paper | holdout"),
          col("heldout_fraction", &R::heldout_fraction, "fraction held out as test (kinds without a test split)"),
          col("heldout_seed", &R::heldout_seed, "seed of that draw"),
          col("val_fraction", &R::val_fraction, "fraction of train held out for validation (holdout)"),
          col("val_seed", &R::val_seed, "seed of that draw"),
          col("limit_train", &R::limit_train, "at most this many training samples (0: all)"),
          col("limit_test", &R::limit_test, "at most this many test samples (0: all)"),
          col("melanoma_2019", &R::melanoma_2019, "melanoma: 1 if the 2019 images join the training set"),
          col("manifest", &R::manifest, kVariable, "the dataset's manifest file (csv kind), empty if none"),
          col("split_file", &R::split_file, kVariable, "the dataset's split file, empty if none"),
          col("momentum", &R::momentum, "SGD momentum"),
          col("nesterov", &R::nesterov, "SGD: 1 for Nesterov momentum"),
          col("beta1", &R::beta1, "AdamW beta1"),
          col("beta2", &R::beta2, "AdamW beta2"),
          col("eps", &R::eps, "AdamW epsilon"),
          col("step_milestones", &R::step_milestones, kVariable, "step schedule: epochs at which lr is multiplied "
                                                                  "by step_gamma (space-separated)"),
          col("step_gamma", &R::step_gamma, "step schedule's factor"),
          col("warmup_epochs", &R::warmup_epochs, "linear warm-up epochs"),
          col("label_smoothing", &R::label_smoothing, "label smoothing of the cross-entropy"),
          col("canonical", &R::canonical, kVariable, "the canonical configuration text, key=value lines; its "
                                                      "SHA-256 gives the key"),
          col("stage", &R::stage, kWord, "downstream | upstream (a pre-training run of an [[upstream]] stage)"),
          col("upstream", &R::upstream, kKey, "the key of the upstream (pre-training) trial whose backbone it "
                                              "fine-tunes; empty if none"),
          col("config_crc32", &R::config_crc32, "CRC-32 of the columns above, written with the row (the columns "
                                                "and their encoding: this table's attribute config_crc32_columns)")
              .as_checksum(),
          col("status", &R::status, kWord, "pending | running | done | failed | diverged | oom | interrupted")
              .changes(),
          col("attempts", &R::attempts, "starts so far").changes(),
          col("best_epoch", &R::best_epoch, "0-based epoch with the best validation metric (-1: none)").changes(),
          col("epochs_done", &R::epochs_done, "epochs completed").changes(),
          col("resumed_from", &R::resumed_from, "the epoch its latest run resumed from a checkpoint (-1: scratch)")
              .changes(),
          col("val_metric", &R::val_metric, "validation metric at best_epoch, in the metric's units (NaN: unknown)")
              .changes(),
          col("test_metric", &R::test_metric, "test metric at best_epoch (NaN: unknown)").changes(),
          col("started_at", &R::started_at, "Unix seconds (UTC) the latest attempt started").changes(),
          col("finished_at", &R::finished_at, "Unix seconds (UTC) the latest attempt ended").changes(),
          col("seconds", &R::seconds, "wall-clock seconds summed over attempts").changes(),
          col("host", &R::host, kHost, "host of the rank group's first rank").changes(),
          col("rank_group", &R::rank_group, "the first world rank of the group that ran it").changes(),
          col("group_size", &R::group_size, "ranks in that group").changes(),
          col("device", &R::device, kVariable, "the device it trained on").changes(),
          col("slurm_job_id", &R::slurm_job_id, kSlurmId, "SLURM's job id, empty outside SLURM").changes(),
          col("slurm_array_task_id", &R::slurm_array_task_id, kSlurmId, "SLURM's array task id, empty if none")
              .changes(),
          col("order", &R::order, "position in the spec's expansion").changes(),
          col("message", &R::message, kVariable, "why it failed or stopped, empty otherwise").changes(),
          col("backbone_sha256", &R::backbone_sha256, kVariable, "SHA-256 of the backbone file it trained from")
              .changes(),
          col("exported_sha256", &R::exported_sha256, kVariable, "upstream trials: SHA-256 of the pre-trained "
                                                                  "backbone it exported (<upstream_dir>/<key>.pt)")
              .changes(),
          col("state_crc32", &R::state_crc32, "CRC-32 of the state columns (status … message), rewritten with them "
                                              "(attribute state_crc32_columns)")
              .changes()
              .as_checksum(),
      });
  return *t;
}

const table::Table<CurveRow>& curves() {
  using R = CurveRow;
  static const auto* t = new table::Table<R>(
      "curve row", "One row per (trial key, attempt, epoch).", 1024,
      [](const R& r) { return r.key + " attempt " + std::to_string(r.attempt) + " epoch " + std::to_string(r.epoch); },
      {
          col("key", &R::key, kKey, "the trial's key"),
          col("attempt", &R::attempt, "the trial's attempt (1-based)"),
          col("epoch", &R::epoch, "0-based epoch"),
          col("lr", &R::lr, "learning rate of the epoch"),
          col("train_loss", &R::train_loss, "mean training loss (cross-entropy, or BCE for multi-label)"),
          col("val_metric", &R::val_metric, "the dataset's metric on validation after the epoch (NaN: undefined)"),
          col("test_metric", &R::test_metric, "the metric on test after the epoch (NaN: undefined)"),
          col("val_loss", &R::val_loss, "mean validation loss"),
          col("train_seconds", &R::train_seconds, "wall-clock seconds training"),
          col("eval_seconds", &R::eval_seconds, "wall-clock seconds evaluating"),
          col("images_per_second", &R::images_per_second, "training images per second over the rank group"),
          col("peak_memory_bytes", &R::peak_memory_bytes,
              "peak CUDA memory allocated, or the process's peak resident memory on CPU (bytes)"),
      });
  return *t;
}

const table::Table<ModelRow>& models() {
  using R = ModelRow;
  static const auto* t = new table::Table<R>(
      "model", "The study's models (written once per study; replaced, with a log line, if the spec changes them).",
      64, [](const R& r) { return r.name; },
      {
          col("name", &R::name, kName, "the model's name in the spec"),
          col("weights", &R::weights, kVariable, "the exact pre-trained weights"),
          col("backbone", &R::backbone, kVariable, "the TorchScript backbone file"),
          col("backbone_sha256", &R::backbone_sha256, kSha256, "its SHA-256 (empty if not staged)"),
          col("imagenet_top1", &R::imagenet_top1, "ImageNet top-1 in percent (the x-axis)"),
          col("gmacs", &R::gmacs, "GMACs per 224x224 image (cost model)"),
          col("feature_dim", &R::feature_dim, "feature dimension of the backbone"),
      });
  return *t;
}

const table::Table<DatasetRow>& datasets() {
  using R = DatasetRow;
  static const auto* t = new table::Table<R>(
      "dataset", "The study's datasets (written once per study; replaced, with a log line, if they change).", 64,
      [](const R& r) { return r.name; },
      {
          col("name", &R::name, kName, "the dataset's name in the spec"),
          col("kind", &R::kind, kWord, "the dataset's kind"),
          col("metric", &R::metric, kWord, "the metric reported"),
          col("root", &R::root, kVariable, "the dataset's folder"),
          col("validation", &R::validation, kWord, "fixed | paper | holdout"),
          col("split_sha256", &R::split_sha256, kSha256, "SHA-256 of the sample_id,split rows"),
          col("n_train", &R::n_train, "training samples"),
          col("n_val", &R::n_val, "validation samples"),
          col("n_test", &R::n_test, "test samples"),
          col("problems", &R::problems, "samples skipped while indexing"),
          col("classes", &R::classes, "classes"),
          col("multilabel", &R::multilabel, "1 for a multi-label dataset"),
      });
  return *t;
}

const table::Table<SampleRow>& samples() {
  using R = SampleRow;
  static const auto* t = new table::Table<R>(
      "sample", "The dataset's samples as the study splits them (written once per study).", 4096,
      [](const R& r) { return r.id; },
      {
          col("index", &R::index, "what predictions refer to"),
          col("id", &R::id, kVariable, "the sample's id as the dataset names it"),
          col("split", &R::split, kSplit, "train | val | test"),
          col("label", &R::label, "the class (-1 for multi-label)"),
          col("labels", &R::labels, kVariable, "the classes, space-separated"),
          col("group", &R::group, kVariable, "the sample's group (camera location, patient, …), empty if none"),
      },
      1);
  return *t;
}

const table::Table<ProblemRow>& problems() {
  using R = ProblemRow;
  static const auto* t = new table::Table<R>(
      "problem", "Samples skipped: the dataset, the sample id, the file, why.", 256,
      [](const R& r) { return r.dataset + " " + r.id; },
      {
          col("dataset", &R::dataset, kName, "the dataset's name"),
          col("id", &R::id, kVariable, "the sample's id"),
          col("path", &R::path, kVariable, "the file"),
          col("reason", &R::reason, kVariable, "why it was skipped"),
      });
  return *t;
}

const table::Table<RunRow>& runs() {
  using R = RunRow;
  static const auto* t = new table::Table<R>(
      "run", "One row per `xfer run`.", 16, [](const R& r) { return r.host + " " + r.slurm_job_id; },
      {
          col("host", &R::host, kHost, "host of rank 0"),
          col("slurm_job_id", &R::slurm_job_id, kSlurmId, "SLURM's job id, empty outside SLURM"),
          col("git_commit", &R::git_commit, kGitCommit, "git commit of xfer"),
          col("end_reason", &R::end_reason, kVariable, "how it ended (running, finished, time limit, signal, error)"),
          col("started_at", &R::started_at, "Unix seconds (UTC)"),
          col("finished_at", &R::finished_at, "Unix seconds (UTC)"),
          col("ranks", &R::ranks, "MPI ranks"),
          col("trials_run", &R::trials_run, "trials it ran"),
          col("input_pipeline", &R::input_pipeline, kWord,
              "host | device: where its trials' batches were decoded and augmented (--input-pipeline; absent from "
              "files written before xfer recorded it)")
              .later(),
      });
  return *t;
}

const table::Table<SpecRow>& specs() {
  using R = SpecRow;
  static const auto* t = new table::Table<R>(
      "spec",
      "Every spec the file has been run with, in the order first run (`xfer run --extend` adds one; /study/spec and "
      "the root attribute spec_sha256 are the latest run's).",
      16, [](const R& r) { return r.sha256; },
      {
          col("sha256", &R::sha256, kSha256, "SHA-256 of the spec's text (the root attribute spec_sha256 of its runs)"),
          col("first_run_at", &R::first_run_at, "Unix seconds (UTC) it was first run into this file"),
          col("text", &R::text, kVariable, "the spec's full text"),
      });
  return *t;
}

const table::Table<PredictionIndexRow>& prediction_index() {
  using R = PredictionIndexRow;
  static const auto* t = new table::Table<R>(
      "prediction set",
      "One row per (trial key, split): the selected epoch's predictions are samples[offset:offset+n] (indices into "
      "/samples/<dataset>) and scores[offset*classes:(offset+n)*classes] (probabilities, row-major n × classes: "
      "softmax, or sigmoid for multi-label).",
      256, [](const R& r) { return r.key + " " + r.split; },
      {
          col("key", &R::key, kKey, "the trial's key"),
          col("split", &R::split, kSplit, "val | test"),
          col("dataset", &R::dataset, kName, "the dataset's name"),
          col("classes", &R::classes, "classes"),
          col("offset", &R::offset, "first row in /predictions/samples"),
          col("n", &R::n, "samples"),
      });
  return *t;
}

const table::Table<MergeConflict>& merge_conflicts() {
  using R = MergeConflict;
  static const auto* t = new table::Table<R>(
      "conflict",
      "Trial keys found in more than one shard with different results at the same stage (both done, say, with "
      "different metrics). Nothing is averaged or dropped silently: decide, then rerun the trial if neither is "
      "trusted.",
      64, [](const R& r) { return r.key; },
      {
          col("key", &R::key, kKey, "the trial's key"),
          col("kept_from", &R::kept_from, kVariable, "the shard whose row the merged file keeps (the first given)"),
          col("other", &R::other, kVariable, "the other shard"),
          col("kept_status", &R::kept_status, kWord, "the kept row's status"),
          col("other_status", &R::other_status, kWord, "the other row's status"),
          col("kept_test_metric", &R::kept_test_metric, "the kept row's test metric"),
          col("other_test_metric", &R::other_test_metric, "the other row's test metric"),
          col("kept_val_metric", &R::kept_val_metric, "the kept row's validation metric"),
          col("other_val_metric", &R::other_val_metric, "the other row's validation metric"),
          col("reason", &R::reason, kVariable, "both rows, in words"),
      });
  return *t;
}

}  // namespace xfer::store::schema
