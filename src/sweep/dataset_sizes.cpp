#include "xfer/sweep/dataset_sizes.hpp"

namespace xfer::sweep {

grid::DataSize measured_size(const data::Dataset& d) {
  grid::DataSize z;
  z.n_train = static_cast<int64_t>(d.indices(data::Split::train).size());
  z.n_val = static_cast<int64_t>(d.indices(data::Split::val).size());
  z.n_test = static_cast<int64_t>(d.indices(data::Split::test).size());
  z.val_is_test = d.validation == Validation::paper;
  z.source = "data";
  return z;
}

std::vector<grid::DataSize> dataset_sizes(const spec::Spec& spec, std::vector<size_t>* problems) {
  std::vector<grid::DataSize> sizes;
  if (problems) problems->assign(spec.datasets.size(), 0);
  for (size_t i = 0; i < spec.datasets.size(); ++i) {
    const auto& d = spec.datasets[i];
    if (!d.root.resolved()) {
      sizes.push_back(grid::catalog_size(spec, d));
      continue;
    }
    const data::Dataset ds = data::open(spec, d);
    sizes.push_back(measured_size(ds));
    if (problems) (*problems)[i] = ds.problems.size();
  }
  return sizes;
}

}  // namespace xfer::sweep
