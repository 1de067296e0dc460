#include "monitor.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace nodeha::heartbeat {
namespace {

constexpr std::string_view kMonitorNames[] = {"normal", "unreachable", "error"};
constexpr std::string_view kManagementNames[] = {"enabled", "disabled", "drained"};

// "45s", "4.5s", "250ms": short enough for a reason line, exact enough to compare with config.
std::string format_duration(milliseconds d) {
  auto ms = d.count();
  if (ms < 0) ms = 0;
  if (ms < 1000) return std::to_string(ms) + "ms";
  auto text = std::to_string(ms / 1000);
  if (auto frac = ms % 1000) {
    auto digits = std::to_string(1000 + frac).substr(1);  // zero-padded to three digits
    digits.erase(digits.find_last_not_of('0') + 1);
    text += "." + digits;
  }
  return text + "s";
}

// Whether a verdict issued at `a` is known to be newer than one issued at `b` (times on the
// agent's clock; 0: unknown, and then the later message wins).
bool newer(int64_t a, int64_t b) { return a > 0 && b > 0 && a > b; }

}  // namespace

std::string_view to_string(MonitorState s) { return kMonitorNames[static_cast<int>(s)]; }
std::string_view to_string(ManagementState s) { return kManagementNames[static_cast<int>(s)]; }

std::optional<MonitorState> parse_monitor_state(std::string_view text) {
  for (int i = 0; i < 3; ++i)
    if (kMonitorNames[i] == text) return static_cast<MonitorState>(i);
  return std::nullopt;
}

std::optional<ManagementState> parse_management_state(std::string_view text) {
  for (int i = 0; i < 3; ++i)
    if (kManagementNames[i] == text) return static_cast<ManagementState>(i);
  return std::nullopt;
}

bool apply_management(ManagementState& state, ManagementCommand command) {
  auto next = state;
  switch (command) {
    case ManagementCommand::Enable: next = ManagementState::Enabled; break;
    case ManagementCommand::Disable:
      if (state == ManagementState::Enabled) next = ManagementState::Disabled;
      break;
  }
  bool changed = next != state;
  state = next;
  return changed;
}

std::string failing_checks_reason(std::span<const Check> checks) {
  std::string out;
  for (const auto& c : checks) {
    if (c.ok) continue;
    if (!out.empty()) out += "; ";
    out += c.name;
    out += ": ";
    out += c.detail.empty() ? std::string("failed") : c.detail;
  }
  return out;
}

Status validate(const MonitorConfig& config) {
  if (config.interval.count() <= 0) return Status(NODEHA_ERR_INVALID, "heartbeat: 'interval' must be positive");
  if (config.misses < 1) return Status(NODEHA_ERR_INVALID, "heartbeat: 'misses' must be at least 1");
  if (config.ping_timeout.count() <= 0)
    return Status(NODEHA_ERR_INVALID, "heartbeat: 'ping_timeout' must be positive");
  return Status::ok();
}

Monitor::Monitor(MonitorConfig config) : config_(config) {
  if (auto s = validate(config_); !s.is_ok()) throw std::invalid_argument(s.message());
}

Monitor::Entry* Monitor::lookup(std::string_view node) {
  auto* entry = nodes_.find(node);
  return entry ? &entry->second : nullptr;
}

const NodeState* Monitor::find(std::string_view node) const {
  const auto* entry = nodes_.find(node);
  return entry ? &entry->second.state : nullptr;
}

std::vector<const NodeState*> Monitor::list() const {
  std::vector<const NodeState*> out;
  out.reserve(nodes_.size());
  for (const auto& [id, e] : nodes_) out.push_back(&e.state);
  std::sort(out.begin(), out.end(), [](auto* a, auto* b) { return a->id < b->id; });
  return out;
}

std::optional<TimePoint> Monitor::next_due() const {
  if (suspension_ || timers_.empty()) return std::nullopt;
  return timers_.top().due;
}

bool Monitor::set_management(std::string_view node, ManagementState state) {
  auto* e = lookup(node);
  if (!e) return false;
  e->state.management = state;
  return true;
}

milliseconds Monitor::window(const NodeState& n) const {
  auto interval = n.interval.count() > 0 ? n.interval : config_.interval;
  if (config_.ping_lead.count() <= 0) return interval * config_.misses;
  return std::max(interval * config_.misses - config_.ping_lead, interval * 3 / 2);
}

std::optional<TimePoint> Monitor::deadline(const NodeState& n) const {
  if (n.monitor == MonitorState::Unreachable) return std::nullopt;  // back only by a heartbeat
  if (n.suspected_at) return std::nullopt;                           // waits for on_link_ok
  if (n.ping_pending) return n.ping_deadline;
  return n.last_seen + window(n);
}

// Pushes a heap entry only when the node has none or its deadline moved earlier; a deadline
// that moved later is found when the old entry comes due (see on_tick).
void Monitor::arm(Entry& e) {
  auto due = deadline(e.state);
  if (!due || (e.armed && *e.armed <= *due)) return;
  timers_.push(Timer{*due, &e});
  e.armed = due;
}

// Moves the node to the state its checks call for (it is alive), emitting what changed.
void Monitor::settle(Entry& e, TimePoint now, std::string_view cause, Effects& out) {
  auto& n = e.state;
  auto target = n.failing_checks.empty() ? MonitorState::Normal : MonitorState::Error;
  if (n.monitor != target) {
    std::string why = target == MonitorState::Error      ? n.failing_checks
                      : n.monitor == MonitorState::Error ? std::string("checks pass again")
                                                         : std::string(cause);
    out.push_back(Transition{n.id, n.monitor, target, why, now});
    n.monitor = target;
    n.reason = target == MonitorState::Error ? n.failing_checks : std::string();
  } else if (target == MonitorState::Error && n.reason != n.failing_checks) {
    out.push_back(ReasonChanged{n.id, n.monitor, n.reason, n.failing_checks, now});
    n.reason = n.failing_checks;
  }
}

void Monitor::alive(Entry& e, TimePoint now, std::string_view cause, Effects& out) {
  e.state.last_seen = now;
  e.state.ping_pending = false;
  e.state.ping_failure.clear();
  e.state.suspected_at.reset();
  if (suspension_) {
    e.heard_while_held = true;  // settled on resume
    return;
  }
  settle(e, now, cause, out);
  arm(e);
}

void Monitor::new_boot(Entry& e, const std::string& boot_id, TimePoint now, Effects& out) {
  auto& n = e.state;
  if (n.boot_id.empty() || n.boot_id == boot_id) return;
  if (!suspension_) out.push_back(Rebooted{n.id, n.boot_id, boot_id, now});
  else if (!e.held_boot) e.held_boot = n.boot_id;
}

void Monitor::ping_failed(Entry& e, TimePoint now, std::string detail, Effects& out) {
  auto& n = e.state;
  if (!config_.confirm_link) {
    unreachable(e, now, detail, out);
    return;
  }
  n.ping_pending = false;
  n.suspected_at = now;
  n.suspicion = detail;
  suspects_.insert(n.id);
  out.push_back(Suspected{n.id, std::move(detail), now});
}

void Monitor::unreachable(Entry& e, TimePoint now, std::string_view detail, Effects& out) {
  auto& n = e.state;
  n.ping_pending = false;
  n.suspected_at.reset();
  auto reason = "silent for " + format_duration(std::chrono::duration_cast<milliseconds>(now - n.last_seen)) +
                "; " + std::string(detail);
  out.push_back(Transition{n.id, n.monitor, MonitorState::Unreachable, reason, now});
  n.monitor = MonitorState::Unreachable;
  n.reason = std::move(reason);
}

void Monitor::fire(Entry& e, TimePoint now, Effects& out) {
  auto& n = e.state;
  if (n.ping_pending) {
    std::string detail = n.ping_failure.empty() ? "no answer to ping within " + format_duration(config_.ping_timeout)
                                                : std::exchange(n.ping_failure, {});
    ping_failed(e, now, std::move(detail), out);
  } else {
    out.push_back(PingRequest{n.id, config_.ping_timeout});
    n.ping_pending = true;
    n.ping_deadline = now + config_.ping_timeout;
    n.ping_failure.clear();
  }
  arm(e);
}

void Monitor::restore(std::span<const KnownNode> nodes, TimePoint started_at) {
  for (const auto& k : nodes) {
    if (auto* e = lookup(k.id)) {
      e->state.management = k.management;
      continue;
    }
    Entry e;
    auto& n = e.state;
    n.id = k.id;
    n.management = k.management;
    n.monitor = k.monitor;
    n.reason = n.monitor == MonitorState::Normal ? std::string() : k.reason;
    // The record keeps the reason, not the checks: enough to stay in error on a ping answer.
    if (n.monitor == MonitorState::Error) n.failing_checks = n.reason.empty() ? "checks failing" : n.reason;
    n.boot_id = k.boot_id;
    n.interval = k.interval;
    n.last_seen = started_at;
    auto& placed = nodes_.try_emplace(k.id, std::move(e)).first->second;
    arm(placed);
  }
}

// A heartbeat's checks, except where the node's known verdict of a check is newer than the
// heartbeat's (the heartbeat was built before that verdict reached the agent's heartbeat
// plugin): then the known verdict stays. A verdict without a time (an older agent) counts as
// issued when the heartbeat was sent.
std::vector<Check> Monitor::merge_checks(const NodeState& n, std::vector<Check> beat, int64_t sent_at) {
  for (auto& c : beat)
    if (c.at == 0) c.at = sent_at;
  for (const auto& k : n.checks) {
    auto it = std::find_if(beat.begin(), beat.end(), [&](const Check& c) { return c.name == k.name; });
    if (!newer(k.at, it != beat.end() ? it->at : sent_at)) continue;
    if (it != beat.end()) *it = k;
    else beat.push_back(k);
  }
  return beat;
}

Effects Monitor::on_heartbeat(Heartbeat hb, TimePoint now) {
  Effects out;
  auto* e = lookup(hb.node);
  if (!e) {
    Entry fresh;
    auto& n = fresh.state;
    n.id = hb.node;
    n.checks = merge_checks(n, hb.checks, hb.sent_at);
    n.failing_checks = failing_checks_reason(n.checks);
    n.monitor = n.failing_checks.empty() ? MonitorState::Normal : MonitorState::Error;
    n.reason = n.failing_checks;
    if (suspension_) fresh.held_registration = true;
    else out.push_back(Registered{n.id, hb.boot_id, n.monitor, n.reason, now});
    e = &nodes_.try_emplace(hb.node, std::move(fresh)).first->second;
  }
  e->state.heartbeat = std::move(hb);
  heard(*e, now, out);
  return out;
}

Monitor::Handle Monitor::handle(std::string_view node) { return Handle(lookup(node)); }
const NodeState& Monitor::Handle::state() const { return entry_->state; }

std::optional<Effects> Monitor::on_repeat(Handle node, uint64_t seq, int64_t sent_at, TimePoint now) {
  Entry* e = node.entry_;
  if (!e || !e->state.heartbeat) return std::nullopt;
  Effects out;
  e->state.heartbeat->seq = seq;
  e->state.heartbeat->sent_at = sent_at;
  heard(*e, now, out);
  return out;
}

// The node's heartbeat (state.heartbeat, just taken) counts: a new boot id, its checks merged with
// the known ones, its interval, and a sign of life.
void Monitor::heard(Entry& e, TimePoint now, Effects& out) {
  auto& n = e.state;
  const Heartbeat& hb = *n.heartbeat;
  new_boot(e, hb.boot_id, now, out);  // for a repeat: a ping answer may have told another since
  n.checks = merge_checks(n, hb.checks, hb.sent_at);
  n.failing_checks = failing_checks_reason(n.checks);
  n.boot_id = hb.boot_id;
  n.interval = milliseconds(hb.interval_ms);
  n.last_heartbeat = now;
  n.last_seq = hb.seq;
  alive(e, now, "heartbeat received", out);
}

Effects Monitor::on_tick(TimePoint now) {
  Effects out;
  if (suspension_) return out;  // the heap keeps its entries; resume re-arms every node
  while (!timers_.empty() && timers_.top().due <= now) {
    auto timer = timers_.top();
    timers_.pop();
    Entry* e = timer.entry;
    if (e->armed != timer.due) continue;  // superseded by an earlier entry
    e->armed.reset();
    auto due = deadline(e->state);
    if (!due) continue;
    if (*due > now) {  // heard from since: re-arm at the real deadline
      timers_.push(Timer{*due, e});
      e->armed = due;
      continue;
    }
    fire(*e, now, out);
  }
  return out;
}

Effects Monitor::on_ping_reply(std::string_view node, std::string_view boot_id, TimePoint now) {
  Effects out;
  auto* e = lookup(node);
  if (!e) return out;
  if (!boot_id.empty()) {
    new_boot(*e, std::string(boot_id), now, out);
    e->state.boot_id = boot_id;
  }
  alive(*e, now, "answered ping", out);
  return out;
}

Effects Monitor::on_ping_failed(std::string_view node, TimePoint now, std::string_view why) {
  Effects out;
  auto* e = lookup(node);
  if (!e || !e->state.ping_pending || suspension_) return out;
  std::string detail = why.empty() ? std::string("ping failed") : "ping failed: " + std::string(why);
  // Early: the window is not over, and a heartbeat may still come; judged at the deadline.
  if (config_.ping_lead.count() > 0 && now < e->state.ping_deadline) {
    e->state.ping_failure = std::move(detail);
    return out;
  }
  ping_failed(*e, now, std::move(detail), out);
  return out;
}

Effects Monitor::on_checks(std::string_view node, std::span<const Check> checks, TimePoint now) {
  Effects out;
  auto* e = lookup(node);
  if (!e) return out;
  auto& known = e->state.checks;
  for (const auto& c : checks) {
    auto it = std::find_if(known.begin(), known.end(), [&](const Check& k) { return k.name == c.name; });
    if (it == known.end()) known.push_back(c);
    else if (!newer(it->at, c.at)) *it = c;
  }
  e->state.failing_checks = failing_checks_reason(known);
  if (e->state.monitor != MonitorState::Unreachable && !suspension_) settle(*e, now, "checks pass", out);
  return out;
}

bool Monitor::suspend(TimePoint now, std::string reason) {
  if (suspension_) return false;
  suspension_ = Suspension{std::move(reason), now};
  return true;
}

Effects Monitor::resume(TimePoint now) {
  Effects out;
  if (!suspension_) return out;
  suspension_.reset();
  suspects_.clear();
  std::vector<Entry*> entries;
  entries.reserve(nodes_.size());
  for (auto& [id, e] : nodes_) entries.push_back(&e);
  std::sort(entries.begin(), entries.end(), [](auto* a, auto* b) { return a->state.id < b->state.id; });
  for (auto* e : entries) {
    auto& n = e->state;
    if (e->held_registration) {
      n.monitor = n.failing_checks.empty() ? MonitorState::Normal : MonitorState::Error;
      n.reason = n.failing_checks;
      out.push_back(Registered{n.id, n.boot_id, n.monitor, n.reason, now});
    } else {
      if (e->held_boot && *e->held_boot != n.boot_id) out.push_back(Rebooted{n.id, *e->held_boot, n.boot_id, now});
      // An unreachable node comes back only by a sign of life, as when watching.
      if (n.monitor != MonitorState::Unreachable || e->heard_while_held)
        settle(*e, now, "heard from while the monitor was suspended", out);
    }
    e->held_registration = e->heard_while_held = false;
    e->held_boot.reset();
    n.ping_pending = false;
    n.suspected_at.reset();
    n.last_seen = now;  // the grace: one full window, as after a restart
    arm(*e);
  }
  return out;
}

Effects Monitor::on_link_ok(TimePoint sent, TimePoint now) {
  if (suspension_) return sent >= suspension_->since ? resume(now) : Effects{};
  Effects out;
  for (auto it = suspects_.begin(); it != suspects_.end();) {
    auto* e = lookup(*it);
    if (e && e->state.suspected_at && *e->state.suspected_at > sent) {
      ++it;  // the probe was sent before this ping failed: it proves nothing for it
      continue;
    }
    if (e && e->state.suspected_at) unreachable(*e, now, e->state.suspicion, out);
    it = suspects_.erase(it);  // blamed, or heard from since
  }
  return out;
}

}  // namespace nodeha::heartbeat
