// xfer: fine-tune ImageNet models on real-world datasets over a full grid, at cluster scale, and measure how
// ImageNet accuracy relates to downstream performance (Fang, Kornblith & Schmidt 2023).
#include <cstdio>
#include <iostream>

#include <CLI/CLI.hpp>

#include "commands.hpp"
#include "xfer/core/build_info.hpp"
#include "xfer/core/error.hpp"
#include "xfer/core/log.hpp"

int main(int argc, char** argv) {
  CLI::App cli{"xfer — does progress on ImageNet transfer to real-world datasets? Sweeps, results, statistics.",
               "xfer"};
  cli.require_subcommand(1);
  std::string log_level;
  cli.add_option("--log-level", log_level, "trace|debug|info|warn|error|critical|off (default: $XFER_LOG, else info)");
  cli.set_version_flag("--version", "xfer " + xfer::build_info::version() + " (" + xfer::build_info::git_commit() +
                                        (xfer::build_info::git_dirty() ? ", dirty" : "") + ")");

  xfer::app::PlanOptions plan;
  auto* plan_cmd = cli.add_subcommand("plan", "Show what a spec will run: trials per model × dataset, cost, GPU-hours");
  plan_cmd->add_option("spec", plan.spec, "experiment spec (TOML)")->required();
  plan_cmd->add_flag("--list", plan.list, "print every trial with its key");
  plan_cmd->add_flag("--json", plan.json, "machine-readable output on stdout");
  plan_cmd->add_option("--throughput", plan.throughput,
                       "CSV with header model,images_per_second[,input_size]: training images/s per GPU, for "
                       "GPU-hour estimates");

  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return cli.exit(e);
  }

  try {
    xfer::log::init(log_level);
    if (*plan_cmd) return xfer::app::plan(plan);
  } catch (const xfer::Error& e) {
    std::fflush(stdout);
    std::cerr << "xfer: error: " << e.what() << std::endl;
    return e.kind() == xfer::Error::Kind::input ? 2 : 1;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::cerr << "xfer: internal error: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
