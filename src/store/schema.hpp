// store/schema: the results file's tables, each declared once (store/table.hpp derives the rest) — the one place
// a column's name, type, width and meaning are written.
#pragma once

#include "table.hpp"
#include "xfer/store/store.hpp"

namespace xfer::store::schema {

// Text widths. Names follow the spec's limit (spec/parse.cpp: at most 100 characters of [A-Za-z0-9_.+-]); the
// vocabulary's words fit theirs with room. Free text that has no bound of its own (paths, messages, sample ids,
// the canonical configuration) is variable-length: h5py and pandas read it like fixed text, and no legitimate
// value can be too long for it.
constexpr size_t kKey = 16;    // grid::TrialKey::kHexDigits
constexpr size_t kName = 100;  // model and dataset names
constexpr size_t kSha256 = 64;
constexpr size_t kWord = 24;   // a vocabulary word (status, metric, kind, optimizer, schedule, …)
constexpr size_t kSplit = 8;   // train | val | test
constexpr size_t kHost = 256;  // a DNS name is at most 253 characters
constexpr size_t kSlurmId = 32;
constexpr size_t kGitCommit = 40;

// A prediction index row: where a (trial, split)'s values are in /predictions/samples and /predictions/scores.
struct PredictionIndexRow {
  std::string key, split, dataset;
  int32_t classes = 0;
  int64_t offset = 0, n = 0;
};

const table::Table<TrialRow>& trials();
const table::Table<CurveRow>& curves();
const table::Table<ModelRow>& models();
const table::Table<SpecRow>& specs();
const table::Table<DatasetRow>& datasets();
const table::Table<SampleRow>& samples();
const table::Table<ProblemRow>& problems();
const table::Table<RunRow>& runs();
const table::Table<PredictionIndexRow>& prediction_index();
const table::Table<MergeConflict>& merge_conflicts();

}  // namespace xfer::store::schema
