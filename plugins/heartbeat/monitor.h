// The controller's node monitor: a pure state machine over heartbeats, ping answers, check
// verdicts and the passing of time. It never reads a clock, publishes or writes: every step
// takes `now` and returns the effects for the caller (the heartbeat plugin) to perform, in
// order: write the node record, publish the event, update metrics, send the ping.
//
// Monitor states:
//   normal      -- heartbeats arrive and every check passes
//   error       -- heartbeats arrive but a check fails; reason "netcheck: eth1 target ... unreachable"
//   unreachable -- silent for `misses` of its intervals, then no answer to a ping-back
//
//   any  --heartbeat, checks fail---------------------> error
//   any  --heartbeat, checks pass---------------------> normal
//   normal/error --silent misses x interval--> (ping sent) --no answer by ping_timeout,
//                                                           or the ping failed--> unreachable
//   unreachable --ping answer--> normal, or error if the last known checks failed
//   normal/error --checks verdict (on_checks)--> error/normal (unreachable only records it)
//
// With `confirm_link`, a failed ping-back first makes the node *suspected* (effect Suspected):
// the caller checks its own link to the bus with a round trip, then on_link_ok(sent) blames
// every node suspected by `sent` (-> unreachable), or it calls suspend(). A sign of life clears
// the suspicion. A suspected node has no deadline.
//
// The monitor as a whole is *watching* or *suspended* (the caller's own link is down or in
// doubt, so silence proves nothing about the nodes):
//   watching  --suspend(now, reason)-->                      suspended
//   suspended --resume(now), or on_link_ok(sent >= since)--> watching, every node with a grace
// While suspended it holds every verdict: no transition, no registration, no event, no ping,
// on_tick does nothing and a failed ping is ignored. Heartbeats, ping answers and checks are
// still recorded (last_seen, checks, boot id; a new node is kept). On resume each node settles
// to what was heard (the held registrations, reboots and transitions are emitted then), and
// every node not unreachable gets one full detection window from `now`, as after a controller
// restart (restore): an outage of the caller never turns into unreachable nodes, and a node
// that died during it is found one window (plus the ping-back) after the resume.
//
// Repeated identical inputs emit nothing; each real change emits exactly one effect. The
// management state (enabled/disabled/drained) is carried for the record and changed only by
// commands (apply_management / set_management), never by this machine.
//
// Threads: not synchronised; the plugin calls it from one thread (or under one lock).
//
// Cost: the nodes sit in a hash map, so on_heartbeat, on_ping_* and on_checks are O(1)
// (plus O(log n) when a node is new or its deadline moves earlier). Deadlines sit in a min-heap
// with at most one live entry per node, re-armed lazily: a heartbeat only moves the node's
// `last_seen`; when the old entry comes due, the tick re-arms it at the real deadline. So
// on_tick costs O((due + re-armed) log n) and each node is re-armed at most about once per
// detection window -- with 10,000 nodes at 1 Hz and 3 misses, ~5,000 heap operations a second,
// never a scan of every node. suspend() is O(1); on_link_ok is O(suspected nodes); resume()
// visits every node once, O(n log n), which is paid once per outage of the caller.
#pragma once

#include "heartbeat_codec.h"
#include "node_table.h"

#include <nodeha/plugin.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <queue>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace nodeha::heartbeat {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
using std::chrono::milliseconds;

enum class MonitorState { Normal, Unreachable, Error };
enum class ManagementState { Enabled, Disabled, Drained };
enum class ManagementCommand { Enable, Disable };

// "normal" / "unreachable" / "error"; "enabled" / "disabled" / "drained".
std::string_view to_string(MonitorState s);
std::string_view to_string(ManagementState s);
std::optional<MonitorState> parse_monitor_state(std::string_view text);
std::optional<ManagementState> parse_management_state(std::string_view text);

// Applies an operator's command; returns whether the state changed. `enable` returns a
// disabled or drained node to enabled; `disable` leaves a drained node drained (disabling
// must never loosen a drain: a drained node starts no VM).
bool apply_management(ManagementState& state, ManagementCommand command);

// The failing checks as one reason, "name: detail; name: detail"; empty when all pass.
std::string failing_checks_reason(std::span<const Check> checks);

struct MonitorConfig {
  milliseconds interval{15000};     // for nodes whose own interval is not known yet
  int misses = 3;                   // silent intervals before the ping-back
  milliseconds ping_timeout{5000};  // how long the ping-back may take
  // A failed ping-back makes the node suspected until the caller confirms its own link
  // (on_link_ok) or suspends; false: unreachable at once (a caller that cannot probe its link).
  bool confirm_link = false;
  // How long before the end of the window of misses x interval the ping-back goes out (the
  // controller: ping_timeout, so that a silent node is judged when the window ends rather than a
  // ping_timeout later), but never before one and a half intervals of silence. 0: at the end.
  milliseconds ping_lead{0};
};

// Ok when the config is usable; otherwise NODEHA_ERR_INVALID naming the key.
Status validate(const MonitorConfig& config);

// A node known from the `nodes` KV bucket when the controller starts.
struct KnownNode {
  std::string id;
  ManagementState management = ManagementState::Enabled;
  MonitorState monitor = MonitorState::Normal;
  std::string reason;
  std::string boot_id;
  milliseconds interval{0};  // the node's last advertised interval; 0: use the configured one
};

struct NodeState {
  std::string id;
  ManagementState management = ManagementState::Enabled;
  MonitorState monitor = MonitorState::Normal;
  std::string reason;          // why the node is not normal; empty when normal
  std::vector<Check> checks;   // the latest verdict of every check, by name
  std::string failing_checks;  // failing_checks_reason(checks); empty: all pass
  std::string boot_id;
  milliseconds interval{0};    // the node's advertised heartbeat interval
  std::optional<TimePoint> last_heartbeat;
  uint64_t last_seq = 0;
  std::optional<Heartbeat> heartbeat;  // the last payload
  // The start of the current detection window: the last heartbeat or ping answer, or the
  // controller's start for a node restored from KV and not heard from since.
  TimePoint last_seen{};
  bool ping_pending = false;
  TimePoint ping_deadline{};
  // With a ping lead, a ping-back that failed before its deadline (no responders: the agent's
  // process is gone) counts only at the deadline, the window's end: how it failed, until then.
  std::string ping_failure;
  // confirm_link: when the ping-back failed, waiting for on_link_ok; and how it failed.
  std::optional<TimePoint> suspected_at;
  std::string suspicion;
};

// Effects, in the order they happened.
struct Transition {  // the monitor state changed
  std::string node;
  MonitorState from;
  MonitorState to;
  std::string reason;  // the new state's reason, or for normal what brought it back
  TimePoint at;
};
struct ReasonChanged {  // still in error, but other checks fail now
  std::string node;
  MonitorState state;
  std::string old_reason;
  std::string new_reason;
  TimePoint at;
};
struct PingRequest {  // ask the agent `<prefix>.agent.<node>.ping`, waiting at most `timeout`
  std::string node;
  milliseconds timeout;
};
struct Rebooted {  // a new boot id: the node rebooted (not a state change by itself)
  std::string node;
  std::string old_boot_id;
  std::string new_boot_id;
  TimePoint at;
};
struct Registered {  // first heartbeat from a node nobody knew: management enabled
  std::string node;
  std::string boot_id;
  MonitorState monitor;  // normal, or error when its checks already fail
  std::string reason;
  TimePoint at;
};
struct Suspected {  // confirm_link: the ping-back failed; check the own link, then on_link_ok
  std::string node;
  std::string detail;  // how the ping failed
  TimePoint at;
};
using Effect = std::variant<Transition, ReasonChanged, PingRequest, Rebooted, Registered, Suspected>;
using Effects = std::vector<Effect>;

class Monitor {
  struct Entry;

 public:
  // A known node's place in the monitor, for a caller that keeps a table of its own per node:
  // stable while the monitor lives (a node, once known, is never removed). Empty: unknown.
  class Handle {
   public:
    Handle() = default;
    explicit operator bool() const { return entry_ != nullptr; }
    const NodeState& state() const;  // only when not empty

   private:
    friend class Monitor;
    explicit Handle(Entry* e) : entry_(e) {}
    Entry* entry_ = nullptr;
  };
  Handle handle(std::string_view node);

  // Throws std::invalid_argument when validate(config) fails: the plugin validates first.
  explicit Monitor(MonitorConfig config);
  Monitor(const Monitor&) = delete;  // handles and timers point into it
  Monitor& operator=(const Monitor&) = delete;
  Monitor(Monitor&&) = default;  // the entries move with their table
  Monitor& operator=(Monitor&&) = default;

  // Nodes known from KV when the controller starts at `started_at`. Each gets one full
  // detection window (misses x its interval) from `started_at` before it can be pinged, so a
  // controller outage never looks like a cluster outage. Unreachable nodes stay so until they
  // heartbeat. A node already heard from keeps its live state and takes only its management
  // state from the record (KV is the authority for commands).
  void restore(std::span<const KnownNode> nodes, TimePoint started_at);

  // A decoded heartbeat (the plugin checks that the subject names hb.node). Registers an
  // unknown node. Every heartbeat is taken in arrival order: seq restarts with the agent
  // process, so it is recorded, not used to drop messages.
  Effects on_heartbeat(Heartbeat hb, TimePoint now);

  // A heartbeat that is the node's last one with only its counters new (repeat.h): the effects of
  // on_heartbeat(that heartbeat, now), without building it. nullopt, and nothing changed, when the
  // node is unknown or has sent no heartbeat yet (the caller decodes the message instead).
  std::optional<Effects> on_repeat(Handle node, uint64_t seq, int64_t sent_at, TimePoint now);

  // Call every 100-250 ms, or at next_due(): pings nodes whose window expired and marks
  // unreachable those whose ping deadline passed.
  Effects on_tick(TimePoint now);

  // The agent answered the ping. Unknown nodes are ignored.
  Effects on_ping_reply(std::string_view node, std::string_view boot_id, TimePoint now);

  // The ping could not be delivered or timed out (e.g. no responders): since the window has
  // already expired, the node is unreachable at once (suspected first, with confirm_link).
  // Ignored when no ping is pending.
  Effects on_ping_failed(std::string_view node, TimePoint now, std::string_view why = {});

  // A checks verdict published on its own (netcheck), outside a heartbeat: same effect as the
  // checks of a heartbeat, but it is not a heartbeat (it does not restart the window). The
  // given checks replace the known ones of the same name, others are kept (a heartbeat carries
  // every check; this message only its sender's). An unreachable node only records it.
  // Unknown nodes are ignored. A verdict older than the known one of its check (Check::at) is
  // ignored, and a heartbeat does not replace a verdict newer than its own of that check.
  Effects on_checks(std::string_view node, std::span<const Check> checks, TimePoint now);

  // The caller's own link to the bus is down or in doubt: hold every verdict until resume().
  // False (and the first reason kept) when already suspended.
  bool suspend(TimePoint now, std::string reason);
  // Emits what was held and gives every node not unreachable a full window from `now`.
  // Nothing when not suspended.
  Effects resume(TimePoint now);
  // The caller's link answered a round trip sent at `sent`. Watching: every node suspected at
  // or before `sent` is unreachable now. Suspended: resume(now) when `sent` is not older than
  // the suspension (an older probe proves nothing about the outage).
  Effects on_link_ok(TimePoint sent, TimePoint now);
  struct Suspension {
    std::string reason;
    TimePoint since;
  };
  const std::optional<Suspension>& suspension() const { return suspension_; }

  // Sets the management state after the plugin stored it; false when the node is unknown.
  bool set_management(std::string_view node, ManagementState state);

  // Stable while the monitor lives: a node, once known, is never removed.
  const NodeState* find(std::string_view node) const;
  std::vector<const NodeState*> list() const;  // sorted by id
  // Every node, in no order (no list built: for the controller's every-second pass).
  template <class F>
  void each(F&& f) const {
    for (const auto& [id, e] : nodes_) f(e.state);
  }
  size_t size() const { return nodes_.size(); }
  // The earliest moment on_tick may have work (possibly early, never late); nullopt: none,
  // or suspended.
  std::optional<TimePoint> next_due() const;
  const MonitorConfig& config() const { return config_; }

 private:
  struct Entry {
    NodeState state;
    std::optional<TimePoint> armed;  // the deadline of this node's live heap entry
    // Held while suspended, emitted on resume.
    bool held_registration = false;     // first heard from while suspended
    bool heard_while_held = false;      // a heartbeat or ping answer arrived meanwhile
    std::optional<std::string> held_boot;  // the boot id before the first change meanwhile
  };
  // Entries are never erased, so a timer points at its node's entry: no lookup when it fires.
  struct Timer {
    TimePoint due;
    Entry* entry;
    bool operator>(const Timer& o) const { return due > o.due; }
  };
  static std::vector<Check> merge_checks(const NodeState& n, std::vector<Check> beat, int64_t sent_at);
  Entry* lookup(std::string_view node);
  milliseconds window(const NodeState& n) const;
  std::optional<TimePoint> deadline(const NodeState& n) const;
  void arm(Entry& e);
  void fire(Entry& e, TimePoint now, Effects& out);
  void settle(Entry& e, TimePoint now, std::string_view cause, Effects& out);
  void alive(Entry& e, TimePoint now, std::string_view cause, Effects& out);
  void heard(Entry& e, TimePoint now, Effects& out);
  void new_boot(Entry& e, const std::string& boot_id, TimePoint now, Effects& out);
  void ping_failed(Entry& e, TimePoint now, std::string detail, Effects& out);
  void unreachable(Entry& e, TimePoint now, std::string_view detail, Effects& out);

  MonitorConfig config_;
  NodeTable<Entry> nodes_;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers_;
  std::set<std::string> suspects_;  // may name nodes no longer suspected
  std::optional<Suspension> suspension_;
};

}  // namespace nodeha::heartbeat
