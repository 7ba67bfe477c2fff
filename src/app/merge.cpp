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
  // A shard a live run still writes: merged now, its running trials would read as orphaned and its later rows be
  // missing. Refused unless --force says that is meant.
  for (const auto& shard : o.shards) {
    const auto lock = store::WriterLock::inspect(shard);
    if (lock.holder != store::WriterLock::Holder::alive) continue;
    const std::string what = fmt::format("{} is being written by a live run ({}): its running trials would look "
                                         "orphaned in the merged file, and what it writes later would be missing",
                                         shard, lock.who);
    if (!o.force) throw Error::input(what + ". Merge after it ends, or pass --force to merge what it holds now");
    std::cerr << "xfer: warning: " << what << " (--force)\n";
  }
  const auto report = store::merge(o.out, o.shards);
  std::cout << fmt::format("{}: {} trials from {} shard(s); {} identical duplicate(s); {} superseded by a more advanced "
                           "state; {} conflict(s)\n", o.out, report.trials, o.shards.size(), report.identical_duplicates,
                           report.superseded, report.conflicts.size());
  for (const auto& w : report.warnings) std::cerr << "xfer: warning: " << w << "\n";
  for (const auto& c : report.conflicts)
    std::cerr << "xfer: conflict: " << c.reason
              << (c.damaged ? "; it is listed in /merge/conflicts\n"
                            : " — the merged file keeps the row from " + c.kept_from +
                                  "; both are listed in /merge/conflicts\n");
  return report.conflicts.empty() ? exit_status::ok : exit_status::merge_conflicts;
}

Command merge_command(CLI::App& cli) {
  auto o = std::make_shared<MergeOptions>();
  auto* sub = cli.add_subcommand("merge", "Combine shard results files (a job array's) into one, each trial once");
  sub->add_option("out", o->out, "the merged results file (must not exist)")->required();
  sub->add_option("shards", o->shards, "shard results files")->required();
  sub->add_flag("--force", o->force, "merge a shard a live run still writes (what it holds now)");
  return {sub, nullptr, [o](sweep::MpiRuntime*) { return merge(*o); }};
}

}  // namespace xfer::app
