#include "xfer/core/log.hpp"

#include <cstdio>
#include <cstdlib>
#include <mutex>

#include <spdlog/sinks/base_sink.h>

#include "xfer/core/error.hpp"
#include "xfer/core/visible.hpp"

namespace xfer::log {

namespace {
// stderr with each message's control characters made visible (core/visible): a log line quotes names and messages
// from spec files, folders and results files, whose author chooses their bytes.
class VisibleStderr final : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    const std::string text = visible(std::string_view(msg.payload.data(), msg.payload.size()));
    spdlog::details::log_msg safe = msg;
    safe.payload = text;
    spdlog::memory_buf_t line;
    formatter_->format(safe, line);
    std::fwrite(line.data(), 1, line.size(), stderr);
  }
  void flush_() override { std::fflush(stderr); }
};
}  // namespace

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
    logger = spdlog::get("xfer");
    if (!logger) {
      logger = std::make_shared<spdlog::logger>("xfer", std::make_shared<VisibleStderr>());
      spdlog::register_logger(logger);
    }
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
