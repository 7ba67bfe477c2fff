#include "xfer/pjrt/runtime.hpp"

#include <dlfcn.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <stdexcept>

#include "pjrt_c_api.h"
#include "xfer/core/error.hpp"

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

std::shared_ptr<Client> Client::open(const std::string& plugin_path) {
  static std::mutex mu;
  static std::map<std::string, std::shared_ptr<Client>> clients;
  std::lock_guard<std::mutex> lock(mu);
  if (auto it = clients.find(plugin_path); it != clients.end()) return it->second;

  std::string problem;
  const PJRT_Api* api = load_api(plugin_path, &problem);
  if (!api) throw Error::input(problem);
  std::shared_ptr<Client> c(new Client());
  c->path_ = plugin_path;
  c->api_ = api;
  const std::string where = "PJRT plugin " + plugin_path;
  PJRT_Plugin_Initialize_Args init{};
  init.struct_size = PJRT_Plugin_Initialize_Args_STRUCT_SIZE;
  c->check(api->PJRT_Plugin_Initialize(&init), where + ": initialisation");

  std::vector<PJRT_NamedValue> options;
  if (const char* v = std::getenv("XFER_PJRT_CPU_DEVICES"); v && *v) {
    PJRT_NamedValue o{};
    o.struct_size = PJRT_NamedValue_STRUCT_SIZE;
    o.name = "cpu_device_count";
    o.name_size = 16;
    o.type = PJRT_NamedValue_kInt64;
    o.int64_value = std::atoll(v);
    o.value_size = 1;
    options.push_back(o);
  }
  PJRT_Client_Create_Args cc{};
  cc.struct_size = PJRT_Client_Create_Args_STRUCT_SIZE;
  cc.create_options = options.data();
  cc.num_options = options.size();
  c->check(api->PJRT_Client_Create(&cc), where + ": creating the client");
  c->client_ = cc.client;

  PJRT_Client_AddressableDevices_Args ad{};
  ad.struct_size = PJRT_Client_AddressableDevices_Args_STRUCT_SIZE;
  ad.client = c->client_;
  c->check(api->PJRT_Client_AddressableDevices(&ad), where + ": listing devices");
  c->devices_.assign(ad.addressable_devices, ad.addressable_devices + ad.num_addressable_devices);
  if (c->devices_.empty()) throw Error::environment(where + ": the client has no addressable device");
  clients[plugin_path] = c;
  return c;
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
  if (devices < 1 || first_device < 0 || first_device + devices > device_count())
    throw Error::input(file + ": the program needs " + std::to_string(devices) + " device(s) from device " +
                       std::to_string(first_device) + "; plugin " + path_ + " has " + std::to_string(device_count()) +
                       " (a CPU plugin: set XFER_PJRT_CPU_DEVICES)");
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
      file_(std::move(file)) {}

Executable::~Executable() {
  PJRT_LoadedExecutable_Destroy_Args d{};
  d.struct_size = PJRT_LoadedExecutable_Destroy_Args_STRUCT_SIZE;
  d.executable = e_;
  if (PJRT_Error* err = client_->api()->PJRT_LoadedExecutable_Destroy(&d)) error_text(client_->api(), err);
}

std::vector<std::vector<Buffer>> Executable::execute(std::vector<std::vector<Buffer*>> args,
                                                     const std::vector<bool>& donated) {
  const PJRT_Api* api = client_->api();
  if (args.size() != static_cast<size_t>(devices_))
    throw std::invalid_argument(file_ + ": execute with " + std::to_string(args.size()) + " argument lists for " +
                                std::to_string(devices_) + " devices");
  const size_t n_args = args.front().size();
  std::vector<std::vector<PJRT_Buffer*>> raw(args.size());
  std::vector<PJRT_Buffer* const*> arg_lists;
  for (size_t d = 0; d < args.size(); ++d) {
    if (args[d].size() != n_args) throw std::invalid_argument(file_ + ": argument lists differ in length");
    for (Buffer* b : args[d]) raw[d].push_back(b->get());
    arg_lists.push_back(raw[d].data());
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
  for (size_t d = 0; d < args.size(); ++d)
    for (PJRT_Buffer* b : out[d]) result[d].emplace_back(api, b);
  for (PJRT_Event* ev : done) await_and_destroy(api, ev, file_ + ": PJRT execution");
  return result;
}

}  // namespace xfer::pjrt
