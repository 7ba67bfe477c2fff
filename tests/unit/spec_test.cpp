// The spec reader: defaults, the catalog, overrides, paths and variables.
#include <cstdlib>
#include <tuple>

#include <gtest/gtest.h>

#include "support/tempdir.hpp"
#include "xfer/core/error.hpp"
#include "xfer/spec/catalog.hpp"
#include "xfer/spec/dataset_kind.hpp"
#include "xfer/spec/spec.hpp"

namespace xfer::test {
namespace {

using spec::Spec;

class SpecFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    dir.write("models/m1.pt", kBackboneStandIn);
    dir.write("models/m2.pt", kBackboneStandIn);
    std::filesystem::create_directories(dir / "data/a");
    std::filesystem::create_directories(dir / "data/b");
  }
  Spec parse(const std::string& text) { return spec::load(dir.write("s.toml", text)); }
  TempDir dir;
};

const char* kMinimal = R"(
[study]
name = "mini"
results = "res/r.h5"
[[model]]
name = "m1"
backbone = "models/m1.pt"
imagenet_top1 = 70
[[dataset]]
name = "a"
kind = "imagefolder"
root = "data/a"
[grid]
weight_decays = [0]
[[grid.optimizer]]
family = "adamw"
lrs = [0.001]
)";

TEST_F(SpecFixture, DefaultsFollowThePaper) {
  const Spec s = parse(kMinimal);
  EXPECT_EQ(s.study.name, "mini");
  EXPECT_EQ(s.study.selection, "paper");
  EXPECT_EQ(s.study.results.path, (dir / "res/r.h5").string()) << "relative to the spec's folder";
  EXPECT_EQ(s.study.checkpoint_dir.path, (dir / "res/r.h5.ckpt").string());
  EXPECT_EQ(s.grid.epochs, 30);
  EXPECT_EQ(s.grid.batch_size, 128);
  EXPECT_EQ(s.grid.input_size, 256);
  EXPECT_EQ(s.grid.schedule, "cosine");
  ASSERT_EQ(s.grid.optimizers.size(), 1u);
  EXPECT_EQ(s.grid.optimizers[0].wd_mode, "over_lr");
  EXPECT_EQ(s.grid.augmentations, std::vector<std::string>{"none"});
  EXPECT_EQ(s.grid.seeds, std::vector<int64_t>{0});
  ASSERT_EQ(s.models.size(), 1u);
  EXPECT_DOUBLE_EQ(s.models[0].imagenet_top1, 70.0);
  EXPECT_DOUBLE_EQ(s.models[0].mean[0], 0.485);
  EXPECT_EQ(s.models[0].weights, "unspecified");
  EXPECT_EQ(s.datasets[0].metric, "accuracy");
  EXPECT_EQ(s.text.find("[study]"), 1u) << "the full text is kept for the results file";
}

TEST_F(SpecFixture, PaperKindsTakeTheirMetricFlipsAndSeeds) {
  const Spec s = parse(std::string(kMinimal) + R"(
[[dataset]]
name = "ap"
kind = "aptos"
root = "data/b"
[[dataset]]
name = "eu"
kind = "eurosat"
root = "data/b"
[[dataset]]
name = "hp"
kind = "hpa"
root = "data/b"
)");
  const auto* ap = s.find_dataset("ap");
  ASSERT_TRUE(ap);
  EXPECT_EQ(ap->metric, "qwk");
  EXPECT_EQ(ap->flips, "h");
  EXPECT_EQ(s.validation_of(*ap), "paper");
  const auto* eu = s.find_dataset("eu");
  EXPECT_EQ(eu->input_size, 224);
  EXPECT_EQ(eu->flips, "none");
  const auto* hp = s.find_dataset("hp");
  EXPECT_EQ(hp->metric, "macro_f1");
  EXPECT_EQ(hp->flips, "hv");
  EXPECT_EQ(s.validation_of(*hp), "fixed");
}

TEST_F(SpecFixture, CatalogGivesTheNineteenModelsAndEntriesOverrideThem) {
  std::string text = kMinimal;
  text.replace(text.find("[[model]]"), std::string("[[model]]\nname = \"m1\"\nbackbone = \"models/m1.pt\"\nimagenet_top1 = 70\n").size(),
               "");
  text.replace(text.find("results = \"res/r.h5\""), 20, "results = \"res/r.h5\"\ncatalog = \"paper\"\nmodels_dir = \"cat\"");
  for (const auto& m : spec::paper_models()) dir.write("cat/" + m.name + ".pt", kBackboneStandIn);
  const Spec s = parse(text + "[[model]]\nname = \"resnet50\"\nimagenet_top1 = 80.9\nweights = \"timm:resnet50.a1_in1k\"\n");
  ASSERT_EQ(s.models.size(), 19u);
  const auto* r50 = s.find_model("resnet50");
  ASSERT_TRUE(r50);
  EXPECT_DOUBLE_EQ(r50->imagenet_top1, 80.9);
  EXPECT_EQ(r50->weights, "timm:resnet50.a1_in1k");
  EXPECT_EQ(r50->backbone.path, (dir / "cat/resnet50.pt").string());
  EXPECT_DOUBLE_EQ(r50->gmacs, 4.09) << "unset fields keep the catalog's";
  const auto* deit = s.find_model("deit_tiny_patch16_224");
  ASSERT_TRUE(deit);
  EXPECT_EQ(deit->input_size, 224);
  // A subset.
  const Spec sub = parse(text.replace(text.find("models_dir = \"cat\""), 18,
                                      "models_dir = \"cat\"\nmodels = [\"alexnet\", \"resnet50\"]"));
  EXPECT_EQ(sub.models.size(), 2u);
}

TEST_F(SpecFixture, CatalogBackboneMissingSaysHowToExportIt) {
  std::string text = kMinimal;
  text.replace(text.find("results = \"res/r.h5\""), 20,
               "results = \"res/r.h5\"\ncatalog = \"paper\"\nmodels_dir = \"models\"\nmodels = [\"alexnet\"]");
  try {
    parse(text);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), Error::Kind::input);
    EXPECT_NE(std::string(e.what()).find("s.toml:6: key 'study.models_dir'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("export_backbones.py alexnet"), std::string::npos) << e.what();
  }
}

TEST_F(SpecFixture, VariablesExpandAndUnsetOnesStayUnchecked) {
  ::setenv("XFER_TEST_DATA", (dir / "data").c_str(), 1);
  ::unsetenv("XFER_TEST_UNSET");
  std::string text = kMinimal;
  text.replace(text.find("root = \"data/a\""), 15, "root = \"${XFER_TEST_DATA}/a\"");
  text += "[[dataset]]\nname = \"later\"\nkind = \"eurosat\"\nroot = \"${XFER_TEST_UNSET}/eurosat\"\n";
  text.replace(text.find("results = \"res/r.h5\""), 20, "results = \"${XFER_TEST_UNSET:-out}/r.h5\"");
  const Spec s = parse(text);
  EXPECT_EQ(s.datasets[0].root.path, (dir / "data/a").string());
  EXPECT_FALSE(s.datasets[1].root.resolved());
  EXPECT_EQ(s.datasets[1].root.unset_var, "XFER_TEST_UNSET");
  EXPECT_EQ(s.study.results.path, (dir / "out/r.h5").string()) << "${VAR:-default}";
  // A variable that is set but points nowhere is a typo to catch, not a path to defer.
  ::setenv("XFER_TEST_UNSET", "/nonexistent-xfer", 1);
  EXPECT_THROW(parse(text), Error);
  ::unsetenv("XFER_TEST_UNSET");
  ::unsetenv("XFER_TEST_DATA");
}

TEST_F(SpecFixture, OverridesAndPerFamilyWeightDecays) {
  const Spec s = parse(std::string(kMinimal) + R"(
[[grid.optimizer]]
family = "sgd"
lrs = [0.1, 0.01]
weight_decays = [1e-4, 5e-4]
[[override]]
model = "m*"
dataset = "a"
batch_size = 64
precision = "bf16"
)");
  ASSERT_EQ(s.grid.optimizers.size(), 2u);
  EXPECT_EQ(s.grid.optimizers[1].family, "sgd");
  EXPECT_TRUE(s.grid.optimizers[1].nesterov);
  EXPECT_DOUBLE_EQ(s.grid.optimizers[1].momentum, 0.9);
  EXPECT_EQ(s.grid.optimizers[1].weight_decays.size(), 2u);
  ASSERT_EQ(s.overrides.size(), 1u);
  EXPECT_EQ(*s.overrides[0].batch_size, 64);
  EXPECT_EQ(*s.overrides[0].precision, "bf16");
}

TEST_F(SpecFixture, BackboneMetadataFromTheExportToolFillsDefaults) {
  dir.write("models/m1.json", R"({"name": "m1", "weights": "random-init", "imagenet_top1": 67.7, "gmacs": 0.06,
                                  "feature_dim": 1024, "input_size": 0, "mean": [0.5, 0.5, 0.5]})");
  std::string text = kMinimal;
  text.replace(text.find("imagenet_top1 = 70\n"), 19, "");
  const Spec s = parse(text);
  EXPECT_EQ(s.models[0].weights, "random-init");
  EXPECT_DOUBLE_EQ(s.models[0].imagenet_top1, 67.7);
  EXPECT_DOUBLE_EQ(s.models[0].gmacs, 0.06);
  EXPECT_EQ(s.models[0].feature_dim, 1024);
  EXPECT_DOUBLE_EQ(s.models[0].mean[1], 0.5);
  // Keys written in the spec win over the metadata.
  const Spec t = parse(kMinimal);
  EXPECT_DOUBLE_EQ(t.models[0].imagenet_top1, 70.0);
  dir.write("models/m1.json", "{not json");
  try {
    parse(kMinimal);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("m1.json"), std::string::npos) << e.what();
  }
}

TEST(ExpandVars, Forms) {
  ::setenv("XFER_EV", "abc", 1);
  ::unsetenv("XFER_EV_UNSET");
  std::string unset;
  EXPECT_EQ(*spec::expand_vars("x/${XFER_EV}/y", &unset), "x/abc/y");
  EXPECT_EQ(*spec::expand_vars("${XFER_EV_UNSET:-d}/y", &unset), "d/y");
  EXPECT_EQ(*spec::expand_vars("$HOME-literal", &unset), "$HOME-literal") << "only ${...} is expanded";
  EXPECT_FALSE(spec::expand_vars("${XFER_EV_UNSET}/y", &unset).has_value());
  EXPECT_EQ(unset, "XFER_EV_UNSET");
}

TEST(Glob, Patterns) {
  EXPECT_TRUE(spec::glob_match("*", "anything"));
  EXPECT_TRUE(spec::glob_match("deit_*", "deit_tiny_patch16_224"));
  EXPECT_FALSE(spec::glob_match("deit_*", "resnet50"));
  EXPECT_TRUE(spec::glob_match("resnet?0", "resnet50"));
  EXPECT_TRUE(spec::glob_match("*net*", "resnext50_32x4d") == false);
  EXPECT_TRUE(spec::glob_match("*ne*", "resnext50_32x4d"));
  EXPECT_TRUE(spec::glob_match("vgg1[36]_bn", "vgg16_bn"));
  EXPECT_FALSE(spec::glob_match("vgg1[!36]_bn", "vgg16_bn"));
  EXPECT_FALSE(spec::glob_match("", "x"));
}

TEST(Catalog, NineteenModelsInTop1Order) {
  const auto& m = spec::paper_models();
  ASSERT_EQ(m.size(), 19u);
  for (size_t i = 1; i < m.size(); ++i) EXPECT_LE(m[i - 1].imagenet_top1, m[i].imagenet_top1) << m[i].name;
  EXPECT_DOUBLE_EQ(spec::find_catalog_model("alexnet")->imagenet_top1, 56.5);
  EXPECT_DOUBLE_EQ(spec::find_catalog_model("efficientnet_b4")->imagenet_top1, 83.4);
  for (const auto& x : m) {
    EXPECT_GT(x.gmacs, 0) << x.name;
    EXPECT_GT(x.feature_dim, 0) << x.name;
  }
}

// The dataset-kind registry holds exactly the facts the catalog table held before it (copied from that table):
// moving them must not change a metric, a seed, a flip or a size.
TEST(DatasetKinds, FactsEqualTheCatalogTheyReplaced) {
  struct Before {
    const char* kind;
    const char* metric;
    std::vector<std::string> metrics;
    const char* flips;
    long heldout_seed;
    int default_input_size;
    bool multilabel, native_validation, bgr_in_paper;
    int num_classes;
    long n_train, n_val, n_test;
  };
  const std::vector<Before> before = {
      {"cct20", "accuracy", {"accuracy", "balanced_accuracy", "log_loss"}, "h", -1, 0, false, true, true, 15,
       13553, 3484, 15827},
      {"aptos", "qwk", {"qwk", "accuracy", "balanced_accuracy", "log_loss"}, "h", 414, 0, false, false, true, 5,
       2931, 0, 731},
      {"hpa", "macro_f1", {"macro_f1", "log_loss"}, "hv", -1, 0, true, true, true, 28, 22582, 5664, 2826},
      {"melanoma", "roc_auc", {"roc_auc", "accuracy", "balanced_accuracy", "log_loss"}, "hv", 23, 0, false, false,
       true, 2, 46766, 0, 11691},
      {"cassava", "accuracy", {"accuracy", "balanced_accuracy", "log_loss"}, "hv", 414, 0, false, false, false, 5,
       17120, 0, 4277},
      {"eurosat", "accuracy", {"accuracy", "balanced_accuracy", "log_loss"}, "none", 42, 224, false, false, false,
       10, 21600, 0, 5400},
      {"imagefolder", "accuracy", {"accuracy", "balanced_accuracy", "qwk", "roc_auc", "log_loss"}, "h", 0, 0,
       false, false, false, 0, 0, 0, 0},
      {"csv", "accuracy", {"accuracy", "balanced_accuracy", "qwk", "macro_f1", "roc_auc", "log_loss"}, "h", 0, 0,
       false, false, false, 0, 0, 0, 0},
      {"idx", "accuracy", {"accuracy", "balanced_accuracy", "qwk", "roc_auc", "log_loss"}, "none", 0, 0, false,
       false, false, 0, 0, 0, 0},
  };
  const auto& kinds = spec::dataset_kinds();
  ASSERT_EQ(kinds.size(), before.size());
  for (size_t i = 0; i < kinds.size(); ++i) {
    const auto& k = kinds[i];
    const auto& b = before[i];
    SCOPED_TRACE(b.kind);
    EXPECT_EQ(k.kind, b.kind);
    EXPECT_EQ(name_str(k.metric), b.metric);
    std::vector<std::string> metrics;
    for (Metric m : k.metrics) metrics.push_back(name_str(m));
    EXPECT_EQ(metrics, b.metrics);
    EXPECT_EQ(name_str(k.flips), b.flips);
    EXPECT_EQ(k.heldout_seed, b.heldout_seed);
    EXPECT_EQ(k.default_input_size, b.default_input_size);
    EXPECT_EQ(k.multilabel, b.multilabel);
    EXPECT_EQ(k.native_validation, b.native_validation);
    EXPECT_FALSE(k.native_validation && k.validation_from_layout);
    EXPECT_EQ(k.bgr_in_paper, b.bgr_in_paper);
    EXPECT_EQ(k.num_classes, b.num_classes);
    EXPECT_EQ(k.n_train, b.n_train);
    EXPECT_EQ(k.n_val, b.n_val);
    EXPECT_EQ(k.n_test, b.n_test);
    EXPECT_EQ(spec::find_dataset_kind(b.kind), &k);
  }
  EXPECT_EQ(spec::find_dataset_kind("imagefolders"), nullptr);
  // Only the kinds whose layout can carry a validation split are resolved from it.
  for (const auto& k : kinds)
    EXPECT_EQ(k.validation_from_layout, k.kind == "imagefolder" || k.kind == "csv") << k.kind;
}

TEST_F(SpecFixture, KindSettingsAreReadAsTheRegistryDeclaresThem) {
  const Spec s = parse(std::string(kMinimal) + R"(
[[dataset]]
name = "man"
kind = "csv"
root = "data/b"
manifest = "list.csv"
[[dataset]]
name = "mel"
kind = "melanoma"
root = "data/b"
melanoma_2019 = false
[[dataset]]
name = "atlas"
kind = "hpa"
root = "data/b"
)");
  EXPECT_EQ(s.find_dataset("man")->manifest, "list.csv");
  EXPECT_FALSE(s.find_dataset("mel")->melanoma_2019);
  EXPECT_EQ(s.find_dataset("atlas")->split_file, "split.stratified.small.0.csv") << "the registry's default";
  for (const auto& [key, value, owner] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"manifest", "\"m.csv\"", "kind = \"csv\""},
           {"split_file", "\"s.csv\"", "kind = \"hpa\""},
           {"melanoma_2019", "true", "kind = \"melanoma\""}}) {
    std::string text = kMinimal;
    text.replace(text.find("root = \"data/a\""), 15, "root = \"data/a\"\n" + key + " = " + value);
    try {
      parse(text);
      ADD_FAILURE() << key << " on an imagefolder was accepted";
    } catch (const Error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("s.toml:13: key 'dataset[0]." + key + "'"), std::string::npos) << what;
      EXPECT_NE(what.find("applies only to " + owner), std::string::npos) << what;
    }
  }
  std::string bad = std::string(kMinimal) + "[[dataset]]\nname = \"mel\"\nkind = \"melanoma\"\nroot = \"data/b\"\n"
                    "melanoma_2019 = \"yes\"\n";
  try {
    parse(bad);
    ADD_FAILURE() << "a string melanoma_2019 was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'dataset[1].melanoma_2019': expected true or false"), std::string::npos)
        << e.what();
  }
}

TEST_F(SpecFixture, AnUnresolvedLayoutKindHasNoValidationYet) {
  Spec s = parse(kMinimal);
  EXPECT_THROW(s.validation_of(s.datasets[0]), Error) << "imagefolder: the layout decides";
  s.datasets[0].resolved = spec::ResolvedValidation{Validation::fixed, true, "a val/ folder beside train/"};
  EXPECT_EQ(s.validation_of(s.datasets[0]), "fixed");
  EXPECT_EQ(s.requested_validation(s.datasets[0]), Validation::paper);
}

}  // namespace
}  // namespace xfer::test

namespace xfer::test {
namespace {

// [[upstream]]: its dataset becomes upstream-only, its models must be the spec's, and mistakes name file:line:key.
TEST_F(SpecFixture, UpstreamStagesAreReadAndTheirMistakesNamed) {
  const std::string stage = R"(
[[dataset]]
name = "up"
kind = "idx"
root = "data/b"
classes = "0,1,2"
[[upstream]]
name = "pre"
dataset = "up"
models = ["m1"]
epochs = [1, 3]
)";
  const Spec s = parse(std::string(kMinimal) + stage);
  ASSERT_EQ(s.upstreams.size(), 1u);
  EXPECT_EQ(s.upstreams[0].epochs, (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(s.upstreams[0].lrs, std::vector<double>{1e-3}) << "the stage's defaults";
  EXPECT_TRUE(s.find_dataset("up")->upstream_only);
  EXPECT_FALSE(s.find_dataset("a")->upstream_only);
  EXPECT_EQ(s.find_dataset("up")->classes, "0,1,2");
  EXPECT_NE(s.study.upstream_dir.path.find("res/r.h5.upstream"), std::string::npos) << s.study.upstream_dir.path;
  auto error_of = [&](const std::string& from, const std::string& to) {
    std::string text = std::string(kMinimal) + stage;
    text.replace(text.find(from), from.size(), to);
    try {
      parse(text);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(error_of("dataset = \"up\"", "dataset = \"upp\"").find("s.toml:26: key 'upstream[0].dataset': \"upp\" is no "
                                                                 "[[dataset]] of this spec (did you mean \"up\"?)"),
            std::string::npos) << error_of("dataset = \"up\"", "dataset = \"upp\"");
  EXPECT_NE(error_of("models = [\"m1\"]", "models = [\"m3\"]").find("key 'upstream[0].models': \"m3\" is no model"),
            std::string::npos);
  EXPECT_NE(error_of("epochs = [1, 3]", "epochs = [0]").find("upstream[0].epochs"), std::string::npos);
  EXPECT_NE(error_of("epochs = [1, 3]", "epoch = [1]").find("unknown key in [upstream[0]] (did you mean 'epochs'?)"),
            std::string::npos) << error_of("epochs = [1, 3]", "epoch = [1]");
  // Pre-training data only: nothing left to fine-tune on.
  try {
    parse(std::string(kMinimal) + "[[upstream]]\nname = \"pre\"\ndataset = \"a\"\nmodels = [\"m1\"]\n");
    ADD_FAILURE() << "a study without a downstream dataset was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("every [[dataset]] is an [[upstream]] stage's"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace xfer::test
