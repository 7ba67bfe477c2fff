#include "support/h5_table.hpp"

#include <gtest/gtest.h>

#include "support/process.hpp"

namespace xfer::test {

nlohmann::json h5_table(const std::string& h5, const std::string& table) {
  static const char* kPy =
      "import sys, json, math, h5py\n"
      "def v(x):\n"
      "    if isinstance(x, bytes): return x.decode()\n"
      "    x = x.item()\n"
      "    return None if isinstance(x, float) and not math.isfinite(x) else x\n"
      "with h5py.File(sys.argv[1], 'r') as f:\n"
      "    t = f[sys.argv[2]][()]\n"
      "    print(json.dumps([{n: v(r[n]) for n in t.dtype.names} for r in t]))\n";
  const Result r = run(std::string(XFER_PYTHON) + " -c " + quote(kPy) + " " + quote(h5) + " " + quote(table));
  EXPECT_EQ(r.status, 0) << h5 << " /" << table << ": " << r.err;
  if (r.status != 0) return nlohmann::json::array();
  return nlohmann::json::parse(r.out);
}

}  // namespace xfer::test
