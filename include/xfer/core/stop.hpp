// core/stop: a process-wide "please stop" flag set by signals (SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2 — SLURM's
// --signal, a closed terminal), read by the training loop at every step. The handlers only set flags
// (async-signal-safe). A watchdog bounds how long a stop may take, whatever the process is stuck in.
#pragma once

#include <atomic>
#include <initializer_list>

namespace xfer {

std::atomic<bool>& stop_requested();
// The signal that set the flag last, 0 if none.
int stop_signal();
// Installs handlers that set the flag. Safe to call more than once.
void install_stop_handlers(std::initializer_list<int> signals);
// The signals a run or a training stops cleanly on.
void install_default_stop_handlers();

// Once a stop is requested, the process has `bound_s` seconds to end on its own; past that a detached thread
// prints why on stderr and ends the process with `exit_code` (_exit: no destructors, no MPI_Finalize — mpirun then
// ends the other ranks). A second signal after the first shortens the bound to 5 s. Call once per process.
void arm_stop_watchdog(double bound_s, int exit_code);

}  // namespace xfer
