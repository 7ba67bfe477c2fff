// core/vocabulary: every name table is a bijection, parse errors name the word and the choices.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "xfer/core/vocabulary.hpp"

namespace xfer {
namespace {

template <class E>
void round_trips() {
  std::set<std::string> words;
  for (const auto& [v, n] : vocabulary::Names<E>::table) {
    EXPECT_EQ(parse<E>(n), v) << n;
    EXPECT_EQ(name(v), n);
    EXPECT_TRUE(words.insert(std::string(n)).second) << "duplicate word " << n;
  }
  EXPECT_FALSE(try_parse<E>("no-such-word").has_value());
}

TEST(Vocabulary, EveryTableRoundTrips) {
  round_trips<TrialStatus>();
  round_trips<Metric>();
  round_trips<Validation>();
  round_trips<Optimizer>();
  round_trips<WdMode>();
  round_trips<Schedule>();
  round_trips<Precision>();
  round_trips<Augmentation>();
  round_trips<Flips>();
}

TEST(Vocabulary, ParseErrorNamesWordWhereAndChoices) {
  try {
    parse<Schedule>("linear", "spec.toml:7: schedule");
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_EQ(e.kind(), Error::Kind::input);
    EXPECT_NE(m.find("spec.toml:7: schedule"), std::string::npos) << m;
    EXPECT_NE(m.find("\"linear\""), std::string::npos) << m;
    EXPECT_NE(m.find("cosine | cosine_step | step"), std::string::npos) << m;
  }
}

TEST(Vocabulary, MetricDirectionAndLedgerFacts) {
  EXPECT_TRUE(lower_is_better(Metric::log_loss));
  for (Metric m : {Metric::accuracy, Metric::balanced_accuracy, Metric::qwk, Metric::macro_f1, Metric::roc_auc})
    EXPECT_TRUE(higher_is_better(m)) << name(m);
  EXPECT_TRUE(finished(TrialStatus::done));
  EXPECT_TRUE(finished(TrialStatus::diverged));
  EXPECT_FALSE(finished(TrialStatus::interrupted));
  EXPECT_TRUE(retryable(TrialStatus::oom));
  EXPECT_TRUE(retryable(TrialStatus::failed));
  EXPECT_FALSE(retryable(TrialStatus::running));
  EXPECT_EQ(name(Precision::auto_), "auto");
}

}  // namespace
}  // namespace xfer
