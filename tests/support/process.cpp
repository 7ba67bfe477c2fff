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
