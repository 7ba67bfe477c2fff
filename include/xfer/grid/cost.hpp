// grid/cost: the one cost model. `xfer plan`'s per-trial costs, the order the sweep hands trials out in, the
// `--simulate` executor's sleep, a job array's shards and `xfer submit`'s time check all come from a CostModel, so
// they cannot disagree. Knows the spec and split sizes, nothing of data formats, torch, MPI or HDF5.
#pragma once

#include <cstddef>
#include <vector>

#include "xfer/grid/grid.hpp"

namespace xfer::grid {

class CostModel {
 public:
  // The GMACs assumed for a model whose `gmacs` is unknown (0): one per 224² image — between the smallest catalog
  // models (ShuffleNet 0.15) and ResNet-18 (1.8), so an unknown model neither jumps the queue nor starves, and
  // `xfer plan` names the models it was assumed for.
  static constexpr double kUnknownGmacs = 1.0;

  // `sizes` has one entry per spec.datasets: measured where the data was opened, else catalog_size's.
  CostModel(const spec::Spec& spec, std::vector<DataSize> sizes);
  // Catalog sizes for every dataset (no data opened).
  static CostModel from_catalog(const spec::Spec& spec);

  double gmacs(size_t model_index) const { return gmacs_.at(model_index); }
  bool gmacs_known(size_t model_index) const { return known_.at(model_index); }
  const DataSize& size(size_t dataset_index) const { return sizes_.at(dataset_index); }
  const std::vector<DataSize>& sizes() const { return sizes_; }

  // Estimated GFLOP of a trial (trial_cost_gflop with the model's GMACs and the dataset's size).
  double gflop(const Trial& t) const;
  std::vector<double> gflop(const std::vector<Trial>& trials) const;
  // Estimated accelerator-hours at a training throughput (trial_gpu_hours).
  double gpu_hours(const Trial& t, double train_images_per_s) const;

 private:
  std::vector<double> gmacs_;
  std::vector<bool> known_;
  std::vector<DataSize> sizes_;
};

}  // namespace xfer::grid
