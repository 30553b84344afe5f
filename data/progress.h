// A one-line progress bar on stderr for long conversions: fraction done, rate and ETA.
// On a terminal it redraws in place (at most ~10 times a second); otherwise it prints a plain
// line every few seconds so logs stay readable.
#pragma once

#include <chrono>
#include <string>

namespace rg::data {

class ProgressBar {
 public:
  // `total` work units named `unit` ("subjects", "slices"); disabled bars print nothing.
  ProgressBar(std::string label, double total, std::string unit, bool enabled = true);
  ~ProgressBar();
  void update(double done);  // absolute progress in units
  void finish();             // final line (100%) and newline; idempotent
  // A message on its own line; on a terminal the bar is redrawn below it. Printed whether or
  // not the bar is enabled (it is news, not progress).
  void note(const std::string& line);
  double elapsed_s() const;

 private:
  void draw(bool final_line);
  std::string label_, unit_;
  double total_, done_ = 0;
  bool enabled_, tty_, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

// "1m05s", "3.2s"
std::string format_duration(double seconds);

}  // namespace rg::data
