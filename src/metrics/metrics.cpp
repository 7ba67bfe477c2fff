// The metric kernels. Each metric is computed from per-sample atoms (argmax prediction, per-sample loss,
// per-class decisions) reduced on the device; the bootstrap reuses the same atoms with multiplicities.
#include "xfer/metrics/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include <fmt/format.h>
#include <Kokkos_Core.hpp>

#include "radix_sort.hpp"
#include "xfer/metrics/resample.hpp"

namespace xfer::metrics {

namespace {

using Exec = Kokkos::DefaultExecutionSpace;
using Mem = Exec::memory_space;
template <class T>
using Unmanaged = Kokkos::View<T*, Kokkos::HostSpace, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
using Policy = Kokkos::RangePolicy<Exec, Kokkos::IndexType<int64_t>>;

constexpr double kLogLossEps = std::numeric_limits<double>::epsilon();  // sklearn 1.2 eps="auto" for float64

template <class T>
auto to_device(const std::vector<T>& v) {
  Unmanaged<const T> h(v.data(), v.size());
  return Kokkos::create_mirror_view_and_copy(Mem(), h);
}

// Number of classes seen by argmax: a single column of p(positive) is a binary problem.
int effective_k(const Scores& s) { return s.k == 1 ? 2 : s.k; }

// Array-valued reduction of int64 counters (confusion matrices, per-class TP/FP/FN).
template <class Body>
struct CountReducer {
  using value_type = int64_t[];
  using size_type = size_t;
  size_t value_count;
  Body body;
  KOKKOS_INLINE_FUNCTION void operator()(const int64_t i, value_type acc) const { body(i, acc); }
  KOKKOS_INLINE_FUNCTION void init(value_type acc) const {
    for (size_t j = 0; j < value_count; ++j) acc[j] = 0;
  }
  KOKKOS_INLINE_FUNCTION void join(value_type dst, const value_type src) const {
    for (size_t j = 0; j < value_count; ++j) dst[j] += src[j];
  }
  KOKKOS_INLINE_FUNCTION void join(volatile value_type dst, const volatile value_type src) const {
    for (size_t j = 0; j < value_count; ++j) dst[j] += src[j];
  }
};

template <class Body>
std::vector<int64_t> count_reduce(const char* name, int64_t n, size_t width, Body body) {
  std::vector<int64_t> out(width, 0);
  if (n == 0) return out;
  CountReducer<Body> r{width, body};
  Kokkos::parallel_reduce(name, Policy(0, n), r, out.data());
  return out;
}

// argmax per row (first maximum, as numpy); one column: 1 iff p > 0.5.
Kokkos::View<int32_t*, Mem> predict(const Scores& s) {
  auto v = to_device(s.values);
  const int k = s.k;
  Kokkos::View<int32_t*, Mem> pred(Kokkos::view_alloc(Kokkos::WithoutInitializing, "pred"), s.n);
  Kokkos::parallel_for(
      "xfer::metrics::argmax", Policy(0, s.n), KOKKOS_LAMBDA(const int64_t i) {
        if (k == 1) {
          pred(i) = v(i) > 0.5 ? 1 : 0;
          return;
        }
        int best = 0;
        double bv = v(i * k);
        for (int j = 1; j < k; ++j)
          if (v(i * k + j) > bv) bv = v(i * k + j), best = j;
        pred(i) = best;
      });
  return pred;
}

// Metric values from sufficient statistics; shared by evaluate() and the bootstrap.
double from_confusion(Metric m, const int64_t* c, int k) {
  double total = 0;
  for (int i = 0; i < k * k; ++i) total += static_cast<double>(c[i]);
  if (total == 0) throw Undefined(metric_name(m) + " is undefined for an empty input");
  switch (m) {
    case Metric::accuracy: {
      double correct = 0;
      for (int i = 0; i < k; ++i) correct += static_cast<double>(c[i * k + i]);
      return correct / total;
    }
    case Metric::balanced_accuracy: {
      double sum = 0;
      int classes = 0;
      for (int i = 0; i < k; ++i) {
        double row = 0;
        for (int j = 0; j < k; ++j) row += static_cast<double>(c[i * k + j]);
        if (row > 0) sum += static_cast<double>(c[i * k + i]) / row, ++classes;
      }
      return sum / classes;
    }
    case Metric::qwk: {
      std::vector<double> rows(k, 0.0), cols(k, 0.0);
      for (int i = 0; i < k; ++i)
        for (int j = 0; j < k; ++j) rows[i] += static_cast<double>(c[i * k + j]), cols[j] += static_cast<double>(c[i * k + j]);
      double observed = 0, expected = 0;
      for (int i = 0; i < k; ++i)
        for (int j = 0; j < k; ++j) {
          const double w = static_cast<double>(i - j) * static_cast<double>(i - j);
          observed += w * static_cast<double>(c[i * k + j]);
          expected += w * (cols[i] * rows[j] / total);
        }
      if (expected == 0)
        throw Undefined("qwk is undefined: every label and every prediction is the same class (no expected "
                        "disagreement)");
      return 1.0 - observed / expected;
    }
    case Metric::macro_f1: {  // single-label: over the classes present in truth or predictions
      double sum = 0;
      int classes = 0;
      for (int i = 0; i < k; ++i) {
        double row = 0, col = 0;
        for (int j = 0; j < k; ++j) row += static_cast<double>(c[i * k + j]), col += static_cast<double>(c[j * k + i]);
        if (row + col > 0) sum += 2.0 * static_cast<double>(c[i * k + i]) / (row + col), ++classes;
      }
      return sum / classes;
    }
    default:
      throw Error("internal: " + metric_name(m) + " is not a confusion-matrix metric");
  }
}

double from_tp_fp_fn(const int64_t* c, int k) {
  if (k == 0) throw Undefined("macro_f1 is undefined over zero classes");
  double sum = 0;
  for (int j = 0; j < k; ++j) {
    const double tp = static_cast<double>(c[3 * j]), fp = static_cast<double>(c[3 * j + 1]),
                 fn = static_cast<double>(c[3 * j + 2]);
    const double den = 2 * tp + fp + fn;
    sum += den > 0 ? 2 * tp / den : 0.0;  // zero_division = 0, as sklearn
  }
  return sum / k;
}

std::vector<double> thresholds_or_default(const std::vector<double>* t, int k) {
  if (!t) return std::vector<double>(k, 0.5);
  if (static_cast<int>(t->size()) != k)
    throw Error::input(fmt::format("thresholds: expected {} per-class values, got {}", k, t->size()));
  return *t;
}

std::vector<int64_t> multilabel_counts(const Labels& y, const Scores& s, const std::vector<double>& thr) {
  auto yy = to_device(y.multi);
  auto v = to_device(s.values);
  auto t = to_device(thr);
  const int k = y.k;
  return count_reduce("xfer::metrics::tp_fp_fn", y.n, 3 * static_cast<size_t>(k),
                      [=] KOKKOS_FUNCTION(const int64_t i, int64_t* acc) {
                        for (int j = 0; j < k; ++j) {
                          const bool truth = yy(i * k + j) != 0, p = v(i * k + j) > t(j);
                          acc[3 * j] += truth && p;
                          acc[3 * j + 1] += !truth && p;
                          acc[3 * j + 2] += truth && !p;
                        }
                      });
}

// Scores of the positive class for binary tasks: the last column.
std::vector<double> positive_scores(const Scores& s) {
  if (s.k == 1) return s.values;
  std::vector<double> out(s.n);
  for (int64_t i = 0; i < s.n; ++i) out[i] = s.values[i * s.k + (s.k - 1)];
  return out;
}

struct SortedScores {
  Kokkos::View<uint64_t*, Mem> keys;     // sorted order keys
  Kokkos::View<uint32_t*, Mem> index;    // original sample index at each sorted position
};

SortedScores sort_scores(const std::vector<double>& scores) {
  const int64_t n = static_cast<int64_t>(scores.size());
  auto v = to_device(scores);
  SortedScores out{Kokkos::View<uint64_t*, Mem>(Kokkos::view_alloc(Kokkos::WithoutInitializing, "keys"), n),
                   Kokkos::View<uint32_t*, Mem>(Kokkos::view_alloc(Kokkos::WithoutInitializing, "index"), n)};
  auto keys = out.keys;
  auto index = out.index;
  Kokkos::parallel_for(
      "xfer::metrics::keys", Policy(0, n), KOKKOS_LAMBDA(const int64_t i) {
        keys(i) = detail::order_key(v(i));
        index(i) = static_cast<uint32_t>(i);
      });
  detail::radix_sort_pairs<Exec>(keys, index);
  return out;
}

// Binary ROC-AUC with ties counted ½: over tie groups g of the sorted scores, Σ pos_g · (neg_before_g + ½ neg_g),
// divided by P·N — the Mann–Whitney statistic, equal to scikit-learn's trapezoid under the ROC curve.
double auc_sorted(const SortedScores& sorted, const Kokkos::View<const int32_t*, Mem>& label_of) {
  const int64_t n = static_cast<int64_t>(sorted.keys.extent(0));
  auto keys = sorted.keys;
  auto index = sorted.index;
  // Labels in sorted order (one gather), negatives before each position, and the start of every tie group.
  Kokkos::View<int64_t*, Mem> neg_before(Kokkos::view_alloc(Kokkos::WithoutInitializing, "neg_before"), n + 1);
  Kokkos::View<int64_t*, Mem> starts(Kokkos::view_alloc(Kokkos::WithoutInitializing, "starts"), n + 1);
  Kokkos::parallel_scan(
      "xfer::metrics::auc_neg_prefix", Policy(0, n), KOKKOS_LAMBDA(const int64_t i, int64_t& acc, const bool final) {
        const int64_t neg = label_of(index(i)) == 0 ? 1 : 0;
        if (final) {
          neg_before(i) = acc;
          if (i == n - 1) neg_before(n) = acc + neg;
        }
        acc += neg;
      });
  int64_t groups = 0;
  Kokkos::parallel_scan(
      "xfer::metrics::auc_groups", Policy(0, n),
      KOKKOS_LAMBDA(const int64_t i, int64_t& acc, const bool final) {
        if (i == 0 || keys(i) != keys(i - 1)) {
          if (final) starts(acc) = i;
          ++acc;
        }
      },
      groups);
  Kokkos::deep_copy(Kokkos::subview(starts, groups), n);
  double twice_numerator = 0;  // integers and halves: exact in double up to 2^52
  Kokkos::parallel_reduce(
      "xfer::metrics::auc_sum", Policy(0, groups),
      KOKKOS_LAMBDA(const int64_t g, double& acc) {
        const int64_t b = starts(g), e = starts(g + 1);
        const int64_t below = neg_before(b), neg = neg_before(e) - below, pos = (e - b) - neg;
        acc += static_cast<double>(pos) * (2.0 * static_cast<double>(below) + static_cast<double>(neg));
      },
      twice_numerator);
  int64_t negatives = 0;
  Kokkos::deep_copy(negatives, Kokkos::subview(neg_before, n));
  const int64_t positives = n - negatives;
  if (positives == 0 || negatives == 0)
    throw Undefined("roc_auc is undefined: only one class present in the labels (" + std::to_string(positives) +
                    " positives, " + std::to_string(negatives) + " negatives)");
  return twice_numerator / 2.0 / (static_cast<double>(positives) * static_cast<double>(negatives));
}

// Per-sample -log p(y) after sklearn's clipping and renormalisation.
Kokkos::View<double*, Mem> per_sample_log_loss(const Labels& y, const Scores& s) {
  auto v = to_device(s.values);
  auto lab = to_device(y.single);
  const int k = s.k;
  Kokkos::View<double*, Mem> loss(Kokkos::view_alloc(Kokkos::WithoutInitializing, "loss"), s.n);
  Kokkos::parallel_for(
      "xfer::metrics::log_loss", Policy(0, s.n), KOKKOS_LAMBDA(const int64_t i) {
        auto clip = [](double p) { return p < kLogLossEps ? kLogLossEps : (p > 1 - kLogLossEps ? 1 - kLogLossEps : p); };
        double py, sum = 0;
        if (k == 1) {
          const double p1 = clip(v(i)), p0 = clip(1.0 - v(i));
          sum = p0 + p1;
          py = lab(i) == 1 ? p1 : p0;
        } else {
          for (int j = 0; j < k; ++j) sum += clip(v(i * k + j));
          py = clip(v(i * k + lab(i)));
        }
        loss(i) = -std::log(py / sum);
      });
  return loss;
}

double mean_of(const Kokkos::View<double*, Mem>& x) {
  const int64_t n = static_cast<int64_t>(x.extent(0));
  if (n == 0) throw Undefined("log_loss is undefined for an empty input");
  double sum = 0;
  Kokkos::parallel_reduce("xfer::metrics::mean", Policy(0, n), KOKKOS_LAMBDA(const int64_t i, double& a) { a += x(i); }, sum);
  return sum / static_cast<double>(n);
}

std::vector<int64_t> confusion_of(const Labels& y, const Kokkos::View<int32_t*, Mem>& pred, int k) {
  auto lab = to_device(y.single);
  return count_reduce("xfer::metrics::confusion", y.n, static_cast<size_t>(k) * k,
                      [=] KOKKOS_FUNCTION(const int64_t i, int64_t* acc) { acc[lab(i) * k + pred(i)] += 1; });
}

int classes_for(const Labels& y, const Scores& s) { return std::max(y.k, effective_k(s)); }

}  // namespace

Metric parse_metric(const std::string& name) { return xfer::parse<Metric>(name); }

std::string metric_name(Metric m) { return xfer::name_str(m); }

void validate(Metric m, const Labels& y, const Scores& s) {
  if (y.n != s.n)
    throw Error::input(fmt::format("labels have {} rows but scores have {}", y.n, s.n));
  if (s.k < 1) throw Error::input("scores need at least one column");
  if (static_cast<int64_t>(s.values.size()) != s.n * s.k)
    throw Error::input(fmt::format("scores: expected {} × {} values, got {}", s.n, s.k, s.values.size()));
  for (int64_t i = 0; i < s.n * s.k; ++i)
    if (std::isnan(s.values[i]))
      throw Error::input(fmt::format("scores: NaN at row {}, column {}", i / s.k + 1, i % s.k + 1));
  if (y.multilabel) {
    if (m != Metric::macro_f1)
      throw Error::input(metric_name(m) + " takes one class per row; multi-label rows are scored with macro_f1");
    if (s.k != y.k)
      throw Error::input(fmt::format("multi-label: labels have {} columns but scores have {}", y.k, s.k));
    if (static_cast<int64_t>(y.multi.size()) != y.n * y.k)
      throw Error::input(fmt::format("labels: expected {} × {} values, got {}", y.n, y.k, y.multi.size()));
    for (int64_t i = 0; i < y.n * y.k; ++i)
      if (y.multi[i] > 1)
        throw Error::input(fmt::format("labels: row {}, column {} is not 0 or 1", i / y.k + 1, i % y.k + 1));
    return;
  }
  if (static_cast<int64_t>(y.single.size()) != y.n)
    throw Error::input(fmt::format("labels: expected {} values, got {}", y.n, y.single.size()));
  const int k = effective_k(s);
  for (int64_t i = 0; i < y.n; ++i)
    if (y.single[i] < 0 || y.single[i] >= k)
      throw Error::input(fmt::format("labels: row {} has class {}, but the scores have {} column{} (classes 0..{})",
                                     i + 1, y.single[i], s.k, s.k == 1 ? " (binary)" : "s", k - 1));
  if (m == Metric::roc_auc && k != 2)
    throw Error::input(fmt::format("roc_auc is binary: give one column p(positive) or two columns, got {}", s.k));
  if (m == Metric::log_loss)
    for (int64_t i = 0; i < s.n * s.k; ++i)
      if (s.values[i] < 0 || s.values[i] > 1)
        throw Error::input(fmt::format("log_loss needs probabilities: row {}, column {} is {}", i / s.k + 1,
                                       i % s.k + 1, s.values[i]));
}

std::vector<int64_t> confusion_matrix(const Labels& y, const Scores& s) {
  validate(Metric::accuracy, y, s);
  const int k = classes_for(y, s);
  return confusion_of(y, predict(s), k);
}

double evaluate(Metric m, const Labels& y, const Scores& s, const std::vector<double>* thresholds) {
  validate(m, y, s);
  if (y.n == 0) throw Undefined(metric_name(m) + " is undefined for an empty input");
  if (y.multilabel) return from_tp_fp_fn(multilabel_counts(y, s, thresholds_or_default(thresholds, y.k)).data(), y.k);
  switch (m) {
    case Metric::accuracy:
    case Metric::balanced_accuracy:
    case Metric::qwk:
    case Metric::macro_f1: {
      const int k = classes_for(y, s);
      const auto c = confusion_of(y, predict(s), k);
      return from_confusion(m, c.data(), k);
    }
    case Metric::roc_auc:
      return auc_sorted(sort_scores(positive_scores(s)), to_device(y.single));
    case Metric::log_loss:
      return mean_of(per_sample_log_loss(y, s));
  }
  return 0;
}

std::vector<double> per_class_f1(const Labels& y, const Scores& s, const std::vector<double>* thresholds) {
  validate(Metric::macro_f1, y, s);
  std::vector<double> out;
  if (y.multilabel) {
    const auto c = multilabel_counts(y, s, thresholds_or_default(thresholds, y.k));
    for (int j = 0; j < y.k; ++j) {
      const double den = 2.0 * c[3 * j] + c[3 * j + 1] + c[3 * j + 2];
      out.push_back(den > 0 ? 2.0 * c[3 * j] / den : 0.0);
    }
    return out;
  }
  const int k = classes_for(y, s);
  const auto c = confusion_of(y, predict(s), k);
  for (int i = 0; i < k; ++i) {
    double row = 0, col = 0;
    for (int j = 0; j < k; ++j) row += static_cast<double>(c[i * k + j]), col += static_cast<double>(c[j * k + i]);
    out.push_back(row + col > 0 ? 2.0 * c[i * k + i] / (row + col) : 0.0);
  }
  return out;
}

std::vector<double> tune_thresholds(const Labels& y, const Scores& s) {
  validate(Metric::macro_f1, y, s);
  if (!y.multilabel) throw Error::input("per-class thresholds apply to multi-label data");
  std::vector<double> thr(y.k, 0.5);
  std::vector<double> col(y.n);
  for (int j = 0; j < y.k; ++j) {
    int64_t positives = 0;
    for (int64_t i = 0; i < y.n; ++i) col[i] = s.values[i * s.k + j], positives += y.multi[i * y.k + j];
    if (positives == 0 || y.n == 0) continue;
    const auto sorted = sort_scores(col);
    auto keys = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), sorted.keys);
    auto idx = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), sorted.index);
    // Walk from the highest score down; a cut after a tie group predicts that group and everything above.
    double best_f1 = -1;
    int64_t tp = 0;
    for (int64_t pos = y.n - 1; pos >= 0;) {
      int64_t g = pos;
      while (g >= 0 && keys(g) == keys(pos)) tp += y.multi[static_cast<int64_t>(idx(g)) * y.k + j], --g;
      const int64_t predicted = y.n - 1 - g;
      const double f1 = 2.0 * tp / static_cast<double>(predicted + positives);
      if (f1 > best_f1) {
        best_f1 = f1;
        const double here = col[idx(pos)];
        const double below = g >= 0 ? col[idx(g)] : here - 1.0;
        thr[j] = below + (here - below) / 2.0;
        if (!(thr[j] < here)) thr[j] = below;  // adjacent doubles: keep "s > t" exact
      }
      pos = g;
    }
  }
  return thr;
}

namespace {

// numpy.percentile's default (linear) interpolation.
double percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return std::nan("");
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - static_cast<double>(lo));
}

}  // namespace

Interval bootstrap(Metric m, const Labels& y, const Scores& s, int resamples, uint64_t seed, double level,
                   const std::vector<double>* thresholds) {
  if (resamples < 1) throw Error::input("bootstrap: resamples must be ≥ 1");
  if (!(level > 0 && level < 1)) throw Error::input("bootstrap: level must be in (0, 1)");
  Interval out;
  out.value = evaluate(m, y, s, thresholds);
  out.resamples = resamples;
  out.seed = seed;
  out.level = level;
  const int64_t n = y.n;
  Kokkos::View<double*, Mem> values(Kokkos::view_alloc(Kokkos::WithoutInitializing, "boot"), resamples);
  Kokkos::Experimental::UniqueToken<Exec> token;
  const double nan = std::numeric_limits<double>::quiet_NaN();

  if (y.multilabel) {
    const int k = y.k;
    auto yy = to_device(y.multi);
    auto v = to_device(s.values);
    auto t = to_device(thresholds_or_default(thresholds, k));
    // Per-sample decisions once: bit 0 truth, bit 1 predicted, per class.
    Kokkos::View<uint8_t*, Mem> code("code", n * k);
    Kokkos::parallel_for("xfer::boot::codes", Policy(0, n * k), KOKKOS_LAMBDA(const int64_t i) {
      code(i) = static_cast<uint8_t>((yy(i) != 0) | ((v(i) > t(i % k)) << 1));
    });
    Kokkos::View<int64_t**, Kokkos::LayoutRight, Mem> scratch("scratch", token.size(), 3 * k);
    Kokkos::parallel_for("xfer::boot::macro_f1", Kokkos::RangePolicy<Exec>(0, resamples), KOKKOS_LAMBDA(const int b) {
      const int id = token.acquire();
      uint64_t st = seed ^ (0xD1B54A32D192ED03ULL * static_cast<uint64_t>(b + 1));
      for (int j = 0; j < 3 * k; ++j) scratch(id, j) = 0;
      for (int64_t r = 0; r < n; ++r) {
        const int64_t i = draw(st, n);
        for (int j = 0; j < k; ++j) {
          const uint8_t c = code(i * k + j);
          if (c == 3) scratch(id, 3 * j)++;
          else if (c == 2) scratch(id, 3 * j + 1)++;
          else if (c == 1) scratch(id, 3 * j + 2)++;
        }
      }
      double sum = 0;
      for (int j = 0; j < k; ++j) {
        const double tp = scratch(id, 3 * j), den = 2 * tp + scratch(id, 3 * j + 1) + scratch(id, 3 * j + 2);
        sum += den > 0 ? 2 * tp / den : 0.0;
      }
      values(b) = sum / k;
      token.release(id);
    });
  } else if (m == Metric::roc_auc) {
    const auto sorted = sort_scores(positive_scores(s));
    auto lab = to_device(y.single);
    auto keys = sorted.keys;
    auto index = sorted.index;
    Kokkos::View<int64_t*, Mem> rank("rank", n);  // sorted position of each sample
    Kokkos::parallel_for("xfer::boot::rank", Policy(0, n), KOKKOS_LAMBDA(const int64_t p) { rank(index(p)) = p; });
    Kokkos::View<int64_t**, Kokkos::LayoutRight, Mem> weight("weight", token.size(), n);
    Kokkos::parallel_for("xfer::boot::auc", Kokkos::RangePolicy<Exec>(0, resamples), KOKKOS_LAMBDA(const int b) {
      const int id = token.acquire();
      uint64_t st = seed ^ (0xD1B54A32D192ED03ULL * static_cast<uint64_t>(b + 1));
      for (int64_t p = 0; p < n; ++p) weight(id, p) = 0;
      for (int64_t r = 0; r < n; ++r) weight(id, rank(draw(st, n)))++;
      double num2 = 0, neg_below = 0, pos_total = 0;
      for (int64_t p = 0; p < n;) {
        int64_t q = p;
        double pw = 0, nw = 0;
        while (q < n && keys(q) == keys(p)) {
          const double w = static_cast<double>(weight(id, q));
          if (lab(index(q)) == 1) pw += w; else nw += w;
          ++q;
        }
        num2 += pw * (2 * neg_below + nw);
        neg_below += nw;
        pos_total += pw;
        p = q;
      }
      values(b) = (pos_total == 0 || neg_below == 0) ? nan : num2 / 2.0 / (pos_total * neg_below);
      token.release(id);
    });
  } else if (m == Metric::log_loss) {
    auto loss = per_sample_log_loss(y, s);
    Kokkos::parallel_for("xfer::boot::log_loss", Kokkos::RangePolicy<Exec>(0, resamples), KOKKOS_LAMBDA(const int b) {
      uint64_t st = seed ^ (0xD1B54A32D192ED03ULL * static_cast<uint64_t>(b + 1));
      double sum = 0;
      for (int64_t r = 0; r < n; ++r) sum += loss(draw(st, n));
      values(b) = sum / static_cast<double>(n);
    });
  } else {
    const int k = classes_for(y, s);
    auto pred = predict(s);
    auto lab = to_device(y.single);
    // Confusion counts per resample on the device; the metric itself on the host (it may be undefined).
    Kokkos::View<int64_t**, Kokkos::LayoutRight, Mem> confusions("confusions", resamples, k * k);
    Kokkos::parallel_for("xfer::boot::confusion", Kokkos::RangePolicy<Exec>(0, resamples), KOKKOS_LAMBDA(const int b) {
      uint64_t st = seed ^ (0xD1B54A32D192ED03ULL * static_cast<uint64_t>(b + 1));
      for (int64_t r = 0; r < n; ++r) {
        const int64_t i = draw(st, n);
        confusions(b, lab(i) * k + pred(i))++;
      }
    });
    auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), confusions);
    auto hv = Kokkos::create_mirror_view(values);
    for (int b = 0; b < resamples; ++b) {
      try {
        hv(b) = from_confusion(m, &host(b, 0), k);
      } catch (const Undefined&) {
        hv(b) = nan;
      }
    }
    Kokkos::deep_copy(values, hv);
  }

  auto hv = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), values);
  std::vector<double> ok;
  ok.reserve(resamples);
  for (int b = 0; b < resamples; ++b)
    if (std::isnan(hv(b))) out.undefined++;
    else ok.push_back(hv(b));
  std::sort(ok.begin(), ok.end());
  out.lo = percentile(ok, (1 - level) / 2);
  out.hi = percentile(ok, 1 - (1 - level) / 2);
  if (ok.size() > 1) {
    const double mean = std::accumulate(ok.begin(), ok.end(), 0.0) / static_cast<double>(ok.size());
    double ss = 0;
    for (double x : ok) ss += (x - mean) * (x - mean);
    out.std_error = std::sqrt(ss / static_cast<double>(ok.size() - 1));
  }
  return out;
}

Runtime::Runtime() {
  if (Kokkos::is_initialized()) return;
#if KOKKOS_VERSION >= 30700
  Kokkos::initialize(Kokkos::InitializationSettings().set_disable_warnings(true));
#else
  Kokkos::InitArguments args;
  args.disable_warnings = true;
  Kokkos::initialize(args);
#endif
  owner_ = true;
}

Runtime::~Runtime() {
  if (owner_ && Kokkos::is_initialized()) Kokkos::finalize();
}

std::string Runtime::backend() { return Exec::name(); }

}  // namespace xfer::metrics
