// Benchmark: `xfer status` and the resume scan (`xfer run --dry-run`: read the trials table and decide each
// trial's fate) on a results file with 10^5 trial records, timed as whole commands.
//   build/bench/store_bench [--trials 100000]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "xfer/store/store.hpp"

namespace fs = std::filesystem;

int main(int argc, char** argv) {
  int n_models = 250;  // × 2 datasets × 4 lrs × 5 wds × 10 seeds = 10^5 trials
  if (argc > 2 && std::string(argv[1]) == "--trials") n_models = std::max(1, std::atoi(argv[2]) / 400);
  const fs::path dir = fs::path(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp") / "xfer_store_bench";
  fs::remove_all(dir);
  fs::create_directories(dir / "data/a/c0");
  fs::create_directories(dir / "data/a/c1");
  std::ofstream(dir / "data/a/c0/x.png") << "x";
  std::ofstream(dir / "data/a/c1/y.png") << "y";
  std::ofstream(dir / "m.pt") << "x";
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
    xfer::store::TrialRow r;
    r.key = key;
    r.model = model;
    r.dataset = dataset;
    r.status = kStatus[i % 8];
    r.attempts = r.status == std::string("pending") ? 0 : 1;
    r.seconds = 100 + i % 50;
    r.cost_gflop = 1e6 + i;
    r.val_metric = r.test_metric = 0.5;
    r.order = i;
    rows.push_back(r);
  }
  const auto t0 = std::chrono::steady_clock::now();
  results.add_trials(rows);
  const double write_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  auto timed = [&](const std::string& c) {
    double best = 1e300;
    for (int r = 0; r < 3; ++r) {
      const auto a = std::chrono::steady_clock::now();
      if (std::system((c + " > /dev/null").c_str()) != 0) return -1.0;
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count());
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
  fs::remove_all(dir);
  return status_s < 0 || scan_s < 0;
}
