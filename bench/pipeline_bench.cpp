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
#include "jpeg_workload.hpp"

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
  xfer::bench::integer_flags(argc, argv, {{"--images", &images}, {"--batch", &batch}, {"--epochs", &epochs},
                                          {"--size", &size}, {"--threads", &threads}});
  torch::set_num_threads(threads);
  xfer::bench::JpegWorkload w;
  if (!xfer::bench::make_jpeg_workload("xfer_pipeline_bench", "data", images, w)) return 1;
  const std::string& dir = w.dir;
  const auto& d = w.dataset;
  const auto& all = w.all;
  const auto ts = xfer::bench::training_transform(size);
  const auto lo = xfer::bench::training_loader(batch, threads);

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
