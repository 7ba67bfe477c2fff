// sweep/slurm: where this rank runs and which SLURM job it belongs to (the public time helpers are in sweep.hpp).
#pragma once

#include <string>

namespace xfer::sweep {

std::string host_name();
// A SLURM variable of the job (SLURM_JOB_ID, SLURM_ARRAY_TASK_ID), "" outside SLURM.
std::string slurm_variable(const char* name);

}  // namespace xfer::sweep
