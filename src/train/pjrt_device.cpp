// The --device words of the PJRT engine (train/pjrt_engine.hpp), torch-free: the xfer executable checks them.
#include <cstdlib>

#include "pjrt_engine.hpp"

namespace xfer::train {

bool is_pjrt_device(const std::string& request) { return request == "pjrt" || request.rfind("pjrt:", 0) == 0; }

std::string pjrt_plugin_path(const std::string& request) {
  if (request.rfind("pjrt:", 0) == 0 && request.size() > 5) return request.substr(5);
  const char* v = std::getenv("XFER_PJRT_PLUGIN");
  return v && *v ? v : "";
}

}  // namespace xfer::train
