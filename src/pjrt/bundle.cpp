#include "xfer/pjrt/bundle.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "xfer/core/digest.hpp"
#include "xfer/core/error.hpp"

namespace fs = std::filesystem;

namespace xfer::pjrt {

int64_t TensorSpec::elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

size_t Bundle::parameters() const {
  size_t n = 0;
  for (const auto& s : state) n += s.role == "param";
  return n;
}

size_t Bundle::model_state() const {
  size_t n = 0;
  for (const auto& s : state) n += s.role == "param" || s.role == "buffer";
  return n;
}

const Program* Bundle::train_program(int b) const {
  for (const auto& p : train)
    if (p.batch == b) return &p;
  return nullptr;
}

namespace {

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error::input(path + ": cannot read it");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

Program program_of(const nlohmann::json& j, const fs::path& dir, const std::string& manifest) {
  Program p;
  p.file = (dir / j.at("file").get<std::string>()).string();
  p.sha256 = j.at("sha256").get<std::string>();
  p.batch = j.at("batch").get<int>();
  p.platform_index = j.at("platform_index_argument").get<bool>();
  if (!fs::exists(p.file)) throw Error::input(manifest + ": its program " + p.file + " is missing");
  return p;
}

}  // namespace

Bundle Bundle::read(const std::string& manifest_path) {
  Bundle b;
  b.manifest = manifest_path;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_bytes(manifest_path));
  } catch (const nlohmann::json::exception& e) {
    throw Error::input(manifest_path + ": not a PJRT bundle manifest (" + e.what() + ")");
  }
  try {
    if (j.at("format").get<std::string>() != "xfer-pjrt-bundle-1")
      throw Error::input(manifest_path + ": format " + j.at("format").dump() + ", expected \"xfer-pjrt-bundle-1\"");
    b.arch = j.at("arch").get<std::string>();
    b.input_size = j.at("input_size").get<int>();
    b.classes = j.at("classes").get<int>();
    b.feature_dim = j.at("feature_dim").get<int>();
    b.batch = j.at("batch").get<int>();
    b.devices = j.at("devices").get<int>();
    b.platforms = j.at("platforms").get<std::vector<std::string>>();
    const auto& o = j.at("optimizer");
    b.optimizer = o.at("family").get<std::string>();
    b.beta1 = o.at("beta1").get<double>();
    b.beta2 = o.at("beta2").get<double>();
    b.eps = o.at("eps").get<double>();
    b.momentum = o.at("momentum").get<double>();
    b.nesterov = o.at("nesterov").get<bool>();
    b.label_smoothing = j.at("label_smoothing").get<double>();
    b.random = j.value("random", false);
    b.multilabel = j.value("multilabel", false);
    for (const auto& s : j.at("state")) {
      TensorSpec t;
      t.name = s.at("name").get<std::string>();
      t.role = s.at("role").get<std::string>();
      t.dtype = dtype_of(s.at("dtype").get<std::string>());
      t.shape = s.at("shape").get<std::vector<int64_t>>();
      b.state.push_back(std::move(t));
    }
    const fs::path dir = fs::path(manifest_path).parent_path();
    for (const auto& p : j.at("programs").at("train")) b.train.push_back(program_of(p, dir, manifest_path));
    b.eval = program_of(j.at("programs").at("eval"), dir, manifest_path);
  } catch (const nlohmann::json::exception& e) {
    throw Error::input(manifest_path + ": " + e.what());
  } catch (const std::invalid_argument& e) {
    throw Error::input(manifest_path + ": " + e.what());
  }
  if (b.devices < 1 || b.batch % b.devices != 0 || b.train.empty() || b.state.empty())
    throw Error::input(manifest_path + ": inconsistent manifest (devices, batch, programs or state)");
  return b;
}

std::string Bundle::code(const Program& p) const {
  std::string bytes = read_bytes(p.file);
  if (sha256_hex(bytes) != p.sha256)
    throw Error::input(p.file + ": corrupt PJRT program (its SHA-256 differs from the one in " + manifest +
                       "); export it again with tools/export_pjrt.py");
  return bytes;
}

namespace {
bool same(double a, double b) { return std::abs(a - b) <= 1e-12 * std::max(1.0, std::abs(b)); }
}  // namespace

std::string hyperparameter_mismatch(const Bundle& b, const BundleRequest& r) {
  auto differs = [&](const char* what, const char* flag, double have, const std::optional<double>& want) {
    if (!want || same(have, *want)) return std::string();
    return fmt::format("{}: exported with {} = {}, the trial has {}; export it again with the trial's value ({} {})",
                       b.manifest, what, have, *want, flag, *want);
  };
  std::string m;
  if (b.optimizer == "adamw") {
    if (m.empty()) m = differs("beta1", "--beta1", b.beta1, r.beta1);
    if (m.empty()) m = differs("beta2", "--beta2", b.beta2, r.beta2);
    if (m.empty()) m = differs("eps", "--eps", b.eps, r.eps);
  } else {
    if (m.empty()) m = differs("momentum", "--momentum", b.momentum, r.momentum);
    if (m.empty() && r.nesterov && b.nesterov != *r.nesterov)
      m = fmt::format("{}: exported with nesterov = {}, the trial has {}; export it again {} --nesterov", b.manifest,
                      b.nesterov, *r.nesterov, *r.nesterov ? "with" : "without");
  }
  if (m.empty()) m = differs("label_smoothing", "--label-smoothing", b.label_smoothing, r.label_smoothing);
  return m;
}

Bundle find_bundle(const BundleRequest& r) {
  const fs::path backbone(r.backbone);
  const std::string stem = backbone.stem().string();
  std::vector<fs::path> roots{backbone.parent_path() / (stem + ".pjrt")};
  if (const char* v = std::getenv("XFER_PJRT_ARTIFACTS"); v && *v) {
    std::stringstream ss(v);
    for (std::string d; std::getline(ss, d, ':');)
      if (!d.empty()) roots.push_back(fs::path(d) / (stem + ".pjrt"));
  }
  std::vector<std::string> seen;
  std::string mismatch;  // of the first variant of the right shape
  for (const auto& root : roots) {
    std::error_code ec;
    if (!fs::is_directory(root, ec)) continue;
    std::vector<fs::path> variants;
    for (const auto& e : fs::directory_iterator(root)) variants.push_back(e.path());
    std::sort(variants.begin(), variants.end());
    for (const auto& v : variants) {
      const fs::path m = v / "manifest.json";
      if (!fs::exists(m)) continue;
      Bundle b = Bundle::read(m.string());
      if (b.input_size == r.input_size && (r.classes == 0 || b.classes == r.classes) && b.batch == r.batch && b.devices == r.devices &&
          b.optimizer == r.optimizer && b.multilabel == r.multilabel) {
        std::string m = hyperparameter_mismatch(b, r);
        if (m.empty()) return b;
        if (mismatch.empty()) mismatch = std::move(m);
      }
      seen.push_back(v.filename().string());
    }
  }
  if (!mismatch.empty()) throw Error::input(mismatch);
  std::string where;
  for (const auto& root : roots) where += (where.empty() ? "" : ", ") + root.string();
  std::string have;
  for (const auto& s : seen) have += (have.empty() ? "" : ", ") + s;
  throw Error::input(fmt::format(
      "no PJRT program for backbone {} at {} px, {} classes{}, batch {}, {}, {} device(s): looked in {} (found: {}). "
      "Export it: tools/export_pjrt.py <arch> --size {} --classes {} --batch {} --tail <last batch> --optimizer {}{} "
      "--devices {} --out {}",
      r.backbone, r.input_size, r.classes ? std::to_string(r.classes) : "any number of", r.multilabel ? " (multi-label)" : "",
      r.batch, r.optimizer, r.devices, where, have.empty() ? "none" : have, r.input_size,
      r.classes ? std::to_string(r.classes) : "<classes>", r.batch, r.optimizer, r.multilabel ? " --multilabel" : "",
      r.devices, roots.front().string()));
}

}  // namespace xfer::pjrt
