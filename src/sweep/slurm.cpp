// SLURM's time formats and the allocation's end.
#include "slurm.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "xfer/store/store.hpp"
#include "xfer/sweep/sweep.hpp"

namespace xfer::sweep {

std::string host_name() {
  char h[256] = {0};
  gethostname(h, sizeof h - 1);
  return h;
}

std::string slurm_variable(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

double parse_slurm_time(const std::string& t) {
  if (t == "UNLIMITED" || t == "INFINITE") return 0;
  int days = 0;
  std::string rest = t;
  if (auto dash = t.find('-'); dash != std::string::npos) {
    const std::string d = t.substr(0, dash);
    if (d.empty() || d.find_first_not_of("0123456789") != std::string::npos) return -1;
    days = std::stoi(d);
    rest = t.substr(dash + 1);
  }
  std::vector<int> parts;
  std::string cur;
  for (char c : rest + ":") {
    if (c == ':') {
      if (cur.empty() || cur.size() > 4 || cur.find_first_not_of("0123456789") != std::string::npos) return -1;
      parts.push_back(std::stoi(cur));
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (parts.empty() || parts.size() > 3) return -1;
  const bool with_days = t.find('-') != std::string::npos;
  double s = 0;
  if (!with_days) {
    if (parts.size() == 1) s = parts[0] * 60.0;                                        // minutes
    else if (parts.size() == 2) s = parts[0] * 60.0 + parts[1];                        // MM:SS
    else s = parts[0] * 3600.0 + parts[1] * 60.0 + parts[2];                           // HH:MM:SS
  } else {
    if (parts.size() == 1) s = parts[0] * 3600.0;                                      // D-HH
    else if (parts.size() == 2) s = parts[0] * 3600.0 + parts[1] * 60.0;               // D-HH:MM
    else s = parts[0] * 3600.0 + parts[1] * 60.0 + parts[2];                           // D-HH:MM:SS
  }
  return days * 86400.0 + s;
}

double slurm_end_time() {
  if (const char* v = std::getenv("SLURM_JOB_END_TIME"); v && *v) return std::atof(v);
  const char* job = std::getenv("SLURM_JOB_ID");
  if (!job || !*job) return 0;
  // squeue's %L: the time left, in SLURM's format.
  const std::string cmd = "squeue -h -j " + std::to_string(std::atol(job)) + " -o %L 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return 0;
  char buf[64] = {0};
  const bool got = std::fgets(buf, sizeof buf, p) != nullptr;
  pclose(p);
  if (!got) return 0;
  std::string left(buf);
  while (!left.empty() && (left.back() == '\n' || left.back() == ' ')) left.pop_back();
  const double s = parse_slurm_time(left);
  return s > 0 ? store::now_unix() + s : 0;
}

}  // namespace xfer::sweep
