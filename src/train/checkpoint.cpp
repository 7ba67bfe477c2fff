#include "checkpoint.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <boost/archive/text_iarchive.hpp>
#include <boost/archive/text_oarchive.hpp>
#include <boost/serialization/string.hpp>
#include <boost/serialization/vector.hpp>
#include <boost/serialization/version.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "xfer/core/digest.hpp"
#include "xfer/core/error.hpp"
#include "xfer/spec/spec.hpp"
#include "xfer/train/serialization.hpp"

namespace fs = std::filesystem;

namespace boost::serialization {

template <class Archive>
void serialize(Archive& ar, xfer::train::Predictions& p, const unsigned) {
  ar& p.classes;
  ar& p.samples;
  ar& p.scores;
}

template <class Archive>
void serialize(Archive& ar, xfer::train::CheckpointMeta& m, const unsigned version) {
  ar& m.trial_key;
  ar& m.canonical;
  ar& m.epochs_done;
  ar& m.next_batch;
  ar& m.partial_steps;
  ar& m.partial_images;
  for (double* d : {&m.partial_loss_sum, &m.partial_seconds, &m.best_val, &m.test_at_best, &m.loss_scale, &m.first_loss}) {
    if constexpr (Archive::is_saving::value) save_double(ar, *d);
    else *d = load_double(ar);
  }
  ar& m.epochs;
  ar& m.best_epoch;
  ar& m.val;
  ar& m.test;
  ar& m.rng_state;
  ar& m.micro_batches;
  if (version >= 1) ar& m.loss_scale_good_steps;
}

}  // namespace boost::serialization

// Version 1 adds the loss scale's good-step count; version-0 checkpoints still load (count 0).
BOOST_CLASS_VERSION(xfer::train::CheckpointMeta, 1)

namespace xfer::train {

namespace {

constexpr const char* kMagic = "xfer-checkpoint 1";

void fsync_path(const std::string& path, bool dir) {
  const int fd = ::open(path.c_str(), dir ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

struct Named {
  int epoch;
  int64_t batch;
  fs::path path;
};

std::vector<Named> list(const std::string& dir) {
  std::vector<Named> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    int ep = 0;
    long long b = 0;
    if (e.path().extension() == ".ckpt" && std::sscanf(n.c_str(), "epoch-%d-step-%lld.ckpt", &ep, &b) == 2)
      out.push_back({ep, static_cast<int64_t>(b), e.path()});
  }
  std::sort(out.begin(), out.end(), [](const Named& a, const Named& b) {
    return a.epoch != b.epoch ? a.epoch > b.epoch : a.batch > b.batch;
  });
  return out;
}

}  // namespace

namespace {
// Writes all of `data` to `fd`; false with errno set on failure.
bool write_all(int fd, const char* data, size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += w, n -= static_cast<size_t>(w);
  }
  return true;
}
}  // namespace

std::string write_checkpoint(const std::string& dir, const Checkpoint& c, int keep) {
  std::error_code dir_ec;
  fs::create_directories(dir, dir_ec);
  if (dir_ec) throw errno_error(dir + ": cannot create the checkpoint folder", dir_ec.value());
  std::ostringstream meta_stream;
  {
    boost::archive::text_oarchive oa(meta_stream);
    oa << c.meta;
  }
  const std::string meta = meta_stream.str();
  Sha256 h;
  h.update(meta);
  h.update(c.tensors);
  const std::string header = fmt::format("{}\n{}\n{}\n", kMagic, h.hex(), meta.size());
  const std::string name = fmt::format("epoch-{}-step-{}.ckpt", c.meta.epochs_done, c.meta.next_batch);
  const fs::path final_path = fs::path(dir) / name, tmp = fs::path(dir) / (name + ".tmp");
  {
    // POSIX I/O, so that a full disk is reported as ENOSPC (an environment fault: the sweep stops) and not as a
    // trial's failure.
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throw errno_error(tmp.string() + ": cannot write the checkpoint", errno);
    const bool ok = write_all(fd, header.data(), header.size()) && write_all(fd, meta.data(), meta.size()) &&
                    write_all(fd, c.tensors.data(), c.tensors.size()) && ::fsync(fd) == 0;
    const int err = errno;
    const bool closed = ::close(fd) == 0;
    if (!ok || !closed) {
      std::error_code ec;
      fs::remove(tmp, ec);
      throw errno_error(tmp.string() + ": cannot write the checkpoint", ok ? errno : err);
    }
  }
  std::error_code rename_ec;
  fs::rename(tmp, final_path, rename_ec);
  if (rename_ec) throw errno_error(final_path.string() + ": cannot rename the checkpoint into place", rename_ec.value());
  fsync_path(dir, true);
  const auto all = list(dir);
  for (size_t i = static_cast<size_t>(keep); i < all.size(); ++i) {
    std::error_code ec;
    fs::remove(all[i].path, ec);
  }
  return final_path.string();
}

std::optional<Checkpoint> load_latest_checkpoint(const std::string& dir, const std::string& key,
                                                 const std::string& canonical) {
  for (const auto& n : list(dir)) {
    const std::string path = n.path.string();
    try {
      std::ifstream in(path, std::ios::binary);
      std::string magic, digest, len_s;
      if (!std::getline(in, magic) || magic != kMagic) throw Error("not an xfer checkpoint");
      if (!std::getline(in, digest) || !std::getline(in, len_s)) throw Error("truncated header");
      const size_t len = std::stoull(len_s);
      std::string rest((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (rest.size() < len) throw Error("truncated");
      Sha256 h;
      h.update(rest);
      if (h.hex() != digest) throw Error("checksum mismatch (partial write or corruption)");
      Checkpoint c;
      std::istringstream meta(rest.substr(0, len));
      boost::archive::text_iarchive ia(meta);
      ia >> c.meta;
      if (c.meta.trial_key != key || c.meta.canonical != canonical)
        throw Error("belongs to trial " + c.meta.trial_key + ", not " + key);
      c.tensors = rest.substr(len);
      c.path = path;
      return c;
    } catch (const std::exception& e) {
      spdlog::warn("trial {}: checkpoint {} is unusable ({}); trying the previous one", key, path, e.what());
    }
  }
  return std::nullopt;
}

Environment environment_for(const spec::Spec& spec, const grid::Trial& trial) {
  const auto& m = spec.models[trial.model_index];
  if (!m.backbone.resolved())
    throw Error::input(m.backbone.where.str() + ": backbone of model \"" + m.name + "\" names ${" + m.backbone.unset_var +
                       "}, which is unset");
  if (!spec.study.checkpoint_dir.resolved())
    throw Error::input(spec.study.checkpoint_dir.where.str() + ": checkpoint_dir names ${" +
                       spec.study.checkpoint_dir.unset_var + "}, which is unset");
  Environment env;
  env.backbone = m.backbone.path;
  env.checkpoint_dir = (fs::path(spec.study.checkpoint_dir.path) / trial.key.str()).string();
  env.keep_best_model = spec.study.keep_best_model;
  if (trial.config.pretraining) {
    if (!spec.study.upstream_dir.resolved())
      throw Error::input(spec.study.upstream_dir.where.str() + ": upstream_dir names ${" +
                         spec.study.upstream_dir.unset_var + "}, which is unset");
    env.export_backbone = (fs::path(spec.study.upstream_dir.path) / (trial.key.str() + ".pt")).string();
  }
  return env;
}

void remove_trial_checkpoints(const std::string& dir, bool keep_best_model) { remove_checkpoints(dir, keep_best_model); }

void remove_checkpoints(const std::string& dir, bool keep_best_model) {
  std::error_code ec;
  for (const auto& n : list(dir)) fs::remove(n.path, ec);
  if (!keep_best_model) fs::remove(fs::path(dir) / "best.pt", ec);
  fs::remove(fs::path(dir) / "best_backbone.pt", ec);  // an upstream trial's, exported by now
  if (fs::is_directory(dir, ec) && fs::is_empty(dir, ec)) fs::remove(dir, ec);
}

}  // namespace xfer::train
