// The upstream stage under mpirun: a two-architecture study pre-trained on Fashion-MNIST classes 0–4 and fine-tuned on
// classes 5–9, killed (kill -9) while its pre-training trials run and rerun. Checked from the results file with h5py
// (tests/reference/check_upstream.py): every trial once, downstream trials started only after their upstream trial
// finished, each loaded the backbone its upstream trial exported (SHA-256 of the file, of the row, of the metadata),
// and `xfer analyze` plots each pre-trained model at its measured upstream top-1.
#include <csignal>
#include <filesystem>
#include <set>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/process.hpp"
#include "support/tempdir.hpp"

namespace fs = std::filesystem;

namespace xfer::test {
namespace {

const std::string kModels = XFER_TEST_MODELS;
const std::string kMpirun = "mpirun --allow-run-as-root --oversubscribe --bind-to none";
const std::string kFashion = "/usr/share/datasets/fashion-mnist";

std::string study_spec() {
  std::string datasets;
  for (const auto& [name, classes, train] : {std::tuple<const char*, const char*, int>{"fm04", "0,1,2,3,4", 400},
                                             std::tuple<const char*, const char*, int>{"fm59", "5,6,7,8,9", 200}})
    datasets += std::string("[[dataset]]\nname = \"") + name + "\"\nkind = \"idx\"\nroot = \"" + kFashion +
                "\"\nclasses = \"" + classes + "\"\ninput_size = 32\nlimit_train = " + std::to_string(train) +
                "\nlimit_test = 200\n\n";
  return "[study]\nname = \"upstream\"\nresults = \"out/results.h5\"\nselection = \"holdout\"\nmax_attempts = 2\n\n"
         "[[model]]\nname = \"shufflenet_v2_x0_5\"\nbackbone = \"" + kModels + "/shufflenet_v2_x0_5.pt\"\n"
         "[[model]]\nname = \"squeezenet1_1\"\nbackbone = \"" + kModels + "/squeezenet1_1.pt\"\n\n" + datasets +
         "[[upstream]]\nname = \"fm\"\ndataset = \"fm04\"\nmodels = [\"shufflenet_v2_x0_5\", \"squeezenet1_1\"]\n"
         "epochs = [1, 3]\nlrs = [1e-3]\nbatch_size = 32\n\n"
         "[grid]\nepochs = 1\nbatch_size = 32\ninput_size = 32\nweight_decays = [1e-4]\n\n"
         "[[grid.optimizer]]\nfamily = \"adamw\"\nlrs = [1e-3]\n";
}

std::vector<int> children(int pid) {
  std::vector<int> out;
  std::stringstream ss(run("pgrep -P " + std::to_string(pid)).out);
  for (int p; ss >> p;) out.push_back(p);
  return out;
}

class Upstream : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(kFashion + "/train-images-idx3-ubyte.gz")) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
    dir.write("spec.toml", study_spec());
  }
  std::string results() const { return (dir / "out/results.h5").string(); }
  std::string run_command() const {
    return kMpirun + " -n 2 " + quote(xfer()) + " run " + quote((dir / "spec.toml").string()) +
           " --no-progress --threads 1";
  }
  nlohmann::json check() {
    const Result r = run(std::string(XFER_PYTHON) + " " +
                         quote(std::string(XFER_SOURCE_DIR) + "/tests/reference/check_upstream.py") + " " +
                         quote(results()) + " " + quote((dir / "out/results.h5.upstream").string()));
    EXPECT_EQ(r.status, 0) << r.err;
    return r.status == 0 ? nlohmann::json::parse(r.out) : nlohmann::json::object();
  }
  TempDir dir;
};

TEST_F(Upstream, KilledMidPretrainingTheStudyResumesInDependencyOrderWithTheExportedBackbones) {
  // The plan names the stage; 4 pre-training trials (2 architectures × 2 lengths), then 2 controls + 4 pre-trained
  // models fine-tuned on fm59.
  const Result plan = run(quote(xfer()) + " plan " + quote((dir / "spec.toml").string()) + " --json --list");
  ASSERT_EQ(plan.status, 0) << plan.err;
  const auto pj = nlohmann::json::parse(plan.out);
  ASSERT_EQ(pj["total_trials"], 10);
  std::set<std::string> upstream_keys;
  for (const auto& t : pj["trials"])
    if (t.value("stage", "") == "upstream") upstream_keys.insert(t["key"].get<std::string>());
  ASSERT_EQ(upstream_keys.size(), 4u);
  for (const auto& t : pj["trials"])
    if (t.contains("upstream")) EXPECT_TRUE(upstream_keys.count(t["upstream"].get<std::string>())) << t.dump();

  // Kill -9 every rank while a 3-epoch pre-training trial is in its last epoch.
  const std::string ckpt = (dir / "out/results.h5.ckpt").string();
  const int pid = spawn(run_command(), (dir / "a.out").string(), (dir / "a.err").string());
  ASSERT_TRUE(eventually(300, [&] {
    if (!fs::exists(ckpt)) return false;
    for (const auto& e : fs::recursive_directory_iterator(ckpt))
      if (e.path().filename() == "epoch-2-step-0.ckpt") return true;
    return false;
  })) << read_file((dir / "a.err").string());
  const auto kids = children(pid);
  ASSERT_FALSE(kids.empty());
  for (int kid : kids) ::kill(kid, SIGKILL);
  EXPECT_NE(wait_for(pid), 0);
  for (int kid : kids)
    eventually(60, [&] {
      return ::kill(kid, 0) != 0 || read_file("/proc/" + std::to_string(kid) + "/stat").find(") Z") != std::string::npos;
    });
  const auto mid = check();
  int upstream_unfinished = 0;
  for (const auto& [k, t] : mid["trials"].items()) {
    if (t["stage"] == "upstream") {
      upstream_unfinished += t["status"] != "done";
    } else if (t["status"] != "pending" && !t["upstream"].get<std::string>().empty()) {
      EXPECT_EQ(mid["trials"][t["upstream"].get<std::string>()]["status"], "done")
          << k << " started before its upstream trial was done";
    }
  }
  EXPECT_GE(upstream_unfinished, 1) << "killed mid-upstream: " << mid.dump();

  // The rerun finishes everything, each trial once.
  const Result again = run(run_command());
  ASSERT_EQ(again.status, 0) << again.err;
  const auto j = check();
  ASSERT_EQ(j["trials"].size(), 10u);
  EXPECT_EQ(j["duplicate_curve_rows"], 0);
  int resumed = 0, downstream_pretrained = 0;
  for (const auto& [k, t] : j["trials"].items()) {
    EXPECT_EQ(t["status"], "done") << k << ": " << t.dump();
    EXPECT_EQ(t["attempts"], 1) << k << " started from scratch twice";
    if (t["stage"] == "upstream") {
      resumed += t["resumed_from"].get<int>() >= 1;
      // The export: the file's SHA-256, the row's and the metadata's agree; the metadata carries the measured top-1.
      EXPECT_EQ(t["file_sha256"].get<std::string>().size(), 64u) << k;
      EXPECT_EQ(t["exported_sha256"], t["file_sha256"]) << k;
      EXPECT_EQ(t["metadata"]["sha256"], t["file_sha256"]) << k;
      EXPECT_NEAR(t["metadata"]["upstream_top1"].get<double>(), t["test_metric"].get<double>() * 100, 1e-9) << k;
      EXPECT_EQ(t["dataset"], "fm04");
      EXPECT_GT(t["parameters"].get<int>(), 0) << k;
      EXPECT_EQ(t["trainable"], t["parameters"]) << k << ": the exported backbone is fine-tuned whole, not frozen";
      continue;
    }
    EXPECT_EQ(t["dataset"], "fm59");
    const std::string up = t["upstream"];
    if (up.empty()) {
      EXPECT_EQ(t["weights"], "random-init") << "the controls fine-tune the architectures' own (random) weights";
      continue;
    }
    ++downstream_pretrained;
    const auto& u = j["trials"][up];
    // Dependency order, and the backbone it loaded is its upstream trial's export.
    EXPECT_GE(t["started_at"].get<double>(), u["finished_at"].get<double>()) << k << " started before " << up;
    EXPECT_EQ(t["backbone_sha256"], u["file_sha256"]) << k;
    EXPECT_NE(t["model"].get<std::string>().find("+fm"), std::string::npos) << t["model"];
  }
  EXPECT_EQ(downstream_pretrained, 4);
  EXPECT_GE(resumed, 1) << "the killed pre-training trial resumed from its checkpoint";

  // The x-axis is the measured upstream top-1; the controls are not on it; the first line says what was pre-trained.
  const Result an = run(quote(xfer()) + " analyze " + quote(results()) + " --json --no-figures --no-write --resamples 200");
  ASSERT_EQ(an.status, 0) << an.err;
  const auto a = nlohmann::json::parse(an.out);
  ASSERT_TRUE(a["datasets"].contains("fm59"));
  EXPECT_FALSE(a["datasets"].contains("fm04")) << "pre-training data is the x-axis, not a task";
  const auto& d = a["datasets"]["fm59"];
  ASSERT_EQ(d["points"].size(), 4u);
  for (const auto& p : d["points"]) {
    const auto& u = j["trials"][p["upstream"].get<std::string>()];
    EXPECT_NEAR(p["x"].get<double>(), u["test_metric"].get<double>() * 100, 1e-9) << p.dump();
  }
  EXPECT_EQ(d["controls"].size(), 2u);
  EXPECT_EQ(d["comparisons"].size(), 2u);
  EXPECT_TRUE(d["unreliable"].get<bool>()) << "4 models: the bootstrap over models is flagged";
  ASSERT_GE(a["headline"].size(), 2u);
  EXPECT_EQ(a["headline"][0].get<std::string>().rfind("Pre-trained by this study: 4 upstream run(s)", 0), 0u)
      << a["headline"][0];
  EXPECT_NE(a["headline"][1].get<std::string>().find("Random-init weights"), std::string::npos) << a["headline"][1];
  const Result screen = run(quote(xfer()) + " analyze " + quote(results()) + " --no-figures --no-write --resamples 200");
  ASSERT_EQ(screen.status, 0) << screen.err;
  EXPECT_EQ(screen.out.rfind("Pre-trained by this study", 0), 0u) << screen.out;
  EXPECT_NE(screen.out.find("UNRELIABLE"), std::string::npos) << screen.out;
}

}  // namespace
}  // namespace xfer::test
