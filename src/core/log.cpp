#include "xfer/core/log.hpp"

#include <cstdlib>

#include <spdlog/sinks/stdout_sinks.h>

#include "xfer/core/error.hpp"

namespace xfer::log {

spdlog::level::level_enum parse_level(const std::string& name, const std::string& source) {
  static const std::pair<const char*, spdlog::level::level_enum> kLevels[] = {
      {"trace", spdlog::level::trace}, {"debug", spdlog::level::debug},
      {"info", spdlog::level::info},   {"warn", spdlog::level::warn},
      {"warning", spdlog::level::warn}, {"error", spdlog::level::err},
      {"critical", spdlog::level::critical}, {"off", spdlog::level::off}};
  for (const auto& [n, l] : kLevels)
    if (name == n) return l;
  throw Error::input(source + ": unknown log level '" + name +
                     "'; expected one of trace, debug, info, warn, error, critical, off");
}

void init(const std::string& level, std::optional<int> rank) {
  std::string name = level;
  std::string source = "--log-level";
  if (name.empty()) {
    if (const char* env = std::getenv("XFER_LOG"); env && *env) {
      name = env;
      source = "XFER_LOG";
    } else {
      name = "info";
    }
  }
  const auto lvl = parse_level(name, source);
  // stderr, so stdout stays clean for --json and for tables piped into other tools.
  auto logger = spdlog::default_logger();
  if (!logger || logger->name() != "xfer") {
    logger = spdlog::stderr_logger_mt("xfer");
    spdlog::set_default_logger(logger);
  }
  const std::string who = rank ? "[rank " + std::to_string(*rank) + "] " : "";
  logger->set_pattern("[%Y-%m-%d %H:%M:%S.%e] " + who + "[%l] %v");
  logger->set_level(lvl);
  logger->flush_on(spdlog::level::warn);
}

}  // namespace xfer::log

namespace xfer::log {

void debug(const std::string& line) { spdlog::debug("{}", line); }
void info(const std::string& line) { spdlog::info("{}", line); }
void warn(const std::string& line) { spdlog::warn("{}", line); }

}  // namespace xfer::log
