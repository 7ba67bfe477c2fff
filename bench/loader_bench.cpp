// Benchmark: decode + RandomResizedCrop + flip + normalise + batch of 256-px JPEGs, xfer's loader against
// torchvision's DataLoader doing the same work with the same number of workers, in one run.
//   build/bench/loader_bench [--images 512] [--batch 64] [--epochs 3] [--size 224]
// Prints images/s for 1 and 2 threads/workers, the ratios, and peak memory (xfer: the loader's bound and the
// process's peak RSS; torchvision: main process + workers).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "jpeg_workload.hpp"

namespace {
double peak_rss_mib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::atof(line.c_str() + 6) / 1024.0;
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  int images = 512, batch = 64, epochs = 3, size = 224;
  xfer::bench::integer_flags(argc, argv, {{"--images", &images}, {"--batch", &batch}, {"--epochs", &epochs},
                                          {"--size", &size}});
  xfer::bench::JpegWorkload w;
  if (!xfer::bench::make_jpeg_workload("xfer_loader_bench", "", images, w)) return 1;
  const std::string& dir = w.dir;
  const std::string src = XFER_SOURCE_DIR;
  const auto& d = w.dataset;
  const auto& all = w.all;

  std::printf("%d JPEGs 256x256, batch %d, RandomResizedCrop(%d, scale 0.65-1) + h-flip + normalise, %d epochs\n",
              images, batch, size, epochs);
  std::printf("%-8s %14s %14s %8s %22s %22s\n", "workers", "xfer img/s", "torchvision", "ratio", "xfer peak MiB",
              "torchvision peak MiB");
  for (int threads : {1, 2}) {
    xfer::data::Loader loader(d, all, xfer::bench::training_transform(size), xfer::bench::training_loader(batch, threads));
    loader.start_epoch(0);  // warm-up, as the torchvision side
    while (loader.next()) {
    }
    const auto t0 = std::chrono::steady_clock::now();
    int64_t n = 0;
    for (int e = 1; e <= epochs; ++e) {
      loader.start_epoch(e);
      while (auto b = loader.next()) n += b->n;
    }
    const double xfer_ips = n / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const std::string cmd = "OMP_NUM_THREADS=1 /usr/bin/python3 " + src + "/bench/torchvision_loader.py " + dir + " " +
                            std::to_string(threads) + " " + std::to_string(batch) + " " + std::to_string(epochs) + " " +
                            std::to_string(size);
    FILE* p = popen(cmd.c_str(), "r");
    double tv_ips = 0, tv_rss = 0;
    if (!p || std::fscanf(p, "%lf %lf", &tv_ips, &tv_rss) != 2) {
      std::fprintf(stderr, "loader_bench: %s failed\n", cmd.c_str());
      return 1;
    }
    pclose(p);
    char mem[64];
    std::snprintf(mem, sizeof mem, "%.1f (bound %.1f)", peak_rss_mib(), loader.buffer_bytes() / 1048576.0);
    std::printf("%-8d %14.1f %14.1f %7.2fx %22s %22.1f\n", threads, xfer_ips, tv_ips, xfer_ips / tv_ips, mem, tv_rss);
  }
  std::filesystem::remove_all(dir);
  return 0;
}
