#include "xfer/core/build_info.hpp"

namespace xfer::build_info {
const std::string& version() { static const std::string v = "0.1.0"; return v; }
const std::string& git_commit() { static const std::string v = "9443f9b82fc6f246c760e9f09a54437a9d783b24"; return v; }
bool git_dirty() { return true; }
const std::string& compiler() { static const std::string v = "GNU 12.2.0"; return v; }
const std::string& build_type() { static const std::string v = "Release"; return v; }
}  // namespace xfer::build_info
