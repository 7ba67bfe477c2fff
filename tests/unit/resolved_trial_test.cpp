// What rank 0 sends a worker with each order survives Boost.Serialization field by field.
#include <sstream>

#include <boost/archive/binary_iarchive.hpp>
#include <boost/archive/binary_oarchive.hpp>
#include <gtest/gtest.h>

#include "xfer/sweep/resolved_trial.hpp"

namespace xfer::sweep {
namespace {

ResolvedTrial sample() {
  ResolvedTrial t;
  t.index = 41;
  t.key = "0123456789abcdef";
  t.backbone = "/models/resnet50.pt";
  t.checkpoint_dir = "/ckpt/0123456789abcdef";
  t.keep_best_model = true;
  t.cost_gflop = 1234.5;
  auto& c = t.config;
  c.model = std::string(100, 'm');
  c.weights = "torchvision:ResNet50_Weights.IMAGENET1K_V1";
  c.input_size = 288;
  c.crop_pct = 0.875;
  c.mean = {0.1, 0.2, 0.3};
  c.std = {0.4, 0.5, 0.6};
  c.dataset = "cct";
  c.kind = "cct20";
  c.metric = Metric::balanced_accuracy;
  c.flips = Flips::hv;
  c.bgr_quirk = true;
  c.validation = Validation::holdout;
  c.heldout_fraction = 0.25;
  c.heldout_seed = 414;
  c.val_fraction = 0.15;
  c.val_seed = 99;
  c.limit_train = 500;
  c.limit_test = 200;
  c.melanoma_2019 = false;
  c.manifest = "m.csv";
  c.split_file = "split.csv";
  c.optimizer = Optimizer::sgd;
  c.lr = 0.03;
  c.weight_decay = 1e-4;
  c.wd_mode = WdMode::plain;
  c.momentum = 0.8;
  c.nesterov = false;
  c.beta1 = 0.85;
  c.beta2 = 0.99;
  c.eps = 1e-6;
  c.schedule = Schedule::step;
  c.step_milestones = {5, 9};
  c.step_gamma = 0.5;
  c.warmup_epochs = 2;
  c.label_smoothing = 0.1;
  c.augmentation = Augmentation::randaugment;
  c.seed = 3;
  c.epochs = 12;
  c.batch_size = 64;
  c.precision = Precision::bf16;
  c.ranks_per_trial = 4;
  auto& d = t.dataset.spec;
  d.name = "cct";
  d.kind = "cct20";
  d.root = {"${DATA}/cct", "/data/cct", "", {"spec.toml", 12, "dataset[0].root"}};
  d.metric = "balanced_accuracy";
  d.input_size = 320;
  d.flips = "h";
  d.bgr_quirk = true;
  d.strict = true;
  d.heldout_fraction = 0.3;
  d.heldout_seed = 7;
  d.validation = "paper";
  d.val_fraction = 0.2;
  d.val_seed = 8;
  d.manifest = "list.csv";
  d.split_file = "s.csv";
  d.melanoma_2019 = false;
  d.limit_train = 11;
  d.limit_test = 12;
  d.where = {"spec.toml", 10, "dataset[0]"};
  d.resolved = spec::ResolvedValidation{Validation::fixed, true, "a val/ folder"};
  auto& s = t.dataset.split;
  s.validation = Validation::fixed;
  s.heldout_fraction = 0.35;
  s.heldout_seed = 5;
  s.val_fraction = 0.05;
  s.val_seed = 6;
  s.limit_train = 13;
  s.limit_test = 14;
  s.melanoma_2019 = false;
  s.manifest = "x.csv";
  s.split_file = "y.csv";
  s.strict = true;
  s.layout_checked = true;
  s.resolved_basis = "a val/ folder";
  return t;
}

ResolvedTrial round_trip(const ResolvedTrial& in) {
  std::stringstream bytes;
  {
    boost::archive::binary_oarchive out(bytes);
    out << in;
  }
  ResolvedTrial back;
  boost::archive::binary_iarchive read(bytes);
  read >> back;
  return back;
}

TEST(ResolvedTrial, EveryFieldSurvivesTheRoundTrip) {
  const ResolvedTrial a = sample();
  const ResolvedTrial b = round_trip(a);
  EXPECT_EQ(b.index, a.index);
  EXPECT_EQ(b.key, a.key);
  EXPECT_EQ(b.backbone, a.backbone);
  EXPECT_EQ(b.checkpoint_dir, a.checkpoint_dir);
  EXPECT_EQ(b.keep_best_model, a.keep_best_model);
  EXPECT_EQ(b.cost_gflop, a.cost_gflop);
  // The trial's configuration: its canonical text and key cover what is hashed; the rest is checked one by one.
  const auto &x = a.config, &y = b.config;
  EXPECT_EQ(y.canonical_text(), x.canonical_text());
  EXPECT_EQ(y.key(), x.key());
  EXPECT_EQ(y.model, x.model);
  EXPECT_EQ(y.weights, x.weights);
  EXPECT_EQ(y.input_size, x.input_size);
  EXPECT_EQ(y.crop_pct, x.crop_pct);
  EXPECT_EQ(y.mean, x.mean);
  EXPECT_EQ(y.std, x.std);
  EXPECT_EQ(y.dataset, x.dataset);
  EXPECT_EQ(y.kind, x.kind);
  EXPECT_EQ(y.metric, x.metric);
  EXPECT_EQ(y.flips, x.flips);
  EXPECT_EQ(y.bgr_quirk, x.bgr_quirk);
  EXPECT_EQ(y.validation, x.validation);
  EXPECT_EQ(y.heldout_fraction, x.heldout_fraction);
  EXPECT_EQ(y.heldout_seed, x.heldout_seed);
  EXPECT_EQ(y.val_fraction, x.val_fraction);
  EXPECT_EQ(y.val_seed, x.val_seed);
  EXPECT_EQ(y.limit_train, x.limit_train);
  EXPECT_EQ(y.limit_test, x.limit_test);
  EXPECT_EQ(y.melanoma_2019, x.melanoma_2019);
  EXPECT_EQ(y.manifest, x.manifest);
  EXPECT_EQ(y.split_file, x.split_file);
  EXPECT_EQ(y.optimizer, x.optimizer);
  EXPECT_EQ(y.lr, x.lr);
  EXPECT_EQ(y.weight_decay, x.weight_decay);
  EXPECT_EQ(y.wd_mode, x.wd_mode);
  EXPECT_EQ(y.momentum, x.momentum);
  EXPECT_EQ(y.nesterov, x.nesterov);
  EXPECT_EQ(y.beta1, x.beta1);
  EXPECT_EQ(y.beta2, x.beta2);
  EXPECT_EQ(y.eps, x.eps);
  EXPECT_EQ(y.schedule, x.schedule);
  EXPECT_EQ(y.step_milestones, x.step_milestones);
  EXPECT_EQ(y.step_gamma, x.step_gamma);
  EXPECT_EQ(y.warmup_epochs, x.warmup_epochs);
  EXPECT_EQ(y.label_smoothing, x.label_smoothing);
  EXPECT_EQ(y.augmentation, x.augmentation);
  EXPECT_EQ(y.seed, x.seed);
  EXPECT_EQ(y.epochs, x.epochs);
  EXPECT_EQ(y.batch_size, x.batch_size);
  EXPECT_EQ(y.precision, x.precision);
  EXPECT_EQ(y.ranks_per_trial, x.ranks_per_trial);
  // The dataset as the worker opens it.
  const auto &d = a.dataset.spec, &e = b.dataset.spec;
  EXPECT_EQ(e.name, d.name);
  EXPECT_EQ(e.kind, d.kind);
  EXPECT_EQ(e.root.raw, d.root.raw);
  EXPECT_EQ(e.root.path, d.root.path);
  EXPECT_EQ(e.root.unset_var, d.root.unset_var);
  EXPECT_EQ(e.root.where.str(), d.root.where.str());
  EXPECT_EQ(e.metric, d.metric);
  EXPECT_EQ(e.input_size, d.input_size);
  EXPECT_EQ(e.flips, d.flips);
  EXPECT_EQ(e.bgr_quirk, d.bgr_quirk);
  EXPECT_EQ(e.strict, d.strict);
  EXPECT_EQ(e.heldout_fraction, d.heldout_fraction);
  EXPECT_EQ(e.heldout_seed, d.heldout_seed);
  EXPECT_EQ(e.validation, d.validation);
  EXPECT_EQ(e.val_fraction, d.val_fraction);
  EXPECT_EQ(e.val_seed, d.val_seed);
  EXPECT_EQ(e.manifest, d.manifest);
  EXPECT_EQ(e.split_file, d.split_file);
  EXPECT_EQ(e.melanoma_2019, d.melanoma_2019);
  EXPECT_EQ(e.limit_train, d.limit_train);
  EXPECT_EQ(e.limit_test, d.limit_test);
  EXPECT_EQ(e.where.str(), d.where.str());
  ASSERT_TRUE(e.resolved.has_value());
  EXPECT_EQ(e.resolved->validation, d.resolved->validation);
  EXPECT_EQ(e.resolved->layout_checked, d.resolved->layout_checked);
  EXPECT_EQ(e.resolved->basis, d.resolved->basis);
  const auto &s = a.dataset.split, &z = b.dataset.split;
  EXPECT_EQ(z.validation, s.validation);
  EXPECT_EQ(z.heldout_fraction, s.heldout_fraction);
  EXPECT_EQ(z.heldout_seed, s.heldout_seed);
  EXPECT_EQ(z.val_fraction, s.val_fraction);
  EXPECT_EQ(z.val_seed, s.val_seed);
  EXPECT_EQ(z.limit_train, s.limit_train);
  EXPECT_EQ(z.limit_test, s.limit_test);
  EXPECT_EQ(z.melanoma_2019, s.melanoma_2019);
  EXPECT_EQ(z.manifest, s.manifest);
  EXPECT_EQ(z.split_file, s.split_file);
  EXPECT_EQ(z.strict, s.strict);
  EXPECT_EQ(z.layout_checked, s.layout_checked);
  EXPECT_EQ(z.resolved_basis, s.resolved_basis);
}

TEST(ResolvedTrial, DefaultsSurviveToo) {
  const ResolvedTrial a;
  const ResolvedTrial b = round_trip(a);
  EXPECT_EQ(b.config.canonical_text(), a.config.canonical_text());
  EXPECT_EQ(b.dataset.split.validation, a.dataset.split.validation);
  EXPECT_EQ(b.index, -1);
  EXPECT_FALSE(b.dataset.spec.resolved.has_value());
}

}  // namespace
}  // namespace xfer::sweep
