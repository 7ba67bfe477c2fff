// The torch-free half of the train module: names, thread counts, and the door to the trainer module
// (libxfer_trainer.so, built beside the xfer executable), opened on first use.
#include <dlfcn.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <thread>

#include "pjrt_engine.hpp"
#include "xfer/core/error.hpp"
#include "xfer/pjrt/runtime.hpp"
#include "xfer/train/trial.hpp"

namespace xfer::train {

const char* status_name(Status s) { return name(s).data(); }  // the table's words are string literals

int default_threads() {
  auto env_int = [](const char* name) {
    const char* v = std::getenv(name);
    return v && *v ? std::atoi(v) : 0;
  };
  if (int n = env_int("SLURM_CPUS_PER_TASK"); n > 0) return n;
  int cores = static_cast<int>(std::thread::hardware_concurrency());
  if (cores < 1) cores = 1;
  int local = env_int("OMPI_COMM_WORLD_LOCAL_SIZE");
  if (local <= 0) local = env_int("SLURM_NTASKS_PER_NODE");
  if (local <= 0) local = env_int("MPI_LOCALNRANKS");
  if (local <= 0) local = 1;
  return std::max(1, cores / local);
}

namespace {

using RunFn = void (*)(const grid::TrialConfig*, const data::Dataset*, const Environment*, Result*);
using BackendFn = void (*)(Backend*);

struct Module {
  RunFn run = nullptr;
  BackendFn backend = nullptr;
};

std::string module_path() {
  if (const char* v = std::getenv("XFER_TRAINER_MODULE"); v && *v) return v;
  char exe[PATH_MAX] = {0};
  const ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  const std::filesystem::path dir = n > 0 ? std::filesystem::path(std::string(exe, static_cast<size_t>(n))).parent_path()
                                          : std::filesystem::current_path();
  for (const auto& candidate : {dir / "libxfer_trainer.so", dir / ".." / "lib" / "xfer" / "libxfer_trainer.so"})
    if (std::filesystem::exists(candidate)) return candidate.string();
  return (dir / "libxfer_trainer.so").string();
}

const Module& module() {
  static Module m;
  static std::once_flag once;
  static std::string failure;
  std::call_once(once, [] {
    const std::string path = module_path();
    void* h = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      failure = "cannot load the trainer module " + path + " (" + ::dlerror() +
                "); it is built beside the xfer executable — rebuild, or set XFER_TRAINER_MODULE";
      return;
    }
    m.run = reinterpret_cast<RunFn>(::dlsym(h, "xfer_trainer_run"));
    m.backend = reinterpret_cast<BackendFn>(::dlsym(h, "xfer_trainer_backend"));
    if (!m.run || !m.backend) failure = path + ": not an xfer trainer module (entry points missing)";
  });
  if (!failure.empty()) throw Error(failure);
  return m;
}

}  // namespace

Result run(const grid::TrialConfig& t, const data::Dataset& d, const Environment& env) {
  if (env.checkpoint_dir.empty()) throw std::invalid_argument("train::run: no checkpoint_dir");
  Result r;
  module().run(&t, &d, &env, &r);
  return r;
}

std::string cuda_version_text(long v) {
  return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10);
}

std::string cudnn_version_text(long v) {
  const long major = v >= 90000 ? v / 10000 : v / 1000;
  const long minor = v >= 90000 ? v % 10000 / 100 : v % 1000 / 100;
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(v % 100);
}

std::string device_syntax_problem(const std::string& request) {
  if (request == "auto" || request == "cpu" || request == "cuda") return "";
  if (is_pjrt_device(request))
    return pjrt_plugin_path(request).empty() ? "--device pjrt: no plugin (pjrt:<plugin.so>, or set XFER_PJRT_PLUGIN)" : "";
  if (request.rfind("cuda:", 0) == 0 && request.size() > 5 &&
      request.find_first_not_of("0123456789", 5) == std::string::npos && request.size() < 9)
    return "";
  return "--device " + request + ": expected auto, cpu, cuda or cuda:N (or pjrt:<plugin.so>: TPUs through PJRT)";
}

std::string device_problem(const std::string& request) {
  if (auto p = device_syntax_problem(request); !p.empty()) return p;
  if (is_pjrt_device(request)) {
    const std::string problem = pjrt::plugin_problem(pjrt_plugin_path(request));
    return problem.empty() ? "" : "--device " + request + ": " + problem;
  }
  if (request.rfind("cuda", 0) != 0) return "";
  const Backend b = backend();
  if (b.cuda_devices == 0)
    return "--device " + request + ": torch sees no CUDA device here (LibTorch " + b.torch_version + ", CUDA " +
           b.cuda_version + ")";
  if (request.size() > 5 && std::stoi(request.substr(5)) >= b.cuda_devices)
    return "--device " + request + ": this host has " + std::to_string(b.cuda_devices) + " CUDA device(s)";
  return "";
}

Backend backend() {
  Backend b;
  module().backend(&b);
  return b;
}

}  // namespace xfer::train
