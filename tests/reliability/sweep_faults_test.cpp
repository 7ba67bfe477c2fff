// The sweep against the faults of ../shared/reliability-probe.md that are the sweep's: a disk that fills while
// checkpoints are written (a real tmpfs), an unusable --device, a heartbeat timeout that cannot work, a hung
// data-parallel peer that would keep a stopped job alive, SIGHUP, a split where nothing decodes, and the exit
// statuses scripts and SLURM read. Each drives build/xfer under mpirun and reads the results file with h5py.
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/fixture_suite.hpp"
#include "support/process.hpp"
#include "support/small_disk.hpp"
#include "support/tempdir.hpp"

namespace fs = std::filesystem;

namespace xfer::test {
namespace {

const std::string kModels = XFER_TEST_MODELS;
const std::string kMpirun = "mpirun --allow-run-as-root --oversubscribe --bind-to none";

class SweepFaults : public WithFixtureDatasets {
 protected:
  // One model (squeezenet1_1: a 15 MB checkpoint with its AdamW state), the eurosat layout at 32 px.
  void spec(int epochs, const std::string& lrs, const std::string& study_extra = "", const std::string& grid_extra = "",
            const std::string& dataset = "") {
    const std::string ds = dataset.empty() ? "[[dataset]]\nname = \"eurosat\"\nkind = \"eurosat\"\nroot = \"" +
                                                 (*data_ / "eurosat").string() + "\"\ninput_size = 32\n"
                                           : dataset;
    dir.write("spec.toml", "[study]\nname = \"faults\"\nresults = \"out/results.h5\"\nmax_attempts = 3\n" + study_extra +
                               "\n[[model]]\nname = \"squeezenet1_1\"\nbackbone = \"" + kModels +
                               "/squeezenet1_1.pt\"\nimagenet_top1 = 58.2\n\n" +
                               ds + "\n[grid]\nepochs = " + std::to_string(epochs) +
                               "\nbatch_size = 32\ninput_size = 32\nweight_decays = [1e-4]\n" + grid_extra +
                               "\n[[grid.optimizer]]\nfamily = \"adamw\"\nlrs = [" + lrs + "]\n");
  }
  std::string results() const { return (dir / "out/results.h5").string(); }
  std::string command(int ranks, const std::string& args = "") const {
    return kMpirun + " -n " + std::to_string(ranks) + " " + quote(xfer()) + " run " +
           quote((dir / "spec.toml").string()) + " --no-progress --threads 1 " + args;
  }
  Result xfer_run(int ranks, const std::string& args = "") { return run(command(ranks, args)); }
  nlohmann::json check(const std::string& file) {
    const Result r = run(std::string(XFER_PYTHON) + " " +
                         quote(std::string(XFER_SOURCE_DIR) + "/tests/reference/check_results.py") + " " + quote(file));
    EXPECT_EQ(r.status, 0) << r.err;
    return r.status == 0 ? nlohmann::json::parse(r.out) : nlohmann::json::object();
  }
  // key → (status, attempts, val_metric finite) from /trials, read with h5py.
  std::map<std::string, std::tuple<std::string, int, bool>> trials(const std::string& file) {
    const Result r = run(std::string(XFER_PYTHON) + " -c " +
                         quote("import h5py, math, sys\nt = h5py.File(sys.argv[1], 'r')['trials'][()]\n"
                               "for x in t: print(x['key'].decode(), x['status'].decode(), int(x['attempts']), "
                               "int(math.isfinite(x['val_metric'])))") + " " + quote(file));
    EXPECT_EQ(r.status, 0) << r.err;
    std::map<std::string, std::tuple<std::string, int, bool>> out;
    std::istringstream in(r.out);
    std::string key, status;
    int attempts = 0, finite = 0;
    while (in >> key >> status >> attempts >> finite) out[key] = {status, attempts, finite != 0};
    return out;
  }
  // Processes below `pid`, recursively.
  static std::vector<int> descendants(int pid) {
    std::vector<int> out;
    std::istringstream in(run("pgrep -P " + std::to_string(pid)).out);
    for (int p; in >> p;) {
      out.push_back(p);
      for (int q : descendants(p)) out.push_back(q);
    }
    return out;
  }
  // The xfer process of world rank `rank` below `pid` (its environment says OMPI_COMM_WORLD_RANK).
  static int rank_process(int pid, int rank) {
    for (int p : descendants(pid)) {
      const std::string env = read_file("/proc/" + std::to_string(p) + "/environ");
      const std::string exe = read_file("/proc/" + std::to_string(p) + "/cmdline");
      if (exe.find(" run ") == std::string::npos && exe.find(std::string("run\0", 4)) == std::string::npos) continue;
      if (env.find("OMPI_COMM_WORLD_RANK=" + std::to_string(rank) + std::string(1, '\0')) != std::string::npos) return p;
    }
    return -1;
  }
  bool has_checkpoint(const std::string& folder) const {
    std::error_code ec;
    if (!fs::exists(folder, ec)) return false;
    for (const auto& e : fs::recursive_directory_iterator(folder, ec))
      if (e.path().extension() == ".ckpt") return true;
    return false;
  }
  TempDir dir;
};

// B1: a full disk at checkpoint time used up every attempt of every trial within a second, marked them failed for
// good and exited 0. Now the sweep stops (exit 74) with the trials resumable and no attempt spent, and once space is
// back the same command finishes everything, each trial started from scratch once.
TEST_F(SweepFaults, B1_DiskFullWhileCheckpointingStopsTheSweepAndSpendsNoAttempt) {
  SmallDisk disk((dir / "small").string(), 3 << 20);  // squeezenet's first checkpoint needs ~15 MB
  spec(2, "1e-3, 1e-4, 3e-4", "checkpoint_dir = \"" + disk.path() + "/ckpt\"\n");
  const Result full = xfer_run(1);
  EXPECT_EQ(full.status, 74) << full.err;
  EXPECT_NE(full.err.find("No space left on device"), std::string::npos) << full.err;
  EXPECT_NE(full.err.find("stay resumable"), std::string::npos) << full.err;
  const auto mid = trials(results());
  ASSERT_EQ(mid.size(), 3u);
  int started = 0;
  for (const auto& [key, t] : mid) {
    const auto& [status, attempts, finite] = t;
    EXPECT_NE(status, "failed") << key << ": an environment fault is not the trial's";
    EXPECT_LE(attempts, 1) << key;
    started += attempts;
  }
  EXPECT_EQ(started, 1) << "the sweep stopped at the first trial that met the full disk";
  disk.resize(512 << 20);
  const Result again = xfer_run(1);
  ASSERT_EQ(again.status, 0) << again.err;
  const auto j = check(results());
  EXPECT_EQ(j["status"]["done"].get<size_t>(), 3u) << j.dump();
  EXPECT_EQ(j["attempts"]["1"].get<size_t>(), 3u) << "no attempt was spent on the full disk: " << j.dump();
  EXPECT_EQ(j["duplicate_curve_rows"].get<int>(), 0);
}

// B1, second half: a trial that trained all its epochs keeps its result when only its last checkpoint (which holds
// just the result) cannot be written; it is not rerun.
TEST_F(SweepFaults, B1_DiskFullAtTheLastCheckpointKeepsTheFinishedResult) {
  SmallDisk disk((dir / "small").string(), 1 << 20);
  disk.fill(0);
  spec(1, "1e-3, 1e-4", "checkpoint_dir = \"" + disk.path() + "/ckpt\"\n");
  const Result full = xfer_run(1);
  EXPECT_EQ(full.status, 74) << full.err;
  const auto mid = trials(results());
  int done = 0;
  for (const auto& [key, t] : mid) {
    const auto& [status, attempts, finite] = t;
    EXPECT_NE(status, "failed") << key;
    if (status == "done") {
      ++done;
      EXPECT_TRUE(finite) << key << ": a done trial keeps its metrics";
    }
  }
  EXPECT_EQ(done, 1) << "the trial that finished its epoch is done; the sweep then stopped: " << full.err;
  disk.free();
  const Result again = xfer_run(1);
  ASSERT_EQ(again.status, 0) << again.err;
  EXPECT_NE(again.err.find("1 to run"), std::string::npos) << "the done trial is not rerun: " << again.err;
  const auto j = check(results());
  EXPECT_EQ(j["status"]["done"].get<size_t>(), 2u) << j.dump();
  EXPECT_EQ(j["attempts"]["1"].get<size_t>(), 2u) << j.dump();
}

// B2: `--device tpu` failed every trial for good (exit 0). Now it is refused up front on every rank; nothing is
// written. A device this host lacks is an environment fault (74), a word that is no device is bad input (2).
TEST_F(SweepFaults, B2_AnUnusableDeviceIsRefusedBeforeAnythingIsWritten) {
  spec(1, "1e-3");
  const Result tpu = xfer_run(2, "--device tpu");
  EXPECT_EQ(tpu.status, 2) << tpu.err;
  EXPECT_NE(tpu.err.find("--device tpu: expected auto, cpu, cuda or cuda:N"), std::string::npos) << tpu.err;
  EXPECT_FALSE(fs::exists(results()));
  const Result cuda = xfer_run(2, "--device cuda:99");
  EXPECT_EQ(cuda.status, 74) << cuda.err;
  EXPECT_NE(cuda.err.find("cuda:99"), std::string::npos) << cuda.err;
  EXPECT_NE(cuda.err.find("nothing was written"), std::string::npos) << cuda.err;
  EXPECT_FALSE(fs::exists(results()));
  ASSERT_EQ(xfer_run(1, "--device cpu").status, 0);  // the right flag runs everything: nothing was spent
  EXPECT_EQ(check(results())["status"]["done"].get<size_t>(), 1u);
}

// B7, first half: --heartbeat-timeout 0 declared a healthy trial hung at once. Below three heartbeats it is refused.
TEST_F(SweepFaults, B7_AHeartbeatTimeoutBelowThreeHeartbeatsIsRefused) {
  spec(1, "1e-3");
  for (const char* t : {"0", "5", "-1"}) {
    const Result r = xfer_run(1, std::string("--heartbeat-timeout ") + t);
    EXPECT_EQ(r.status, 2) << t << r.err;
    EXPECT_NE((r.out + r.err).find("expected at least 90"), std::string::npos) << r.out << r.err;
  }
  EXPECT_FALSE(fs::exists(results()));
}

// B7, second half: after a stop the process must end within the documented bound (--grace + 30 s) whatever it is
// stuck in. Here a data-parallel peer is frozen (SIGSTOP, as a hung node): rank 0 waits in a collective for ever,
// and before the watchdog it ignored SIGTERM.
TEST_F(SweepFaults, B7_SigtermEndsAProcessStuckOnAHungPeerWithinTheBound) {
  spec(20, "1e-3", "", "ranks_per_trial = 2\n");
  const std::string ckpt = (dir / "out/results.h5.ckpt").string();
  const int pid = spawn(command(2, "--grace 5"), (dir / "b.out").string(), (dir / "b.err").string());
  ASSERT_TRUE(eventually(300, [&] { return has_checkpoint(ckpt); })) << read_file((dir / "b.err").string());
  const int r0 = rank_process(pid, 0), r1 = rank_process(pid, 1);
  ASSERT_GT(r0, 0);
  ASSERT_GT(r1, 0);
  ::kill(r1, SIGSTOP);
  std::this_thread::sleep_for(std::chrono::seconds(1));
  const auto t0 = std::chrono::steady_clock::now();
  ::kill(r0, SIGTERM);
  const bool ended = eventually(60, [&] { return ::kill(r0, 0) != 0 || read_file("/proc/" + std::to_string(r0) + "/stat").find(") Z") != std::string::npos; });
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ::kill(r1, SIGCONT);
  ::kill(r1, SIGKILL);
  const int status = wait_for(pid);
  ASSERT_TRUE(ended) << "rank 0 still running 60 s after SIGTERM";
  EXPECT_LT(took, 5 + 30 + 10) << "the bound is --grace + 30 s";
  EXPECT_GT(took, 5.0) << "it waited for the peer before giving up";
  EXPECT_NE(status, 0);
  const std::string err = read_file((dir / "b.err").string());
  EXPECT_NE(err.find("the stop did not complete within 35 s"), std::string::npos) << err;
  // The file is intact and the trial resumes from its last checkpoint.
  const Result again = xfer_run(2, "--grace 5");
  ASSERT_EQ(again.status, 0) << again.err;
  const auto j = check(results());
  EXPECT_EQ(j["status"]["done"].get<size_t>(), 1u) << j.dump();
  EXPECT_FALSE(j["resumed"].empty()) << j.dump();
  EXPECT_EQ(j["duplicate_curve_rows"].get<int>(), 0);
}

// W-4.1: a closed terminal (SIGHUP) killed the run with no checkpoint. It now stops like SIGTERM; W-4.3: the exit
// status says work is left (75), and the rerun resumes.
TEST_F(SweepFaults, W4_1_SighupStopsLikeSigtermAndTheExitStatusSaysWorkIsLeft) {
  spec(20, "1e-3");
  const std::string ckpt = (dir / "out/results.h5.ckpt").string();
  const int pid = spawn(command(1), (dir / "h.out").string(), (dir / "h.err").string());
  ASSERT_TRUE(eventually(300, [&] { return has_checkpoint(ckpt); })) << read_file((dir / "h.err").string());
  const int r0 = rank_process(pid, 0);
  ASSERT_GT(r0, 0);
  ::kill(r0, SIGHUP);
  const int status = wait_for(pid);
  EXPECT_EQ(status, 75) << read_file((dir / "h.err").string());
  const auto j = check(results());
  EXPECT_EQ(j["status"].value("interrupted", 0), 1) << j.dump();
  EXPECT_NE(j["run_end_reasons"].back().get<std::string>().find("Hangup"), std::string::npos) << j.dump();
}

// B8: every training image undecodable ended `done` with NaN metrics. Now the trial fails with the reason, is not
// retried in the same run (nothing would change), and the exit status says trials failed (4).
TEST_F(SweepFaults, B8_EveryTrainingImageUndecodableFailsTheTrialWithTheReason) {
  fs::copy(*data_ / "imagefolder_split", dir / "bad", fs::copy_options::recursive);
  int emptied = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir / "bad/train"))
    if (e.is_regular_file()) fs::resize_file(e.path(), 0), ++emptied;
  ASSERT_GT(emptied, 0);
  spec(1, "1e-3", "", "",
       "[[dataset]]\nname = \"bad\"\nkind = \"imagefolder\"\nroot = \"" + (dir / "bad").string() + "\"\ninput_size = 32\n");
  const Result r = xfer_run(1);
  EXPECT_EQ(r.status, 4) << r.err;
  const auto t = trials(results());
  ASSERT_EQ(t.size(), 1u);
  const auto& [status, attempts, finite] = t.begin()->second;
  EXPECT_EQ(status, "failed");
  EXPECT_EQ(attempts, 1) << "an input fault is not retried in the same run";
  EXPECT_FALSE(finite);
  const Result st = run(quote(xfer()) + " status " + quote(results()) + " --trials");
  EXPECT_NE(st.out.find("no usable training samples"), std::string::npos) << st.out << st.err;
}

// W-7.1, W-7.2, W-7.4, W-7.5: bad command lines exit 2 (as the README says) with a message naming the problem.
TEST_F(SweepFaults, W7_BadCommandLinesExitTwoNamingTheProblem) {
  const Result none = run(quote(xfer()));
  EXPECT_EQ(none.status, 2);
  EXPECT_NE(none.err.find("no command given; the commands are: plan"), std::string::npos) << none.err;
  const Result bogus = run(quote(xfer()) + " bogus");
  EXPECT_EQ(bogus.status, 2);
  EXPECT_NE(bogus.err.find("unknown command 'bogus'"), std::string::npos) << bogus.err;
  spec(1, "1e-3");
  for (const auto& [flag, words] : std::vector<std::pair<std::string, std::string>>{
           {"--threads 0", "--threads: got 0, expected at least 1"},
           {"--threads -3", "--threads: got -3, expected at least 1"},
           {"--time-limit -5", "--time-limit: got -5, expected more than 0"},
           {"--grace -1", "--grace: got -1, expected at least 0"}}) {
    const Result r = run(quote(xfer()) + " run " + quote((dir / "spec.toml").string()) + " " + flag);
    EXPECT_EQ(r.status, 2) << flag;
    EXPECT_NE((r.out + r.err).find(words), std::string::npos) << flag << ": " << r.err;
  }
  EXPECT_FALSE(fs::exists(results()));
  // W-7.3: a folder given as the spec said "key 'study' is missing".
  const Result folder = run(quote(xfer()) + " plan " + quote(dir.str()));
  EXPECT_EQ(folder.status, 2);
  EXPECT_NE(folder.err.find("is a directory, expected a spec file"), std::string::npos) << folder.err;
}

// W-8.1 and W-1.2: a backbone that is not TorchScript failed every trial max_attempts times; a dataset named "."
// passed plan and broke run. Both are refused when the spec is read, naming the line.
TEST_F(SweepFaults, W8_1_ABackboneThatIsNotTorchScriptAndADotNameAreRefusedAtPlan) {
  spec(1, "1e-3");
  const std::string text = read_file((dir / "spec.toml").string());
  dir.write("base.toml", text);
  std::string bad = text;
  bad.replace(bad.find(kModels + "/squeezenet1_1.pt"), (kModels + "/squeezenet1_1.pt").size(), (dir / "base.toml").string());
  dir.write("spec.toml", bad);
  const Result plan = run(quote(xfer()) + " plan " + quote((dir / "spec.toml").string()));
  EXPECT_EQ(plan.status, 2);
  EXPECT_NE(plan.err.find("spec.toml:8: key 'model[0].backbone'"), std::string::npos) << plan.err;
  EXPECT_NE(plan.err.find("is not a TorchScript file"), std::string::npos) << plan.err;
  std::string dot = text;
  dot.replace(dot.find("name = \"eurosat\""), std::string("name = \"eurosat\"").size(), "name = \".\"");
  dir.write("spec.toml", dot);
  const Result p2 = run(quote(xfer()) + " plan " + quote((dir / "spec.toml").string()));
  EXPECT_EQ(p2.status, 2);
  EXPECT_NE(p2.err.find("\".\" is not a valid dataset name"), std::string::npos) << p2.err;
}

}  // namespace
}  // namespace xfer::test
