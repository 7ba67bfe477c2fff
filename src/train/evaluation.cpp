#include "xfer/train/evaluation.hpp"

#include "xfer/core/error.hpp"
#include "xfer/metrics/metrics.hpp"

namespace xfer::train {

Evaluation evaluate_split(SplitOutputs mine, const data::Dataset& d, Metric metric, Group& group) {
  Evaluation e;
  double sums[2] = {mine.loss_sum, static_cast<double>(mine.count)};
  group.allreduce_sum(sums, 2);
  e.loss = sums[1] > 0 ? sums[0] / sums[1] : std::numeric_limits<double>::quiet_NaN();
  std::vector<int64_t> samples = group.gather(mine.samples, 0);
  std::vector<float> scores = group.gather(mine.scores, 0);
  if (group.rank() != 0) return e;
  const int K = d.num_classes();
  metrics::Labels y;
  y.n = static_cast<int64_t>(samples.size());
  y.k = K;
  y.multilabel = d.multilabel;
  for (int64_t s : samples) {
    const auto& smp = d.samples.at(static_cast<size_t>(s));
    if (d.multilabel) {
      std::vector<uint8_t> row(static_cast<size_t>(K), 0);
      for (auto l : smp.labels) row.at(l) = 1;
      y.multi.insert(y.multi.end(), row.begin(), row.end());
    } else {
      y.single.push_back(smp.label);
    }
  }
  metrics::Scores s;
  s.n = y.n;
  s.k = K;
  s.values.assign(scores.begin(), scores.end());
  try {
    e.metric = metrics::evaluate(metrics::parse_metric(name_str(metric)), y, s);
  } catch (const metrics::Undefined& u) {
    e.note = u.what();
  } catch (const Error& err) {
    e.note = err.what();  // NaN probabilities from a diverging model
  }
  e.pred.classes = K;
  e.pred.samples = std::move(samples);
  e.pred.scores = std::move(scores);
  return e;
}

}  // namespace xfer::train
