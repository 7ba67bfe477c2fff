#include "support/process.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "support/tempdir.hpp"

namespace xfer::test {

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string xfer() { return XFER_BINARY; }

Result make_fixture_datasets(const std::string& dir) {
  return run(std::string(XFER_PYTHON) + " " + quote(std::string(XFER_SOURCE_DIR) + "/tests/fixtures/make_datasets.py") +
             " " + quote(dir));
}

int spawn(const std::string& command, const std::string& out_file, const std::string& err_file) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    const std::string full = "exec " + command + " >" + quote(out_file) + " 2>" + quote(err_file);
    ::execl("/bin/sh", "sh", "-c", full.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return static_cast<int>(pid);
}

int wait_for(int pid) {
  int raw = 0;
  if (::waitpid(pid, &raw, 0) < 0) return -1;
  if (WIFEXITED(raw)) return WEXITSTATUS(raw);
  if (WIFSIGNALED(raw)) return 128 + WTERMSIG(raw);
  return -1;
}

bool eventually(double seconds, const std::function<bool()>& predicate) {
  for (double waited = 0; waited < seconds; waited += 0.02) {
    if (predicate()) return true;
    ::usleep(20000);
  }
  return predicate();
}

Result run(const std::string& command, const std::string& cwd) {
  TempDir io("proc");
  const std::string out = (io / "stdout").string(), err = (io / "stderr").string();
  std::string full = "( " + command + " ) >" + quote(out) + " 2>" + quote(err);
  if (!cwd.empty()) full = "cd " + quote(cwd) + " && " + full;
  const int raw = std::system(full.c_str());
  Result r;
  if (raw == -1) r.status = -1;
  else if (WIFEXITED(raw)) r.status = WEXITSTATUS(raw);
  else if (WIFSIGNALED(raw)) r.status = 128 + WTERMSIG(raw);
  r.out = read_file(out);
  r.err = read_file(err);
  return r;
}

}  // namespace xfer::test
