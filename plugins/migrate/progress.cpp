#include "progress.h"

#include <algorithm>
#include <cmath>

namespace nodeha::migrate {

namespace {

// A byte count of someone else's message: 0 unless a non-negative integer.
uint64_t count_at(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer()) return 0;
  if (it->is_number_unsigned()) return it->get<uint64_t>();
  int64_t v = it->get<int64_t>();
  return v > 0 ? static_cast<uint64_t>(v) : 0;
}

constexpr const char* kTimeRemaining = "time_remaining_ms";

}  // namespace

nlohmann::json to_json(const JobSample& s) {
  return {{"data_total", s.data_total},         {"data_processed", s.data_processed},
          {"data_remaining", s.data_remaining}, {"memory_total", s.memory_total},
          {"memory_processed", s.memory_processed}, {"memory_remaining", s.memory_remaining},
          {"disk_total", s.disk_total},         {"disk_processed", s.disk_processed},
          {"disk_remaining", s.disk_remaining},
          {kTimeRemaining, s.time_remaining_ms ? nlohmann::json(*s.time_remaining_ms) : nlohmann::json()}};
}

JobSample sample_from_json(const nlohmann::json& j) {
  JobSample s;
  if (!j.is_object()) return s;
  s.data_total = count_at(j, "data_total");
  s.data_processed = count_at(j, "data_processed");
  s.data_remaining = count_at(j, "data_remaining");
  s.memory_total = count_at(j, "memory_total");
  s.memory_processed = count_at(j, "memory_processed");
  s.memory_remaining = count_at(j, "memory_remaining");
  s.disk_total = count_at(j, "disk_total");
  s.disk_processed = count_at(j, "disk_processed");
  s.disk_remaining = count_at(j, "disk_remaining");
  auto t = j.find(kTimeRemaining);
  if (t == j.end() || !t->is_number_integer()) return s;
  if (t->is_number_unsigned()) {
    if (t->get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX)) s.time_remaining_ms = static_cast<int64_t>(t->get<uint64_t>());
  } else if (t->get<int64_t>() >= 0) {
    s.time_remaining_ms = t->get<int64_t>();
  }
  return s;
}

JobSample completed_sample(const JobSample& source_last, const JobSample& completed) {
  JobSample out = completed.data_total > 0 ? completed : source_last;
  if (out.disk_total == 0 && source_last.disk_total > 0) {
    out.disk_total = source_last.disk_total;
    // The migration ends only once the mirror has caught up with every write: all of it went.
    out.disk_processed = std::max(source_last.disk_processed, source_last.disk_total);
    out.disk_remaining = 0;
    out.data_total += out.disk_total;
    out.data_processed += out.disk_processed;
  }
  out.data_remaining = out.memory_remaining = out.disk_remaining = 0;  // over: whatever the last reading saw
  out.time_remaining_ms = 0;
  return out;
}

std::optional<int64_t> estimate_remaining_ms(const std::deque<RateReading>& recent, uint64_t remaining) {
  if (recent.size() < 2) return std::nullopt;
  const RateReading& first = recent.front();
  const RateReading& last = recent.back();
  if (last.at_ms <= first.at_ms || last.processed <= first.processed) return std::nullopt;
  long double ms = std::ceil(static_cast<long double>(remaining) * static_cast<long double>(last.at_ms - first.at_ms) /
                             static_cast<long double>(last.processed - first.processed));
  if (ms >= static_cast<long double>(INT64_MAX)) return INT64_MAX;
  return static_cast<int64_t>(ms);
}

std::optional<int64_t> RemainingTime::observe(int64_t now_ms, const JobSample& sample) {
  if (!recent_.empty() && (sample.data_processed < recent_.back().processed || now_ms < recent_.back().at_ms))
    recent_.clear();
  recent_.push_back({now_ms, sample.data_processed});
  while (recent_.size() > 2 && recent_.front().at_ms < now_ms - window_ms_) recent_.pop_front();
  if (sample.time_remaining_ms) return sample.time_remaining_ms;
  return estimate_remaining_ms(recent_, sample.data_remaining);
}

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
