// Benchmark: the device input pipeline (train/device_input, run here on the CPU as the "device") against the host
// loader (data::Loader) on the same training stream — 256-px JPEGs, RandomResizedCrop(S, scale 0.65–1) + h-flip +
// normalise, shuffled batches — in one run.
//   build/bench/pipeline_bench [--images 512] [--batch 64] [--epochs 3] [--size 224] [--threads 2]
// The device pipeline decodes every image once (its cache: the build time and file size are printed), then each epoch
// gathers rows of bytes and transforms whole batches with tensor operations; the loader decodes and resamples every
// image every epoch on its threads. images/s over the epochs after the first (the cache already built), and the
// first epoch including the build. On a GPU the device side's transforms run as kernels while the CPU is free; here
// they share the CPU with nothing else — this measures the work each pipeline asks of the host.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <torch/torch.h>

#include "device_input.hpp"
#include "xfer/data/dataset.hpp"
#include "xfer/data/loader.hpp"

namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Images per second over `epochs` epochs of `source`, starting at epoch `first`.
double rate(xfer::data::BatchSource& source, int first, int epochs) {
  int64_t n = 0;
  const auto t0 = Clock::now();
  for (int e = first; e < first + epochs; ++e) {
    source.start_epoch(e);
    while (auto b = source.next()) {
      n += b->n;
      if (b->device_images) (void)xfer::train::DeviceInput::images(*b).sum().item<float>();  // the work done
    }
  }
  return static_cast<double>(n) / since(t0);
}
}  // namespace

int main(int argc, char** argv) {
  int images = 512, batch = 64, epochs = 3, size = 224, threads = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--images") images = std::atoi(argv[i + 1]);
    else if (a == "--batch") batch = std::atoi(argv[i + 1]);
    else if (a == "--epochs") epochs = std::atoi(argv[i + 1]);
    else if (a == "--size") size = std::atoi(argv[i + 1]);
    else if (a == "--threads") threads = std::atoi(argv[i + 1]);
  }
  torch::set_num_threads(threads);
  const std::string dir = std::string(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp") + "/xfer_pipeline_bench";
  std::filesystem::remove_all(dir);
  if (std::system(("/usr/bin/python3 " + std::string(XFER_SOURCE_DIR) + "/bench/make_jpegs.py " + dir + "/data " +
                   std::to_string(images)).c_str()) != 0)
    return 1;
  xfer::data::SplitSettings ss;
  const auto d = xfer::data::open("bench", "imagefolder", dir + "/data", ss);
  std::vector<int64_t> all;  // every image, whatever split it is in
  for (size_t i = 0; i < d.samples.size(); ++i) all.push_back(static_cast<int64_t>(i));
  xfer::data::TransformSettings ts;
  ts.size = size;
  ts.train = true;
  ts.flips = xfer::Flips::h;
  ts.seed = 1;
  xfer::data::LoaderOptions lo;
  lo.batch_size = batch;
  lo.shuffle = true;
  lo.threads = threads;
  lo.prefetch = 2 * threads;

  xfer::data::Loader host(d, all, ts, lo);
  const double host_first = rate(host, 0, 1), host_rate = rate(host, 1, epochs);
  const auto t0 = Clock::now();
  xfer::train::DeviceInput dev(d, all, ts, lo, dir + "/cache", torch::kCPU, threads);
  const double build = since(t0);
  const double dev_first = static_cast<double>(images) / (build + static_cast<double>(images) / rate(dev, 0, 1));
  const double dev_rate = rate(dev, 1, epochs);
  const double mib = static_cast<double>(std::filesystem::file_size(dev.cache().path())) / 1048576.0;
  std::printf("%d JPEGs 256x256, batch %d, RandomResizedCrop(%d, scale 0.65-1) + h-flip + normalise, %d threads, "
              "epochs 2-%d timed\n", images, batch, size, threads, epochs + 1);
  std::printf("| pipeline | first epoch img/s | later epochs img/s | ratio (later) |\n|---|---|---|---|\n");
  std::printf("| host loader (decode + resample per epoch) | %.0f | %.0f | 1.00× |\n", host_first, host_rate);
  std::printf("| device pipeline on the CPU (cache %.0f MiB built in %.2f s) | %.0f | %.0f | %.2f× |\n", mib, build,
              dev_first, dev_rate, dev_rate / host_rate);
  std::filesystem::remove_all(dir);
  return 0;
}
