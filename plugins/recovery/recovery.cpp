// recovery (controller, the leader's only): automatic recovery (docs/operations.md, "Automatic
// recovery"). A node the monitor finds unreachable is, when the budget allows it and the node has
// VMs with an `ha` priority, fenced by the ladder of the config, method after method, and only then
// recovered: a task of kind `recover` (the rebuild plugin's `cmd.node.recover`) drains the node in
// the write that locks it and recreates its HA VMs elsewhere, highest priority first. Whatever it
// decides, and why, is in the node record's `recovery` field, an event on evt.node.<node>, and
// the gauge nodeha_recovery_held_nodes{reason} that NodehaRecoveryHeld reads.
//
// `cmd.node.fence_ack` {node, by?}: an operator confirms an unreachable node is off (the rung
// "ack"); recorded in the node record's `fence` with who and when.
//
// Each node being recovered has a thread of the plugin's own (fence methods and the task take
// seconds); its state is re-read from the node records, which a watch keeps in memory.
#include "evidence.h"
#include "lease_desk.h"
#include "policy.h"

#include "command.h"
#include "engine.h"
#include "record_fields.h"
#include "task_record.h"
#include "task_steps.h"
#include "thread_set.h"
#include "vm_record.h"

#include <nodeha/plugin.hpp>

#include <condition_variable>
#include <map>
#include <mutex>
#include <set>

namespace nodeha::recovery {
namespace {

using command::Type;

// How long lease grants still say "hold" after the budget stops refusing (see start()).
constexpr Millis kHoldLinger{5000};

const nodeha_config_key kKeys[] = {
    key("enabled", NODEHA_CONFIG_BOOLEAN, "false", nullptr,
        "recover the VMs with an ha priority of an unreachable node automatically, once it is fenced"),
    key("fence", NODEHA_CONFIG_TABLE_ARRAY, "[{ method = \"ack\" }]", nullptr,
        "the fence ladder, tried in order: [[plugin.fence]] method = \"ipmi\", timeout = \"10s\"; \"ack\" waits for "
        "`nodeha node fence-ack`"),
    key("max_auto_nodes", NODEHA_CONFIG_INTEGER, "1", "nodes",
        "no automatic recovery while more nodes than this are unreachable at once"),
    key("max_auto_share", NODEHA_CONFIG_FLOAT, "0.34", "share",
        "nor while more than this share of the known nodes are unreachable"),
    key("fence_after", NODEHA_CONFIG_DURATION, "\"10s\"", "duration",
        "the agents' lease (the selffence plugin): an agent that cannot renew it this long fences itself. Longer than a "
        "controller takeover"),
    key("lease_margin", NODEHA_CONFIG_DURATION, "\"2s\"", "duration",
        "added to fence_after and the watchdog's timeout before the lease rung counts a node fenced"),
    key("isolation_response", NODEHA_CONFIG_STRING, "\"keep\"", nullptr,
        "a node cut from management whose peers still hear it on the witness network: keep (no automatic recovery) or "
        "stop (it fences itself, then its VMs are recovered)"),
    key("witness_network", NODEHA_CONFIG_STRING, "\"business\"", nullptr,
        "the network of the node records' addresses on which the agents' witnesses hear each other"),
    key("takeover_grace", NODEHA_CONFIG_DURATION, "\"60s\"", "duration",
        "a node already unreachable when this controller comes to lead is acted on only after this long, so that "
        "its own monitor has judged it: at least the heartbeat's misses x interval + ping_timeout"),
};

// A node as its record says, for the decisions.
struct NodeView {
  std::string monitor, management;
  Millis interval{15000};  // the heartbeat interval the node advertises
  bool fenced = false;
  std::string fence_method;
  bool seen_fall = false;  // this controller saw it become unreachable (not only found it so)
  std::string recovery_state, task;
  std::string witness_address;
};

bool final_state(const std::string& s) { return s == "recovered" || s == "partial" || s == "not_needed"; }

const char* kHeldReasons[] = {"budget", "unfenced", "no_room", "failed", "isolated"};

LeaseDesk::Config lease_config(const Host& host, bool enabled, const std::vector<Rung>& ladder) {
  LeaseDesk::Config c;
  c.fence_after = host.duration("fence_after");
  c.margin = host.duration("lease_margin");
  if (c.fence_after < Millis(1000) || c.fence_after > Millis(300000)) throw ConfigError("fence_after must be from 1s to 5m");
  if (c.margin < Millis(0) || c.margin > Millis(60000)) throw ConfigError("lease_margin must be from 0s to 1m");
  auto r = lease::parse_response(host.config().at("isolation_response").get<std::string>());
  if (!r) throw ConfigError("isolation_response must be \"keep\" or \"stop\"");
  c.response = *r;
  c.self_fence = enabled && std::any_of(ladder.begin(), ladder.end(), [](const Rung& x) { return x.method == kLease; });
  return c;
}

class RecoveryPlugin : public Plugin {
 public:
  explicit RecoveryPlugin(Host h)
      : Plugin(std::move(h)), enabled_(host().config().at("enabled").get<bool>()), grace_(host().duration("takeover_grace")) {
    auto ladder = parse_ladder(host().config().at("fence"));
    if (!ladder) throw ConfigError(ladder.status().message());
    ladder_ = std::move(ladder.value());
    budget_.max_nodes = host().config().at("max_auto_nodes").get<int>();
    budget_.max_share = host().config().at("max_auto_share").get<double>();
    if (budget_.max_nodes < 0) throw ConfigError("max_auto_nodes must not be negative");
    if (budget_.max_share < 0 || budget_.max_share > 1) throw ConfigError("max_auto_share must be from 0 to 1");
    witness_network_ = host().config().at("witness_network").get<std::string>();
    leases_ = std::make_unique<LeaseDesk>(host(), lease_config(host(), enabled_, ladder_));
  }
  ~RecoveryPlugin() override { threads_.join(); }

  Status start() override {
    started_ = std::chrono::steady_clock::now();
    for (const auto& rung : ladder_)
      for (const char* result : {"off", "failed"})
        fence_attempts_[rung.method + result] =
            host().counter("nodeha_recovery_fence_attempts_total", "fence methods tried by automatic recovery",
                           {{"method", rung.method}, {"result", result}});
    for (const char* result : {"succeeded", "partial", "failed"})
      recoveries_[result] = host().counter("nodeha_recoveries_total", "recover tasks ended, by result", {{"result", result}});
    for (const char* reason : kHeldReasons)
      held_gauge_[reason] = host().gauge("nodeha_recovery_held_nodes",
                                         "unreachable nodes whose automatic recovery waits, by why: budget (too many "
                                         "unreachable at once), unfenced (no fence method succeeded), no_room, failed",
                                         {{"reason", reason}});
    enabled_gauge_ = host().gauge("nodeha_recovery_enabled", "1 when automatic recovery is on in this controller's config");
    enabled_gauge_.set(enabled_ ? 1 : 0);
    auto s = host().subscribe(host().subject("cmd.node.fence_ack"), [this](const Message& m) {
      if (Status s = host().spawn([this, m] { fence_ack(m); }); !s)
        host().respond(m.reply, command::fail(command::kUnavailable, s.message()));
    }, "nodeha-controller");
    if (!s) return s.status();
    // Heartbeats only say when each node was last heard (the subject names it): the budget counts
    // the nodes gone silent, not only those already judged unreachable.
    const std::string hb = host().subject("hb.");
    auto h = host().subscribe(hb + "*", [this, hb](const Message& m) {
      std::lock_guard lock(mu_);
      // Only nodes with a record: a subject naming anything else must not grow the map.
      if (auto it = nodes_.find(m.subject.substr(hb.size())); it != nodes_.end())
        heard_[it->first] = std::chrono::steady_clock::now();
    }, {}, NODEHA_SUB_BATCH);
    if (!h) return h.status();
    if (Status l = leases_->start(); !l) return l;
    // The budget, as lease grants tell it: a node cut from management with many others at once
    // must keep its VMs, not fence itself under isolation_response stop.
    // The hold outlasts the budget's refusal by kHoldLinger: a partition heals node by node, and
    // a node still reconnecting (the NATS client's backoff) must renew before its peers' answers,
    // free of the hold, tell it to fence under stop (RecoveryScenario.HalfTheNodesCut...).
    auto t = host().timer(Millis(250), Millis(250), [this] {
      size_t unreachable = 0, known = 0;
      {
        std::lock_guard lock(mu_);
        lost_locked(&unreachable, &known);
      }
      auto now = std::chrono::steady_clock::now();
      if (enabled_ && budget_refusal(unreachable, known, budget_)) hold_until_ = now + kHoldLinger;
      leases_->set_hold(now < hold_until_);
    });
    if (!t) return t.status();
    auto w = host().kv_watch(tasks::kNodesBucket, ">", [this](const KvEntry& e) { on_node(e); });
    return w ? Status::ok() : w.status();
  }

  void stop() override {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    changed_.notify_all();
  }

 private:
  // Event thread: the record of every node, as it changes.
  void on_node(const KvEntry& e) {
    if (e.deleted) return;
    auto r = nlohmann::json::parse(e.value, nullptr, false);
    if (!r.is_object()) return;
    NodeView v;
    v.monitor = record::text(r, "monitor");
    v.seen_fall = v.monitor == "unreachable";
    v.management = record::text(r, "management", "enabled");
    if (auto ms = record::integer(r, "interval_ms", 0); ms > 0) v.interval = Millis(ms);
    v.fenced = record::field(r, "fence").is_object();
    v.fence_method = record::text(record::field(r, "fence"), "method");
    const auto& rec = record::field(r, "recovery");
    v.recovery_state = record::text(rec, "state");
    v.task = record::text(rec, "task");
    v.witness_address = record::text(record::field(r, "addresses"), witness_network_.c_str());
    leases_->set_address(e.key, v.witness_address);
    bool start = false, clear = false;
    {
      std::lock_guard lock(mu_);
      auto it = nodes_.find(e.key);
      if (v.seen_fall) v.seen_fall = it != nodes_.end() && (it->second.seen_fall || it->second.monitor != "unreachable");
      nodes_[e.key] = v;
      if (v.monitor == "unreachable") {
        start = enabled_ && !final_state(v.recovery_state) && active_.insert(e.key).second;
      } else if (v.management == "enabled" && (v.fenced || !v.recovery_state.empty()) && !active_.count(e.key)) {
        clear = true;  // back and in service: the fence and the recovery are history
      }
    }
    changed_.notify_all();
    if (start && !threads_.start([this, node = e.key] { run(node); })) {
      std::lock_guard lock(mu_);
      active_.erase(e.key);
    }
    if (clear) (void)host().spawn([this, node = e.key] { forget(node); });
  }

  // The node's recovery, from wherever its record says it is, to its end. A thread of the set.
  void run(const std::string& node) {
    bool tried = false;    // the ladder's automatic methods: each tried once
    std::string failures;  // and why they failed
    // Whether the next round waits for a change (or 2 s) first: not after progress, whose own
    // notification may have come before the wait.
    bool wait = false;
    for (;;) {
      NodeView v;
      size_t unreachable = 0, known = 0;
      {
        std::unique_lock lock(mu_);
        if (wait) changed_.wait_for(lock, Millis(2000));
        wait = true;
        if (stopping_) break;
        v = nodes_[node];
        lost_locked(&unreachable, &known);
      }
      if (v.monitor != "unreachable" && !v.fenced) {
        if (!v.recovery_state.empty())
          set_state(node, {{"state", "returned"}, {"reason", "it answers again; it was not fenced and nothing was done"}});
        break;
      }
      if (final_state(v.recovery_state)) break;
      // Found unreachable when this controller came to lead: its monitor judges it first (the
      // record is the last leader's word); a recovery that leader began goes on.
      if (!v.seen_fall && v.recovery_state.empty() && std::chrono::steady_clock::now() < started_ + grace_) continue;
      // Silent on management but heard by its peers: its VMs may still serve users.
      if (!v.fenced && isolated(node)) {
        if (leases_->config().response == lease::Response::kKeep) {
          hold(node, "isolated", "its peers still hear it on the " + witness_network_ + " network: it is cut from management, "
                                 "not dead, and its VMs may still serve users (isolation_response keep). Move them with "
                                 "`nodeha local migrate` on the node, or fence it and `nodeha node fence-ack " + node + "`");
          continue;
        }
      }
      // An operator's ack is a person's decision about this node: the budget, which guards against
      // acting on many nodes by ourselves, does not hold it.
      if (v.fence_method != kAck)
        if (auto why = budget_refusal(unreachable, known, budget_)) {
          hold(node, "budget", *why);
          continue;
        }
      if (!v.fenced) {
        auto vms = tasks::vms_on(host(), node);
        if (!vms) {
          hold(node, "failed", "cannot read the vms bucket: " + vms.status().message());
          continue;
        }
        size_t ha = 0;
        for (const auto& vm : vms.value()) ha += vm_record::ha_priority(vm) ? 1 : 0;
        if (ha == 0) {
          set_state(node, {{"state", "not_needed"}, {"reason", "no VM recorded on it has an ha priority"}});
          break;
        }
        if (!tried) {
          tried = true;
          if (fence(node, ha, &failures)) {
            wait = false;  // fenced: recover at once
            continue;
          }
        }
        // The lease's judgement refused (a peer's answer may have told it to wait), yet the node
        // may fence itself later, once that peer vouches again: its word settles it.
        if (leases_->config().self_fence && leases_->said_fenced(node)) {
          if (record_fence(node, {{"method", kLease}, {"at", tasks::unix_ms()}, {"by", host().node_id()},
                                  {"detail", "it destroyed its VMs itself after its lease ended, and said so to its peers"}}))
            wait = false;
          continue;
        }
        std::string why = failures.empty() ? "" : " (" + failures + ")";
        if (ladder_.back().method == kAck) {
          unhold(node);
          set_state(node, {{"state", "fencing"}, {"method", kAck},
                           {"reason", "waiting for an operator to confirm it off: `nodeha node fence-ack " + node + "`" + why}});
        } else {
          hold(node, "unfenced", "no fence method confirmed it off" + why + "; its VMs stay where they are. Confirm it "
                                 "off yourself with `nodeha node fence-ack " + node + "`");
        }
        continue;
      }
      if (recover(node, v)) break;
    }
    unhold(node);
    bool clear;
    {
      std::lock_guard lock(mu_);
      active_.erase(node);
      // Back in service while this thread still ran: the watch's word on it came too early.
      const NodeView& v = nodes_[node];
      clear = !stopping_ && v.monitor != "unreachable" && v.management == "enabled" && (v.fenced || !v.recovery_state.empty());
    }
    if (clear) (void)host().spawn([this, node] { forget(node); });
  }

  // Heard by a peer's witness after its last heartbeat (and a second), and lately: cut from
  // management only. One no longer heard (its business link went too) goes on to the ladder.
  bool isolated(const std::string& node) {
    std::chrono::steady_clock::time_point last;
    {
      std::lock_guard lock(mu_);
      auto it = heard_.find(node);
      last = it == heard_.end() ? started_ : it->second;
    }
    return leases_->heard_since(node, std::max(last + Millis(1000), std::chrono::steady_clock::now() - Millis(3000)));
  }

  // The lease rung: waits until the node's lease, its watchdog's time and the margin have passed and
  // judges (lease::judge). True once fenced (the record says so).
  bool fence_by_lease(const std::string& node, std::string* why) {
    for (;;) {
      std::vector<std::string> peers;
      {
        std::unique_lock lock(mu_);
        if (stopping_ || nodes_[node].monitor != "unreachable" || nodes_[node].fenced) return false;
        // A peer powered off (or confirmed off) reports nothing and answers no one: it does not count.
        for (const auto& [id, n] : nodes_)
          if (id != node && !n.witness_address.empty() && !(n.fenced && n.fence_method != kLease)) peers.push_back(id);
      }
      auto j = leases_->judge(node, peers);
      if (j.kind == lease::Judgement::kFenced)
        return record_fence(node, {{"method", kLease}, {"at", tasks::unix_ms()}, {"by", host().node_id()}, {"detail", j.why}});
      if (j.kind != lease::Judgement::kWait) {
        *why = j.why;
        return false;
      }
      std::unique_lock lock(mu_);
      changed_.wait_for(lock, Millis(250), [&] { return stopping_; });
    }
  }

  // The nodes unreachable and not yet recovered, or silent, and all the nodes known. Under mu_.
  void lost_locked(size_t* unreachable, size_t* known) const {
    for (const auto& [id, n] : nodes_) {
      ++*known;
      // A node whose recovery is over no longer says anything about a partition. One gone
      // silent counts already: nodes cut at the same moment are judged unreachable up to an
      // interval apart, and the first must not be acted on alone.
      if (n.monitor == "unreachable" ? !final_state(n.recovery_state) : silent(id, n)) ++*unreachable;
    }
  }

  // Not heard for more than one and a half of its intervals (never heard: since this plugin started).
  // Under mu_.
  bool silent(const std::string& node, const NodeView& n) const {
    auto it = heard_.find(node);
    auto last = it == heard_.end() ? started_ : it->second;
    return std::chrono::steady_clock::now() - last > n.interval * 3 / 2 + Millis(250);
  }

  // The ladder's methods but ack, in order, while the node stays unreachable. True once one
  // confirmed it off (the record says so); `failures` says why the others did not.
  bool fence(const std::string& node, size_t ha, std::string* failures) {
    for (const auto& rung : ladder_) {
      if (rung.method == kAck) break;
      {
        std::lock_guard lock(mu_);
        const NodeView& v = nodes_[node];
        if (stopping_ || v.monitor != "unreachable" || v.fenced) return false;
      }
      unhold(node);
      set_state(node, {{"state", "fencing"},
                       {"method", rung.method},
                       {"reason", std::to_string(ha) + " VM(s) with an ha priority; fencing by " + rung.method}});
      if (rung.method == kLease) {
        std::string why;
        bool off = fence_by_lease(node, &why);
        fence_attempts_[rung.method + (off ? "off" : "failed")].inc();
        if (off) return true;
        *failures += std::string(failures->empty() ? "" : "; ") + "lease: " + why;
        host().warn("could not fence " + node + " by its lease: " + why);
        continue;
      }
      auto started = std::chrono::steady_clock::now();
      auto r = tasks::call(host(), host().subject("cmd.fence." + rung.method),
                           {{"node", node}, {"timeout_ms", rung.timeout.count()}}, rung.timeout + Millis(2000));
      bool off = r.ok && record::field(r.result, "off") == true;
      fence_attempts_[rung.method + (off ? "off" : "failed")].inc();
      if (off) {
        auto took = std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - started).count();
        return record_fence(node, {{"method", rung.method}, {"at", tasks::unix_ms()}, {"by", host().node_id()},
                                   {"detail", record::text(r.result, "detail")}, {"took_ms", took}});
      }
      std::string why = r.unreachable ? "no fence plugin answered on " + host().subject("cmd.fence." + rung.method)
                                      : r.code + ": " + r.message;
      *failures += std::string(failures->empty() ? "" : "; ") + rung.method + ": " + why;
      host().warn("could not fence " + node + " by " + rung.method + ": " + why);
    }
    return false;
  }

  // The recover task, asked for once (a record naming a task is that task), then followed to its
  // end. True when this recovery is over, for better or worse.
  bool recover(const std::string& node, const NodeView& v) {
    std::string id = v.task;
    if (id.empty()) {
      auto r = tasks::call(host(), host().subject("cmd.node.recover"),
                           {{"node", node}, {"cause", node + " is unreachable and was fenced; automatic recovery"}},
                           Millis(30000));
      if (!r.ok) {
        bool room = r.code == tasks::kNoRoom;
        hold(node, room ? "no_room" : "failed",
             (room ? "no room elsewhere for its HA VMs: " : "the recover task could not start: ") + r.code + ": " + r.message);
        return false;
      }
      id = record::text(r.result, "task");
      unhold(node);
      set_state(node, {{"state", "recovering"}, {"task", id}, {"reason", "recreating its HA VMs elsewhere"}});
    }
    for (;;) {
      auto get = task_steps::host_get(host());
      auto head = task_steps::load_head(id, get);  // the state alone: the steps are read once, at the end
      std::string state = head ? record::text(head.value(), "state") : "";
      auto task = task_record::task_final(state) ? task_steps::load(id, get) : Result<nlohmann::json>(nlohmann::json());
      if (task_record::task_final(state) && task) {
        std::string left;
        for (const auto& s : record::field(task.value(), "steps"))
          if (record::text(s, "state") == "failed")
            left += std::string(left.empty() ? "" : "; ") + record::text(s, "name") + " (" + record::text(s, "vm") +
                    "): " + record::text(s, "error");
        recoveries_[state].inc();
        set_state(node, {{"state", state == "succeeded" ? "recovered" : "partial"},
                         {"task", id},
                         {"reason", left.empty() ? "its HA VMs run elsewhere" : "left: " + left}});
        return true;
      }
      std::unique_lock lock(mu_);
      changed_.wait_for(lock, Millis(250), [&] { return stopping_; });
      if (stopping_) return true;
    }
  }

  // Worker: an operator says the node is off.
  void fence_ack(const Message& m) {
    nlohmann::json req;
    if (auto e = command::decode(m.data, {{"node", Type::String, true}, {"by", Type::String}}, &req))
      return (void)host().respond(m.reply, command::fail(*e));
    std::optional<NodeId> id;
    if (auto e = command::parse_id("node", req["node"], &id)) return (void)host().respond(m.reply, command::fail(*e));
    std::string by = req.value("by", "");
    if (by.size() > 128 || std::any_of(by.begin(), by.end(), [](unsigned char c) { return c < 0x20 || c == 0x7f; }))
      return (void)host().respond(m.reply, command::fail(command::kBadValue, "field \"by\" must be at most 128 printable characters"));
    nlohmann::json record;
    if (auto e = tasks::read_node(host(), *id, &record)) return (void)host().respond(m.reply, command::fail(*e));
    const std::string node = id->str();
    if (record::text(record, "monitor") != "unreachable")
      return (void)host().respond(
          m.reply, command::fail("node_reachable", node + " is " + record::text(record, "monitor", "not judged yet") +
                                                       ", not unreachable: it answers, so it is not off. fence-ack is "
                                                       "for a node you confirmed powered off"));
    nlohmann::json fence = {{"method", kAck}, {"at", tasks::unix_ms()}, {"by", by.empty() ? "an operator" : by},
                            {"detail", "confirmed off by " + (by.empty() ? std::string("an operator") : by)}};
    if (!record_fence(node, fence))
      return (void)host().respond(m.reply, command::fail(command::kUnavailable, "could not record the fence; try again"));
    host().respond(m.reply, command::ok({{"node", node},
                                         {"fence", fence},
                                         {"recovery", enabled_ ? "automatic recovery of its HA VMs starts now"
                                                               : "automatic recovery is off: drain and rebuild it yourself"}}));
  }

  // Writes the node record's `fence` (only while the node is unreachable: a node that answers was
  // not off), with an event. True when stored.
  bool record_fence(const std::string& node, const nlohmann::json& fence) {
    bool written = patch(node, [&](nlohmann::json& r) {
      if (record::text(r, "monitor") != "unreachable") return false;
      r["fence"] = fence;
      return true;
    });
    if (!written) return false;
    host().warn(node + " is fenced by " + record::text(fence, "method") + ": " + record::text(fence, "detail"));
    nlohmann::json event = fence;
    event.update({{"event", "fenced"}, {"node", node}, {"time", tasks::unix_ms()}});
    auto ev = evidence::decided(host(), "fenced by " + record::text(fence, "method") + ": " + record::text(fence, "detail"));
    ev.facts = evidence::scalar_facts(fence);
    (void)evidence::publish(host(), "evt.node." + node, std::move(event), ev);
    std::lock_guard lock(mu_);
    nodes_[node].fenced = true;  // before the watch says so: the thread goes on at once
    nodes_[node].fence_method = record::text(fence, "method");
    changed_.notify_all();
    return true;
  }

  void hold(const std::string& node, const std::string& reason, const std::string& why) {
    {
      std::lock_guard lock(mu_);
      auto& was = held_[node];
      if (was == reason + why) return;
      was = reason + why;
    }
    set_state(node, {{"state", "held"}, {"held", reason}, {"reason", why}});
    update_gauges(node, reason);
  }
  void unhold(const std::string& node) {
    {
      std::lock_guard lock(mu_);
      held_.erase(node);
    }
    update_gauges(node, "");
  }
  void update_gauges(const std::string& node, const std::string& reason) {
    std::lock_guard lock(mu_);
    if (reason.empty()) held_reason_.erase(node);
    else held_reason_[node] = reason;
    std::map<std::string, int> n;
    for (const auto& [_, r] : held_reason_) ++n[r];
    for (auto& [r, g] : held_gauge_) g.set(n[r]);
    // One series per isolated node, for NodehaNodeIsolated, which silences its NodehaNodeUnreachable.
    auto it = isolated_gauges_.find(node);
    if (reason == "isolated" && it == isolated_gauges_.end()) {
      auto g = host().gauge("nodeha_node_isolated",
                            "1 for a node cut from management whose peers still hear it on the witness network",
                            {{"node", node}});
      g.set(1);
      isolated_gauges_.emplace(node, g);
    } else if (reason != "isolated" && it != isolated_gauges_.end()) {
      host().remove(it->second);
      isolated_gauges_.erase(it);
    }
  }

  // The record's `recovery`, with an event; written only when it changes.
  void set_state(const std::string& node, nlohmann::json state) {
    state["since"] = tasks::unix_ms();
    bool changed = false;
    (void)patch(node, [&](nlohmann::json& r) {
      nlohmann::json old = record::field(r, "recovery");
      if (old.is_object()) old.erase("since");
      nlohmann::json now = state;
      now.erase("since");
      changed = old != now;
      if (changed) r["recovery"] = state;
      return changed;
    });
    if (!changed) return;
    host().info(node + ": recovery " + record::text(state, "state") + ": " + record::text(state, "reason"));
    nlohmann::json event = state;
    event.update({{"event", "recovery"}, {"node", node}, {"time", tasks::unix_ms()}});
    auto ev = evidence::decided(host(), "recovery " + record::text(state, "state") + ": " + record::text(state, "reason"));
    ev.facts = evidence::scalar_facts(state);
    (void)evidence::publish(host(), "evt.node." + node, std::move(event), ev);
  }

  // Worker: a node back in service loses its fence and its recovery state.
  void forget(const std::string& node) {
    leases_->forget(node);
    (void)patch(node, [&](nlohmann::json& r) {
      if (record::text(r, "monitor") == "unreachable" || record::text(r, "management", "enabled") != "enabled") return false;
      bool had = r.contains("fence") || r.contains("recovery");
      r.erase("fence");
      r.erase("recovery");
      return had;
    });
  }

  // A revision-checked change of the node record that keeps every other writer's fields. True when
  // `change` changed it and it was stored.
  bool patch(const std::string& node, const std::function<bool(nlohmann::json&)>& change) {
    for (int attempt = 0; attempt < 8; ++attempt) {
      auto cur = host().kv_get(tasks::kNodesBucket, node);
      if (!cur) return false;
      auto r = nlohmann::json::parse(cur->value, nullptr, false);
      if (!r.is_object() || !change(r)) return false;
      auto w = host().kv_update(tasks::kNodesBucket, node, r.dump(), cur->revision);
      if (w) return true;
      if (w.status().code() != NODEHA_ERR_CONFLICT) {
        host().warn("could not write " + node + "'s record: " + w.status().message());
        return false;
      }
    }
    return false;
  }

  const bool enabled_;
  const Millis grace_;
  std::chrono::steady_clock::time_point started_;
  std::chrono::steady_clock::time_point hold_until_;  // lease grants say hold until then (timer only)
  std::map<std::string, Metric> fence_attempts_;  // method + result
  std::map<std::string, Metric> recoveries_;      // result
  std::vector<Rung> ladder_;
  Budget budget_;
  std::string witness_network_;
  std::unique_ptr<LeaseDesk> leases_;
  std::map<std::string, Metric> held_gauge_;
  Metric enabled_gauge_;
  std::mutex mu_;
  std::condition_variable changed_;  // a node record changed, or stopping
  bool stopping_ = false;
  std::map<std::string, NodeView> nodes_;
  std::map<std::string, std::chrono::steady_clock::time_point> heard_;  // node -> its last heartbeat
  std::set<std::string> active_;                    // nodes with a recovery thread
  std::map<std::string, std::string> held_;         // node -> what it was last held for (written once)
  std::map<std::string, std::string> held_reason_;  // node -> reason, for the gauges
  std::map<std::string, Metric> isolated_gauges_;   // node -> its nodeha_node_isolated
  ThreadSet threads_;                               // last: joined before the rest goes
};

}  // namespace
}  // namespace nodeha::recovery

NODEHA_PLUGIN(nodeha::recovery::RecoveryPlugin, "recovery", "0.1.0",
              "automatic recovery: an unreachable node fenced, then its HA VMs recreated elsewhere",
              nodeha::kControllerRole, nodeha::recovery::kKeys)
