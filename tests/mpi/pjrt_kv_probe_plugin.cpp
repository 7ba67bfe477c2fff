// A PJRT plugin of the test suite's own that does what a multi-process plugin does first: in PJRT_Client_Create it
// reads node_id and num_nodes (the CUDA plugin's create options), puts its node's address into the key-value store
// the caller passed, reads every other node's with a blocking get, and probes a missing key with try_get and with a
// short get. It makes no client: it answers with an error that reports what it saw, so the test can check xfer's
// store callbacks through the C ABI across real MPI processes (libtpu's and the CUDA plugin's own use of the store
// cannot run here: no TPU, no GPU).
#include <cstring>
#include <string>

#include "pjrt_c_api.h"

struct PJRT_Error {
  PJRT_Error_Code code;
  std::string message;
};

namespace {

PJRT_Error* make_error(PJRT_Error_Code code, const char* message, size_t size) {
  return new PJRT_Error{code, std::string(message, size)};
}
PJRT_CallbackError make_error_fn = make_error;

PJRT_Error* fail(const std::string& m) { return new PJRT_Error{PJRT_Error_Code_UNIMPLEMENTED, m}; }

void error_destroy(PJRT_Error_Destroy_Args* a) { delete a->error; }
void error_message(PJRT_Error_Message_Args* a) {
  a->message = a->error->message.data();
  a->message_size = a->error->message.size();
}
PJRT_Error* error_code(PJRT_Error_GetCode_Args* a) {
  a->code = a->error->code;
  return nullptr;
}
PJRT_Error* initialize(PJRT_Plugin_Initialize_Args*) { return nullptr; }

// "<code>" of a get's error, or "value:<v>".
std::string take(PJRT_Error* e, char* value, size_t size, void (*deleter)(char*)) {
  if (e) {
    const std::string out = "code " + std::to_string(static_cast<int>(e->code));
    delete e;
    return out;
  }
  std::string v(value, size);
  deleter(value);
  return "value:" + v;
}

PJRT_Error* client_create(PJRT_Client_Create_Args* a) {
  int64_t node = -1, nodes = -1;
  for (size_t i = 0; i < a->num_options; ++i) {
    const std::string name(a->create_options[i].name, a->create_options[i].name_size);
    if (name == "node_id") node = a->create_options[i].int64_value;
    if (name == "num_nodes") nodes = a->create_options[i].int64_value;
  }
  if (node < 0 || nodes < 1) return fail("probe: the caller passed no node and node count");
  if (!a->kv_get_callback || !a->kv_put_callback || !a->kv_try_get_callback) return fail("probe: no key-value store");

  const std::string mine = "probe/address/" + std::to_string(node);
  const std::string address = "host-" + std::to_string(node) + ":" + std::string(1000 * static_cast<size_t>(node), 'x');
  PJRT_KeyValuePutCallback_Args put{};
  put.struct_size = PJRT_KeyValuePutCallback_Args_STRUCT_SIZE;
  put.key = mine.data();
  put.key_size = mine.size();
  put.value = address.data();
  put.value_size = address.size();
  put.callback_error = &make_error_fn;
  put.user_arg = a->kv_put_user_arg;
  if (PJRT_Error* e = a->kv_put_callback(&put)) return e;

  // A blocking get (timeout in ms) or, with timeout < 0, a try_get: "value:<v>" or "code <n>".
  auto lookup = [&](const std::string& key, int timeout) {
    if (timeout < 0) {
      PJRT_KeyValueTryGetCallback_Args g{};
      g.struct_size = PJRT_KeyValueTryGetCallback_Args_STRUCT_SIZE;
      g.key = key.data();
      g.key_size = key.size();
      g.callback_error = &make_error_fn;
      g.user_arg = a->kv_try_get_user_arg;
      PJRT_Error* e = a->kv_try_get_callback(&g);  // before reading g's outputs
      return take(e, g.value, g.value_size, g.value_deleter_callback);
    }
    PJRT_KeyValueGetCallback_Args g{};
    g.struct_size = PJRT_KeyValueGetCallback_Args_STRUCT_SIZE;
    g.key = key.data();
    g.key_size = key.size();
    g.timeout_in_ms = timeout;
    g.callback_error = &make_error_fn;
    g.user_arg = a->kv_get_user_arg;
    PJRT_Error* e = a->kv_get_callback(&g);
    return take(e, g.value, g.value_size, g.value_deleter_callback);
  };
  std::string report = "probe node " + std::to_string(node) + " of " + std::to_string(nodes) + " saw";
  for (int64_t other = 0; other < nodes; ++other) {
    const std::string v = lookup("probe/address/" + std::to_string(other), 60000);
    report += " [" + std::to_string(other) + " " + v.substr(0, 14) + " " + std::to_string(v.size()) + "]";
  }
  report += "; try_get missing: " + lookup("probe/missing", -1);
  report += "; get missing: " + lookup("probe/missing", 200);
  return fail(report);
}

PJRT_Api make_api() {
  PJRT_Api api{};
  api.struct_size = PJRT_Api_STRUCT_SIZE;
  api.pjrt_api_version.struct_size = PJRT_Api_Version_STRUCT_SIZE;
  api.pjrt_api_version.major_version = PJRT_API_MAJOR;
  api.pjrt_api_version.minor_version = PJRT_API_MINOR;
  api.PJRT_Error_Destroy = error_destroy;
  api.PJRT_Error_Message = error_message;
  api.PJRT_Error_GetCode = error_code;
  api.PJRT_Plugin_Initialize = initialize;
  api.PJRT_Client_Create = client_create;
  return api;
}

}  // namespace

extern "C" __attribute__((visibility("default"))) const PJRT_Api* GetPjrtApi() {
  static const PJRT_Api api = make_api();
  return &api;
}
