// data/dataset_builder (internal to data/): what every kind's opener shares — the Builder that collects a layout's
// samples in file order and assigns splits (native ones, the paper's draw, the holdout carve, the limits, the
// hash), and the layout helpers. Each kind's opener is in kinds/<kind>.cpp.
#pragma once

#include <algorithm>
#include <filesystem>
#include <functional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

#include "xfer/core/digest.hpp"
#include "xfer/core/error.hpp"
#include "xfer/data/dataset.hpp"
#include "xfer/data/numpy_random.hpp"

namespace xfer::data {

namespace fs = std::filesystem;

bool is_image_file(const fs::path& p);
// A file name from a layout (a CSV id or relative path) that would leave its folder: absolute, or with `..`
// components that climb above it.
bool escapes_folder(const std::string& rel);
// For a path that is a symbolic link whose target is missing (or loops): "broken symbolic link → <target>";
// "" for anything else.
std::string broken_link_reason(const fs::path& p);

// Collects samples in file order plus what the layout says about splits; problems as they are found.
class Builder {
 public:
  Builder(const std::string& name, const std::string& kind, const std::string& root, const SplitSettings& s)
      : s_(s) {
    d_.name = name;
    d_.kind = kind;
    d_.root = root;
  }

  Dataset& d() { return d_; }
  const SplitSettings& settings() const { return s_; }

  // A sample; `native` is its split if the layout fixes one, else Split::unused (to be drawn).
  size_t add(Sample sample, Split native = Split::unused) {
    d_.samples.push_back(std::move(sample));
    native_.push_back(native);
    bad_.push_back(false);
    excluded_.push_back(false);
    return d_.samples.size() - 1;
  }
  // An unusable sample: still takes part in the paper's draws (as in the released code), then is dropped.
  void reject(size_t i, const std::string& where, const std::string& reason) {
    bad_[i] = true;
    problem(d_.samples[i].id, d_.samples[i].paths.empty() ? "" : d_.samples[i].paths[0], where, reason);
  }
  void problem(const std::string& id, const std::string& path, const std::string& where, const std::string& reason) {
    if (s_.strict) throw Error::input(where + ": " + reason + (id.empty() ? "" : " (sample " + id + ")"));
    d_.problems.push_back({id, path, reason});
  }
  // Not part of any split, by the dataset's own rules (Melanoma rows outside every fold); not a problem.
  void exclude(size_t i) { excluded_[i] = true; }
  bool bad(size_t i) const { return bad_[i]; }
  Split native(size_t i) const { return native_[i]; }

  // Labels that are in range; images that exist; ids seen once.
  void check_samples() {
    std::unordered_map<std::string, size_t> seen;
    for (size_t i = 0; i < d_.samples.size(); ++i) {
      if (bad_[i]) continue;
      auto& x = d_.samples[i];
      if (auto [it, fresh] = seen.emplace(x.id, i); !fresh) {
        reject(i, d_.root, "duplicate sample id \"" + x.id + "\" (first seen as sample " + std::to_string(it->second) + ")");
        continue;
      }
      for (const auto& p : x.paths) {
        std::error_code ec;
        // A kind that builds paths from ids (all but csv, whose manifest may name absolute paths): never outside the
        // root, whatever an id holds (`..`, a leading /).
        if (d_.kind != "csv" && escapes_folder(fs::path(p).lexically_normal().lexically_relative(fs::path(d_.root).lexically_normal()).string())) {
          reject(i, p, "sample id \"" + x.id + "\" names a file outside the dataset root; refused");
          break;
        }
        if (!fs::is_regular_file(p, ec)) {
          const std::string link = broken_link_reason(p);
          reject(i, p, link.empty() ? "image file is missing" : link);
          break;
        }
      }
    }
    // Empty classes: a class with no usable sample at all.
    std::vector<int64_t> count(d_.class_names.size(), 0);
    for (size_t i = 0; i < d_.samples.size(); ++i) {
      if (bad_[i]) continue;
      if (d_.multilabel) for (auto l : d_.samples[i].labels) count[l]++;
      else if (d_.samples[i].label >= 0) count[static_cast<size_t>(d_.samples[i].label)]++;
    }
    for (size_t c = 0; c < count.size(); ++c)
      if (count[c] == 0 && !d_.multilabel)
        problem("", d_.root, d_.root, "class " + std::to_string(c) + " (\"" + d_.class_names[c] + "\") has no samples");
  }

  // Per class (0..K-1), in file order, the samples with an in-range label — bad ones included, as the released
  // code sees every row of its CSV.
  std::vector<std::vector<int64_t>> by_class(const std::vector<int64_t>& pool) const {
    std::vector<std::vector<int64_t>> out(d_.class_names.size());
    for (int64_t i : pool) {
      const auto& x = d_.samples[static_cast<size_t>(i)];
      const int c = d_.multilabel ? (x.labels.empty() ? -1 : x.labels.front()) : x.label;
      if (c >= 0 && c < static_cast<int>(out.size())) out[static_cast<size_t>(c)].push_back(i);
    }
    return out;
  }

  // The paper's held-out draw: np.random.seed(seed); per class, choice(class rows, int(f · n_c), replace=False).
  std::set<int64_t> paper_heldout(const std::vector<int64_t>& pool, double fraction, int64_t seed) const {
    LegacyRandomState rs(static_cast<uint32_t>(seed));
    std::set<int64_t> held;
    for (const auto& rows : by_class(pool)) {
      const auto k = static_cast<int64_t>(fraction * static_cast<double>(rows.size()));
      for (int64_t i : rs.choice_without_replacement(rows, k)) held.insert(i);
    }
    return held;
  }

  // Stratified subsample of `pool` to `limit` (largest-remainder quotas per class), drawn like the paper's draws.
  std::set<int64_t> subsample(const std::vector<int64_t>& pool, int64_t limit, uint32_t seed) const {
    std::set<int64_t> keep;
    if (limit <= 0 || limit >= static_cast<int64_t>(pool.size())) {
      keep.insert(pool.begin(), pool.end());
      return keep;
    }
    auto classes = by_class(pool);
    std::vector<int64_t> unlabeled;  // multi-label rows without a positive class
    if (d_.multilabel)
      for (int64_t i : pool)
        if (d_.samples[static_cast<size_t>(i)].labels.empty()) unlabeled.push_back(i);
    classes.push_back(unlabeled);
    const double n = static_cast<double>(pool.size());
    std::vector<int64_t> quota(classes.size());
    std::vector<std::pair<double, size_t>> rest;
    int64_t given = 0;
    for (size_t c = 0; c < classes.size(); ++c) {
      const double exact = static_cast<double>(limit) * static_cast<double>(classes[c].size()) / n;
      quota[c] = static_cast<int64_t>(exact);
      given += quota[c];
      rest.push_back({exact - static_cast<double>(quota[c]), c});
    }
    std::stable_sort(rest.begin(), rest.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    for (size_t r = 0; given < limit && r < rest.size(); ++r) quota[rest[r].second]++, ++given;
    LegacyRandomState rs(seed);
    for (size_t c = 0; c < classes.size(); ++c)
      for (int64_t i : rs.choice_without_replacement(classes[c], std::min<int64_t>(quota[c], classes[c].size())))
        keep.insert(i);
    return keep;
  }

  // Splits: native where the layout has them, the paper's draw otherwise; then bad samples out, the holdout
  // carve, the limits, and the hash.
  Dataset finish(const std::set<int64_t>* heldout_override = nullptr) {
    check_samples();
    const size_t n = d_.samples.size();
    d_.split.assign(n, Split::unused);
    std::vector<int64_t> pool;
    bool has_native_val = false, has_native = false;
    for (size_t i = 0; i < n; ++i) {
      if (native_[i] == Split::unused) pool.push_back(static_cast<int64_t>(i));
      else has_native = true;
      has_native_val |= native_[i] == Split::val;
    }
    std::set<int64_t> held;
    heldout_fixed_ = heldout_override != nullptr;
    if (heldout_override) held = *heldout_override;
    else if (!pool.empty()) held = paper_heldout(pool, s_.heldout_fraction, s_.heldout_seed);
    for (size_t i = 0; i < n; ++i) {
      if (native_[i] != Split::unused) d_.split[i] = native_[i];
      else d_.split[i] = held.count(static_cast<int64_t>(i)) ? Split::test : Split::train;
      if (bad_[i] || excluded_[i]) d_.split[i] = Split::unused;
    }
    if (s_.layout_checked) {
      // The trials were keyed with this mode: running another split would put results under the wrong keys.
      if (has_native_val != (s_.validation == Validation::fixed))
        throw Error::input(d_.root + ": dataset \"" + d_.name + "\" (" + d_.kind + ") was resolved to validation = " +
                           name_str(s_.validation) + " (" + s_.resolved_basis + ") before its trials were keyed, but the layout " +
                           "on disk now " + (has_native_val ? "has" : "has no") + " validation split: the data " +
                           "changed between planning and running; restore it, or plan again (the trial keys change)");
      d_.validation = s_.validation;
    } else {
      d_.validation = has_native_val ? Validation::fixed
                                     : (s_.validation == Validation::fixed ? Validation::paper : s_.validation);
    }

    // Limits first (the demo's small Fashion-MNIST), so the holdout is carved from the limited train pool.
    auto in_split = [&](Split s) {
      std::vector<int64_t> v;
      for (size_t i = 0; i < n; ++i)
        if (d_.split[i] == s) v.push_back(static_cast<int64_t>(i));
      return v;
    };
    const uint32_t base = static_cast<uint32_t>(s_.heldout_seed);
    if (s_.limit_train > 0) {
      const auto train = in_split(Split::train);
      const auto keep = subsample(train, s_.limit_train, base ^ 0x5EEDU);
      for (int64_t i : train)
        if (!keep.count(i)) d_.split[static_cast<size_t>(i)] = Split::unused;
    }
    if (s_.limit_test > 0) {
      const auto test = in_split(Split::test);
      const auto keep = subsample(test, s_.limit_test, base ^ 0x7E57U);
      for (int64_t i : test)
        if (!keep.count(i)) d_.split[static_cast<size_t>(i)] = Split::unused;
    }
    if (d_.validation == Validation::holdout) {
      const auto train = in_split(Split::train);
      LegacyRandomState rs(static_cast<uint32_t>(s_.val_seed));
      for (const auto& rows : by_class(train)) {
        const auto k = static_cast<int64_t>(s_.val_fraction * static_cast<double>(rows.size()));
        for (int64_t i : rs.choice_without_replacement(rows, k)) d_.split[static_cast<size_t>(i)] = Split::val;
      }
    }
    Sha256 h;
    for (size_t i = 0; i < n; ++i)
      if (d_.split[i] != Split::unused) h.update(d_.samples[i].id + "," + split_name(d_.split[i]) + "\n");
    d_.split_hash = h.hex();
    if (d_.indices(Split::train).empty())
      throw Error::input(d_.root + ": dataset \"" + d_.name + "\" (" + d_.kind + ") has no usable training samples" +
                         (d_.problems.empty() ? "" : " (" + std::to_string(d_.problems.size()) + " problems, first: " +
                                                         d_.problems.front().reason + ")"));
    check_not_empty(has_native && pool.empty());
    return std::move(d_);
  }

 private:
  // Every split a trial uses must hold a sample: an empty validation split leaves no epoch to select (the trial
  // would end `done` with NaN), an empty test split no result. Says which split, its size and what to change.
  void check_not_empty(bool all_native) const {
    const std::string what = d_.root + ": dataset \"" + d_.name + "\" (" + d_.kind + "): ";
    const auto train = d_.indices(Split::train);
    const auto test = d_.indices(Split::test);
    int64_t largest = 0;  // training samples in the largest class
    for (const auto& rows : by_class(train)) largest = std::max<int64_t>(largest, static_cast<int64_t>(rows.size()));
    const std::string problems =
        d_.problems.empty() ? "" : " (" + std::to_string(d_.problems.size()) + " problems, first: " + d_.problems.front().reason + ")";
    if (d_.validation == Validation::holdout && d_.indices(Split::val).empty())
      throw Error::input(fmt::format(
          "{}the val split is empty (0 samples): validation = \"holdout\" carves int(val_fraction × n) samples per "
          "class from the {} training samples, and with val_fraction {} and at most {} per class that is 0. Raise "
          "val_fraction (to at least {:.3g}){}, or validate on the held-out set (the dataset's validation = \"paper\" or study.selection = \"paper\")",
          what, train.size(), s_.val_fraction, largest, largest > 0 ? 1.0 / static_cast<double>(largest) : 1.0,
          s_.limit_train > 0 ? " or limit_train (now " + std::to_string(s_.limit_train) + ")" : ""));
    if (d_.validation == Validation::fixed && d_.indices(Split::val).empty())
      throw Error::input(what + "the val split is empty (0 usable samples) although the layout has one" +
                         (s_.resolved_basis.empty() ? "" : " (" + s_.resolved_basis + ")") + problems +
                         ": put images in it, or remove it to carve validation from train");
    if (test.empty()) {
      const bool paper_val = d_.validation == Validation::paper;
      const std::string as = paper_val ? "the test split (also the validation split, validation = \"paper\")"
                                       : "the test split";
      if (heldout_fixed_ || all_native)
        throw Error::input(what + as + " is empty (0 usable samples) in the layout" + problems +
                           ": add test images (a test/ folder, test rows), or raise limit_test if it is set");
      throw Error::input(fmt::format(
          "{}{} is empty (0 samples): the held-out draw takes int(heldout_fraction × n) samples per class, and with "
          "heldout_fraction {} that is 0 for every class{}. Raise heldout_fraction or add samples",
          what, as, s_.heldout_fraction, s_.limit_test > 0 ? " (limit_test " + std::to_string(s_.limit_test) + ")" : ""));
    }
  }

  Dataset d_;
  bool heldout_fixed_ = false;  // finish() was told the held-out set (a layout with its own test split)
  const SplitSettings& s_;
  std::vector<Split> native_;
  std::vector<bool> bad_;
  std::vector<bool> excluded_;
};

[[noreturn]] void layout_error(const std::string& kind, const std::string& root, const std::string& expected);
std::string join(const fs::path& a, const std::string& b);
// std::stoi of the whole string; *ok false on anything else.
int parse_int(const std::string& s, bool* ok);
// APTOS 2019 and Cassava: train.csv (id, label) + train_images/.
Dataset open_kaggle_csv(Builder& b, const std::string& id_col, const std::string& label_col, const std::string& ext,
                        const std::vector<std::string>& names);
// EuroSAT and ImageFolder: classes are the sorted folder names; files in sorted(os.walk) order, as torchvision.
void add_image_folder(Builder& b, const fs::path& dir, const std::vector<std::string>& classes, Split native,
                      const fs::path& id_base);
// The image files under `dir` (recursively, following directory links) in sorted(os.walk) order. A link that loops
// back to a folder above it, a broken link and an entry whose status cannot be read are passed to `problem` and
// skipped; a folder that cannot be listed (permission denied) is an input error naming it.
void walk_images(const fs::path& dir, const std::function<void(const fs::path&)>& image,
                 const std::function<void(const fs::path&, const std::string&)>& problem);
// Sorted subfolder names (following links); a folder that cannot be listed is an input error naming it.
std::vector<std::string> subfolders(const fs::path& dir);

}  // namespace xfer::data
