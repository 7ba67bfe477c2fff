// The results store in-process: tables round-trip every column, text is never cut, one HDF5 session per trial
// event, /study and /samples written once per study, older formats refused untouched, and long names stay
// distinct through /trials, /study/models, the analysis reader and `xfer merge`; every /trials row carries checksums
// that catch an overwritten byte, merge never calls a damaged or differently configured row identical, and a file
// refuses another study, another spec (unless extended) and another split.
#include <hdf5.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <tuple>

#include <gtest/gtest.h>

#include "support/kokkos_env.hpp"
#include "support/tempdir.hpp"
#include "xfer/analysis/study.hpp"
#include "xfer/core/digest.hpp"
#include "xfer/core/error.hpp"
#include "xfer/store/store.hpp"

namespace fs = std::filesystem;
using namespace xfer;

namespace {

const std::string kSpec = "[study]\nname = \"t\"\n";

// Two names of the spec's maximum length (100) that agree on their first 48 characters (the old column width).
std::string long_name(char last) { return std::string(48, 'm') + std::string(51, 'x') + last; }

store::TrialRow trial(const std::string& key, const std::string& model, const std::string& dataset = "ds") {
  store::TrialRow t;
  t.key = key;
  t.model = model;
  t.dataset = dataset;
  t.kind = "imagefolder";
  t.metric = "accuracy";
  t.optimizer = "adamw";
  t.wd_mode = "over_lr";
  t.augmentation = "none";
  t.schedule = "cosine";
  t.precision = "fp32";
  t.status = "pending";
  t.epochs = 2;
  t.val_metric = t.test_metric = NAN;
  return t;
}

store::DatasetRow dataset(const std::string& name = "ds") {
  store::DatasetRow d;
  d.name = name;
  d.kind = "imagefolder";
  d.metric = "accuracy";
  d.validation = "holdout";
  d.n_test = 4;
  d.classes = 3;
  return d;
}

store::CurveRow curve(const std::string& key, int attempt, int epoch, double val, double test) {
  store::CurveRow c;
  c.key = key;
  c.attempt = attempt;
  c.epoch = epoch;
  c.lr = 1e-3;
  c.train_loss = 1.0 / (epoch + 1);
  c.val_metric = val;
  c.test_metric = test;
  return c;
}

// A finished two-epoch trial of `model`, as a sweep records it.
void record_done_trial(store::Results& res, const std::string& key, const std::string& model, double test) {
  auto t = trial(key, model);
  res.add_trials({t});
  t.status = "running";
  t.attempts = 1;
  res.record_started(t);
  for (int e = 0; e < 2; ++e) {
    t.epochs_done = e + 1;
    res.record_epoch(t, curve(key, 1, e, 0.5 + 0.1 * e, test - 0.1 + 0.1 * e));
  }
  t.status = "done";
  t.best_epoch = 1;
  t.val_metric = 0.6;
  t.test_metric = test;
  res.record_finished(t, {curve(key, 1, 0, 0.5, test - 0.1), curve(key, 1, 1, 0.6, test)}, {}, {});
}

std::string fmt_key(int i) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016x", i);
  return buf;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Store, LongModelNamesStayDistinctThroughTrialsStudyAnalysisAndMerge) {
  test::TempDir dir("store_long_names");
  const std::string a = long_name('a'), b = long_name('b');
  ASSERT_EQ(a.size(), 100u);
  ASSERT_EQ(a.substr(0, 48), b.substr(0, 48));
  const std::string one = (dir / "one.h5").string(), two = (dir / "two.h5").string();
  // Two shards of one study, each with one of the models.
  for (const auto& [path, model, key, test] :
       {std::tuple<std::string, std::string, std::string, double>{one, a, "aaaaaaaaaaaaaaaa", 0.7},
        {two, b, "bbbbbbbbbbbbbbbb", 0.8}}) {
    auto res = store::Results::open_or_create(path, "t", kSpec);
    res.write_study(kSpec, {{a, "w", "", "", 60, 1, 8}, {b, "w", "", "", 70, 1, 8}}, {dataset()});
    record_done_trial(res, key, model, test);
  }
  const auto shard = store::Results::open_existing(one);
  ASSERT_EQ(shard.trials().size(), 1u);
  EXPECT_EQ(shard.trials()[0].model, a);
  const auto models = shard.models();
  ASSERT_EQ(models.size(), 2u);
  EXPECT_EQ(models[0].name, a);
  EXPECT_EQ(models[1].name, b);

  const std::string merged = (dir / "merged.h5").string();
  const auto report = store::merge(merged, {one, two});
  EXPECT_EQ(report.trials, 2u);
  EXPECT_TRUE(report.conflicts.empty());
  const auto m = store::Results::open_existing(merged);
  std::set<std::string> names;
  for (const auto& t : m.trials()) names.insert(t.model);
  EXPECT_EQ(names, (std::set<std::string>{a, b}));
  ASSERT_EQ(m.models().size(), 2u);

  analysis::Options o;
  o.resamples = 50;
  o.point_resamples = 0;
  const auto study = analysis::from_results(merged, o);
  ASSERT_EQ(study.datasets.size(), 1u);
  std::map<std::string, double> value;
  for (const auto& p : study.datasets[0].points) value[p.model] = p.value;
  ASSERT_EQ(value.size(), 2u) << "one point per model";
  EXPECT_DOUBLE_EQ(value.at(a), 0.7);
  EXPECT_DOUBLE_EQ(value.at(b), 0.8);
}

TEST(Store, OverWideTextIsAnErrorNamingFileTableColumnRowAndLengths) {
  test::TempDir dir("store_over_wide");
  const std::string path = (dir / "r.h5").string();
  auto res = store::Results::open_or_create(path, "t", kSpec);
  const std::string too_long(101, 'n');
  const std::string msg = error_of([&] { res.add_trials({trial("0123456789abcdef", too_long)}); });
  for (const std::string& part : {path, std::string("/trials"), std::string("column model"),
                                  std::string("0123456789abcdef"), std::string("101"), std::string("holds 100")})
    EXPECT_NE(msg.find(part), std::string::npos) << part << " in: " << msg;
  EXPECT_TRUE(res.trials().empty()) << "nothing written";
  const std::string study = error_of([&] { res.write_study(kSpec, {{too_long, "w", "", "", 60, 1, 8}}, {}); });
  EXPECT_NE(study.find("/study/models"), std::string::npos) << study;
  EXPECT_NE(study.find("column name"), std::string::npos) << study;
  // Free text has no width: a long message and a long canonical text are kept whole.
  auto t = trial("0123456789abcdef", "m");
  t.canonical = std::string(5000, 'c');
  t.message = std::string(3000, 'e');
  res.add_trials({t});
  const auto back = res.trials();
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0].canonical, t.canonical);
  EXPECT_EQ(back[0].message, t.message);
}

TEST(Store, TrialsHoldTheResolvedConfigurationAndUpdatesWriteOnlyTheState) {
  test::TempDir dir("store_config");
  const std::string path = (dir / "r.h5").string();
  auto res = store::Results::open_or_create(path, "t", kSpec);
  auto t = trial("00000000000000a1", "resnet50");
  t.weights = "torchvision/IMAGENET1K_V2";
  t.crop_pct = 0.875;
  t.mean = {0.485, 0.456, 0.406};
  t.std = {0.229, 0.224, 0.225};
  t.flips = "hv";
  t.bgr_quirk = true;
  t.validation = "paper";
  t.heldout_fraction = 0.25;
  t.heldout_seed = 414;
  t.val_fraction = 0.15;
  t.val_seed = 7;
  t.limit_train = 192;
  t.limit_test = 64;
  t.melanoma_2019 = false;
  t.manifest = "/data/x/manifest.csv";
  t.split_file = "/data/x/split.csv";
  t.momentum = 0.8;
  t.nesterov = false;
  t.beta1 = 0.85;
  t.beta2 = 0.99;
  t.eps = 1e-6;
  t.step_milestones = {30, 60, 90};
  t.step_gamma = 0.2;
  t.warmup_epochs = 3;
  t.label_smoothing = 0.1;
  t.canonical = "model=resnet50\nweights=torchvision/IMAGENET1K_V2\n";
  res.add_trials({t});
  // An update carries the state; the configuration is fixed by the key.
  auto changed = t;
  changed.status = "done";
  changed.attempts = 2;
  changed.test_metric = 0.75;
  changed.momentum = 0.1;
  changed.canonical = "something else";
  res.update_trial(changed);
  const auto back = store::Results::open_existing(path).trials();
  ASSERT_EQ(back.size(), 1u);
  const auto& r = back[0];
  EXPECT_EQ(r.weights, t.weights);
  EXPECT_EQ(r.crop_pct, t.crop_pct);
  EXPECT_EQ(r.mean, t.mean);
  EXPECT_EQ(r.std, t.std);
  EXPECT_EQ(r.flips, "hv");
  EXPECT_TRUE(r.bgr_quirk);
  EXPECT_EQ(r.validation, "paper");
  EXPECT_EQ(r.heldout_fraction, 0.25);
  EXPECT_EQ(r.heldout_seed, 414);
  EXPECT_EQ(r.val_fraction, 0.15);
  EXPECT_EQ(r.val_seed, 7);
  EXPECT_EQ(r.limit_train, 192);
  EXPECT_EQ(r.limit_test, 64);
  EXPECT_FALSE(r.melanoma_2019);
  EXPECT_EQ(r.manifest, t.manifest);
  EXPECT_EQ(r.split_file, t.split_file);
  EXPECT_EQ(r.momentum, 0.8) << "configuration is not rewritten by an update";
  EXPECT_FALSE(r.nesterov);
  EXPECT_EQ(r.beta1, 0.85);
  EXPECT_EQ(r.beta2, 0.99);
  EXPECT_EQ(r.eps, 1e-6);
  EXPECT_EQ(r.step_milestones, (std::vector<int32_t>{30, 60, 90}));
  EXPECT_EQ(r.step_gamma, 0.2);
  EXPECT_EQ(r.warmup_epochs, 3);
  EXPECT_EQ(r.label_smoothing, 0.1);
  EXPECT_EQ(r.canonical, t.canonical);
  EXPECT_EQ(r.status, "done");
  EXPECT_EQ(r.attempts, 2);
  EXPECT_EQ(r.test_metric, 0.75);
  // The ledger and status readers see the same state.
  const auto ledger = store::Results::open_existing(path).ledger();
  ASSERT_EQ(ledger.size(), 1u);
  EXPECT_EQ(ledger[0].status, "done");
  const auto states = store::Results::open_existing(path).trial_states();
  ASSERT_EQ(states.size(), 1u);
  EXPECT_EQ(states[0].model, "resnet50");
  EXPECT_EQ(states[0].attempts, 2);
}

TEST(Store, AThirtyEpochTrialCostsAtMostEpochsPlusThreeSessions) {
  test::TempDir dir("store_sessions");
  const std::string path = (dir / "r.h5").string();
  auto res = store::Results::open_or_create(path, "t", kSpec);
  // Other trials already in the file: their rows must not be read by the events.
  std::vector<store::TrialRow> others;
  for (int i = 0; i < 50; ++i) others.push_back(trial(fmt_key(i), "m"));
  res.add_trials(others);
  auto t = trial("ffffffffffffffff", "m");
  t.epochs = 30;
  res.add_trials({t});
  const int64_t before = res.sessions();
  t.status = "running";
  t.attempts = 1;
  res.record_started(t);  // the coordinator starts it
  t.host = "node1";
  res.record_started(t);  // the worker reports its host
  std::vector<store::CurveRow> curves;
  for (int e = 0; e < 30; ++e) {
    curves.push_back(curve(t.key, 1, e, 0.5 + e / 100.0, 0.4 + e / 100.0));
    t.epochs_done = e + 1;
    res.record_epoch(t, curves.back());
  }
  t.status = "done";
  t.best_epoch = 29;
  store::PredictionSet val{t.key, "val", "ds", 3, {0, 1}, {0.2f, 0.3f, 0.5f, 0.1f, 0.1f, 0.8f}};
  store::PredictionSet test{t.key, "test", "ds", 3, {2, 3}, {0.6f, 0.3f, 0.1f, 0.3f, 0.3f, 0.4f}};
  res.record_finished(t, curves, {val, test}, {{"ds", "img7", "/x/img7.png", "truncated"}});
  EXPECT_LE(res.sessions() - before, 30 + 3);
  // And everything arrived, once.
  const auto back = store::Results::open_existing(path);
  EXPECT_EQ(back.curves().size(), 30u);
  const auto preds = back.predictions(t.key);
  ASSERT_EQ(preds.size(), 2u);
  EXPECT_EQ(preds[1].scores, test.scores);
  EXPECT_EQ(back.problems().size(), 1u);
  const auto rows = back.trials();
  EXPECT_EQ(rows.back().status, "done");
  EXPECT_EQ(rows.back().host, "node1");
  EXPECT_EQ(rows.back().epochs_done, 30);
}

TEST(Store, PredictionsAndCurvesOfTheSameTrialReplaceTheirIndexRowsAcrossWriters) {
  test::TempDir dir("store_replace");
  const std::string path = (dir / "r.h5").string();
  const std::string key = "0000000000000abc";
  {
    auto res = store::Results::open_or_create(path, "t", kSpec);
    res.add_trials({trial(key, "m")});
    res.put_predictions({key, "test", "ds", 2, {0, 1}, {0.5f, 0.5f, 0.5f, 0.5f}});
    res.put_curve(curve(key, 1, 0, 0.1, 0.1));
  }
  {
    // A later run (a fresh writer object, its indexes read from the file).
    auto res = store::Results::open_or_create(path, "t", kSpec);
    res.put_predictions({key, "test", "ds", 2, {0, 1}, {0.9f, 0.1f, 0.2f, 0.8f}});
    res.put_curve(curve(key, 1, 0, 0.2, 0.3));
  }
  const auto res = store::Results::open_existing(path);
  const auto all = res.all_predictions();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].scores, (std::vector<float>{0.9f, 0.1f, 0.2f, 0.8f}));
  const auto curves = res.curves();
  ASSERT_EQ(curves.size(), 1u);
  EXPECT_EQ(curves[0].val_metric, 0.2);
}

TEST(Store, StudyAndSamplesAreWrittenOncePerStudy) {
  test::TempDir dir("store_once");
  const std::string path = (dir / "r.h5").string();
  std::vector<store::SampleRow> samples;
  for (int i = 0; i < 2000; ++i)
    samples.push_back({i, "images/sample_" + std::to_string(i) + ".jpg", i % 5 ? "train" : "test",
                       std::to_string(i % 3), "cam" + std::to_string(i % 7), i % 3});
  const std::vector<store::ProblemRow> problems = {{"ds", "bad1", "/x/bad1.png", "corrupt"}};
  auto rerun = [&](const std::vector<store::SampleRow>& s, const std::vector<store::ModelRow>& models) {
    auto res = store::Results::open_or_create(path, "t", kSpec);
    res.write_study(kSpec, models, {dataset()});
    res.write_samples("ds", s);
    res.add_index_problems(problems);
  };
  const std::vector<store::ModelRow> models = {{"m0", "w", "/b/m0.pt", "", 60, 1, 8}};
  rerun(samples, models);
  const auto first = fs::file_size(path);
  for (int i = 0; i < 5; ++i) rerun(samples, models);
  EXPECT_EQ(fs::file_size(path), first) << "identical reruns write nothing";
  EXPECT_EQ(store::Results::open_existing(path).problems().size(), 1u) << "index-time problems once";
  // Different content replaces the table (and the log says so).
  auto changed = samples;
  changed[3].split = "val";
  rerun(changed, {{"m0", "w", "/b/m0.pt", "", 60, 1, 8}, {"m1", "w", "/b/m1.pt", "", 70, 2, 16}});
  const auto res = store::Results::open_existing(path);
  const auto back = res.samples("ds");
  ASSERT_EQ(back.size(), samples.size());
  EXPECT_EQ(back[3].split, "val");
  EXPECT_EQ(back[5].id, samples[5].id);
  EXPECT_EQ(back[5].group, samples[5].group);
  EXPECT_EQ(res.models().size(), 2u);
}

TEST(Store, AnOlderFormatIsRefusedAndNotModified) {
  // Format 1 (before the resolved configuration) and 2 (before the rows' checksums) alike.
  for (const char* format : {"xfer-results 1", "xfer-results 2", "xfer-results 3"}) {
  test::TempDir dir("store_format");
  const std::string path = (dir / "old.h5").string();
  {
    const hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    const hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, H5T_VARIABLE);
    const hid_t space = H5Screate(H5S_SCALAR);
    const hid_t a = H5Acreate2(f, "format", type, space, H5P_DEFAULT, H5P_DEFAULT);
    const char* v = format;
    H5Awrite(a, type, &v);
    H5Aclose(a);
    H5Sclose(space);
    H5Tclose(type);
    H5Gclose(H5Gcreate2(f, "trials", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    H5Fclose(f);
  }
  const std::string digest = sha256_file_hex(path);
  for (const auto& open : std::vector<std::function<void()>>{
           [&] { store::Results::open_existing(path); },
           [&] { store::Results::open_or_create(path, "t", kSpec); }}) {
    const std::string msg = error_of(open);
    EXPECT_NE(msg.find("older xfer"), std::string::npos) << msg;
    EXPECT_NE(msg.find(format), std::string::npos) << msg;
    EXPECT_NE(msg.find("not modified"), std::string::npos) << msg;
  }
  EXPECT_EQ(sha256_file_hex(path), digest);
  }
}

namespace {
// Overwrites `bytes` at `at` bytes into row `row` of /trials, in the file's raw chunk (as bit rot or a stray write
// would): HDF5 does not notice; the row's checksum must.
void overwrite_trial_bytes(const std::string& path, hsize_t row, size_t at, const std::string& bytes) {
  haddr_t addr = 0;
  size_t row_size = 0;
  {
    const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    const hid_t d = H5Dopen2(f, "trials", H5P_DEFAULT);
    const hid_t type = H5Dget_type(d);
    row_size = H5Tget_size(type);
    const hid_t space = H5Dget_space(d);
    hsize_t offset[1] = {0}, size = 0;
    unsigned mask = 0;
    ASSERT_GE(H5Dget_chunk_info(d, space, 0, offset, &mask, &addr, &size), 0);
    H5Sclose(space);
    H5Tclose(type);
    H5Dclose(d);
    H5Fclose(f);
  }
  std::FILE* file = std::fopen(path.c_str(), "r+b");
  ASSERT_NE(file, nullptr);
  std::fseek(file, static_cast<long>(addr + row * row_size + at), SEEK_SET);
  std::fwrite(bytes.data(), 1, bytes.size(), file);
  std::fclose(file);
}
}  // namespace

TEST(StoreChecksum, EveryRowHoldsItsChecksumsThroughUpdatesAndMerge) {
  test::TempDir dir("store_crc");
  const std::string path = (dir / "r.h5").string();
  auto res = store::Results::open_or_create(path, "t", kSpec);
  record_done_trial(res, fmt_key(1), "m1", 0.7);
  record_done_trial(res, fmt_key(2), "m2", 0.8);
  auto rows = store::Results::open_existing(path).trials();
  ASSERT_EQ(rows.size(), 2u);
  for (const auto& r : rows) {
    EXPECT_EQ(r.damage, "") << r.key;
    EXPECT_NE(r.config_crc32, 0) << r.key;
    EXPECT_NE(r.state_crc32, 0) << r.key;
  }
  EXPECT_EQ(rows[1].row_index, 1);
  const std::string merged = (dir / "m.h5").string();
  const auto report = store::merge(merged, {path});
  EXPECT_TRUE(report.conflicts.empty());
  for (const auto& r : store::Results::open_existing(merged).trials()) EXPECT_EQ(r.damage, "") << r.key;
}

TEST(StoreChecksum, AnOverwrittenConfigurationOrStateIsADamagedRowNeverAnIdenticalDuplicate) {
  test::TempDir dir("store_crc_damage");
  const std::string clean = (dir / "clean.h5").string(), bad = (dir / "bad.h5").string();
  {
    auto res = store::Results::open_or_create(clean, "t", kSpec);
    record_done_trial(res, fmt_key(1), "m1", 0.7);
    record_done_trial(res, fmt_key(2), "m2", 0.8);
  }
  fs::copy_file(clean, bad);
  overwrite_trial_bytes(bad, 0, 16, "GARBAGE!");  // the model name of row 0 (its key, the first 16 bytes, survives)
  const auto rows = store::Results::open_existing(bad).trials();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].damage, "config_crc32");
  EXPECT_EQ(rows[1].damage, "");
  EXPECT_EQ(store::describe_row(rows[0]), "row 0 (key " + fmt_key(1) + ")");
  // merge: a conflict naming the row, the clean copy kept — not "identical duplicate" (W-3.4).
  const auto report = store::merge((dir / "m.h5").string(), {bad, clean});
  EXPECT_EQ(report.identical_duplicates, 1u) << "row 1 only";
  ASSERT_EQ(report.conflicts.size(), 1u);
  EXPECT_NE(report.conflicts[0].reason.find("corrupted (checksum mismatch"), std::string::npos)
      << report.conflicts[0].reason;
  const auto kept = store::Results::open_existing((dir / "m.h5").string()).trials();
  ASSERT_EQ(kept.size(), 2u);
  for (const auto& r : kept) EXPECT_EQ(r.damage, "");
  EXPECT_EQ(kept[1].model, "m1") << "the intact row";
  // A state column rewritten behind the store's back (the status of row 1, through HDF5 itself) is caught by the
  // state checksum. (Raw offsets past the first variable-length column differ between memory and file, so this
  // one is written through HDF5 rather than into the chunk's bytes.)
  const std::string bad_state = (dir / "bad_state.h5").string();
  fs::copy_file(clean, bad_state);
  {
    const hid_t f = H5Fopen(bad_state.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    const hid_t d = H5Dopen2(f, "trials", H5P_DEFAULT);
    const hid_t text = H5Tcopy(H5T_C_S1);
    H5Tset_size(text, 24);
    H5Tset_strpad(text, H5T_STR_NULLPAD);
    H5Tset_cset(text, H5T_CSET_UTF8);
    const hid_t mem = H5Tcreate(H5T_COMPOUND, 24);
    H5Tinsert(mem, "status", 0, text);
    const hsize_t start[1] = {1}, count[1] = {1};
    const hid_t space = H5Dget_space(d);
    H5Sselect_hyperslab(space, H5S_SELECT_SET, start, nullptr, count, nullptr);
    const hid_t mspace = H5Screate_simple(1, count, nullptr);
    char value[24] = "failed";
    EXPECT_GE(H5Dwrite(d, mem, mspace, space, H5P_DEFAULT, value), 0);
    H5Sclose(mspace);
    H5Sclose(space);
    H5Tclose(mem);
    H5Tclose(text);
    H5Dclose(d);
    H5Fclose(f);
  }
  const auto states = store::Results::open_existing(bad_state).trials();
  EXPECT_EQ(states[1].damage, "state_crc32");
  EXPECT_EQ(states[0].damage, "");
}

TEST(StoreMerge, RowsOfOneKeyWithTheSameMetricsButAnotherConfigurationAreAConflict) {
  test::TempDir dir("store_merge_config");
  const std::string a = (dir / "a.h5").string(), b = (dir / "b.h5").string();
  {
    auto res = store::Results::open_or_create(a, "t", kSpec);
    record_done_trial(res, fmt_key(1), "m1", 0.7);
  }
  {
    auto res = store::Results::open_or_create(b, "t", kSpec);
    record_done_trial(res, fmt_key(1), "m9", 0.7);  // same key and metrics, another model: not the same trial
  }
  const auto report = store::merge((dir / "m.h5").string(), {a, b});
  EXPECT_EQ(report.identical_duplicates, 0u);
  ASSERT_EQ(report.conflicts.size(), 1u);
  EXPECT_NE(report.conflicts[0].reason.find("configuration differs"), std::string::npos) << report.conflicts[0].reason;
  EXPECT_NE(report.conflicts[0].reason.find("column model"), std::string::npos) << report.conflicts[0].reason;
}

TEST(StoreSpecs, AnotherStudyOrSpecOrSplitIsRefusedAndEverySpecIsKept) {
  test::TempDir dir("store_specs");
  const std::string path = (dir / "r.h5").string();
  const std::string spec_b = kSpec + "# more learning rates\n";
  auto ds = dataset();
  ds.split_sha256 = std::string(64, 'a');
  {
    auto res = store::Results::open_or_create(path, "t", kSpec);
    res.check_run("t", kSpec, {{"ds", ds.split_sha256}}, false);
    res.write_study(kSpec, {}, {ds});
  }
  auto res = store::Results::open_existing(path);
  EXPECT_EQ(res.study(), "t");
  const std::string digest = sha256_file_hex(path);
  std::string msg = error_of([&] { res.check_run("other", kSpec, {}, true); });
  EXPECT_NE(msg.find("\"t\""), std::string::npos) << msg;
  EXPECT_NE(msg.find("\"other\""), std::string::npos) << msg;
  EXPECT_NE(msg.find("use a new --results file"), std::string::npos) << msg;
  msg = error_of([&] { res.check_run("t", spec_b, {}, false); });
  EXPECT_NE(msg.find("--extend"), std::string::npos) << msg;
  msg = error_of([&] { res.check_run("t", spec_b, {{"ds", std::string(64, 'b')}}, true); });
  EXPECT_NE(msg.find("dataset ds is split differently"), std::string::npos) << msg;
  EXPECT_NE(msg.find("aaaaaaaaaaaa"), std::string::npos) << msg;
  EXPECT_NE(msg.find("bbbbbbbbbbbb"), std::string::npos) << msg;
  EXPECT_EQ(sha256_file_hex(path), digest) << "check_run writes nothing";
  EXPECT_EQ(error_of([&] { res.check_run("t", kSpec, {{"ds", ds.split_sha256}}, false); }), "") << "the same spec resumes";
  EXPECT_EQ(error_of([&] { res.check_run("t", spec_b, {{"ds", ds.split_sha256}, {"new", "c"}}, true); }), "");
  res.write_study(spec_b, {}, {ds});
  const auto specs = res.specs();
  ASSERT_EQ(specs.size(), 2u);
  EXPECT_EQ(specs[0].text, kSpec);
  EXPECT_EQ(specs[1].text, spec_b);
  EXPECT_EQ(sha256_hex(specs[0].text), specs[0].sha256);
  EXPECT_EQ(res.spec_text(), spec_b) << "/study/spec is the latest run's";
  // Both specs are now known: either runs without --extend.
  EXPECT_EQ(error_of([&] { res.check_run("t", kSpec, {}, false); }), "");
  EXPECT_EQ(error_of([&] { res.check_run("t", spec_b, {}, false); }), "");
}

TEST(StoreSamples, SamplesThatNoLongerMatchTheirContentDigestAreNamed) {
  test::TempDir dir("store_samples_digest");
  const std::string path = (dir / "r.h5").string();
  auto res = store::Results::open_or_create(path, "t", kSpec);
  res.write_samples("ds", {{0, "a.jpg", "train", "1", "", 1}, {1, "b.jpg", "test", "2", "", 2}});
  {
    // Rewrite one label in place, as bit rot would (the content_sha256 attribute stays).
    const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    const hid_t d = H5Dopen2(f, "samples/ds", H5P_DEFAULT);
    const hid_t mem = H5Tcreate(H5T_COMPOUND, sizeof(int32_t));
    H5Tinsert(mem, "label", 0, H5T_NATIVE_INT32);
    const hsize_t start[1] = {1}, count[1] = {1};
    const hid_t space = H5Dget_space(d);
    H5Sselect_hyperslab(space, H5S_SELECT_SET, start, nullptr, count, nullptr);
    const hid_t mspace = H5Screate_simple(1, count, nullptr);
    const int32_t v = 7;
    H5Dwrite(d, mem, mspace, space, H5P_DEFAULT, &v);
    H5Sclose(mspace);
    H5Sclose(space);
    H5Tclose(mem);
    H5Dclose(d);
    H5Fclose(f);
  }
  const std::string msg = error_of([&] { store::Results::open_existing(path).samples("ds"); });
  EXPECT_NE(msg.find("/samples/ds is damaged"), std::string::npos) << msg;
  // A run writes it again from the dataset (same content as recorded).
  res.write_samples("ds", {{0, "a.jpg", "train", "1", "", 1}, {1, "b.jpg", "test", "2", "", 2}});
  EXPECT_EQ(store::Results::open_existing(path).samples("ds")[1].label, 2);
}

TEST(Store, ATableMissingPointsToTheReadmesAfterAFailureSection) {
  test::TempDir dir("store_missing");
  const std::string path = (dir / "r.h5").string();
  store::Results::open_or_create(path, "t", kSpec);
  {
    const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    H5Ldelete(f, "runs", H5P_DEFAULT);
    H5Fclose(f);
  }
  const std::string msg = error_of([&] { store::Results::open_existing(path); });
  EXPECT_NE(msg.find("lacks /runs"), std::string::npos) << msg;
  EXPECT_NE(msg.find("\"After a failure\""), std::string::npos) << msg;
}
