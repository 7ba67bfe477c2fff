// Test support: run a command through the shell and capture its exit status, stdout and stderr.
#pragma once

#include <string>

namespace xfer::test {

struct Result {
  int status = -1;  // exit status, or 128 + signal
  std::string out, err;
};

// Runs `command` with /bin/sh in `cwd` (empty: the current directory).
Result run(const std::string& command, const std::string& cwd = "");

// Shell-quotes one argument.
std::string quote(const std::string& s);

// Path of the xfer binary under test.
std::string xfer();

}  // namespace xfer::test
