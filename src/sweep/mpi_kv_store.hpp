// sweep/mpi_kv_store: the rank group's key-value store over MPI (core/key_value_store.hpp). Group rank 0 holds the
// map and serves the other members from a thread, on a communicator of the store's own (MPI_Comm_dup of the group's),
// so its messages never meet the trial's collectives. A get that must wait is answered when the key is put or its
// timeout passes. One store per member list for the life of the process; MpiRuntime closes them before MPI_Finalize.
#pragma once

#include <memory>
#include <vector>

#include "xfer/core/key_value_store.hpp"

namespace xfer::sweep {

// The store of the group whose communicator is `comm` (an MPI_Comm*) and whose world ranks are `members`: made on the
// first call, which is collective over the group (every member calls it at the same point); later calls return it.
std::shared_ptr<KeyValueStore> group_key_value_store(void* comm, const std::vector<int>& members);

// Stops every store's server; their later use throws. Called before MPI_Finalize.
void close_key_value_stores();

}  // namespace xfer::sweep
