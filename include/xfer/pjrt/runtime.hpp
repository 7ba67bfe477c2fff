// pjrt: runs exported XLA programs through the PJRT C API (OpenXLA's pjrt_c_api.h, vendored in third_party/pjrt) —
// a plugin shared object loaded with dlopen (libtpu.so on a TPU VM, a CPU plugin in CI), its client and devices, a
// StableHLO program compiled with hand-encoded compile options, device buffers and donated execution. Also the
// artifact bundle the exporter (tools/export_pjrt.py) writes: manifest.json and its programs (bundle.hpp).
// Plain C++, no link dependency on any plugin; knows nothing of torch, datasets, trials or MPI (a multi-process
// client gets its key-value store through core/key_value_store.hpp's interface).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

struct PJRT_Api;
struct PJRT_Client;
struct PJRT_Device;
struct PJRT_Buffer;
struct PJRT_LoadedExecutable;

namespace xfer {
class KeyValueStore;
}

namespace xfer::pjrt {

// The element types the exported programs use (jax without x64: f32 tensors, s32 labels and counters).
enum class DType { f32, s32 };
DType dtype_of(const std::string& name);  // "float32" | "int32"; throws std::invalid_argument otherwise
size_t dtype_bytes(DType t);

// A plugin's process-wide client. One per plugin path for the life of the process: TPU runtimes allow a single
// client per process, and creating one is costly.
class Client;

// A device array, destroyed with its owner. Donated buffers are released by Executable::execute.
class Buffer {
 public:
  Buffer() = default;
  Buffer(const PJRT_Api* api, PJRT_Buffer* b) : api_(api), b_(b) {}
  Buffer(Buffer&& o) noexcept : api_(o.api_), b_(o.b_) { o.b_ = nullptr; }
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer();
  PJRT_Buffer* get() const { return b_; }
  PJRT_Buffer* release() {
    PJRT_Buffer* b = b_;
    b_ = nullptr;
    return b;
  }
  explicit operator bool() const { return b_ != nullptr; }
  // Copies the array to `dst` (exactly `bytes` bytes, dense row-major) and waits for the copy.
  void to_host(void* dst, size_t bytes) const;

 private:
  const PJRT_Api* api_ = nullptr;
  PJRT_Buffer* b_ = nullptr;
};

class Executable {
 public:
  Executable(std::shared_ptr<Client> client, PJRT_LoadedExecutable* e, size_t outputs, int devices, int first_device,
             std::string file);
  ~Executable();
  Executable(const Executable&) = delete;
  Executable& operator=(const Executable&) = delete;
  size_t outputs() const { return outputs_; }
  int devices() const { return devices_; }  // the program's partitions, over every process
  int local_devices() const { return static_cast<int>(order_.size()); }  // those of this process
  // Runs the program on this process's devices: args[d][i] is argument i on local device d (the client's addressable
  // device first_device + d), in that order whatever order the executable lists them in. In a multi-process client
  // every process calls it for the same program at the same point, each with its own devices' arguments. Arguments
  // whose index is in `donated` are given to the program (the caller's Buffer is emptied); the rest stay the
  // caller's. Returns outputs[d][j] once every local device finished.
  std::vector<std::vector<Buffer>> execute(std::vector<std::vector<Buffer*>> args, const std::vector<bool>& donated);

 private:
  std::shared_ptr<Client> client_;
  PJRT_LoadedExecutable* e_;
  size_t outputs_;
  int devices_, first_device_;
  std::vector<int> order_;  // order_[k]: the local device of the executable's k-th addressable device
  std::string file_;
};

// How a client is made. One process (the default), or one of `processes` forming one client over all their devices
// (a TPU pod slice's hosts): the group's key-value store goes to the plugin, and the create options node_id and
// num_nodes (the CUDA plugin's) unless the plugin refuses them by name (libtpu builds the slice from the TPU VM's
// environment and takes the store alone).
struct ClientSetup {
  std::shared_ptr<KeyValueStore> store;
  int process = 0, processes = 1;
};

class Client : public std::enable_shared_from_this<Client> {
 public:
  // Loads the plugin (once per path per process) and creates its client. Options: "cpu_device_count" from
  // XFER_PJRT_CPU_DEVICES when set (CPU plugins; TPU and GPU plugins take no options here). Throws xfer::Error
  // naming the file: not loadable, no GetPjrtApi, another major API version, or the client's own error.
  // A process keeps one client per plugin: opening it again returns that client, and with another setup is an error.
  static std::shared_ptr<Client> open(const std::string& plugin_path, const ClientSetup& setup = {});
  // Destroys the process's clients (those no engine holds any more). main() calls it before MPI shuts down: a
  // multi-process client may use the group's key-value store, served over MPI, until it is destroyed.
  static void close_all();
  ~Client();

  const PJRT_Api* api() const { return api_; }
  const std::string& plugin() const { return path_; }
  std::string platform() const;                 // "cpu", "tpu", "cuda"
  std::string api_version() const;              // the plugin's "0.115"
  int device_count() const { return static_cast<int>(devices_.size()); }  // addressable devices
  int global_device_count() const { return global_devices_; }          // every process's
  int process_index() const;                                            // 0 in a single-process client
  PJRT_Device* device(int i) const { return devices_.at(static_cast<size_t>(i)); }
  int local_index(PJRT_Device* d) const;  // its index among the addressable devices; -1 if it is another process's
  // The device's peak memory in use (HBM on a TPU), when the plugin reports it (the CPU plugin does not).
  std::optional<int64_t> peak_device_bytes(int device) const;

  // Compiles a StableHLO module (bytecode or text) for `devices` partitions: one device, the addressable device
  // `first_device` (a portable program); SPMD over global devices [0, devices) when > 1 (first_device 0), which
  // spans processes in a multi-process client. `file` names it in errors.
  std::unique_ptr<Executable> compile(const std::string& code, const std::string& file, int devices, int first_device);
  // A device array holding a copy of `data` (dense row-major).
  Buffer upload(const void* data, DType type, const std::vector<int64_t>& shape, int device);

  // Throws xfer::Error "<what>: <plugin message>" and frees the error; does nothing for nullptr.
  void check(void* error, const std::string& what) const;

 private:
  Client() = default;
  std::string path_;
  const PJRT_Api* api_ = nullptr;
  PJRT_Client* client_ = nullptr;
  std::vector<PJRT_Device*> devices_;
  int global_devices_ = 0;
  ClientSetup setup_;
};

// The CompileOptionsProto bytes for `partitions` SPMD partitions and one replica (Shardy partitioner); for one
// partition, a portable executable so the caller picks the device at execution. Empty options make the CPU plugin
// abort the process (a CHECK, not an error), so the options are always written here.
std::string compile_options(int partitions);

// Whether `path` is a loadable plugin exporting GetPjrtApi: empty if it is, else why not (naming the file). Does not
// create a client.
std::string plugin_problem(const std::string& path);

}  // namespace xfer::pjrt
