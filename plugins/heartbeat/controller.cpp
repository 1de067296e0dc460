#include "controller.h"

#include "command.h"
#include "evidence.h"
#include "record_fields.h"
#include "task_record.h"

#include <cmath>

namespace nodeha::heartbeat {

namespace {

constexpr std::array<MonitorState, 3> kMonitorStates = {MonitorState::Normal, MonitorState::Unreachable, MonitorState::Error};
constexpr std::array<ManagementState, 3> kManagementStates = {ManagementState::Enabled, ManagementState::Disabled,
                                                              ManagementState::Drained};

MonitorConfig monitor_config(const Host& host) {
  MonitorConfig c;
  c.interval = host.duration("interval");
  c.misses = host.config().at("misses").get<int>();
  c.ping_timeout = host.duration("ping_timeout");
  c.ping_lead = c.ping_timeout;  // judged when the window ends (docs/operations.md, "Timing")
  // Probing our own link needs plugin interface 1.3; an older host blames at once, as before.
  c.confirm_link = host.bus_status().code() != NODEHA_ERR_INTERNAL;
  if (auto s = validate(c); !s) throw ConfigError(s.message());
  return c;
}

}  // namespace

ControllerSide::ControllerSide(const Host& host)
    : host_(host),
      monitor_(monitor_config(host)),
      refresh_ms_(host.duration("record_every").count()),
      max_wire_(wire_setting(host)),
      hb_prefix_(host.subject("hb.")),
      book_(host, [this](const std::string& id) { return live(id); },
            [this](const auto& take) { monitor_.each([&](const NodeState& n) { take(n.id); }); },
            [this](const std::string& id) -> int64_t {
              const auto* entry = monitor_.find(id) ? nodes_.find(id) : nullptr;
              return entry ? entry->second.last_heartbeat_unix : 0;
            }) {}

std::optional<NodeLive> ControllerSide::live(const std::string& id) const {
  const NodeState* n = monitor_.find(id);
  if (!n) return std::nullopt;
  const auto* entry = nodes_.find(id);
  NodeLive l{monitor_fields(*n, entry ? entry->second.last_heartbeat_unix : 0), n->heartbeat ? &*n->heartbeat : nullptr,
             lists_.find(id)};
  l.fields["management"] = to_string(n->management);
  return l;
}

Status ControllerSide::start() {
  received_ = host_.counter("nodeha_heartbeats_received_total", "heartbeats received by the controller");
  bad_heartbeats_ = host_.counter("nodeha_heartbeats_rejected_total", "heartbeats refused as malformed");
  suspended_ = host_.gauge("nodeha_monitor_suspended",
                           "1 while the monitor holds its verdicts: the controller's own link to NATS is down or in doubt");
  suspended_.set(0);
  if (monitor_.config().confirm_link) host_.bus_status(Millis(0), &connects_);
  for (size_t i = 0; i < kMonitorStates.size(); ++i)
    changes_[i] = host_.counter("nodeha_node_state_changes_total", "monitor state changes by new state",
                                {{"state", std::string(to_string(kMonitorStates[i]))}});

  // Nodes known before this controller started get one full detection window. Without their
  // records it would not start: a dead node sends no heartbeat to be known by, and one that
  // returns would look new, its history cut (the host tries the start again every second).
  auto known = host_.kv_list(kNodesBucket);
  if (!known) return Status(known.status().code(), "cannot read the nodes bucket: " + known.status().message());
  std::vector<KnownNode> restored;
  for (const auto& e : known.value()) {
    auto j = nlohmann::json::parse(e.value, nullptr, false);
    if (!j.is_object()) continue;
    restored.push_back(known_node(e.key, j));
    book_.keep(e);
    Node& n = node(e.key);
    n.written = Written{e.value, record::integer(j, "last_heartbeat")};
    n.last_heartbeat_unix = n.written->last_heartbeat;
  }
  monitor_.restore(restored, Clock::now());
  for (const auto* n : monitor_.list()) set_metrics(*n);
  host_.info("tracking " + std::to_string(restored.size()) + " known node(s)");

  struct Sub {
    std::string subject;
    std::function<void(const Message&)> fn;
    std::string queue;
    uint32_t flags = 0;
  };
  std::vector<Sub> subs = {
      // Every node's, every interval: taken in batches (docs/performance.md, "Node monitoring").
      {host_.subject("hb.*"), [this](const Message& m) { on_heartbeat(m); }, "", NODEHA_SUB_BATCH},
      {host_.subject("check.*.*"), [this](const Message& m) { on_check(m); }, ""},
      {host_.subject("cmd.node.list"), [this](const Message& m) { book_.cmd_list(m); }, "nodeha-controller"},
      {host_.subject("cmd.node.show"), [this](const Message& m) { book_.cmd_show(m); }, "nodeha-controller"},
      {host_.subject("cmd.node.enable"), [this](const Message& m) { cmd_management(m, ManagementCommand::Enable); }, "nodeha-controller"},
      {host_.subject("cmd.node.disable"), [this](const Message& m) { cmd_management(m, ManagementCommand::Disable); }, "nodeha-controller"},
  };
  for (auto& s : subs)
    if (auto r = host_.subscribe(s.subject, s.fn, s.queue, s.flags); !r) return r.status();
  if (auto w = host_.kv_watch(kNodesBucket, ">", [this](const KvEntry& e) { on_record(e); }); !w) return w.status();
  if (auto t = host_.timer(host_.duration("tick"), host_.duration("tick"), [this] { tick(); }); !t) return t.status();
  if (auto t = host_.timer(Millis(1000), Millis(1000), [this] { refresh_ages(); }); !t) return t.status();
  return Status::ok();
}

ControllerSide::Node& ControllerSide::node(const std::string& id) {
  if (auto* entry = nodes_.find(id)) return entry->second;
  return nodes_.try_emplace(id, refresh_for(id)).first->second;
}

void ControllerSide::on_heartbeat(const Message& m) {
  if (take_repeat(m)) return;
  auto hb = heartbeat_of(host_, m, max_wire_);
  if (!hb) {
    bad_heartbeats_.inc();
    host_.warn("refused a heartbeat on " + m.subject + ": " + hb.status().message());
    return;
  }
  received_.inc();
  std::string id = hb->node;
  Node& n = node(id);
  bool older = max_wire_ >= 2 && hb->version < 2;
  // Made before the list is taken out of it; kept only when no grant is due, which a repeat
  // would need too.
  auto repeat = older ? std::nullopt : Repeat::of(m.data, hb.value());
  bool listed = lists_.take(hb.value());
  if (older || (max_wire_ >= 2 && !listed)) {
    grant_wire(id, n.grant, hb->version >= 2);
    repeat.reset();
  } else if (hb->version >= 2) {
    n.grant = {};  // it follows: a later need starts at 1 s
  }
  n.repeat = std::move(repeat);
  int64_t now_ms = unix_ms();
  n.last_heartbeat_unix = now_ms;
  const NodeState* before = monitor_.find(id);
  bool changed = heartbeat_changes_record(before && before->heartbeat ? &*before->heartbeat : nullptr, hb.value());
  apply(monitor_.on_heartbeat(std::move(hb.value()), Clock::now()));
  if (!n.monitor) n.monitor = monitor_.handle(id);  // first heard while suspended: no metrics yet
  took_heartbeat(id, n, changed, now_ms);
}

// A heartbeat that is the node's last one with new counters (repeat.h) is taken without being
// decoded: at 10,000 nodes most are.
bool ControllerSide::take_repeat(const Message& m) {
  auto [entry, counters] = find_repeat(nodes_, hb_prefix_, m);
  if (!entry) return false;
  auto& [id, n] = *entry;
  auto effects = monitor_.on_repeat(n.monitor, counters.seq, counters.sent_at, Clock::now());
  if (!effects) return false;
  received_.inc();
  int64_t now_ms = unix_ms();
  n.last_heartbeat_unix = now_ms;
  apply(*effects);
  took_heartbeat(id, n, false, now_ms);
  return true;
}

// Most heartbeats change nothing an operator reads from the record: no write for them.
void ControllerSide::took_heartbeat(const std::string& id, Node& n, bool changed, int64_t now_ms) {
  if (changed || !n.written || now_ms - n.written->last_heartbeat >= n.refresh_ms) mark_dirty(id);
}

// Tells an agent that sent version 1 that we read version 2, or asks one whose list we lost for
// the whole list; at most once per gap a node, the gap doubling (1 s to kMaxGrantGap) while it
// does not follow: an older agent ignores the grant, and 10,000 of them must not cost a message
// each per heartbeat.
void ControllerSide::grant_wire(const std::string& node, NextGrant& g, bool full) {
  constexpr Millis kFirstGap{1000}, kMaxGrantGap{600000};
  auto now = Clock::now();
  if (now < g.at) return;
  g.gap = g.gap.count() == 0 ? kFirstGap : std::min(g.gap * 2, kMaxGrantGap);
  g.at = now + g.gap;
  (void)host_.publish(host_.subject("agent." + node + ".hb.wire"), encode_wire_grant({max_wire_, full}));
}

// Each node refreshes its record a little before `record_every`, at its own phase, so that nodes
// that registered together do not all rewrite their records in the same second.
int64_t ControllerSide::refresh_for(const std::string& node) const {
  int64_t spread = std::max<int64_t>(1, refresh_ms_ / 4);
  return refresh_ms_ - static_cast<int64_t>(std::hash<std::string>{}(node) % static_cast<uint64_t>(spread));
}

void ControllerSide::on_check(const Message& m) {
  auto verdict = decode_check_message(m.data);
  if (!verdict || verdict->node.empty()) return;
  const std::string& node = verdict->node;
  // A node speaks for itself only, and a verdict for the check its subject names.
  if (m.subject != host_.subject("check." + node + "." + verdict->check.name)) return;
  apply(monitor_.on_checks(node, std::span<const Check>(&verdict->check, 1), Clock::now()));
  mark_dirty(node);
}

void ControllerSide::on_record(const KvEntry& e) {
  auto j = book_.keep(e);
  if (j.is_discarded()) return;
  // Management is changed by commands, here or in other plugins (drain): follow the record.
  const NodeState* n = monitor_.find(e.key);
  if (n && n->management != management_of(j)) {
    monitor_.set_management(e.key, management_of(j));
    set_metrics(*monitor_.find(e.key));
  }
}

void ControllerSide::tick() {
  watch_link();
  apply(monitor_.on_tick(Clock::now()));
  if (!dirty_.empty() && !writing_ && !monitor_.suspension()) flush();  // written on resume
}

void ControllerSide::apply(const Effects& effects) {
  for (const auto& effect : effects) {
    std::visit(
        [&](const auto& e) {
          using T = std::decay_t<decltype(e)>;
          if constexpr (std::is_same_v<T, Transition>) {
            host_.info(e.node + ": " + std::string(to_string(e.from)) + " -> " + std::string(to_string(e.to)) +
                       (e.reason.empty() ? "" : " (" + e.reason + ")"));
            changes_[static_cast<size_t>(e.to)].inc();
            publish_event(e.node, {{"event", "monitor"}, {"from", to_string(e.from)}, {"to", to_string(e.to)}, {"reason", e.reason}},
                          transition_evidence(e));
            mark_dirty(e.node);
          } else if constexpr (std::is_same_v<T, ReasonChanged>) {
            auto ev = evidence::decided(host_, e.new_reason.empty() ? "every check passes again" : e.new_reason);
            ev.facts = {{"checks", e.new_reason}, {"before", e.old_reason}};
            publish_event(e.node, {{"event", "reason"}, {"state", to_string(e.state)}, {"from", e.old_reason}, {"to", e.new_reason}},
                          ev);
            mark_dirty(e.node);
          } else if constexpr (std::is_same_v<T, PingRequest>) {
            ping(e);
          } else if constexpr (std::is_same_v<T, Suspected>) {
            probe_link();  // blamed by on_link_ok only if our own link answers
          } else if constexpr (std::is_same_v<T, Rebooted>) {
            host_.info(e.node + " rebooted (boot id " + e.old_boot_id + " -> " + e.new_boot_id + ")");
            auto ev = evidence::decided(host_, "its heartbeat carries a new boot id " + e.new_boot_id + " (was " + e.old_boot_id + ")");
            ev.facts = {{"old_boot_id", e.old_boot_id}, {"new_boot_id", e.new_boot_id}};
            publish_event(e.node, {{"event", "rebooted"}, {"old_boot_id", e.old_boot_id}, {"new_boot_id", e.new_boot_id}}, ev);
          } else if constexpr (std::is_same_v<T, Registered>) {
            host_.info("new node " + e.node + " registered (" + std::string(to_string(e.monitor)) + ")");
            auto ev = evidence::decided(host_, "first heartbeat from a node nobody knew (boot id " + e.boot_id + ")" +
                                                   (e.reason.empty() ? "" : "; " + e.reason));
            ev.facts = {{"boot_id", e.boot_id}};
            publish_event(e.node, {{"event", "registered"}, {"monitor", to_string(e.monitor)}, {"reason", e.reason}}, ev);
            mark_dirty(e.node);
          }
          if constexpr (!std::is_same_v<T, PingRequest>)
            if (const NodeState* n = monitor_.find(e.node)) set_metrics(*n);
        },
        effect);
  }
}

// Sent at once and answered on the event thread: a mass failure never queues pings behind each
// other, so every silent node gets its ping-back within its window.
void ControllerSide::ping(const PingRequest& p) {
  std::string node = p.node;
  auto sent = host_.request_async(host_.subject("agent." + node + ".ping"), "{}", p.timeout, [this, node, p](Result<std::string> r) {
    std::string boot_id, why;
    if (r) {
      auto reply = command::parse_envelope(r.value());
      if (reply.ok) boot_id = record::text(reply.result, "boot_id");
      else why = "malformed ping answer";
    } else {
      why = r.status().code() == NODEHA_ERR_TIMEOUT ? "no answer to ping within " + std::to_string(p.timeout.count()) + " ms"
                                                     : r.status().message();
    }
    if (why.empty()) apply(monitor_.on_ping_reply(node, boot_id, Clock::now()));
    else if (!r && r.status().code() == NODEHA_ERR_UNAVAILABLE) suspend(why);  // our link, not the node
    else apply(monitor_.on_ping_failed(node, Clock::now(), why));
  });
  if (!sent && sent.code() == NODEHA_ERR_UNAVAILABLE) suspend(sent.message());
  else if (!sent) apply(monitor_.on_ping_failed(node, Clock::now(), sent.message()));
}

// What the monitor saw when it changed a node's state: for unreachable the silence, the window
// and the ping-back; otherwise what brought it back or the failing checks' own words.
evidence::Evidence ControllerSide::transition_evidence(const Transition& t) const {
  const NodeState* n = monitor_.find(t.node);
  if (t.to != MonitorState::Unreachable) {
    std::string summary = t.to == MonitorState::Error ? t.reason
                          : t.reason.empty()           ? "heartbeats arrive and every check passes"
                                                       : t.reason;
    auto ev = evidence::decided(host_, summary);
    if (t.to == MonitorState::Error) ev.facts["checks"] = t.reason;
    return ev;
  }
  const MonitorConfig& c = monitor_.config();
  milliseconds interval = n && n->interval.count() > 0 ? n->interval : c.interval;
  double silence = 0;
  if (n && n->last_heartbeat) silence = std::chrono::duration<double>(t.at - *n->last_heartbeat).count();
  else if (auto* entry = nodes_.find(t.node); entry && entry->second.last_heartbeat_unix > 0)
    silence = (unix_ms() - entry->second.last_heartbeat_unix) / 1000.0;
  std::string ping = host_.subject("agent." + t.node + ".ping");
  // The monitor's reason is "silent for …; <how the ping failed>": keep the ping's part.
  size_t cut = t.reason.find("; ");
  std::string result = cut == std::string::npos ? t.reason : t.reason.substr(cut + 2);
  if (result.empty()) result = "no answer";
  auto ev = evidence::decided(
      host_, "silent " + evidence::seconds(silence) + " (" + std::to_string(c.misses) + " intervals of " +
                 evidence::seconds(interval.count() / 1000.0) + "), ping to " + ping + ": " + result + " (timeout " +
                 evidence::seconds(c.ping_timeout.count() / 1000.0) + ")");
  ev.facts = {{"silence_s", std::round(silence * 100) / 100},
              {"intervals", c.misses},
              {"interval_s", interval.count() / 1000.0},
              {"ping_subject", ping},
              {"ping_result", result},
              {"ping_timeout_s", c.ping_timeout.count() / 1000.0}};
  return ev;
}

void ControllerSide::publish_event(const std::string& node, nlohmann::json event, const evidence::Evidence& why) {
  event["node"] = node;
  event["evidence"] = evidence::to_json(why);
  event["time"] = unix_ms();
  if (auto s = host_.publish(host_.subject("evt.node." + node), event.dump()); !s) host_.warn(s.message());
}

void ControllerSide::set_metrics(const NodeState& n) {
  Node& entry = node(n.id);
  if (!entry.monitor) entry.monitor = monitor_.handle(n.id);
  auto& slot = entry.metrics;
  bool fresh = !slot;
  NodeMetrics& m = fresh ? slot.emplace() : *slot;
  if (fresh) {
    for (size_t i = 0; i < 3; ++i) {
      m.monitor[i] = host_.gauge("nodeha_node_monitor_state", "1 for the node's current monitor state",
                                 {{"node", n.id}, {"state", std::string(to_string(kMonitorStates[i]))}});
      m.management[i] = host_.gauge("nodeha_node_management_state", "1 for the node's current management state",
                                    {{"node", n.id}, {"state", std::string(to_string(kManagementStates[i]))}});
    }
    m.age = host_.gauge("nodeha_node_heartbeat_age_seconds", "seconds since the node's last heartbeat", {{"node", n.id}});
  }
  for (size_t i = 0; i < 3; ++i) {
    m.monitor[i].set(n.monitor == kMonitorStates[i] ? 1 : 0);
    m.management[i].set(n.management == kManagementStates[i] ? 1 : 0);
  }
}

// Every node's age, every second: from our own table, with no lookup a node.
void ControllerSide::refresh_ages() {
  auto now = Clock::now();
  int64_t now_ms = unix_ms();
  for (auto& [id, n] : nodes_) {
    if (!n.metrics || !n.monitor) continue;
    const auto& last = n.monitor.state().last_heartbeat;
    // A node restored from KV and not heard from since: age from its stored last heartbeat.
    double age = last ? std::chrono::duration<double>(now - *last).count() : (now_ms - n.last_heartbeat_unix) / 1000.0;
    n.metrics->age.set(age);
  }
}

void ControllerSide::mark_dirty(const std::string& node) { dirty_.insert(node); }

// Writes the records whose operator-visible content changed; one writer at a time, on a worker.
void ControllerSide::flush() {
  struct Write {
    std::string node;
    nlohmann::json fields;
    std::optional<NodeBook::Stored> base;  // the record as last watched
  };
  std::vector<Write> batch;
  for (const auto& id : dirty_) {
    const NodeState* n = monitor_.find(id);
    if (!n) continue;
    const Node& entry = node(id);
    auto fields = monitor_fields(*n, entry.last_heartbeat_unix);
    // A refresh that is due is written whatever else changed: no need to read what was written.
    bool due = !entry.written || refresh_due(entry.written->last_heartbeat, entry.last_heartbeat_unix, entry.refresh_ms);
    if (!due && !needs_write(nlohmann::json::parse(entry.written->fields, nullptr, false), fields, entry.refresh_ms))
      continue;
    const NodeBook::Stored* base = book_.stored(id);
    batch.push_back(Write{id, std::move(fields), base ? std::optional(*base) : std::nullopt});
  }
  dirty_.clear();
  if (batch.empty()) return;
  writing_ = true;
  host_.spawn([this, batch = std::move(batch)]() mutable {
    RecordStore store{[this](const std::string& node) -> Result<StoredRecord> {
                        auto read = host_.kv_get(kNodesBucket, node);
                        if (!read) return read.status();
                        return StoredRecord{std::move(read.value().value), read->revision};
                      },
                      [this](const std::string& node, const std::string& text, uint64_t revision) {
                        return host_.kv_update(kNodesBucket, node, text, revision);
                      },
                      [this](const std::string& node, const std::string& text) { return host_.kv_create(kNodesBucket, node, text); }};
    std::vector<std::pair<std::string, nlohmann::json>> done;
    std::vector<std::string> failed;
    for (auto& w : batch) {
      if (write_record(store, w.node, w.fields, std::move(w.base))) done.emplace_back(w.node, std::move(w.fields));
      else failed.push_back(w.node);
    }
    host_.post([this, done = std::move(done), failed = std::move(failed)] {
      writing_ = false;
      for (const auto& [id, fields] : done) node(id).written = Written{fields.dump(), fields.value("last_heartbeat", int64_t{0})};
      if (!failed.empty()) host_.warn("could not write " + std::to_string(failed.size()) + " node record(s); retrying");
      for (const auto& node : failed) dirty_.insert(node);
    });
  });
}

void ControllerSide::cmd_management(const Message& m, ManagementCommand command) {
  auto node = requested_node(host_, m);
  if (!node) return;
  std::string id = node->str();
  if (!monitor_.find(id) && !book_.knows(id)) return refuse_unknown_node(host_, m, id);
  std::string requester = evidence::requester_of(m.reply);
  host_.spawn([this, id, command, requester, reply = m.reply] {
    std::string why = "it kept changing under us";  // the store's words when it failed
    for (int attempt = 0; attempt < 5; ++attempt) {
      auto cur = host_.kv_get(kNodesBucket, id);
      if (!cur && cur.status().code() != NODEHA_ERR_NOT_FOUND) {
        why = cur.status().message();
        break;
      }
      nlohmann::json record = cur ? nlohmann::json::parse(cur->value, nullptr, false) : nlohmann::json::object();
      if (record.contains("lock") && record["lock"].is_object()) {
        host_.respond(reply, command::fail("node_locked", task_record::locked_message(id, record["lock"])));
        return;
      }
      ManagementState before = management_of(record), after = before;
      bool changed = apply_management(after, command);
      if (changed) {
        record = merge_record(record, {{"node", id}, {"management", to_string(after)}});
        auto r = cur ? host_.kv_update(kNodesBucket, id, record.dump(), cur->revision)
                     : host_.kv_create(kNodesBucket, id, record.dump());
        if (!r && r.status().code() == NODEHA_ERR_CONFLICT) continue;  // someone else wrote: read again
        if (!r) {
          why = r.status().message();
          break;
        }
      }
      host_.post([this, id, command, before, after, changed, requester, reply] {
        if (changed) {
          auto ev = evidence::decided(host_, std::string(to_string(after)) + " by command node." +
                                                 (command == ManagementCommand::Enable ? "enable" : "disable") +
                                                 " from identity " + requester);
          ev.requester = requester;
          ev.facts["command"] = command == ManagementCommand::Enable ? "node.enable" : "node.disable";
          monitor_.set_management(id, after);
          if (const NodeState* n = monitor_.find(id)) set_metrics(*n);
          publish_event(id, {{"event", "management"}, {"from", to_string(before)}, {"to", to_string(after)}}, ev);
          host_.info(id + ": management " + std::string(to_string(before)) + " -> " + std::string(to_string(after)));
        }
        host_.respond(reply, command::ok({{"node", id}, {"management", to_string(after)}, {"changed", changed}}));
      });
      return;
    }
    host_.respond(reply, command::fail(command::kUnavailable, "could not update the node record of " + id + " (" + why + "); try again"));
  });
}

}  // namespace nodeha::heartbeat
