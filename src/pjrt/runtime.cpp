#include "xfer/pjrt/runtime.hpp"

#include <dlfcn.h>

#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>

#include "pjrt_c_api.h"
#include "xfer/core/error.hpp"
#include "xfer/core/key_value_store.hpp"
#include "xfer/core/logline.hpp"

namespace xfer::pjrt {

DType dtype_of(const std::string& name) {
  if (name == "float32") return DType::f32;
  if (name == "int32") return DType::s32;
  throw std::invalid_argument("dtype " + name + ": expected float32 or int32");
}

size_t dtype_bytes(DType) { return 4; }

namespace {

PJRT_Buffer_Type buffer_type(DType t) { return t == DType::f32 ? PJRT_Buffer_Type_F32 : PJRT_Buffer_Type_S32; }

std::string error_text(const PJRT_Api* api, PJRT_Error* e) {
  PJRT_Error_Message_Args m{};
  m.struct_size = PJRT_Error_Message_Args_STRUCT_SIZE;
  m.error = e;
  api->PJRT_Error_Message(&m);
  std::string text(m.message, m.message_size);
  PJRT_Error_Destroy_Args d{};
  d.struct_size = PJRT_Error_Destroy_Args_STRUCT_SIZE;
  d.error = e;
  api->PJRT_Error_Destroy(&d);
  return text;
}

void check_api(const PJRT_Api* api, PJRT_Error* e, const std::string& what) {
  if (e) throw Error(what + ": " + error_text(api, e));
}

void await_and_destroy(const PJRT_Api* api, PJRT_Event* ev, const std::string& what) {
  if (!ev) return;
  PJRT_Event_Await_Args a{};
  a.struct_size = PJRT_Event_Await_Args_STRUCT_SIZE;
  a.event = ev;
  PJRT_Error* err = api->PJRT_Event_Await(&a);
  PJRT_Event_Destroy_Args d{};
  d.struct_size = PJRT_Event_Destroy_Args_STRUCT_SIZE;
  d.event = ev;
  api->PJRT_Event_Destroy(&d);
  check_api(api, err, what);
}

using GetApi = const PJRT_Api* (*)();

// dlopen + dlsym("GetPjrtApi"), with the file named in every failure.
const PJRT_Api* load_api(const std::string& path, std::string* problem) {
  void* h = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    *problem = "PJRT plugin " + path + ": cannot load it (" + ::dlerror() + ")";
    return nullptr;
  }
  auto get = reinterpret_cast<GetApi>(::dlsym(h, "GetPjrtApi"));
  if (!get) {
    *problem = "PJRT plugin " + path + ": not a PJRT plugin (it exports no GetPjrtApi)";
    return nullptr;
  }
  const PJRT_Api* api = get();
  if (!api) {
    *problem = "PJRT plugin " + path + ": GetPjrtApi returned nothing";
    return nullptr;
  }
  if (api->pjrt_api_version.major_version != PJRT_API_MAJOR) {
    *problem = "PJRT plugin " + path + ": PJRT C API " + std::to_string(api->pjrt_api_version.major_version) + "." +
               std::to_string(api->pjrt_api_version.minor_version) + ", xfer speaks major version " +
               std::to_string(PJRT_API_MAJOR);
    return nullptr;
  }
  return api;
}

// Protocol-buffer wire format, the little of it compile options need: varint fields and nested messages.
void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
void put_varint_field(std::string& out, int field, uint64_t v) {
  put_varint(out, static_cast<uint64_t>(field) << 3);
  put_varint(out, v);
}
void put_message_field(std::string& out, int field, const std::string& message) {
  put_varint(out, (static_cast<uint64_t>(field) << 3) | 2);
  put_varint(out, message.size());
  out += message;
}

// ---- the key-value store callbacks of a multi-process client (PJRT_Client_Create_Args::kv_*) -----------------
// Thread-safe because the store is; a value handed to the plugin is a new[] copy it frees with delete_value.
PJRT_Error* callback_error(PJRT_CallbackError* make, PJRT_Error_Code code, const std::string& message) {
  return (*make)(code, message.data(), message.size());
}
void delete_value(char* v) { delete[] v; }
char* copy_value(const std::string& v) {
  char* p = new char[std::max<size_t>(1, v.size())];
  std::memcpy(p, v.data(), v.size());
  return p;
}

// A get or try_get callback's answer: the value `lookup` finds, or the error `code` with `missing` when it finds none.
template <class Args, class Lookup>
PJRT_Error* answer(Args* a, Lookup lookup, PJRT_Error_Code code, const std::string& missing) {
  try {
    auto v = lookup(static_cast<KeyValueStore*>(a->user_arg), std::string(a->key, a->key_size));
    if (!v) return callback_error(a->callback_error, code, missing);
    a->value = copy_value(*v);
    a->value_size = v->size();
    a->value_deleter_callback = delete_value;
    return nullptr;
  } catch (const std::exception& e) {
    return callback_error(a->callback_error, PJRT_Error_Code_INTERNAL, e.what());
  }
}

PJRT_Error* kv_get(PJRT_KeyValueGetCallback_Args* a) {
  const auto timeout = std::chrono::milliseconds(a->timeout_in_ms);
  return answer(a, [&](KeyValueStore* s, const std::string& key) { return s->get(key, timeout); },
                PJRT_Error_Code_DEADLINE_EXCEEDED,
                "xfer key-value store: no process set " + std::string(a->key, a->key_size) + " within " +
                    std::to_string(a->timeout_in_ms) + " ms");
}

PJRT_Error* kv_try_get(PJRT_KeyValueTryGetCallback_Args* a) {
  return answer(a, [](KeyValueStore* s, const std::string& key) { return s->try_get(key); }, PJRT_Error_Code_NOT_FOUND,
                "xfer key-value store: " + std::string(a->key, a->key_size) + " is not set");
}

PJRT_Error* kv_put(PJRT_KeyValuePutCallback_Args* a) {
  try {
    static_cast<KeyValueStore*>(a->user_arg)->put(std::string(a->key, a->key_size), std::string(a->value, a->value_size));
    return nullptr;
  } catch (const std::exception& e) {
    return callback_error(a->callback_error, PJRT_Error_Code_INTERNAL, e.what());
  }
}

PJRT_NamedValue int_option(const char* name, int64_t value) {
  PJRT_NamedValue o{};
  o.struct_size = PJRT_NamedValue_STRUCT_SIZE;
  o.name = name;
  o.name_size = std::strlen(name);
  o.type = PJRT_NamedValue_kInt64;
  o.int64_value = value;
  o.value_size = 1;
  return o;
}

}  // namespace

std::string compile_options(int partitions) {
  if (partitions < 1) throw std::invalid_argument("compile_options: partitions must be >= 1");
  // xla.ExecutableBuildOptionsProto: num_replicas = 4, num_partitions = 5, use_spmd_partitioning = 6,
  // use_shardy_partitioner = 19. xla.CompileOptionsProto: executable_build_options = 3,
  // compile_portable_executable = 4 (xla/pjrt/proto/compile_options.proto).
  std::string build;
  put_varint_field(build, 4, 1);
  put_varint_field(build, 5, static_cast<uint64_t>(partitions));
  if (partitions > 1) {
    put_varint_field(build, 6, 1);
    put_varint_field(build, 19, 1);
  }
  std::string options;
  put_message_field(options, 3, build);
  if (partitions == 1) put_varint_field(options, 4, 1);
  return options;
}

std::string plugin_problem(const std::string& path) {
  std::string problem;
  load_api(path, &problem);
  return problem;
}

// ---- Buffer -----------------------------------------------------------------------------------------------------

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    this->~Buffer();
    api_ = o.api_;
    b_ = o.b_;
    o.b_ = nullptr;
  }
  return *this;
}

Buffer::~Buffer() {
  if (!b_) return;
  PJRT_Buffer_Destroy_Args d{};
  d.struct_size = PJRT_Buffer_Destroy_Args_STRUCT_SIZE;
  d.buffer = b_;
  if (PJRT_Error* e = api_->PJRT_Buffer_Destroy(&d)) error_text(api_, e);
  b_ = nullptr;
}

void Buffer::to_host(void* dst, size_t bytes) const {
  PJRT_Buffer_ToHostBuffer_Args a{};
  a.struct_size = PJRT_Buffer_ToHostBuffer_Args_STRUCT_SIZE;
  a.src = b_;
  a.dst = nullptr;
  check_api(api_, api_->PJRT_Buffer_ToHostBuffer(&a), "PJRT device-to-host size query");
  if (a.dst_size != bytes)
    throw Error("PJRT device-to-host copy: the device array has " + std::to_string(a.dst_size) + " bytes, expected " +
                std::to_string(bytes));
  a.dst = dst;
  a.dst_size = bytes;
  a.event = nullptr;
  check_api(api_, api_->PJRT_Buffer_ToHostBuffer(&a), "PJRT device-to-host copy");
  await_and_destroy(api_, a.event, "PJRT device-to-host copy");
}

// ---- Client -----------------------------------------------------------------------------------------------------

namespace {
std::mutex clients_mu;
std::map<std::string, std::shared_ptr<Client>>& open_clients() {
  static std::map<std::string, std::shared_ptr<Client>> clients;
  return clients;
}
}  // namespace

void Client::close_all() {
  std::lock_guard<std::mutex> lock(clients_mu);
  open_clients().clear();
}

std::shared_ptr<Client> Client::open(const std::string& plugin_path, const ClientSetup& setup) {
  std::lock_guard<std::mutex> lock(clients_mu);
  auto& clients = open_clients();
  const std::string where = "PJRT plugin " + plugin_path;
  if (auto it = clients.find(plugin_path); it != clients.end()) {
    const ClientSetup& had = it->second->setup_;
    if (had.processes != setup.processes || had.process != setup.process || had.store != setup.store)
      throw Error::input(where + ": this process's client was made as process " + std::to_string(had.process) +
                         " of " + std::to_string(had.processes) + ", and a trial now asks for process " +
                         std::to_string(setup.process) + " of " + std::to_string(setup.processes) +
                         " (a process keeps one client per plugin: TPU runtimes allow one). Give every trial of the "
                         "sweep the same ranks_per_trial with the PJRT engine");
    return it->second;
  }
  if (setup.processes > 1 && !setup.store)
    throw std::invalid_argument(where + ": a multi-process client needs the group's key-value store");

  std::string problem;
  const PJRT_Api* api = load_api(plugin_path, &problem);
  if (!api) throw Error::input(problem);
  std::shared_ptr<Client> c(new Client());
  c->path_ = plugin_path;
  c->api_ = api;
  c->setup_ = setup;
  PJRT_Plugin_Initialize_Args init{};
  init.struct_size = PJRT_Plugin_Initialize_Args_STRUCT_SIZE;
  c->check(api->PJRT_Plugin_Initialize(&init), where + ": initialisation");

  std::vector<PJRT_NamedValue> options;
  if (const char* v = std::getenv("XFER_PJRT_CPU_DEVICES"); v && *v) options.push_back(int_option("cpu_device_count", std::atoll(v)));
  const size_t plain = options.size();
  if (setup.processes > 1) {
    options.push_back(int_option("node_id", setup.process));
    options.push_back(int_option("num_nodes", setup.processes));
  }
  auto create = [&](size_t n_options) -> PJRT_Error* {
    PJRT_Client_Create_Args cc{};
    cc.struct_size = PJRT_Client_Create_Args_STRUCT_SIZE;
    cc.create_options = options.data();
    cc.num_options = n_options;
    if (setup.store) {
      cc.kv_get_callback = kv_get;
      cc.kv_get_user_arg = setup.store.get();
      cc.kv_try_get_callback = kv_try_get;
      cc.kv_try_get_user_arg = setup.store.get();
      cc.kv_put_callback = kv_put;
      cc.kv_put_user_arg = setup.store.get();
    }
    PJRT_Error* e = api->PJRT_Client_Create(&cc);
    if (!e) c->client_ = cc.client;
    return e;
  };
  PJRT_Error* e = create(options.size());
  if (e && options.size() > plain) {
    // Plugins check their option names (the CPU plugin: "Unexpected option name passed to PJRT_Client_Create").
    // node_id and num_nodes are the CUDA plugin's; libtpu forms a pod slice from the TPU VM's environment and the
    // store. A plugin that refuses them by name gets the store alone.
    const std::string text = error_text(api, e);
    if (text.find("node_id") == std::string::npos && text.find("num_nodes") == std::string::npos &&
        text.find("nexpected option") == std::string::npos)
      throw Error(where + ": creating the client (process " + std::to_string(setup.process) + " of " +
                  std::to_string(setup.processes) + "): " + text);
    log::info(where + " takes no node_id/num_nodes (" + text + "): creating its client with the key-value store alone");
    e = create(plain);
  }
  c->check(e, where + ": creating the client");

  PJRT_Client_AddressableDevices_Args ad{};
  ad.struct_size = PJRT_Client_AddressableDevices_Args_STRUCT_SIZE;
  ad.client = c->client_;
  c->check(api->PJRT_Client_AddressableDevices(&ad), where + ": listing devices");
  c->devices_.assign(ad.addressable_devices, ad.addressable_devices + ad.num_addressable_devices);
  if (c->devices_.empty()) throw Error::environment(where + ": the client has no addressable device");
  PJRT_Client_Devices_Args gd{};
  gd.struct_size = PJRT_Client_Devices_Args_STRUCT_SIZE;
  gd.client = c->client_;
  c->check(api->PJRT_Client_Devices(&gd), where + ": listing devices");
  c->global_devices_ = static_cast<int>(gd.num_devices);
  clients[plugin_path] = c;
  return c;
}

int Client::process_index() const {
  PJRT_Client_ProcessIndex_Args a{};
  a.struct_size = PJRT_Client_ProcessIndex_Args_STRUCT_SIZE;
  a.client = client_;
  check(api_->PJRT_Client_ProcessIndex(&a), "PJRT process index");
  return a.process_index;
}

std::optional<int64_t> Client::peak_device_bytes(int device_index) const {
  // Plugins older than the call have a shorter PJRT_Api: read the pointer only inside the plugin's struct.
  if (api_->struct_size < offsetof(PJRT_Api, PJRT_Device_MemoryStats) + sizeof(void*) || !api_->PJRT_Device_MemoryStats)
    return std::nullopt;
  PJRT_Device_MemoryStats_Args a{};
  a.struct_size = PJRT_Device_MemoryStats_Args_STRUCT_SIZE;
  a.device = device(device_index);
  if (PJRT_Error* e = api_->PJRT_Device_MemoryStats(&a)) {
    error_text(api_, e);  // unimplemented (the CPU plugin): no figure
    return std::nullopt;
  }
  if (!a.peak_bytes_in_use_is_set) return std::nullopt;
  return a.peak_bytes_in_use;
}

int Client::local_index(PJRT_Device* d) const {
  for (size_t i = 0; i < devices_.size(); ++i)
    if (devices_[i] == d) return static_cast<int>(i);
  return -1;
}

Client::~Client() {
  if (!client_) return;
  PJRT_Client_Destroy_Args d{};
  d.struct_size = PJRT_Client_Destroy_Args_STRUCT_SIZE;
  d.client = client_;
  if (PJRT_Error* e = api_->PJRT_Client_Destroy(&d)) error_text(api_, e);
}

void Client::check(void* error, const std::string& what) const {
  check_api(api_, static_cast<PJRT_Error*>(error), what);
}

std::string Client::platform() const {
  PJRT_Client_PlatformName_Args a{};
  a.struct_size = PJRT_Client_PlatformName_Args_STRUCT_SIZE;
  a.client = client_;
  check(api_->PJRT_Client_PlatformName(&a), "PJRT platform name");
  return std::string(a.platform_name, a.platform_name_size);
}

std::string Client::api_version() const {
  return std::to_string(api_->pjrt_api_version.major_version) + "." +
         std::to_string(api_->pjrt_api_version.minor_version);
}

std::unique_ptr<Executable> Client::compile(const std::string& code, const std::string& file, int devices,
                                            int first_device) {
  const bool bad = devices < 1 || first_device < 0 ||
                   (devices == 1 ? first_device >= device_count() : first_device != 0 || devices > global_devices_);
  if (bad)
    throw Error::input(file + ": the program needs " + std::to_string(devices) + " device(s) from device " +
                       std::to_string(first_device) + "; plugin " + path_ + " has " + std::to_string(device_count()) +
                       " here, " + std::to_string(global_devices_) + " in all (a CPU plugin: set XFER_PJRT_CPU_DEVICES)");
  if (code.empty()) throw Error::input(file + ": empty program");
  const std::string options = compile_options(devices);
  std::string text = code;  // PJRT_Program::code is not const
  PJRT_Program p{};
  p.struct_size = PJRT_Program_STRUCT_SIZE;
  p.code = text.data();
  p.code_size = text.size();
  p.format = "mlir";
  p.format_size = 4;
  PJRT_Client_Compile_Args a{};
  a.struct_size = PJRT_Client_Compile_Args_STRUCT_SIZE;
  a.client = client_;
  a.program = &p;
  a.compile_options = options.data();
  a.compile_options_size = options.size();
  check(api_->PJRT_Client_Compile(&a), file + ": PJRT could not compile it");

  PJRT_LoadedExecutable_GetExecutable_Args ge{};
  ge.struct_size = PJRT_LoadedExecutable_GetExecutable_Args_STRUCT_SIZE;
  ge.loaded_executable = a.executable;
  check(api_->PJRT_LoadedExecutable_GetExecutable(&ge), file + ": executable");
  PJRT_Executable_NumOutputs_Args no{};
  no.struct_size = PJRT_Executable_NumOutputs_Args_STRUCT_SIZE;
  no.executable = ge.executable;
  check(api_->PJRT_Executable_NumOutputs(&no), file + ": number of outputs");
  PJRT_Executable_Destroy_Args ed{};
  ed.struct_size = PJRT_Executable_Destroy_Args_STRUCT_SIZE;
  ed.executable = ge.executable;
  check(api_->PJRT_Executable_Destroy(&ed), file + ": executable");
  return std::make_unique<Executable>(shared_from_this(), a.executable, no.num_outputs, devices, first_device, file);
}

Buffer Client::upload(const void* data, DType type, const std::vector<int64_t>& shape, int device_index) {
  PJRT_Client_BufferFromHostBuffer_Args a{};
  a.struct_size = PJRT_Client_BufferFromHostBuffer_Args_STRUCT_SIZE;
  a.client = client_;
  a.data = data;
  a.type = buffer_type(type);
  a.dims = shape.data();
  a.num_dims = shape.size();
  a.host_buffer_semantics = PJRT_HostBufferSemantics_kImmutableUntilTransferCompletes;
  a.device = device(device_index);
  check(api_->PJRT_Client_BufferFromHostBuffer(&a), "PJRT host-to-device copy");
  Buffer b(api_, a.buffer);
  await_and_destroy(api_, a.done_with_host_buffer, "PJRT host-to-device copy");
  return b;
}

// ---- Executable -------------------------------------------------------------------------------------------------

Executable::Executable(std::shared_ptr<Client> client, PJRT_LoadedExecutable* e, size_t outputs, int devices,
                       int first_device, std::string file)
    : client_(std::move(client)), e_(e), outputs_(outputs), devices_(devices), first_device_(first_device),
      file_(std::move(file)) {
  if (devices_ == 1) {
    order_ = {0};  // portable: run on the device given at execution
    return;
  }
  // Argument lists go in the executable's order of addressable devices; the caller's are in the client's order.
  PJRT_LoadedExecutable_AddressableDevices_Args a{};
  a.struct_size = PJRT_LoadedExecutable_AddressableDevices_Args_STRUCT_SIZE;
  a.executable = e_;
  client_->check(client_->api()->PJRT_LoadedExecutable_AddressableDevices(&a), file_ + ": its devices");
  for (size_t k = 0; k < a.num_addressable_devices; ++k) {
    const int local = client_->local_index(a.addressable_devices[k]);
    if (local < 0) throw Error(file_ + ": the executable lists a device this process cannot address");
    order_.push_back(local - first_device_);
  }
  if (order_.empty()) throw Error::input(file_ + ": none of the program's " + std::to_string(devices_) +
                                         " devices belongs to this process");
}

Executable::~Executable() {
  PJRT_LoadedExecutable_Destroy_Args d{};
  d.struct_size = PJRT_LoadedExecutable_Destroy_Args_STRUCT_SIZE;
  d.executable = e_;
  if (PJRT_Error* err = client_->api()->PJRT_LoadedExecutable_Destroy(&d)) error_text(client_->api(), err);
}

std::vector<std::vector<Buffer>> Executable::execute(std::vector<std::vector<Buffer*>> args,
                                                     const std::vector<bool>& donated) {
  const PJRT_Api* api = client_->api();
  if (args.size() != order_.size())
    throw std::invalid_argument(file_ + ": execute with " + std::to_string(args.size()) + " argument lists for " +
                                std::to_string(order_.size()) + " local devices");
  const size_t n_args = args.front().size();
  std::vector<std::vector<PJRT_Buffer*>> raw(args.size());
  std::vector<PJRT_Buffer* const*> arg_lists;
  for (size_t k = 0; k < order_.size(); ++k) {
    const auto& list = args.at(static_cast<size_t>(order_[k]));
    if (list.size() != n_args) throw std::invalid_argument(file_ + ": argument lists differ in length");
    for (Buffer* b : list) raw[k].push_back(b->get());
    arg_lists.push_back(raw[k].data());
  }
  std::vector<std::vector<PJRT_Buffer*>> out(args.size(), std::vector<PJRT_Buffer*>(outputs_, nullptr));
  std::vector<PJRT_Buffer**> out_lists;
  for (auto& o : out) out_lists.push_back(o.data());
  std::vector<PJRT_Event*> done(args.size(), nullptr);

  PJRT_ExecuteOptions opts{};
  opts.struct_size = PJRT_ExecuteOptions_STRUCT_SIZE;
  PJRT_LoadedExecutable_Execute_Args a{};
  a.struct_size = PJRT_LoadedExecutable_Execute_Args_STRUCT_SIZE;
  a.executable = e_;
  a.options = &opts;
  a.argument_lists = arg_lists.data();
  a.num_devices = args.size();
  a.num_args = n_args;
  a.output_lists = out_lists.data();
  a.device_complete_events = done.data();
  // A one-device program is compiled portable: it runs on the device this engine was given (the local rank's).
  a.execute_device = devices_ == 1 ? client_->device(first_device_) : nullptr;
  client_->check(api->PJRT_LoadedExecutable_Execute(&a), file_ + ": PJRT execution failed");
  // The program owns the donated inputs now (their device memory is reused for outputs): drop our handles.
  for (auto& list : args)
    for (size_t i = 0; i < list.size(); ++i)
      if (i < donated.size() && donated[i]) *list[i] = Buffer();
  std::vector<std::vector<Buffer>> result(args.size());
  for (size_t k = 0; k < order_.size(); ++k)
    for (PJRT_Buffer* b : out[k]) result[static_cast<size_t>(order_[k])].emplace_back(api, b);
  for (PJRT_Event* ev : done) await_and_destroy(api, ev, file_ + ": PJRT execution");
  return result;
}

}  // namespace xfer::pjrt
