// app/sizes: the split sizes of a spec's datasets for the cost model — opened where the root is set (a wrong root
// fails here), from the catalog where it is not.
#pragma once

#include <vector>

#include "xfer/grid/grid.hpp"
#include "xfer/spec/spec.hpp"

namespace xfer::app {

std::vector<grid::DataSize> dataset_sizes(const spec::Spec& spec, std::vector<size_t>* problems = nullptr);

}  // namespace xfer::app
