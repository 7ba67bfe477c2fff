// Benchmark: the 10,000-resample bootstrap over models of every statistic (Pearson, Spearman, Kendall, OLS slope,
// intercept, R², the logit slope and a 49-point fit band) for 19 models × 6 datasets, xfer's Kokkos kernel against
// scipy.stats.bootstrap doing the same (bench/scipy_bootstrap.py), in one run.
//   OMP_NUM_THREADS=1 taskset -c 0 build/bench/stats_bench [--resamples 10000]
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>

#include "xfer/analysis/stats.hpp"
#include "xfer/metrics/metrics.hpp"

int main(int argc, char** argv) {
  int B = 10000;
  if (argc > 2 && std::string(argv[1]) == "--resamples") B = std::atoi(argv[2]);
  xfer::metrics::Runtime kokkos;
  // The paper's 19 top-1 values; six datasets with slopes from flat to steep and noise.
  const std::vector<double> top1 = {56.5, 58.2, 60.6, 67.7, 67.7, 69.4, 71.6, 72.2, 73.4, 74.4,
                                    76.1, 77.6, 77.7, 78.3, 79.9, 80.5, 82.1, 82.8, 83.4};
  std::mt19937_64 rng(5);
  std::normal_distribution<double> noise(0, 1.5);
  const double slopes[6] = {0.05, 0.3, 0.6, 0.02, 0.2, 0.01};
  std::vector<std::vector<double>> ys(6);
  const std::string path = std::string(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp") + "/xfer_stats_bench.txt";
  std::ofstream data(path);
  for (int d = 0; d < 6; ++d)
    for (double x : top1) {
      ys[d].push_back(50 + 40 * slopes[d] + slopes[d] * (x - 70) + noise(rng));
      data << "d" << d << " " << x << " " << ys[d].back() << "\n";
    }
  data.close();
  xfer::analysis::BootstrapOptions o;
  o.resamples = B;
  o.logit = true;
  for (int k = 0; k <= 48; ++k) o.band_x.push_back(55 + 30 * k / 48.0);
  double best = 1e300;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int d = 0; d < 6; ++d) {
      o.seed = static_cast<uint64_t>(d);
      volatile double sink = xfer::analysis::bootstrap(top1, ys[d], o).slope.lo;
      (void)sink;
    }
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  const std::string cmd = "OMP_NUM_THREADS=1 /usr/bin/python3 " + std::string(XFER_SOURCE_DIR) +
                          "/bench/scipy_bootstrap.py " + path + " " + std::to_string(B);
  FILE* p = popen(cmd.c_str(), "r");
  double scipy_s = 0;
  if (!p || std::fscanf(p, "%lf", &scipy_s) != 1) return 1;
  pclose(p);
  std::printf("bootstrap over models, %d resamples, 19 models x 6 datasets, Kokkos %s\n", B,
              xfer::metrics::Runtime::backend().c_str());
  std::printf("xfer (7 statistics + 49-point band): %.4f s\nscipy.stats.bootstrap (6 statistics): %.4f s\nratio: %.0fx\n",
              best, scipy_s, scipy_s / best);
  std::remove(path.c_str());
  return 0;
}
