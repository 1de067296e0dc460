#include "progress.h"

#include <algorithm>

namespace nodeha::migrate {

const char* verdict_name(Verdict v) {
  switch (v) {
    case Verdict::Continue: return "continue";
    case Verdict::Timeout: return "timeout";
    case Verdict::Stalled: return "stalled";
  }
  return "?";
}

void ProgressWatch::observe(int64_t now_ms, const JobSample& sample) {
  last_ = sample;
  has_sample_ = true;
  // Before QEMU has counted anything (setup, the destination starting) there is nothing to judge
  // progress by: that time counts against the stall limit like any other.
  if (sample.data_total == 0 && sample.data_remaining == 0) return;
  if (sample.data_remaining < lowest_remaining_) {
    lowest_remaining_ = sample.data_remaining;
    last_progress_ms_ = now_ms;
  }
}

Verdict ProgressWatch::verdict(int64_t now_ms) const {
  if (timeout_ms_ > 0 && now_ms >= timeout_ms_) return Verdict::Timeout;
  if (stall_ms_ > 0 && now_ms - last_progress_ms_ >= stall_ms_) return Verdict::Stalled;
  return Verdict::Continue;
}

int64_t ProgressWatch::next_deadline_ms() const {
  int64_t next = INT64_MAX;
  if (timeout_ms_ > 0) next = std::min(next, timeout_ms_);
  if (stall_ms_ > 0) next = std::min(next, last_progress_ms_ + stall_ms_);
  return next;
}

}  // namespace nodeha::migrate
