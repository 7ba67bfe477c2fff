// Opening a dataset through its kind's opener (kinds/<kind>.cpp), resolving the validation split from the layout
// before trials are keyed, and the splits CSV.
#include "xfer/data/dataset.hpp"

#include <filesystem>
#include <fstream>

#include <spdlog/spdlog.h>

#include "kinds/kind_opener.hpp"
#include "xfer/core/error.hpp"
#include "xfer/data/transform.hpp"
#include "xfer/spec/dataset_kind.hpp"
#include "xfer/spec/spec.hpp"

namespace fs = std::filesystem;

namespace xfer::data {

const char* split_name(Split s) {
  switch (s) {
    case Split::train: return "train";
    case Split::val: return "val";
    case Split::test: return "test";
    default: return "unused";
  }
}

std::vector<int64_t> Dataset::indices(Split s) const {
  const Split want = (s == Split::val && validation == Validation::paper) ? Split::test : s;
  std::vector<int64_t> out;
  for (size_t i = 0; i < split.size(); ++i)
    if (split[i] == want) out.push_back(static_cast<int64_t>(i));
  return out;
}

std::vector<int64_t> Dataset::class_counts(Split s) const {
  std::vector<int64_t> c(class_names.size(), 0);
  for (int64_t i : indices(s)) {
    const auto& x = samples[static_cast<size_t>(i)];
    if (multilabel) for (auto l : x.labels) c[l]++;
    else c[static_cast<size_t>(x.label)]++;
  }
  return c;
}

Dataset open(const std::string& name, const std::string& kind, const std::string& root, const SplitSettings& s) {
  const KindOpener* opener = find_kind_opener(kind);
  if (!opener) throw Error::input("dataset \"" + name + "\": unknown kind \"" + kind + "\"");
  std::error_code ec;
  if (!fs::is_directory(root, ec))
    throw Error::input(root + ": dataset \"" + name + "\" (" + kind + "): the root folder does not exist");
  max_image_pixels();  // a malformed XFER_MAX_IMAGE_PIXELS is an input error here, not a skip of every image
  Builder b(name, kind, root, s);
  return opener->open(b);
}

std::vector<std::string> opener_kinds() {
  std::vector<std::string> out;
  for (const KindOpener* k : kind_openers()) out.push_back(k->kind);
  return out;
}

void resolve_layouts(spec::Spec& spec) {
  for (auto& d : spec.datasets) {
    const spec::DatasetKind* kind = spec::find_dataset_kind(d.kind);
    const KindOpener* opener = find_kind_opener(d.kind);
    if (!kind || !opener) throw Error::input(d.where.str() + ": dataset \"" + d.name + "\": unknown kind \"" + d.kind + "\"");
    std::error_code ec;
    const bool on_disk = d.root.resolved() && fs::is_directory(d.root.path, ec);
    spec::ResolvedValidation r;
    r.layout_checked = on_disk;
    const std::string from_spec = d.validation.empty() ? "study.selection" : "the dataset's `validation`";
    if (kind->native_validation) {
      r.validation = Validation::fixed;
      r.basis = "kind \"" + d.kind + "\" ships its own validation split";
    } else if (!kind->validation_from_layout) {
      r.validation = spec.requested_validation(d);
      r.basis = from_spec;
    } else if (!on_disk) {
      r.validation = spec.requested_validation(d);
      r.basis = from_spec + "; the layout was not checked";
      spdlog::warn("{}: dataset \"{}\" ({}): root {} is {}, so its validation split cannot be checked; planned as "
                   "validation = {} from the spec. If the data has a validation split (a val/ folder, a split column), "
                   "the trials run with it get other keys",
                   d.root.where.str(), d.name, d.kind, d.root.raw,
                   d.root.resolved() ? "not there yet" : "under an unset ${" + d.root.unset_var + "}",
                   name(r.validation));
    } else if (const auto split = opener->validation_split(d.root.path, d)) {
      if (!d.validation.empty())
        spdlog::warn("{}: dataset \"{}\": `validation = \"{}\"` is not used: the layout has {}", d.where.str(), d.name,
                     d.validation, *split);
      r.validation = Validation::fixed;
      r.basis = *split;
    } else {
      r.validation = spec.requested_validation(d);
      r.basis = "no validation split in the layout; " + from_spec;
    }
    d.resolved = r;
  }
}

spec::Spec with_layouts_resolved(spec::Spec spec) {
  resolve_layouts(spec);
  return spec;
}

SplitSettings split_settings(const spec::Spec& spec, const spec::DatasetSpec& d) {
  SplitSettings s;
  s.validation = spec.validation_mode(d);
  s.heldout_fraction = d.heldout_fraction;
  s.heldout_seed = spec.heldout_seed_of(d);
  s.val_fraction = d.val_fraction;
  s.val_seed = spec.val_seed_of(d);
  s.limit_train = d.limit_train;
  s.limit_test = d.limit_test;
  s.melanoma_2019 = d.melanoma_2019;
  s.manifest = d.manifest;
  s.split_file = d.split_file;
  s.classes = d.classes;
  s.strict = d.strict;
  s.layout_checked = d.resolved && d.resolved->layout_checked;
  s.resolved_basis = d.resolved ? d.resolved->basis : "";
  return s;
}

Dataset open(const spec::Spec& spec, const spec::DatasetSpec& d) {
  if (!d.root.resolved())
    throw Error::input(d.root.where.str() + ": dataset \"" + d.name + "\": root \"" + d.root.raw + "\" names ${" +
                       d.root.unset_var + "}, which is unset");
  return open(d.name, d.kind, d.root.path, split_settings(spec, d));
}

void write_splits_csv(const Dataset& d, const std::string& path) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary);
    if (!out) throw Error::input(path + ": cannot write");
    out << "sample_id,split\n";
    for (size_t i = 0; i < d.samples.size(); ++i) {
      if (d.split[i] == Split::unused) continue;
      const std::string& id = d.samples[i].id;
      if (id.find_first_of(",\"\n") != std::string::npos) {
        std::string q = "\"";
        for (char c : id) q += c == '"' ? std::string("\"\"") : std::string(1, c);
        out << q << "\"," << split_name(d.split[i]) << "\n";
      } else {
        out << id << "," << split_name(d.split[i]) << "\n";
      }
    }
    if (!out) throw Error(path + ": write failed");
  }
  fs::rename(tmp, path);
}

}  // namespace xfer::data

