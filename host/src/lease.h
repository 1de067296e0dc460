// The controllers' leader lease, as a pure state machine: one record in KV (bucket `controllers`,
// key `leader`), written only with a revision check, read by every controller. Times are
// milliseconds on the caller's monotonic clock; nothing here reads a clock or the bus.
//
// Why one leader at a time, even with a leader cut off from everyone:
// - Taking the lease is an update checked against the revision the taker saw. It succeeds only if
//   nobody wrote the key since, so two controllers can never both take it from the same holder.
// - A follower takes it over only once the revision it saw has stood unchanged for a whole lease,
//   counted from when it saw it, which is after the holder sent it.
// - The holder stops acting `margin` before a lease has passed since it *sent* its last renewal
//   that succeeded: before any follower can have taken over, as long as the two clocks' rates
//   differ by less than margin/lease (25 % with the defaults).
// - A holder whose renewal finds another revision has lost it: it stops at once.
// The epoch grows by one with every taking: a fencing token for records written under it.
#pragma once

#include <nodeha/plugin.hpp>

#include <cstdint>
#include <optional>
#include <string>

namespace nodeha::host {

inline constexpr const char* kLeaseBucket = "controllers";
inline constexpr const char* kLeaseKey = "leader";
inline constexpr int64_t kMinLeaseMs = 200;    // [host] lease, and what a record may say
inline constexpr int64_t kMaxLeaseMs = 60000;

struct LeaseRecord {
  std::string holder;  // a controller's node_id; empty: released (its holder stopped)
  uint64_t epoch = 0;
  int64_t lease_ms = 0;
  int64_t since_unix_ms = 0;  // when this holder took it (for people; never used to decide)
};

std::string encode_lease(const LeaseRecord& r);
// Someone else's bytes: INVALID with why when it is not a lease record (a holder that is not a
// node id, an epoch at its end, a lease outside kMinLeaseMs..kMaxLeaseMs: a record nobody could
// outwait or outnumber is taken for unreadable, and waited out like a silent holder).
Result<LeaseRecord> decode_lease(std::string_view bytes);

// What the key holds, as last read.
struct LeaseView {
  bool present = false;  // false: no key yet, or deleted
  LeaseRecord record;    // when present and readable
  bool readable = true;  // false: present but not a lease record (taken over like an expired one)
  uint64_t revision = 0;
};

// What to do next.
struct LeaseStep {
  enum Kind { kWait, kCreate, kTake, kRenew, kStepDown } kind = kWait;
  LeaseRecord write;          // for kCreate, kTake, kRenew
  uint64_t expected = 0;      // the revision the write must find (kTake, kRenew)
  std::string reason;         // for kStepDown, and for people
};

class LeaseKeeper {
 public:
  // `margin_ms`: how long before the lease ends a holder stops acting; lease/4 when 0.
  LeaseKeeper(std::string me, int64_t lease_ms, int64_t margin_ms = 0);

  // A follower's read of the key (at `now`): create it, take it over, or wait.
  LeaseStep on_read(int64_t now, const LeaseView& view);
  // The holder's turn (at `now`): renew when due, step down when its time is up.
  LeaseStep on_tick(int64_t now) const;
  // The outcome of a write asked for by a step and sent at `sent`: the new revision, or the
  // failure. A conflict means someone else wrote the key: whoever we were, we now follow.
  void on_written(const LeaseStep& step, int64_t sent, const Result<uint64_t>& result);
  // Release on a clean stop: lets a follower take over at once. Empty when not leading.
  std::optional<LeaseStep> release() const;
  // We stop leading, whatever the lease says (the step down is done).
  void stepped_down();

  bool leads() const { return leading_; }
  // Until when (monotonic ms) the holder may act; 0 when following.
  int64_t acting_until() const { return leading_ ? acting_until_ : 0; }
  uint64_t epoch() const { return epoch_; }
  const std::string& leader() const { return leader_; }  // as last seen; empty: none known
  int64_t lease_ms() const { return lease_ms_; }
  int64_t renew_every_ms() const { return lease_ms_ / 4; }

 private:
  std::string me_;
  int64_t lease_ms_;
  int64_t margin_ms_;
  bool leading_ = false;
  uint64_t revision_ = 0;       // ours when leading; the one seen when following
  int64_t seen_at_ = 0;         // when the seen revision was first read
  int64_t renewed_sent_ = 0;    // when the last successful renewal (or taking) was sent
  int64_t acting_until_ = 0;
  uint64_t epoch_ = 0;          // current holder's (ours when leading)
  uint64_t max_epoch_ = 0;      // highest seen: a re-created key never goes back
  std::string leader_;
  LeaseRecord held_;            // what we wrote last, when leading
};

}  // namespace nodeha::host
