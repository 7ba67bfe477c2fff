// sweep/study_setup: what rank 0 does before the first trial — read the spec once, resolve every path, open the
// datasets, cost the trials, and write the study's description into the results file. Only rank 0 includes this.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "xfer/data/dataset.hpp"
#include "xfer/grid/grid.hpp"
#include "xfer/spec/spec.hpp"
#include "xfer/store/store.hpp"
#include "xfer/sweep/resolved_trial.hpp"
#include "xfer/sweep/sweep.hpp"

namespace xfer::sweep {

// The spec as rank 0 read it, and its expansion.
struct Study {
  spec::Spec spec;
  std::vector<grid::Trial> trials;
};
Study read_study(const std::string& spec_path);

struct Prepared {
  std::string results_path;
  std::vector<double> cost;              // by trial index: the one cost model's
  std::vector<data::Dataset> datasets;   // opened (none in --simulate)
  std::vector<ResolvedDataset> resolved; // by dataset index: what a worker opens
  // Upstream key → the SHA-256 its pre-training trial exported, as the results file's /trials recorded it before
  // this run (its downstream trials load only that file).
  std::map<std::string, std::string> exported_sha256;
};

std::string resolved_or_throw(const spec::SpecPath& p, const std::string& what);
// The results file, every path checked (unless --simulate), the datasets opened, the trials costed. The folders the
// spec derives from its `results` (checkpoints, pre-trained backbones; unless it names them) are moved to follow the
// results file this run writes (--results, a shard's file): `study` is updated.
Prepared prepare(Study& study, const RunOptions& o);
// The costs of a run's trials without opening anything the run would not (what --dry-run shards by).
std::vector<double> trial_costs(const Study& study);

// The rows of the results file when the study has [[upstream]] stages and the file exists (none otherwise, or when it
// cannot be read: the run then refuses it with the reason).
std::vector<store::TrialRow> upstream_ledger(const Study& study, const std::string& results);
// A pre-trained model's name depends on which upstream axes vary, so a value added to an axis would rename it, and
// its downstream trials (keyed by the name) would run again under the new one. A pre-trained model whose downstream
// trials the file already holds keeps the name they were recorded under; the trials are expanded again.
void keep_recorded_upstream_names(Study& study, const std::vector<store::TrialRow>& rows);

// The split SHA-256 of each opened dataset, by name (none in --simulate): what a results file's earlier trials of
// the dataset must share (store::Results::check_run).
std::map<std::string, std::string> split_hashes(const Prepared& p);

// The row of a trial the results file has not seen.
store::TrialRow fresh_row(const spec::Spec& spec, const grid::Trial& t, double cost);
// What the worker needs to run trial `index` (sent with its order).
ResolvedTrial resolve_trial(const Study& study, const Prepared& p, size_t index, const RunOptions& o);

// /study, /samples, the index-time /problems and /provenance.
void write_study(const Study& study, const Prepared& p, store::Results& results, int ranks,
                 const std::vector<std::string>& hosts);

}  // namespace xfer::sweep
