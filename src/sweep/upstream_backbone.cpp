#include "upstream_backbone.hpp"

#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "xfer/core/digest.hpp"
#include "xfer/core/error.hpp"

namespace fs = std::filesystem;

namespace xfer::sweep {

std::string metadata_path(const std::string& backbone) {
  return fs::path(backbone).replace_extension(".json").string();
}

std::string write_upstream_metadata(const std::string& backbone, const std::string& key, const grid::TrialConfig& t,
                                    double test_accuracy, int best_epoch, int feature_dim) {
  const std::string digest = sha256_file_hex(backbone);
  nlohmann::json j;
  j["name"] = t.model;
  j["architecture"] = t.model;
  j["weights"] = "upstream:" + key;
  j["upstream_trial"] = key;
  j["upstream_dataset"] = t.dataset;
  j["upstream_top1"] = std::isfinite(test_accuracy) ? nlohmann::json(test_accuracy * 100.0) : nlohmann::json();
  j["upstream_best_epoch"] = best_epoch;
  j["upstream_epochs"] = t.epochs;
  j["upstream_seed"] = t.seed;
  j["upstream_augmentation"] = name_str(t.augmentation);
  j["input_size"] = t.input_size;
  j["mean"] = t.mean;
  j["std"] = t.std;
  if (feature_dim > 0) j["feature_dim"] = feature_dim;
  j["scripted"] = "script (the trained backbone module, saved by LibTorch)";
  j["sha256"] = digest;
  const std::string path = metadata_path(backbone), tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << j.dump(2) << "\n";
    if (!out) throw Error::environment(tmp + ": cannot write the upstream backbone's metadata");
  }
  fs::rename(tmp, path);
  return digest;
}

UpstreamBackbone read_upstream_metadata(const std::string& backbone) {
  const std::string path = metadata_path(backbone);
  std::ifstream in(path);
  if (!in) throw Error::input(path + ": the pre-trained backbone's metadata is missing (its upstream trial has not "
                                     "exported it)");
  UpstreamBackbone b;
  b.backbone = backbone;
  try {
    const auto j = nlohmann::json::parse(in);
    b.sha256 = j.at("sha256").get<std::string>();
    b.top1 = j.at("upstream_top1").is_number() ? j.at("upstream_top1").get<double>() : std::nan("");
    b.best_epoch = j.value("upstream_best_epoch", -1);
  } catch (const std::exception& e) {
    throw Error::input(path + ": malformed upstream backbone metadata: " + e.what());
  }
  return b;
}

}  // namespace xfer::sweep
