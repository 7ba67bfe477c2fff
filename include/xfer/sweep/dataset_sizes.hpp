// sweep/dataset_sizes: the split sizes the cost model (grid/cost.hpp) is built from — the same rule for
// `xfer plan`, `xfer submit`, the sweep's order, its --simulate executor and a job array's shards: a dataset whose
// root is set is opened and its real sizes count (a wrong root fails here), the others count the catalog's.
#pragma once

#include <cstddef>
#include <vector>

#include "xfer/data/dataset.hpp"
#include "xfer/grid/cost.hpp"
#include "xfer/spec/spec.hpp"

namespace xfer::sweep {

// The sizes of an opened dataset.
grid::DataSize measured_size(const data::Dataset& d);
// One per spec.datasets; `problems`: the samples each opened dataset skipped (0 for catalog sizes).
std::vector<grid::DataSize> dataset_sizes(const spec::Spec& spec, std::vector<size_t>* problems = nullptr);

}  // namespace xfer::sweep
