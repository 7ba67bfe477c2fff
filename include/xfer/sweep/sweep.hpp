// sweep: `xfer run` — a coordinator on rank 0 hands trials out dynamically, longest first, to groups of ranks; an
// exactly-once ledger in the results file decides what runs (done trials never again, orphaned ones resumed,
// failed ones retried up to max_attempts); signals and the allocation's end stop the sweep cleanly. Only rank 0
// reads the spec: each order carries the resolved trial (resolved_trial.hpp) as a Boost.Serialization archive over
// Boost.MPI. The decisions are pure and tested alone (ledger.hpp, scheduler.hpp); MPI stays in this module.
#pragma once

#include <string>

#include "xfer/sweep/mpi.hpp"

namespace xfer::sweep {

struct RunOptions {
  std::string spec;
  std::string results;             // overrides the spec's results file
  double time_limit = 0;           // seconds from the start; 0: SLURM_JOB_END_TIME if set, else none
  double grace = 60;               // stop this many seconds before the end; and the bound after a signal
  std::string device = "auto";
  int threads = 0;                 // torch threads per rank (0: from the allocation)
  std::string input_pipeline = "host";  // host | device (train::Environment)
  double heartbeat = 30;           // seconds between a busy worker's heartbeats
  double heartbeat_timeout = 600;  // a group silent this long is declared hung; its trial fails and is retried
  bool progress = true;            // the live progress line on rank 0
  double simulate = 0;             // > 0: benchmark mode — no training; each trial sleeps cost_gflop × simulate µs
  bool extend = false;             // the results file holds this study under another spec: add this spec's trials
  int shard = 0, shards = 1;       // a job array's share: every shards-th trial by cost, starting at shard; the
                                   // results go to <results stem>.shard-<shard>-of-<shards><ext> unless --results
};

// The results file a run writes: --results, else the spec's, else (sharded) its shard file.
std::string results_path(const RunOptions& o, const std::string& spec_results);
// Seconds until the allocation ends: SLURM_JOB_END_TIME, else squeue's end time of SLURM_JOB_ID; 0 if unknown.
double slurm_end_time();
// SLURM's time formats: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS. -1 if malformed, 0 for UNLIMITED.
double parse_slurm_time(const std::string& t);

// Runs the sweep on every rank (collective over MPI_COMM_WORLD). Returns the process exit status.
int run(const RunOptions& o, MpiRuntime& mpi);

// `xfer run --dry-run`: what a run would do with the results file as it is (no MPI, no lock, nothing written).
int dry_run(const RunOptions& o, bool json);

}  // namespace xfer::sweep
