// `xfer analyze` and `xfer report` through the binary: selection from a results file and the write-back, bad CSV
// input that gets notes instead of NaN tables, and the report rendered by headless Chromium without console errors.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/kokkos_env.hpp"
#include "support/process.hpp"
#include "support/tempdir.hpp"
#include "xfer/analysis/stats.hpp"
#include "xfer/analysis/study.hpp"
#include "xfer/metrics/metrics.hpp"
#include "xfer/store/store.hpp"

namespace fs = std::filesystem;

namespace xfer::test {
namespace {

class StudyFiles : public ::testing::Test {
 protected:
  struct Model {
    std::string name;
    double top1;
    std::string weights;
  };
  // A results file as a sweep leaves it: each model with 2 grid points on one dataset, curves for 3 epochs. Model k
  // (its position) scores 0.05·k higher; the lr 1e-3 point 0.1 higher, its validation peaking at epoch 1.
  static void write_results(const std::string& path, const std::vector<Model>& models) {
    auto res = store::Results::open_or_create(path, "t", "[study]\n");
    std::vector<store::ModelRow> model_rows;
    for (const auto& m : models) model_rows.push_back({m.name, "w", "", "", m.top1, 1, 8});
    res.write_study("[study]\n", model_rows, {[] {
                      store::DatasetRow d;
                      d.name = "ds";
                      d.kind = "imagefolder";
                      d.metric = "accuracy";
                      d.validation = "holdout";
                      d.n_test = 500;
                      d.classes = 3;
                      return d;
                    }()});
    std::vector<store::TrialRow> rows;
    for (size_t m = 0; m < models.size(); ++m)
      for (int g = 0; g < 2; ++g) {
        store::TrialRow t;
        t.key = "k" + std::to_string(m) + std::to_string(g) + "000000000000";
        t.model = models[m].name;
        t.dataset = "ds";
        t.metric = "accuracy";
        t.optimizer = "adamw";
        t.lr = g ? 1e-3 : 1e-4;
        t.augmentation = "none";
        t.status = "done";
        t.best_epoch = 2;
        t.imagenet_top1 = models[m].top1;
        t.weights = models[m].weights;
        rows.push_back(t);
      }
    res.add_trials(rows);
    for (size_t i = 0; i < rows.size(); ++i)
      for (int e = 0; e < 3; ++e) {
        store::CurveRow c;
        c.key = rows[i].key;
        c.epoch = e;
        const double m = static_cast<double>(i / 2);
        c.val_metric = 0.5 + 0.05 * m + (rows[i].lr == 1e-3 ? 0.1 : 0) - 0.02 * std::abs(e - 1);
        c.test_metric = 0.48 + 0.05 * m + (rows[i].lr == 1e-3 ? 0.1 : 0) + 0.01 * e;
        res.put_curve(c);
      }
  }
  TempDir dir;
};

TEST_F(StudyFiles, CsvInputBadInputGetsNotesNotNaNTables) {
  // d_ok: 5 models, percent values; d_two: only two models; d_flat: a constant metric; d_kappa: negative values.
  const std::string csv = dir.write("t.csv", "model,imagenet_top1,dataset,value,n_test\n"
                                             "a,60,d_ok,70.5,1000\nb,65,d_ok,72.0,1000\nc,70,d_ok,75.0,1000\n"
                                             "d,75,d_ok,74.0,1000\ne,80,d_ok,79.0,1000\n"
                                             "a,60,d_two,0.5,\nb,65,d_two,0.6,\n"
                                             "a,60,d_flat,0.8,\nb,65,d_flat,0.8,\nc,70,d_flat,0.8,\n"
                                             "a,60,d_kappa,-0.1,\nb,65,d_kappa,0.2,\nc,70,d_kappa,0.4,\nd,75,d_kappa,0.3,\n");
  const Result r = run(quote(xfer()) + " analyze --csv " + quote(csv) + " --json --resamples 1000 --out " +
                       quote((dir / "out").string()));
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  const auto& ok = j["datasets"]["d_ok"];
  for (const char* k : {"n_models", "pearson_r", "spearman_rho", "kendall_tau", "slope", "intercept", "r2", "slope_ci"})
    EXPECT_TRUE(ok.contains(k)) << k;
  EXPECT_EQ(ok["n_models"], 5);
  EXPECT_TRUE(ok["slope_ci"].is_array());
  EXPECT_NEAR(ok["slope"].get<double>(), analysis::ols({60, 65, 70, 75, 80}, {70.5, 72, 75, 74, 79}).slope, 1e-12)
      << "percent detected: slope in percentage points";
  EXPECT_TRUE(ok["logit_slope"].is_number());
  EXPECT_EQ(ok["points"][0]["interval"], "Clopper–Pearson, n = 1000");
  auto has_note = [&](const char* d, const char* words) {
    for (const auto& n : j["datasets"][d]["notes"])
      if (n.get<std::string>().find(words) != std::string::npos) return true;
    return false;
  };
  EXPECT_TRUE(has_note("d_two", "need at least 3"));
  EXPECT_TRUE(j["datasets"]["d_two"]["pearson_r"].is_null());
  EXPECT_TRUE(has_note("d_flat", "same for every model"));
  EXPECT_TRUE(has_note("d_kappa", "no logit-scale fit"));
  EXPECT_TRUE(j["datasets"]["d_kappa"]["logit_slope"].is_null());
  EXPECT_TRUE(j["datasets"]["d_kappa"]["slope"].is_number());
  // Tables say "—", never "nan".
  const std::string md = read_file((dir / "out/summary.md").string());
  EXPECT_EQ(md.find("nan"), std::string::npos) << md;
  EXPECT_NE(md.find("need at least 3"), std::string::npos);
  // A malformed table is an error naming the line.
  dir.write("bad.csv", "model,imagenet_top1,dataset,value\na,sixty,d,0.5\n");
  const Result bad = run(quote(xfer()) + " analyze --csv " + quote((dir / "bad.csv").string()));
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.err.find("bad.csv:2:"), std::string::npos) << bad.err;
}

TEST_F(StudyFiles, SelectionFromAResultsFileAndWriteBack) {
  const std::string path = (dir / "r.h5").string();
  write_results(path, {{"m0", 60, "random-init"}, {"m1", 65, "torchvision:W1"}, {"m2", 70, "torchvision:W2"},
                       {"m3", 75, "torchvision:W3"}});
  const Result r = run(quote(xfer()) + " analyze " + quote(path) + " --json --resamples 500 --no-figures");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  const auto& pts = j["datasets"]["ds"]["points"];
  ASSERT_EQ(pts.size(), 4u);
  for (int m = 0; m < 4; ++m) {
    EXPECT_NEAR(pts[m]["value"].get<double>(), 0.48 + 0.05 * m + 0.1 + 0.01, 1e-12) << "test at the best validation epoch";
    EXPECT_NE(pts[m]["grid_point"].get<std::string>().find("lr=0.001"), std::string::npos);
  }
  // Honest statistics: a random-init model is named before anything else, four models are too few to trust a
  // bootstrap over models, and the screen says both.
  ASSERT_EQ(j["headline"].size(), 1u);
  EXPECT_EQ(j["headline"][0].get<std::string>().rfind("RANDOM-INIT WEIGHTS: 1 of 4 model(s) (m0) were never trained on "
                                                      "ImageNet", 0), 0u) << j["headline"][0];
  EXPECT_EQ(j["random_init"], nlohmann::json::array({"m0"}));
  EXPECT_TRUE(j["datasets"]["ds"]["unreliable"].get<bool>());
  const Result screen = run(quote(xfer()) + " analyze " + quote(path) + " --resamples 500 --no-figures --no-write");
  ASSERT_EQ(screen.status, 0) << screen.err;
  EXPECT_EQ(screen.out.rfind("RANDOM-INIT WEIGHTS:", 0), 0u) << screen.out;
  EXPECT_NE(screen.out.find("UNRELIABLE: 4 < 8 models"), std::string::npos) << screen.out;
  const Result oracle = run(quote(xfer()) + " analyze " + quote(path) + " --json --resamples 500 --no-figures --selection oracle");
  const auto o = nlohmann::json::parse(oracle.out);
  EXPECT_NEAR(o["datasets"]["ds"]["points"][0]["value"].get<double>(), 0.48 + 0.1 + 0.02, 1e-12) << "best test epoch";
  EXPECT_NE(o["selection_note"].get<std::string>().find("optimistic"), std::string::npos);
  // /analysis written back; h5py and pandas read it.
  const Result py = run(std::string(XFER_PYTHON) + " -c " +
                        quote("import h5py, pandas as pd; f = h5py.File('" + path + "'); s = pd.DataFrame(f['analysis/summary'][()]); "
                              "print(s['label'][0].decode(), int(s['n_models'][0]), round(float(s['pearson_r'][0]), 6))"));
  EXPECT_EQ(py.status, 0) << py.err;
  EXPECT_EQ(py.out, "ds 4 1.0\n");
}

// ImageNet-pretrained models with random-init controls named <model>_random_init: the controls stand beside their
// models (not on the fit), each gives a per-architecture gain, and the headline says what the models are, how small
// a sample they are, and what the gain is — not the RANDOM-INIT warning, since no random-init model is on the axis.
TEST_F(StudyFiles, ImagenetPretrainedModelsAgainstTheirRandomInitControls) {
  const std::string path = (dir / "r.h5").string();
  write_results(path, {{"a_random_init", 75.1, "random-init"}, {"b_random_init", 76.7, "random-init"},
                       {"a", 75.1, "pypi:a"}, {"b", 76.7, "pypi:b"}, {"c", 77.6, "pypi:c"}});
  const Result r = run(quote(xfer()) + " analyze " + quote(path) + " --json --resamples 200 --no-figures --no-write");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  const auto& d = j["datasets"]["ds"];
  EXPECT_EQ(d["family"], "imagenet");
  ASSERT_EQ(d["points"].size(), 3u);
  EXPECT_EQ(d["points"][0]["model"], "a");
  ASSERT_EQ(d["controls"].size(), 2u);
  ASSERT_EQ(d["comparisons"].size(), 2u);
  for (const auto& c : d["comparisons"]) {
    EXPECT_EQ(c["control_model"], c["architecture"].get<std::string>() + "_random_init");
    EXPECT_EQ(c["best_model"], c["architecture"]);
    // Model k scores 0.05·k more: a (k = 2) beats a_random_init (k = 0) by 10 points, b (3) b_random_init (1) too.
    EXPECT_NEAR(c["pretrained_best"].get<double>() - c["control"].get<double>(), 0.10, 1e-12);
  }
  ASSERT_EQ(j["headline"].size(), 3u) << j["headline"].dump();
  EXPECT_EQ(j["headline"][0], "ImageNet-pretrained: 3 model(s) (a 75.1 %, b 76.7 %, c 77.6 %) fine-tuned on ds. The "
                              "x-axis is their published ImageNet top-1; the same architectures fine-tuned from random "
                              "weights (the random-init controls) stand beside them.");
  EXPECT_EQ(j["headline"][1].get<std::string>().rfind("3 model(s) spanning 2.5 pp of ImageNet top-1 (75.1–77.6 %) are a "
                                                      "small sample", 0), 0u) << j["headline"][1];
  EXPECT_EQ(j["headline"][2], "ds: ImageNet-pretrained beats random init for 2 of 2 architecture(s) (best gain +10.0 pp "
                              "of accuracy; per architecture: a +10.0, b +10.0).");
  EXPECT_EQ(j["random_init"], nlohmann::json::array({"a_random_init", "b_random_init"}));
}

TEST_F(StudyFiles, TheReportRendersInHeadlessChromiumWithoutConsoleErrors) {
  const std::string csv = dir.write("t.csv", "model,imagenet_top1,dataset,value\nalexnet,56.5,a,0.6\nresnet50,76.1,a,0.7\n"
                                             "convnext_tiny,82.1,a,0.72\nvgg16_bn,73.4,a,0.69\nalexnet,56.5,b,0.8\n"
                                             "resnet50,76.1,b,0.81\nconvnext_tiny,82.1,b,0.79\nvgg16_bn,73.4,b,0.82\n");
  const std::string html = (dir / "report.html").string();
  const Result r = run(quote(xfer()) + " report --csv " + quote(csv) + " --out " + quote(html) + " --resamples 1000");
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string page = read_file(html);
  EXPECT_NE(page.find("<svg"), std::string::npos) << "figures are inline";
  EXPECT_EQ(page.find("src=\"http"), std::string::npos) << "self-contained";
  EXPECT_EQ(page.find("<script"), std::string::npos);
  EXPECT_NE(page.find("Selection rule"), std::string::npos);
  const std::string shot = (dir / "shot.png").string();
  const Result c = run("timeout 120 chromium --headless --no-sandbox --disable-gpu --enable-logging=stderr --v=0 "
                       "--window-size=1200,1600 --screenshot=" + quote(shot) + " " + quote("file://" + html));
  ASSERT_TRUE(fs::exists(shot)) << c.err;
  EXPECT_GT(fs::file_size(shot), 20000u) << "a blank screenshot is a few kB";
  EXPECT_EQ(c.err.find("CONSOLE"), std::string::npos) << c.err;
  EXPECT_EQ(c.err.find("Uncaught"), std::string::npos) << c.err;
}

}  // namespace
}  // namespace xfer::test
