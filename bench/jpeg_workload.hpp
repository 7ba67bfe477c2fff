// The loader benchmarks' workload (loader_bench, pipeline_bench), defined once so both measure the same thing: a
// folder of 256-px JPEGs (bench/make_jpegs.py), every image of it, and the training stream over it —
// RandomResizedCrop(size, scale 0.65-1) + h-flip + normalise, shuffled batches, `threads` decoding threads.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "xfer/data/dataset.hpp"
#include "xfer/data/loader.hpp"

namespace xfer::bench {

// "--name value" pairs into the integers named (an unknown flag is ignored, as the benchmarks always did).
inline void integer_flags(int argc, char** argv, const std::map<std::string, int*>& flags) {
  for (int i = 1; i + 1 < argc; i += 2)
    if (auto it = flags.find(argv[i]); it != flags.end()) *it->second = std::atoi(argv[i + 1]);
}

struct JpegWorkload {
  std::string dir;                 // $TMPDIR/<name>, removed and made afresh
  data::Dataset dataset;           // an imagefolder of `images` JPEGs
  std::vector<int64_t> all;        // every image, whatever split it is in
};

// Makes the images under $TMPDIR/<name>/<subdir> (make_jpegs.py) and opens them; false when the generator fails.
inline bool make_jpeg_workload(const std::string& name, const std::string& subdir, int images, JpegWorkload& w) {
  w.dir = std::string(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp") + "/" + name;
  std::filesystem::remove_all(w.dir);
  const std::string root = subdir.empty() ? w.dir : w.dir + "/" + subdir;
  if (std::system(("/usr/bin/python3 " + std::string(XFER_SOURCE_DIR) + "/bench/make_jpegs.py " + root + " " +
                   std::to_string(images)).c_str()) != 0)
    return false;
  data::SplitSettings ss;
  w.dataset = data::open("bench", "imagefolder", root, ss);
  w.all.clear();
  for (size_t i = 0; i < w.dataset.samples.size(); ++i) w.all.push_back(static_cast<int64_t>(i));
  return true;
}

inline data::TransformSettings training_transform(int size) {
  data::TransformSettings ts;
  ts.size = size;
  ts.train = true;
  ts.flips = Flips::h;
  ts.seed = 1;
  return ts;
}

inline data::LoaderOptions training_loader(int batch, int threads) {
  data::LoaderOptions lo;
  lo.batch_size = batch;
  lo.shuffle = true;
  lo.threads = threads;
  lo.prefetch = 2 * threads;
  return lo;
}

}  // namespace xfer::bench
