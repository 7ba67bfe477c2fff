// `xfer splits`: the exact train / validation / test assignment of a dataset, one row per sample.
#include <memory>
#include <iostream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <CLI/CLI.hpp>

#include "commands.hpp"
#include "xfer/core/error.hpp"
#include "xfer/data/dataset.hpp"
#include "xfer/spec/catalog.hpp"
#include "xfer/spec/spec.hpp"

namespace xfer::app {

int splits(const SplitsOptions& o) {
  data::Dataset d;
  if (!o.spec.empty()) {
    if (o.dataset.empty()) throw Error::input("--spec needs --dataset NAME");
    const spec::Spec spec = data::with_layouts_resolved(spec::load(o.spec));
    const spec::DatasetSpec* ds = spec.find_dataset(o.dataset);
    if (!ds) {
      std::string names;
      for (const auto& x : spec.datasets) names += (names.empty() ? "" : ", ") + x.name;
      throw Error::input(o.spec + ": no dataset \"" + o.dataset + "\" (it has: " + names + ")");
    }
    d = data::open(spec, *ds);
  } else {
    if (o.kind.empty() || o.root.empty()) throw Error::input("give --spec SPEC --dataset NAME, or --kind KIND --root DIR");
    const spec::DatasetKind* k = spec::find_dataset_kind(o.kind);
    if (!k) throw Error::input("--kind: unknown dataset kind \"" + o.kind + "\"");
    data::SplitSettings s;
    s.validation = k->native_validation ? Validation::fixed : parse<Validation>(o.validation, "--validation");
    s.heldout_seed = o.heldout_seed >= 0 ? o.heldout_seed : std::max<long>(0, k->heldout_seed);
    s.heldout_fraction = o.heldout_fraction;
    s.val_seed = o.val_seed;
    s.val_fraction = o.val_fraction;
    s.split_file = o.split_file;
    s.manifest = o.manifest;
    s.strict = o.strict;
    d = data::open(o.kind, o.kind, o.root, s);
  }
  if (!o.out.empty()) data::write_splits_csv(d, o.out);

  const auto n_train = d.indices(data::Split::train).size(), n_val = d.indices(data::Split::val).size(),
             n_test = d.indices(data::Split::test).size();
  if (o.json) {
    nlohmann::ordered_json j{{"dataset", d.name}, {"kind", d.kind}, {"root", d.root}, {"validation", name_str(d.validation)},
                             {"classes", d.class_names}, {"multilabel", d.multilabel},
                             {"train", n_train}, {"val", n_val}, {"test", n_test},
                             {"train_per_class", d.class_counts(data::Split::train)},
                             {"test_per_class", d.class_counts(data::Split::test)},
                             {"split_sha256", d.split_hash}, {"problems", nlohmann::json::array()}};
    for (const auto& p : d.problems) j["problems"].push_back({{"id", p.id}, {"path", p.path}, {"reason", p.reason}});
    if (!o.out.empty()) j["out"] = o.out;
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << fmt::format("{} ({}), {} classes{}: train {}, val {}{}, test {}\n", d.name, d.kind, d.num_classes(),
                           d.multilabel ? " (multi-label)" : "", n_train, n_val,
                           d.validation == Validation::paper ? " (= test, paper mode)" : "", n_test);
  const auto tr = d.class_counts(data::Split::train), te = d.class_counts(data::Split::test);
  for (size_t c = 0; c < d.class_names.size(); ++c)
    std::cout << fmt::format("  {:>3} {:<36} train {:>7}  test {:>7}\n", c, d.class_names[c], tr[c], te[c]);
  std::cout << fmt::format("split sha256: {}\n", d.split_hash);
  if (!d.problems.empty()) {
    std::cout << fmt::format("{} problem{} (skipped):\n", d.problems.size(), d.problems.size() == 1 ? "" : "s");
    for (size_t i = 0; i < d.problems.size() && i < 20; ++i)
      std::cout << "  " << (d.problems[i].id.empty() ? "" : d.problems[i].id + ": ") << d.problems[i].reason
                << (d.problems[i].path.empty() ? "" : " [" + d.problems[i].path + "]") << "\n";
    if (d.problems.size() > 20) std::cout << fmt::format("  … and {} more\n", d.problems.size() - 20);
  }
  if (!o.out.empty()) std::cout << "wrote " << o.out << "\n";
  return 0;
}

Command splits_command(CLI::App& cli) {
  auto o = std::make_shared<SplitsOptions>();
  auto* sub = cli.add_subcommand("splits", "Write a dataset's exact splits (sample_id,split) and a summary");
  sub->add_option("--spec", o->spec, "experiment spec (with --dataset)");
  sub->add_option("--dataset", o->dataset, "dataset name in the spec");
  sub->add_option("--kind", o->kind, "cct20|aptos|hpa|melanoma|cassava|eurosat|imagefolder|csv|idx");
  sub->add_option("--root", o->root, "the dataset's folder as downloaded");
  sub->add_option("--out", o->out, "CSV to write: sample_id,split");
  sub->add_option("--validation", o->validation, "paper|holdout")->check(CLI::IsMember({"paper", "holdout"}));
  sub->add_option("--heldout-seed", o->heldout_seed, "default: the paper's seed for the kind");
  sub->add_option("--heldout-fraction", o->heldout_fraction, "default 0.2")->check(CLI::Range(0.0, 1.0));
  sub->add_option("--val-seed", o->val_seed, "holdout seed");
  sub->add_option("--val-fraction", o->val_fraction, "holdout share of train, default 0.1")
      ->check(CLI::Range(0.0, 1.0));
  sub->add_option("--split-file", o->split_file, "hpa: the paper's split file");
  sub->add_option("--manifest", o->manifest, "csv: the manifest file");
  sub->add_flag("--strict", o->strict, "a bad sample is an error");
  sub->add_flag("--json", o->json, "summary as JSON");
  return {sub, nullptr, [o](sweep::MpiRuntime*) { return splits(*o); }};
}

}  // namespace xfer::app
