// `xfer run SPEC`: the sweep, under mpirun / srun or as a single process.
#include <iostream>

#include "commands.hpp"
#include "xfer/metrics/metrics.hpp"
#include "xfer/sweep/sweep.hpp"

namespace xfer::app {

int run(const sweep::RunOptions& o, bool dry_run, bool json, sweep::MpiRuntime* mpi) {
  if (dry_run) return sweep::dry_run(o, json);
  metrics::Runtime kokkos;  // after MPI_Init, before any kernel
  return sweep::run(o, *mpi);
}

}  // namespace xfer::app
