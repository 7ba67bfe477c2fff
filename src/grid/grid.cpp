#include "xfer/grid/grid.hpp"

#include <charconv>
#include <limits>
#include <cmath>
#include <map>
#include <optional>
#include <unordered_map>

#include <fmt/format.h>

#include "xfer/core/digest.hpp"
#include "xfer/core/error.hpp"
#include "xfer/spec/catalog.hpp"
#include "xfer/spec/dataset_kind.hpp"

namespace xfer::grid {

namespace {

// Shortest round-trip decimal form, as the C++ standard specifies std::to_chars: identical on every conforming
// platform, so keys computed on a laptop and on a cluster agree.
std::string num(double v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

class Canon {
 public:
  explicit Canon(bool header = true) {
    text_.reserve(512);
    if (header) text_ = "xfer.trial.v1\n";
  }
  Canon& add(const char* k, const std::string& v) {
    text_ += k;
    text_ += '=';
    text_ += v;
    text_ += '\n';
    return *this;
  }
  Canon& add(const char* k, double v) { return add(k, num(v)); }
  Canon& add_int(const char* k, int64_t v) { return add(k, std::to_string(v)); }
  Canon& add_bool(const char* k, bool v) { return add(k, v ? std::string("true") : std::string("false")); }
  std::string str() const { return text_; }

 private:
  std::string text_;
};

}  // namespace

// The canonical text in three parts: what a (model, dataset) cell fixes, the recipe, and the cell's tail. The
// expansion caches the cell parts; the text is the same as if written at once.
std::string TrialConfig::canonical_head() const {
  Canon c;
  c.add("model", model).add("weights", weights).add_int("input_size", input_size).add("crop_pct", crop_pct);
  c.add("mean", num(mean[0]) + "," + num(mean[1]) + "," + num(mean[2]));
  c.add("std", num(std[0]) + "," + num(std[1]) + "," + num(std[2]));
  c.add("dataset", dataset).add("kind", kind).add("metric", name_str(metric)).add("flips", name_str(flips));
  c.add_bool("bgr_quirk", bgr_quirk).add("validation", name_str(validation));
  // The kind's registry entry says which split fields it keys (an unknown kind keys them all).
  const spec::DatasetKind* k = spec::find_dataset_kind(kind);
  if (validation != Validation::fixed) {
    if (!k || k->keys_heldout_fraction) c.add("heldout_fraction", heldout_fraction);
    c.add_int("heldout_seed", heldout_seed);
  }
  if (validation == Validation::holdout) c.add("val_fraction", val_fraction).add_int("val_seed", val_seed);
  if (pretraining) c.add("stage", "upstream");
  if (!upstream.empty()) c.add("upstream", upstream);
  if (limit_train > 0) c.add_int("limit_train", limit_train);
  if (limit_test > 0) c.add_int("limit_test", limit_test);
  if (k)
    for (const auto& s : k->settings) {
      const std::string text = kind_setting_text(s.key);
      if (s.keyed == spec::KindSetting::Keyed::always || text != s.default_text) c.add(s.key.c_str(), text);
    }
  return c.str();
}

std::string TrialConfig::kind_setting_text(const std::string& key) const {
  if (key == "manifest") return manifest;
  if (key == "split_file") return split_file;
  if (key == "classes") return classes;
  if (key == "melanoma_2019") return melanoma_2019 ? "true" : "false";
  throw Error(fmt::format("dataset kind \"{}\": setting '{}' has no TrialConfig field (add one in grid.hpp)", kind, key));
}

std::string TrialConfig::canonical_recipe() const {
  Canon c(false);
  c.add("optimizer", name_str(optimizer)).add("lr", lr).add("weight_decay", weight_decay).add("wd_mode", name_str(wd_mode));
  if (optimizer == Optimizer::sgd) c.add("momentum", momentum).add_bool("nesterov", nesterov);
  if (optimizer == Optimizer::adamw) c.add("beta1", beta1).add("beta2", beta2).add("eps", eps);
  c.add("schedule", name_str(schedule));
  if (schedule == Schedule::step) {
    std::string ms;
    for (size_t i = 0; i < step_milestones.size(); ++i) ms += (i ? "," : "") + std::to_string(step_milestones[i]);
    c.add("step_milestones", ms).add("step_gamma", step_gamma);
  }
  if (warmup_epochs > 0) c.add_int("warmup_epochs", warmup_epochs);
  if (label_smoothing > 0) c.add("label_smoothing", label_smoothing);
  c.add("augmentation", name_str(augmentation)).add_int("seed", seed);
  return c.str();
}

std::string TrialConfig::canonical_tail() const {
  Canon c(false);
  c.add_int("epochs", epochs).add_int("batch_size", batch_size).add("precision", name_str(precision));
  return c.str();
}

std::string TrialConfig::canonical_text() const { return canonical_head() + canonical_recipe() + canonical_tail(); }

TrialKey TrialConfig::key() const { return TrialKey(sha256_hex(canonical_text()).substr(0, TrialKey::kHexDigits)); }

namespace {
TrialKey key_of(const std::string& text) { return TrialKey(sha256_hex(text).substr(0, TrialKey::kHexDigits)); }
}  // namespace

namespace {

// The dataset's part of a trial's configuration, for fine-tuning and pre-training trials alike (the metric aside).
void take_dataset(TrialConfig& t, const spec::Spec& spec, const spec::DatasetSpec& d) {
  t.dataset = d.name;
  t.kind = d.kind;
  t.flips = parse<Flips>(d.flips, d.where.str());
  t.bgr_quirk = d.bgr_quirk;
  t.validation = spec.validation_mode(d);
  t.heldout_fraction = d.heldout_fraction;
  t.heldout_seed = spec.heldout_seed_of(d);
  t.val_fraction = d.val_fraction;
  t.val_seed = spec.val_seed_of(d);
  t.limit_train = d.limit_train;
  t.limit_test = d.limit_test;
  t.melanoma_2019 = d.melanoma_2019;
  t.manifest = d.manifest;
  t.split_file = d.split_file;
  t.classes = d.classes;
}

// What one (model, dataset) cell fixes, resolved once: the recipe's axes are then filled in per trial.
struct CellBase {
  TrialConfig base;  // everything but the recipe's axes (lr, weight decay, optimizer entry, augmentation, seed)
  std::string head, tail;
};

CellBase resolve_cell(const spec::Spec& spec, size_t mi, size_t di) {
  const auto& g = spec.grid;
  const auto& m = spec.models[mi];
  const auto& d = spec.datasets[di];
  // Resolution order: grid default < dataset < model's fixed size < matching overrides (last wins).
  int input_size = d.input_size > 0 ? d.input_size : g.input_size;
  if (m.input_size > 0) input_size = m.input_size;
  int batch_size = g.batch_size, epochs = g.epochs;
  int ranks = m.ranks_per_trial > 0 ? m.ranks_per_trial : g.ranks_per_trial;
  std::string precision = g.precision;  // the spec's words, parsed once per cell below
  for (const auto& o : spec.overrides) {
    if (!spec::glob_match(o.model, m.name) || !spec::glob_match(o.dataset, d.name)) continue;
    if (o.input_size) input_size = *o.input_size;
    if (o.batch_size) batch_size = *o.batch_size;
    if (o.epochs) epochs = *o.epochs;
    if (o.ranks_per_trial) ranks = *o.ranks_per_trial;
    if (o.precision) precision = *o.precision;
  }
  if (batch_size < ranks)
    throw Error::input(fmt::format("{}: model \"{}\" on dataset \"{}\": batch_size {} is smaller than its group of "
                                   "{} ranks; every rank needs at least one sample per step",
                                   spec.path, m.name, d.name, batch_size, ranks));
  // The spec reader has checked every word against its vocabulary; parse them once per cell.
  CellBase c;
  TrialConfig& t = c.base;
  t.model = m.name;
  t.weights = m.weights;
  t.input_size = input_size;
  t.crop_pct = m.crop_pct;
  t.mean = m.mean;
  t.std = m.std;
  take_dataset(t, spec, d);
  t.metric = parse<Metric>(d.metric, d.where.str());
  t.schedule = parse<Schedule>(g.schedule, "grid.schedule");
  t.step_milestones = g.step_milestones;
  t.step_gamma = g.step_gamma;
  t.warmup_epochs = g.warmup_epochs;
  t.label_smoothing = g.label_smoothing;
  t.epochs = epochs;
  t.batch_size = batch_size;
  t.precision = parse<Precision>(precision, "precision");
  t.ranks_per_trial = ranks;
  t.upstream = m.upstream_key;
  c.head = t.canonical_head();
  c.tail = t.canonical_tail();
  return c;
}

std::vector<Augmentation> augmentations_of(const spec::Spec& spec) {
  std::vector<Augmentation> out;
  for (const auto& a : spec.grid.augmentations) out.push_back(parse<Augmentation>(a, "grid.augmentations"));
  return out;
}

// The recipe's axes on a cell's base.
void set_recipe(TrialConfig& t, const spec::OptimizerSpec& opt, Optimizer family, WdMode wd_mode, double lr, double wd,
                Augmentation aug, int64_t seed) {
  t.optimizer = family;
  t.lr = lr;
  t.weight_decay = wd;
  t.wd_mode = wd_mode;
  t.momentum = opt.momentum;
  t.nesterov = opt.nesterov;
  t.beta1 = opt.beta1;
  t.beta2 = opt.beta2;
  t.eps = opt.eps;
  t.augmentation = aug;
  t.seed = seed;
}

const std::vector<double>& weight_decays_of(const spec::Spec& spec, const spec::OptimizerSpec& opt) {
  return opt.weight_decays.empty() ? spec.grid.weight_decays : opt.weight_decays;
}

uint64_t saturating_mul(uint64_t a, uint64_t b) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) return std::numeric_limits<uint64_t>::max();
  return a * b;
}
uint64_t saturating_add(uint64_t a, uint64_t b) {
  return b > std::numeric_limits<uint64_t>::max() - a ? std::numeric_limits<uint64_t>::max() : a + b;
}

// Visits the trials of one cell in expansion order (optimizer entries × lrs × weight decays × augmentations × seeds).
template <class Fn>
void cell_trials(const spec::Spec& spec, const CellBase& cell, const std::vector<Augmentation>& augmentations, Fn&& fn) {
  TrialConfig t = cell.base;
  for (const auto& opt : spec.grid.optimizers) {
    const Optimizer family = parse<Optimizer>(opt.family, opt.where.str());
    const WdMode wd_mode = parse<WdMode>(opt.wd_mode, opt.where.str());
    for (double lr : opt.lrs)
      for (double wd : weight_decays_of(spec, opt))
        for (const Augmentation aug : augmentations)
          for (int64_t seed : spec.grid.seeds) {
            set_recipe(t, opt, family, wd_mode, lr, wd, aug, seed);
            fn(t, opt);
          }
  }
}

}  // namespace

// ---- the upstream stage ----------------------------------------------------------------------------------------

std::vector<size_t> downstream_datasets(const spec::Spec& spec) {
  std::vector<size_t> out;
  for (size_t i = 0; i < spec.datasets.size(); ++i)
    if (!spec.datasets[i].upstream_only) out.push_back(i);
  return out;
}

uint64_t count_upstream_trials(const spec::Spec& spec) {
  uint64_t n = 0;
  for (const auto& u : spec.upstreams)
    n = saturating_add(n, saturating_mul(u.models.size(),
                                         saturating_mul(saturating_mul(u.lrs.size(), u.weight_decays.size()),
                                                        saturating_mul(saturating_mul(u.augmentations.size(),
                                                                                      u.epochs.size()),
                                                                       u.seeds.size()))));
  return n;
}

namespace {

size_t index_of_model(const spec::Spec& spec, const std::string& name, const spec::Location& where) {
  for (size_t i = 0; i < spec.models.size(); ++i)
    if (spec.models[i].name == name) return i;
  throw Error::input(where.str() + ": model \"" + name + "\" is not in the spec");
}

size_t index_of_dataset(const spec::Spec& spec, const std::string& name, const spec::Location& where) {
  for (size_t i = 0; i < spec.datasets.size(); ++i)
    if (spec.datasets[i].name == name) return i;
  throw Error::input(where.str() + ": dataset \"" + name + "\" is not in the spec");
}

// A pre-trained model's name: the architecture, '+', the stage, and the recipe's values on axes that vary.
std::string upstream_model_name(const spec::UpstreamSpec& u, const TrialConfig& t, const std::string& key) {
  std::string n = t.model + "+" + u.name;
  if (u.lrs.size() > 1) n += "-lr" + num(t.lr);
  if (u.weight_decays.size() > 1) n += "-wd" + num(t.weight_decay);
  if (u.augmentations.size() > 1 || t.augmentation != Augmentation::none) n += "-" + name_str(t.augmentation);
  if (u.epochs.size() > 1) n += "-e" + std::to_string(t.epochs);
  if (u.seeds.size() > 1) n += "-s" + std::to_string(t.seed);
  return n.size() <= 100 ? n : t.model.substr(0, 60) + "+" + key;
}

}  // namespace

std::vector<Trial> upstream_trials(const spec::Spec& spec) {
  std::vector<Trial> out;
  for (const auto& u : spec.upstreams) {
    const size_t di = index_of_dataset(spec, u.dataset, u.where);
    const auto& d = spec.datasets[di];
    const Optimizer family = parse<Optimizer>(u.optimizer, u.where.str());
    spec::OptimizerSpec opt;  // the family's defaults (betas, momentum)
    const WdMode wd_mode = family == Optimizer::adamw ? WdMode::over_lr : WdMode::plain;
    for (const auto& mname : u.models) {
      const size_t mi = index_of_model(spec, mname, u.where);
      const auto& m = spec.models[mi];
      TrialConfig t;
      t.pretraining = true;
      t.model = m.name;
      t.weights = m.weights;
      t.input_size = m.input_size > 0 ? m.input_size : u.input_size > 0 ? u.input_size
                                                     : d.input_size > 0 ? d.input_size
                                                                        : spec.grid.input_size;
      t.crop_pct = m.crop_pct;
      t.mean = m.mean;
      t.std = m.std;
      take_dataset(t, spec, d);
      t.metric = Metric::accuracy;  // upstream top-1: the x-axis
      t.schedule = Schedule::cosine;
      t.batch_size = u.batch_size;
      t.precision = parse<Precision>(spec.grid.precision, "grid.precision");
      t.ranks_per_trial = m.ranks_per_trial > 0 ? m.ranks_per_trial : spec.grid.ranks_per_trial;
      if (t.batch_size < t.ranks_per_trial)
        throw Error::input(fmt::format("{}: upstream stage \"{}\", model \"{}\": batch_size {} is smaller than its "
                                       "group of {} ranks", u.where.str(), u.name, m.name, t.batch_size,
                                       t.ranks_per_trial));
      for (double lr : u.lrs)
        for (double wd : u.weight_decays)
          for (const auto& aug : u.augmentations)
            for (int64_t epochs : u.epochs)
              for (int64_t seed : u.seeds) {
                set_recipe(t, opt, family, wd_mode, lr, wd, parse<Augmentation>(aug, u.where.str()), seed);
                t.epochs = static_cast<int>(epochs);
                Trial trial{t.key(), t, mi, di, out.size()};
                out.push_back(std::move(trial));
              }
    }
  }
  return out;
}

spec::Spec with_upstream(spec::Spec spec) {
  if (spec.upstream_models_added) return spec;
  const auto trials = upstream_trials(spec);
  size_t k = 0;
  for (const auto& u : spec.upstreams) {
    const size_t n = u.models.size() * u.lrs.size() * u.weight_decays.size() * u.augmentations.size() *
                     u.epochs.size() * u.seeds.size();
    for (size_t i = 0; i < n; ++i, ++k) {
      const Trial& t = trials[k];
      spec::ModelSpec m = spec.models[t.model_index];
      m.architecture = m.name;
      m.name = upstream_model_name(u, t.config, t.key.str());
      m.upstream_key = t.key.str();
      m.upstream_trial = static_cast<int64_t>(k);
      m.weights = "upstream:" + u.name + ":" + t.key.str();
      m.imagenet_top1 = std::numeric_limits<double>::quiet_NaN();  // measured upstream top-1 instead (analysis)
      m.backbone.raw = spec.study.upstream_dir.raw + "/" + t.key.str() + ".pt";
      m.backbone.unset_var = spec.study.upstream_dir.unset_var;
      m.backbone.path = spec.study.upstream_dir.resolved() ? spec.study.upstream_dir.path + "/" + t.key.str() + ".pt" : "";
      m.backbone.where = u.where;
      m.where = u.where;
      if (spec.find_model(m.name))
        throw Error::input(u.where.str() + ": the pre-trained model's name \"" + m.name +
                           "\" is already a model of this spec; rename the [[upstream]] stage");
      spec.models.push_back(std::move(m));
    }
  }
  spec.upstream_models_added = true;
  return spec;
}

namespace {
void require_upstream_models(const spec::Spec& spec) {
  if (!spec.upstreams.empty() && !spec.upstream_models_added)
    throw std::logic_error("grid: call grid::with_upstream(spec) before expanding a spec with [[upstream]] stages");
}
}  // namespace

uint64_t trials_per_cell(const spec::Spec& spec) {
  uint64_t per_cell = 0;
  for (const auto& opt : spec.grid.optimizers)
    per_cell = saturating_add(per_cell, saturating_mul(opt.lrs.size(), weight_decays_of(spec, opt).size()));
  return saturating_mul(saturating_mul(per_cell, spec.grid.augmentations.size()), spec.grid.seeds.size());
}

uint64_t count_trials(const spec::Spec& spec) {
  return saturating_add(count_upstream_trials(spec),
                        saturating_mul(trials_per_cell(spec), saturating_mul(spec.models.size(),
                                                                             downstream_datasets(spec).size())));
}

void check_trial_count(const spec::Spec& spec) {
  const uint64_t n = count_trials(spec);
  if (n <= kMaxTrials) return;
  const std::string count = n == std::numeric_limits<uint64_t>::max() ? "more than 18446744073709551615"
                                                                        : std::to_string(n);
  throw Error::input(fmt::format(
      "{}: the grid has {} trials ({} models × {} datasets × {} per model and dataset); xfer handles at most {} "
      "trials per spec (each is held in memory and gets a row in /trials) — narrow the grid or split the study",
      spec.path, count, spec.models.size(), downstream_datasets(spec).size(), trials_per_cell(spec), kMaxTrials));
}

std::vector<PlannedCell> plan_cells(const spec::Spec& spec) {
  check_trial_count(spec);
  require_upstream_models(spec);
  std::vector<PlannedCell> out;
  // The upstream stage's trials first, one cell each (their epochs differ, so do their costs).
  const auto up = upstream_trials(spec);
  for (const auto& t : up) {
    PlannedCell p;
    p.model_index = t.model_index;
    p.dataset_index = t.dataset_index;
    p.trials = 1;
    p.first = t;
    out.push_back(std::move(p));
  }
  const size_t n_up = up.size(), n_up_cells = out.size();
  if (spec.models.empty() || spec.datasets.empty() || trials_per_cell(spec) == 0) return out;
  const auto augmentations = augmentations_of(spec);
  const uint64_t per_cell = trials_per_cell(spec);
  for (size_t mi = 0; mi < spec.models.size(); ++mi)
    for (size_t di : downstream_datasets(spec)) {
      CellBase cell = resolve_cell(spec, mi, di);
      if (out.size() == n_up_cells) {
        // Two grid points that resolve to the same trial: the recipe does not depend on the cell and every axis's
        // values are distinct (the spec reader checks), so it is enough to compare the optimizer entries' lr × weight
        // decay recipes at the first augmentation and seed, in the first cell — what expand() would meet first.
        std::unordered_map<std::string, std::pair<TrialConfig, const spec::OptimizerSpec*>> seen;
        TrialConfig t = cell.base;
        for (const auto& opt : spec.grid.optimizers) {
          const Optimizer family = parse<Optimizer>(opt.family, opt.where.str());
          const WdMode wd_mode = parse<WdMode>(opt.wd_mode, opt.where.str());
          for (double lr : opt.lrs)
            for (double wd : weight_decays_of(spec, opt)) {
              set_recipe(t, opt, family, wd_mode, lr, wd, augmentations.front(), spec.grid.seeds.front());
              auto [it, fresh] = seen.emplace(t.canonical_recipe(), std::make_pair(t, &opt));
              if (!fresh) {
                const auto& first = it->second.first;
                throw Error::input(fmt::format(
                    "{}: two grid points resolve to the same trial (model {}, dataset {}, {} lr={} wd={}, "
                    "augmentation {}, seed {}): check [[grid.optimizer]] entries ({} and {}) for duplicates",
                    spec.path, first.model, first.dataset, name(first.optimizer), num(first.lr),
                    num(first.weight_decay), name(first.augmentation), first.seed, it->second.second->where.str(),
                    opt.where.str()));
              }
            }
        }
      }
      PlannedCell p;
      p.model_index = mi;
      p.dataset_index = di;
      p.trials = per_cell;
      p.first.model_index = mi;
      p.first.dataset_index = di;
      p.first.order = n_up + (out.size() - n_up_cells) * per_cell;
      p.first.upstream_index = spec.models[mi].upstream_trial;
      p.first.config = cell.base;
      const auto& opt = spec.grid.optimizers.front();
      set_recipe(p.first.config, opt, parse<Optimizer>(opt.family, opt.where.str()),
                 parse<WdMode>(opt.wd_mode, opt.where.str()), opt.lrs.front(), weight_decays_of(spec, opt).front(),
                 augmentations.front(), spec.grid.seeds.front());
      p.first.key = key_of(cell.head + p.first.config.canonical_recipe() + cell.tail);
      out.push_back(std::move(p));
    }
  return out;
}

void for_each_trial(const spec::Spec& spec, const std::function<void(const Trial&)>& fn) {
  check_trial_count(spec);
  require_upstream_models(spec);
  Trial trial;
  for (const auto& t : upstream_trials(spec)) {
    fn(t);
    ++trial.order;
  }
  if (trials_per_cell(spec) == 0) return;
  const auto augmentations = augmentations_of(spec);
  for (size_t mi = 0; mi < spec.models.size(); ++mi)
    for (size_t di : downstream_datasets(spec)) {
      const CellBase cell = resolve_cell(spec, mi, di);
      trial.model_index = mi;
      trial.dataset_index = di;
      trial.upstream_index = spec.models[mi].upstream_trial;
      cell_trials(spec, cell, augmentations, [&](const TrialConfig& t, const spec::OptimizerSpec&) {
        trial.config = t;
        trial.key = key_of(cell.head + t.canonical_recipe() + cell.tail);
        fn(trial);
        ++trial.order;
      });
    }
}

std::vector<Trial> expand(const spec::Spec& spec) {
  check_trial_count(spec);
  require_upstream_models(spec);
  std::vector<Trial> out = upstream_trials(spec);
  out.reserve(count_trials(spec));
  std::unordered_map<std::string, std::pair<size_t, const spec::OptimizerSpec*>> seen;
  seen.reserve(out.capacity());
  for (const auto& t : out)
    if (!seen.emplace(t.key.str(), std::make_pair(t.order, nullptr)).second)
      throw Error::input(fmt::format("{}: two upstream trials resolve to the same key (model {} on {}): two "
                                     "[[upstream]] stages repeat the same recipe", spec.path, t.config.model,
                                     t.config.dataset));
  if (trials_per_cell(spec) == 0) return out;
  const auto augmentations = augmentations_of(spec);
  for (size_t mi = 0; mi < spec.models.size(); ++mi)
    for (size_t di : downstream_datasets(spec)) {
      const CellBase cell = resolve_cell(spec, mi, di);
      cell_trials(spec, cell, augmentations, [&](const TrialConfig& t, const spec::OptimizerSpec& opt) {
        Trial trial{key_of(cell.head + t.canonical_recipe() + cell.tail), t, mi, di, out.size(),
                    spec.models[mi].upstream_trial};
        if (auto [it, fresh] = seen.emplace(trial.key.str(), std::make_pair(out.size(), &opt)); !fresh) {
          const auto& first = out[it->second.first].config;
          throw Error::input(fmt::format(
              "{}: two grid points resolve to the same trial (model {}, dataset {}, {} lr={} wd={}, "
              "augmentation {}, seed {}): check [[grid.optimizer]] entries ({} and {}) for duplicates",
              spec.path, first.model, first.dataset, name(first.optimizer), num(first.lr),
              num(first.weight_decay), name(first.augmentation), first.seed,
              it->second.second ? it->second.second->where.str() : std::string("[[upstream]]"), opt.where.str()));
        }
        out.push_back(std::move(trial));
      });
    }
  return out;
}

double trial_cost_gflop(const TrialConfig& t, double gmacs_224, const DataSize& size) {
  const double scale = (t.input_size / 224.0) * (t.input_size / 224.0);
  const double fwd = 2.0 * gmacs_224 * scale;  // GFLOP per image
  const double eval_images = static_cast<double>(size.n_test) + (size.val_is_test ? 0.0 : size.n_val);
  return t.epochs * fwd * (3.0 * size.n_train + eval_images);
}

double trial_gpu_hours(const TrialConfig& t, double train_images_per_s, const DataSize& size) {
  if (train_images_per_s <= 0) return 0;
  const double eval_images = static_cast<double>(size.n_test) + (size.val_is_test ? 0.0 : size.n_val);
  return t.epochs * (size.n_train / train_images_per_s + eval_images / (3.0 * train_images_per_s)) / 3600.0;
}

DataSize catalog_size(const spec::Spec& spec, const spec::DatasetSpec& d) {
  DataSize s;
  const spec::DatasetKind* k = spec::find_dataset_kind(d.kind);
  const Validation validation = spec.validation_mode(d);
  if (k && k->n_train > 0) {
    s.n_train = k->n_train;
    s.n_val = k->n_val;
    s.n_test = k->n_test;
    s.source = "catalog";
    if (validation == Validation::holdout) {
      s.n_val = static_cast<int64_t>(std::floor(s.n_train * d.val_fraction));
      s.n_train -= s.n_val;
    } else if (validation == Validation::paper) {
      s.n_val = s.n_test;
      s.val_is_test = true;
    }
  } else {
    s.source = "unknown";
  }
  if (d.limit_train > 0 && (s.n_train == 0 || d.limit_train < s.n_train)) {
    s.n_train = d.limit_train;
    s.source = s.source == "unknown" ? "limits" : s.source;
  }
  if (d.limit_test > 0 && (s.n_test == 0 || d.limit_test < s.n_test)) {
    s.n_test = d.limit_test;
    if (s.val_is_test) s.n_val = s.n_test;
  }
  return s;
}

}  // namespace xfer::grid
