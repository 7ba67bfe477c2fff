// `xfer plan` on malformed specs: each exits 2 with a message naming file:line and the key, and writes nothing.
#include <map>
#include <set>
#include <sstream>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/process.hpp"
#include "support/tempdir.hpp"

namespace xfer::test {
namespace {

const char* kBase = R"([study]
name = "t"
results = "out/r.h5"

[[model]]
name = "m1"
backbone = "m1.pt"
imagenet_top1 = 70.0

[[dataset]]
name = "d1"
kind = "imagefolder"
root = "data"

[grid]
weight_decays = [0.0]

[[grid.optimizer]]
family = "adamw"
lrs = [1e-3]
)";

struct Case {
  const char* name;
  const char* from;  // replaced in kBase (first occurrence)
  const char* to;
  int line;          // expected line in the message
  const char* key;   // expected text naming the key (and, for some, what was expected)
};

const Case kCases[] = {
    {"syntax_error", "lrs = [1e-3]", "lrs = [1e-3", 20, "TOML syntax error"},
    {"unknown_key_in_grid", "weight_decays = [0.0]", "weight_decays = [0.0]\nepoch = 3", 17, "'grid.epoch'"},
    {"unknown_top_level_key", "[study]", "colour = 1\n[study]", 1, "'colour': unknown key at the top level"},
    {"wrong_type", "weight_decays = [0.0]", "weight_decays = [0.0]\nepochs = \"30\"", 17,
     "'grid.epochs': expected an integer"},
    {"missing_backbone_file", "backbone = \"m1.pt\"", "backbone = \"nope.pt\"", 7, "'model[0].backbone'"},
    {"empty_axis", "weight_decays = [0.0]", "weight_decays = []", 16, "'grid.weight_decays'"},
    {"duplicate_model_name", "imagenet_top1 = 70.0\n",
     "imagenet_top1 = 70.0\n\n[[model]]\nname = \"m1\"\nbackbone = \"m1.pt\"\nimagenet_top1 = 71.0\n", 11,
     "'model[1].name': duplicate model name"},
    {"lr_zero", "lrs = [1e-3]", "lrs = [1e-3, 0.0]", 20, "'grid.optimizer[0].lrs'"},
    {"lr_negative", "lrs = [1e-3]", "lrs = [-1e-3]", 20, "'grid.optimizer[0].lrs'"},
    {"unknown_dataset_kind", "kind = \"imagefolder\"", "kind = \"imagefolders\"", 12, "'dataset[0].kind'"},
    {"unknown_metric", "root = \"data\"", "root = \"data\"\nmetric = \"f1\"", 14, "'dataset[0].metric'"},
    {"metric_wrong_for_kind", "root = \"data\"", "root = \"data\"\nmetric = \"macro_f1\"", 14, "'dataset[0].metric'"},
    {"missing_study_name", "name = \"t\"\n", "", 1, "'study.name' is missing"},
    {"dataset_root_missing", "root = \"data\"", "root = \"nodata\"", 13, "'dataset[0].root'"},
    {"duplicate_dataset_name", "root = \"data\"\n", "root = \"data\"\n\n[[dataset]]\nname = \"d1\"\nkind = \"idx\"\nroot = \"data\"\n",
     16, "'dataset[1].name': duplicate dataset name"},
    {"unknown_augmentation", "weight_decays = [0.0]", "weight_decays = [0.0]\naugmentations = [\"randaug\"]", 17,
     "'grid.augmentations'"},
    {"override_matches_nothing", "lrs = [1e-3]\n", "lrs = [1e-3]\n\n[[override]]\nmodel = \"resnet*\"\nbatch_size = 64\n",
     23, "'override[0].model'"},
    {"negative_seed", "weight_decays = [0.0]", "weight_decays = [0.0]\nseeds = [-1]", 17, "'grid.seeds'"},
    {"unknown_optimizer_family", "family = \"adamw\"", "family = \"adam\"", 19, "'grid.optimizer[0].family'"},
    // The trial's words are enums from here on (TrialConfig), so an unknown one must stop at the spec.
    {"unknown_schedule", "weight_decays = [0.0]", "weight_decays = [0.0]\nschedule = \"linear\"", 17, "'grid.schedule'"},
    {"unknown_precision", "weight_decays = [0.0]", "weight_decays = [0.0]\nprecision = \"fp8\"", 17, "'grid.precision'"},
    {"sgd_with_over_lr", "family = \"adamw\"", "family = \"sgd\"\nwd_mode = \"over_lr\"", 20,
     "'grid.optimizer[0].wd_mode'"},
    {"key_for_other_kind", "root = \"data\"", "root = \"data\"\nmanifest = \"m.csv\"", 14, "'dataset[0].manifest'"},
    {"top1_out_of_range", "imagenet_top1 = 70.0", "imagenet_top1 = 170.0", 8, "'model[0].imagenet_top1'"},
    {"duplicate_axis_value", "lrs = [1e-3]", "lrs = [1e-3, 1e-3]", 20, "'grid.optimizer[0].lrs'"},
    {"mean_needs_three", "imagenet_top1 = 70.0", "imagenet_top1 = 70.0\nmean = [0.5, 0.5]", 9, "'model[0].mean'"},
    {"warmup_not_below_epochs", "weight_decays = [0.0]", "weight_decays = [0.0]\nepochs = 2\nwarmup_epochs = 2", 18,
     "'grid.warmup_epochs'"},
    {"bad_model_name", "name = \"m1\"", "name = \"m 1/x\"", 6, "'model[0].name'"},
    {"unknown_selection", "results = \"out/r.h5\"", "results = \"out/r.h5\"\nselection = \"oracle\"", 4,
     "'study.selection'"},
    {"unknown_catalog_model", "results = \"out/r.h5\"",
     "results = \"out/r.h5\"\ncatalog = \"paper\"\nmodels_dir = \".\"\nmodels = [\"resnet51\"]", 6, "'study.models'"},
    {"missing_lrs", "lrs = [1e-3]\n", "", 18, "'grid.optimizer[0].lrs' is missing"},
    {"ranks_zero", "weight_decays = [0.0]", "weight_decays = [0.0]\nranks_per_trial = 0", 17, "'grid.ranks_per_trial'"},
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class MalformedSpec : public ::testing::TestWithParam<Case> {};

TEST_P(MalformedSpec, ExitsNonZeroNamingFileLineAndKeyAndWritesNothing) {
  const Case& c = GetParam();
  TempDir dir;
  dir.write("m1.pt", kBackboneStandIn);
  std::filesystem::create_directories(dir / "data");
  std::string text = kBase;
  const auto pos = text.find(c.from);
  ASSERT_NE(pos, std::string::npos) << c.name;
  text.replace(pos, std::string(c.from).size(), c.to);
  dir.write("spec.toml", text);
  const auto before = dir.listing();

  for (const char* extra : {"", " --json", " --list"}) {
    const Result r = run(quote(xfer()) + " plan spec.toml" + extra, dir.str());
    EXPECT_EQ(r.status, 2) << c.name << extra << "\nstderr: " << r.err;
    EXPECT_NE(r.err.find("spec.toml:" + std::to_string(c.line) + ":"), std::string::npos)
        << c.name << ": expected file:line spec.toml:" << c.line << "\nstderr: " << r.err;
    EXPECT_NE(r.err.find(c.key), std::string::npos) << c.name << ": expected '" << c.key << "'\nstderr: " << r.err;
    EXPECT_TRUE(r.out.empty()) << c.name << ": nothing on stdout for a refused spec, got: " << r.out;
  }
  EXPECT_EQ(dir.listing(), before) << c.name << ": a refused spec must not write anything";
  EXPECT_FALSE(std::filesystem::exists(dir / "out")) << c.name;
}

INSTANTIATE_TEST_SUITE_P(Cases, MalformedSpec, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& i) { return std::string(i.param.name); });

TEST(MalformedSpecSuite, HasAtLeastFifteenCases) { EXPECT_GE(std::size(kCases), 15u); }

TEST(PlanCli, HintsTheClosestKey) {
  TempDir dir;
  dir.write("m1.pt", kBackboneStandIn);
  std::filesystem::create_directories(dir / "data");
  std::string text = kBase;
  text.replace(text.find("weight_decays = [0.0]"), 21, "weight_decays = [0.0]\nbatchsize = 64");
  dir.write("spec.toml", text);
  const Result r = run(quote(xfer()) + " plan spec.toml", dir.str());
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("did you mean 'batch_size'"), std::string::npos) << r.err;
}

TEST(PlanCli, PaperSpecReports2280Trials) {
  const Result r = run("env -u XFER_DATA -u XFER_MODELS -u XFER_RESULTS " + quote(xfer()) + " plan " +
                       quote(std::string(XFER_SOURCE_DIR) + "/inputs/paper.toml") + " --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("total_trials").get<int>(), 2280);
  EXPECT_EQ(j.at("models").size(), 19u);
  EXPECT_EQ(j.at("datasets").size(), 6u);
  EXPECT_EQ(j.at("cells").size(), 19u * 6u);
  for (const auto& c : j.at("cells")) EXPECT_EQ(c.at("trials").get<int>(), 20);
  // Not staged here: every data root and the models folder are reported as unchecked.
  EXPECT_EQ(j.at("unchecked_paths").size(), 7u);
  EXPECT_TRUE(j.at("gpu_hours").is_null());
  EXPECT_GT(j.at("total_cost_gflop").get<double>(), 0.0);
}

TEST(PlanCli, EveryAblationSpecPlansWithItsTrialCount) {
  // The ablations share the paper's datasets and models; what each varies is in its trial count, and the SGD and
  // paper studies share no key (a different optimiser), while the seeds ablation's seed-0 trials are the
  // augmentation ablation's "none" trials (same configuration, same key).
  const std::map<std::string, int> want = {
      {"sgd", 2280}, {"augmentation", 1824}, {"seeds", 1368}, {"holdout", 2280}};
  std::map<std::string, std::set<std::string>> keys;
  for (const auto& [name, n] : want) {
    const Result r = run("env -u XFER_DATA -u XFER_MODELS -u XFER_RESULTS " + quote(xfer()) + " plan " +
                         quote(std::string(XFER_SOURCE_DIR) + "/inputs/ablations/" + name + ".toml") + " --json --list");
    ASSERT_EQ(r.status, 0) << name << ": " << r.err;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j.at("total_trials").get<int>(), n) << name;
    for (const auto& t : j.at("trials")) keys[name].insert(t.at("key").get<std::string>());
    EXPECT_EQ(keys[name].size(), static_cast<size_t>(n)) << name;
  }
  size_t shared = 0;
  for (const auto& k : keys["seeds"]) shared += keys["augmentation"].count(k);
  EXPECT_EQ(shared, 19u * 6u * 2u * 2u) << "seed 0 × recipe none: the same trials in both ablations";
}

TEST(PlanCli, ListPrintsEveryTrialWithADistinctKey) {
  const Result r = run("env -u XFER_DATA -u XFER_MODELS " + quote(xfer()) + " plan " +
                       quote(std::string(XFER_SOURCE_DIR) + "/inputs/paper.toml") + " --json --list");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  std::set<std::string> keys;
  for (const auto& t : j.at("trials")) keys.insert(t.at("key").get<std::string>());
  EXPECT_EQ(keys.size(), 2280u);
}

// --list and --json --list stream the trials one at a time (a grid of up to grid::kMaxTrials lists in bounded memory):
// the JSON is the very text of dumping the whole document at indent 2, and the text listing has the same keys in the
// same order.
TEST(PlanCli, StreamedListsAreTheWholeDocumentsText) {
  const std::string spec = quote(std::string(XFER_SOURCE_DIR) + "/inputs/paper.toml");
  const Result js = run("env -u XFER_DATA -u XFER_MODELS " + quote(xfer()) + " plan " + spec + " --json --list");
  ASSERT_EQ(js.status, 0) << js.err;
  const auto j = nlohmann::ordered_json::parse(js.out);
  EXPECT_EQ(j.dump(2) + "\n", js.out);
  ASSERT_EQ(j.at("trials").size(), j.at("total_trials").get<size_t>());
  const Result text = run("env -u XFER_DATA -u XFER_MODELS " + quote(xfer()) + " plan " + spec + " --list");
  ASSERT_EQ(text.status, 0) << text.err;
  std::vector<std::string> listed;
  std::stringstream ss(text.out.substr(text.out.find("\nkey ")));
  std::string line;
  std::getline(ss, line);
  std::getline(ss, line);  // the header
  while (std::getline(ss, line)) listed.push_back(line.substr(0, line.find(' ')));
  std::vector<std::string> keys;
  for (const auto& t : j.at("trials")) keys.push_back(t.at("key").get<std::string>());
  EXPECT_EQ(listed, keys);
}

TEST(PlanCli, ThroughputTableGivesGpuHours) {
  TempDir dir;
  std::string csv = "model,images_per_second,input_size\n";
  for (const char* m : {"alexnet", "squeezenet1_1", "shufflenet_v2_x0_5", "mobilenet_v3_small", "mnasnet0_5",
                        "shufflenet_v2_x1_0", "vgg13_bn", "deit_tiny_patch16_224", "vgg16_bn", "densenet121",
                        "resnet50", "resnext50_32x4d", "efficientnet_b0", "resnet152", "deit_small_patch16_224",
                        "inception_resnet_v2", "convnext_tiny", "pnasnet5large", "efficientnet_b4"})
    csv += std::string(m) + ",1000,224\n";
  dir.write("tp.csv", csv);
  const Result r = run("env -u XFER_DATA -u XFER_MODELS " + quote(xfer()) + " plan " +
                       quote(std::string(XFER_SOURCE_DIR) + "/inputs/paper.toml") + " --json --throughput " +
                       quote((dir / "tp.csv").string()));
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_TRUE(j.at("gpu_hours").is_number());
  // Same throughput for every model at 224: hours = Σ epochs·(train + eval/3)/ips, scaled by (S/224)^2.
  double expect = 0;
  for (const auto& d : j.at("datasets")) {
    const double s = d.at("name") == "eurosat" ? 1.0 : (256.0 / 224.0) * (256.0 / 224.0);
    const double n_train = d.at("n_train").get<double>(), n_test = d.at("n_test").get<double>();
    const double n_val = d.at("validation") == "paper" ? 0.0 : d.at("n_val").get<double>();
    const double per_trial = 30 * (n_train + (n_val + n_test) / 3.0) / 1000.0 / 3600.0;
    // DeiT models are fixed at 224 on every dataset (2 of 19).
    expect += 20 * per_trial * (17 * s + 2 * 1.0);
  }
  EXPECT_NEAR(j.at("gpu_hours").get<double>(), expect, 1e-6 * expect);

  dir.write("bad.csv", "model,images_per_second\nalexnet,fast\n");
  const Result bad = run(quote(xfer()) + " plan " + quote(std::string(XFER_SOURCE_DIR) + "/inputs/paper.toml") +
                         " --throughput " + quote((dir / "bad.csv").string()));
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.err.find("bad.csv:2:"), std::string::npos) << bad.err;
}

TEST(PlanCli, ADatasetRootThatMatchesNoLayoutFailsAtPlanTime) {
  TempDir dir;
  dir.write("m1.pt", kBackboneStandIn);
  dir.write("data/readme.txt", "not a dataset");
  std::string text = kBase;
  text.replace(text.find("kind = \"imagefolder\""), 20, "kind = \"aptos\"");
  dir.write("spec.toml", text);
  const Result r = run(quote(xfer()) + " plan spec.toml", dir.str());
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("not a aptos dataset as downloaded: expected train.csv and train_images/"), std::string::npos)
      << r.err;
  EXPECT_TRUE(r.out.empty());
}

TEST(PlanCli, UnknownFlagAndMissingSpecFail) {
  EXPECT_NE(run(quote(xfer()) + " plan").status, 0);
  const Result r = run(quote(xfer()) + " plan /nonexistent/spec.toml");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("/nonexistent/spec.toml"), std::string::npos) << r.err;
}

TEST(PlanCli, BadLogLevelIsRefused) {
  const Result r = run("XFER_LOG=loud " + quote(xfer()) + " plan " +
                       quote(std::string(XFER_SOURCE_DIR) + "/inputs/paper.toml"));
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("XFER_LOG"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace xfer::test
