#include "xfer/core/stop.hpp"

#include <csignal>

namespace xfer {

namespace {
std::atomic<bool> g_stop{false};
volatile std::sig_atomic_t g_signal = 0;
extern "C" void on_signal(int sig) {
  g_signal = sig;
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

}  // namespace xfer
