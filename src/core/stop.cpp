#include "xfer/core/stop.hpp"

#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <thread>

namespace xfer {

namespace {
std::atomic<bool> g_stop{false};
std::atomic<int> g_signals{0};
volatile std::sig_atomic_t g_signal = 0;

extern "C" void on_signal(int sig) {
  g_signal = sig;
  g_signals.fetch_add(1, std::memory_order_relaxed);
  g_stop.store(true, std::memory_order_relaxed);
}
}  // namespace

std::atomic<bool>& stop_requested() { return g_stop; }
int stop_signal() { return static_cast<int>(g_signal); }

void install_stop_handlers(std::initializer_list<int> signals) {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (int s : signals) sigaction(s, &sa, nullptr);
}

void install_default_stop_handlers() { install_stop_handlers({SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2}); }

void arm_stop_watchdog(double bound_s, int exit_code) {
  std::thread([bound_s, exit_code] {
    using Clock = std::chrono::steady_clock;
    while (!g_stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const auto first = Clock::now();
    const int signals_then = g_signals.load();
    while (true) {
      const double waited = std::chrono::duration<double>(Clock::now() - first).count();
      const bool again = g_signals.load() > signals_then;  // a second signal: the user insists
      if (waited > bound_s || (again && waited > 5)) {
        std::fprintf(stderr,
                     "xfer: error: the stop did not complete within %.0f s (%s); exiting now — interrupted trials "
                     "resume from their last checkpoint on the next run\n",
                     again ? 5.0 : bound_s, again ? "second signal" : "the bound after a stop");
        std::fflush(stderr);
        ::_exit(exit_code);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }).detach();
}

}  // namespace xfer
