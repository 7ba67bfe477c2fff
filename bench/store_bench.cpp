// Benchmark of the results store, in three parts.
//  1. Recording: a sweep's events for simulated 30-epoch trials with real-size predictions (CCT-20: 3,484 val and
//     15,827 test images, 15 classes — spec/catalog.cpp): HDF5 sessions per trial and the time per recorded trial
//     from the first to the last, which must stay flat (no event reads a whole table).
//  2. Reruns: `xfer run` of a finished study five more times (study, samples, index-time problems, provenance, a
//     /runs row, the ledger): the file's size after them against its size after the first.
//  3. `xfer status` and the resume scan (`xfer run --dry-run`) on a results file with 10^5 trial records, timed as
//     whole commands.
//   build/bench/store_bench [--recorded 10000] [--epochs 30] [--trials 100000] [--skip-status]
#include <chrono>
#include <cstdio>
#include <ctime>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "xfer/store/store.hpp"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int kClasses = 15, kVal = 3484, kTest = 15827, kTrain = 13553;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
// The process's CPU seconds: on a shared machine, what the store costs regardless of who else runs.
double cpu_seconds() { return static_cast<double>(std::clock()) / CLOCKS_PER_SEC; }

std::string key_of(int i) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016x", 0x5eed0000 + i);
  return buf;
}

// A row as the sweep's fresh_row makes it, with a canonical text of the usual length.
xfer::store::TrialRow fresh_row(int i, int epochs) {
  xfer::store::TrialRow r;
  r.key = key_of(i);
  r.model = "model_" + std::to_string(i % 19);
  r.dataset = "cct20";
  r.kind = "cct20";
  r.metric = "accuracy";
  r.optimizer = "adamw";
  r.wd_mode = "over_lr";
  r.augmentation = "none";
  r.schedule = "cosine";
  r.precision = "fp32";
  r.weights = "timm/model_" + std::to_string(i % 19) + ".in1k";
  r.lr = 1e-3;
  r.weight_decay = 1e-4;
  r.seed = i;
  r.epochs = epochs;
  r.batch_size = 64;
  r.input_size = 224;
  r.mean = {0.485, 0.456, 0.406};
  r.std = {0.229, 0.224, 0.225};
  r.flips = "h";
  r.validation = "fixed";
  r.canonical = "model=" + r.model + "\nweights=" + r.weights + "\ninput_size=224\ncrop_pct=0.875\n";
  while (r.canonical.size() < 700) r.canonical += "setting_" + std::to_string(r.canonical.size()) + "=1\n";
  r.status = "pending";
  r.val_metric = r.test_metric = NAN;
  r.order = i;
  return r;
}

xfer::store::PredictionSet predictions(const std::string& key, const std::string& split, int n, int64_t first,
                                       std::mt19937& gen) {
  xfer::store::PredictionSet p{key, split, "cct20", kClasses, {}, {}};
  p.samples.resize(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) p.samples[static_cast<size_t>(i)] = first + i;
  std::uniform_real_distribution<float> u(0, 1);
  p.scores.resize(static_cast<size_t>(n) * kClasses);
  for (int i = 0; i < n; ++i) {
    float sum = 0;
    for (int c = 0; c < kClasses; ++c) sum += p.scores[static_cast<size_t>(i * kClasses + c)] = u(gen);
    for (int c = 0; c < kClasses; ++c) p.scores[static_cast<size_t>(i * kClasses + c)] /= sum;
  }
  return p;
}

// What `xfer run` writes on a study whose trials are all finished (sweep.cpp: write_study, begin_run/end_run).
void rerun(const std::string& path, const std::vector<xfer::store::TrialRow>& rows,
           const std::vector<xfer::store::SampleRow>& samples) {
  auto res = xfer::store::Results::open_or_create(path, "bench", "[study]\nname = \"bench\"\n");
  (void)res.trials();  // the ledger
  res.add_trials(rows);
  std::vector<xfer::store::ModelRow> models;
  for (int m = 0; m < 19; ++m) models.push_back({"model_" + std::to_string(m), "w", "/b/m.pt", "", 70, 4, 768});
  xfer::store::DatasetRow d;
  d.name = d.kind = "cct20";
  d.metric = "accuracy";
  d.validation = "fixed";
  d.n_train = kTrain, d.n_val = kVal, d.n_test = kTest, d.classes = kClasses;
  res.write_study("[study]\nname = \"bench\"\n", models, {d});
  res.write_samples("cct20", samples);
  res.add_index_problems({{"cct20", "bad", "/d/bad.jpg", "corrupt JPEG"}});
  res.write_provenance({{"xfer_version", "bench"}, {"updated_utc", xfer::store::iso_utc(xfer::store::now_unix())}});
  xfer::store::RunRow run{"host", "", "0123456789abcdef0123456789abcdef01234567", "running", xfer::store::now_unix(),
                          0, 1, 0};
  const int64_t row = res.begin_run(run);
  run.end_reason = "finished";
  run.finished_at = xfer::store::now_unix();
  res.end_run(row, run);
}

int recording(const fs::path& dir, int n, int epochs) {
  const std::string path = (dir / "recorded.h5").string();
  std::vector<xfer::store::SampleRow> samples;
  for (int i = 0; i < kTrain + kVal + kTest; ++i)
    samples.push_back({i, "eccv_18_all_images_sm/" + std::to_string(100000 + i) + ".jpg",
                       i < kTrain ? "train" : i < kTrain + kVal ? "val" : "test", std::to_string(i % kClasses),
                       std::to_string(i % 70), i % kClasses});
  std::vector<xfer::store::TrialRow> rows;
  for (int i = 0; i < n; ++i) rows.push_back(fresh_row(i, epochs));
  rerun(path, rows, samples);  // the first run's set-up: the ledger, the study, the samples
  auto res = xfer::store::Results::open_or_create(path, "bench", "");
  (void)res.trials();
  std::mt19937 gen(7);
  // Real-size predictions, drawn once (drawing them is not the store's cost).
  const auto val = predictions("", "val", kVal, kTrain, gen), test = predictions("", "test", kTest, kTrain + kVal, gen);
  std::printf("recording %d trials of %d epochs, predictions of %d val + %d test samples × %d classes\n", n, epochs,
              kVal, kTest, kClasses);
  std::printf("%-22s %14s %18s %18s %12s\n", "trials", "ms per trial", "CPU ms per trial", "sessions per trial",
              "file (GB)");
  const int window = std::max(1, std::min(100, n / 10));
  double window_s = 0, window_cpu = 0;
  int64_t window_sessions = 0, max_sessions = 0;
  for (int i = 0; i < n; ++i) {
    auto r = rows[static_cast<size_t>(i)];
    const int64_t before = res.sessions();
    const auto t0 = Clock::now();
    const double c0 = cpu_seconds();
    r.status = "running";
    r.attempts = 1;
    r.started_at = xfer::store::now_unix();
    res.record_started(r);  // the coordinator assigns it
    r.host = "node" + std::to_string(i % 8);
    res.record_started(r);  // the worker reports its host
    std::vector<xfer::store::CurveRow> curves;
    for (int e = 0; e < epochs; ++e) {
      xfer::store::CurveRow c;
      c.key = r.key;
      c.attempt = 1;
      c.epoch = e;
      c.lr = 1e-3;
      c.train_loss = 1.0 / (e + 1);
      c.val_metric = c.test_metric = 0.5 + e * 0.01;
      c.train_seconds = 30;
      curves.push_back(c);
      r.epochs_done = e + 1;
      res.record_epoch(r, c);
    }
    r.status = "done";
    r.best_epoch = epochs - 1;
    r.val_metric = r.test_metric = 0.8;
    r.finished_at = xfer::store::now_unix();
    auto v = val, t = test;
    v.key = t.key = r.key;
    res.record_finished(r, curves, {v, t}, {});
    window_s += seconds_since(t0);
    window_cpu += cpu_seconds() - c0;
    const int64_t used = res.sessions() - before;
    window_sessions += used;
    max_sessions = std::max(max_sessions, used);
    const int step = std::max(window, n / 10);  // report the first window and the one ending each tenth
    if ((i + 1) % window == 0 && (i + 1 == window || (i + 1) % step == 0)) {
      std::printf("%-22s %14.2f %18.2f %18.1f %12.2f\n",
                  (std::to_string(i + 2 - window) + "–" + std::to_string(i + 1)).c_str(), 1e3 * window_s / window,
                  1e3 * window_cpu / window, static_cast<double>(window_sessions) / window, fs::file_size(path) / 1e9);
    }
    if ((i + 1) % window == 0) window_s = 0, window_cpu = 0, window_sessions = 0;
  }
  std::printf("most sessions of any trial: %lld (target ≤ epochs + 3 = %d)\n", static_cast<long long>(max_sessions),
              epochs + 3);
  // Reruns of the finished study.
  const auto first = fs::file_size(path);
  for (int k = 0; k < 5; ++k) rerun(path, rows, samples);
  const auto after = fs::file_size(path);
  std::printf("file after the study: %llu bytes; after five reruns: %llu bytes (%+.4f %%)\n",
              static_cast<unsigned long long>(first), static_cast<unsigned long long>(after),
              100.0 * (static_cast<double>(after) - static_cast<double>(first)) / static_cast<double>(first));
  fs::remove(path);
  return max_sessions <= epochs + 3 && after <= first * 1.01 ? 0 : 1;
}

int status_part(const fs::path& dir, int n_models) {
  fs::create_directories(dir / "data/a/c0");
  fs::create_directories(dir / "data/a/c1");
  // Five per class, so that the held-out test split (heldout_fraction 0.2) is not empty; never decoded here.
  for (int i = 0; i < 5; ++i) {
    std::ofstream(dir / ("data/a/c0/x" + std::to_string(i) + ".png")) << "x";
    std::ofstream(dir / ("data/a/c1/y" + std::to_string(i) + ".png")) << "y";
  }
  std::ofstream(dir / "m.pt") << std::string("PK\x03\x04", 4) << " stand-in: the spec reader checks the zip magic, the bench never loads it";
  std::string spec = "[study]\nname = \"big\"\nresults = \"big.h5\"\n";
  for (int m = 0; m < n_models; ++m)
    spec += "[[model]]\nname = \"m" + std::to_string(m) + "\"\nbackbone = \"m.pt\"\nimagenet_top1 = 70\ngmacs = 1\n";
  for (const char* d : {"d1", "d2"})
    spec += std::string("[[dataset]]\nname = \"") + d + "\"\nkind = \"imagefolder\"\nroot = \"data/a\"\n";
  spec += "[grid]\nweight_decays = [1e-3, 1e-4, 1e-5, 1e-6, 0]\nseeds = [0,1,2,3,4,5,6,7,8,9]\n"
          "[[grid.optimizer]]\nfamily = \"adamw\"\nlrs = [1e-2, 1e-3, 1e-4, 1e-5]\n";
  std::ofstream(dir / "spec.toml") << spec;
  // The results file: keys from `xfer plan --list --json`, statuses spread as a sweep in progress would have them.
  const std::string xfer = XFER_BINARY;
  const std::string keys = (dir / "keys.txt").string();
  const std::string cmd = xfer + " plan " + (dir / "spec.toml").string() +
                          " --json --list | /usr/bin/python3 -c \"import json,sys; [print(t['key'], t['model'], "
                          "t['dataset']) for t in json.load(sys.stdin)['trials']]\" > " + keys;
  if (std::system(cmd.c_str()) != 0) return 1;
  auto results = xfer::store::Results::open_or_create((dir / "big.h5").string(), "big", spec);
  std::vector<xfer::store::TrialRow> rows;
  std::ifstream in(keys);
  std::string key, model, dataset;
  static const char* kStatus[] = {"done", "done", "done", "running", "pending", "failed", "diverged", "pending"};
  for (int i = 0; in >> key >> model >> dataset; ++i) {
    xfer::store::TrialRow r = fresh_row(i, 30);
    r.key = key;
    r.model = model;
    r.dataset = dataset;
    r.status = kStatus[i % 8];
    r.attempts = r.status == std::string("pending") ? 0 : 1;
    r.seconds = 100 + i % 50;
    r.cost_gflop = 1e6 + i;
    r.val_metric = r.test_metric = 0.5;
    rows.push_back(r);
  }
  const auto t0 = Clock::now();
  results.add_trials(rows);
  const double write_s = seconds_since(t0);
  auto timed = [&](const std::string& c) {
    double best = 1e300;
    for (int r = 0; r < 3; ++r) {
      const auto a = Clock::now();
      if (std::system((c + " > /dev/null").c_str()) != 0) return -1.0;
      best = std::min(best, seconds_since(a));
    }
    return best;
  };
  const double status_s = timed(xfer + " status " + (dir / "big.h5").string());
  const double status_json_s = timed(xfer + " status " + (dir / "big.h5").string() + " --json");
  const double scan_s = timed(xfer + " run " + (dir / "spec.toml").string() + " --dry-run --json");
  std::printf("%zu trial records (%.1f MB file, written in %.2f s)\n", rows.size(),
              fs::file_size(dir / "big.h5") / 1048576.0, write_s);
  std::printf("xfer status:            %.3f s\nxfer status --json:     %.3f s\n", status_s, status_json_s);
  std::printf("resume scan (--dry-run): %.3f s  (spec parse + grid expansion + reading the ledger + decisions)\n", scan_s);
  return status_s < 0 || scan_s < 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress as it comes, also into a file
  int n_models = 250;  // × 2 datasets × 4 lrs × 5 wds × 10 seeds = 10^5 trials
  int recorded = 10000, epochs = 30;
  bool status = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--trials" && i + 1 < argc) n_models = std::max(1, std::atoi(argv[++i]) / 400);
    else if (a == "--recorded" && i + 1 < argc) recorded = std::max(0, std::atoi(argv[++i]));
    else if (a == "--epochs" && i + 1 < argc) epochs = std::max(1, std::atoi(argv[++i]));
    else if (a == "--skip-status") status = false;
  }
  const fs::path dir = fs::path(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp") / "xfer_store_bench";
  fs::remove_all(dir);
  fs::create_directories(dir);
  int rc = recorded > 0 ? recording(dir, recorded, epochs) : 0;
  if (status) rc |= status_part(dir, n_models);
  if (!std::getenv("XFER_BENCH_KEEP")) fs::remove_all(dir);
  return rc;
}
