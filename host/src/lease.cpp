#include "lease.h"

#include <nodeha/ids.hpp>
#include <nlohmann/json.hpp>

namespace nodeha::host {

std::string encode_lease(const LeaseRecord& r) {
  return nlohmann::json{{"holder", r.holder}, {"epoch", r.epoch}, {"lease_ms", r.lease_ms}, {"since_unix_ms", r.since_unix_ms}}
      .dump();
}

Result<LeaseRecord> decode_lease(std::string_view bytes) {
  auto j = nlohmann::json::parse(bytes, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Status(NODEHA_ERR_INVALID, "the leader lease is not a JSON object");
  LeaseRecord r;
  auto holder = j.find("holder");
  auto epoch = j.find("epoch");
  auto lease = j.find("lease_ms");
  if (holder == j.end() || !holder->is_string()) return Status(NODEHA_ERR_INVALID, "the leader lease has no holder string");
  if (const auto& h = holder->get_ref<const std::string&>(); !h.empty() && !NodeId::parse(h))
    return Status(NODEHA_ERR_INVALID, "the leader lease's holder " + NodeId::parse(h).status().message());
  if (epoch == j.end() || !epoch->is_number_unsigned() || epoch->get<uint64_t>() == UINT64_MAX)
    return Status(NODEHA_ERR_INVALID, "the leader lease has no epoch below 2^64-1");
  if (lease == j.end() || !lease->is_number_integer() || lease->get<int64_t>() < kMinLeaseMs || lease->get<int64_t>() > kMaxLeaseMs)
    return Status(NODEHA_ERR_INVALID, "the leader lease has no lease_ms between " + std::to_string(kMinLeaseMs) + " and " +
                                          std::to_string(kMaxLeaseMs));
  r.holder = holder->get<std::string>();
  r.epoch = epoch->get<uint64_t>();
  r.lease_ms = lease->get<int64_t>();
  if (auto s = j.find("since_unix_ms"); s != j.end() && s->is_number_integer()) r.since_unix_ms = s->get<int64_t>();
  return r;
}

LeaseKeeper::LeaseKeeper(std::string me, int64_t lease_ms, int64_t margin_ms)
    : me_(std::move(me)), lease_ms_(lease_ms), margin_ms_(margin_ms > 0 ? margin_ms : lease_ms / 4) {}

LeaseStep LeaseKeeper::on_read(int64_t now, const LeaseView& view) {
  LeaseStep step;
  LeaseRecord mine{me_, 0, lease_ms_, 0};
  if (!view.present) {
    leader_.clear();
    step.kind = LeaseStep::kCreate;
    mine.epoch = max_epoch_ + 1;
    step.write = mine;
    step.reason = "no controller holds the lease";
    return step;
  }
  if (view.revision != revision_) {
    revision_ = view.revision;
    seen_at_ = now;
  }
  if (view.readable) {
    leader_ = view.record.holder;
    epoch_ = view.record.epoch;
    max_epoch_ = std::max(max_epoch_, view.record.epoch);
  } else {
    leader_.clear();
  }
  mine.epoch = max_epoch_ + 1;
  step.write = mine;
  step.expected = view.revision;
  // Released, or ours from before a restart (node ids are unique): nobody else can act under
  // this revision, and the checked write proves nobody wrote since.
  if (view.readable && (view.record.holder.empty() || view.record.holder == me_)) {
    step.kind = LeaseStep::kTake;
    step.reason = view.record.holder.empty() ? "the lease was released" : "the lease names this controller";
    return step;
  }
  // The holder's own lease may be longer than ours: wait for the longer of the two.
  int64_t lease = view.readable ? std::max(lease_ms_, view.record.lease_ms) : lease_ms_;
  if (now - seen_at_ >= lease) {
    step.kind = LeaseStep::kTake;
    step.reason = view.readable ? "the lease of " + view.record.holder + " was not renewed for " + std::to_string(now - seen_at_) + " ms"
                                : "the lease record is unreadable and unchanged for " + std::to_string(now - seen_at_) + " ms";
    return step;
  }
  return step;  // kWait
}

LeaseStep LeaseKeeper::on_tick(int64_t now) const {
  LeaseStep step;
  if (!leading_) return step;
  if (now >= acting_until_) {
    step.kind = LeaseStep::kStepDown;
    step.reason = "the lease could not be renewed for " + std::to_string(now - renewed_sent_) + " ms";
    return step;
  }
  if (now - renewed_sent_ >= renew_every_ms()) {
    step.kind = LeaseStep::kRenew;
    step.write = held_;
    step.expected = revision_;
  }
  return step;
}

void LeaseKeeper::on_written(const LeaseStep& step, int64_t sent, const Result<uint64_t>& result) {
  if (step.kind != LeaseStep::kCreate && step.kind != LeaseStep::kTake && step.kind != LeaseStep::kRenew) return;
  if (!result) {
    // Someone else wrote it first (a taker, another creator): follow, and read it afresh.
    if (result.status().code() == NODEHA_ERR_CONFLICT) {
      leading_ = false;
      acting_until_ = 0;
    }
    return;  // anything else: a renewal is tried again; the lease runs out on its own
  }
  // A renewal held back past our own deadline must not revive a lease already given up.
  if (step.kind == LeaseStep::kRenew && !leading_) return;
  leading_ = true;
  revision_ = result.value();
  renewed_sent_ = sent;
  acting_until_ = sent + lease_ms_ - margin_ms_;
  held_ = step.write;
  epoch_ = step.write.epoch;
  max_epoch_ = std::max(max_epoch_, epoch_);
  leader_ = me_;
}

std::optional<LeaseStep> LeaseKeeper::release() const {
  if (!leading_) return std::nullopt;
  LeaseStep step;
  step.kind = LeaseStep::kRenew;
  step.write = held_;
  step.write.holder.clear();
  step.expected = revision_;
  step.reason = "released";
  return step;
}

void LeaseKeeper::stepped_down() {
  leading_ = false;
  acting_until_ = 0;
  seen_at_ = 0;
  revision_ = 0;  // read afresh: the next read starts a new wait
}

}  // namespace nodeha::host
