// `xfer submit --dry-run` against golden scripts for four requests; malicious and impossible requests refused with a
// reason; the rendered scripts parse with bash and carry hostile paths as data. (Real submission through sbatch is
// tests/slurm/run.sh.)
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "support/fixture_suite.hpp"
#include "support/process.hpp"
#include "support/tempdir.hpp"

namespace fs = std::filesystem;

namespace xfer::test {
namespace {

const std::string kModels = XFER_TEST_MODELS;
const std::string kGolden = std::string(XFER_SOURCE_DIR) + "/tests/golden/submit";

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  if (from.empty()) return;
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
}

class Submit : public WithFixtureDatasets {
 protected:
  // A two-model, one-dataset study; `grid_extra` goes into [grid].
  std::string spec(const std::string& rel = "spec.toml", const std::string& grid_extra = "") {
    return dir.write(rel, "[study]\nname = \"golden\"\nresults = \"out/results.h5\"\n\n"
                          "[[model]]\nname = \"shufflenet_v2_x0_5\"\nbackbone = \"" + kModels + "/shufflenet_v2_x0_5.pt\"\n"
                          "[[model]]\nname = \"squeezenet1_1\"\nbackbone = \"" + kModels + "/squeezenet1_1.pt\"\n\n"
                          "[[dataset]]\nname = \"eurosat\"\nkind = \"eurosat\"\nroot = \"" + (*data_ / "eurosat").string() +
                          "\"\n\n[grid]\nepochs = 2\nbatch_size = 32\nweight_decays = [1e-4]\n" + grid_extra +
                          "\n[[grid.optimizer]]\nfamily = \"adamw\"\nlrs = [1e-3, 1e-4]\n");
  }
  Result submit(const std::string& spec_path, const std::string& args) {
    return run(quote(xfer()) + " submit " + quote(spec_path) + " " + args);
  }
  // The script with this machine's specifics replaced by placeholders.
  std::string normalised(std::string script) const {
    const Result v = run(quote(xfer()) + " --version");
    std::string version = v.out.substr(5, v.out.find(' ', 5) - 5);  // "xfer 0.1.0 (…)"
    replace_all(script, dir.str(), "@DIR@");
    replace_all(script, "(xfer " + version + ")", "(xfer @VERSION@)");
    return script;
  }
  void expect_golden(const std::string& name, const std::string& args) {
    const Result r = submit(spec(), args + " --xfer /opt/xfer/bin/xfer --log-dir /scratch/xfer-logs --dry-run");
    ASSERT_EQ(r.status, 0) << r.err;
    const std::string got = normalised(r.out);
    const std::string path = kGolden + "/" + name + ".sbatch";
    if (std::getenv("XFER_UPDATE_GOLDEN")) std::ofstream(path) << got;
    ASSERT_TRUE(fs::exists(path)) << path << " is missing; XFER_UPDATE_GOLDEN=1 writes it";
    EXPECT_EQ(got, read_file(path)) << "the rendered script differs from " << path
                                    << " (XFER_UPDATE_GOLDEN=1 rewrites it after a deliberate change)";
    // It parses.
    const std::string file = dir.write(name + ".sbatch", r.out);
    const Result n = run("bash -n " + quote(file));
    EXPECT_EQ(n.status, 0) << n.err;
  }
  void expect_refused(const std::string& spec_path, const std::string& args, const std::string& reason) {
    const auto before = dir.listing();
    const Result r = submit(spec_path, args + " --dry-run");
    EXPECT_EQ(r.status, 2) << args << "\n" << r.out << r.err;
    EXPECT_NE(r.err.find(reason), std::string::npos) << args << ": " << r.err;
    EXPECT_TRUE(r.out.empty()) << "no script for a refused request: " << r.out;
    EXPECT_EQ(dir.listing(), before) << "a refused request writes nothing";
  }
  TempDir dir;
};

TEST_F(Submit, OneNodeFourGpusMatchesItsGoldenScript) {
  expect_golden("one_node", "--nodes 1 --gpus-per-node 4 --time 12:00:00 --partition gpu --account proj-42");
}

TEST_F(Submit, TwoNodesOfEightGpusMatchesItsGoldenScript) {
  expect_golden("multi_node", "--nodes 2 --gpus-per-node 8 --cpus-per-task 12 --time 1-00:00:00 --partition gpu-long");
}

TEST_F(Submit, PreemptibleMatchesItsGoldenScript) {
  expect_golden("preemptible", "--gpus-per-node 2 --time 04:00:00 --preemptible --signal-seconds 600 --job-name my-sweep");
}

TEST_F(Submit, ArrayOfThreeShardsMatchesItsGoldenScript) {
  expect_golden("array", "--gpus-per-node 1 --time 2:00:00 --array 3 --account proj-42");
}

TEST_F(Submit, ScriptsCarryHostilePathsAsData) {
  // A spec in a folder whose name is a shell attack: it reaches the script quoted, as one word, and runs nothing.
  const std::string evil = "we'ird \"dir\" $(touch PWNED) `touch PWNED2`; touch PWNED3";
  const std::string s = spec(evil + "/spec.toml");
  const Result r = submit(s, "--gpus-per-node 1 --time 1:00:00 --log-dir " + quote((dir / "logs").string()) + " --dry-run");
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string file = dir.write("evil.sbatch", r.out);
  // Take the assignments the script makes and print SPEC, exactly as the job would see it.
  const Result e = run("eval \"$(grep -E '^(SPEC|XFER)=' " + quote(file) + ")\"; printf '%s' \"$SPEC\"", dir.str());
  ASSERT_EQ(e.status, 0) << e.err;
  EXPECT_EQ(e.out, fs::path(s).lexically_normal().string());
  for (const char* f : {"PWNED", "PWNED2", "PWNED3"}) EXPECT_FALSE(fs::exists(dir / f)) << f;
  EXPECT_EQ(run("bash -n " + quote(file)).status, 0);
  // Without --log-dir, that folder would go into an #SBATCH line, which SLURM reads without a shell: refused.
  expect_refused(s, "--gpus-per-node 1 --time 1:00:00", "--log-dir");
}

TEST_F(Submit, MaliciousNamesAreRefused) {
  const std::string s = spec();
  expect_refused(s, "--gpus-per-node 1 --time 1:00:00 --partition 'gpu;touch PWNED'", "--partition");
  expect_refused(s, "--gpus-per-node 1 --time 1:00:00 --account '$(touch PWNED)'", "--account");
  expect_refused(s, "--gpus-per-node 1 --time 1:00:00 --job-name 'a b'", "--job-name");
  expect_refused(s, "--gpus-per-node 1 --time '1:00:00\n#SBATCH --uid=0'", "--time");
  EXPECT_FALSE(fs::exists(dir / "PWNED"));
}

TEST_F(Submit, ImpossibleRequestsAreRefusedWithAReason) {
  const std::string s = spec();
  expect_refused(s, "--gpus-per-node 1 --time 1", "shorter than");
  expect_refused(s, "--gpus-per-node 1 --time 12h", "SLURM's format");
  expect_refused(s, "--nodes 0 --gpus-per-node 1 --time 1:00:00", "--nodes");
  expect_refused(s, "--gpus-per-node 2 --ranks-per-node 4 --time 1:00:00", "one rank per GPU");
  expect_refused(s, "--gpus-per-node 1 --time 1:00:00 --array 1", "--array");
  expect_refused(s, "--gpus-per-node 1 --time 1:00:00 --preemptible --signal-seconds 5", "--signal-seconds");
  const std::string bf16 = spec("bf16.toml", "precision = \"bf16\"\n");
  expect_refused(bf16, "--gpus-per-node 0 --time 1:00:00", "bf16");
  const std::string wide = spec("wide.toml", "ranks_per_trial = 4\n");
  expect_refused(wide, "--nodes 1 --gpus-per-node 2 --time 1:00:00", "ranks_per_trial");
  // Two nodes of two GPUs hold a group of four.
  const Result ok = submit(wide, "--nodes 2 --gpus-per-node 2 --time 1:00:00 --dry-run");
  EXPECT_EQ(ok.status, 0) << ok.err;
  // A CPU-only time check: one epoch of the cheapest trial at the assumed CPU speed must fit.
  const Result cpu = submit(s, "--gpus-per-node 0 --time 10 --dry-run");
  EXPECT_EQ(cpu.status, 0) << cpu.err;
}

}  // namespace
}  // namespace xfer::test
