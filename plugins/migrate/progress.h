// A running migration's figures: when to give up on it (it took longer than `timeout`, or its
// data_remaining has not decreased for `stall`: QEMU keeps resending pages the guest dirties
// faster than the link carries them), how long it may still take, and how its figures read in
// events and task steps. Pure: times are milliseconds since the migration started.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <deque>
#include <optional>

namespace nodeha::migrate {

// One reading of virDomainGetJobStats. libvirt's data_* is memory_* plus disk_*; disk_* counts
// the copy of local disks (VIR_MIGRATE_NON_SHARED_DISK: the NBD mirror's bytes), 0 without one.
struct JobSample {
  uint64_t data_total = 0;
  uint64_t data_processed = 0;
  uint64_t data_remaining = 0;
  uint64_t memory_total = 0;
  uint64_t memory_processed = 0;
  uint64_t memory_remaining = 0;
  uint64_t disk_total = 0;
  uint64_t disk_processed = 0;
  uint64_t disk_remaining = 0;
  // Milliseconds still to go; empty: unknown. libvirt's VIR_DOMAIN_JOB_TIME_REMAINING when it
  // gives one (libvirt 9.0's QEMU driver never does for a migration), else RemainingTime's guess.
  std::optional<int64_t> time_remaining_ms;
};

// The figures as events and task steps carry them: data_*, memory_*, disk_* (integers) and
// time_remaining_ms (an integer, or null when unknown).
nlohmann::json to_json(const JobSample& s);
// The same, read leniently from someone else's message: a figure that is missing, negative or not
// an integer reads as 0; a time_remaining_ms that is not a non-negative integer as unknown.
JobSample sample_from_json(const nlohmann::json& j);

// The figures of a successful migration: the finished job's statistics where they say more than
// the last reading (the memory of a small guest moves between two readings). The source's figures
// count the NBD mirror; when only the destination's could be read, which count its QEMU's own
// transfer only, the disks' figures come from the source's last reading. Nothing remains.
JobSample completed_sample(const JobSample& source_last, const JobSample& completed);

// One point of the transfer: data_processed at a time.
struct RateReading {
  int64_t at_ms = 0;
  uint64_t processed = 0;
};

// How long `remaining` bytes take at the rate between the first and the last of `recent` (oldest
// first), rounded up. Empty, rather than a guess, with fewer than two readings, no time between
// them, or no growth (the rate is 0: setup, the destination starting, a stalled link).
std::optional<int64_t> estimate_remaining_ms(const std::deque<RateReading>& recent, uint64_t remaining);

// The remaining time of one migration, from its readings in turn (not thread-safe: one monitor).
class RemainingTime {
 public:
  // Readings older than `window_ms` before the newest are dropped, two readings always kept: the
  // rate is that of the last few seconds.
  explicit RemainingTime(int64_t window_ms = 5000) : window_ms_(window_ms) {}
  // A reading at `now_ms`; returns its time remaining: the sample's own when libvirt gave one,
  // else the estimate from the recent rate. A reading with less processed than the one before
  // (a new job's counters) starts the rate afresh.
  std::optional<int64_t> observe(int64_t now_ms, const JobSample& sample);

 private:
  int64_t window_ms_;
  std::deque<RateReading> recent_;
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
