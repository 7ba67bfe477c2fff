// sweep/resolved_trial: everything a worker needs to run one trial, resolved on rank 0 from the spec and the
// filesystem and sent with the trial's order — so a worker never reads the spec. Serialised with
// Boost.Serialization: one non-intrusive `serialize` per type below, each listing every field once (binary
// archives: the MPI packed archive and the tests' binary round trip).
#pragma once

#include <cstdint>
#include <string>

#include <boost/serialization/string.hpp>
#include <boost/serialization/vector.hpp>

#include "xfer/data/dataset.hpp"
#include "xfer/grid/grid.hpp"
#include "xfer/spec/spec.hpp"

namespace xfer::sweep {

// A dataset as the worker opens it: the spec's entry (name, kind, resolved root, options) and the split settings
// rank 0 resolved for it.
struct ResolvedDataset {
  spec::DatasetSpec spec;
  data::SplitSettings split;
};

struct ResolvedTrial {
  int64_t index = -1;          // in the spec's expansion
  std::string key;
  grid::TrialConfig config;
  std::string backbone;        // the model's TorchScript file ("" in --simulate without models)
  std::string checkpoint_dir;  // this trial's folder
  bool keep_best_model = false;
  double cost_gflop = 0;       // the cost model's (the --simulate executor sleeps on it)
  ResolvedDataset dataset;
  // The upstream stage: where a pre-training trial exports its backbone (TorchScript + <key>.json with its SHA-256
  // and measured top-1); the SHA-256 a downstream trial's backbone must have (its upstream trial's export).
  std::string export_backbone;
  std::string backbone_sha256;
};

}  // namespace xfer::sweep

namespace boost::serialization {

template <class A>
void serialize(A& a, xfer::spec::Location& l, const unsigned) {
  a& l.file& l.line& l.key;
}

template <class A>
void serialize(A& a, xfer::spec::SpecPath& p, const unsigned) {
  a& p.raw& p.path& p.unset_var& p.where;
}

// The one serialiser of a dataset's spec entry: a field added to DatasetSpec is added here.
template <class A>
void serialize(A& a, xfer::spec::ResolvedValidation& v, const unsigned) {
  a& v.validation& v.layout_checked& v.basis;
}

template <class A>
void serialize(A& a, xfer::spec::DatasetSpec& d, const unsigned) {
  a& d.name& d.kind& d.root& d.metric& d.input_size& d.flips& d.bgr_quirk& d.strict& d.heldout_fraction&
      d.heldout_seed& d.validation& d.val_fraction& d.val_seed& d.manifest& d.split_file& d.melanoma_2019&
      d.limit_train& d.limit_test& d.where& d.classes& d.upstream_only;
  // std::optional has no serializer in Boost 1.74: a flag, then the value.
  bool resolved = d.resolved.has_value();
  a& resolved;
  if (resolved) {
    if (!d.resolved) d.resolved.emplace();
    a&* d.resolved;
  } else {
    d.resolved.reset();
  }
}

template <class A>
void serialize(A& a, xfer::data::SplitSettings& s, const unsigned) {
  a& s.validation& s.heldout_fraction& s.heldout_seed& s.val_fraction& s.val_seed& s.limit_train& s.limit_test&
      s.melanoma_2019& s.manifest& s.split_file& s.strict& s.layout_checked& s.resolved_basis& s.classes;
}

template <class A>
void serialize(A& a, xfer::grid::TrialConfig& c, const unsigned) {
  a& c.model& c.weights& c.input_size& c.crop_pct;
  for (double& v : c.mean) a& v;
  for (double& v : c.std) a& v;
  a& c.dataset& c.kind& c.metric& c.flips& c.bgr_quirk& c.validation& c.heldout_fraction& c.heldout_seed&
      c.val_fraction& c.val_seed& c.limit_train& c.limit_test& c.melanoma_2019& c.manifest& c.split_file;
  a& c.optimizer& c.lr& c.weight_decay& c.wd_mode& c.momentum& c.nesterov& c.beta1& c.beta2& c.eps& c.schedule&
      c.step_milestones& c.step_gamma& c.warmup_epochs& c.label_smoothing& c.augmentation& c.seed& c.epochs&
      c.batch_size& c.precision& c.ranks_per_trial& c.pretraining& c.upstream& c.classes;
}

template <class A>
void serialize(A& a, xfer::sweep::ResolvedDataset& d, const unsigned) {
  a& d.spec& d.split;
}

template <class A>
void serialize(A& a, xfer::sweep::ResolvedTrial& t, const unsigned) {
  a& t.index& t.key& t.config& t.backbone& t.checkpoint_dir& t.keep_best_model& t.cost_gflop& t.dataset&
      t.export_backbone& t.backbone_sha256;
}

}  // namespace boost::serialization
