// Test support: what the process logs while an object of this type lives (info and above), for tests that check a
// message. Torch-free on purpose: a translation unit that includes LibTorch 2.x must not include spdlog, whose
// external fmt clashes with the fmt headers LibTorch ships.
#pragma once

#include <memory>
#include <string>

namespace xfer::test {

class LogCapture {
 public:
  LogCapture();
  ~LogCapture();
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;
  std::string text() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace xfer::test
