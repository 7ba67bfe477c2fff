// sweep/mpi_check: MPI return codes as xfer::Error, for sweep's MPI files (mpi.cpp, mpi_kv_store.cpp).
#pragma once

#include <mpi.h>

#include <string>

#include "xfer/core/error.hpp"

namespace xfer::sweep {

// Throws xfer::Error "MPI <what>: <MPI's message>" unless rc is MPI_SUCCESS.
inline void check_mpi(int rc, const std::string& what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  throw Error("MPI " + what + ": " + std::string(msg, static_cast<size_t>(len)));
}

}  // namespace xfer::sweep
