// pjrt_smoke: the PJRT leg of bench/gpu/first_contact.sh. Built from xfer's PJRT runtime and bundle code alone
// (src/pjrt, the vendored pjrt_c_api.h; no torch, MPI, HDF5 or OpenCV), so it builds on a machine that holds nothing
// of xfer's but the repository (bench/gpu/pjrt/CMakeLists.txt) as well as in the main build.
//
//   pjrt_smoke --plugin <PJRT plugin .so> --bundle <variant folder> [--bundle <variant folder>...] [--steps 5]
//              [--json out.json] [--reference ref.json --tolerance 1e-3] [--as-platform cuda]
//
// It opens the plugin, takes the first --bundle exported for the plugin's platform (a cuda variant sits beside the
// cpu,tpu one: tools/export_pjrt.py --platforms cuda; none: exit 2 naming the bundles and their platforms), compiles
// its train program for the bundle's batch and its eval program, and runs --steps train steps from a synthetic
// initial state on synthetic batches, then one evaluation. Everything comes from one deterministic generator
// (splitmix64 from --seed, 2026 by default; u = the top 24 bits / 2^24, in [0, 1)), drawn in this order:
//   state      params of 2 or more dimensions: (2u - 1) / sqrt(fan-in) (fan-in: the product of the dimensions after
//              the first); 1-dimensional params: 1 if the name ends in "weight" (norm scales), else 0 (biases);
//              buffers: 1 for running variances, else 0; optimizer state: 0 (drawn from nothing)
//   the batch  x: batch x 3 x size x size values 2u - 1; y: class floor(u * classes) per sample (multi-label: 1 where
//              u < 0.2); drawn once, every step trains on it (its loss then falls with the updates: 2.29 to 2.03 over
//              the tiny CNN's 5 steps, where a 10% larger lr ends 1% lower); lr --lr (1e-2), weight decay
//              --weight-decay (1e-4); a random program's seed: the step
//   eval       the batch's loss after the steps (cross-entropy, or binary cross-entropy with logits for
//              multi-label), from the eval program's logits, in double on the host
// The same program on two plugins then sees the same numbers. Prints one line per step and writes the losses as
// JSON. With --reference (an earlier run's JSON: the CPU plugin's, committed in bench/gpu/pjrt_smoke_reference.json),
// compares the losses and the eval loss: |a - b| <= tolerance * max(1, |b|) each, exit 1 if not.
// --as-platform P takes the bundle exported for P whatever the plugin's platform: StableHLO without platform-specific
// custom calls compiles anywhere, so ./run test runs the cuda program on the CPU plugin (test
// pjrt_smoke_cuda_program_on_cpu) and checks that the cuda export computes the CPU program's losses.
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "xfer/core/error.hpp"
#include "xfer/pjrt/bundle.hpp"
#include "xfer/pjrt/runtime.hpp"

namespace {

using xfer::pjrt::Buffer;
using xfer::pjrt::DType;

struct Options {
  std::string plugin, json, reference, as_platform;
  std::vector<std::string> bundles;
  int steps = 5;
  uint64_t seed = 2026;
  double lr = 1e-2, weight_decay = 1e-4, tolerance = 1e-3;
};

// splitmix64: a 64-bit counter through a fixed mixer; u() the top 24 bits as a float in [0, 1).
class Generator {
 public:
  explicit Generator(uint64_t seed) : s_(seed) {}
  float u() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return static_cast<float>(z >> 40) / 16777216.0f;
  }

 private:
  uint64_t s_;
};

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

std::vector<float> initial_values(const xfer::pjrt::TensorSpec& t, Generator& g) {
  std::vector<float> v(static_cast<size_t>(t.elements()), 0.0f);
  if (t.role == "param" && t.shape.size() >= 2) {
    int64_t fan_in = 1;
    for (size_t i = 1; i < t.shape.size(); ++i) fan_in *= t.shape[i];
    const float scale = 1.0f / std::sqrt(static_cast<float>(fan_in));
    for (auto& x : v) x = (2 * g.u() - 1) * scale;
  } else if ((t.role == "param" && ends_with(t.name, "weight")) || (t.role == "buffer" && ends_with(t.name, "running_var"))) {
    for (auto& x : v) x = 1.0f;
  }
  return v;
}

// The mean loss of `logits` [n, classes] against the batch's targets, as the train program computes it.
double eval_loss(const std::vector<float>& z, const std::vector<int32_t>& labels, const std::vector<float>& targets,
                 int n, int classes, bool multilabel) {
  double total = 0;
  for (int i = 0; i < n; ++i) {
    const float* row = z.data() + static_cast<size_t>(i) * classes;
    if (multilabel) {
      double sum = 0;
      for (int k = 0; k < classes; ++k) {
        const double v = row[k];
        sum += std::max(v, 0.0) - v * targets[static_cast<size_t>(i) * classes + k] + std::log1p(std::exp(-std::abs(v)));
      }
      total += sum / classes;
      continue;
    }
    double mx = row[0], sum = 0;
    for (int k = 1; k < classes; ++k) mx = std::max(mx, static_cast<double>(row[k]));
    for (int k = 0; k < classes; ++k) sum += std::exp(row[k] - mx);
    total += mx + std::log(sum) - row[labels[static_cast<size_t>(i)]];
  }
  return total / n;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int usage(const std::string& why) {
  std::cerr << "pjrt_smoke: " << why << "\nusage: pjrt_smoke --plugin <plugin.so> --bundle <variant folder>... "
            << "[--steps N] [--seed S] [--lr X] [--weight-decay X] [--json out.json] [--reference ref.json "
            << "[--tolerance T]] [--as-platform P]\n";
  return 2;
}

// Compares this run with a reference run's JSON; writes the comparison into `out`. True when within tolerance.
bool compare(const nlohmann::json& ref, nlohmann::json& out, double tolerance) {
  const auto& a = out["losses"];
  const auto& b = ref.at("losses");
  bool ok = a.size() == b.size() && ref.at("program") == out["program"] && ref.at("seed") == out["seed"];
  double worst = 0;
  auto check = [&](double x, double y) {
    const double d = std::abs(x - y) / std::max(1.0, std::abs(y));
    worst = std::max(worst, d);
    ok = ok && d <= tolerance;
  };
  for (size_t k = 0; k < std::min(a.size(), b.size()); ++k) check(a[k].get<double>(), b[k].get<double>());
  check(out["eval_loss"].get<double>(), ref.at("eval_loss").get<double>());
  out["comparison"] = {{"reference_platform", ref.value("platform", "")}, {"reference_plugin", ref.value("plugin", "")},
                       {"reference_losses", b}, {"reference_eval_loss", ref.at("eval_loss")},
                       {"max_relative_difference", worst}, {"tolerance", tolerance}, {"pass", ok}};
  return ok;
}

int run(const Options& o) {
  auto client = xfer::pjrt::Client::open(o.plugin);
  const std::string platform = o.as_platform.empty() ? client->platform() : o.as_platform;
  std::cerr << "plugin " << o.plugin << ": platform " << client->platform()
            << (o.as_platform.empty() ? "" : ", its programs taken as " + platform + "'s") << ", PJRT C API " << client->api_version() << ", "
            << client->device_count() << " device(s)\n";
  const xfer::pjrt::Bundle b = xfer::pjrt::bundle_for_platform(o.bundles, platform);
  if (b.devices != 1) throw xfer::Error::input(b.manifest + ": pjrt_smoke runs one-device programs (devices 1)");
  const xfer::pjrt::Program* train = b.train_program(b.batch);
  if (!train) throw xfer::Error::input(b.manifest + ": no train program for its batch");
  const int32_t position = b.platform_position(platform);
  const int n = b.batch, classes = b.classes, size = b.input_size;

  auto t0 = std::chrono::steady_clock::now();
  auto train_exe = client->compile(b.code(*train), train->file, 1, 0);
  auto eval_exe = client->compile(b.code(b.eval), b.eval.file, 1, 0);
  const double compile_s = seconds_since(t0);

  Generator g(o.seed);
  std::vector<Buffer> state;
  for (const auto& t : b.state) {
    if (t.dtype != DType::f32) throw xfer::Error::input(b.manifest + ": state " + t.name + " is not float32");
    state.push_back(client->upload(initial_values(t, g).data(), DType::f32, t.shape, 0));
  }
  std::vector<float> x(static_cast<size_t>(n) * 3 * size * size), targets;
  std::vector<int32_t> labels;
  const float lr = static_cast<float>(o.lr), wd = static_cast<float>(o.weight_decay);
  nlohmann::json losses = nlohmann::json::array(), step_ms = nlohmann::json::array();
  // One batch, trained on at every step: its loss falls step by step, so the losses follow the updates (on fresh
  // random batches they would mostly follow the batches, and a wrong update could hide in their noise).
  for (auto& v : x) v = 2 * g.u() - 1;
  labels.assign(static_cast<size_t>(n), 0);
  targets.assign(b.multilabel ? static_cast<size_t>(n) * classes : 0, 0.0f);
  if (b.multilabel)
    for (auto& v : targets) v = g.u() < 0.2f ? 1.0f : 0.0f;
  else
    for (auto& v : labels) v = std::min(classes - 1, static_cast<int32_t>(g.u() * static_cast<float>(classes)));
  for (int step = 0; step < o.steps; ++step) {
    const int32_t seed = step;
    auto t1 = std::chrono::steady_clock::now();
    std::vector<Buffer> extra;
    if (train->platform_index) extra.push_back(client->upload(&position, DType::s32, {}, 0));
    extra.push_back(client->upload(x.data(), DType::f32, {n, 3, size, size}, 0));
    if (b.multilabel)
      extra.push_back(client->upload(targets.data(), DType::f32, {n, classes}, 0));
    else
      extra.push_back(client->upload(labels.data(), DType::s32, {n}, 0));
    extra.push_back(client->upload(&lr, DType::f32, {}, 0));
    extra.push_back(client->upload(&wd, DType::f32, {}, 0));
    if (b.random) extra.push_back(client->upload(&seed, DType::s32, {}, 0));
    std::vector<Buffer*> args;
    const size_t pi = train->platform_index ? 1 : 0;
    if (pi) args.push_back(&extra[0]);
    for (auto& s : state) args.push_back(&s);
    for (size_t k = pi; k < extra.size(); ++k) args.push_back(&extra[k]);
    std::vector<bool> donated(args.size(), false);
    for (size_t k = 0; k < state.size(); ++k) donated[pi + k] = true;  // the state is updated in place
    auto out = train_exe->execute({args}, donated);
    if (out.at(0).size() != state.size() + 1)
      throw xfer::Error(train->file + ": " + std::to_string(out[0].size()) + " outputs, expected " +
                        std::to_string(state.size() + 1));
    for (size_t k = 0; k < state.size(); ++k) state[k] = std::move(out[0][k]);
    float loss = 0;
    out[0].back().to_host(&loss, sizeof loss);
    const double ms = 1e3 * seconds_since(t1);
    std::printf("step %d: loss %.9g (%.2f ms)\n", step, loss, ms);
    losses.push_back(loss);
    step_ms.push_back(ms);
  }

  std::vector<Buffer> extra;
  if (b.eval.platform_index) extra.push_back(client->upload(&position, DType::s32, {}, 0));
  extra.push_back(client->upload(x.data(), DType::f32, {n, 3, size, size}, 0));
  std::vector<Buffer*> args;
  if (b.eval.platform_index) args.push_back(&extra[0]);
  for (size_t k = 0; k < b.model_state(); ++k) args.push_back(&state[k]);
  args.push_back(&extra.back());
  auto logits_out = eval_exe->execute({args}, std::vector<bool>(args.size(), false));
  std::vector<float> logits(static_cast<size_t>(n) * classes);
  logits_out.at(0).at(0).to_host(logits.data(), logits.size() * sizeof(float));
  const double el = eval_loss(logits, labels, targets, n, classes, b.multilabel);
  std::printf("eval: loss %.9g\n", el);

  nlohmann::json j = {{"plugin", o.plugin}, {"platform", client->platform()}, {"program_platform", platform}, {"api_version", client->api_version()},
                      {"bundle", b.manifest}, {"program", std::string(train->file.substr(train->file.rfind('/') + 1))},
                      {"arch", b.arch}, {"batch", n}, {"steps", o.steps}, {"seed", o.seed}, {"lr", o.lr},
                      {"weight_decay", o.weight_decay},
                      {"generator", "splitmix64; the state, then one batch x and y, as bench/gpu/pjrt_smoke.cpp says"},
                      {"losses", losses}, {"eval_loss", el}, {"compile_seconds", compile_s}, {"step_ms", step_ms}};
  const auto peak = client->peak_device_bytes(0);  // the CUDA plugin's device memory; the CPU plugin reports none
  j["peak_device_bytes"] = peak ? nlohmann::json(*peak) : nlohmann::json();
  bool ok = true;
  if (!o.reference.empty()) {
    std::ifstream in(o.reference);
    if (!in) throw xfer::Error::input(o.reference + ": cannot read the reference");
    nlohmann::json ref;
    try {
      ref = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      throw xfer::Error::input(o.reference + ": " + e.what());
    }
    ok = compare(ref, j, o.tolerance);
    std::printf("against %s (%s): max relative difference %.3g, tolerance %.3g: %s\n", o.reference.c_str(),
                ref.value("platform", "?").c_str(), j["comparison"]["max_relative_difference"].get<double>(),
                o.tolerance, ok ? "PASS" : "FAIL");
  }
  if (!o.json.empty()) {
    std::ofstream f(o.json);
    f << j.dump(1) << "\n";
    if (!f) throw xfer::Error::environment(o.json + ": cannot write it");
  }
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) return usage(a + " needs a value");
    const std::string v = argv[++i];
    try {
      if (a == "--plugin") o.plugin = v;
      else if (a == "--bundle") o.bundles.push_back(v);
      else if (a == "--steps") o.steps = std::stoi(v);
      else if (a == "--seed") o.seed = std::stoull(v);
      else if (a == "--lr") o.lr = std::stod(v);
      else if (a == "--weight-decay") o.weight_decay = std::stod(v);
      else if (a == "--json") o.json = v;
      else if (a == "--reference") o.reference = v;
      else if (a == "--tolerance") o.tolerance = std::stod(v);
      else if (a == "--as-platform") o.as_platform = v;
      else return usage("unknown option " + a);
    } catch (const std::logic_error&) {
      return usage(a + " " + v + ": not a number");
    }
  }
  if (o.plugin.empty() || o.bundles.empty()) return usage("--plugin and --bundle are required");
  if (o.steps < 1) return usage("--steps must be at least 1");
  try {
    return run(o);
  } catch (const xfer::Error& e) {
    std::cerr << "pjrt_smoke: " << e.what() << "\n";
    return e.kind() == xfer::Error::Kind::input ? 2 : 1;
  } catch (const std::exception& e) {
    std::cerr << "pjrt_smoke: " << e.what() << "\n";
    return 1;
  }
}
