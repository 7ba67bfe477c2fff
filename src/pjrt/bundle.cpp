#include "xfer/pjrt/bundle.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>
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

namespace {
std::string canonical_platform(const std::string& p) { return p == "gpu" ? "cuda" : p; }
std::string platform_list(const std::vector<std::string>& platforms) {
  std::string out;
  for (const auto& p : platforms) out += (out.empty() ? "" : ",") + p;
  return out;
}
}  // namespace

int Bundle::platform_position(const std::string& platform) const {
  for (size_t i = 0; i < platforms.size(); ++i)
    if (platforms[i] == canonical_platform(platform)) return static_cast<int>(i);
  return -1;
}

const Program* Bundle::train_program(int b) const {
  for (const auto& p : train)
    if (p.batch == b) return &p;
  return nullptr;
}

namespace {

// A program's size when the manifest does not say (bundles before the field): far above any exported step.
constexpr int64_t kMaxProgramBytes = int64_t(1) << 31;
// A state entry's elements: far above any model's tensor, far below what overflows int64 or a vector.
constexpr int64_t kMaxStateElements = int64_t(1) << 36;

// At most `limit` bytes of a regular file (a manifest names /dev/zero: it is not read until memory runs out).
std::string read_bytes(const std::string& path, int64_t limit) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw Error::input(path + ": not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error::input(path + ": cannot read it");
  std::string bytes(static_cast<size_t>(std::min<int64_t>(limit, static_cast<int64_t>(fs::file_size(path, ec)))), '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  bytes.resize(static_cast<size_t>(in.gcount()));
  if (in.peek() != std::char_traits<char>::eof())
    throw Error::input(fmt::format("{}: larger than {} bytes", path, limit));
  return bytes;
}

// A program file is a plain name inside its bundle folder: a bundle is shared as an artifact, and its manifest must
// not make xfer read /dev/zero or ../../etc/passwd (reliability probe 3, BAD-3).
Program program_of(const nlohmann::json& j, const fs::path& dir, const std::string& manifest) {
  Program p;
  const std::string name = j.at("file").get<std::string>();
  const fs::path rel(name);
  bool inside = !name.empty() && rel.is_relative();
  for (const auto& part : rel) inside = inside && part != ".." && part != ".";
  if (!inside)
    throw Error::input(fmt::format("{}: program file \"{}\" is not a file inside the bundle folder {}", manifest, name,
                                   dir.string()));
  p.file = (dir / rel).string();
  p.sha256 = j.at("sha256").get<std::string>();
  p.batch = j.at("batch").get<int>();
  p.platform_index = j.at("platform_index_argument").get<bool>();
  p.bytes = j.contains("bytes") ? j.at("bytes").get<int64_t>() : -1;
  if (j.contains("inputs")) p.inputs = j.at("inputs").get<std::vector<std::string>>();
  std::error_code ec;
  if (!fs::exists(p.file, ec)) throw Error::input(manifest + ": its program " + p.file + " is missing");
  const fs::path real = fs::canonical(p.file, ec), root = fs::canonical(dir, ec);
  const auto rel_real = real.lexically_relative(root);
  if (ec || !fs::is_regular_file(real, ec) || rel_real.empty() || *rel_real.begin() == "..")
    throw Error::input(fmt::format("{}: program {} is not a regular file inside the bundle folder", manifest, p.file));
  if (p.bytes >= 0 && static_cast<int64_t>(fs::file_size(real, ec)) != p.bytes)
    throw Error::input(fmt::format("{}: program {} has {} bytes, the manifest says {}; export it again with "
                                   "tools/export_pjrt.py", manifest, p.file, fs::file_size(real, ec), p.bytes));
  return p;
}

// The manifest's state and programs agree with each other: shapes of sane sizes; params, then buffers, then the
// optimizer's slots, each slot of a parameter's shape; each program's inputs the state it is fed (when the manifest
// lists them). A bundle that breaks one of these fails every attempt alike, so it is refused when it is read.
void check_consistency(const Bundle& b) {
  const std::string& m = b.manifest;
  std::map<std::string, const TensorSpec*> params;
  int phase = 0;  // 0 params, 1 buffers, 2 optimizer
  for (const auto& s : b.state) {
    int64_t n = 1;
    for (int64_t d : s.shape) {
      if (d < 1 || d > kMaxStateElements || n > kMaxStateElements / d)
        throw Error::input(fmt::format("{}: state {} has shape [{}]: every dimension must be at least 1, and the "
                                       "entry at most {} elements", m, s.name, fmt::join(s.shape, ","),
                                       kMaxStateElements));
      n *= d;
    }
    const int here = s.role == "param" ? 0 : s.role == "buffer" ? 1 : s.role == "optimizer" ? 2 : -1;
    if (here < 0) throw Error::input(fmt::format("{}: state {} has role \"{}\", expected param, buffer or optimizer", m, s.name, s.role));
    if (here < phase)
      throw Error::input(fmt::format("{}: state {} ({}) comes after the {}: the state lists params, then buffers, then "
                                     "the optimizer's", m, s.name, s.role, phase == 1 ? "buffers" : "optimizer's"));
    phase = here;
    if (here == 0) params.emplace(s.name, &s);
    if (here == 2 && s.name != "opt/step") {
      const auto slash = s.name.find('/', 4);
      const auto it = slash == std::string::npos ? params.end() : params.find(s.name.substr(slash + 1));
      if (s.name.rfind("opt/", 0) != 0 || it == params.end())
        throw Error::input(fmt::format("{}: optimizer state {} names no parameter of the state", m, s.name));
      if (it->second->shape != s.shape)
        throw Error::input(fmt::format("{}: optimizer state {} has shape [{}], its parameter [{}]", m, s.name,
                                       fmt::join(s.shape, ","), fmt::join(it->second->shape, ",")));
    }
  }
  auto expect = [&](const Program& p, std::vector<std::string> want) {
    if (p.inputs.empty() || p.inputs == want) return;
    throw Error::input(fmt::format("{}: program {} takes {} inputs ({}…), the manifest's state and data make {} ({}…): "
                                   "the state list does not match the program; export it again with tools/export_pjrt.py",
                                   m, p.file, p.inputs.size(), p.inputs.empty() ? "" : p.inputs.front(), want.size(),
                                   want.empty() ? "" : want.front()));
  };
  std::vector<std::string> names;
  for (const auto& s : b.state) names.push_back(s.name);
  std::vector<std::string> train = names;
  for (const char* x : {"x", "y", "lr", "weight_decay"}) train.push_back(x);
  if (b.random) train.push_back("seed");
  for (const auto& p : b.train) expect(p, train);
  std::vector<std::string> eval(names.begin(), names.begin() + static_cast<std::ptrdiff_t>(b.model_state()));
  eval.push_back("x");
  expect(b.eval, eval);
}

}  // namespace

Bundle Bundle::read(const std::string& manifest_path) {
  Bundle b;
  b.manifest = manifest_path;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_bytes(manifest_path, int64_t(64) << 20));
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
    // Bundles exported before the field ran on the CPU plugin only.
    b.platforms = j.contains("platforms") ? j.at("platforms").get<std::vector<std::string>>()
                                          : std::vector<std::string>{"cpu"};
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
  if (b.platforms.empty()) throw Error::input(manifest_path + ": \"platforms\" is empty");
  if (b.devices < 1 || b.batch < 1 || b.batch % b.devices != 0 || b.train.empty() || b.state.empty())
    throw Error::input(manifest_path + ": inconsistent manifest (devices, batch, programs or state)");
  check_consistency(b);
  return b;
}

std::string Bundle::code(const Program& p) const {
  std::string bytes = read_bytes(p.file, p.bytes >= 0 ? p.bytes : kMaxProgramBytes);
  if (sha256_hex(bytes) != p.sha256)
    throw Error::input(p.file + ": corrupt PJRT program (its SHA-256 differs from the one in " + manifest +
                       "); export it again with tools/export_pjrt.py");
  return bytes;
}

Bundle bundle_for_platform(const std::vector<std::string>& variant_dirs, const std::string& platform) {
  std::string have;
  for (const auto& d : variant_dirs) {
    Bundle b = Bundle::read((fs::path(d) / "manifest.json").string());
    if (b.platform_position(platform) >= 0) return b;
    have += fmt::format("{}{} ({})", have.empty() ? "" : ", ", d, platform_list(b.platforms));
  }
  throw Error::input(fmt::format("no program for platform {}: the bundle{} {} {} exported for other platforms; export "
                                 "one with tools/export_pjrt.py ... --platforms {}",
                                 canonical_platform(platform), variant_dirs.size() == 1 ? "" : "s",
                                 have.empty() ? "(none given)" : have, variant_dirs.size() == 1 ? "is" : "are",
                                 canonical_platform(platform)));
}

Bundle check_bundle(const BundleRequest& r, int64_t train_samples) {
  Bundle b = find_bundle(r);
  for (const auto& p : b.train) b.code(p);
  b.code(b.eval);
  // The epoch's last batch (a loader drops one under 2 samples: BatchNorm cannot train on it).
  const int tail = static_cast<int>(train_samples % r.batch);
  if (tail >= 2 && tail % r.devices != 0)
    throw Error::input(fmt::format("{}: an epoch of {} training samples ends with a batch of {}, which does not split over "
                                   "{} devices; choose batch_size so that it does", b.manifest, train_samples, tail, r.devices));
  if (tail >= 2 && !b.train_program(tail))
    throw Error::input(fmt::format("{}: no train program for a batch of {} (the last batch of an epoch of {} training "
                                   "samples); export it with --tail {}", b.manifest, tail, train_samples, tail));
  return b;
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
  std::vector<std::string> seen, other_platform;
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
        if (!r.platform.empty() && b.platform_position(r.platform) < 0) {
          other_platform.push_back(fmt::format("{} ({})", v.string(), platform_list(b.platforms)));
          continue;
        }
        std::string m = hyperparameter_mismatch(b, r);
        if (m.empty()) return b;
        if (mismatch.empty()) mismatch = std::move(m);
      }
      seen.push_back(v.filename().string());
    }
  }
  if (!mismatch.empty()) throw Error::input(mismatch);
  if (!other_platform.empty())
    throw Error::input(fmt::format("no program for platform {} for backbone {}: the variants of its shape ({}) are "
                                   "exported for other platforms; export one with tools/export_pjrt.py ... "
                                   "--platforms {} --out {}", canonical_platform(r.platform), r.backbone,
                                   fmt::join(other_platform, ", "), canonical_platform(r.platform),
                                   roots.front().string()));
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
