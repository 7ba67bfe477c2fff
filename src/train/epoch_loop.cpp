#include "xfer/train/epoch_loop.hpp"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <future>
#include <set>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "checkpoint.hpp"
#include "xfer/core/error.hpp"
#include "xfer/train/loss_scale.hpp"
#include "xfer/train/oom_policy.hpp"
#include "xfer/train/schedule.hpp"

namespace xfer::train {

bool diverged(double loss, double first_loss) {
  return !std::isfinite(loss) || loss > kDivergenceFactor * first_loss;
}

namespace {

using Clock = std::chrono::steady_clock;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

class EpochLoop {
 public:
  EpochLoop(const grid::TrialConfig& t, const data::Dataset& d, const Environment& env, Group& group)
      : t_(t), d_(d), env_(env), g_(group) {}

  Result run(const EngineFactory& factory) {
    Result r;
    const auto started = Clock::now();
    try {
      setup(r, factory);
      loop(r);
    } catch (const std::exception& e) {
      fail(r, e, factory);
    }
    // What the trial reports must be on disk: wait for a checkpoint still being written. A checkpoint that cannot
    // be written never throws a result away: a done trial stays done (its result is in memory and goes to the
    // results file; the previous checkpoint stays the fallback), an interrupted one resumes from the one before.
    settle_checkpoint(r);
    r.seconds = seconds_since(started);
    if (train_loader_) {
      r.data_problems = train_loader_->problems();
      for (auto* l : {val_loader_.get(), test_loader_.get()})
        if (l)
          for (const auto& p : l->problems()) r.data_problems.push_back(p);
    }
    // A done trial has a result: an epoch with a finite validation metric. NaN never reaches `done`. (Group rank 0
    // keeps the best epoch; the others report only that they finished.)
    if (r.status == Status::done && g_.rank() == 0 && r.best_epoch < 0) {
      r.status = Status::failed;
      r.cause = Cause::input;
      const std::string note = r.epochs.empty() ? "" : r.epochs.back().note;
      r.message = fmt::format("no epoch of dataset {} gave a finite validation {} ({})", d_.name, name(t_.metric),
                              note.empty() ? fmt::format("{} of the validation split's samples were usable",
                                                         val_loader_ ? val_loader_->size() : 0)
                                           : note);
    }
    return r;
  }

 private:
  // The machine's fault (a full disk, an I/O error, a missing device), the input's (the data, the spec), or the
  // trial's own.
  static Cause cause_of(const std::exception& e) {
    if (const auto* x = dynamic_cast<const Error*>(&e))
      return x->kind() == Error::Kind::environment ? Cause::environment
             : x->kind() == Error::Kind::input     ? Cause::input
                                                   : Cause::trial;
    if (const auto* x = dynamic_cast<const std::filesystem::filesystem_error*>(&e))
      if (environment_errno(x->code().value())) return Cause::environment;
    const std::string what = e.what();
    for (const char* s : {"No space left on device", "Disk quota exceeded", "Read-only file system", "Input/output error"})
      if (what.find(s) != std::string::npos) return Cause::environment;
    return Cause::trial;
  }

  // Waits for the checkpoint being written; its failure is noted on the result, which keeps its status.
  void settle_checkpoint(Result& r) {
    try {
      await_checkpoint();
    } catch (const std::exception& e) {
      const Cause f = cause_of(e);
      if (r.cause == Cause::none || f == Cause::environment) r.cause = f;
      r.message = (r.message.empty() ? "" : r.message + "; ") + e.what();
      spdlog::warn("trial {}: {} (the trial stays {})", key_, e.what(), status_name(r.status));
    }
  }

  void fail(Result& r, const std::exception& e, const EngineFactory& factory) {
    r.cause = cause_of(e);
    if (dynamic_cast<const Error*>(&e) || r.cause == Cause::environment) {
      r.status = Status::failed;
      r.message = e.what();
      return;
    }
    const Fault f = factory.classify(e);
    r.status = f.out_of_memory ? Status::oom : Status::failed;
    r.message = f.message;
  }

  void setup(Result& r, const EngineFactory& factory) {
    key_ = t_.key().str();
    schedule_ = LearningRateSchedule::of(t_);
    const auto t0 = Clock::now();
    agreed("set up its engine", [&] { engine_ = factory.make(EngineContext{t_, d_, env_, g_, key_}); });
    r.threads = engine_->threads();
    r.device = engine_->device();
    engine_->prepare();
    r.parameters = engine_->parameters();
    r.feature_dim = engine_->feature_dim();
    if (engine_->scales_loss()) loss_scale_ = LossScale::fp16();

    // Data: the train stream is the trial's; validation and test are sharded across the group for evaluation.
    data::TransformSettings train_tf;
    train_tf.size = t_.input_size;
    train_tf.crop_pct = t_.crop_pct;
    for (int c = 0; c < 3; ++c) train_tf.mean[c] = static_cast<float>(t_.mean[c]), train_tf.std[c] = static_cast<float>(t_.std[c]);
    train_tf.bgr_quirk = t_.bgr_quirk;
    train_tf.seed = static_cast<uint64_t>(t_.seed);
    data::TransformSettings eval_tf = train_tf;
    train_tf.train = !env_.deterministic_input;
    train_tf.flips = t_.flips;
    train_tf.augmentation = t_.augmentation;
    const int loader_threads = env_.loader_threads > 0 ? env_.loader_threads : std::max(1, engine_->threads() / 2);
    auto options = [&](bool train) {
      data::LoaderOptions o;
      o.batch_size = t_.batch_size;
      o.rank = g_.rank();
      o.world = g_.size();
      o.shuffle = train && !env_.deterministic_input;
      o.min_shard = train ? 2 : 0;
      o.seed = static_cast<uint64_t>(t_.seed);
      o.threads = loader_threads;
      o.prefetch = std::max(2, 2 * loader_threads);
      o.cache = !train;
      // Pinned host memory only for the training stream, whose copies overlap compute; evaluation copies are few.
      if (train) engine_->configure_loader(o);
      return o;
    };
    const auto train_idx = d_.indices(data::Split::train);
    if (train_idx.empty()) throw Error::input("dataset " + d_.name + " has no training samples");
    auto source = [&](const std::vector<int64_t>& idx, const data::TransformSettings& tf, bool train) {
      const auto o = options(train);
      std::unique_ptr<data::BatchSource> s = engine_->make_input(idx, tf, o);
      if (!s) s = std::make_unique<data::Loader>(d_, idx, tf, o);
      return s;
    };
    val_is_test_ = d_.validation == Validation::paper;
    agreed("open its data", [&] {
      train_loader_ = source(train_idx, train_tf, true);
      val_loader_ = source(d_.indices(data::Split::val), eval_tf, false);
      if (!val_is_test_) test_loader_ = source(d_.indices(data::Split::test), eval_tf, false);
    });
    micro_ = std::max(1, env_.micro_batches);
    if (!env_.step_log.empty() && g_.rank() == 0) step_log_.open(env_.step_log, std::ios::app);
    spdlog::debug("trial {}: model, optimizer and loaders ready in {:.3g} s", key_, seconds_since(t0));
  }

  // A per-rank part of the set-up, then the group's agreement on whether it failed anywhere: no rank goes on to a
  // collective call (the NCCL bootstrap, the next agreement) that a failed peer never makes.
  template <class F>
  void agreed(const char* what, F&& part) {
    std::exception_ptr failed;
    try {
      part();
    } catch (...) {
      failed = std::current_exception();
    }
    if (g_.any(failed != nullptr)) {
      if (failed) std::rethrow_exception(failed);
      throw Error(fmt::format("trial {}: a data-parallel peer failed to {} (its log says why)", key_, what));
    }
  }

  // ---- checkpoints -------------------------------------------------------------------------------------------
  void checkpoint(int epochs_done, int64_t next_batch) {
    // Every rank holds the same weights (all-reduced gradients, broadcast buffers): rank 0 writes.
    if (g_.rank() == 0) {
      Checkpoint c;
      c.meta.trial_key = key_;
      c.meta.canonical = t_.canonical_text();
      c.meta.epochs_done = epochs_done;
      c.meta.next_batch = next_batch;
      c.meta.partial_loss_sum = loss_sum_;
      c.meta.partial_steps = steps_;
      c.meta.partial_images = images_;
      c.meta.partial_seconds = train_seconds_;
      c.meta.epochs = result_->epochs;
      c.meta.best_epoch = result_->best_epoch;
      c.meta.best_val = result_->best_val;
      c.meta.test_at_best = result_->test_at_best;
      c.meta.val = result_->val;
      c.meta.test = result_->test;
      c.meta.rng_state = engine_->random_state();
      c.meta.micro_batches = micro_;
      c.meta.loss_scale = loss_scale_.value();
      c.meta.loss_scale_good_steps = loss_scale_.good_steps();
      c.meta.first_loss = first_loss_;
      await_checkpoint();
      const auto t0 = Clock::now();
      // After the last epoch the weights are not needed: the trial is over, and a job that dies before its result
      // is recorded resumes from the result alone (the previous checkpoint, with weights, stays as the fallback).
      if (epochs_done < t_.epochs) c.tensors = engine_->save_state();
      const double serialise = seconds_since(t0);
      // The state is serialised here (the next step changes it); writing, fsync and rename go on in the background
      // while training continues. One write at a time; the trial waits for it before it writes the next, removes
      // checkpoints or returns its result.
      pending_write_ = std::async(std::launch::async, [this, c = std::move(c), serialise] {
        const auto t1 = Clock::now();
        const std::string path = write_checkpoint(env_.checkpoint_dir, c);
        spdlog::debug("trial {}: checkpoint {} ({:.4g} MiB): {:.3g} s to serialise, {:.3g} s to write in the background",
                      key_, path, c.tensors.size() / 1048576.0, serialise, seconds_since(t1));
      });
    }
    g_.barrier();
  }

  // Waits for the checkpoint being written in the background; its failure (disk full, …) is thrown here.
  void await_checkpoint() {
    if (pending_write_.valid()) pending_write_.get();
  }

  void resume() {
    auto c = load_latest_checkpoint(env_.checkpoint_dir, key_, t_.canonical_text());
    if (!c) return;
    if (!c->tensors.empty()) engine_->load_state(c->tensors);
    else if (c->meta.epochs_done < t_.epochs)
      throw Error(fmt::format("{}: a checkpoint without weights before the last epoch ({} of {}); remove it to resume "
                              "from the one before", c->path, c->meta.epochs_done, t_.epochs));
    const auto& m = c->meta;
    start_epoch_ = m.epochs_done;
    start_batch_ = m.next_batch;
    loss_sum_ = m.partial_loss_sum;
    steps_ = m.partial_steps;
    images_ = m.partial_images;
    train_seconds_ = m.partial_seconds;
    result_->epochs = m.epochs;
    result_->best_epoch = m.best_epoch;
    result_->best_val = m.best_val;
    result_->test_at_best = m.test_at_best;
    result_->val = m.val;
    result_->test = m.test;
    engine_->restore_random_state(m.rng_state);
    micro_ = m.micro_batches;
    loss_scale_.restore(m.loss_scale, m.loss_scale_good_steps);
    first_loss_ = m.first_loss;
    result_->resumed_from_epoch = start_epoch_;
    spdlog::info("trial {}: resuming from {} (epoch {}, batch {})", key_, c->path, start_epoch_, start_batch_);
  }

  Evaluation evaluate(data::BatchSource& loader, int epoch) {
    loader.start_epoch(epoch);
    Ticking ticking(loader, env_.progress);
    return evaluate_split(engine_->forward_split(ticking), d_, t_.metric, g_);
  }

  // A split's batches for evaluation, each counted as progress.
  class Ticking final : public data::BatchSource {
   public:
    Ticking(data::BatchSource& inner, std::atomic<int64_t>* progress) : inner_(inner), progress_(progress) {}
    int64_t size() const override { return inner_.size(); }
    int64_t batches_per_epoch() const override { return inner_.batches_per_epoch(); }
    void start_epoch(int epoch, int64_t first_batch) override { inner_.start_epoch(epoch, first_batch); }
    std::shared_ptr<const data::Batch> next() override {
      if (progress_) ++*progress_;
      return inner_.next();
    }
    std::vector<data::Problem> problems() const override { return inner_.problems(); }
    data::EpochTally epoch_tally() const override { return inner_.epoch_tally(); }

   private:
    data::BatchSource& inner_;
    std::atomic<int64_t>* progress_;
  };

  // ---- the loop ---------------------------------------------------------------------------------------------
  void loop(Result& r) {
    result_ = &r;
    r.status = Status::done;
    resume();
    const int64_t spe = train_loader_->batches_per_epoch();
    const bool higher = higher_is_better(t_.metric);
    for (int epoch = start_epoch_; epoch < t_.epochs; ++epoch) {
      const int64_t first = epoch == start_epoch_ ? start_batch_ : 0;
      if (first == 0) loss_sum_ = 0, steps_ = 0, images_ = 0, train_seconds_ = 0, wait_seconds_ = 0;
      train_loader_->start_epoch(epoch, first);
      for (int64_t step = first;; ++step) {
        if (g_.any(env_.stop && env_.stop->load())) {
          checkpoint(epoch, step);
          r.status = Status::interrupted;
          r.message = fmt::format("stopped at epoch {} batch {} (checkpointed)", epoch, step);
          return;
        }
        const auto t0 = Clock::now();
        std::shared_ptr<const data::Batch> b;
        std::string err;
        try {
          b = train_loader_->next();
        } catch (const std::exception& e) {
          err = e.what();
        }
        wait_seconds_ += seconds_since(t0);
        if (g_.any(!err.empty())) throw Error(err.empty() ? "a data-parallel peer failed to load its batch" : err);
        if (g_.any(!b)) break;
        if (!g_.any(b->n > 0)) continue;  // every sample of the batch undecodable (in /problems): no step
        const double lr = learning_rate(schedule_, epoch, step, spe);
        StepAttempt a;
        engine_->begin_step(lr);
        const bool fits = retry_out_of_memory(
            micro_, b->n, env_.oom_retry,
            [&](int micro) {
              a = engine_->forward_backward(*b, micro, loss_scale_.value());
              if (g_.any(!a.failure.empty())) {
                engine_->abandon_step();
                throw Error(a.failure.empty() ? "a data-parallel peer failed" : a.failure);
              }
              return a.out_of_memory;
            },
            [&](bool flag) { return g_.any(flag); },
            [&](int micro) {
              r.micro_batches = micro;
              engine_->release_cached_memory();
              spdlog::warn("trial {}: out of memory; retrying with {} micro-batches (gradient accumulation keeps the "
                           "effective batch at {})", key_, micro, t_.batch_size);
            });
        if (!fits) {
          engine_->abandon_step();
          r.status = Status::oom;
          r.message = fmt::format("out of memory at epoch {} step {} with {} micro-batch(es) of the {}-sample batch",
                                  epoch, step, micro_, t_.batch_size);
          finish_early();
          return;
        }
        engine_->exchange_gradients();
        double global_loss = a.loss;
        g_.allreduce_sum(&global_loss, 1);
        if (loss_scale_.enabled()) {  // fp16: unscale; an overflow on any rank skips the step
          const bool overflow = g_.any(!engine_->unscale_gradients(loss_scale_.value()));
          if (!loss_scale_.update(overflow)) continue;
        }
        if (first_loss_ == 0 && std::isfinite(global_loss)) first_loss_ = global_loss;
        if (diverged(global_loss, first_loss_)) {
          r.status = Status::diverged;
          r.message = std::isfinite(global_loss)
                          ? fmt::format("loss is {:.4g} at epoch {} step {} (lr {:.3g}), over {}x the first step's "
                                        "{:.4g}; kept the last good epoch",
                                        global_loss, epoch, step, lr, kDivergenceFactor, first_loss_)
                          : fmt::format("loss is {} at epoch {} step {} (lr {:.3g}); kept the last good epoch",
                                        global_loss, epoch, step, lr);
          finish_early();
          return;
        }
        engine_->apply_step(lr);
        if (env_.progress) ++*env_.progress;
        loss_sum_ += global_loss;
        ++steps_;
        images_ += b->global_n;
        train_seconds_ += seconds_since(t0);
        if (step_log_.is_open()) {
          step_log_ << epoch << "," << step << "," << fmt::format("{:.17g}", lr) << ","
                    << fmt::format("{:.17g}", global_loss) << ",";
          for (size_t i = 0; i < b->samples.size(); ++i) step_log_ << (i ? ";" : "") << d_.samples[b->samples[i]].id;
          step_log_ << "\n";
        }
      }
      // Every sample of the epoch undecodable: no step was taken, and a metric of the initial weights would pass
      // for a result. The data or the spec must change: an input fault.
      if (auto m = unusable(*train_loader_, "training")) throw Error::input("dataset " + d_.name + ": " + *m);
      // Epoch end: buffers from rank 0, then validation and test.
      engine_->sync_buffers();
      const auto e0 = Clock::now();
      Evaluation val = evaluate(*val_loader_, epoch);
      if (auto m = unusable(*val_loader_, "validation")) throw Error::input("dataset " + d_.name + ": " + *m);
      Evaluation test;
      if (!val_is_test_) {
        test = evaluate(*test_loader_, epoch);
        if (auto m = unusable(*test_loader_, "test")) throw Error::input("dataset " + d_.name + ": " + *m);
      }
      EpochRecord rec;
      rec.epoch = epoch;
      rec.lr = learning_rate(schedule_, epoch, 0, spe);
      rec.train_loss = steps_ > 0 ? loss_sum_ / steps_ : kNaN;
      rec.val_metric = val.metric;
      rec.val_loss = val.loss;
      rec.test_metric = val_is_test_ ? val.metric : test.metric;
      rec.train_seconds = train_seconds_;
      rec.eval_seconds = seconds_since(e0);
      rec.images_per_second = train_seconds_ > 0 ? images_ / train_seconds_ : 0;
      rec.peak_memory_bytes = engine_->peak_memory_bytes();
      rec.note = val.note.empty() ? test.note : val.note;
      if (g_.rank() == 0) {
        const bool better = std::isfinite(val.metric) &&
                            (r.best_epoch < 0 || !std::isfinite(r.best_val) ||
                             (higher ? val.metric > r.best_val : val.metric < r.best_val));
        if (better) {
          r.best_epoch = epoch;
          r.best_val = val.metric;
          r.test_at_best = rec.test_metric;
          r.val = std::move(val.pred);
          r.test = std::move(test.pred);
          if (env_.keep_best_model) save_best();
          if (!env_.export_backbone.empty()) save_best_backbone();
        }
        r.epochs.push_back(rec);
        if (env_.on_epoch) env_.on_epoch(rec);
      } else {
        r.epochs.push_back(rec);
      }
      spdlog::debug("trial {} epoch {}: training {:.3g} s, of which {:.3g} s waiting for the loader; evaluation {:.3g} s",
                    key_, epoch + 1, rec.train_seconds, wait_seconds_, rec.eval_seconds);
      loss_sum_ = 0, steps_ = 0, images_ = 0, train_seconds_ = 0, wait_seconds_ = 0;
      checkpoint(epoch + 1, 0);
      // Time limit: do not start an epoch that cannot finish before the deadline.
      const double epoch_seconds = rec.train_seconds + rec.eval_seconds;
      const bool out_of_time = env_.deadline && epoch + 1 < t_.epochs &&
                               Clock::now() + std::chrono::duration<double>(1.1 * epoch_seconds) > *env_.deadline;
      if (g_.any(out_of_time)) {
        r.status = Status::interrupted;
        r.message = fmt::format("time limit: stopped after epoch {} (checkpointed)", epoch);
        return;
      }
    }
    if (r.status == Status::done && !env_.export_backbone.empty() && g_.rank() == 0) export_backbone();
    if (r.status == Status::done && env_.remove_checkpoints) {
      settle_checkpoint(r);
      remove_own_checkpoints();
    }
  }

  // A diverged or out-of-memory trial is over. Under the sweep its checkpoints stay until the result is recorded
  // (a job that dies in between finds them and recomputes at most one epoch, deterministically).
  void finish_early() {
    settle_checkpoint(*result_);
    if (env_.remove_checkpoints) remove_own_checkpoints();
  }

  // Group rank 0 writes the checkpoints (checkpoint()), so it alone removes them: another rank removing the folder
  // while rank 0's background writer still fills it failed the trial on rank 0 (seen under load with two ranks).
  void remove_own_checkpoints() {
    if (g_.rank() == 0) remove_checkpoints(env_.checkpoint_dir, env_.keep_best_model);
  }

  // The loader's tally of this epoch summed over the group: a message when not one of its samples decoded. When only
  // some did not, the trial goes on over the others, and the log says so once per split (they are in /problems).
  std::optional<std::string> unusable(const data::BatchSource& l, const std::string& split) {
    data::EpochTally t = l.epoch_tally();
    double c[3] = {static_cast<double>(t.samples), static_cast<double>(t.usable), static_cast<double>(t.skipped)};
    g_.allreduce_sum(c, 3);
    t.samples = static_cast<int64_t>(c[0]), t.usable = static_cast<int64_t>(c[1]), t.skipped = static_cast<int64_t>(c[2]);
    if (t.skipped > 0 && t.usable > 0 && g_.rank() == 0 && warned_splits_.insert(split).second)
      spdlog::warn("dataset {}: {} of {} {} samples undecodable and skipped{}; its {} metric is over the other {} "
                   "(the results file's /problems lists them)",
                   d_.name, t.skipped, t.samples, split, t.first_skipped.empty() ? "" : " (first: " + t.first_skipped + ")",
                   split, t.usable);
    return data::no_usable_samples(t, split);
  }
  std::set<std::string> warned_splits_;

  void save_best() {
    std::filesystem::create_directories(env_.checkpoint_dir);
    const std::string path = env_.checkpoint_dir + "/best.pt";
    engine_->save_model(path + ".tmp");
    std::filesystem::rename(path + ".tmp", path);
  }

  void save_best_backbone() {
    std::filesystem::create_directories(env_.checkpoint_dir);
    const std::string path = env_.checkpoint_dir + "/best_backbone.pt";
    engine_->save_backbone(path + ".tmp");
    std::filesystem::rename(path + ".tmp", path);
  }

  // The best epoch's backbone to its export path. Copied, not moved: a job that dies before the result is recorded
  // resumes from the result-only checkpoint and exports again from the same file.
  void export_backbone() {
    namespace fs = std::filesystem;
    const fs::path best = fs::path(env_.checkpoint_dir) / "best_backbone.pt", out(env_.export_backbone);
    if (!fs::exists(best)) {
      if (fs::exists(out)) return;  // exported by the run that finished it
      throw Error(fmt::format("{}: the best epoch's backbone is missing; the trial cannot export it to {}",
                              best.string(), out.string()));
    }
    fs::create_directories(out.parent_path());
    fs::copy_file(best, out.string() + ".tmp", fs::copy_options::overwrite_existing);
    fs::rename(out.string() + ".tmp", out);
  }

  const grid::TrialConfig& t_;
  const data::Dataset& d_;
  const Environment& env_;
  Group& g_;
  std::string key_;
  LearningRateSchedule schedule_;
  std::unique_ptr<Engine> engine_;
  LossScale loss_scale_;
  double first_loss_ = 0;
  std::unique_ptr<data::BatchSource> train_loader_, val_loader_, test_loader_;
  bool val_is_test_ = false;
  int micro_ = 1;
  int start_epoch_ = 0;
  int64_t start_batch_ = 0;
  double loss_sum_ = 0, train_seconds_ = 0, wait_seconds_ = 0;
  std::future<void> pending_write_;
  int64_t steps_ = 0, images_ = 0;
  Result* result_ = nullptr;
  std::ofstream step_log_;
};

}  // namespace

Result run_epochs(const grid::TrialConfig& t, const data::Dataset& d, const Environment& env, Group& group,
                  const EngineFactory& factory) {
  EpochLoop loop(t, d, env, group);
  return loop.run(factory);
}

}  // namespace xfer::train
