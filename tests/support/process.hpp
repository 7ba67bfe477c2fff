// Test support: run a command through the shell and capture its exit status, stdout and stderr.
#pragma once

#include <functional>
#include <string>

namespace xfer::test {

struct Result {
  int status = -1;  // exit status, or 128 + signal
  std::string out, err;
};

// Runs `command` with /bin/sh in `cwd` (empty: the current directory).
Result run(const std::string& command, const std::string& cwd = "");

// Starts `command` with /bin/sh in the background (stdout/stderr to the given files); returns its pid.
int spawn(const std::string& command, const std::string& out_file, const std::string& err_file);
// Waits for a spawned process; returns its exit status (128 + signal if killed).
int wait_for(int pid);
// Polls until `predicate` holds or `seconds` pass; returns whether it held.
bool eventually(double seconds, const std::function<bool()>& predicate);

// Shell-quotes one argument.
std::string quote(const std::string& s);

// Path of the xfer binary under test.
std::string xfer();

// Writes the generated dataset layouts (tests/fixtures/make_datasets.py, real encoded images) into `dir`.
Result make_fixture_datasets(const std::string& dir);

}  // namespace xfer::test
