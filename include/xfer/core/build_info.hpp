// core/build_info: what was built — xfer's version, the git commit it was built from and whether the tree was dirty.
// Provenance in every results file starts here.
#pragma once

#include <string>

namespace xfer::build_info {

const std::string& version();     // e.g. "0.1.0"
const std::string& git_commit();  // full hash, or "unknown" outside a git checkout
bool git_dirty();                 // uncommitted changes to tracked files at build time
const std::string& compiler();    // e.g. "GNU 12.2.0"
const std::string& build_type();  // Release, Debug, ...

}  // namespace xfer::build_info
