// The PJRT bundle faults of ../shared/reliability-probe-3.md (BAD-1's six PJRT cases, BAD-3): a bundle that cannot
// work is the same on every attempt. Each used up max_attempts in one run and failed its trials for good (P-2, P-3,
// P-8, P-11, P-12, P-13), and a manifest naming /dev/zero made xfer read it until the OOM killer struck (P-9). Now
// `xfer run` checks the bundle of every trial it is about to start before the first one: exit 2 naming the manifest,
// no trial started or charged, and the same command runs them all once the bundle is fixed. Each case runs the real
// binary on the real CPU PJRT plugin with a copy of the committed tiny_cnn bundle (tests/pjrt), damaged one way.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
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

class PjrtFaults : public WithFixtureDatasets {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists(kPlugin)) << kPlugin << " is missing (./run pjrt-plugin)";
    tiny_ = (dir / "models/tiny_cnn.pt").string();
    const Result r = run(std::string(XFER_PYTHON) + " " + quote(std::string(XFER_SOURCE_DIR) + "/tools/tiny_cnn.py") +
                         " " + quote(tiny_));
    ASSERT_EQ(r.status, 0) << r.err;
    // The eurosat layout: 194 training images, batches of 16 and a last one of 2 (train_b16 and train_b2).
    dir.write("spec.toml", "[study]\nname = \"t\"\nresults = \"r.h5\"\nmax_attempts = 3\n\n[[model]]\nname = "
                           "\"tiny_cnn\"\nbackbone = \"" + tiny_ + "\"\nimagenet_top1 = 50.0\n\n[[dataset]]\nname = "
                           "\"eurosat\"\nkind = \"eurosat\"\nroot = \"" + (*data_ / "eurosat").string() +
                           "\"\ninput_size = 32\n\n[grid]\nepochs = 1\nbatch_size = 16\ninput_size = 32\n"
                           "weight_decays = [1e-4]\n\n[[grid.optimizer]]\nfamily = \"adamw\"\nlrs = [0.001, 0.01]\n");
    fs::create_directories(dir / "artifacts");
    fs::copy(kArtifacts + "/tiny_cnn.pjrt", bundle(), fs::copy_options::recursive);
  }
  fs::path bundle() const { return dir / "artifacts/tiny_cnn.pjrt"; }
  fs::path variant() const { return bundle() / "s32-c10-b16-adamw-d1"; }
  std::string results() const { return (dir / "r.h5").string(); }
  Result xfer_run() {
    return run("env XFER_PJRT_ARTIFACTS=" + quote((dir / "artifacts").string()) + " " + quote(xfer()) + " run " +
               quote((dir / "spec.toml").string()) + " --no-progress --threads 1 --device " + quote("pjrt:" + kPlugin) +
               " --results " + quote(results()));
  }
  // The variant's manifest, changed by `edit`.
  void edit_manifest(const std::function<void(nlohmann::json&)>& edit) {
    const fs::path m = variant() / "manifest.json";
    nlohmann::json j = nlohmann::json::parse(read_file(m.string()));
    edit(j);
    std::ofstream(m) << j.dump(1);
  }
  // status and attempts of every trial row (none before a run started one).
  std::vector<std::pair<std::string, int>> trials() {
    if (!fs::exists(results())) return {};
    const Result r = run(std::string(XFER_PYTHON) + " -c " +
                         quote("import h5py, sys\nfor x in h5py.File(sys.argv[1], 'r')['trials'][()]: "
                               "print(x['status'].decode(), int(x['attempts']))") + " " + quote(results()));
    EXPECT_EQ(r.status, 0) << r.err;
    std::vector<std::pair<std::string, int>> out;
    std::istringstream in(r.out);
    std::string status;
    int attempts = 0;
    while (in >> status >> attempts) out.emplace_back(status, attempts);
    return out;
  }
  // The damaged bundle: refused before any trial (exit 2, the message naming `words`), no trial started or charged;
  // restored, the same command runs both trials, once each.
  void refused_then_runs(const std::string& words) {
    fs::remove(results());  // each case into a new results file
    fs::remove_all(results() + ".ckpt");
    const Result bad = xfer_run();
    EXPECT_EQ(bad.status, 2) << bad.err;
    EXPECT_NE(bad.err.find(words), std::string::npos) << bad.err;
    EXPECT_NE(bad.err.find("No trial was started"), std::string::npos) << bad.err;
    for (const auto& [status, attempts] : trials()) {
      EXPECT_NE(status, "failed");
      EXPECT_EQ(attempts, 0) << "a bundle fault charged a trial";
    }
    fs::remove_all(bundle());
    fs::copy(kArtifacts + "/tiny_cnn.pjrt", bundle(), fs::copy_options::recursive);
    const Result fixed = xfer_run();
    ASSERT_EQ(fixed.status, 0) << fixed.err;
    const auto t = trials();
    ASSERT_EQ(t.size(), 2u);
    for (const auto& [status, attempts] : t) {
      EXPECT_EQ(status, "done");
      EXPECT_EQ(attempts, 1);
    }
  }
  TempDir dir;
  std::string tiny_;
};

// P-2: no train program for the epoch's last batch (2 of 194).
TEST_F(PjrtFaults, BAD1_NoProgramForTheLastBatchIsRefusedBeforeAnyTrial) {
  edit_manifest([](nlohmann::json& j) {
    auto& train = j["programs"]["train"];
    for (size_t i = 0; i < train.size(); ++i)
      if (train[i]["batch"] == 2) train.erase(i);
  });
  refused_then_runs("no train program for a batch of 2");
}

// P-3: one byte of a program changed.
TEST_F(PjrtFaults, BAD1_ACorruptProgramIsRefusedBeforeAnyTrial) {
  {
    std::fstream f(variant() / "train_b16.mlirbc", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('\x7f');
  }
  refused_then_runs("train_b16.mlirbc: corrupt PJRT program");
}

// P-11: one entry removed from the state: the programs take one argument more than the state gives.
TEST_F(PjrtFaults, BAD1_AStateListThatDoesNotMatchTheProgramsIsRefused) {
  edit_manifest([](nlohmann::json& j) {
    auto& state = j["state"];
    for (size_t i = 0; i < state.size(); ++i)
      if (state[i]["name"] == "backbone.bn1.running_mean") state.erase(i);
  });
  refused_then_runs("the state list does not match the program");
}

// P-12, P-13: a negative dimension (std::length_error) and 10^16 elements (std::bad_alloc), each 3 attempts.
TEST_F(PjrtFaults, BAD1_ImpossibleStateShapesAreRefused) {
  edit_manifest([](nlohmann::json& j) { j["state"][0]["shape"] = {-1, 3, 3, 3}; });
  refused_then_runs("state backbone.conv1.weight has shape [-1,3,3,3]");
  edit_manifest([](nlohmann::json& j) { j["state"][0]["shape"] = {100000, 100000, 100000, 10}; });
  refused_then_runs("state backbone.conv1.weight has shape [100000,100000,100000,10]");
}

// W-6.1: XFER_PJRT_DEVICES=abc, 0 or -1 was taken as one device and the trials ran. Each is now an input error naming
// the variable, before any trial; a whole number in range runs.
TEST_F(PjrtFaults, W6_1_AMalformedDeviceCountIsRefusedBeforeAnyTrial) {
  for (const char* bad : {"abc", "0", "-1", "2x"}) {
    ::setenv("XFER_PJRT_DEVICES", bad, 1);
    const Result r = xfer_run();
    EXPECT_EQ(r.status, 2) << bad << ": " << r.err;
    EXPECT_NE(r.err.find(std::string("XFER_PJRT_DEVICES: expected a whole number of devices from 1 to 65536, got '") +
                         bad + "'"), std::string::npos) << r.err;
    for (const auto& [status, attempts] : trials()) EXPECT_EQ(attempts, 0) << bad << ": a trial was charged";
  }
  ::setenv("XFER_PJRT_DEVICES", "1", 1);
  const Result ok = xfer_run();
  ::unsetenv("XFER_PJRT_DEVICES");
  EXPECT_EQ(ok.status, 0) << ok.err;
}

// P-8 and BAD-3 (P-9): a program file outside the bundle (../../etc/passwd), /dev/zero, and a link inside the bundle
// to /dev/zero. /dev/zero was read until the OOM killer ended xfer at 24 GB; each is now refused unread.
TEST_F(PjrtFaults, BAD3_AManifestNamesFilesInsideItsBundleOnlyAndTheyAreReadWithASizeBound) {
  const auto program = [&](const std::string& file) {
    edit_manifest([&](nlohmann::json& j) { j["programs"]["train"][0]["file"] = file; });
  };
  program("../../../../../../etc/passwd");
  refused_then_runs("is not a file inside the bundle folder");
  program("/dev/zero");
  refused_then_runs("program file \"/dev/zero\" is not a file inside the bundle folder");
  fs::create_symlink("/dev/zero", variant() / "zero.mlirbc");
  program("zero.mlirbc");
  refused_then_runs("is not a regular file inside the bundle folder");
  // A program longer than the manifest's `bytes`.
  std::ofstream(variant() / "train_b16.mlirbc", std::ios::app) << "more";
  refused_then_runs("train_b16.mlirbc has 21103 bytes, the manifest says 21099");
}

}  // namespace
}  // namespace xfer::test
