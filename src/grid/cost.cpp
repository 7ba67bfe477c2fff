#include "xfer/grid/cost.hpp"

#include <fmt/format.h>

#include "xfer/core/error.hpp"

namespace xfer::grid {

CostModel::CostModel(const spec::Spec& spec, std::vector<DataSize> sizes) : sizes_(std::move(sizes)) {
  if (sizes_.size() != spec.datasets.size())
    throw Error(fmt::format("{}: the cost model got {} dataset sizes for {} datasets", spec.path, sizes_.size(),
                            spec.datasets.size()));
  for (const auto& m : spec.models) {
    known_.push_back(m.gmacs > 0);
    gmacs_.push_back(m.gmacs > 0 ? m.gmacs : kUnknownGmacs);
  }
}

CostModel CostModel::from_catalog(const spec::Spec& spec) {
  std::vector<DataSize> sizes;
  for (const auto& d : spec.datasets) sizes.push_back(catalog_size(spec, d));
  return CostModel(spec, std::move(sizes));
}

double CostModel::gflop(const Trial& t) const {
  return trial_cost_gflop(t.config, gmacs(t.model_index), size(t.dataset_index));
}

std::vector<double> CostModel::gflop(const std::vector<Trial>& trials) const {
  std::vector<double> out;
  out.reserve(trials.size());
  for (const auto& t : trials) out.push_back(gflop(t));
  return out;
}

double CostModel::gpu_hours(const Trial& t, double train_images_per_s) const {
  return trial_gpu_hours(t.config, train_images_per_s, size(t.dataset_index));
}

}  // namespace xfer::grid
