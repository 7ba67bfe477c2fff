#include "xfer/core/stop.hpp"

#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

namespace xfer {

namespace {
std::atomic<bool> g_stop{false};
std::atomic<int> g_signals{0};
volatile std::sig_atomic_t g_signal = 0;
std::atomic<int> g_exit_status{75};

volatile std::sig_atomic_t g_launcher_stop = 0;  // 1: the launcher's SIGCONT started the stop; 2: its SIGTERM came

extern "C" void on_signal(int sig) {
  g_signal = sig;
  // The SIGTERM of the launcher's sequence after its SIGCONT is not a second signal (the user insisting).
  if (sig == SIGTERM && g_launcher_stop == 1) g_launcher_stop = 2;
  else g_signals.fetch_add(1, std::memory_order_relaxed);
  g_stop.store(true, std::memory_order_relaxed);
}

// Open MPI's mpirun (4.1) does not forward SIGTERM or SIGINT: on either it sends the ranks SIGCONT, waits
// odls_base_sigkill_timeout seconds (default 1), sends SIGTERM, waits as long again and sends SIGKILL — so a rank
// that waits for the SIGTERM has a second left. A SIGCONT from the launcher that started this process, when this
// process was not suspended (SIGTSTP, which mpirun does forward), is that sequence's first step: the stop starts
// then, as for SIGTERM.
std::atomic<pid_t> g_launcher{0};
volatile std::sig_atomic_t g_suspended = 0;

extern "C" void on_tstp(int) {
  g_suspended = 1;
  ::raise(SIGSTOP);
}

extern "C" void on_cont(int, siginfo_t* info, void*) {
  if (g_suspended) {
    g_suspended = 0;
    return;
  }
  const pid_t launcher = g_launcher.load(std::memory_order_relaxed);
  if (launcher != 0 && info && info->si_pid == launcher && g_launcher_stop == 0) {
    on_signal(SIGCONT);  // stop_signal() says SIGCONT: mpirun is ending the job
    g_launcher_stop = 1;
  }
}

// The parent process when it is an Open MPI launcher (mpirun on its node, orted on the others), else 0.
pid_t open_mpi_launcher() {
  const pid_t parent = ::getppid();
  std::FILE* f = std::fopen(("/proc/" + std::to_string(parent) + "/comm").c_str(), "r");
  if (!f) return 0;
  char comm[64] = {0};
  const bool read = std::fgets(comm, sizeof comm, f) != nullptr;
  std::fclose(f);
  if (!read) return 0;
  const std::string name(comm, std::strcspn(comm, "\n"));
  for (const char* l : {"mpirun", "mpiexec", "orterun", "orted", "prterun", "prted"})
    if (name == l) return parent;
  return 0;
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

void install_default_stop_handlers() {
  install_stop_handlers({SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2});
  g_launcher.store(open_mpi_launcher());
  if (g_launcher.load() == 0) return;
  struct sigaction cont {};
  cont.sa_sigaction = on_cont;
  sigemptyset(&cont.sa_mask);
  cont.sa_flags = SA_RESTART | SA_SIGINFO;
  sigaction(SIGCONT, &cont, nullptr);
  struct sigaction tstp {};
  tstp.sa_handler = on_tstp;
  sigemptyset(&tstp.sa_mask);
  tstp.sa_flags = SA_RESTART;
  sigaction(SIGTSTP, &tstp, nullptr);
}

bool started_by_open_mpi_launcher() { return g_launcher.load() != 0; }

void set_stop_exit_status(int exit_code) { g_exit_status.store(exit_code); }

void arm_stop_watchdog(double bound_s, int exit_code) {
  g_exit_status.store(exit_code);
  std::thread([bound_s] {
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
        ::_exit(g_exit_status.load());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }).detach();
}

}  // namespace xfer
