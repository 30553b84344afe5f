#include "train/interrupt.h"

#include <unistd.h>

#include <atomic>
#include <csignal>

namespace rg::train {

namespace {
std::atomic<bool> g_requested{false};

void on_signal(int signal) {
  if (g_requested.exchange(true)) {
    // Second signal: leave now (async-signal-safe calls only).
    constexpr char msg[] = "\ninterrupted twice: exiting without saving\n";
    [[maybe_unused]] ssize_t n = write(STDERR_FILENO, msg, sizeof(msg) - 1);
    _exit(128 + signal);
  }
  constexpr char msg[] = "\ninterrupt: finishing this step, saving a checkpoint, then exiting "
                         "(press Ctrl-C again to quit at once)\n";
  [[maybe_unused]] ssize_t n = write(STDERR_FILENO, msg, sizeof(msg) - 1);
}
}  // namespace

void install_interrupt_handler() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

bool interrupt_requested() { return g_requested.load(); }
void set_interrupt_requested(bool value) { g_requested.store(value); }

}  // namespace rg::train
