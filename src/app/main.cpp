// xfer: fine-tune ImageNet models on real-world datasets over a full grid, at cluster scale, and measure how
// ImageNet accuracy relates to downstream performance (Fang, Kornblith & Schmidt 2023).
#include <csignal>
#include <cstdio>
#include <iostream>

#include <CLI/CLI.hpp>

#include "commands.hpp"
#include "xfer/sweep/mpi.hpp"
#include "xfer/core/build_info.hpp"
#include "xfer/core/error.hpp"
#include "xfer/pjrt/runtime.hpp"
#include "xfer/core/log.hpp"
#include "xfer/core/stop.hpp"
#include "xfer/core/visible.hpp"

int main(int argc, char** argv) {
  CLI::App cli{"xfer — does progress on ImageNet transfer to real-world datasets? Sweeps, results, statistics.",
               "xfer"};
  cli.require_subcommand(1);
  cli.fallthrough();  // global flags (--log-level) also after the subcommand
  std::string log_level;
  cli.add_option("--log-level", log_level, "trace|debug|info|warn|error|critical|off (default: $XFER_LOG, else info)");
  cli.set_version_flag("--version", "xfer " + xfer::build_info::version() + " (" + xfer::build_info::git_commit() +
                                        (xfer::build_info::git_dirty() ? ", dirty" : "") + ")");

  // In the order `xfer --help` lists them.
  const std::vector<xfer::app::Command> commands = {
      xfer::app::plan_command(cli),    xfer::app::score_command(cli),  xfer::app::splits_command(cli),
      xfer::app::train_command(cli),   xfer::app::run_command(cli),    xfer::app::status_command(cli),
      xfer::app::analyze_command(cli), xfer::app::report_command(cli), xfer::app::submit_command(cli),
      xfer::app::merge_command(cli)};

  // No command, or a word that is not one: say which exist (CLI11 alone says only "A subcommand is required").
  {
    std::string names;
    for (const auto* c : cli.get_subcommands([](CLI::App*) { return true; }))
      names += (names.empty() ? "" : ", ") + c->get_name();
    const char* first = nullptr;
    bool asks = false;  // --help, --version
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--log-level") {
        ++i;
        continue;
      }
      if (a.rfind("--log-level=", 0) == 0) continue;
      if (a == "-h" || a == "--help" || a == "--version") asks = true;
      if (a.empty() || a[0] != '-') {
        first = argv[i];
        break;
      }
    }
    if (!first && !asks) {
      std::cerr << "xfer: error: no command given; the commands are: " << names << " (xfer --help)" << std::endl;
      return xfer::exit_status::input;
    }
    bool known = false;
    try {
      known = first && cli.get_subcommand(first) != nullptr;
    } catch (const CLI::OptionNotFound&) {
    }
    if (first && !known) {
      std::cerr << "xfer: error: unknown command '" << first << "'; the commands are: " << names << " (xfer --help)"
                << std::endl;
      return xfer::exit_status::input;
    }
  }
  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = cli.exit(e);  // prints the message (or the help)
    return rc == 0 ? xfer::exit_status::ok : xfer::exit_status::input;
  }

  try {
    for (const auto& c : commands) {
      if (!*c.sub) continue;
      // MPI first (run, train), then Kokkos, then torch's threads: the order platform-notes.md prescribes.
      std::unique_ptr<xfer::sweep::MpiRuntime> mpi;
      if (c.needs_mpi && c.needs_mpi()) {
        // Catch a stop signal from the first instant: SLURM may warn a short allocation before MPI is even up, and
        // the default action would kill the rank instead of letting it stop cleanly.
        xfer::install_default_stop_handlers();
        mpi = std::make_unique<xfer::sweep::MpiRuntime>(&argc, &argv);
      }
      // PJRT clients go before MPI does (declared after it, destroyed before it): a multi-process client may use the
      // group's key-value store, which MPI serves, until it is destroyed.
      struct PjrtClients {
        ~PjrtClients() { xfer::pjrt::Client::close_all(); }
      } pjrt_clients;
      xfer::log::init(log_level, mpi && mpi->size() > 1 ? std::optional<int>(mpi->rank()) : std::nullopt);
      return c.run(mpi.get());
    }
  } catch (const xfer::Error& e) {
    std::fflush(stdout);
    std::cerr << "xfer: error: " << xfer::visible(e.what()) << std::endl;
    switch (e.kind()) {
      case xfer::Error::Kind::input: return xfer::exit_status::input;
      case xfer::Error::Kind::environment: return xfer::exit_status::environment;
      default: return xfer::exit_status::error;
    }
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::cerr << "xfer: internal error: " << xfer::visible(e.what()) << std::endl;
    return xfer::exit_status::error;
  }
  return xfer::exit_status::ok;
}
