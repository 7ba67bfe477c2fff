#include "support/log_capture.hpp"

#include <sstream>

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

namespace xfer::test {

struct LogCapture::Impl {
  std::ostringstream text;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(text);
  spdlog::level::level_enum level = spdlog::level::info;
};

LogCapture::LogCapture() : impl_(std::make_unique<Impl>()) {
  auto logger = spdlog::default_logger();
  impl_->level = logger->level();
  logger->sinks().push_back(impl_->sink);
  logger->set_level(spdlog::level::info);
}

LogCapture::~LogCapture() {
  auto logger = spdlog::default_logger();
  logger->set_level(impl_->level);
  auto& sinks = logger->sinks();
  for (auto it = sinks.begin(); it != sinks.end(); ++it)
    if (*it == impl_->sink) {
      sinks.erase(it);
      break;
    }
}

std::string LogCapture::text() const {
  impl_->sink->flush();
  return impl_->text.str();
}

}  // namespace xfer::test
