#include "leadership.h"

#include <spdlog/spdlog.h>

namespace nodeha::host {

namespace {
constexpr int64_t kReadEveryMs = 100;  // a follower's reads: takeover comes at most this late

int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}
}  // namespace

Leadership::Leadership(Bus& bus, std::string me, int64_t lease_ms, Metrics& metrics, ChangeFn on_change)
    : bus_(bus), metrics_(metrics), on_change_(std::move(on_change)), keeper_(std::move(me), lease_ms) {
  leader_gauge_ = metrics_.series(NODEHA_METRIC_GAUGE, "nodeha_controller_leader", "1 on the controller that holds the leader lease",
                                  {}, {}, nullptr);
  epoch_gauge_ = metrics_.series(NODEHA_METRIC_GAUGE, "nodeha_controller_epoch",
                                 "the leader lease's epoch as this controller last saw it (grows with every new leader)", {}, {},
                                 nullptr);
  if (leader_gauge_) Metrics::set(leader_gauge_, 0);
}

Leadership::~Leadership() { stop(); }

int64_t Leadership::now_ms() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - origin_).count();
}

bool Leadership::acting() const { return now_ms() < acting_until_.load(); }

void Leadership::start() {
  round();
  thread_ = std::thread([this] { run(); });
  deadline_thread_ = std::thread([this] { watch_deadline(); });
}

// The lease thread may sit in a renewal for the whole JetStream timeout on a dead link: the end
// of this controller's time is told from here, on time.
void Leadership::watch_deadline() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    int64_t until = acting_until_.load();
    int64_t now = now_ms();
    if (told_leads_ && now >= until) tell(false, "the lease could not be renewed in time");
    int64_t wait = told_leads_ && until > now ? until - now : kReadEveryMs;
    cv_.wait_for(lock, std::chrono::milliseconds(wait));
  }
}

void Leadership::tell(bool leads, const std::string& why) {
  if (!leads) spdlog::warn("stepping down: {}", why);
  told_leads_ = leads;
  if (leader_gauge_) Metrics::set(leader_gauge_, leads ? 1 : 0);
  on_change_(leads, epoch_, why);
}

void Leadership::stop() {
  {
    std::lock_guard lock(mu_);
    if (stop_) return;
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (deadline_thread_.joinable()) deadline_thread_.join();
  acting_until_ = 0;
  if (auto release = keeper_.release()) {
    auto r = bus_.kv_update(kLeaseBucket, kLeaseKey, encode_lease(release->write), release->expected);
    if (r) spdlog::info("leader lease released (epoch {})", release->write.epoch);
    else spdlog::warn("could not release the leader lease ({}); another controller takes over when it runs out", r.status().message());
  }
  if (leader_gauge_) Metrics::set(leader_gauge_, 0);
}

void Leadership::run() {
  for (;;) {
    int64_t wait = keeper_.leads() ? std::min(keeper_.renew_every_ms(), kReadEveryMs) : kReadEveryMs;
    {
      std::unique_lock lock(mu_);
      if (cv_.wait_for(lock, std::chrono::milliseconds(wait), [&] { return stop_; })) return;
    }
    round();
  }
}

void Leadership::write(const LeaseStep& step) {
  LeaseStep s = step;
  if (s.kind == LeaseStep::kCreate || s.kind == LeaseStep::kTake) s.write.since_unix_ms = unix_ms();
  int64_t sent = now_ms();
  Result<uint64_t> r = s.kind == LeaseStep::kCreate ? bus_.kv_create(kLeaseBucket, kLeaseKey, encode_lease(s.write))
                                                     : bus_.kv_update(kLeaseBucket, kLeaseKey, encode_lease(s.write), s.expected);
  keeper_.on_written(s, sent, r);
  if (!r && s.kind != LeaseStep::kRenew && r.status().code() != NODEHA_ERR_CONFLICT)
    spdlog::debug("leader lease: {} failed: {}", s.reason, r.status().message());
  if (r && s.kind != LeaseStep::kRenew) spdlog::info("leading, epoch {}: {}", s.write.epoch, s.reason);
}

void Leadership::round() {
  if (keeper_.leads()) {
    LeaseStep step = keeper_.on_tick(now_ms());
    if (step.kind == LeaseStep::kRenew) write(step);
    if (step.kind == LeaseStep::kStepDown) {
      spdlog::debug("lease: {}", step.reason);  // watch_deadline said so on time
      keeper_.stepped_down();
    }
  } else {
    auto e = bus_.kv_get(kLeaseBucket, kLeaseKey);
    LeaseView view;
    if (e) {
      view.present = !e.value().deleted;
      view.revision = e.value().revision;
      auto rec = decode_lease(e.value().value);
      view.readable = static_cast<bool>(rec);
      if (rec) view.record = rec.value();
    } else if (e.status().code() != NODEHA_ERR_NOT_FOUND) {
      publish_state();
      return;  // cannot tell: wait (a follower that cannot read cannot take over either)
    }
    LeaseStep step = keeper_.on_read(now_ms(), view);
    if (step.kind != LeaseStep::kWait) write(step);
  }
  publish_state();
}

void Leadership::publish_state() {
  // A renewal that came back after its own deadline leads to nothing.
  bool leads = keeper_.leads() && now_ms() < keeper_.acting_until();
  std::lock_guard lock(mu_);
  acting_until_ = keeper_.acting_until();
  epoch_ = keeper_.epoch();
  if (epoch_gauge_) Metrics::set(epoch_gauge_, static_cast<double>(keeper_.epoch()));
  cv_.notify_all();  // the deadline moved
  if (leads == told_leads_) return;
  tell(leads, leads ? "it holds the lease" : keeper_.leader().empty() ? "it lost the lease" : keeper_.leader() + " holds the lease");
}

}  // namespace nodeha::host
