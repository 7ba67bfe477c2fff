// core/logline: finished lines into xfer's logger, for translation units that must not include spdlog or fmt —
// those that include LibTorch 2.x, whose bundled fmt shadows the system's. Everything else uses spdlog directly.
#pragma once

#include <string>

namespace xfer::log {

void debug(const std::string& line);
void info(const std::string& line);
void warn(const std::string& line);

}  // namespace xfer::log
