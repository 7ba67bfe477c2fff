// The one config reader. The only translation unit that includes toml++.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <toml++/toml.h>

#include "xfer/core/error.hpp"
#include "xfer/spec/catalog.hpp"
#include "xfer/spec/dataset_kind.hpp"
#include "xfer/spec/spec.hpp"
#include "xfer/core/vocabulary.hpp"

namespace fs = std::filesystem;

namespace xfer::spec {

std::string Location::str() const {
  std::string s = file;
  if (line > 0) s += ":" + std::to_string(line);
  if (!key.empty()) s += ": key '" + key + "'";
  return s;
}

namespace {

const char* type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
    default: return "nothing";
  }
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string closest(const std::string& word, const std::vector<std::string>& options) {
  std::string best;
  size_t best_d = 3;  // suggest only close matches
  for (const auto& o : options) {
    const size_t d = edit_distance(word, o);
    if (d < best_d) best_d = d, best = o;
  }
  return best;
}

std::string one_of(const std::vector<std::string>& options) {
  std::string s;
  for (size_t i = 0; i < options.size(); ++i) s += (i ? ", " : "") + ("\"" + options[i] + "\"");
  return "one of " + s;
}

std::string show(const toml::node& n) {
  std::ostringstream os;
  if (n.is_table()) return "a table";
  if (auto* a = n.as_array()) os << toml::toml_formatter{*a}; else
  if (auto* s = n.as_string()) os << '"' << s->get() << '"'; else
  if (auto* i = n.as_integer()) os << i->get(); else
  if (auto* f = n.as_floating_point()) os << f->get(); else
  if (auto* b = n.as_boolean()) os << (b->get() ? "true" : "false"); else return type_name(n);
  std::string out = os.str();
  if (out.size() > 60) out = out.substr(0, 57) + "...";
  return std::string(type_name(n)) + " (" + out + ")";
}

// Reads one TOML table: every accessor checks the type, records the key as known and returns the value; finish()
// rejects keys nobody asked for. Errors name file:line, the dotted key and what was expected.
class TableReader {
 public:
  TableReader(const toml::table& t, std::string prefix, std::string file)
      : t_(t), prefix_(std::move(prefix)), file_(std::move(file)) {}

  std::string dotted(std::string_view key) const {
    return prefix_.empty() ? std::string(key) : prefix_ + "." + std::string(key);
  }
  int table_line() const { return static_cast<int>(t_.source().begin.line); }

  Location loc(std::string_view key) const {
    Location l{file_, table_line(), dotted(key)};
    if (auto it = t_.find(key); it != t_.end()) {
      if (it->second.source().begin.line > 0) l.line = static_cast<int>(it->second.source().begin.line);
      else if (it->first.source().begin.line > 0) l.line = static_cast<int>(it->first.source().begin.line);
    }
    return l;
  }
  Location here() const { return Location{file_, table_line(), prefix_}; }

  [[noreturn]] void fail(std::string_view key, const std::string& what) const {
    throw Error::input(loc(key).str() + ": " + what);
  }
  [[noreturn]] void fail_table(const std::string& what) const {
    const Location l = here();
    throw Error::input(l.file + (l.line > 0 ? ":" + std::to_string(l.line) : "") +
                       (prefix_.empty() ? "" : ": [" + prefix_ + "]") + ": " + what);
  }

  const toml::node* get(std::string_view key) {
    known_.emplace(key);
    if (auto it = t_.find(key); it != t_.end()) return &it->second;
    return nullptr;
  }
  bool has(std::string_view key) const { return t_.find(key) != t_.end(); }

  std::optional<std::string> str(std::string_view key) {
    const toml::node* n = get(key);
    if (!n) return std::nullopt;
    if (!n->is_string()) fail(key, "expected a string, got " + show(*n));
    return n->as_string()->get();
  }
  std::string str_req(std::string_view key, const std::string& expected) {
    auto v = str(key);
    if (!v) fail_missing(key, expected);
    if (v->empty()) fail(key, "expected " + expected + ", got an empty string");
    return *v;
  }
  std::string choice(std::string_view key, const std::vector<std::string>& options, const std::string& dflt) {
    auto v = str(key);
    if (!v) return dflt;
    if (std::find(options.begin(), options.end(), *v) == options.end()) {
      std::string hint = closest(*v, options);
      fail(key, "expected " + one_of(options) + ", got \"" + *v + "\"" +
                    (hint.empty() ? "" : " (did you mean \"" + hint + "\"?)"));
    }
    return *v;
  }
  std::optional<int64_t> integer(std::string_view key, int64_t min, int64_t max = INT64_MAX) {
    const toml::node* n = get(key);
    if (!n) return std::nullopt;
    if (!n->is_integer()) fail(key, "expected an integer, got " + show(*n));
    const int64_t v = n->as_integer()->get();
    check_range(key, static_cast<double>(v), static_cast<double>(min), static_cast<double>(max), true);
    return v;
  }
  int int_or(std::string_view key, int dflt, int min, int max = 1 << 30) {
    auto v = integer(key, min, max);
    return v ? static_cast<int>(*v) : dflt;
  }
  static bool is_number(const toml::node& n) { return n.is_integer() || n.is_floating_point(); }
  static double number_of(const toml::node& n) {
    return n.is_integer() ? static_cast<double>(n.as_integer()->get()) : n.as_floating_point()->get();
  }
  // Numbers must be finite and in [min, max] (or (min, max] when min_open).
  std::optional<double> number(std::string_view key, double min, double max, bool min_open = false) {
    const toml::node* n = get(key);
    if (!n) return std::nullopt;
    if (!is_number(*n)) fail(key, "expected a number, got " + show(*n));
    const double v = number_of(*n);
    check_range(key, v, min, max, !min_open);
    return v;
  }
  std::optional<bool> boolean(std::string_view key) {
    const toml::node* n = get(key);
    if (!n) return std::nullopt;
    if (!n->is_boolean()) fail(key, "expected true or false, got " + show(*n));
    return n->as_boolean()->get();
  }
  const toml::array* array(std::string_view key, const std::string& expected) {
    const toml::node* n = get(key);
    if (!n) return nullptr;
    if (!n->is_array()) fail(key, "expected " + expected + ", got " + show(*n));
    if (n->as_array()->empty()) fail(key, "expected " + expected + ", got an empty array (an empty axis has no trials)");
    return n->as_array();
  }
  std::optional<std::vector<double>> numbers(std::string_view key, double min, double max, bool min_open,
                                             const std::string& expected) {
    const toml::array* a = array(key, expected);
    if (!a) return std::nullopt;
    std::vector<double> out;
    for (const auto& e : *a) {
      if (!is_number(e)) fail(key, "expected " + expected + ", but an element is " + show(e));
      const double v = number_of(e);
      if (!std::isfinite(v) || v < min || v > max || (min_open && v == min))
        fail(key, fmt::format("expected {} (each in {}{:g}, {:g}]), but an element is {}", expected, min_open ? "(" : "[",
                              min, max, v));
      if (std::find(out.begin(), out.end(), v) != out.end())
        fail(key, fmt::format("{} appears twice; every value of an axis must be distinct", v));
      out.push_back(v);
    }
    return out;
  }
  std::optional<std::vector<int64_t>> integers(std::string_view key, int64_t min, const std::string& expected) {
    const toml::array* a = array(key, expected);
    if (!a) return std::nullopt;
    std::vector<int64_t> out;
    for (const auto& e : *a) {
      if (!e.is_integer()) fail(key, "expected " + expected + ", but an element is " + show(e));
      const int64_t v = e.as_integer()->get();
      if (v < min) fail(key, fmt::format("expected {}, but an element is {}", expected, v));
      if (std::find(out.begin(), out.end(), v) != out.end())
        fail(key, fmt::format("{} appears twice; every value of an axis must be distinct", v));
      out.push_back(v);
    }
    return out;
  }
  std::optional<std::vector<std::string>> strings(std::string_view key, const std::vector<std::string>* options,
                                                  const std::string& expected) {
    const toml::array* a = array(key, expected);
    if (!a) return std::nullopt;
    std::vector<std::string> out;
    for (const auto& e : *a) {
      if (!e.is_string()) fail(key, "expected " + expected + ", but an element is " + show(e));
      const std::string v = e.as_string()->get();
      if (options && std::find(options->begin(), options->end(), v) == options->end()) {
        std::string hint = closest(v, *options);
        fail(key, "unknown value \"" + v + "\"; expected " + one_of(*options) +
                      (hint.empty() ? "" : " (did you mean \"" + hint + "\"?)"));
      }
      if (std::find(out.begin(), out.end(), v) != out.end())
        fail(key, "\"" + v + "\" appears twice; every value of an axis must be distinct");
      out.push_back(v);
    }
    return out;
  }
  const toml::table* table(std::string_view key) {
    const toml::node* n = get(key);
    if (!n) return nullptr;
    if (!n->is_table()) fail(key, "expected a table ([" + dotted(key) + "]), got " + show(*n));
    return n->as_table();
  }
  // [[key]]: an array of tables.
  std::vector<const toml::table*> tables(std::string_view key) {
    std::vector<const toml::table*> out;
    const toml::node* n = get(key);
    if (!n) return out;
    const toml::array* a = n->as_array();
    if (!a || !a->is_array_of_tables())
      fail(key, "expected an array of tables ([[" + dotted(key) + "]]), got " + show(*n));
    for (const auto& e : *a) out.push_back(e.as_table());
    return out;
  }

  // Rejects every key no accessor asked for.
  void finish() const {
    for (const auto& [k, v] : t_) {
      const std::string key(k.str());
      if (known_.count(key)) continue;
      std::vector<std::string> options(known_.begin(), known_.end());
      std::string hint = closest(key, options);
      std::string where = prefix_.empty() ? "at the top level" : "in [" + prefix_ + "]";
      Location l{file_, static_cast<int>(k.source().begin.line > 0 ? k.source().begin.line : v.source().begin.line),
                 dotted(key)};
      throw Error::input(l.str() + ": unknown key " + where + (hint.empty() ? "" : " (did you mean '" + hint + "'?)") +
                         "; expected one of: " + fmt::format("{}", fmt::join(options, ", ")));
    }
  }

  [[noreturn]] void fail_missing(std::string_view key, const std::string& expected) const {
    const Location l = here();
    throw Error::input(l.file + (l.line > 0 ? ":" + std::to_string(l.line) : "") + ": key '" + dotted(key) +
                       "' is missing; expected " + expected);
  }

 private:
  void check_range(std::string_view key, double v, double min, double max, bool min_closed) const {
    const bool low = min_closed ? v < min : v <= min;
    if (!std::isfinite(v) || low || v > max) {
      std::string range = (min_closed ? "≥ " : "> ") + fmt::format("{}", min);
      if (max < 1e300 && max != static_cast<double>(INT64_MAX)) range += fmt::format(" and ≤ {}", max);
      fail(key, "expected a value " + range + ", got " + fmt::format("{}", v));
    }
  }

  const toml::table& t_;
  std::string prefix_;
  std::string file_;
  std::set<std::string> known_;
};

bool valid_name(const std::string& s) {
  if (s.empty() || s.size() > 100) return false;
  if (s == "." || s == "..") return false;  // a folder of its own in paths and HDF5 groups (/samples/.)
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.' || c == '+';
  });
}

std::string read_name(TableReader& r, std::string_view key, const std::string& what) {
  std::string v = r.str_req(key, what + " name (letters, digits, '_', '-', '.', '+')");
  if (!valid_name(v))
    r.fail(key, "\"" + v + "\" is not a valid " + what +
                    " name: use letters, digits, '_', '-', '.', '+' (at most 100); it becomes part of file names");
  return v;
}

class PathResolver {
 public:
  explicit PathResolver(const std::string& spec_path) {
    fs::path p = fs::absolute(spec_path).lexically_normal();
    base_ = p.parent_path();
  }
  SpecPath resolve(const std::string& raw, Location where) const {
    SpecPath sp{raw, "", "", std::move(where)};
    std::string unset;
    auto expanded = expand_vars(raw, &unset);
    if (!expanded) {
      sp.unset_var = unset;
      return sp;
    }
    fs::path p(*expanded);
    if (p.is_relative()) p = base_ / p;
    sp.path = p.lexically_normal().string();
    return sp;
  }
  SpecPath resolve_key(TableReader& r, std::string_view key, const std::string& raw) const {
    return resolve(raw, r.loc(key));
  }

 private:
  fs::path base_;
};

template <class E>
std::vector<std::string> words(const std::vector<E>& values) {
  std::vector<std::string> out;
  for (E v : values) out.push_back(name_str(v));
  return out;
}
template <class E>
std::vector<std::string> all_words() {
  std::vector<std::string> out;
  for (const auto& [v, n] : vocabulary::Names<E>::table) out.emplace_back(n);
  return out;
}

void read_mean_std(TableReader& r, std::string_view key, std::array<double, 3>& out, bool positive) {
  auto v = r.numbers(key, positive ? 0.0 : -1e9, 1e9, positive, "an array of 3 numbers" + std::string(positive ? " > 0" : ""));
  if (!v) return;
  if (v->size() != 3) r.fail(key, fmt::format("expected 3 numbers (R, G, B), got {}", v->size()));
  std::copy(v->begin(), v->end(), out.begin());
}

// tools/export_backbones.py writes <name>.json beside <name>.pt: what the exported file really is (its weights tag —
// "random-init" when it has no pretrained weights — feature dimension, GMACs). Those values take precedence over
// the catalog's; keys written in the spec take precedence over both.
void apply_sidecar(ModelSpec& m) {
  if (!m.backbone.resolved()) return;
  fs::path meta = fs::path(m.backbone.path).replace_extension(".json");
  std::error_code ec;
  if (!fs::is_regular_file(meta, ec)) return;
  nlohmann::json j;
  try {
    std::ifstream in(meta);
    j = nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    throw Error::input(meta.string() + ": backbone metadata is not valid JSON (" + e.what() +
                       "); re-export the model or delete the file");
  }
  auto num = [&](const char* k, auto& out, double lo, double hi) {
    if (!j.contains(k) || j[k].is_null()) return;
    if (!j[k].is_number() || j[k].get<double>() < lo || j[k].get<double>() > hi)
      throw Error::input(meta.string() + ": backbone metadata field '" + k + "' must be a number in [" +
                         fmt::format("{}, {}", lo, hi) + "]");
    out = static_cast<std::decay_t<decltype(out)>>(j[k].get<double>());
  };
  num("imagenet_top1", m.imagenet_top1, 0.0, 100.0);
  num("input_size", m.input_size, 0.0, 4096.0);
  num("crop_pct", m.crop_pct, 0.01, 1.0);
  num("feature_dim", m.feature_dim, 0.0, 1 << 20);
  num("gmacs", m.gmacs, 0.0, 1e6);
  if (j.contains("weights") && j["weights"].is_string()) m.weights = j["weights"].get<std::string>();
  for (auto [k, arr] : {std::pair<const char*, std::array<double, 3>*>{"mean", &m.mean}, {"std", &m.std}}) {
    if (!j.contains(k)) continue;
    if (!j[k].is_array() || j[k].size() != 3)
      throw Error::input(meta.string() + ": backbone metadata field '" + k + "' must be an array of 3 numbers");
    for (size_t i = 0; i < 3; ++i) (*arr)[i] = j[k][i].get<double>();
  }
}

ModelSpec read_model(TableReader& r, const PathResolver& paths, const StudySpec& study,
                     const CatalogModel* base_in, bool catalog_on) {
  ModelSpec m;
  m.where = r.here();
  m.name = read_name(r, "name", "model");
  const CatalogModel* base = catalog_on ? find_catalog_model(m.name) : base_in;
  if (base) {
    m.imagenet_top1 = base->imagenet_top1;
    m.input_size = base->fixed_input_size;
    m.crop_pct = base->crop_pct;
    m.mean = base->mean;
    m.std = base->std;
    m.weights = base->weights;
    m.gmacs = base->gmacs;
    m.feature_dim = base->feature_dim;
  }
  if (auto b = r.str("backbone")) {
    if (b->empty()) r.fail("backbone", "expected a path to a TorchScript backbone, got an empty string");
    m.backbone = paths.resolve_key(r, "backbone", *b);
  } else if (!study.catalog.empty() && !study.models_dir.raw.empty()) {
    m.backbone = paths.resolve(study.models_dir.raw + "/" + m.name + ".pt", r.here());
  } else {
    r.fail_missing("backbone", "a path to the model's TorchScript backbone (tools/export_backbones.py writes one)");
  }
  const double top1_before = m.imagenet_top1;
  apply_sidecar(m);
  const bool top1_known = base || m.imagenet_top1 != top1_before;
  if (auto v = r.number("imagenet_top1", 0.0, 100.0, true)) m.imagenet_top1 = *v;
  else if (!top1_known) r.fail_missing("imagenet_top1", "the model's ImageNet top-1 accuracy in percent (0, 100]");
  if (auto v = r.integer("input_size", 16, 4096)) m.input_size = static_cast<int>(*v);
  if (auto v = r.number("crop_pct", 0.0, 1.0, true)) m.crop_pct = *v;
  read_mean_std(r, "mean", m.mean, false);
  read_mean_std(r, "std", m.std, true);
  if (auto v = r.str("weights")) m.weights = *v;
  if (m.weights.empty()) m.weights = "unspecified";
  if (auto v = r.number("gmacs", 0.0, 1e6)) m.gmacs = *v;
  if (auto v = r.integer("feature_dim", 1, 1 << 20)) m.feature_dim = static_cast<int>(*v);
  if (auto v = r.integer("ranks_per_trial", 1, 4096)) m.ranks_per_trial = static_cast<int>(*v);
  r.finish();
  return m;
}

DatasetSpec read_dataset(TableReader& r, const PathResolver& paths) {
  DatasetSpec d;
  d.where = r.here();
  d.name = read_name(r, "name", "dataset");
  const std::vector<std::string> kinds = dataset_kind_names();
  auto kind = r.str("kind");
  if (!kind) r.fail_missing("kind", one_of(kinds));
  d.kind = r.choice("kind", kinds, "");
  const DatasetKind* info = find_dataset_kind(d.kind);
  d.root = paths.resolve_key(r, "root", r.str_req("root", "the dataset's folder as downloaded"));
  d.metric = r.choice("metric", words(info->metrics), name_str(info->metric));
  if (auto v = r.integer("input_size", 16, 4096)) d.input_size = static_cast<int>(*v);
  else d.input_size = info->default_input_size;
  d.flips = r.choice("flips", all_words<Flips>(), name_str(info->flips));
  d.bgr_quirk = r.boolean("bgr_quirk").value_or(false);
  d.strict = r.boolean("strict").value_or(false);
  if (auto v = r.number("heldout_fraction", 0.0, 1.0, true)) {
    if (*v >= 1.0) r.fail("heldout_fraction", "expected a fraction in (0, 1), got 1");
    d.heldout_fraction = *v;
  }
  d.heldout_seed = r.integer("heldout_seed", 0, 4294967295LL).value_or(info->heldout_seed);
  d.validation = r.choice("validation", {"paper", "holdout"}, "");
  if (auto v = r.number("val_fraction", 0.0, 1.0, true)) {
    if (*v >= 1.0) r.fail("val_fraction", "expected a fraction in (0, 1), got 1");
    d.val_fraction = *v;
  }
  d.val_seed = r.integer("val_seed", 0, 4294967295LL).value_or(-1);
  d.limit_train = r.integer("limit_train", 1).value_or(0);
  d.limit_test = r.integer("limit_test", 1).value_or(0);
  // The kind's own keys, as its registry entry declares them; another kind's key is named as such.
  for (const auto& s : all_kind_settings()) {
    const bool mine = std::any_of(info->settings.begin(), info->settings.end(),
                                  [&](const KindSetting& k) { return k.key == s.key; });
    if (mine || !r.has(s.key)) continue;
    std::vector<std::string> owners;
    for (const auto& k : dataset_kinds())
      for (const auto& ks : k.settings)
        if (ks.key == s.key) owners.push_back("kind = \"" + k.kind + "\"");
    r.fail(s.key, "applies only to " + fmt::format("{}", fmt::join(owners, " or ")));
  }
  for (const auto& s : info->settings) {
    if (s.type == KindSetting::Type::string) {
      if (auto v = r.str(s.key)) d.*s.text = *v;
      else d.*s.text = s.default_text;
    } else {
      d.*s.flag = r.boolean(s.key).value_or(s.default_text == "true");
    }
  }
  if (info->native_validation && r.has("validation"))
    r.fail("validation", "kind \"" + d.kind + "\" has its own validation split; `validation` does not apply");
  r.finish();
  return d;
}

OptimizerSpec read_optimizer(TableReader& r) {
  OptimizerSpec o;
  o.where = r.here();
  if (!r.has("family")) r.fail_missing("family", "\"adamw\" or \"sgd\"");
  o.family = r.choice("family", {"adamw", "sgd"}, "");
  o.lrs = r.numbers("lrs", 0.0, 1e6, true, "a non-empty array of learning rates > 0")
              .value_or(std::vector<double>{});
  if (o.lrs.empty()) r.fail_missing("lrs", "a non-empty array of learning rates > 0 for this optimizer family");
  o.weight_decays = r.numbers("weight_decays", 0.0, 1e6, false, "a non-empty array of weight decays ≥ 0")
                        .value_or(std::vector<double>{});
  if (o.family == "adamw") {
    o.wd_mode = r.choice("wd_mode", {"over_lr", "plain"}, "over_lr");
    o.beta1 = r.number("beta1", 0.0, 1.0).value_or(0.9);
    o.beta2 = r.number("beta2", 0.0, 1.0).value_or(0.999);
    o.eps = r.number("eps", 0.0, 1.0, true).value_or(1e-8);
    if (o.beta1 >= 1.0) r.fail("beta1", "expected a value in [0, 1)");
    if (o.beta2 >= 1.0) r.fail("beta2", "expected a value in [0, 1)");
    for (auto k : {"momentum", "nesterov"})
      if (r.has(k)) r.fail(k, "applies only to family = \"sgd\"");
  } else {
    o.wd_mode = r.choice("wd_mode", {"plain"}, "plain");
    o.momentum = r.number("momentum", 0.0, 1.0).value_or(0.9);
    if (o.momentum >= 1.0) r.fail("momentum", "expected a value in [0, 1)");
    o.nesterov = r.boolean("nesterov").value_or(true);
    if (o.nesterov && o.momentum == 0.0) r.fail("nesterov", "Nesterov momentum needs momentum > 0");
    for (auto k : {"beta1", "beta2", "eps"})
      if (r.has(k)) r.fail(k, "applies only to family = \"adamw\"");
  }
  r.finish();
  return o;
}

GridSpec read_grid(TableReader& r, const std::string& file) {
  GridSpec g;
  g.where = r.here();
  const auto opt_tables = r.tables("optimizer");
  if (opt_tables.empty())
    r.fail_table("at least one [[grid.optimizer]] is needed (family = \"adamw\" or \"sgd\", with its lrs)");
  for (size_t i = 0; i < opt_tables.size(); ++i) {
    TableReader o(*opt_tables[i], fmt::format("grid.optimizer[{}]", i), file);
    g.optimizers.push_back(read_optimizer(o));
  }
  g.weight_decays = r.numbers("weight_decays", 0.0, 1e6, false, "a non-empty array of weight decays ≥ 0")
                        .value_or(std::vector<double>{});
  for (const auto& o : g.optimizers)
    if (o.weight_decays.empty() && g.weight_decays.empty())
      throw Error::input(o.where.str() + ": optimizer family \"" + o.family +
                         "\" has no weight_decays and [grid] has none either; expected a non-empty array of "
                         "weight decays ≥ 0 in one of them");
  if (auto v = r.strings("augmentations", &augmentation_names(), "a non-empty array of augmentation recipes"))
    g.augmentations = *v;
  if (auto v = r.integers("seeds", 0, "a non-empty array of integer seeds ≥ 0")) g.seeds = *v;
  g.epochs = r.int_or("epochs", 30, 1, 100000);
  g.batch_size = r.int_or("batch_size", 128, 1, 1 << 20);
  g.input_size = r.int_or("input_size", 256, 16, 4096);
  g.ranks_per_trial = r.int_or("ranks_per_trial", 1, 1, 4096);
  g.schedule = r.choice("schedule", {"cosine", "cosine_step", "step"}, "cosine");
  if (auto v = r.integers("step_milestones", 1, "a non-empty array of epochs ≥ 1")) {
    g.step_milestones.assign(v->begin(), v->end());
    if (!std::is_sorted(g.step_milestones.begin(), g.step_milestones.end()))
      r.fail("step_milestones", "expected increasing epochs");
  }
  if (g.schedule == "step" && !g.step_milestones.empty() && g.step_milestones.back() > g.epochs && r.has("step_milestones"))
    r.fail("step_milestones", fmt::format("a milestone lies beyond epochs = {}", g.epochs));
  if (r.has("step_milestones") && g.schedule != "step") r.fail("step_milestones", "applies only to schedule = \"step\"");
  g.step_gamma = r.number("step_gamma", 0.0, 1.0, true).value_or(0.1);
  g.warmup_epochs = r.int_or("warmup_epochs", 0, 0, 100000);
  if (g.warmup_epochs >= g.epochs)
    r.fail("warmup_epochs", fmt::format("expected fewer warm-up epochs than epochs = {}", g.epochs));
  g.label_smoothing = r.number("label_smoothing", 0.0, 1.0).value_or(0.0);
  if (g.label_smoothing >= 1.0) r.fail("label_smoothing", "expected a value in [0, 1)");
  g.precision = r.choice("precision", {"auto", "fp32", "bf16", "fp16"}, "auto");
  r.finish();
  return g;
}

UpstreamSpec read_upstream(TableReader& r) {
  UpstreamSpec u;
  u.where = r.here();
  u.name = read_name(r, "name", "upstream stage");
  u.dataset = r.str_req("dataset", "the name of the [[dataset]] to pre-train on");
  u.models = r.strings("models", nullptr, "a non-empty array of model names (architectures of this spec)")
                 .value_or(std::vector<std::string>{});
  if (u.models.empty()) r.fail_missing("models", "a non-empty array of model names (architectures of this spec)");
  u.optimizer = r.choice("optimizer", {"adamw", "sgd"}, "adamw");
  if (auto v = r.numbers("lrs", 0.0, 1e6, true, "a non-empty array of learning rates > 0")) u.lrs = *v;
  if (auto v = r.numbers("weight_decays", 0.0, 1e6, false, "a non-empty array of weight decays ≥ 0")) u.weight_decays = *v;
  if (auto v = r.strings("augmentations", &augmentation_names(), "a non-empty array of augmentation recipes"))
    u.augmentations = *v;
  if (auto v = r.integers("epochs", 1, "a non-empty array of epoch counts ≥ 1")) u.epochs = *v;
  if (auto v = r.integers("seeds", 0, "a non-empty array of integer seeds ≥ 0")) u.seeds = *v;
  u.batch_size = r.int_or("batch_size", 128, 1, 1 << 20);
  u.input_size = r.int_or("input_size", 0, 16, 4096);
  r.finish();
  return u;
}

OverrideSpec read_override(TableReader& r) {
  OverrideSpec o;
  o.where = r.here();
  o.model = r.str("model").value_or("*");
  o.dataset = r.str("dataset").value_or("*");
  if (auto v = r.integer("input_size", 16, 4096)) o.input_size = static_cast<int>(*v);
  if (auto v = r.integer("batch_size", 1, 1 << 20)) o.batch_size = static_cast<int>(*v);
  if (auto v = r.integer("epochs", 1, 100000)) o.epochs = static_cast<int>(*v);
  if (auto v = r.integer("ranks_per_trial", 1, 4096)) o.ranks_per_trial = static_cast<int>(*v);
  if (r.has("precision")) o.precision = r.choice("precision", {"auto", "fp32", "bf16", "fp16"}, "auto");
  r.finish();
  if (!o.input_size && !o.batch_size && !o.epochs && !o.ranks_per_trial && !o.precision)
    r.fail_table("sets nothing; expected at least one of input_size, batch_size, epochs, ranks_per_trial, precision");
  return o;
}

void check_exists(const SpecPath& p, bool want_dir, const std::string& what) {
  if (!p.resolved()) return;  // planned unchecked; `xfer run` refuses it
  std::error_code ec;
  const auto st = fs::status(p.path, ec);
  if (!fs::exists(st))
    throw Error::input(p.where.str() + ": " + what + " not found: " + p.path +
                       (p.raw != p.path ? " (written as \"" + p.raw + "\")" : ""));
  if (want_dir && !fs::is_directory(st))
    throw Error::input(p.where.str() + ": " + what + " is not a folder: " + p.path);
  if (!want_dir && fs::is_directory(st))
    throw Error::input(p.where.str() + ": " + what + " is a folder, expected a file: " + p.path);
}

// A TorchScript file is a zip archive: refuse anything else here, on the login node, rather than fail every trial
// of the model max_attempts times in the sweep. Reads 4 bytes of regular files only (a FIFO would block).
void check_torchscript(const ModelSpec& m) {
  if (!m.backbone.resolved()) return;
  std::error_code ec;
  if (!fs::is_regular_file(m.backbone.path, ec))
    throw Error::input(m.backbone.where.str() + ": backbone of model \"" + m.name + "\" is not a regular file: " +
                       m.backbone.path);
  std::ifstream in(m.backbone.path, std::ios::binary);
  char magic[4] = {0, 0, 0, 0};
  in.read(magic, 4);
  if (!in)
    throw Error::input(m.backbone.where.str() + ": backbone of model \"" + m.name + "\" cannot be read: " +
                       m.backbone.path);
  if (!(magic[0] == 'P' && magic[1] == 'K' && magic[2] == 3 && magic[3] == 4))
    throw Error::input(m.backbone.where.str() + ": backbone of model \"" + m.name + "\" is not a TorchScript file "
                       "(not a zip archive): " + m.backbone.path + " — export it with tools/export_backbones.py");
}

}  // namespace

std::optional<std::string> expand_vars(const std::string& s, std::string* unset) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '$' && i + 1 < s.size() && s[i + 1] == '{') {
      const size_t close = s.find('}', i + 2);
      if (close == std::string::npos) {
        out += s.substr(i);
        break;
      }
      std::string body = s.substr(i + 2, close - i - 2);
      std::string name = body, dflt;
      bool has_default = false;
      if (auto p = body.find(":-"); p != std::string::npos) {
        name = body.substr(0, p);
        dflt = body.substr(p + 2);
        has_default = true;
      }
      const char* v = std::getenv(name.c_str());
      if (v && *v) out += v;
      else if (has_default) out += dflt;
      else {
        if (unset) *unset = name;
        return std::nullopt;
      }
      i = close;
    } else {
      out += s[i];
    }
  }
  return out;
}

bool glob_match(const std::string& pattern, const std::string& name) {
  // Iterative wildcard matching with backtracking on the last '*'.
  size_t p = 0, n = 0, star = std::string::npos, mark = 0;
  auto match_class = [&](size_t& pp, char c) {
    // pattern[pp] == '['; returns whether c matches; advances pp past ']'.
    size_t q = pp + 1;
    bool neg = q < pattern.size() && (pattern[q] == '!' || pattern[q] == '^');
    if (neg) ++q;
    bool ok = false;
    for (bool first = true; q < pattern.size() && (first || pattern[q] != ']'); first = false, ++q) {
      if (q + 2 < pattern.size() && pattern[q + 1] == '-' && pattern[q + 2] != ']') {
        if (c >= pattern[q] && c <= pattern[q + 2]) ok = true;
        q += 2;
      } else if (pattern[q] == c) {
        ok = true;
      }
    }
    pp = q + 1;
    return ok != neg;
  };
  while (n < name.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = n;
    } else if (p < pattern.size() && pattern[p] == '?') {
      ++p, ++n;
    } else if (p < pattern.size() && pattern[p] == '[') {
      size_t pp = p;
      if (match_class(pp, name[n])) p = pp, ++n;
      else if (star != std::string::npos) p = star + 1, n = ++mark;
      else return false;
    } else if (p < pattern.size() && pattern[p] == name[n]) {
      ++p, ++n;
    } else if (star != std::string::npos) {
      p = star + 1;
      n = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

const std::vector<std::string>& augmentation_names() {
  // The spec reader's choice lists are strings; the words themselves are core's vocabulary.
  static const std::vector<std::string> k = [] {
    std::vector<std::string> out;
    for (const auto& [value, word] : vocabulary::Names<Augmentation>::table) out.emplace_back(word);
    return out;
  }();
  return k;
}

const ModelSpec* Spec::find_model(const std::string& name) const {
  for (const auto& m : models)
    if (m.name == name) return &m;
  return nullptr;
}
const DatasetSpec* Spec::find_dataset(const std::string& name) const {
  for (const auto& d : datasets)
    if (d.name == name) return &d;
  return nullptr;
}
Validation Spec::requested_validation(const DatasetSpec& d) const {
  return xfer::parse<Validation>(d.validation.empty() ? study.selection : d.validation, d.where.str());
}

Validation Spec::validation_mode(const DatasetSpec& d) const {
  if (d.resolved) return d.resolved->validation;
  const DatasetKind* k = find_dataset_kind(d.kind);
  if (k && k->native_validation) return Validation::fixed;
  if (k && k->validation_from_layout)
    throw Error::input(d.where.str() + ": dataset \"" + d.name + "\" (" + d.kind +
                       "): its validation split depends on the layout under its root, which has not been resolved "
                       "(data::resolve_layouts must run before trials are keyed or the data is opened)");
  return requested_validation(d);
}

std::string Spec::validation_of(const DatasetSpec& d) const { return name_str(validation_mode(d)); }

int64_t Spec::heldout_seed_of(const DatasetSpec& d) const {
  if (d.heldout_seed >= 0) return d.heldout_seed;
  const DatasetKind* k = find_dataset_kind(d.kind);
  return k && k->heldout_seed >= 0 ? k->heldout_seed : 0;
}

int64_t Spec::val_seed_of(const DatasetSpec& d) const {
  if (d.val_seed >= 0) return d.val_seed;
  // 32-bit seed from the root seed and the dataset's name (FNV-1a); stable across platforms.
  uint64_t h = 1469598103934665603ULL;
  auto mix = [&](unsigned char c) { h = (h ^ c) * 1099511628211ULL; };
  for (int i = 0; i < 8; ++i) mix(static_cast<unsigned char>((static_cast<uint64_t>(study.seed) >> (8 * i)) & 0xff));
  for (char c : "val/" + d.name) mix(static_cast<unsigned char>(c));
  return static_cast<int64_t>((h ^ (h >> 32)) & 0xffffffffULL);
}

Spec parse(const std::string& text, const std::string& path) {
  toml::table root;
  try {
    root = toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    throw Error::input(fmt::format("{}:{}:{}: TOML syntax error: {}", path, e.source().begin.line,
                                   e.source().begin.column, e.description()));
  }
  Spec spec;
  spec.path = path;
  spec.text = text;
  PathResolver paths(path);
  TableReader top(root, "", path);

  // [study]
  const toml::table* study_t = top.table("study");
  if (!study_t) top.fail_missing("study", "a [study] table with name and results");
  {
    TableReader r(*study_t, "study", path);
    auto& s = spec.study;
    s.where = r.here();
    s.name = read_name(r, "name", "study");
    s.results = paths.resolve_key(r, "results", r.str_req("results", "the path of the HDF5 results file"));
    s.seed = r.integer("seed", 0, 4294967295LL).value_or(0);
    s.selection = r.choice("selection", {"paper", "holdout"}, "paper");
    s.catalog = r.choice("catalog", {"paper"}, "");
    if (auto v = r.str("models_dir")) s.models_dir = paths.resolve_key(r, "models_dir", *v);
    if (!s.catalog.empty() && s.models_dir.raw.empty())
      r.fail_missing("models_dir", "the folder holding the catalog's backbones (<models_dir>/<name>.pt)");
    if (r.has("models") && s.catalog.empty()) r.fail("models", "selects catalog models; it needs catalog = \"paper\"");
    std::vector<std::string> names;
    for (const auto& m : paper_models()) names.push_back(m.name);
    if (auto v = r.strings("models", &names, "a non-empty array of catalog model names")) s.catalog_models = *v;
    s.max_attempts = r.int_or("max_attempts", 3, 1, 1000);
    s.keep_best_model = r.boolean("keep_best_model").value_or(false);
    if (auto v = r.str("checkpoint_dir")) s.checkpoint_dir = paths.resolve_key(r, "checkpoint_dir", *v);
    else if (s.results.resolved()) s.checkpoint_dir = paths.resolve(s.results.raw + ".ckpt", r.loc("results"));
    else s.checkpoint_dir = paths.resolve(s.results.raw + ".ckpt", r.loc("results"));
    if (auto v = r.str("upstream_dir")) s.upstream_dir = paths.resolve_key(r, "upstream_dir", *v);
    else s.upstream_dir = paths.resolve(s.results.raw + ".upstream", r.loc("results"));
    r.finish();
  }

  // Models: the catalog's (if asked), then [[model]] entries, which override catalog entries of the same name.
  if (!spec.study.catalog.empty()) {
    for (const auto& cm : paper_models()) {
      const auto& subset = spec.study.catalog_models;
      if (!subset.empty() && std::find(subset.begin(), subset.end(), cm.name) == subset.end()) continue;
      ModelSpec m;
      m.name = cm.name;
      m.imagenet_top1 = cm.imagenet_top1;
      m.input_size = cm.fixed_input_size;
      m.crop_pct = cm.crop_pct;
      m.mean = cm.mean;
      m.std = cm.std;
      m.weights = cm.weights;
      m.gmacs = cm.gmacs;
      m.feature_dim = cm.feature_dim;
      Location where = spec.study.models_dir.where;
      m.backbone = paths.resolve(spec.study.models_dir.raw + "/" + cm.name + ".pt", where);
      m.where = where;
      apply_sidecar(m);
      spec.models.push_back(std::move(m));
    }
  }
  const auto model_tables = top.tables("model");
  std::set<std::string> entry_names;
  for (size_t i = 0; i < model_tables.size(); ++i) {
    TableReader r(*model_tables[i], fmt::format("model[{}]", i), path);
    ModelSpec m = read_model(r, paths, spec.study, nullptr, !spec.study.catalog.empty());
    if (!entry_names.insert(m.name).second)
      throw Error::input(r.loc("name").str() + ": duplicate model name \"" + m.name +
                         "\"; every [[model]] needs a distinct name");
    auto it = std::find_if(spec.models.begin(), spec.models.end(), [&](const ModelSpec& x) { return x.name == m.name; });
    if (it != spec.models.end()) *it = std::move(m);
    else spec.models.push_back(std::move(m));
  }
  if (spec.models.empty())
    top.fail_table("no models: add [[model]] entries or set catalog = \"paper\" and models_dir in [study]");

  // [[dataset]]
  const auto dataset_tables = top.tables("dataset");
  if (dataset_tables.empty()) top.fail_missing("dataset", "at least one [[dataset]] entry (name, kind, root)");
  for (size_t i = 0; i < dataset_tables.size(); ++i) {
    TableReader r(*dataset_tables[i], fmt::format("dataset[{}]", i), path);
    DatasetSpec d = read_dataset(r, paths);
    if (spec.find_dataset(d.name))
      throw Error::input(r.loc("name").str() + ": duplicate dataset name \"" + d.name +
                         "\"; every [[dataset]] needs a distinct name");
    spec.datasets.push_back(std::move(d));
  }

  // [grid]
  const toml::table* grid_t = top.table("grid");
  if (!grid_t) top.fail_missing("grid", "a [grid] table with at least one [[grid.optimizer]]");
  {
    TableReader r(*grid_t, "grid", path);
    spec.grid = read_grid(r, path);
  }

  // [[override]]
  const auto override_tables = top.tables("override");
  for (size_t i = 0; i < override_tables.size(); ++i) {
    TableReader r(*override_tables[i], fmt::format("override[{}]", i), path);
    OverrideSpec o = read_override(r);
    bool any_model = false, any_dataset = false;
    for (const auto& m : spec.models) any_model |= glob_match(o.model, m.name);
    for (const auto& d : spec.datasets) any_dataset |= glob_match(o.dataset, d.name);
    if (!any_model) r.fail("model", "\"" + o.model + "\" matches no model of this spec");
    if (!any_dataset) r.fail("dataset", "\"" + o.dataset + "\" matches no dataset of this spec");
    spec.overrides.push_back(std::move(o));
  }

  // [[upstream]]: pre-training stages. Their datasets are upstream-only; their models must be the spec's.
  const auto upstream_tables = top.tables("upstream");
  for (size_t i = 0; i < upstream_tables.size(); ++i) {
    TableReader r(*upstream_tables[i], fmt::format("upstream[{}]", i), path);
    UpstreamSpec u = read_upstream(r);
    for (const auto& other : spec.upstreams)
      if (other.name == u.name)
        r.fail("name", "duplicate upstream stage name \"" + u.name + "\"; every [[upstream]] needs a distinct name");
    auto dit = std::find_if(spec.datasets.begin(), spec.datasets.end(),
                            [&](const DatasetSpec& d) { return d.name == u.dataset; });
    if (dit == spec.datasets.end()) {
      std::vector<std::string> names;
      for (const auto& d : spec.datasets) names.push_back(d.name);
      const std::string hint = closest(u.dataset, names);
      r.fail("dataset", "\"" + u.dataset + "\" is no [[dataset]] of this spec" +
                            (hint.empty() ? "" : " (did you mean \"" + hint + "\"?)"));
    }
    if (dit->kind == "hpa") r.fail("dataset", "a multi-label dataset (hpa) cannot be an upstream stage's: its top-1 is undefined");
    dit->upstream_only = true;
    for (const auto& m : u.models) {
      if (spec.find_model(m)) continue;
      std::vector<std::string> names;
      for (const auto& x : spec.models) names.push_back(x.name);
      const std::string hint = closest(m, names);
      r.fail("models", "\"" + m + "\" is no model of this spec" + (hint.empty() ? "" : " (did you mean \"" + hint + "\"?)"));
    }
    spec.upstreams.push_back(std::move(u));
  }
  if (!spec.upstreams.empty() &&
      std::all_of(spec.datasets.begin(), spec.datasets.end(), [](const DatasetSpec& d) { return d.upstream_only; }))
    top.fail_table("every [[dataset]] is an [[upstream]] stage's: add at least one downstream dataset to fine-tune on");
  top.finish();

  // The filesystem: backbones, dataset roots. Paths under unset variables are left for `xfer run` to refuse.
  if (!spec.study.catalog.empty()) check_exists(spec.study.models_dir, true, "models_dir");
  for (const auto& m : spec.models) {
    const bool from_catalog = m.where.key == spec.study.models_dir.where.key && !spec.study.catalog.empty() &&
                              m.where.line == spec.study.models_dir.where.line;
    if (from_catalog && m.backbone.resolved() && !fs::exists(m.backbone.path))
      throw Error::input(m.backbone.where.str() + ": backbone of catalog model \"" + m.name + "\" not found: " +
                         m.backbone.path + " (export it with: tools/export_backbones.py " + m.name + " --out " +
                         spec.study.models_dir.path + ")");
    check_exists(m.backbone, false, "backbone of model \"" + m.name + "\"");
    check_torchscript(m);
  }
  for (const auto& d : spec.datasets) check_exists(d.root, true, "root of dataset \"" + d.name + "\"");
  return spec;
}

Spec load(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) throw Error::input(path + ": is a directory, expected a spec file (TOML)");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error::input(path + ": cannot open the spec file");
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse(ss.str(), path);
}

}  // namespace xfer::spec
