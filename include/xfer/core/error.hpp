// core: the one error type and the one logger every module uses. Knows nothing of specs, data, torch or MPI.
#pragma once

#include <stdexcept>
#include <string>

namespace xfer {

// The one error type. Its message names what it is about — a file and line, a key, a sample, a trial — and says
// what was expected; the command line prints it verbatim. `input` errors (a bad spec, a bad file given by the
// user) exit with status 2; everything else with 1.
class Error : public std::runtime_error {
 public:
  enum class Kind { input, runtime };
  explicit Error(const std::string& message, Kind kind = Kind::runtime)
      : std::runtime_error(message), kind_(kind) {}
  Kind kind() const noexcept { return kind_; }
  static Error input(const std::string& message) { return Error(message, Kind::input); }

 private:
  Kind kind_;
};

}  // namespace xfer
