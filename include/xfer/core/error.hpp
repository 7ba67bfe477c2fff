// core: the one error type and the one logger every module uses. Knows nothing of specs, data, torch or MPI.
#pragma once

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace xfer {

// The one error type. Its message names what it is about — a file and line, a key, a sample, a trial — and says
// what was expected; the command line prints it verbatim.
//   input        a bad spec, a bad file or option given by the user: exit status 2
//   environment  the machine, not the work: a full disk, an I/O error, a read-only file system, a device that is not
//                there. The same for every trial and every attempt, so the sweep stops (trials stay resumable)
//                instead of spending attempts on it: exit status 74 (sysexits' EX_IOERR)
//   runtime      everything else: exit status 1
class Error : public std::runtime_error {
 public:
  enum class Kind { input, runtime, environment };
  explicit Error(const std::string& message, Kind kind = Kind::runtime)
      : std::runtime_error(message), kind_(kind) {}
  Kind kind() const noexcept { return kind_; }
  static Error input(const std::string& message) { return Error(message, Kind::input); }
  static Error environment(const std::string& message) { return Error(message, Kind::environment); }

 private:
  Kind kind_;
};

// errno values that say the machine is at fault, not the trial: retrying on the same node cannot help.
inline bool environment_errno(int e) {
  return e == ENOSPC || e == EDQUOT || e == EIO || e == EROFS || e == EACCES || e == EPERM || e == EFBIG;
}

// "<what>: <strerror> (ENOSPC)": an environment error for the errno values above, a runtime one otherwise.
inline Error errno_error(const std::string& what, int e) {
  const char* symbol = e == ENOSPC ? " (ENOSPC: disk full)" : e == EDQUOT ? " (EDQUOT: quota exceeded)"
                       : e == EIO  ? " (EIO)" : e == EROFS ? " (EROFS: read-only file system)" : "";
  const std::string m = what + ": " + std::strerror(e) + symbol;
  return environment_errno(e) ? Error::environment(m) : Error(m);
}

// Exit statuses beyond 0 (success), 1 (error) and 2 (bad input); the README's "After a failure" lists them.
namespace exit_status {
constexpr int ok = 0, error = 1, input = 2;
constexpr int merge_conflicts = 3;   // xfer merge: shards disagree on a trial
constexpr int trials_failed = 4;     // xfer run: the sweep ended, but some of its trials are failed (xfer status)
constexpr int environment = 74;      // an environment fault stopped the work; fix it and rerun: nothing was lost
constexpr int stopped = 75;          // xfer run: stopped early (signal, time limit) with work left; rerun resumes
}  // namespace exit_status

}  // namespace xfer
