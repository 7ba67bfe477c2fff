#include "study_setup.hpp"

#include <filesystem>
#include <set>

#include <spdlog/spdlog.h>

#include "slurm.hpp"
#include "upstream_backbone.hpp"
#include "xfer/core/build_info.hpp"
#include "xfer/core/digest.hpp"
#include "xfer/core/error.hpp"
#include "xfer/data/dataset.hpp"
#include "xfer/grid/cost.hpp"
#include "xfer/metrics/metrics.hpp"
#include "xfer/sweep/dataset_sizes.hpp"
#include "xfer/train/trial.hpp"

namespace fs = std::filesystem;

namespace xfer::sweep {

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
}  // namespace

Study read_study(const std::string& spec_path) {
  Study s;
  s.spec = grid::with_upstream(data::with_layouts_resolved(spec::load(spec_path)));
  s.trials = grid::expand(s.spec);
  return s;
}

std::string resolved_or_throw(const spec::SpecPath& p, const std::string& what) {
  if (!p.resolved())
    throw Error::input(p.where.str() + ": " + what + " \"" + p.raw + "\" names ${" + p.unset_var +
                       "}, which is unset — set it before `xfer run` (xfer plan lists every such path)");
  return p.path;
}

store::TrialRow fresh_row(const spec::Spec& spec, const grid::Trial& t, double cost) {
  const auto& c = t.config;
  store::TrialRow r;
  r.key = t.key.str();
  r.model = c.model;
  r.dataset = c.dataset;
  r.kind = c.kind;
  r.metric = name_str(c.metric);
  r.optimizer = name_str(c.optimizer);
  r.wd_mode = name_str(c.wd_mode);
  r.augmentation = name_str(c.augmentation);
  r.schedule = name_str(c.schedule);
  r.precision = name_str(c.precision);
  r.lr = c.lr;
  r.weight_decay = c.weight_decay;
  r.imagenet_top1 = spec.models[t.model_index].imagenet_top1;
  r.cost_gflop = cost;
  r.seed = c.seed;
  r.epochs = c.epochs;
  r.batch_size = c.batch_size;
  r.input_size = c.input_size;
  r.ranks_per_trial = c.ranks_per_trial;
  r.weights = c.weights;
  r.crop_pct = c.crop_pct;
  r.mean = c.mean;
  r.std = c.std;
  r.flips = name_str(c.flips);
  r.bgr_quirk = c.bgr_quirk;
  r.validation = name_str(c.validation);
  r.heldout_fraction = c.heldout_fraction;
  r.heldout_seed = c.heldout_seed;
  r.val_fraction = c.val_fraction;
  r.val_seed = c.val_seed;
  r.limit_train = c.limit_train;
  r.limit_test = c.limit_test;
  r.melanoma_2019 = c.melanoma_2019;
  r.manifest = c.manifest;
  r.split_file = c.split_file;
  r.momentum = c.momentum;
  r.nesterov = c.nesterov;
  r.beta1 = c.beta1;
  r.beta2 = c.beta2;
  r.eps = c.eps;
  r.step_milestones.assign(c.step_milestones.begin(), c.step_milestones.end());
  r.step_gamma = c.step_gamma;
  r.warmup_epochs = c.warmup_epochs;
  r.label_smoothing = c.label_smoothing;
  r.canonical = c.canonical_text();
  r.stage = c.pretraining ? "upstream" : "downstream";
  r.upstream = c.upstream;
  r.status = "pending";
  r.val_metric = r.test_metric = kNaN;
  r.order = static_cast<int64_t>(t.order);
  return r;
}

namespace {

// A folder the spec leaves to its default (<results>.ckpt, <results>.upstream) is the results file's own: it follows
// the file this run writes (--results, a shard's file), so two runs into two files never share a path.
bool follow(spec::SpecPath& folder, const spec::SpecPath& spec_results, const std::string& results, const char* suffix) {
  if (folder.raw != spec_results.raw + suffix || results == spec_results.path) return false;
  folder.raw = folder.path = results + suffix;
  folder.unset_var.clear();
  return true;
}

void follow_results_file(spec::Spec& spec, const std::string& results) {
  auto& s = spec.study;
  follow(s.checkpoint_dir, s.results, results, ".ckpt");
  if (follow(s.upstream_dir, s.results, results, ".upstream"))
    for (auto& m : spec.models)
      if (!m.upstream_key.empty()) {
        m.backbone.raw = m.backbone.path = s.upstream_dir.path + "/" + m.upstream_key + ".pt";
        m.backbone.unset_var.clear();
      }
}

// The SHA-256 each finished pre-training trial of the file exported, by key: what its downstream trials must load
// (the ledger's word, not the metadata's beside the file).
std::map<std::string, std::string> exported_backbones(const std::vector<store::TrialRow>& rows) {
  std::map<std::string, std::string> out;
  for (const auto& r : rows)
    if (r.damage.empty() && r.stage == "upstream" && r.status == "done" && !r.exported_sha256.empty())
      out[r.key] = r.exported_sha256;
  return out;
}

}  // namespace

Prepared prepare(Study& study, const RunOptions& o) {
  Prepared p;
  const auto& spec = study.spec;
  p.results_path = results_path(o, o.results.empty() ? resolved_or_throw(spec.study.results, "results") : o.results);
  follow_results_file(study.spec, p.results_path);
  const auto recorded = upstream_ledger(study, p.results_path);
  keep_recorded_upstream_names(study, recorded);
  p.exported_sha256 = exported_backbones(recorded);
  std::vector<grid::DataSize> sizes;
  if (o.simulate > 0) {
    sizes = dataset_sizes(spec);
  } else {
    resolved_or_throw(spec.study.checkpoint_dir, "checkpoint_dir");
    for (const auto& m : spec.models) resolved_or_throw(m.backbone, "backbone of " + m.name);
    for (const auto& d : spec.datasets) {
      resolved_or_throw(d.root, "root of dataset " + d.name);
      p.datasets.push_back(data::open(spec, d));
      sizes.push_back(measured_size(p.datasets.back()));
    }
  }
  for (const auto& d : spec.datasets) p.resolved.push_back({d, data::split_settings(spec, d)});
  p.cost = grid::CostModel(spec, std::move(sizes)).gflop(study.trials);
  return p;
}

std::vector<store::TrialRow> upstream_ledger(const Study& study, const std::string& results) {
  std::error_code ec;
  if (study.spec.upstreams.empty() || !fs::exists(results, ec)) return {};
  try {
    return store::Results::open_existing(results).trials();
  } catch (const std::exception&) {
    return {};  // the run refuses the file with the reason, before any trial
  }
}

void keep_recorded_upstream_names(Study& study, const std::vector<store::TrialRow>& rows) {
  std::map<std::string, std::string> recorded;  // upstream key → the name its first downstream row was recorded under
  for (const auto& r : rows)
    if (r.damage.empty() && r.stage != "upstream" && !r.upstream.empty()) recorded.emplace(r.upstream, r.model);
  bool renamed = false;
  for (auto& m : study.spec.models) {
    const auto it = m.upstream_key.empty() ? recorded.end() : recorded.find(m.upstream_key);
    if (it == recorded.end() || it->second == m.name || study.spec.find_model(it->second)) continue;
    spdlog::info("pre-trained model {} keeps the name {} its trials were recorded under (upstream trial {})", m.name,
                 it->second, m.upstream_key);
    m.name = it->second;
    renamed = true;
  }
  if (renamed) study.trials = grid::expand(study.spec);
}

std::map<std::string, std::string> split_hashes(const Prepared& p) {
  std::map<std::string, std::string> out;
  for (const auto& ds : p.datasets) out[ds.name] = ds.split_hash;
  return out;
}

std::vector<double> trial_costs(const Study& study) {
  return grid::CostModel(study.spec, dataset_sizes(study.spec)).gflop(study.trials);
}

ResolvedTrial resolve_trial(const Study& study, const Prepared& p, size_t index, const RunOptions& o) {
  const grid::Trial& t = study.trials[index];
  ResolvedTrial r;
  r.index = static_cast<int64_t>(index);
  r.key = t.key.str();
  r.config = t.config;
  r.cost_gflop = p.cost[index];
  r.dataset = p.resolved[t.dataset_index];
  if (o.simulate <= 0) {  // --simulate runs without models or checkpoints, under unset paths too
    const train::Environment env = train::environment_for(study.spec, t);
    r.backbone = env.backbone;
    r.checkpoint_dir = env.checkpoint_dir;
    r.keep_best_model = env.keep_best_model;
    r.export_backbone = env.export_backbone;
    // A downstream trial of a pre-trained model runs after its upstream trial is done: the backbone's SHA-256 is
    // the one the ledger recorded when that trial finished in an earlier run; only a backbone exported by this run
    // (not in the ledger when it started) is taken from its metadata (a missing file is the worker's to report as
    // the trial's failure).
    if (!t.config.upstream.empty()) {
      if (auto it = p.exported_sha256.find(t.config.upstream); it != p.exported_sha256.end()) {
        r.backbone_sha256 = it->second;
      } else {
        try {
          r.backbone_sha256 = read_upstream_metadata(r.backbone).sha256;
        } catch (const Error&) {
        }
      }
    }
  }
  return r;
}

void write_study(const Study& study, const Prepared& p, store::Results& results, int ranks,
                 const std::vector<std::string>& hosts) {
  const auto& spec = study.spec;
  std::vector<store::ModelRow> models;
  for (const auto& m : spec.models) {
    store::ModelRow r;
    r.name = m.name;
    r.weights = m.weights;
    r.backbone = m.backbone.resolved() ? m.backbone.path : m.backbone.raw;
    if (m.backbone.resolved() && fs::exists(m.backbone.path)) r.backbone_sha256 = sha256_file_hex(m.backbone.path);
    r.imagenet_top1 = m.imagenet_top1;
    r.gmacs = m.gmacs;
    r.feature_dim = m.feature_dim;
    models.push_back(r);
  }
  std::vector<store::DatasetRow> rows;
  for (size_t i = 0; i < spec.datasets.size(); ++i) {
    const auto& d = spec.datasets[i];
    store::DatasetRow r;
    r.name = d.name;
    r.kind = d.kind;
    r.metric = d.metric;
    r.root = d.root.resolved() ? d.root.path : d.root.raw;
    r.validation = spec.validation_of(d);
    if (i < p.datasets.size()) {
      const auto& ds = p.datasets[i];
      r.validation = name_str(ds.validation);
      r.split_sha256 = ds.split_hash;
      r.n_train = static_cast<int64_t>(ds.indices(data::Split::train).size());
      r.n_val = static_cast<int64_t>(ds.indices(data::Split::val).size());
      r.n_test = static_cast<int64_t>(ds.indices(data::Split::test).size());
      r.problems = static_cast<int64_t>(ds.problems.size());
      r.classes = ds.num_classes();
      r.multilabel = ds.multilabel;
    }
    rows.push_back(r);
  }
  results.write_study(spec.text, models, rows);
  std::vector<store::ProblemRow> problems;
  for (size_t i = 0; i < p.datasets.size(); ++i) {
    const auto& ds = p.datasets[i];
    std::vector<store::SampleRow> samples;
    for (size_t s = 0; s < ds.samples.size(); ++s) {
      store::SampleRow r;
      r.index = static_cast<int64_t>(s);
      r.id = ds.samples[s].id;
      r.split = data::split_name(ds.split[s]);
      r.label = ds.samples[s].label;
      if (ds.multilabel)
        for (size_t k = 0; k < ds.samples[s].labels.size(); ++k)
          r.labels += (k ? " " : "") + std::to_string(ds.samples[s].labels[k]);
      else r.labels = std::to_string(r.label);
      r.group = ds.samples[s].group;
      samples.push_back(std::move(r));
    }
    results.write_samples(ds.name, samples);
    for (const auto& pr : ds.problems) problems.push_back({ds.name, pr.id, pr.path, pr.reason});
  }
  // Index-time problems: appended only when they differ from the ones last recorded.
  results.add_index_problems(problems);
  const auto be = train::backend();
  std::string host_list;
  for (const auto& h : std::set<std::string>(hosts.begin(), hosts.end())) host_list += (host_list.empty() ? "" : " ") + h;
  std::string split_hashes;
  for (const auto& ds : p.datasets) split_hashes += ds.name + ":" + ds.split_hash + " ";
  results.write_provenance({{"xfer_version", build_info::version()},
                            {"git_commit", build_info::git_commit()},
                            {"git_dirty", build_info::git_dirty() ? "true" : "false"},
                            {"compiler", build_info::compiler()},
                            {"build_type", build_info::build_type()},
                            {"libtorch", be.torch_version},
                            {"cuda", be.cuda_version},
                            {"cudnn", be.cudnn_version},
                            {"devices", be.devices},
                            {"kokkos_backend", metrics::Runtime::backend()},
                            {"mpi", MpiRuntime::library_version()},
                            {"hosts", host_list},
                            {"ranks", std::to_string(ranks)},
                            {"split_sha256", split_hashes},
                            {"slurm_job_id", slurm_variable("SLURM_JOB_ID")},
                            {"updated_utc", store::iso_utc(store::now_unix())}});
}

}  // namespace xfer::sweep
