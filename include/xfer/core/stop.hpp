// core/stop: a process-wide "please stop" flag set by signals (SIGTERM, SIGINT, SIGUSR1, SIGUSR2 — SLURM's
// --signal), read by the training loop at every step. The handlers only set flags (async-signal-safe).
#pragma once

#include <atomic>
#include <initializer_list>

namespace xfer {

std::atomic<bool>& stop_requested();
// The signal that set the flag last, 0 if none.
int stop_signal();
// Installs handlers that set the flag. Safe to call more than once.
void install_stop_handlers(std::initializer_list<int> signals);

}  // namespace xfer
