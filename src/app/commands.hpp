// app: the `xfer` command line. main.cpp parses flags (the only TU with CLI11); each subcommand lives in its own
// file behind a plain options struct, so commands can be called from tests without a shell.
#pragma once

#include <string>

namespace xfer::app {

struct PlanOptions {
  std::string spec;
  bool list = false;
  bool json = false;
  std::string throughput;  // CSV: model,images_per_second[,input_size]
};
int plan(const PlanOptions& o);

}  // namespace xfer::app
