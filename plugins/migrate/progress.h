// When to give up on a running migration: it took longer than `timeout`, or its data_remaining
// has not decreased for `stall` (QEMU keeps resending pages the guest dirties faster than the
// link carries them). Pure: times are milliseconds since the migration started.
#pragma once

#include <cstdint>

namespace nodeha::migrate {

// One reading of virDomainGetJobStats.
struct JobSample {
  uint64_t data_total = 0;
  uint64_t data_processed = 0;
  uint64_t data_remaining = 0;
};

enum class Verdict { Continue, Timeout, Stalled };

const char* verdict_name(Verdict v);  // "continue" | "timeout" | "stalled"

class ProgressWatch {
 public:
  // A limit of 0 is no limit.
  ProgressWatch(int64_t timeout_ms, int64_t stall_ms) : timeout_ms_(timeout_ms), stall_ms_(stall_ms) {}

  // A job reading taken at `now_ms`. The stall clock restarts whenever data_remaining goes below
  // the lowest value seen so far (the first reading with data counts as progress).
  void observe(int64_t now_ms, const JobSample& sample);
  // Whether to abort at `now_ms`; Timeout wins over Stalled.
  Verdict verdict(int64_t now_ms) const;
  // The earliest time at which verdict() may change without a new reading (INT64_MAX: never).
  int64_t next_deadline_ms() const;

  bool has_sample() const { return has_sample_; }
  const JobSample& last() const { return last_; }

 private:
  int64_t timeout_ms_;
  int64_t stall_ms_;
  bool has_sample_ = false;
  JobSample last_;
  uint64_t lowest_remaining_ = UINT64_MAX;
  int64_t last_progress_ms_ = 0;
};

}  // namespace nodeha::migrate
