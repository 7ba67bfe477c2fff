// Benchmark: macro-F1 on 10^6 samples × 28 labels and ROC-AUC on 10^6 samples, xfer (Kokkos) against scikit-learn
// on the same data in the same run. Writes the data as raw binary, times xfer (best of R), runs
// bench/sklearn_metrics.py on the files (best of R), prints both and the ratio.
//   build/bench/metrics_bench [--n 1000000] [--labels 28] [--repeats 5]   (pin with taskset -c 0 for one core)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>

#include "xfer/metrics/metrics.hpp"

namespace {
template <class F>
double best_of(int repeats, F f) {
  double best = 1e300;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}
template <class T>
void dump(const std::string& path, const std::vector<T>& v) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}
}  // namespace

int main(int argc, char** argv) {
  int64_t n = 1000000;
  int k = 28, repeats = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--n") n = std::atoll(argv[i + 1]);
    else if (a == "--labels") k = std::atoi(argv[i + 1]);
    else if (a == "--repeats") repeats = std::atoi(argv[i + 1]);
  }
  xfer::metrics::Runtime kokkos;
  std::mt19937_64 rng(12345);
  std::uniform_real_distribution<double> u(0, 1);
  xfer::metrics::Labels ml;
  ml.n = n, ml.k = k, ml.multilabel = true;
  ml.multi.resize(n * k);
  xfer::metrics::Scores ms;
  ms.n = n, ms.k = k;
  ms.values.resize(n * k);
  for (int64_t i = 0; i < n * k; ++i) {
    ml.multi[i] = u(rng) < 0.1;
    ms.values[i] = std::min(1.0, std::max(0.0, (ml.multi[i] ? 0.3 : 0.0) + 0.7 * u(rng)));
  }
  xfer::metrics::Labels bl;
  bl.n = n, bl.k = 2;
  bl.single.resize(n);
  xfer::metrics::Scores bs;
  bs.n = n, bs.k = 1;
  bs.values.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    bl.single[i] = u(rng) < 0.3;
    bs.values[i] = std::round((u(rng) + 0.3 * bl.single[i]) * 1e4) / 1e4;  // realistic ties
  }
  const std::string dir = std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp";
  const std::string base = dir + "/xfer_metrics_bench";
  dump(base + ".ml_y.u8", ml.multi);
  dump(base + ".ml_s.f64", ms.values);
  dump(base + ".b_y.i32", bl.single);
  dump(base + ".b_s.f64", bs.values);

  double f1 = 0, auc = 0;
  const double t_f1 = best_of(repeats, [&] { f1 = xfer::metrics::evaluate(xfer::metrics::Metric::macro_f1, ml, ms); });
  const double t_auc = best_of(repeats, [&] { auc = xfer::metrics::evaluate(xfer::metrics::Metric::roc_auc, bl, bs); });

  const std::string script = std::string(XFER_SOURCE_DIR) + "/bench/sklearn_metrics.py";
  const std::string cmd = "/usr/bin/python3 " + script + " " + base + " " + std::to_string(n) + " " +
                          std::to_string(k) + " " + std::to_string(repeats);
  FILE* p = popen(cmd.c_str(), "r");
  double sk_f1 = 0, sk_f1_v = 0, sk_auc = 0, sk_auc_v = 0;
  if (!p || std::fscanf(p, "%lf %lf %lf %lf", &sk_f1, &sk_f1_v, &sk_auc, &sk_auc_v) != 4) {
    std::fprintf(stderr, "metrics_bench: %s failed\n", cmd.c_str());
    return 1;
  }
  pclose(p);
  std::printf("backend: Kokkos %s\n", xfer::metrics::Runtime::backend().c_str());
  std::printf("%-34s %12s %12s %8s %s\n", "benchmark", "xfer (s)", "sklearn (s)", "ratio", "values (xfer / sklearn)");
  std::printf("%-34s %12.4f %12.4f %7.1fx %.15g / %.15g\n",
              ("macro-F1 " + std::to_string(n) + " x " + std::to_string(k)).c_str(), t_f1, sk_f1, sk_f1 / t_f1, f1, sk_f1_v);
  std::printf("%-34s %12.4f %12.4f %7.1fx %.15g / %.15g\n", ("ROC-AUC " + std::to_string(n)).c_str(), t_auc, sk_auc,
              sk_auc / t_auc, auc, sk_auc_v);
  for (const char* ext : {".ml_y.u8", ".ml_s.f64", ".b_y.i32", ".b_s.f64"}) std::remove((base + ext).c_str());
  const bool agree = std::abs(f1 - sk_f1_v) < 1e-12 && std::abs(auc - sk_auc_v) < 1e-12;
  if (!agree) std::printf("VALUES DISAGREE\n");
  return agree ? 0 : 1;
}
