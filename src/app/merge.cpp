// `xfer merge OUT SHARD...`: a job array's shard files combined into one, each trial once (store::merge).
#include <iostream>
#include <memory>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "commands.hpp"
#include "xfer/core/error.hpp"
#include "xfer/store/store.hpp"

namespace xfer::app {

int merge(const MergeOptions& o) {
  const auto report = store::merge(o.out, o.shards);
  std::cout << fmt::format("{}: {} trials from {} shard(s); {} identical duplicate(s); {} superseded by a more advanced "
                           "state; {} conflict(s)\n", o.out, report.trials, o.shards.size(), report.identical_duplicates,
                           report.superseded, report.conflicts.size());
  for (const auto& w : report.warnings) std::cerr << "xfer: warning: " << w << "\n";
  for (const auto& c : report.conflicts)
    std::cerr << "xfer: conflict: " << c.reason << " — the merged file keeps the row from " << c.kept_from
              << "; both are listed in /merge/conflicts\n";
  return report.conflicts.empty() ? exit_status::ok : exit_status::merge_conflicts;
}

Command merge_command(CLI::App& cli) {
  auto o = std::make_shared<MergeOptions>();
  auto* sub = cli.add_subcommand("merge", "Combine shard results files (a job array's) into one, each trial once");
  sub->add_option("out", o->out, "the merged results file (must not exist)")->required();
  sub->add_option("shards", o->shards, "shard results files")->required();
  return {sub, nullptr, [o](sweep::MpiRuntime*) { return merge(*o); }};
}

}  // namespace xfer::app
