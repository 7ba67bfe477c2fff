// core/stop: a process-wide "please stop" flag set by signals (SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2 — SLURM's
// --signal, a closed terminal), read by the training loop at every step. The handlers only set flags
// (async-signal-safe). A watchdog bounds how long a stop may take, whatever the process is stuck in.
#pragma once

#include <atomic>
#include <initializer_list>

namespace xfer {

std::atomic<bool>& stop_requested();
// The signal that set the flag last, 0 if none; SIGCONT when mpirun started ending the job (see
// install_default_stop_handlers).
int stop_signal();
// Installs handlers that set the flag. Safe to call more than once.
void install_stop_handlers(std::initializer_list<int> signals);
// The signals a run or a training stops cleanly on. Under Open MPI's mpirun, also the SIGCONT with which mpirun
// starts ending the job after a SIGTERM or SIGINT of its own (it forwards neither; see stop.cpp).
void install_default_stop_handlers();
// Whether this process was started by Open MPI's mpirun or orted (known once the handlers are installed).
bool started_by_open_mpi_launcher();

// Once a stop is requested, the process has `bound_s` seconds to end on its own; past that a detached thread
// prints why on stderr and ends the process with `exit_code` (_exit: no destructors, no MPI_Finalize — mpirun then
// ends the other ranks). A second signal after the first shortens the bound to 5 s. Call once per process.
void arm_stop_watchdog(double bound_s, int exit_code);
// The exit status the watchdog ends the process with from now on: a stop caused by a fault (a full disk: 74) is
// not a requeue-me stop (75).
void set_stop_exit_status(int exit_code);

}  // namespace xfer
