// The --device words of the PJRT engine (train/pjrt_engine.hpp), torch-free: the xfer executable checks them.
#include <cerrno>
#include <cstdlib>

#include "pjrt_engine.hpp"
#include "xfer/data/dataset.hpp"
#include "xfer/train/pjrt_checks.hpp"

namespace xfer::train {

bool is_pjrt_device(const std::string& request) { return request == "pjrt" || request.rfind("pjrt:", 0) == 0; }

std::string pjrt_plugin_path(const std::string& request) {
  if (request.rfind("pjrt:", 0) == 0 && request.size() > 5) return request.substr(5);
  const char* v = std::getenv("XFER_PJRT_PLUGIN");
  return v && *v ? v : "";
}

int pjrt_requested_devices() {
  const char* v = std::getenv("XFER_PJRT_DEVICES");
  if (!v || !*v) return 1;
  char* end = nullptr;
  errno = 0;
  const long n = std::strtol(v, &end, 10);
  if (errno != 0 || *end != '\0' || n < 1 || n > 65536)  // "abc", "0", "-1" were taken as 1 device (probe 3 W-6.1)
    throw Error::input(std::string("XFER_PJRT_DEVICES: expected a whole number of devices from 1 to 65536, got '") + v +
                       "'");
  return static_cast<int>(n);
}

pjrt::BundleRequest pjrt_bundle_request(const grid::TrialConfig& t, const std::string& backbone, const data::Dataset& d,
                                        int devices) {
  pjrt::BundleRequest request;
  request.backbone = backbone, request.input_size = t.input_size, request.classes = d.num_classes();
  request.batch = t.batch_size, request.devices = devices, request.optimizer = std::string(name(t.optimizer));
  request.beta1 = t.beta1, request.beta2 = t.beta2, request.eps = t.eps, request.momentum = t.momentum;
  request.nesterov = t.nesterov, request.label_smoothing = t.label_smoothing;
  request.multilabel = d.multilabel;
  return request;
}

void check_pjrt_bundle(const grid::TrialConfig& t, const std::string& backbone, const data::Dataset& d) {
  if (t.ranks_per_trial > 1) return;
  pjrt::check_bundle(pjrt_bundle_request(t, backbone, d, pjrt_requested_devices()),
                     static_cast<int64_t>(d.indices(data::Split::train).size()));
}

}  // namespace xfer::train
