// pjrt/bundle: which platforms a bundle's programs are for. The manifest's "platforms" is read (bundles exported
// before the field load as cpu), a cuda variant beside the cpu,tpu one is the one a cuda plugin gets, and a request
// for a platform no variant has is refused naming the variants and their platforms.
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/tempdir.hpp"
#include "xfer/core/error.hpp"
#include "xfer/pjrt/bundle.hpp"

namespace fs = std::filesystem;

namespace xfer::test {
namespace {

const std::string kTiny = std::string(XFER_SOURCE_DIR) + "/tests/pjrt/tiny_cnn.pjrt";

pjrt::BundleRequest tiny_request(const std::string& platform) {
  pjrt::BundleRequest r;
  r.backbone = "/nowhere/tiny_cnn.pt";  // its bundle is found under XFER_PJRT_ARTIFACTS
  r.input_size = 32, r.classes = 10, r.batch = 16, r.devices = 1, r.optimizer = "adamw", r.platform = platform;
  return r;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), Error::Kind::input) << e.what();
    return e.what();
  }
  return "";
}

TEST(PjrtBundle, TheManifestSaysWhichPlatformsItsProgramsAreForAndOlderOnesAreCpu) {
  const auto both = pjrt::Bundle::read(kTiny + "/s32-c10-b16-adamw-d1/manifest.json");
  EXPECT_EQ(both.platforms, (std::vector<std::string>{"cpu", "tpu"}));
  EXPECT_EQ(both.platform_position("tpu"), 1);
  EXPECT_EQ(both.platform_position("cuda"), -1);
  const auto cuda = pjrt::Bundle::read(kTiny + "/s32-c10-b16-adamw-d1-cuda/manifest.json");
  EXPECT_EQ(cuda.platforms, (std::vector<std::string>{"cuda"}));
  EXPECT_EQ(cuda.platform_position("gpu"), 0) << "a plugin naming its platform gpu gets the cuda programs";
  EXPECT_FALSE(cuda.train_program(16)->platform_index) << "one platform: no platform index argument";

  // A manifest from before the field: the CPU plugin's.
  TempDir dir;
  fs::copy(kTiny + "/s32-c10-b16-adamw-d1", dir / "old", fs::copy_options::recursive);
  const auto m = (dir / "old/manifest.json").string();
  nlohmann::json j = nlohmann::json::parse(std::ifstream(m));
  j.erase("platforms");
  std::ofstream(m) << j.dump();
  const auto old = pjrt::Bundle::read(m);
  EXPECT_EQ(old.platforms, std::vector<std::string>{"cpu"});
  EXPECT_EQ(old.platform_position("cpu"), 0);
  j["platforms"] = nlohmann::json::array();
  std::ofstream(m) << j.dump();
  EXPECT_NE(error_of([&] { pjrt::Bundle::read(m); }).find("\"platforms\" is empty"), std::string::npos);
}

TEST(PjrtBundle, EachPlatformGetsTheVariantExportedForItAndAnotherIsRefusedByName) {
  ::setenv("XFER_PJRT_ARTIFACTS", (std::string(XFER_SOURCE_DIR) + "/tests/pjrt").c_str(), 1);
  EXPECT_EQ(fs::path(pjrt::find_bundle(tiny_request("cpu")).manifest).parent_path().filename(), "s32-c10-b16-adamw-d1");
  EXPECT_EQ(fs::path(pjrt::find_bundle(tiny_request("cuda")).manifest).parent_path().filename(),
            "s32-c10-b16-adamw-d1-cuda");
  const std::string e = error_of([] { pjrt::find_bundle(tiny_request("rocm")); });
  EXPECT_NE(e.find("no program for platform rocm for backbone /nowhere/tiny_cnn.pt"), std::string::npos) << e;
  EXPECT_NE(e.find("s32-c10-b16-adamw-d1 (cpu,tpu)"), std::string::npos) << e;
  EXPECT_NE(e.find("s32-c10-b16-adamw-d1-cuda (cuda)"), std::string::npos) << e;
  EXPECT_NE(e.find("--platforms rocm"), std::string::npos) << e;
  ::unsetenv("XFER_PJRT_ARTIFACTS");

  // pjrt_smoke's choice among the folders it is given.
  const std::vector<std::string> dirs{kTiny + "/s32-c10-b16-adamw-d1-cuda", kTiny + "/s32-c10-b16-adamw-d1"};
  EXPECT_EQ(pjrt::bundle_for_platform(dirs, "cpu").platforms, (std::vector<std::string>{"cpu", "tpu"}));
  EXPECT_EQ(pjrt::bundle_for_platform(dirs, "cuda").platforms, std::vector<std::string>{"cuda"});
  const std::string f = error_of([&] { pjrt::bundle_for_platform({dirs[0]}, "cpu"); });
  EXPECT_NE(f.find("no program for platform cpu: the bundle " + dirs[0] + " (cuda) is exported for other platforms"),
            std::string::npos) << f;
}

}  // namespace
}  // namespace xfer::test
