// The sweep against the faults of ../shared/reliability-probe.md that are the sweep's: a disk that fills while
// checkpoints are written (a real tmpfs), an unusable --device, a heartbeat timeout that cannot work, a hung
// data-parallel peer that would keep a stopped job alive, SIGHUP, a split where nothing decodes, and the exit
// statuses scripts and SLURM read. Each drives build/xfer under mpirun and reads the results file with h5py.
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>

#include <chrono>
#include <cstring>
#include <optional>
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
  // Waits up to `seconds` for a spawned process; its exit status, or nullopt (then it is killed and reaped).
  static std::optional<int> ends_within(int pid, double seconds) {
    int raw = 0;
    if (eventually(seconds, [&] { return ::waitpid(pid, &raw, WNOHANG) == pid; }))
      return WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
    for (int p : descendants(pid)) ::kill(p, SIGKILL);
    ::kill(pid, SIGKILL);
    wait_for(pid);
    return std::nullopt;
  }
  // Files a stop must not leave behind under `folder`: checkpoints half written.
  static std::vector<std::string> partial_checkpoints(const std::string& folder) {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : fs::recursive_directory_iterator(folder, ec))
      if (e.path().filename().string().find(".ckpt.tmp") != std::string::npos) out.push_back(e.path().string());
    return out;
  }
  // What a stopped sweep must leave: no lock, no half-written checkpoint, no trial `running`, /runs ending with the
  // reason; and the rerun resumes from the checkpoints.
  void expect_a_clean_stop(const std::string& reason) {
    EXPECT_FALSE(fs::exists(results() + ".lock")) << "the writer lock is released";
    EXPECT_EQ(partial_checkpoints((dir / "out/results.h5.ckpt").string()), std::vector<std::string>{});
    const auto j = check(results());
    EXPECT_EQ(j["status"].value("running", 0), 0) << j.dump();
    EXPECT_GE(j["status"].value("interrupted", 0), 1) << j.dump();
    ASSERT_FALSE(j["run_end_reasons"].empty()) << j.dump();
    EXPECT_NE(j["run_end_reasons"].back().get<std::string>().find(reason), std::string::npos) << j.dump();
    const Result again = xfer_run(2);
    ASSERT_EQ(again.status, 0) << again.err;
    const auto k = check(results());
    EXPECT_EQ(k["status"]["done"].get<size_t>(), 2u) << k.dump();
    EXPECT_FALSE(k["resumed"].empty()) << "resumed from the stop's checkpoints: " << k.dump();
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

// BAD-4 (probe 3): the results file's disk remounted read-only, or filled, while a trial runs. The coordinator's
// next write fails and its thread ended, while the worker's next report (a blocking send) waited for it for ever:
// the run stalled until the stop watchdog (--grace + 30 s) and exited 75 ("stopped, requeue me") without naming
// the cause, or hung. Now the coordinator stops every group and takes their last reports: exit 74 within seconds,
// naming the cause, and the rerun (space back) resumes.
TEST_F(SweepFaults, BAD4_AReadOnlyRemountOrAFullDiskMidRunEndsTheRunNamingTheCause) {
  for (const std::string fault : {"read-only", "full"}) {
    SCOPED_TRACE(fault);
    SmallDisk disk((dir / ("small-" + fault)).string(), 64 << 20);
    const std::string ckpt = (dir / ("ck-" + fault)).string();
    spec(6, "1e-3, 1e-4", "checkpoint_dir = \"" + ckpt + "\"\n");
    const std::string file = disk.path() + "/results.h5";
    const int pid = spawn(command(1, "--grace 10 --results " + quote(file)), (dir / "f.out").string(),
                          (dir / "f.err").string());
    ASSERT_TRUE(eventually(300, [&] { return has_checkpoint(ckpt); })) << read_file((dir / "f.err").string());
    if (fault == "read-only")
      ASSERT_EQ(::mount("tmpfs", disk.path().c_str(), "tmpfs", MS_REMOUNT | MS_RDONLY, nullptr), 0) << strerror(errno);
    else
      disk.fill(0);
    const auto status = ends_within(pid, 120);
    const std::string err = read_file((dir / "f.err").string());
    ASSERT_TRUE(status.has_value()) << "still running 120 s after the fault: " << err;
    EXPECT_EQ(*status, 74) << err;
    // The cause named, in whichever write meets it first: "(EROFS: read-only file system)" from a write's errno, or
    // the store's "on a read-only file system (EROFS)" (probe 3 W-3.a).
    if (fault == "read-only") {
      EXPECT_NE(err.find("EROFS"), std::string::npos) << err;
      EXPECT_NE(err.find("read-only file system"), std::string::npos) << err;
    } else {
      EXPECT_NE(err.find("(ENOSPC: disk full)"), std::string::npos) << err;
    }
    EXPECT_EQ(err.find("did not complete within"), std::string::npos) << "the watchdog had to end it: " << err;
    // Space back: the same command resumes and finishes both trials, no attempt spent on the fault.
    if (fault == "read-only")
      ASSERT_EQ(::mount("tmpfs", disk.path().c_str(), "tmpfs", MS_REMOUNT, "size=67108864"), 0) << strerror(errno);
    else
      disk.free();
    const Result again = xfer_run(1, "--grace 10 --results " + quote(file));
    ASSERT_EQ(again.status, 0) << again.err;
    for (const auto& [key, t] : trials(file)) {
      EXPECT_EQ(std::get<0>(t), "done") << key;
      EXPECT_EQ(std::get<1>(t), 1) << key;
    }
  }
}

// Item 10 (issue 26): Ctrl-C in the terminal that runs jobscripts/workstation.sh (SIGINT to its process group, mpirun
// included). Open MPI's mpirun forwards neither SIGINT nor SIGTERM: it sends the ranks SIGCONT, SIGTERM a second
// later and SIGKILL a second after that, so the sweep died with exit 1, its lock stale, its trials `running` and a
// half-written checkpoint. The script now keeps the terminal's signal from mpirun and hands it on as SIGUSR2, which
// mpirun forwards at once: exit 75, everything checkpointed.
TEST_F(SweepFaults, Item10_CtrlCOnTheWorkstationScriptStopsTheSweepCleanlyWithExit75) {
  spec(4, "1e-3, 1e-4");
  const std::string ckpt = (dir / "out/results.h5.ckpt").string();
  const std::string script = std::string(XFER_SOURCE_DIR) + "/jobscripts/workstation.sh";
  // setsid: the script leads a process group of its own, as a terminal's foreground job does.
  const int pid = spawn("env XFER=" + quote(xfer()) + " setsid " + quote(script) + " " +
                            quote((dir / "spec.toml").string()) + " 2",
                        (dir / "w.out").string(), (dir / "w.err").string());
  ASSERT_TRUE(eventually(300, [&] { return has_checkpoint(ckpt); })) << read_file((dir / "w.err").string());
  ::kill(-pid, SIGINT);
  const auto status = ends_within(pid, 150);
  const std::string err = read_file((dir / "w.err").string());
  ASSERT_TRUE(status.has_value()) << err;
  EXPECT_EQ(*status, 75) << err;
  expect_a_clean_stop("signal User defined signal 2");
}

// Item 10: SIGTERM to mpirun alone (`kill -TERM <mpirun>`, Ctrl-C on a bare mpirun). The ranks' first news of it is
// mpirun's SIGCONT; xfer starts stopping on it, and with odls_base_sigkill_timeout long enough (the README's
// advice) the stop completes before mpirun's SIGTERM and SIGKILL. mpirun's own exit status is Open MPI's (1).
TEST_F(SweepFaults, Item10_SigtermToMpirunAloneStopsTheSweepCleanly) {
  spec(4, "1e-3, 1e-4");
  const std::string ckpt = (dir / "out/results.h5.ckpt").string();
  const int pid = spawn("env OMPI_MCA_odls_base_sigkill_timeout=20 " + command(2), (dir / "m.out").string(),
                        (dir / "m.err").string());
  ASSERT_TRUE(eventually(300, [&] { return has_checkpoint(ckpt); })) << read_file((dir / "m.err").string());
  ::kill(pid, SIGTERM);
  const auto status = ends_within(pid, 150);
  const std::string err = read_file((dir / "m.err").string());
  ASSERT_TRUE(status.has_value()) << err;
  EXPECT_NE(*status, 0) << err;
  EXPECT_EQ(err.find("did not complete within"), std::string::npos) << err;
  expect_a_clean_stop("mpirun is ending the job");
}

// BAD-10 (probe 3): an MPMD launch whose two ranks of one `xfer train` have different --gradient-exchange values
// deadlocked (each waited in a different collective) until `timeout` killed it. The group now agrees on its shared
// options first: a clear error on every rank, exit 2.
TEST_F(SweepFaults, BAD10_RanksOfOneGroupWithDifferentGradientExchangesAreRefusedOnEveryRank) {
  spec(3, "1e-3");
  auto rank = [&](const std::string& exchange) {
    return "-n 1 " + quote(xfer()) + " train " + quote((dir / "spec.toml").string()) +
           " --index 0 --threads 1 --gradient-exchange " + exchange + " --checkpoint-dir " + quote((dir / "ck").string());
  };
  const Result r = run("timeout 120 " + kMpirun + " --output-filename " + quote((dir / "mm").string()) + " " +
                       rank("overlap") + " : " + rank("flat"));
  EXPECT_NE(r.status, 124) << "deadlocked: " << r.err;
  EXPECT_EQ(r.status, 2) << r.err;
  for (const char* n : {"0", "1"}) {
    const std::string err = read_file((dir / "mm/1" / ("rank." + std::string(n)) / "stderr").string());
    EXPECT_NE(err.find("--gradient-exchange: overlap on world rank 0, flat on world rank 1"), std::string::npos)
        << "rank " << n << ": " << err;
  }
  // The same value on both ranks trains.
  const Result same = run("timeout 300 " + kMpirun + " " + rank("flat") + " : " + rank("flat"));
  EXPECT_EQ(same.status, 0) << same.err;
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
// retried in the same run (nothing would change), and — a fault of the data, the same on every attempt (probe 3,
// BAD-1) — spends no attempt: the exit status says bad input (2), and the run after the fix runs it.
TEST_F(SweepFaults, B8_EveryTrainingImageUndecodableFailsTheTrialWithTheReason) {
  fs::copy(*data_ / "imagefolder_split", dir / "bad", fs::copy_options::recursive);
  int emptied = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir / "bad/train"))
    if (e.is_regular_file()) fs::resize_file(e.path(), 0), ++emptied;
  ASSERT_GT(emptied, 0);
  spec(1, "1e-3", "", "",
       "[[dataset]]\nname = \"bad\"\nkind = \"imagefolder\"\nroot = \"" + (dir / "bad").string() + "\"\ninput_size = 32\n");
  const Result r = xfer_run(1);
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find("They spent no attempt"), std::string::npos) << r.err;
  const auto t = trials(results());
  ASSERT_EQ(t.size(), 1u);
  const auto& [status, attempts, finite] = t.begin()->second;
  EXPECT_EQ(status, "failed");
  EXPECT_EQ(attempts, 0) << "an input fault is not retried in the same run, and costs no attempt";
  EXPECT_FALSE(finite);
  const Result st = run(quote(xfer()) + " status " + quote(results()) + " --trials");
  EXPECT_NE(st.out.find("no usable training samples"), std::string::npos) << st.out << st.err;
}

// BAD-2 (probe 3): a full disk while the device pipeline writes its input cache was a trial failure: every trial
// failed 3 times within a second, for good, exit 4. It is the machine's fault: the sweep stops (exit 74) with no
// trial failed, and once there is room the same command runs everything, each trial once.
TEST_F(SweepFaults, BAD2_DiskFullWhileWritingTheInputCacheStopsTheSweepAndSpendsNoAttempt) {
  SmallDisk disk((dir / "small").string(), 3 << 20);
  disk.fill(300 << 10);  // the cache of 194 images at 32 px needs 600 KB
  spec(1, "1e-3, 1e-4", "checkpoint_dir = \"" + disk.path() + "/ckpt\"\n");
  const Result full = xfer_run(1, "--input-pipeline device");
  EXPECT_EQ(full.status, 74) << full.err;
  EXPECT_NE(full.err.find("cannot write the input cache"), std::string::npos) << full.err;
  EXPECT_NE(full.err.find("No space left on device"), std::string::npos) << full.err;
  for (const auto& [key, t] : trials(results())) {
    EXPECT_NE(std::get<0>(t), "failed") << key;
    EXPECT_LE(std::get<1>(t), 1) << key;
  }
  disk.free();
  disk.resize(512 << 20);
  const Result again = xfer_run(1, "--input-pipeline device");
  ASSERT_EQ(again.status, 0) << again.err;
  for (const auto& [key, t] : trials(results())) {
    EXPECT_EQ(std::get<0>(t), "done") << key;
    EXPECT_EQ(std::get<1>(t), 1) << key;
  }
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
