// The sweep under mpirun: every trial exactly once (checked with h5py/pandas), resume after kill -9 and after SIGTERM,
// one writer, corrupt files refused, data-parallel groups matching single-rank training.
#include <csignal>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/fixture_suite.hpp"
#include "support/process.hpp"
#include "support/tempdir.hpp"
#include "xfer/core/digest.hpp"

namespace fs = std::filesystem;

namespace xfer::test {
namespace {

const std::string kModels = XFER_TEST_MODELS;
const std::string kMpirun = "mpirun --allow-run-as-root --oversubscribe --bind-to none";

class Sweep : public WithFixtureDatasets {
 protected:
  std::string spec(int epochs, const std::string& lrs, const std::string& extra = "", const std::string& dataset_extra = "",
                   int batch = 32) {
    return dir.write("spec.toml",
                     "[study]\nname = \"sweep\"\nresults = \"out/results.h5\"\nmax_attempts = 2\n\n"
                     "[[model]]\nname = \"shufflenet_v2_x0_5\"\nbackbone = \"" + kModels + "/shufflenet_v2_x0_5.pt\"\n"
                     "[[model]]\nname = \"squeezenet1_1\"\nbackbone = \"" + kModels + "/squeezenet1_1.pt\"\n\n"
                     "[[dataset]]\nname = \"eurosat\"\nkind = \"eurosat\"\nroot = \"" + (*data_ / "eurosat").string() +
                     "\"\ninput_size = 32\n" + dataset_extra + "\n[grid]\nepochs = " + std::to_string(epochs) +
                     "\nbatch_size = " + std::to_string(batch) + "\ninput_size = 32\nweight_decays = [1e-4]\n" + extra +
                     "\n[[grid.optimizer]]\nfamily = \"adamw\"\nlrs = [" + lrs + "]\n");
  }
  std::string results() const { return (dir / "out/results.h5").string(); }
  Result xfer_run(int ranks, const std::string& args = "") {
    return run(kMpirun + " -n " + std::to_string(ranks) + " " + quote(xfer()) + " run " +
               quote((dir / "spec.toml").string()) + " --no-progress --threads 1 " + args);
  }
  std::string xfer_run_command(int ranks, const std::string& args = "") {
    return kMpirun + " -n " + std::to_string(ranks) + " " + quote(xfer()) + " run " + quote((dir / "spec.toml").string()) +
           " --no-progress --threads 1 " + args;
  }
  nlohmann::json check(const std::string& file) {
    const Result r = run(std::string(XFER_PYTHON) + " " + quote(std::string(XFER_SOURCE_DIR) + "/tests/reference/check_results.py") +
                         " " + quote(file));
    EXPECT_EQ(r.status, 0) << r.err;
    return r.status == 0 ? nlohmann::json::parse(r.out) : nlohmann::json::object();
  }
  static void expect_all_done_once(const nlohmann::json& j, size_t n, int epochs) {
    EXPECT_EQ(j["trials"].get<size_t>(), n);
    EXPECT_EQ(j["unique_keys"].get<size_t>(), n);
    EXPECT_EQ(j["status"]["done"].get<size_t>(), n) << j.dump();
    EXPECT_EQ(j["attempts"]["1"].get<size_t>(), n) << "no trial started from scratch twice: " << j.dump();
    EXPECT_EQ(j["duplicate_curve_rows"].get<int>(), 0);
    for (const auto& [k, e] : j["epochs_per_trial"].items()) EXPECT_EQ(e.size(), static_cast<size_t>(epochs)) << k;
    EXPECT_EQ(j["prediction_sets"], j["prediction_sets_unique"]);
    EXPECT_TRUE(j["predictions_valid"].get<bool>());
    EXPECT_EQ(j["val_metric_finite"].get<size_t>(), n);
  }
  static std::vector<int> children(int pid) {
    std::vector<int> out;
    const Result r = run("pgrep -P " + std::to_string(pid));
    std::stringstream ss(r.out);
    for (int p; ss >> p;) out.push_back(p);
    return out;
  }
  TempDir dir;
};

TEST_F(Sweep, ThreeRanksRunEveryTrialExactlyOnceAndTheFileIsClean) {
  spec(2, "1e-3, 3e-4, 1e-4");
  const Result r = xfer_run(3);
  ASSERT_EQ(r.status, 0) << r.err;
  auto j = check(results());
  expect_all_done_once(j, 6, 2);
  EXPECT_EQ(j["prediction_sets"].get<int>(), 6) << "paper mode: validation is the test set, stored once";
  EXPECT_EQ(j["format"], "xfer-results 4");
  const Result dump = run("h5dump -H " + quote(results()));
  EXPECT_EQ(dump.status, 0) << dump.err;
  EXPECT_TRUE(dump.err.empty()) << dump.err;
  // pandas reads the tables as they are.
  const Result pd = run(std::string(XFER_PYTHON) + " -c " +
                        quote("import h5py, pandas as pd; f = h5py.File('" + results() +
                              "'); print(len(pd.DataFrame(f['trials'][()])), len(pd.DataFrame(f['curves'][()])), "
                              "len(pd.DataFrame(f['study/datasets'][()])), len(pd.DataFrame(f['samples/eurosat'][()])))"));
  EXPECT_EQ(pd.out, "6 12 1 238\n") << pd.err;
  // Status, from the file alone.
  const Result st = run(quote(xfer()) + " status " + quote(results()) + " --json");
  ASSERT_EQ(st.status, 0) << st.err;
  const auto s = nlohmann::json::parse(st.out);
  for (const char* k : {"total", "done", "running", "pending", "failed", "diverged"}) EXPECT_TRUE(s.contains(k)) << k;
  EXPECT_EQ(s["total"], 6);
  EXPECT_EQ(s["done"], 6);
  EXPECT_EQ(s["epochs_done"], 12);
  // The spec names its results file: `xfer status spec.toml` reports the same.
  const Result by_spec = run(quote(xfer()) + " status " + quote((dir / "spec.toml").string()) + " --json");
  ASSERT_EQ(by_spec.status, 0) << by_spec.err;
  EXPECT_EQ(nlohmann::json::parse(by_spec.out)["done"], 6);
  // A second run has nothing to do and changes no result.
  const auto before = read_file(results());
  const Result again = xfer_run(2);
  ASSERT_EQ(again.status, 0) << again.err;
  const auto k = check(results());
  EXPECT_EQ(k["attempts"]["1"].get<int>(), 6);
  EXPECT_EQ(k["runs"].get<int>(), 2);
  EXPECT_EQ(k["curve_rows"], j["curve_rows"]);
}

TEST_F(Sweep, AddingLearningRatesRunsOnlyTheNewTrials) {
  spec(1, "1e-3");
  ASSERT_EQ(xfer_run(2).status, 0);
  spec(1, "1e-3, 1e-4");
  // Another spec for the same file: refused unless --extend says it is meant (the earlier spec stays recorded).
  EXPECT_EQ(run(quote(xfer()) + " run " + quote((dir / "spec.toml").string()) + " --dry-run").status, 2);
  const Result dry = run(quote(xfer()) + " run " + quote((dir / "spec.toml").string()) + " --dry-run --json --extend");
  ASSERT_EQ(dry.status, 0) << dry.err;
  const auto d = nlohmann::json::parse(dry.out);
  EXPECT_EQ(d["would_run"].size(), 2u);
  EXPECT_EQ(d["counts"]["done"], 2);
  ASSERT_EQ(xfer_run(2, "--extend").status, 0);
  auto j = check(results());
  expect_all_done_once(j, 4, 1);
}

TEST_F(Sweep, KillMinus9OfAWorkerThenARerunLosesNothingAndRunsNothingTwice) {
  // Twelve epochs: a trial that has checkpointed its first epoch is still running when the kill comes, even on a
  // loaded machine (with four, one could finish — and remove its checkpoints — in between).
  spec(12, "1e-3, 1e-4");
  const std::string ckpt = (dir / "out/results.h5.ckpt").string();
  const int pid = spawn(xfer_run_command(3), (dir / "a.out").string(), (dir / "a.err").string());
  std::vector<int> kids;  // the ranks, found before the wait so the kill follows the checkpoint at once
  ASSERT_TRUE(eventually(60, [&] { return (kids = children(pid)).size() >= 3; })) << read_file((dir / "a.err").string());
  // A checkpoint named `name`, or any epoch's ("epoch-"): a trial keeps its latest.
  auto checkpointed = [&](const std::string& name) {
    if (!fs::exists(ckpt)) return false;
    for (const auto& e : fs::recursive_directory_iterator(ckpt, fs::directory_options::skip_permission_denied)) {
      const std::string f = e.path().filename().string();
      if (f == name || (name == "epoch-" && f.rfind(name, 0) == 0 && e.path().extension() == ".ckpt")) return true;
    }
    return false;
  };
  // Wait until some trial has checkpointed an epoch, then kill one rank with SIGKILL.
  ASSERT_TRUE(eventually(300, [&] { return checkpointed("epoch-1-step-0.ckpt"); })) << read_file((dir / "a.err").string());
  ::kill(kids.back(), SIGKILL);
  EXPECT_NE(wait_for(pid), 0) << "the job ends when a rank dies";
  // mpirun returns while its ranks may still be going down; a requeued job starts after they are gone.
  for (int kid : kids) eventually(60, [&] { return ::kill(kid, 0) != 0 || read_file("/proc/" + std::to_string(kid) + "/stat").find(") Z") != std::string::npos; });
  const auto mid = check(results());
  EXPECT_GE(mid["status"].value("running", 0), 1) << mid.dump();
  ASSERT_TRUE(checkpointed("epoch-")) << "a checkpointed trial was still running when the job died";
  const Result r = xfer_run(3);
  ASSERT_EQ(r.status, 0) << r.err;
  auto j = check(results());
  expect_all_done_once(j, 4, 12);
  EXPECT_FALSE(j["resumed"].empty()) << "orphaned trials resume from their checkpoints: " << j.dump();
}

TEST_F(Sweep, SigtermStopsTheJobCleanlyWithinTheBoundAndARerunFinishes) {
  spec(5, "1e-3, 1e-4");
  const std::string ckpt = (dir / "out/results.h5.ckpt").string();
  const int pid = spawn(xfer_run_command(2, "--grace 30"), (dir / "b.out").string(), (dir / "b.err").string());
  ASSERT_TRUE(eventually(300, [&] {
    if (!fs::exists(ckpt)) return false;
    for (const auto& e : fs::recursive_directory_iterator(ckpt))
      if (e.path().extension() == ".ckpt") return true;
    return false;
  }));
  const auto t0 = std::chrono::steady_clock::now();
  for (int kid : children(pid)) ::kill(kid, SIGTERM);  // as SLURM signals every task of the step
  const int status = wait_for(pid);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(status, 75) << "stopped early with work left: exit status 75" << read_file((dir / "b.err").string());
  EXPECT_LT(took, 30.0);
  auto mid = check(results());
  EXPECT_GE(mid["status"].value("interrupted", 0), 1) << mid.dump();
  EXPECT_NE(mid["run_end_reasons"].back().get<std::string>().find("signal"), std::string::npos) << mid.dump();
  bool checkpoints = false;
  for (const auto& e : fs::recursive_directory_iterator(ckpt)) checkpoints |= e.path().extension() == ".ckpt";
  EXPECT_TRUE(checkpoints);
  ASSERT_EQ(xfer_run(2).status, 0);
  auto j = check(results());
  expect_all_done_once(j, 4, 5);
}

TEST_F(Sweep, ASecondWriterIsRefused) {
  spec(1, "1e-3");
  fs::create_directories(dir / "out");
  dir.write("out/results.h5.lock", "{\"host\": \"" + run("hostname").out.substr(0, run("hostname").out.size() - 1) +
                                       "\", \"pid\": " + std::to_string(::getpid()) + ", \"slurm_job_id\": \"4242\"}");
  const Result r = xfer_run(1);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("is being written by another xfer run"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("SLURM job 4242"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(results()));
}

TEST_F(Sweep, ATruncatedOrForeignStoreIsRefusedAndNeverOverwritten) {
  spec(1, "1e-3");
  ASSERT_EQ(xfer_run(1).status, 0);
  const std::string trunc = (dir / "trunc.h5").string(), foreign = (dir / "foreign.h5").string();
  {
    const auto bytes = read_file(results());
    std::ofstream(trunc, std::ios::binary) << bytes.substr(0, bytes.size() / 3);
  }
  ASSERT_EQ(run(std::string(XFER_PYTHON) + " -c " + quote("import h5py; h5py.File('" + foreign + "', 'w')['x'] = [1]")).status, 0);
  for (const auto& [file, words] : {std::pair<std::string, std::string>{trunc, "cannot open as HDF5"},
                                    {foreign, "not an xfer results file"}}) {
    const std::string digest = sha256_file_hex(file);
    const Result r = xfer_run(1, "--results " + quote(file));
    EXPECT_EQ(r.status, 2) << file;
    EXPECT_NE(r.err.find(words), std::string::npos) << r.err;
    EXPECT_EQ(sha256_file_hex(file), digest) << "never overwritten";
    const Result s = run(quote(xfer()) + " status " + quote(file));
    EXPECT_EQ(s.status, 2);
    EXPECT_NE(s.err.find(words), std::string::npos) << s.err;
  }
}

TEST_F(Sweep, TwoRankGroupsMatchOneRankWithTheSameGlobalBatch) {
  // 192 training images in batches of 16: 12 full steps per epoch, 24 in two epochs.
  spec(2, "1e-3", "", "limit_train = 192\n", 16);
  const std::string one = (dir / "one.csv").string();
  ASSERT_EQ(run(quote(xfer()) + " train " + quote((dir / "spec.toml").string()) + " --index 0 --threads 1 "
                "--micro-batches 2 --checkpoint-dir " + quote((dir / "c1").string()) + " --step-log " + quote(one)).status, 0);
  auto losses = [](const std::string& path) {
    std::vector<double> out;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
      std::stringstream ss(line);
      std::string f;
      for (int i = 0; i < 4; ++i) std::getline(ss, f, ',');
      out.push_back(std::stod(f));
    }
    return out;
  };
  const auto a = losses(one);
  ASSERT_EQ(a.size(), 24u);
  // Each way the group sums its gradients: buckets summed during backward (the default), after it, one flat bucket.
  for (const std::string exchange : {"overlap", "bucketed", "flat"}) {
    const std::string log = (dir / (exchange + ".csv")).string();
    const Result r = run(kMpirun + " -n 2 " + quote(xfer()) + " train " + quote((dir / "spec.toml").string()) +
                         " --index 0 --threads 1 --gradient-exchange " + exchange + " --checkpoint-dir " +
                         quote((dir / ("c-" + exchange)).string()) + " --step-log " + quote(log));
    ASSERT_EQ(r.status, 0) << exchange << "\n" << r.out << r.err;  // the trial's own status and message are on stdout
    const auto b = losses(log);
    ASSERT_EQ(a.size(), b.size()) << exchange;
    for (size_t i = 0; i < a.size(); ++i)
      EXPECT_LE(std::abs(a[i] - b[i]), 1e-5 * std::abs(a[i])) << exchange << " step " << i;
  }
  // And a sweep with two-rank groups on three ranks.
  spec(1, "1e-3, 1e-4", "ranks_per_trial = 2\n");
  const Result s = xfer_run(3);
  ASSERT_EQ(s.status, 0) << s.err;
  auto j = check(results());
  expect_all_done_once(j, 4, 1);
}

TEST_F(Sweep, ThreeShardsMergeIntoWhatOneRunHoldsAndConflictsAreReportedNotDropped) {
  spec(1, "1e-3, 1e-4");
  ASSERT_EQ(xfer_run(2).status, 0);
  std::vector<std::string> shards;
  for (int i = 0; i < 3; ++i) {
    const Result r = xfer_run(1, "--shard " + std::to_string(i) + "/3");
    ASSERT_EQ(r.status, 0) << r.err;
    shards.push_back((dir / ("out/results.shard-" + std::to_string(i) + "-of-3.h5")).string());
    ASSERT_TRUE(fs::exists(shards.back())) << shards.back();
  }
  auto merge = [&](const std::string& out, const std::vector<std::string>& in) {
    std::string cmd = quote(xfer()) + " merge " + quote(out);
    for (const auto& s : in) cmd += " " + quote(s);
    return run(cmd);
  };
  const std::string merged = (dir / "merged.h5").string();
  const Result m = merge(merged, shards);
  ASSERT_EQ(m.status, 0) << m.err;
  expect_all_done_once(check(merged), 4, 1);
  // The same keys and values as the single run (h5py, not xfer, reads both).
  const std::string same = R"(
import sys, h5py
a, b = (h5py.File(p, "r")["trials"][()] for p in sys.argv[1:3])
ka = {r["key"]: (r["test_metric"], r["val_metric"]) for r in a}
kb = {r["key"]: (r["test_metric"], r["val_metric"]) for r in b}
assert ka == kb, (ka, kb)
print(len(ka))
)";
  const Result c = run(std::string(XFER_PYTHON) + " -c " + quote(same) + " " + quote(results()) + " " + quote(merged));
  EXPECT_EQ(c.status, 0) << c.err;
  EXPECT_EQ(c.out, "4\n");
  // Merging the whole run with its shards: every key twice, identical, kept once.
  const Result twice = merge((dir / "twice.h5").string(), {results(), shards[0], shards[1], shards[2]});
  ASSERT_EQ(twice.status, 0) << twice.err;
  EXPECT_NE(twice.out.find("4 identical duplicate(s)"), std::string::npos) << twice.out;
  // A shard whose copy of a trial disagrees (as if rerun on other hardware): reported, listed in the file, exit 3.
  // The edit recomputes the row's state checksum as xfer's writer would (else it is a corrupted row, also a conflict).
  const std::string odd = (dir / "odd.h5").string();
  fs::copy_file(shards[0], odd);
  const Result edit = run(std::string(XFER_PYTHON) + " -c " + quote(
      "import h5py, struct, zlib\nf = h5py.File('" + odd + "', 'r+')\nt = f['trials'][()]\n"
      "i = int((t['status'] == b'done').argmax())\nt['test_metric'][i] += 0.125\n"
      "names = f['trials'].attrs['state_crc32_columns'].split(';')[0].split()\nb = b''\n"
      "for n in names:\n    v = t[n][i]; k = t.dtype[n].kind\n"
      "    b += struct.pack('<d', v) if k == 'f' else struct.pack('<q', int(v)) if k in 'iu' else "
      "struct.pack('<I', len(v if isinstance(v, bytes) else v.encode())) + (v if isinstance(v, bytes) else v.encode())\n"
      "t['state_crc32'][i] = zlib.crc32(b)\nf['trials'][...] = t\nprint(t['key'][i].decode())"));
  ASSERT_EQ(edit.status, 0) << edit.err;
  const std::string key = edit.out.substr(0, 16);
  const std::string conflicted = (dir / "conflicted.h5").string();
  const Result x = merge(conflicted, {shards[0], shards[1], shards[2], odd});
  EXPECT_EQ(x.status, 3) << x.out << x.err;
  EXPECT_NE(x.err.find("conflict: " + key), std::string::npos) << x.err;
  EXPECT_NE(x.out.find("1 conflict(s)"), std::string::npos) << x.out;
  expect_all_done_once(check(conflicted), 4, 1);
  const Result listed = run(std::string(XFER_PYTHON) + " -c " + quote(
      "import h5py\nc = h5py.File('" + conflicted + "', 'r')['merge/conflicts'][()]\n"
      "print(len(c), c['key'][0].decode(), round(float(c['other_test_metric'][0] - c['kept_test_metric'][0]), 6), "
      "c['other'][0].decode().endswith('odd.h5'))"));
  EXPECT_EQ(listed.status, 0) << listed.err;
  EXPECT_EQ(listed.out, "1 " + key + " 0.125 True\n");
  // The output is never overwritten, and cannot be an input.
  const Result again = merge(merged, shards);
  EXPECT_EQ(again.status, 2);
  EXPECT_NE(again.err.find("already exists"), std::string::npos) << again.err;
}

// One cost model: `xfer plan`'s per-trial costs are the costs the sweep records and orders by (one rank: started
// costliest first), and a job array's shards are every third trial of that order.
TEST_F(Sweep, PlanOrderAndShardsUseTheSameCosts) {
  dir.write("spec.toml",
            "[study]\nname = \"costs\"\nresults = \"out/results.h5\"\n\n"
            "[[model]]\nname = \"shufflenet_v2_x0_5\"\nbackbone = \"" + kModels + "/shufflenet_v2_x0_5.pt\"\n"
            "imagenet_top1 = 60\ngmacs = 0.04\n"
            "[[model]]\nname = \"squeezenet1_1\"\nbackbone = \"" + kModels + "/squeezenet1_1.pt\"\n"
            "imagenet_top1 = 58\ngmacs = 0.35\n"
            "[[model]]\nname = \"resnet18\"\nbackbone = \"" + kModels + "/resnet18.pt\"\nimagenet_top1 = 69\n\n"
            "[[dataset]]\nname = \"eurosat\"\nkind = \"eurosat\"\nroot = \"" + (*data_ / "eurosat").string() +
            "\"\ninput_size = 32\n\n[grid]\nepochs = 2\nbatch_size = 32\ninput_size = 32\nweight_decays = [1e-4]\n"
            "\n[[grid.optimizer]]\nfamily = \"adamw\"\nlrs = [1e-3, 1e-4]\n"
            "\n[[override]]\nmodel = \"squeezenet1_1\"\nepochs = 3\n");
  const std::string spec_path = (dir / "spec.toml").string();
  const Result plan = run(quote(xfer()) + " plan " + quote(spec_path) + " --json --list");
  ASSERT_EQ(plan.status, 0) << plan.err;
  const auto p = nlohmann::json::parse(plan.out);
  std::vector<std::pair<std::string, double>> planned;  // spec order
  for (const auto& t : p["trials"]) planned.emplace_back(t["key"].get<std::string>(), t["cost_gflop"].get<double>());
  ASSERT_EQ(planned.size(), 6u);
  std::vector<std::string> by_cost;
  {
    std::vector<size_t> idx(planned.size());
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return planned[a].second > planned[b].second; });
    for (size_t i : idx) by_cost.push_back(planned[i].first);
  }
  ASSERT_NE(planned[0].second, planned[2].second) << "the models must cost differently for the order to say anything";
  // The sweep (simulated: each trial sleeps cost × 2000 µs) on one rank records the same costs and starts the
  // trials costliest first.
  const Result r = run(kMpirun + " -n 1 " + quote(xfer()) + " run " + quote(spec_path) +
                       " --no-progress --simulate 2000");
  ASSERT_EQ(r.status, 0) << r.err;
  const Result rows = run(std::string(XFER_PYTHON) + " -c " + quote(
      "import sys, h5py\nt = h5py.File(sys.argv[1], 'r')['trials'][()]\n"
      "for r in sorted(t, key=lambda r: r['started_at']):\n"
      "    print(r['key'].decode(), repr(float(r['cost_gflop'])), r['status'].decode())") + " " + quote(results()));
  ASSERT_EQ(rows.status, 0) << rows.err;
  std::stringstream ss(rows.out);
  std::vector<std::string> started;
  for (std::string key, status; ss >> key;) {
    double cost = 0;
    ss >> cost >> status;
    EXPECT_EQ(status, "done") << key;
    const auto it = std::find_if(planned.begin(), planned.end(), [&](const auto& e) { return e.first == key; });
    ASSERT_NE(it, planned.end()) << key;
    EXPECT_DOUBLE_EQ(cost, it->second) << key << ": the sweep's cost is the plan's";
    started.push_back(key);
  }
  EXPECT_EQ(started, by_cost) << "one rank starts the trials costliest first";
  // Three shards: shard i holds positions i, i+3 of that order.
  for (int i = 0; i < 3; ++i) {
    const Result dry = run(quote(xfer()) + " run " + quote(spec_path) + " --dry-run --json --results " +
                           quote((dir / "unrun.h5").string()) + " --shard " + std::to_string(i) + "/3");
    ASSERT_EQ(dry.status, 0) << dry.err;
    std::set<std::string> got, expected;
    const auto d = nlohmann::json::parse(dry.out);
    for (const auto& w : d["would_run"]) got.insert(w["key"].get<std::string>());
    for (size_t k = static_cast<size_t>(i); k < by_cost.size(); k += 3) expected.insert(by_cost[k]);
    EXPECT_EQ(got, expected) << "shard " << i;
  }
}

// Only rank 0 reads the spec: the workers are started with a spec path that does not exist, and without the
// variable the spec's backbone and data paths are written under. They train from what their orders carry.
TEST_F(Sweep, AWorkerRankNeverReadsTheSpec) {
  dir.write("spec.toml",
            "[study]\nname = \"rank0\"\nresults = \"out/results.h5\"\n\n"
            "[[model]]\nname = \"shufflenet_v2_x0_5\"\nbackbone = \"${XFER_TEST_ONLY_RANK0}/models/shufflenet_v2_x0_5.pt\"\n"
            "imagenet_top1 = 60\n"
            "[[model]]\nname = \"squeezenet1_1\"\nbackbone = \"${XFER_TEST_ONLY_RANK0}/models/squeezenet1_1.pt\"\n"
            "imagenet_top1 = 58\n\n"
            "[[dataset]]\nname = \"eurosat\"\nkind = \"eurosat\"\nroot = \"${XFER_TEST_ONLY_RANK0}/data/eurosat\"\n"
            "input_size = 32\n\n[grid]\nepochs = 1\nbatch_size = 32\ninput_size = 32\nweight_decays = [1e-4]\n"
            "\n[[grid.optimizer]]\nfamily = \"adamw\"\nlrs = [1e-3, 1e-4]\n");
  fs::create_directories(dir / "root0");
  fs::create_symlink(kModels, dir / "root0/models");
  fs::create_symlink(data_->path(), dir / "root0/data");
  const std::string common = " --no-progress --threads 1 --heartbeat-timeout 600";
  const std::string cmd = kMpirun + " -n 1 env XFER_TEST_ONLY_RANK0=" + quote((dir / "root0").string()) + " " +
                          quote(xfer()) + " run " + quote((dir / "spec.toml").string()) + common +
                          " : -n 2 env -u XFER_TEST_ONLY_RANK0 " + quote(xfer()) + " run " +
                          quote((dir / "no-such-folder/spec.toml").string()) + common;
  const Result r = run(cmd);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  expect_all_done_once(check(results()), 4, 1);
  const Result groups = run(std::string(XFER_PYTHON) + " -c " + quote(
      "import sys, h5py\nt = h5py.File(sys.argv[1], 'r')['trials'][()]\nprint(sorted(set(int(g) for g in t['rank_group'])))") +
      " " + quote(results()));
  ASSERT_EQ(groups.status, 0) << groups.err;
  EXPECT_NE(groups.out.find_first_of("12"), std::string::npos) << "a worker rank ran trials: " << groups.out;
}

}  // namespace
}  // namespace xfer::test
