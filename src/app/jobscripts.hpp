// app/jobscripts: the bodies of jobscripts/*.sbatch (everything after their "### xfer:body" line), compiled in so
// that `xfer submit` renders exactly the scripts users read and adapt.
#pragma once

#include <string>

namespace xfer::app {

std::string jobscript_body(const std::string& name);  // one_node | multi_node | preemptible | array

}  // namespace xfer::app
