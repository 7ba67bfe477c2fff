// The results file's faults from ../shared/reliability-probe.md, each against the real binary: a foreign study or
// spec (B3), a corrupted /trials row (B5, W-3.4), damaged /samples (W-3.1), a disk that fills while the file is
// written or created (B6, W-3.3), a read-only file (W-3.2) and a stale writer lock (W-4.2).
#include <unistd.h>

#include <filesystem>
#include <algorithm>
#include <fstream>
#include <map>
#include <set>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/fixture_suite.hpp"
#include "support/h5_table.hpp"
#include "support/process.hpp"
#include "support/small_disk.hpp"
#include "support/tempdir.hpp"
#include "xfer/analysis/study.hpp"
#include "xfer/core/digest.hpp"
#include "xfer/core/error.hpp"
#include "xfer/store/store.hpp"

namespace fs = std::filesystem;

namespace xfer::test {
namespace {

const std::string kModels = XFER_TEST_MODELS;

bool has_text(const std::string& text, const std::string& what) { return text.find(what) != std::string::npos; }

class StoreFaults : public WithFixtureDatasets {
 protected:
  // A one-model, one-epoch study of the eurosat layout: a trial takes a second or two.
  std::string spec(const std::string& file, const std::string& name, const std::string& results,
                   const std::string& lrs = "1e-3, 1e-4", const std::string& dataset_extra = "",
                   const std::string& study_extra = "") {
    return dir.write(file, "[study]\nname = \"" + name + "\"\nresults = \"" + results + "\"\nmax_attempts = 2\n" +
                               study_extra + "\n[[model]]\nname = \"squeezenet1_1\"\nbackbone = \"" + kModels +
                               "/squeezenet1_1.pt\"\n\n[[dataset]]\nname = \"eurosat\"\nkind = \"eurosat\"\nroot = \"" +
                               (*data_ / "eurosat").string() + "\"\ninput_size = 32\n" + dataset_extra +
                               "\n[grid]\nepochs = 1\nbatch_size = 32\ninput_size = 32\nweight_decays = [1e-4]\n"
                               "\n[[grid.optimizer]]\nfamily = \"adamw\"\nlrs = [" + lrs + "]\n");
  }
  // As another user (`as`), `binary` is a copy that user can reach (SharedDir).
  Result xfer_cmd(const std::string& args, const std::string& as = "", const std::string& binary = "") {
    return run((as.empty() ? "" : "runuser -u " + as + " -- ") + quote(binary.empty() ? xfer() : binary) + " " + args);
  }
  Result run_spec(const std::string& spec_path, const std::string& args = "") {
    return xfer_cmd("run " + quote(spec_path) + " --no-progress --threads 1 " + args);
  }
  Result python(const std::string& code) {
    const std::string script = dir.write("script.py", code);
    return run(std::string(XFER_PYTHON) + " " + quote(script));
  }
  nlohmann::json check(const std::string& file) {
    const Result r = run(std::string(XFER_PYTHON) + " " +
                         quote(std::string(XFER_SOURCE_DIR) + "/tests/reference/check_results.py") + " " + quote(file));
    EXPECT_EQ(r.status, 0) << r.err;
    return r.status == 0 ? nlohmann::json::parse(r.out) : nlohmann::json::object();
  }
  static bool has(const std::string& text, const std::string& what) { return text.find(what) != std::string::npos; }

  TempDir dir{"store_faults"};
};

// ---- B3: a results file of another study or spec ------------------------------------------------------------

TEST_F(StoreFaults, B3_AnotherStudysFileIsRefusedByteForByteUnchanged) {
  const std::string tiny = spec("tiny.toml", "tiny", "out/tiny.h5");
  ASSERT_EQ(run_spec(tiny).status, 0);
  const std::string file = (dir / "out/tiny.h5").string();
  const std::string before = sha256_file_hex(file);
  const std::string other = spec("other.toml", "other", "out/other.h5", "1e-3, 1e-4, 3e-4");
  for (const std::string& extra : {std::string(), std::string("--extend"), std::string("--dry-run")}) {
    const Result r = run_spec(other, "--results " + quote(file) + " " + extra);
    EXPECT_EQ(r.status, 2) << extra << "\n" << r.err;
    EXPECT_TRUE(has(r.err, file)) << r.err;
    EXPECT_TRUE(has(r.err, "\"tiny\"") && has(r.err, "\"other\"")) << r.err;
    EXPECT_TRUE(has(r.err, "use a new --results file")) << r.err;
    EXPECT_EQ(sha256_file_hex(file), before) << extra;
  }
  EXPECT_FALSE(fs::exists(file + ".lock"));
}

TEST_F(StoreFaults, B3_AnotherSpecNeedsExtendAndEverySpecTextIsKept) {
  const std::string tiny = spec("tiny.toml", "tiny", "out/tiny.h5");
  ASSERT_EQ(run_spec(tiny).status, 0);
  const std::string file = (dir / "out/tiny.h5").string();
  const std::string before = sha256_file_hex(file);
  const std::string more = spec("more.toml", "tiny", "out/tiny.h5", "1e-3, 1e-4, 3e-4");
  for (const std::string& extra : {std::string(), std::string("--dry-run")}) {
    const Result r = run_spec(more, extra);
    EXPECT_EQ(r.status, 2) << r.err;
    EXPECT_TRUE(has(r.err, "--extend")) << r.err;
    EXPECT_EQ(sha256_file_hex(file), before);
  }
  const Result extended = run_spec(more, "--extend");
  ASSERT_EQ(extended.status, 0) << extended.err;
  const Result again = run_spec(tiny);  // the first spec is still this file's: it resumes (nothing to run)
  EXPECT_EQ(again.status, 0) << again.err;
  EXPECT_TRUE(has(again.err, "0 to run")) << again.err;
  const auto j = check(file);
  EXPECT_EQ(j["trials"].get<int>(), 3);
  EXPECT_EQ(j["specs"].get<int>(), 2);
  EXPECT_TRUE(j["checksums_ok"].get<bool>());
  const Result texts = python("import h5py\nf = h5py.File('" + file + "', 'r')\n"
                              "for r in f['study/specs'][()]: print(r['text'].decode().count('lrs = [1e-3, 1e-4]'), "
                              "r['text'].decode().count('3e-4'))\n");
  EXPECT_EQ(texts.out, "1 0\n0 1\n") << "both spec texts, oldest first: " << texts.err;
}

TEST_F(StoreFaults, B3_AnotherSplitIsRefusedEvenWithExtend) {
  const std::string tiny = spec("tiny.toml", "tiny", "out/tiny.h5", "1e-3, 1e-4", "limit_train = 20\n");
  ASSERT_EQ(run_spec(tiny).status, 0);
  const std::string file = (dir / "out/tiny.h5").string();
  const std::string before = sha256_file_hex(file);
  const std::string conc = spec("conc.toml", "tiny", "out/tiny.h5", "1e-3, 1e-4, 3e-4", "limit_train = 40\n");
  const Result r = run_spec(conc, "--extend");
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_TRUE(has(r.err, "dataset eurosat is split differently")) << r.err;
  EXPECT_TRUE(has(r.err, "not even with --extend")) << r.err;
  EXPECT_EQ(sha256_file_hex(file), before);
}

// ---- B5 and W-3.4: a corrupted /trials row --------------------------------------------------------------------

// Overwrites the model name of row 0 in the raw chunk (the key, its first 16 bytes, survives), as the probe did.
std::string flip_row0(const std::string& file) {
  return "import h5py\nf = h5py.File('" + file + "', 'r')\noff = f['trials'].id.get_chunk_info(0).byte_offset\n"
         "f.close()\nwith open('" + file + "', 'r+b') as g:\n    g.seek(off + 16)\n    g.write(b'2i)A0`Z]tQ;-_$RXn!zZC}>l.I$#$tf')\n";
}

TEST_F(StoreFaults, B5_ACorruptedRowIsFlaggedByStatusExcludedByAnalyzeRefusedByRunAndAConflictInMerge) {
  const std::string tiny = spec("tiny.toml", "tiny", "out/tiny.h5");
  ASSERT_EQ(run_spec(tiny).status, 0);
  const std::string clean = (dir / "out/tiny.h5").string(), file = (dir / "ctr.h5").string();
  fs::copy_file(clean, file);
  ASSERT_EQ(python(flip_row0(file)).status, 0);
  const std::string key = python("import h5py\nprint(h5py.File('" + file + "', 'r')['trials']['key'][0].decode())\n").out;
  ASSERT_EQ(key.size(), 17u);
  const std::string named = "row 0 (key " + key.substr(0, 16) + ")";
  const std::string before = sha256_file_hex(file);

  const Result status = xfer_cmd("status " + quote(file) + " --trials");
  EXPECT_EQ(status.status, 2) << status.err;
  EXPECT_TRUE(has(status.out, named + ": corrupted (checksum mismatch")) << status.out;
  EXPECT_FALSE(has(status.out, "2i)A0")) << "no garbage shown: " << status.out;
  EXPECT_TRUE(has(status.out, "1 trials")) << "counts leave it out: " << status.out;

  const Result analyze = xfer_cmd("analyze " + quote(file) + " --no-figures --no-write");
  EXPECT_EQ(analyze.status, 0) << analyze.err;
  EXPECT_TRUE(has(analyze.err, named + " is corrupted (checksum mismatch")) << analyze.err;

  const Result rerun = run_spec(tiny, "--results " + quote(file));
  EXPECT_EQ(rerun.status, 2) << rerun.err;
  EXPECT_TRUE(has(rerun.err, named)) << rerun.err;
  EXPECT_TRUE(has(rerun.err, "xfer merge")) << "says how to recover: " << rerun.err;
  EXPECT_EQ(sha256_file_hex(file), before) << "never rewritten";

  const std::string merged = (dir / "m.h5").string();
  const Result merge = xfer_cmd("merge " + quote(merged) + " " + quote(file) + " " + quote(clean));
  EXPECT_EQ(merge.status, 3) << merge.err;
  EXPECT_TRUE(has(merge.err, "corrupted (checksum mismatch")) << merge.err;
  EXPECT_TRUE(has(merge.out, "1 identical duplicate")) << "only the intact row: " << merge.out;
  const auto j = check(merged);
  EXPECT_EQ(j["status"]["done"].get<int>(), 2);
  EXPECT_TRUE(j["checksums_ok"].get<bool>());

  // The recovery the message gives: merge the file alone, rerun into the result: the lost trial runs again.
  const std::string recovered = (dir / "recovered.h5").string();
  const Result alone = xfer_cmd("merge " + quote(recovered) + " " + quote(file));
  EXPECT_EQ(alone.status, 3);
  // W-3.4: the sentence said "the merged file keeps the row from ;" (an empty shard name) where no row is kept.
  EXPECT_FALSE(has(alone.err, "keeps the row from")) << alone.err;
  EXPECT_TRUE(has(alone.err, "not merged — a rerun of the spec runs that trial again; it is listed in /merge/conflicts"))
      << alone.err;
  const Result resumed = run_spec(tiny, "--results " + quote(recovered));
  EXPECT_EQ(resumed.status, 0) << resumed.err;
  EXPECT_TRUE(has(resumed.err, "1 new")) << resumed.err;
  EXPECT_EQ(check(recovered)["status"]["done"].get<int>(), 2);
}

TEST_F(StoreFaults, B5_AFieldRewrittenWithH5pyFailsTheRowsChecksum) {
  const std::string tiny = spec("tiny.toml", "tiny", "out/tiny.h5");
  ASSERT_EQ(run_spec(tiny).status, 0);
  const std::string file = (dir / "out/tiny.h5").string();
  ASSERT_EQ(python("import h5py\nf = h5py.File('" + file + "', 'r+')\nt = f['trials'][1]\nt['epochs_done'] = 7\n"
                   "f['trials'][1] = t\n").status, 0);
  const Result status = xfer_cmd("status " + quote(file) + " --json");
  EXPECT_EQ(status.status, 2);
  const auto j = nlohmann::json::parse(status.out);
  ASSERT_EQ(j["corrupted"].size(), 1u) << status.out;
  EXPECT_EQ(j["corrupted"][0]["row"].get<int>(), 1);
  EXPECT_TRUE(has(j["corrupted"][0]["message"].get<std::string>(), "state_crc32")) << status.out;
  EXPECT_EQ(run_spec(tiny).status, 2);
}

// ---- W-3.1: damaged /samples ----------------------------------------------------------------------------------

TEST_F(StoreFaults, W31_DamagedSamplesAreNamedAndWrittenAgainByTheRun) {
  const std::string tiny = spec("tiny.toml", "tiny", "out/tiny.h5");
  ASSERT_EQ(run_spec(tiny).status, 0);
  const std::string file = (dir / "out/tiny.h5").string();
  ASSERT_EQ(python("import h5py\nf = h5py.File('" + file + "', 'r+')\nd = f['samples/eurosat']\nr = d[3]\n"
                   "r['label'] = r['label'] + 1\nd[3] = r\n").status, 0);
  const Result r = run_spec(tiny);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.err, "/samples/eurosat is damaged")) << r.err;
  const Result again = run_spec(tiny);
  EXPECT_FALSE(has(again.err, "damaged")) << "written again: " << again.err;
}

// W-3.b: 700 bytes over row 0 where its variable-length strings' heap references are: every command said
// "read rows: can't read data" (exit 1). Now the message names the table and says the file is damaged (exit 2).
TEST_F(StoreFaults, W3b_UnreadableTrialsRowsNameTheTableAndSayTheFileIsDamaged) {
  const std::string tiny = spec("tiny.toml", "tiny", "out/tiny.h5");
  ASSERT_EQ(run_spec(tiny).status, 0);
  const std::string file = (dir / "out/tiny.h5").string();
  ASSERT_EQ(python("import h5py, random\nf = h5py.File('" + file + "', 'r')\n"
                   "off = f['trials'].id.get_chunk_info(0).byte_offset\nf.close()\nrandom.seed(7)\n"
                   "with open('" + file + "', 'r+b') as g:\n    g.seek(off + 16)\n"
                   "    g.write(bytes(random.randrange(256) for _ in range(700)))\n").status, 0);
  for (const std::string& cmd : {"status " + quote(file), "analyze " + quote(file) + " --no-write --no-figures"}) {
    SCOPED_TRACE(cmd);
    const Result r = xfer_cmd(cmd);
    if (r.status == 2 && has(r.out, "corrupted (checksum mismatch")) continue;  // the bytes fell on checked values
    EXPECT_EQ(r.status, 2) << r.out << r.err;
    EXPECT_TRUE(has(r.err, "table /trials")) << r.err;
    EXPECT_TRUE(has(r.err, "the results file is damaged there")) << r.err;
  }
}

// W-3.1: bytes over a compressed chunk of /samples/eurosat (it no longer inflates): `run` failed with "read rows:
// can't read data". The table is derived from the dataset: the run says it is damaged and writes it again.
TEST_F(StoreFaults, W31_ASamplesChunkThatNoLongerInflatesIsWrittenAgainByTheRun) {
  const std::string tiny = spec("tiny.toml", "tiny", "out/tiny.h5");
  ASSERT_EQ(run_spec(tiny).status, 0);
  const std::string file = (dir / "out/tiny.h5").string();
  ASSERT_EQ(python("import h5py\nf = h5py.File('" + file + "', 'r')\ni = f['samples/eurosat'].id.get_chunk_info(0)\n"
                   "f.close()\nwith open('" + file + "', 'r+b') as g:\n    g.seek(i.byte_offset + i.size // 2)\n"
                   "    g.write(bytes(range(256)) * 2)\n").status, 0);
  const Result r = run_spec(tiny);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.err, "/samples/eurosat is damaged (its rows cannot be read")) << r.err;
  const Result again = run_spec(tiny);
  EXPECT_EQ(again.status, 0) << again.err;
  EXPECT_FALSE(has(again.err, "damaged")) << "written again: " << again.err;
}

// W-8.1: `xfer merge` of a shard a live run holds said nothing, and the merged file called its running trials
// orphaned. Now it is refused, naming the run, unless --force.
TEST_F(StoreFaults, W81_MergingAShardALiveRunHoldsIsRefusedWithoutForce) {
  const std::string tiny = spec("tiny.toml", "tiny", "out/tiny.h5");
  ASSERT_EQ(run_spec(tiny).status, 0);
  const std::string file = (dir / "out/tiny.h5").string();
  // The lock of a live process on this host (this test's own pid), as a running `xfer run` leaves it.
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  std::ofstream(file + ".lock") << nlohmann::json{{"host", host}, {"pid", static_cast<int>(::getpid())},
                                                  {"slurm_job_id", ""}, {"started_utc", "2026-01-01T00:00:00Z"}}
                                       .dump()
                                << "\n";
  const std::string merged = (dir / "m.h5").string();
  const Result r = xfer_cmd("merge " + quote(merged) + " " + quote(file));
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_TRUE(has(r.err, file + " is being written by a live run")) << r.err;
  EXPECT_TRUE(has(r.err, "--force")) << r.err;
  EXPECT_FALSE(fs::exists(merged));
  const Result forced = xfer_cmd("merge " + quote(merged) + " " + quote(file) + " --force");
  EXPECT_EQ(forced.status, 0) << forced.err;
  EXPECT_TRUE(has(forced.err, "warning")) << forced.err;
  fs::remove(file + ".lock");
}

// W-3.a: on a read-only file system, `analyze --no-write` failed with "internal error: filesystem error: cannot
// create directories" and `run` called the lock folder a bad input (exit 2). Now: the folder named with --out as the
// way out (exit 74), `run` exit 74 naming the read-only file system.
TEST_F(StoreFaults, W3a_AReadOnlyFileSystemIsNamedAndAnalyzeSaysToUseOut) {
  const std::string tiny = spec("tiny.toml", "tiny", "out/tiny.h5");
  ASSERT_EQ(run_spec(tiny).status, 0);
  SmallDisk disk((dir / "rofs").string(), 4 << 20);
  const std::string file = disk.path() + "/tiny.h5";
  fs::copy_file(dir / "out/tiny.h5", file);
  ASSERT_EQ(run("mount -o remount,ro " + quote(disk.path())).status, 0);
  const Result a = xfer_cmd("analyze " + quote(file) + " --no-write --no-figures");
  EXPECT_EQ(a.status, exit_status::environment) << a.err;
  EXPECT_FALSE(has(a.err, "internal error")) << a.err;
  EXPECT_TRUE(has(a.err, "tiny.h5.analysis: cannot create the folder for the tables")) << a.err;
  EXPECT_TRUE(has(a.err, "--out")) << a.err;
  EXPECT_TRUE(has(a.err, "EROFS")) << a.err;
  EXPECT_EQ(xfer_cmd("analyze " + quote(file) + " --no-write --no-figures --out " + quote((dir / "tables").string()))
                .status, 0);
  const Result w = xfer_cmd("analyze " + quote(file) + " --no-figures");
  EXPECT_EQ(w.status, exit_status::environment) << w.err;
  EXPECT_TRUE(has(w.err, "read-only file system")) << w.err;
  const Result r = run_spec(tiny, "--results " + quote(file));
  EXPECT_EQ(r.status, exit_status::environment) << r.err;
  EXPECT_TRUE(has(r.err, "read-only file system")) << r.err;
  run("mount -o remount,rw " + quote(disk.path()));
}

// ---- B6 and W-3.3: the disk fills ------------------------------------------------------------------------------

TEST_F(StoreFaults, B6_ADiskThatFillsWhileTheFileIsWrittenIsAnEnospcErrorNotACrash) {
  SmallDisk disk((dir / "small").string(), 3 << 20);
  const std::string ck = "checkpoint_dir = \"" + (dir / "ck").string() + "\"\n";
  const std::string df = spec("df.toml", "df", "small/df.h5", "1e-3, 1e-4", "", ck);
  ASSERT_EQ(run_spec(df).status, 0);
  disk.fill();
  const std::string df2 = spec("df2.toml", "df", "small/df.h5", "1e-3, 1e-4, 3e-4, 3e-3", "", ck);
  const Result r = run_spec(df2, "--extend");
  EXPECT_EQ(r.status, 74) << r.err;
  EXPECT_TRUE(has(r.err, "small/df.h5")) << r.err;
  EXPECT_TRUE(has(r.err, "ENOSPC")) << r.err;
  EXPECT_FALSE(has(r.err, "Segmentation")) << r.err;
  disk.free();
  const auto j = check((dir / "small/df.h5").string());  // h5py opens it
  EXPECT_TRUE(j["checksums_ok"].get<bool>());
  const Result rerun = run_spec(df2, "--extend");
  EXPECT_EQ(rerun.status, 0) << rerun.err;
  EXPECT_EQ(check((dir / "small/df.h5").string())["status"]["done"].get<int>(), 4);
}

TEST_F(StoreFaults, B6_ADiskThatFillsDuringTheTrialsLeavesAReadableFile) {
  // Room for the file's creation and a little more: the disk fills part-way through the sweep.
  SmallDisk disk((dir / "small").string(), 3 << 20);
  disk.fill(1200 << 10);
  const std::string ck = "checkpoint_dir = \"" + (dir / "ck").string() + "\"\n";
  const std::string df = spec("df.toml", "df", "small/df.h5", "1e-3, 1e-4, 3e-4, 3e-5, 1e-5, 2e-4", "", ck);
  const Result r = run_spec(df);
  EXPECT_EQ(r.status, 74) << r.err;
  EXPECT_TRUE(has(r.err, "small/df.h5") && has(r.err, "ENOSPC")) << r.err;
  EXPECT_FALSE(has(r.err, "Segmentation")) << r.err;
  disk.free();
  EXPECT_EQ(run_spec(df).status, 0);
  EXPECT_EQ(check((dir / "small/df.h5").string())["status"]["done"].get<int>(), 6);
}

TEST_F(StoreFaults, W33_CreatingTheFileOnAFullDiskSaysEnospcAndLeavesNothing) {
  SmallDisk disk((dir / "small").string(), 1 << 20);
  disk.fill();
  const std::string s = spec("new.toml", "new", "small/new.h5");
  const Result r = run_spec(s);
  EXPECT_EQ(r.status, 74) << r.err;
  EXPECT_TRUE(has(r.err, "ENOSPC")) << r.err;
  EXPECT_FALSE(fs::exists(dir / "small/new.h5.creating"));
  EXPECT_FALSE(fs::exists(dir / "small/new.h5"));
}

// ---- W-3.2: a read-only results file ----------------------------------------------------------------------------

TEST_F(StoreFaults, W32_AReadOnlyFileIsSaidToBeReadOnly) {
  // What nobody's commands read, copied where nobody can reach it (the build tree may sit in a folder only its owner
  // may enter): the binary, the backbone and its metadata, the dataset and the spec naming them.
  const SharedDir stage;
  const std::string binary = stage.copy(xfer(), "xfer");
  const std::string backbone = stage.copy(kModels + "/squeezenet1_1.pt", "models/squeezenet1_1.pt");
  stage.copy(kModels + "/squeezenet1_1.json", "models/squeezenet1_1.json");  // its metadata (ImageNet top-1)
  const std::string eurosat = stage.copy(*data_ / "eurosat", "eurosat");
  std::string text = read_file(spec("tiny.toml", "tiny", "out/tiny.h5"));
  const std::string model_path = kModels + "/squeezenet1_1.pt";
  text.replace(text.find(model_path), model_path.size(), backbone);
  text.replace(text.find((*data_ / "eurosat").string()), (*data_ / "eurosat").string().size(), eurosat);
  const std::string more = stage.copy(dir.write("staged.toml", text), "more.toml");
  // The study run by its owner first, from the same spec.
  ASSERT_EQ(run_spec(more, "--results " + quote((dir / "out/tiny.h5").string())).status, 0);
  // A folder nobody may write in (as the probe's was), holding a file nobody may not write.
  const fs::path shared = stage / "shared";
  fs::create_directories(shared);
  fs::permissions(shared, fs::perms::all);
  const std::string file = (shared / "tiny.h5").string();
  fs::copy_file(dir / "out/tiny.h5", file);
  fs::permissions(file, fs::perms::owner_read | fs::perms::group_read | fs::perms::others_read);
  const std::string before = sha256_file_hex(file);
  const Result r =
      xfer_cmd("run " + quote(more) + " --results " + quote(file) + " --no-progress --threads 1", "nobody", binary);
  EXPECT_NE(r.status, 0);
  EXPECT_TRUE(has(r.err, "read-only (permission denied)")) << r.err;
  EXPECT_FALSE(has(r.err, "cannot open as HDF5")) << r.err;
  const Result a = xfer_cmd("analyze " + quote(file) + " --no-figures", "nobody", binary);
  EXPECT_NE(a.status, 0);
  EXPECT_TRUE(has(a.err, "read-only (permission denied)") && has(a.err, "--no-write")) << a.err;
  EXPECT_EQ(xfer_cmd("analyze " + quote(file) + " --no-figures --no-write", "nobody", binary).status, 0);
  EXPECT_EQ(xfer_cmd("status " + quote(file), "nobody", binary).status, 0);
  EXPECT_EQ(sha256_file_hex(file), before);
}

// ---- W-4.2: a stale writer lock --------------------------------------------------------------------------------

TEST_F(StoreFaults, W42_StatusCallsADeadWritersLockStaleAndTheTakeoverClosesItsRunsRow) {
  const std::string tiny = spec("tiny.toml", "tiny", "out/tiny.h5");
  ASSERT_EQ(run_spec(tiny).status, 0);
  const std::string file = (dir / "out/tiny.h5").string();
  // What a kill -9 leaves: the lock of a pid that no longer runs on this host, and a /runs row saying "running".
  const int dead = spawn("true", (dir / "o").string(), (dir / "e").string());
  wait_for(dead);
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  dir.write("out/tiny.h5.lock", nlohmann::json{{"host", host}, {"pid", dead}, {"slurm_job_id", ""},
                                               {"started_utc", "2026-01-01T00:00:00Z"}}.dump());
  ASSERT_EQ(python("import h5py\nf = h5py.File('" + file + "', 'r+')\nr = f['runs'][0]\nr['end_reason'] = 'running'\n"
                   "f['runs'][0] = r\n").status, 0);
  const Result status = xfer_cmd("status " + quote(file));
  EXPECT_EQ(status.status, 0) << status.err;
  EXPECT_FALSE(has(status.out, "an xfer run holds the file now")) << status.out;
  EXPECT_TRUE(has(status.out, "stale")) << status.out;
  const Result json = xfer_cmd("status " + quote(file) + " --json");
  EXPECT_FALSE(nlohmann::json::parse(json.out)["writer_active"].get<bool>());
  const Result rerun = run_spec(tiny);
  EXPECT_EQ(rerun.status, 0) << rerun.err;
  EXPECT_TRUE(has(rerun.err, "taking over a stale writer lock")) << rerun.err;
  const auto reasons = check(file)["run_end_reasons"];
  ASSERT_EQ(reasons.size(), 2u);
  EXPECT_EQ(reasons[0], "killed (lock taken over)");
  EXPECT_EQ(reasons[1], "finished");
}

// ---- The upstream stage's files (../shared/reliability-probe-3.md BAD-6, BAD-7, BAD-8) ----------------------------

const std::string kFashion = "/usr/share/datasets/fashion-mnist";

// Pre-training squeezenet1_1 on Fashion-MNIST 0–4, fine-tuning on 5–9: 100 images each, 1 epoch at 32 px.
class UpstreamFaults : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(kFashion + "/train-images-idx3-ubyte.gz")) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  }
  std::string spec(const std::string& file, const std::string& upstream_epochs, const std::string& lrs) {
    std::string datasets;
    for (const auto& [name, classes] : {std::pair<const char*, const char*>{"fm04", "0,1,2,3,4"}, {"fm59", "5,6,7,8,9"}})
      datasets += std::string("[[dataset]]\nname = \"") + name + "\"\nkind = \"idx\"\nroot = \"" + kFashion +
                  "\"\nclasses = \"" + classes + "\"\ninput_size = 32\nlimit_train = 100\nlimit_test = 50\n\n";
    return dir.write(file, "[study]\nname = \"up\"\nresults = \"out/up.h5\"\nselection = \"holdout\"\n\n"
                           "[[model]]\nname = \"squeezenet1_1\"\nbackbone = \"" + kModels + "/squeezenet1_1.pt\"\n\n" +
                           datasets + "[[upstream]]\nname = \"fm\"\ndataset = \"fm04\"\nmodels = [\"squeezenet1_1\"]\n"
                           "epochs = [" + upstream_epochs + "]\nlrs = [1e-3]\nbatch_size = 32\n\n"
                           "[grid]\nepochs = 1\nbatch_size = 32\ninput_size = 32\nweight_decays = [1e-4]\n\n"
                           "[[grid.optimizer]]\nfamily = \"adamw\"\nlrs = [" + lrs + "]\n");
  }
  std::string run_command(const std::string& spec_path, const std::string& args = "") {
    return quote(xfer()) + " run " + quote(spec_path) + " --no-progress --threads 1 " + args;
  }
  // The /trials rows, as h5py reads them.
  // The /trials rows as h5py reads them.
  static nlohmann::json rows(const std::string& h5) { return h5_table(h5, "trials"); }
  static nlohmann::json of_stage(const nlohmann::json& all, const std::string& stage) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& r : all)
      if (r["stage"] == stage) out.push_back(r);
    return out;
  }
  static bool has(const std::string& text, const std::string& what) { return text.find(what) != std::string::npos; }
  TempDir dir{"upstream_faults"};
};

// BAD-7 (and the newcomer's run 2.10): a second results file of the same spec (--results) wrote its checkpoints and
// its exported backbones into the first file's folders (<spec results>.ckpt, .upstream), overwriting the backbone the
// first file's later trials then trained from. Every folder derived from a results file now follows the file used:
// two runs at once into two files, each with its own checkpoints, input cache and backbones, each downstream trial
// trained from its own file's export.
TEST_F(UpstreamFaults, BAD7_TwoRunsAtOnceIntoTwoResultsFilesNeverShareAFolder) {
  const std::string s = spec("up.toml", "1", "1e-3");
  const std::string a = (dir / "out/up.h5").string(), b = (dir / "alt/b.h5").string();
  const int pa = spawn(run_command(s, "--input-pipeline device"), (dir / "a.out").string(), (dir / "a.err").string());
  const int pb = spawn(run_command(s, "--input-pipeline device --results " + quote(b)), (dir / "b.out").string(),
                       (dir / "b.err").string());
  EXPECT_EQ(wait_for(pa), 0) << run("cat " + quote((dir / "a.err").string())).out;
  EXPECT_EQ(wait_for(pb), 0) << run("cat " + quote((dir / "b.err").string())).out;
  for (const std::string& file : {a, b}) {
    SCOPED_TRACE(file);
    EXPECT_TRUE(fs::is_directory(file + ".ckpt/input-cache")) << "its checkpoint folder is elsewhere";
    const auto all = rows(file);
    const auto up = of_stage(all, "upstream");
    ASSERT_EQ(up.size(), 1u) << all;
    ASSERT_EQ(up[0]["status"], "done") << all;
    const std::string pt = file + ".upstream/" + up[0]["key"].get<std::string>() + ".pt";
    ASSERT_TRUE(fs::exists(pt)) << "its backbone was exported elsewhere";
    EXPECT_EQ(sha256_file_hex(pt), up[0]["exported_sha256"]) << "another run's backbone is in its folder";
    for (const auto& r : of_stage(all, "downstream"))
      if (r["upstream"] != "") EXPECT_EQ(r["backbone_sha256"], up[0]["exported_sha256"]) << r;
  }
}

// BAD-6: the pre-trained backbone swapped (here for the random-init export) with its .json's SHA-256 edited to match:
// the new downstream trial trained from it. The ledger's exported_sha256 is what a downstream trial checks now: it
// fails, naming both hashes, and never trains from the swapped file.
TEST_F(UpstreamFaults, BAD6_ASwappedBackboneWithAnEditedJsonIsRefusedByTheLedgersHash) {
  ASSERT_EQ(run(run_command(spec("up.toml", "1", "1e-3"))).status, 0);
  const std::string file = (dir / "out/up.h5").string();
  const auto up = of_stage(rows(file), "upstream");
  ASSERT_EQ(up.size(), 1u);
  const std::string key = up[0]["key"].get<std::string>(), exported = up[0]["exported_sha256"].get<std::string>();
  const std::string pt = file + ".upstream/" + key + ".pt", json = file + ".upstream/" + key + ".json";
  fs::copy_file(kModels + "/squeezenet1_1.pt", pt, fs::copy_options::overwrite_existing);
  const std::string swapped = sha256_file_hex(pt);
  ASSERT_NE(swapped, exported);
  nlohmann::json meta;
  std::ifstream(json) >> meta;
  meta["sha256"] = swapped;
  std::ofstream(json, std::ios::trunc) << meta.dump(2);

  const Result r = run(run_command(spec("up2.toml", "1", "1e-3, 1e-4"), "--extend"));
  EXPECT_EQ(r.status, exit_status::input) << r.err;  // a fault of the trial's input: no attempt spent, exit 2
  int refused = 0;
  for (const auto& t : of_stage(rows(file), "downstream")) {
    if (t["upstream"] != key) continue;
    if (t["status"] == "done") EXPECT_NE(t["backbone_sha256"], swapped) << "trained from the swapped backbone: " << t;
    if (t["status"] == "failed") {
      ++refused;
      const std::string m = t["message"].get<std::string>();
      EXPECT_TRUE(has(m, swapped) && has(m, exported)) << m;
      EXPECT_TRUE(has(m, "changed or replaced")) << m;
    }
  }
  EXPECT_EQ(refused, 1);
}

// BAD-8: a value added to an upstream axis (epochs [1] → [1, 2]) renamed the pre-trained model (squeezenet1_1+fm →
// squeezenet1_1+fm-e1); its downstream trials ran again under the new name, and `analyze` counted the backbone twice.
// Now a pre-trained model keeps the name its trials were recorded under: one downstream trial per backbone, one point.
TEST_F(UpstreamFaults, BAD8_AValueAddedToAnUpstreamAxisRenamesNothingAndAnalyzeCountsEachBackboneOnce) {
  ASSERT_EQ(run(run_command(spec("up.toml", "1", "1e-3"))).status, 0);
  const std::string file = (dir / "out/up.h5").string();
  const std::string first = of_stage(rows(file), "upstream")[0]["key"].get<std::string>();
  const std::string s2 = spec("up2.toml", "1, 2", "1e-3");
  const Result dry = run(quote(xfer()) + " run " + quote(s2) + " --extend --dry-run --json");
  ASSERT_EQ(dry.status, 0) << dry.err;
  EXPECT_EQ(nlohmann::json::parse(dry.out)["would_run"].size(), 2u) << "the new upstream trial and its downstream one: "
                                                                    << dry.out;
  const Result r = run(run_command(s2, "--extend"));
  ASSERT_EQ(r.status, 0) << r.err;
  std::map<std::string, std::vector<std::string>> names;  // upstream key → its downstream trials' model names
  for (const auto& t : of_stage(rows(file), "downstream"))
    if (t["upstream"] != "") names[t["upstream"].get<std::string>()].push_back(t["model"].get<std::string>());
  ASSERT_EQ(names.size(), 2u);
  EXPECT_EQ(names[first], std::vector<std::string>{"squeezenet1_1+fm"}) << "renamed and fine-tuned again";
  const Result analyze = run(quote(xfer()) + " analyze " + quote(file) + " --no-write --json");
  ASSERT_EQ(analyze.status, 0) << analyze.err;
  std::set<std::string> seen;
  const auto j = nlohmann::json::parse(analyze.out);
  for (const auto& d : j["datasets"])
    for (const auto& p : d["points"]) EXPECT_TRUE(seen.insert(p["upstream"].get<std::string>()).second) << p;
  EXPECT_EQ(seen.size(), 2u);
}

// BAD-8, the analysis side: a file from before names were kept holds one backbone (upstream trial U) fine-tuned under
// two names. `analyze` plotted both: 6 points from 4 pre-training runs. Each upstream key is now one point, with a note.
TEST(UpstreamAnalysis, BAD8_OneBackboneUnderTwoNamesIsOnePoint) {
  TempDir dir("upstream_analysis");
  const std::string path = (dir / "doubled.h5").string(), spec = "[study]\nname = \"d\"\n";
  auto res = store::Results::open_or_create(path, "d", spec);
  std::vector<store::DatasetRow> datasets;
  for (const char* name : {"up", "down"}) {
    store::DatasetRow d;
    d.name = name, d.kind = "imagefolder", d.metric = "accuracy", d.validation = "holdout";
    d.n_train = 40, d.n_val = 8, d.n_test = 20, d.classes = 2;
    datasets.push_back(d);
  }
  res.write_study(spec, {{"arch", "w", "", "", 60, 1, 8}, {"arch+up", "upstream:u", "", "", 0, 1, 8},
                         {"arch+up-lr0.001", "upstream:u", "", "", 0, 1, 8}, {"arch+up2", "upstream:v", "", "", 0, 1, 8}},
                  datasets);
  int n = 0;
  auto done = [&](const std::string& key, const std::string& model, const std::string& dataset,
                  const std::string& stage, const std::string& upstream, double test) {
    store::TrialRow t;
    t.key = key, t.model = model, t.dataset = dataset, t.kind = "imagefolder", t.metric = "accuracy";
    t.optimizer = "adamw", t.wd_mode = "over_lr", t.augmentation = "none", t.schedule = "cosine";
    t.precision = "fp32", t.stage = stage, t.upstream = upstream, t.epochs = 1, t.order = n++;
    t.val_metric = t.test_metric = NAN;
    t.status = "pending";
    res.add_trials({t});
    t.status = "running", t.attempts = 1;
    res.record_started(t);
    store::CurveRow c;
    c.key = key, c.attempt = 1, c.epoch = 0, c.lr = 1e-3, c.train_loss = 1, c.val_metric = 0.5, c.test_metric = test;
    t.epochs_done = 1;
    res.record_epoch(t, c);
    t.status = "done", t.best_epoch = 0, t.val_metric = 0.5, t.test_metric = test;
    res.record_finished(t, {c}, {}, {});
  };
  done("00000000000000a1", "arch", "up", "upstream", "", 0.40);
  done("00000000000000a2", "arch", "up", "upstream", "", 0.55);
  done("00000000000000b1", "arch+up", "down", "downstream", "00000000000000a1", 0.30);
  done("00000000000000b2", "arch+up-lr0.001", "down", "downstream", "00000000000000a1", 0.31);
  done("00000000000000b3", "arch+up2", "down", "downstream", "00000000000000a2", 0.35);
  analysis::Options o;
  o.resamples = 100;
  o.point_resamples = 0;
  const auto study = analysis::from_results(path, o);
  const auto it = std::find_if(study.datasets.begin(), study.datasets.end(),
                               [](const analysis::DatasetResult& d) { return d.name == "down"; });
  ASSERT_NE(it, study.datasets.end());
  std::multiset<std::string> keys;
  for (const auto& p : it->points) keys.insert(p.upstream_key);
  EXPECT_EQ(keys, (std::multiset<std::string>{"00000000000000a1", "00000000000000a2"}));
  std::string notes;
  for (const auto& note : it->notes) notes += note + "\n";
  EXPECT_TRUE(has_text(notes, "the same backbone (upstream trial 00000000000000a1)")) << notes;
}

}  // namespace
}  // namespace xfer::test
