#include "data/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace rg::data {

std::string format_duration(double s) {
  char buf[32];
  if (!std::isfinite(s) || s < 0) return "?";
  if (s < 60) {
    std::snprintf(buf, sizeof buf, "%.1fs", s);
  } else if (s < 3600) {
    std::snprintf(buf, sizeof buf, "%dm%02ds", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%dh%02dm", static_cast<int>(s) / 3600, (static_cast<int>(s) / 60) % 60);
  }
  return buf;
}

ProgressBar::ProgressBar(std::string label, double total, std::string unit, bool enabled)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(std::max(total, 1e-9)),
      enabled_(enabled),
      tty_(isatty(STDERR_FILENO) != 0),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

ProgressBar::~ProgressBar() {
  // An unfinished bar (an exception unwound past it) ends its line so the error starts clean.
  if (enabled_ && tty_ && !finished_ && done_ > 0) std::fputc('\n', stderr);
}

double ProgressBar::elapsed_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void ProgressBar::update(double done) {
  done_ = std::clamp(done, 0.0, total_);
  if (!enabled_ || finished_) return;
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_draw_).count();
  if (since < (tty_ ? 0.1 : 5.0)) return;
  last_draw_ = now;
  draw(false);
}

void ProgressBar::finish() {
  if (finished_) return;
  done_ = total_;
  if (enabled_) draw(true);
  finished_ = true;
}

void ProgressBar::note(const std::string& line) {
  if (enabled_ && tty_ && !finished_) {
    std::fprintf(stderr, "\r\033[K%s\n", line.c_str());
    draw(false);
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

void ProgressBar::draw(bool final_line) {
  const double el = elapsed_s();
  const double frac = done_ / total_;
  const double rate = el > 0 ? done_ / el : 0;
  const double eta = rate > 0 ? (total_ - done_) / rate : -1;
  constexpr int kWidth = 28;
  const int filled = static_cast<int>(std::lround(frac * kWidth));
  std::string bar(static_cast<size_t>(filled), '=');
  if (filled < kWidth) bar += '>' + std::string(static_cast<size_t>(kWidth - filled - 1), ' ');
  char buf[256];
  if (final_line) {
    std::snprintf(buf, sizeof buf, "%s [%s] %.0f %s in %s (%.2f %s/s)", label_.c_str(), bar.c_str(),
                  total_, unit_.c_str(), format_duration(el).c_str(), rate, unit_.c_str());
  } else {
    std::snprintf(buf, sizeof buf, "%s [%s] %3.0f%% %.1f/%.0f %s, %.2f %s/s, ETA %s", label_.c_str(),
                  bar.c_str(), 100 * frac, done_, total_, unit_.c_str(), rate, unit_.c_str(),
                  format_duration(eta).c_str());
  }
  if (tty_) {
    std::fprintf(stderr, "\r%s\033[K%s", buf, final_line ? "\n" : "");
  } else {
    std::fprintf(stderr, "%s\n", buf);
  }
  std::fflush(stderr);
}

}  // namespace rg::data
