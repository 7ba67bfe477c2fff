// Datasets in-process: every native layout on generated replicas (real encoded images, planted defects), the eval
// transform against torchvision, RandomResizedCrop's box distribution, bad input, the loader, the kind registry and
// what is keyed is what runs. Through the binary (`xfer splits` against numpy, `xfer plan`'s view of the layouts):
// tests/system/data_cli_test.cpp.
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/dataset_fixtures.hpp"
#include "support/process.hpp"
#include "support/tempdir.hpp"
#include "xfer/core/error.hpp"
#include "xfer/data/dataset.hpp"
#include "xfer/data/loader.hpp"
#include "xfer/data/numpy_random.hpp"
#include "xfer/data/transform.hpp"
#include "xfer/grid/grid.hpp"
#include "xfer/spec/catalog.hpp"
#include "xfer/spec/spec.hpp"

namespace fs = std::filesystem;

namespace xfer::test {
namespace {


TEST_F(Fixtures, EveryNativeLayoutOpensWithItsCountsAndProblems) {
  for (const auto& [layout, e] : expected_.items()) {
    SCOPED_TRACE(layout);
    const data::Dataset d = open(layout);
    EXPECT_EQ(d.num_classes(), e["classes"].get<int>());
    EXPECT_EQ(static_cast<int>(d.problems.size()), e["index_problems"].get<int>());
    for (const auto& p : d.problems) EXPECT_FALSE(p.reason.empty());
    const auto tr = d.indices(data::Split::train).size(), va = d.indices(data::Split::val).size(),
               te = d.indices(data::Split::test).size();
    if (e.contains("train")) {
      EXPECT_EQ(tr, e["train"].get<size_t>());
      EXPECT_EQ(te, e["test"].get<size_t>());
      if (e.contains("val")) {
        EXPECT_EQ(va, e["val"].get<size_t>());
      }
    }
    // Every row is in a split or reported (an empty class is a problem without a row; paper-mode val = test).
    const size_t in_splits = tr + te + (d.validation == Validation::paper ? 0 : va);
    if (e.contains("rows") && layout != "melanoma") {
      EXPECT_EQ(in_splits + d.problems.size() - (layout == "imagefolder" ? 1 : 0), e["rows"].get<size_t>());
    }
    EXPECT_EQ(d.split_hash.size(), 64u);
    if (e.value("multilabel", false) || layout.rfind("hpa", 0) == 0) {
      EXPECT_TRUE(d.multilabel);
    }
  }
}


TEST_F(Fixtures, FixedSplitsAreTheFilesOwn) {
  const data::Dataset hpa = open("hpa");
  EXPECT_EQ(hpa.validation, Validation::fixed);
  EXPECT_EQ(hpa.indices(data::Split::val).size(), 10u);
  const data::Dataset cct = open("cct20");
  EXPECT_EQ(cct.validation, Validation::fixed);
  EXPECT_EQ(std::count(cct.class_names.begin(), cct.class_names.end(), "empty"), 0) << "\"empty\" (30) is dropped";
  EXPECT_EQ(cct.class_names[11], "species_33");
  // Melanoma: rows outside every fold are in neither split; 2019 rows exist.
  const data::Dataset mel = open("melanoma");
  size_t y2019 = 0, unused = 0;
  for (size_t i = 0; i < mel.samples.size(); ++i) {
    y2019 += mel.samples[i].group == "2019" && mel.split[i] != data::Split::unused;
    unused += mel.split[i] == data::Split::unused;
  }
  EXPECT_EQ(unused, 6u);
  EXPECT_EQ(y2019, 60u);
}

TEST_F(Fixtures, HoldoutCarvesValidationFromTrainReproducibly) {
  data::SplitSettings s = paper("aptos");
  s.validation = Validation::holdout;
  s.val_seed = 99;
  const auto a = data::open("a", "aptos", root("aptos"), s);
  const auto b = data::open("a", "aptos", root("aptos"), s);
  EXPECT_EQ(a.validation, Validation::holdout);
  EXPECT_EQ(a.split_hash, b.split_hash);
  const auto val = a.indices(data::Split::val), test = a.indices(data::Split::test);
  EXPECT_GT(val.size(), 10u);
  for (auto i : val) EXPECT_EQ(std::count(test.begin(), test.end(), i), 0);
  // The held-out test set is the paper's, untouched by the carve.
  const auto p = open("aptos");
  EXPECT_EQ(p.indices(data::Split::test), test);
  s.val_seed = 100;
  EXPECT_NE(data::open("a", "aptos", root("aptos"), s).split_hash, a.split_hash);
}

TEST_F(Fixtures, LimitsSubsampleStratified) {
  data::SplitSettings s = paper("eurosat");
  s.limit_train = 50;
  s.limit_test = 20;
  const auto d = data::open("e", "eurosat", root("eurosat"), s);
  EXPECT_EQ(d.indices(data::Split::train).size(), 50u);
  EXPECT_EQ(d.indices(data::Split::test).size(), 20u);
  for (auto c : d.class_counts(data::Split::train)) EXPECT_GE(c, 3);
}

TEST_F(Fixtures, StrictModeTurnsAProblemIntoAnErrorNamingFileAndLine) {
  data::SplitSettings s = paper("aptos");
  s.strict = true;
  try {
    data::open("a", "aptos", root("aptos"), s);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("train.csv:"), std::string::npos) << e.what();
  }
}


TEST_F(Fixtures, EvalTransformMatchesTorchvisionToTheBit) {
  // Formats and modes: PNG RGB, JPEG, grey PNG, RGBA PNG, TIFF, BMP; sizes from 36 to 100 px; S and crop_pct vary.
  std::vector<std::string> images;
  for (const auto& e : fs::directory_iterator(root("imagefolder") + "/wasps")) images.push_back(e.path().string());
  for (const auto& e : fs::directory_iterator(root("cassava") + "/train_images"))
    if (images.size() < 24) images.push_back(e.path().string());
  std::sort(images.begin(), images.end());
  // Leave out the two planted undecodable Cassava files.
  images.erase(std::remove_if(images.begin(), images.end(),
                              [&](const std::string& p) {
                                for (const auto& [id, kind] : expected_["cassava"]["decode_ids"].items())
                                  if (p.find(id) != std::string::npos) return true;
                                return false;
                              }),
               images.end());
  for (const auto& [S, crop] : {std::pair<int, double>{64, 1.0}, {32, 0.875}, {97, 1.0}}) {
    TempDir out("ref");
    std::string cmd = std::string(XFER_PYTHON) + " " + quote(std::string(XFER_SOURCE_DIR) + "/tests/reference/transform_ref.py") +
                      " " + std::to_string(S) + " " + std::to_string(crop) + " " + quote(out.str());
    for (const auto& p : images) cmd += " " + quote(p);
    const Result r = run(cmd);
    ASSERT_EQ(r.status, 0) << r.err;
    data::TransformSettings ts;
    ts.size = S;
    ts.crop_pct = crop;
    const data::Transform t(ts);
    for (size_t i = 0; i < images.size(); ++i) {
      std::vector<float> got(3 * S * S);
      t.normalise(t.pixels_from(data::decode_file(images[i], false), 0, 0), got.data());
      std::vector<float> want(got.size());
      std::ifstream in(out / (std::to_string(i) + ".f32"), std::ios::binary);
      in.read(reinterpret_cast<char*>(want.data()), static_cast<std::streamsize>(want.size() * 4));
      ASSERT_TRUE(in) << images[i];
      size_t differ = 0;
      for (size_t j = 0; j < got.size(); ++j) differ += got[j] != want[j];
      EXPECT_EQ(differ, 0u) << images[i] << " at S=" << S << ", crop_pct=" << crop;
    }
  }
}

TEST_F(Fixtures, RandomResizedCropBoxesAreDistributedAsTorchvisions) {
  for (const auto& [rows, cols] : {std::pair<int, int>{256, 256}, {300, 500}, {500, 120}}) {
    TempDir out("rrc");
    const std::string path = (out / "boxes.csv").string();
    {
      std::ofstream f(path);
      data::Rng rng(2024);
      for (int i = 0; i < 20000; ++i) {
        const auto b = data::random_resized_crop_box(rows, cols, 0.65, 1.0, 3.0 / 4.0, 4.0 / 3.0, rng);
        ASSERT_GE(b.top, 0);
        ASSERT_LE(b.top + b.height, rows);
        ASSERT_LE(b.left + b.width, cols);
        f << b.top << "," << b.left << "," << b.height << "," << b.width << "\n";
      }
    }
    const Result r = run(std::string(XFER_PYTHON) + " " + quote(std::string(XFER_SOURCE_DIR) + "/tests/reference/rrc_ks.py") +
                         " " + quote(path) + " " + std::to_string(rows) + " " + std::to_string(cols) + " 0.65 1.0");
    ASSERT_EQ(r.status, 0) << r.err;
    const auto p = nlohmann::json::parse(r.out);
    for (const auto& [k, v] : p.items()) EXPECT_GT(v.get<double>(), 1e-3) << rows << "x" << cols << " " << k << ": KS p-value";
  }
}

TEST_F(Fixtures, DecodingHandlesModesDepthsAndPlanes) {
  // 16-bit PNG → 8-bit; RGBA → RGB; grey stays 1 channel; HPA planes → 3 channels; BGR quirk swaps R and B.
  const auto deep = data::decode_file(root("imagefolder") + "/ants/deep16.png", false);
  EXPECT_EQ(deep.channels, 1);
  const data::Dataset hpa = open("hpa");
  const auto planes = data::decode(hpa, 0, false);
  EXPECT_EQ(planes.channels, 3);
  EXPECT_EQ(planes.rows, 48);
  const auto red = data::decode_file(hpa.samples[0].paths[0], false);
  EXPECT_EQ(planes.px[0], red.px[0]);
  EXPECT_EQ(data::decode(hpa, 0, true).px[2], red.px[0]) << "bgr_quirk puts red last";
  const data::Dataset rgby = open("hpa_rgby");
  EXPECT_EQ(data::decode(rgby, 0, false).channels, 3) << "the yellow plane is dropped";
  const data::Dataset idx = open("idx");
  const auto m = data::decode(idx, 3, false);
  EXPECT_EQ(m.rows, 8);
  EXPECT_EQ(m.channels, 1);
}

TEST_F(Fixtures, EightKindsOfBadInputAreCountedAndReportedNotFatal) {
  // Index-time: label out of range, duplicate id, missing image, malformed row (APTOS), bad multi-label target,
  // bad split value (HPA), unknown category (CCT-20), empty class (ImageFolder).
  std::set<std::string> index_kinds;
  for (const char* layout : {"aptos", "hpa", "cct20", "imagefolder", "csv"})
    for (const auto& p : open(layout).problems) {
      const std::string& r = p.reason;
      for (const char* k : {"not a class", "duplicate", "missing", "fields", "Target", "Split", "category_id", "no samples",
                            "split '"})
        if (r.find(k) != std::string::npos) index_kinds.insert(k);
    }
  EXPECT_GE(index_kinds.size(), 8u);
  // Load-time: corrupt bytes, truncated PNG, empty file, unsupported format (GIF), truncated JPEG, a text file.
  std::set<std::string> decode_kinds;
  size_t dropped = 0;
  for (const char* layout : {"aptos", "cassava"}) {
    const data::Dataset d = open(layout);
    std::vector<int64_t> all = d.indices(data::Split::train);
    const auto test = d.indices(data::Split::test);
    all.insert(all.end(), test.begin(), test.end());
    data::TransformSettings ts;
    ts.size = 16;
    data::LoaderOptions lo;
    lo.batch_size = 32;
    lo.threads = 2;
    data::Loader loader(d, all, ts, lo);
    loader.start_epoch(0);
    int64_t seen = 0;
    while (auto b = loader.next()) seen += b->n;
    const auto problems = loader.problems();
    dropped += problems.size();
    EXPECT_EQ(static_cast<size_t>(seen + static_cast<int64_t>(problems.size())), all.size()) << layout;
    EXPECT_EQ(problems.size(), expected_[layout]["decode_ids"].size()) << layout;
    for (const auto& p : problems) {
      EXPECT_TRUE(expected_[layout]["decode_ids"].contains(p.id)) << p.id;
      EXPECT_FALSE(p.path.empty());
      for (const char* k : {"truncated JPEG", "truncated PNG", "empty file", "not a decodable image"})
        if (p.reason.find(k) != std::string::npos) decode_kinds.insert(k);
    }
  }
  EXPECT_EQ(dropped, 6u);
  EXPECT_EQ(decode_kinds.size(), 4u);
}

TEST_F(Fixtures, LoaderStrictModeFailsWithThePath) {
  const data::Dataset d = open("cassava");
  data::TransformSettings ts;
  ts.size = 16;
  data::LoaderOptions lo;
  lo.batch_size = 64;
  lo.threads = 1;
  data::Loader loader(d, d.indices(data::Split::train), ts, lo);
  loader.start_epoch(0);
  // Non-strict by default: everything decodable comes through; the same loader re-run gives the same batches.
  int64_t n = 0;
  while (auto b = loader.next()) n += b->n;
  EXPECT_GT(n, 100);
}

TEST_F(Fixtures, LoaderOverAnAllUndecodableSplitReportsNoUsableSample) {
  // An imagefolder whose every training image is a 0-byte file: the listing passes (the files exist), and only the
  // loader can tell that nothing decodes. Its tally says so, for the trainer to fail the trial (reliability B8).
  TempDir dir;
  std::string an_image;
  for (const auto& e : fs::recursive_directory_iterator(root("eurosat")))
    if (e.is_regular_file() && e.path().extension() == ".jpg") {
      an_image = e.path().string();
      break;
    }
  ASSERT_FALSE(an_image.empty());
  for (const char* c : {"cat", "dog"})
    for (int i = 0; i < 5; ++i) {
      dir.write(std::string("train/") + c + "/" + std::to_string(i) + ".jpg", "");
      fs::create_directories(dir / (std::string("test/") + c));
      fs::copy_file(an_image, dir / (std::string("test/") + c + "/" + std::to_string(i) + ".jpg"));
    }
  data::SplitSettings s;
  s.validation = Validation::paper;
  const data::Dataset d = data::open("allbad", "imagefolder", dir.str(), s);
  ASSERT_EQ(d.indices(data::Split::train).size(), 10u);
  data::TransformSettings ts;
  ts.size = 16;
  ts.train = true;
  for (int world : {1, 2}) {
    data::EpochTally total;
    int64_t delivered = 0;
    for (int rank = 0; rank < world; ++rank) {
      data::LoaderOptions lo;
      lo.batch_size = 4;
      lo.rank = rank;
      lo.world = world;
      lo.shuffle = true;
      lo.threads = 2;
      data::Loader loader(d, d.indices(data::Split::train), ts, lo);
      loader.start_epoch(0);
      while (auto b = loader.next()) {
        EXPECT_EQ(b->n, 0);
        delivered += static_cast<int64_t>(b->skipped.size());
      }
      const data::EpochTally t = loader.epoch_tally();
      EXPECT_EQ(t.usable, 0);
      EXPECT_EQ(t.skipped, t.samples);
      EXPECT_EQ(loader.problems().size(), static_cast<size_t>(t.skipped));
      for (const auto& p : loader.problems()) EXPECT_NE(p.reason.find(": empty file"), std::string::npos) << p.reason;
      total += t;
      // A fresh epoch starts a fresh tally.
      loader.start_epoch(1);
      EXPECT_EQ(loader.epoch_tally().samples, 0);
    }
    EXPECT_EQ(delivered, 10);
    EXPECT_EQ(total.samples, 10);
    EXPECT_EQ(total.skipped, 10);
    const auto message = data::no_usable_samples(total, "training");
    ASSERT_TRUE(message.has_value());
    EXPECT_EQ(message->rfind("no usable training samples: 10 of 10 undecodable (first: " + dir.str() + "/train/", 0), 0u)
        << *message;
    EXPECT_NE(message->find(".jpg: empty file)"), std::string::npos) << *message;
  }
  // The test split decodes: no message.
  data::TransformSettings es;
  es.size = 16;
  data::LoaderOptions lo;
  lo.batch_size = 4;
  data::Loader test(d, d.indices(data::Split::test), es, lo);
  test.start_epoch(0);
  while (test.next()) {
  }
  EXPECT_EQ(test.epoch_tally().usable, 10);
  EXPECT_FALSE(data::no_usable_samples(test.epoch_tally(), "test").has_value());
}

class LoaderTest : public Fixtures {};

TEST_F(LoaderTest, EachSampleOncePerEpochShardedAndDeterministic) {
  const data::Dataset d = open("eurosat");
  const auto train = d.indices(data::Split::train);
  data::TransformSettings ts;
  ts.size = 24;
  ts.train = true;
  ts.flips = Flips::h;
  ts.seed = 5;
  auto collect = [&](int rank, int world, int threads, int epoch, int64_t first = 0) {
    data::LoaderOptions lo;
    lo.batch_size = 16;
    lo.rank = rank;
    lo.world = world;
    lo.shuffle = true;
    lo.seed = 5;
    lo.threads = threads;
    lo.prefetch = 3;
    data::Loader l(d, train, ts, lo);
    EXPECT_EQ(l.buffer_bytes(), 3u * ((16 + world - 1) / world) * 3 * 24 * 24 * sizeof(float));
    l.start_epoch(epoch, first);
    std::vector<std::pair<int64_t, std::vector<float>>> out;
    while (auto b = l.next()) {
      EXPECT_EQ(b->global_n, std::min<int64_t>(16, static_cast<int64_t>(train.size()) - b->index * 16));
      for (int64_t i = 0; i < b->n; ++i)
        out.push_back({b->samples[i], std::vector<float>(b->data + i * 3 * 24 * 24, b->data + (i + 1) * 3 * 24 * 24)});
    }
    return out;
  };
  const auto one = collect(0, 1, 1, 0);
  ASSERT_EQ(one.size(), train.size());
  std::set<int64_t> seen;
  for (const auto& [s, px] : one) seen.insert(s);
  EXPECT_EQ(seen.size(), train.size());
  // More threads: identical stream.
  const auto threaded = collect(0, 1, 3, 0);
  ASSERT_EQ(threaded.size(), one.size());
  for (size_t i = 0; i < one.size(); ++i) {
    EXPECT_EQ(threaded[i].first, one[i].first);
    EXPECT_EQ(threaded[i].second, one[i].second);
  }
  // Two ranks: their shards interleave into the single-rank stream.
  const auto r0 = collect(0, 2, 2, 0), r1 = collect(1, 2, 2, 0);
  EXPECT_EQ(r0.size() + r1.size(), one.size());
  size_t a = 0, b = 0, k = 0;
  for (int64_t batch = 0; k < one.size(); ++batch) {
    const int64_t len = std::min<int64_t>(16, static_cast<int64_t>(one.size() - k));
    for (int64_t i = 0; i < len / 2; ++i, ++k) EXPECT_EQ(r0[a++].first, one[k].first);
    for (int64_t i = len / 2; i < len; ++i, ++k) EXPECT_EQ(r1[b++].first, one[k].first);
  }
  // Resume from batch 3: the same batches as the uninterrupted epoch from there on.
  const auto resumed = collect(0, 1, 2, 0, 3);
  ASSERT_EQ(resumed.size(), one.size() - 48);
  for (size_t i = 0; i < resumed.size(); ++i) EXPECT_EQ(resumed[i].second, one[i + 48].second);
  // Another epoch: another order and other augmentations.
  const auto next = collect(0, 1, 1, 1);
  size_t same = 0;
  for (size_t i = 0; i < next.size(); ++i) same += next[i].first == one[i].first;
  EXPECT_LT(same, one.size() / 4);
}

TEST_F(LoaderTest, EvalCacheGivesIdenticalBatchesAndMultiLabelTargets) {
  const data::Dataset d = open("hpa");
  data::TransformSettings ts;
  ts.size = 20;
  data::LoaderOptions lo;
  lo.batch_size = 7;
  lo.cache = true;
  lo.threads = 2;
  data::Loader l(d, d.indices(data::Split::val), ts, lo);
  std::vector<std::vector<float>> first, second;
  for (int epoch = 0; epoch < 2; ++epoch) {
    l.start_epoch(epoch);
    while (auto b = l.next()) {
      EXPECT_EQ(b->targets.size(), static_cast<size_t>(b->n * 28));
      for (int64_t i = 0; i < b->n; ++i) {
        const auto& s = d.samples[b->samples[i]];
        for (auto c : s.labels) EXPECT_EQ(b->targets[i * 28 + c], 1.0f);
      }
      (epoch ? second : first).emplace_back(b->data, b->data + b->n * 3 * 20 * 20);
    }
  }
  EXPECT_EQ(first, second);
}

TEST_F(LoaderTest, AugmentationRecipesRunAndStayInRange) {
  const data::Dataset d = open("cassava");
  for (const Augmentation aug : {Augmentation::randaugment, Augmentation::augmix, Augmentation::colour_affine}) {
    data::TransformSettings ts;
    ts.size = 32;
    ts.train = true;
    ts.flips = Flips::hv;
    ts.augmentation = aug;
    ts.seed = 3;
    const data::Transform t(ts);
    const auto base = data::Transform([] {
                        data::TransformSettings s;
                        s.size = 32;
                        s.train = true;
                        s.flips = Flips::hv;
                        s.seed = 3;
                        return s;
                      }()).pixels(d, 0, 0);
    int changed = 0;
    for (int64_t i = 0; i < 12; ++i) {
      if (i == 9) continue;  // planted defect
      const auto img = t.pixels(d, i, 0);
      EXPECT_EQ(img.rows, 32);
      EXPECT_EQ(img.channels, 3);
      changed += i == 0 && img.px != base.px;
      EXPECT_EQ(t.pixels(d, i, 0).px, img.px) << name(aug) << ": deterministic in (seed, epoch, index)";
    }
    EXPECT_EQ(changed, 1) << name(aug) << " changed nothing";
  }
}

TEST(NumpyRandom, LegacySeedAndChoiceMatchNumpy) {
  // np.random.seed(414); np.random.choice(list(range(10)), 3, replace=False) → [3, 4, 7] (numpy legacy);
  // np.random.seed(0); np.random.permutation(8) → [6 2 1 7 3 0 5 4]. Checked against /usr/bin/python3 below.
  const Result r = run(std::string(XFER_PYTHON) +
                       " -c 'import numpy as np; np.random.seed(414); print(*np.random.choice(list(range(10)), 3, "
                       "replace=False)); np.random.seed(0); print(*np.random.permutation(8)); np.random.seed(7); "
                       "print(*np.random.choice(list(range(5)), 0, replace=False), *np.random.choice(list(range(100)), 5, replace=False))'");
  ASSERT_EQ(r.status, 0) << r.err;
  data::LegacyRandomState a(414);
  std::vector<int64_t> ten(10);
  std::iota(ten.begin(), ten.end(), 0);
  data::LegacyRandomState b(0);
  data::LegacyRandomState c(7);
  std::vector<int64_t> five(5), hundred(100);
  std::iota(five.begin(), five.end(), 0);
  std::iota(hundred.begin(), hundred.end(), 0);
  std::string mine;
  for (auto v : a.choice_without_replacement(ten, 3)) mine += std::to_string(v) + " ";
  mine.back() = '\n';
  for (auto v : b.permutation(8)) mine += std::to_string(v) + " ";
  mine.back() = '\n';
  (void)c.choice_without_replacement(five, 0);  // consumes the stream like numpy
  for (auto v : c.choice_without_replacement(hundred, 5)) mine += std::to_string(v) + " ";
  mine.back() = '\n';
  EXPECT_EQ(mine, r.out);
}

// ---------------------------------------------------------------- layouts resolved once, before trials are keyed

// A one-model, one-optimizer spec over the given [[dataset]] entries.
TEST_F(Fixtures, EveryRegisteredKindHasExactlyOneOpener) {
  EXPECT_EQ(data::opener_kinds(), spec::dataset_kind_names());
  std::set<std::string> layouts;
  for (const auto& [layout, e] : expected_.items()) layouts.insert(e["kind"].get<std::string>());
  for (const auto& k : spec::dataset_kind_names()) EXPECT_TRUE(layouts.count(k)) << k << " has no fixture layout";
}

TEST_F(Fixtures, WhatIsKeyedIsWhatRuns) {
  // Pre-split imagefolder (train/, val/, test/), flat imagefolder, csv manifests with and without a split column,
  // IDX, HPA.
  TempDir dir;
  dir.write("m.pt", kBackboneStandIn);
  const std::string text = layout_spec(dataset_entry("pre", "imagefolder", root("imagefolder_split")) +
                                       dataset_entry("flat", "imagefolder", root("imagefolder")) +
                                       dataset_entry("man", "csv", root("csv")) +
                                       dataset_entry("multi", "csv", root("csv_multi")) +
                                       dataset_entry("mnist", "idx", root("idx")) +
                                       dataset_entry("atlas", "hpa", root("hpa")));
  const spec::Spec unresolved = spec::load(dir.write("s.toml", text));
  try {
    grid::expand(unresolved);
    FAIL() << "an unresolved imagefolder must not be keyed";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("dataset \"pre\" (imagefolder)"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("resolve_layouts"), std::string::npos) << e.what();
  }
  const spec::Spec spec = data::with_layouts_resolved(unresolved);
  const auto trials = grid::expand(spec);
  ASSERT_EQ(trials.size(), 6u);
  std::map<std::string, const grid::TrialConfig*> by_dataset;
  for (const auto& t : trials) by_dataset[t.config.dataset] = &t.config;
  // The key of each trial names the split its data is opened with.
  for (const auto& t : trials) {
    SCOPED_TRACE(t.config.dataset);
    const data::Dataset d = data::open(spec, spec.datasets[t.dataset_index]);
    EXPECT_EQ(d.validation, t.config.validation);
    EXPECT_TRUE(has_line(t.config.canonical_text(), "validation=" + name_str(d.validation) + "\n"));
  }
  // Pre-split: keyed fixed, without the held-out draw it does not make, and trains on its val/ folder.
  const std::string pre = by_dataset.at("pre")->canonical_text();
  EXPECT_TRUE(has_line(pre, "validation=fixed\n")) << pre;
  EXPECT_FALSE(has_line(pre, "heldout_seed=")) << pre;
  EXPECT_FALSE(has_line(pre, "heldout_fraction=")) << pre;
  const data::Dataset pre_data = data::open(spec, *spec.find_dataset("pre"));
  EXPECT_EQ(pre_data.indices(data::Split::val).size(), expected_["imagefolder_split"]["val"].get<size_t>());
  for (int64_t i : pre_data.indices(data::Split::val))
    EXPECT_EQ(pre_data.samples[static_cast<size_t>(i)].id.rfind("val/", 0), 0u) << pre_data.samples[static_cast<size_t>(i)].id;
  EXPECT_TRUE(spec.find_dataset("pre")->resolved->layout_checked);
  EXPECT_NE(spec.find_dataset("pre")->resolved->basis.find("val/"), std::string::npos);
  // The manifest's split column has val rows: fixed as well; a manifest without one: the spec's selection.
  EXPECT_EQ(by_dataset.at("man")->validation, Validation::fixed);
  EXPECT_EQ(by_dataset.at("multi")->validation, Validation::paper);
  // Without a val/ folder: the held-out draw as before, with its seed and fraction in the key.
  const std::string flat = by_dataset.at("flat")->canonical_text();
  EXPECT_TRUE(has_line(flat, "validation=paper\nheldout_fraction=0.2\nheldout_seed=0\n")) << flat;
  EXPECT_EQ(by_dataset.at("mnist")->validation, Validation::paper);
  EXPECT_EQ(by_dataset.at("atlas")->validation, Validation::fixed);

  // study.selection = "holdout": the flat imagefolder carves from train; the pre-split one keeps its val/.
  const spec::Spec holdout = data::with_layouts_resolved(spec::load(dir.write("h.toml", layout_spec(
      dataset_entry("pre", "imagefolder", root("imagefolder_split")) +
      dataset_entry("flat", "imagefolder", root("imagefolder")), "holdout"))));
  for (const auto& t : grid::expand(holdout)) {
    SCOPED_TRACE(t.config.dataset);
    const data::Dataset d = data::open(holdout, holdout.datasets[t.dataset_index]);
    EXPECT_EQ(d.validation, t.config.validation);
    EXPECT_EQ(t.config.validation, t.config.dataset == "pre" ? Validation::fixed : Validation::holdout);
    EXPECT_EQ(has_line(t.config.canonical_text(), "val_seed="), t.config.dataset == "flat");
  }
}

TEST_F(Fixtures, ALayoutThatChangesAfterResolutionIsRefusedByName) {
  TempDir dir;
  dir.write("m.pt", kBackboneStandIn);
  fs::copy(root("imagefolder_split"), dir / "pre", fs::copy_options::recursive);
  fs::copy(root("imagefolder_split"), dir / "grows", fs::copy_options::recursive);
  fs::remove_all(dir / "grows" / "val");
  spec::Spec spec = spec::load(dir.write("s.toml", layout_spec(dataset_entry("pre", "imagefolder", "pre") +
                                                              dataset_entry("grows", "imagefolder", "grows"))));
  data::resolve_layouts(spec);
  ASSERT_EQ(spec.validation_of(*spec.find_dataset("pre")), "fixed");
  ASSERT_EQ(spec.validation_of(*spec.find_dataset("grows")), "paper");
  // Between plan and run: one loses its val/ folder, the other gains one.
  fs::remove_all(dir / "pre" / "val");
  fs::copy(root("imagefolder_split") + "/val", dir / "grows" / "val", fs::copy_options::recursive);
  for (const char* name : {"pre", "grows"}) {
    SCOPED_TRACE(name);
    try {
      data::open(spec, *spec.find_dataset(name));
      FAIL() << "expected the changed layout to be refused";
    } catch (const Error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("dataset \"" + std::string(name) + "\" (imagefolder)"), std::string::npos) << what;
      EXPECT_NE(what.find("changed between planning and running"), std::string::npos) << what;
      EXPECT_EQ(e.kind(), Error::Kind::input);
    }
  }
  // Resolved again, the new layouts open, under the split they now have.
  data::resolve_layouts(spec);
  EXPECT_EQ(data::open(spec, *spec.find_dataset("pre")).validation, Validation::paper);
  EXPECT_EQ(data::open(spec, *spec.find_dataset("grows")).validation, Validation::fixed);
}



}  // namespace
}  // namespace xfer::test
