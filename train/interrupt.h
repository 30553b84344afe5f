// Ctrl-C handling for long runs: the first SIGINT/SIGTERM sets a flag that the training loop
// checks after each step (it then saves a checkpoint and exits cleanly); a second one exits at
// once, for a user who really wants out.
#pragma once

namespace rg::train {

void install_interrupt_handler();
bool interrupt_requested();
// For tests: set or clear the flag as if a signal had arrived.
void set_interrupt_requested(bool value);

}  // namespace rg::train
