// core/log: the one logger (spdlog's default logger), rank-prefixed, writing to stderr.
#pragma once

#include <optional>
#include <string>

#include <spdlog/spdlog.h>

namespace xfer::log {

// Sets the default logger's pattern and level. `level` comes from --log-level; when empty, XFER_LOG is read;
// when both are empty the level is `info`. Accepts trace, debug, info, warn, error, critical, off.
// Throws xfer::Error naming the bad value. Safe to call again (e.g. once the MPI rank is known).
void init(const std::string& level, std::optional<int> rank = std::nullopt);

// Parses a level name; throws xfer::Error (input) that names `source` (the flag or variable it came from).
spdlog::level::level_enum parse_level(const std::string& name, const std::string& source);

}  // namespace xfer::log
