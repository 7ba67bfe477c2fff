// The fine-tuning engine end to end through `xfer train`: parity with a PyTorch script replaying the same batches,
// exact resume after kill -9 and after SIGTERM mid-epoch, corrupt checkpoints, divergence, bad backbones.
#include <csignal>
#include <filesystem>
#include <fstream>
#include <regex>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/fixture_suite.hpp"
#include "support/process.hpp"
#include "support/tempdir.hpp"

namespace fs = std::filesystem;

namespace xfer::test {
namespace {

const std::string kModels = XFER_TEST_MODELS;

class Engine : public WithFixtureDatasets {
 protected:
  std::string spec(const std::string& model, int epochs, double lr, const std::string& extra_grid = "",
                   const std::string& extra_study = "") {
    return dir.write("spec.toml", "[study]\nname = \"t\"\nresults = \"r.h5\"\n" + extra_study +
                                      "\n[[model]]\nname = \"" + model + "\"\nbackbone = \"" + kModels + "/" + model +
                                      ".pt\"\n\n[[dataset]]\nname = \"eurosat\"\nkind = \"eurosat\"\nroot = \"" +
                                      (*data_ / "eurosat").string() + "\"\ninput_size = 32\n\n[grid]\nepochs = " + std::to_string(epochs) +
                                      "\nbatch_size = 16\ninput_size = 32\nweight_decays = [1e-4]\n" + extra_grid +
                                      "\n[[grid.optimizer]]\nfamily = \"adamw\"\nlrs = [" + std::to_string(lr) + "]\n");
  }
  nlohmann::json train(const std::string& args, const std::string& ckpt, Result* out = nullptr) {
    const Result r = run(quote(xfer()) + " train " + quote((dir / "spec.toml").string()) + " --index 0 --json --threads 1 " +
                         "--checkpoint-dir " + quote(ckpt) + " " + args);
    if (out) *out = r;
    EXPECT_EQ(r.status, 0) << r.err;
    return r.status == 0 ? nlohmann::json::parse(r.out) : nlohmann::json();
  }
  static void expect_same_run(const nlohmann::json& a, const nlohmann::json& b) {
    ASSERT_EQ(a["epochs"].size(), b["epochs"].size());
    for (size_t e = 0; e < a["epochs"].size(); ++e)
      for (const char* k : {"train_loss", "val_metric", "val_loss", "lr"})
        EXPECT_EQ(a["epochs"][e][k], b["epochs"][e][k]) << "epoch " << e << " " << k;
    EXPECT_EQ(a["best_epoch"], b["best_epoch"]);
    EXPECT_EQ(a["status"], "done");
    EXPECT_EQ(b["status"], "done");
  }
  TempDir dir;
};

TEST_F(Engine, MatchesAPyTorchScriptStepForStep) {
  for (const char* model : {"resnet18", "shufflenet_v2_x0_5"}) {
    SCOPED_TRACE(model);
    spec(model, 2, 1e-3);
    std::ifstream meta(kModels + "/" + model + ".json");
    const int dim = nlohmann::json::parse(meta)["feature_dim"];
    const std::string head = (dir / (std::string(model) + "_head.pt")).string();
    ASSERT_EQ(run(std::string(XFER_PYTHON) + " " + quote(std::string(XFER_SOURCE_DIR) + "/tests/reference/make_head.py") +
                  " " + std::to_string(dim) + " 10 7 " + quote(head)).status, 0);
    const std::string steps = (dir / (std::string(model) + "_steps.csv")).string();
    const auto j = train("--deterministic-input --head-init " + quote(head) + " --step-log " + quote(steps),
                         (dir / "ckpt").string());
    const std::string splits = (dir / "splits.csv").string();
    ASSERT_EQ(run(quote(xfer()) + " splits --kind eurosat --root " + quote((*data_ / "eurosat").string()) + " --out " +
                  quote(splits)).status, 0);
    const std::string ref = (dir / (std::string(model) + "_ref.json")).string();
    const Result r = run(std::string(XFER_PYTHON) + " " + quote(std::string(XFER_SOURCE_DIR) + "/tests/reference/train_ref.py") +
                         " " + quote(kModels + "/" + model + ".pt") + " " + quote(head) + " " + quote(steps) + " " +
                         quote((*data_ / "eurosat/2750").string()) + " " + quote(splits) + " " + quote(ref) +
                         " --lr 0.001 --wd 0.0001 --epochs 2 --size 32 --threads 1 --channels-last");
    ASSERT_EQ(r.status, 0) << r.err;
    std::ifstream in(ref);
    const auto want = nlohmann::json::parse(in);
    // Per-step losses within 1e-4 relative.
    std::ifstream s(steps);
    std::string line;
    size_t k = 0;
    while (std::getline(s, line)) {
      std::vector<std::string> f;
      std::stringstream ss(line);
      for (std::string c; std::getline(ss, c, ',');) f.push_back(c);
      ASSERT_LT(k, want["losses"].size());
      const double got = std::stod(f[3]), exp = want["losses"][k].get<double>();
      EXPECT_LE(std::abs(got - exp), 1e-4 * std::abs(exp)) << "step " << k << ": xfer " << got << ", PyTorch " << exp;
      ++k;
    }
    EXPECT_EQ(k, want["losses"].size());
    EXPECT_EQ(k, 2u * 13u) << "194 training images in batches of 16, two epochs";
    // Equal final metrics.
    for (size_t e = 0; e < 2; ++e) EXPECT_EQ(j["epochs"][e]["val_metric"].get<double>(), want["val_accuracy"][e].get<double>());
    // The paper's cosine, stepped per epoch.
    EXPECT_DOUBLE_EQ(j["epochs"][0]["lr"].get<double>(), 1e-3);
    EXPECT_NEAR(j["epochs"][1]["lr"].get<double>(), 1e-3 * (1 + std::cos(M_PI / 2)) / 2, 1e-15);
  }
}

TEST_F(Engine, ResumesAfterKillMinus9AndEndsExactlyAsAnUninterruptedRun) {
  spec("shufflenet_v2_x0_5", 4, 1e-3);
  const auto straight = train("--predictions " + quote((dir / "p_straight").string()), (dir / "a").string());
  // Kill -9 once the epoch-2 checkpoint exists.
  const std::string ckpt = (dir / "b").string();
  const std::string cmd = quote(xfer()) + " train " + quote((dir / "spec.toml").string()) +
                          " --index 0 --json --threads 1 --checkpoint-dir " + quote(ckpt);
  const int pid = spawn(cmd, (dir / "kill.out").string(), (dir / "kill.err").string());
  const bool saw = eventually(120, [&] {
    if (!fs::exists(ckpt)) return false;
    for (const auto& d : fs::recursive_directory_iterator(ckpt, fs::directory_options::skip_permission_denied))
      if (d.path().filename() == "epoch-2-step-0.ckpt") return true;  // not its .tmp
    return false;
  });
  ::kill(pid, SIGKILL);
  EXPECT_EQ(wait_for(pid), 128 + SIGKILL);
  ASSERT_TRUE(saw);
  Result rerun;
  const auto resumed = train("--predictions " + quote((dir / "p_resumed").string()), ckpt, &rerun);
  EXPECT_GE(resumed["resumed_from_epoch"].get<int>(), 2) << rerun.err;
  expect_same_run(straight, resumed);
  EXPECT_EQ(read_file((dir / "p_straight/val.csv").string()), read_file((dir / "p_resumed/val.csv").string()));
  // Finished trials leave no checkpoints behind.
  EXPECT_FALSE(fs::exists(ckpt + "/" + straight["key"].get<std::string>()));
}

TEST_F(Engine, SigtermMidEpochCheckpointsAtTheStepAndResumesExactly) {
  spec("shufflenet_v2_x0_5", 3, 1e-3);
  const auto straight = train("", (dir / "a").string());
  const std::string ckpt = (dir / "b").string(), steps = (dir / "steps.csv").string();
  const std::string cmd = quote(xfer()) + " train " + quote((dir / "spec.toml").string()) +
                          " --index 0 --json --threads 1 --step-log " + quote(steps) + " --checkpoint-dir " + quote(ckpt);
  const int pid = spawn(cmd, (dir / "term.out").string(), (dir / "term.err").string());
  ASSERT_TRUE(eventually(120, [&] { return read_file(steps).find("\n1,3,") != std::string::npos; }));
  ::kill(pid, SIGTERM);
  EXPECT_EQ(wait_for(pid), 0) << "a preempted trial exits 0 after its checkpoint";
  const auto first = nlohmann::json::parse(read_file((dir / "term.out").string()));
  EXPECT_EQ(first["status"], "interrupted");
  const std::string key = first["key"];
  bool mid_epoch = false;
  for (const auto& e : fs::directory_iterator(ckpt + "/" + key)) {
    int ep = 0;
    long long b = 0;
    if (std::sscanf(e.path().filename().c_str(), "epoch-%d-step-%lld.ckpt", &ep, &b) == 2 && b > 0) mid_epoch = true;
  }
  EXPECT_TRUE(mid_epoch) << "the checkpoint is at the step, not the epoch's start";
  const auto resumed = train("", ckpt);
  EXPECT_EQ(resumed["resumed_from_epoch"].get<int>(), 1);
  expect_same_run(straight, resumed);
}

TEST_F(Engine, TheDeviceInputPipelineTrainsAsTheHostOneOnTheSameTensors) {
  spec("shufflenet_v2_x0_5", 2, 1e-3);
  // The evaluation transform for training too (--deterministic-input): both pipelines give the same tensors, so the
  // runs are the same to the bit — epochs, losses, metrics.
  const auto host = train("--deterministic-input", (dir / "host").string());
  const auto device = train("--deterministic-input --input-pipeline device", (dir / "device").string());
  expect_same_run(host, device);
  EXPECT_EQ(host["test_at_best"], device["test_at_best"]);
  size_t caches = 0;
  for (const auto& f : fs::directory_iterator(dir / "device" / "input-cache")) caches += f.path().extension() == ".u8";
  EXPECT_EQ(caches, 2u) << "the training split and the evaluation split, each decoded once, beside the checkpoints";
  // With random crops and flips on the device: a trial that ends done with finite metrics.
  const auto random = train("--input-pipeline device", (dir / "device").string());
  EXPECT_EQ(random["status"], "done");
  EXPECT_TRUE(random["best_val"].is_number());
  size_t again = 0;
  for (const auto& f : fs::directory_iterator(dir / "device" / "input-cache")) again += f.path().extension() == ".u8";
  EXPECT_EQ(again, 2u) << "crop_pct is 1 here: the random crops come from the same cached squares (no new file)";
}

TEST_F(Engine, ACorruptCheckpointFallsBackToThePreviousOne) {
  spec("shufflenet_v2_x0_5", 4, 1e-3);
  const auto straight = train("", (dir / "a").string());
  const std::string ckpt = (dir / "b").string();
  const std::string cmd = quote(xfer()) + " train " + quote((dir / "spec.toml").string()) +
                          " --index 0 --json --threads 1 --checkpoint-dir " + quote(ckpt);
  const int pid = spawn(cmd, (dir / "k.out").string(), (dir / "k.err").string());
  fs::path newest;
  ASSERT_TRUE(eventually(120, [&] {
    if (!fs::exists(ckpt)) return false;
    for (const auto& d : fs::recursive_directory_iterator(ckpt))
      if (d.path().filename() == "epoch-2-step-0.ckpt") newest = d.path();
    return !newest.empty();
  }));
  ::kill(pid, SIGKILL);
  wait_for(pid);
  // Remove anything newer, then flip bytes in the middle of the epoch-2 checkpoint.
  for (const auto& d : fs::directory_iterator(newest.parent_path()))
    if (d.path() != newest && d.path().filename() != "epoch-1-step-0.ckpt") fs::remove(d.path());
  {
    std::fstream f(newest, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(newest) / 2));
    f.write("CORRUPTION", 10);
  }
  Result r;
  const auto resumed = train("", ckpt, &r);
  EXPECT_NE(r.err.find("epoch-2-step-0.ckpt is unusable (checksum mismatch"), std::string::npos) << r.err;
  EXPECT_EQ(resumed["resumed_from_epoch"].get<int>(), 1) << "fell back to the epoch-1 checkpoint";
  expect_same_run(straight, resumed);
}

TEST_F(Engine, ATrialThatEndedBeforeItsResultWasRecordedReportsFromItsLastCheckpoint) {
  // The sweep keeps a finished trial's checkpoints until the ledger holds its result; --keep-checkpoints does the
  // same here. The last epoch's checkpoint carries the result but no weights; the one before keeps the weights.
  spec("shufflenet_v2_x0_5", 3, 1e-3);
  const std::string ckpt = (dir / "c").string();
  const auto first = train("--keep-checkpoints --predictions " + quote((dir / "p1").string()), ckpt);
  const fs::path trial_dir = fs::path(ckpt) / first["key"].get<std::string>();
  ASSERT_TRUE(fs::exists(trial_dir / "epoch-3-step-0.ckpt"));
  ASSERT_TRUE(fs::exists(trial_dir / "epoch-2-step-0.ckpt"));
  EXPECT_LT(fs::file_size(trial_dir / "epoch-3-step-0.ckpt"), fs::file_size(trial_dir / "epoch-2-step-0.ckpt") / 4)
      << "the final checkpoint holds no weights";
  Result r;
  const auto again = train("--predictions " + quote((dir / "p2").string()), ckpt, &r);
  EXPECT_EQ(again["resumed_from_epoch"].get<int>(), 3) << r.err;
  expect_same_run(first, again);
  EXPECT_EQ(again["test_at_best"], first["test_at_best"]);
  EXPECT_EQ(read_file((dir / "p1/val.csv").string()), read_file((dir / "p2/val.csv").string()));
  EXPECT_FALSE(fs::exists(trial_dir)) << "without --keep-checkpoints a finished trial removes them";
}

TEST_F(Engine, AHugeLearningRateEndsAsDivergedWithoutACrash) {
  spec("shufflenet_v2_x0_5", 3, 10.0);
  Result r;
  const auto j = train("", (dir / "c").string(), &r);
  EXPECT_EQ(j["status"], "diverged") << r.out;
  EXPECT_NE(j["message"].get<std::string>().find("loss is"), std::string::npos);
  // SGD too, and a NaN-producing one: lr 1e5 overflows within a step or two.
  dir.write("spec.toml", read_file((dir / "spec.toml").string()) + "[[grid.optimizer]]\nfamily = \"sgd\"\nlrs = [1e5]\n");
  const Result nan = run(quote(xfer()) + " train " + quote((dir / "spec.toml").string()) + " --index 1 --json --threads 1 "
                         "--checkpoint-dir " + quote((dir / "d").string()));
  ASSERT_EQ(nan.status, 0) << nan.err;
  const auto k = nlohmann::json::parse(nan.out);
  EXPECT_EQ(k["status"], "diverged") << nan.out;
  EXPECT_FALSE(fs::exists(dir / "d" / k["key"].get<std::string>())) << "a diverged trial is over: no checkpoints";
}

TEST_F(Engine, BadBackbonesFailTheTrialWithAClearMessage) {
  // Not TorchScript; output not [N, D]; a fixed-size architecture given another size.
  dir.write("text.pt", "not a model");
  const std::string script = dir.write("make.py",
                                       "import sys, torch\n"
                                       "torch.jit.script(torch.nn.Conv2d(3, 4, 3)).save(sys.argv[1] + '/conv.pt')\n"
                                       "class Fixed(torch.nn.Module):\n"
                                       "    def forward(self, x):\n"
                                       "        if x.shape[-1] != 64:\n"
                                       "            raise RuntimeError('this backbone needs 64x64 input')\n"
                                       "        return x.mean((2, 3))\n"
                                       "torch.jit.script(Fixed()).save(sys.argv[1] + '/fixed.pt')\n");
  ASSERT_EQ(run(std::string(XFER_PYTHON) + " " + quote(script) + " " + quote(dir.str())).status, 0);
  for (const auto& [file, words] : {std::pair<std::string, std::string>{"text.pt", "not a TorchScript file"},
                                    {"conv.pt", "expected [N, D] features"},
                                    {"fixed.pt", "rejects 224×224 input"}}) {
    dir.write("spec.toml", "[study]\nname = \"t\"\nresults = \"r.h5\"\n[[model]]\nname = \"m\"\nbackbone = \"" +
                               (dir / file).string() + "\"\nimagenet_top1 = 50\n[[dataset]]\nname = \"e\"\nkind = "
                               "\"eurosat\"\nroot = \"" + (*data_ / "eurosat").string() +
                               "\"\n[grid]\nepochs = 1\nbatch_size = 16\ninput_size = 32\nweight_decays = [0]\n"
                               "[[grid.optimizer]]\nfamily = \"adamw\"\nlrs = [1e-3]\n");
    const Result r = run(quote(xfer()) + " train " + quote((dir / "spec.toml").string()) + " --index 0 --json");
    if (file == "text.pt") {  // not even a zip archive: refused when the spec is read, before any trial (exit 2)
      EXPECT_EQ(r.status, 2) << file << r.err;
      EXPECT_NE(r.err.find(words), std::string::npos) << r.err;
      continue;
    }
    EXPECT_EQ(r.status, 1) << file;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["status"], "failed");
    EXPECT_NE(j["message"].get<std::string>().find(words), std::string::npos) << j["message"];
    EXPECT_NE(j["message"].get<std::string>().find(file), std::string::npos) << "names the file";
  }
}

}  // namespace
}  // namespace xfer::test
