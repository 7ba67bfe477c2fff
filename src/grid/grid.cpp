#include "xfer/grid/grid.hpp"

#include <charconv>
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

std::vector<Trial> expand(const spec::Spec& spec) {
  std::vector<Trial> out;
  size_t per_cell = 0;
  for (const auto& opt : spec.grid.optimizers)
    per_cell += opt.lrs.size() * (opt.weight_decays.empty() ? spec.grid.weight_decays : opt.weight_decays).size();
  per_cell *= spec.grid.augmentations.size() * spec.grid.seeds.size();
  out.reserve(per_cell * spec.models.size() * spec.datasets.size());
  std::unordered_map<std::string, std::pair<size_t, const spec::OptimizerSpec*>> seen;
  seen.reserve(out.capacity());
  const auto& g = spec.grid;
  for (size_t mi = 0; mi < spec.models.size(); ++mi) {
    const auto& m = spec.models[mi];
    for (size_t di = 0; di < spec.datasets.size(); ++di) {
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
      std::string head, tail;  // this cell's canonical parts, from its first trial
      // The spec reader has checked every word against its vocabulary; parse them once per cell.
      const Metric metric = parse<Metric>(d.metric, d.where.str());
      const Flips flips = parse<Flips>(d.flips, d.where.str());
      const Validation validation = spec.validation_mode(d);
      const Schedule schedule = parse<Schedule>(g.schedule, "grid.schedule");
      const Precision cell_precision = parse<Precision>(precision, "precision");
      std::vector<Augmentation> augmentations;
      for (const auto& a : g.augmentations) augmentations.push_back(parse<Augmentation>(a, "grid.augmentations"));
      for (const auto& opt : g.optimizers) {
        const auto& wds = opt.weight_decays.empty() ? g.weight_decays : opt.weight_decays;
        const Optimizer family = parse<Optimizer>(opt.family, opt.where.str());
        const WdMode wd_mode = parse<WdMode>(opt.wd_mode, opt.where.str());
        for (double lr : opt.lrs)
          for (double wd : wds)
            for (const Augmentation aug : augmentations)
              for (int64_t seed : g.seeds) {
                TrialConfig t;
                t.model = m.name;
                t.weights = m.weights;
                t.input_size = input_size;
                t.crop_pct = m.crop_pct;
                t.mean = m.mean;
                t.std = m.std;
                t.dataset = d.name;
                t.kind = d.kind;
                t.metric = metric;
                t.flips = flips;
                t.bgr_quirk = d.bgr_quirk;
                t.validation = validation;
                t.heldout_fraction = d.heldout_fraction;
                t.heldout_seed = spec.heldout_seed_of(d);
                t.val_fraction = d.val_fraction;
                t.val_seed = spec.val_seed_of(d);
                t.limit_train = d.limit_train;
                t.limit_test = d.limit_test;
                t.melanoma_2019 = d.melanoma_2019;
                t.manifest = d.manifest;
                t.split_file = d.split_file;
                t.optimizer = family;
                t.lr = lr;
                t.weight_decay = wd;
                t.wd_mode = wd_mode;
                t.momentum = opt.momentum;
                t.nesterov = opt.nesterov;
                t.beta1 = opt.beta1;
                t.beta2 = opt.beta2;
                t.eps = opt.eps;
                t.schedule = schedule;
                t.step_milestones = g.step_milestones;
                t.step_gamma = g.step_gamma;
                t.warmup_epochs = g.warmup_epochs;
                t.label_smoothing = g.label_smoothing;
                t.augmentation = aug;
                t.seed = seed;
                t.epochs = epochs;
                t.batch_size = batch_size;
                t.precision = cell_precision;
                t.ranks_per_trial = ranks;
                if (head.empty()) head = t.canonical_head(), tail = t.canonical_tail();
                Trial trial{key_of(head + t.canonical_recipe() + tail), std::move(t), mi, di, out.size()};
                if (auto [it, fresh] = seen.emplace(trial.key.str(), std::make_pair(out.size(), &opt)); !fresh) {
                  const auto& first = out[it->second.first].config;
                  throw Error::input(fmt::format(
                      "{}: two grid points resolve to the same trial (model {}, dataset {}, {} lr={} wd={}, "
                      "augmentation {}, seed {}): check [[grid.optimizer]] entries ({} and {}) for duplicates",
                      spec.path, first.model, first.dataset, name(first.optimizer), num(first.lr),
                      num(first.weight_decay), name(first.augmentation), first.seed, it->second.second->where.str(), opt.where.str()));
                }
                out.push_back(std::move(trial));
              }
      }
    }
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
