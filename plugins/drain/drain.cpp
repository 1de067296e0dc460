// drain (controller): `cmd.node.drain` {node, dry_run?, plan?} (a plan: plugins/tasks/plans.h). The node becomes `drained` at once (the
// scheduler never places a VM there again, the agent never starts one) and its agent stops
// every VM recorded there, `parallel` at a time: a graceful shutdown, destroyed after
// `stop_timeout`.
//
// A node that cannot be reached is drained all the same: the state is recorded, the task
// releases the node's lock (so that the node can be rebuilt; at once when the controller already
// sees the node unreachable) and waits, step by step, until the node is reachable and its agent
// confirms each VM stopped. A VM whose record moved to another node meanwhile
// (rebuilt there) is not stopped by the drain: the returning agent removes its stale copy.
#include "engine.h"
#include "evidence.h"
#include "plans.h"
#include "record_fields.h"
#include "task_record.h"

#include <nodeha/plugin.hpp>

#include <chrono>
#include <map>
#include <mutex>
#include <set>

namespace nodeha::drain {
namespace {

using command::Type;
using nodeha::tasks::StepResult;

const nodeha_config_key kKeys[] = {
    key("stop_timeout", NODEHA_CONFIG_DURATION, "\"60s\"", "duration",
        "graceful shutdown time before a VM is destroyed; 0 destroys at once"),
    key("parallel", NODEHA_CONFIG_INTEGER, "16", "VMs", "VMs stopped at the same time"),
    key("retry_every", NODEHA_CONFIG_DURATION, "\"2s\"", "duration", "how often an unreachable agent is tried again"),
    plans::ttl_key(),
};

class DrainPlugin : public Plugin {
 public:
  explicit DrainPlugin(Host h)
      : Plugin(std::move(h)), stop_timeout_(host().duration("stop_timeout")),
        parallel_(host().config().at("parallel").get<int>()), plans_(host()) {
    if (parallel_ < 1) throw ConfigError("parallel must be at least 1");
    if (stop_timeout_.count() < 0) throw ConfigError("stop_timeout must not be negative");
    tasks::Kind kind;
    kind.name = "drain";
    kind.parallel = parallel_;
    kind.retry_every = host().duration("retry_every");
    kind.run_step = [this](const nlohmann::json& task, const nlohmann::json& step) { return stop_vm(task, step); };
    kind.on_finish = [this](const nlohmann::json& task) {
      std::lock_guard lock(probe_mu_);
      released_.erase(record::text(task, "id"));
    };
    retry_every_ = kind.retry_every;
    engine_ = std::make_unique<tasks::Engine>(host(), std::move(kind));
  }

  Status start() override {
    node_reads_ = host().counter("nodeha_drain_node_reads_total",
                                 "reads of a drained node's record by the steps of its drain: one per retry round while it is "
                                 "unreachable, not one per step");
    if (auto s = engine_->start(); !s) return s;
    if (auto s = plans_.start(); !s) return s;
    auto r = host().subscribe(host().subject("cmd.node.drain"), [this](const Message& m) {
      host().spawn([this, m] { drain(m); });
    }, "nodeha-controller");
    return r ? Status::ok() : r.status();
  }
  void stop() override {
    plans_.stop();
    engine_->stop();
  }

 private:
  void drain(const Message& m) {
    auto refuse = [&](const command::Error& e) { host().respond(m.reply, command::fail(e)); };
    nlohmann::json req;
    if (auto e = command::decode(m.data, {{"node", Type::String, true}, {"dry_run", Type::Bool}, {"plan", Type::String}}, &req))
      return refuse(*e);
    std::optional<plans::Kept> kept;
    if (auto e = plans_.open("drain", req, &kept)) return refuse(*e);
    std::optional<NodeId> node_id;
    if (auto e = command::parse_id("node", req["node"], &node_id)) return refuse(*e);
    const std::string& node = node_id->str();
    nlohmann::json record;
    if (auto e = tasks::read_node(host(), *node_id, &record)) return refuse(*e);
    auto vms = tasks::vms_on(host(), node);
    if (!vms) return refuse({command::kUnavailable, "cannot read the vms bucket: " + vms.status().message()});
    if (auto e = plans_.check_records(kept, record, vms.value())) return refuse(*e);
    if (record.contains("lock") && record["lock"].is_object())
      return refuse({tasks::kNodeLocked, task_record::locked_message(node, record["lock"])});
    nlohmann::json plan = nlohmann::json::array();
    for (const auto& v : vms.value())
      plan.push_back({{"vm", v["uuid"]}, {"name", v.value("name", "")}, {"target", nullptr}, {"action", "stop"},
                      {"reason", v.value("state", "") == "running" ? "" : "not running; stays stopped"}});
    if (auto e = plans::Keeper::check_plan(kept, plan, nlohmann::json::array())) return refuse(*e);
    nlohmann::json result = {{"node", node}, {"plan", plan}, {"management", "drained"},
                             {"monitor", record.value("monitor", "")}};
    if (req.value("dry_run", false)) {
      if (auto e = plans_.keep("drain", node, req, record, vms.value(), plan, result)) return refuse(*e);
      result["dry_run"] = true;
      host().respond(m.reply, command::ok(result));
      return;
    }

    std::string id = task_record::new_id();
    auto task = task_record::make(id, "drain", node, req, host().node_id(), tasks::unix_ms());
    task["requested_by"] = evidence::requester_of(m.reply);  // the server vouches for the inbox
    for (const auto& v : vms.value()) task["steps"].push_back(task_record::make_step(v["uuid"], v.value("name", ""), nullptr));
    auto source_held = [&](nlohmann::json& r) { return plans::Keeper::check_source(kept, r); };
    if (auto refused = tasks::lock_and_drain(host(), node, task, source_held)) return refuse(*refused);
    if (kept)
      if (auto e = plans_.use(*kept, id)) {
        (void)tasks::unlock_node(host(), node, id);
        return refuse(*e);
      }
    if (auto s = engine_->submit(task, parallel_); !s) {
      (void)tasks::unlock_node(host(), node, id);
      return refuse({command::kUnavailable, "the node is drained but its task could not be stored (" + s.message() +
                                                "); run the drain again"});
    }
    // A node that is already unreachable is drained but not kept locked: the operator's next
    // command is a rebuild (docs/operations.md, scenario 1).
    if (record.value("monitor", "") == "unreachable") (void)tasks::unlock_node(host(), node, id);
    host().info("draining " + node + " (task " + id + ", " + std::to_string(plan.size()) + " VM(s))" +
                (kept ? ", plan " + kept->id : ""));
    result["task"] = id;
    if (kept) result["plan_id"] = kept->id;
    host().respond(m.reply, command::ok(result));
  }

  StepResult stop_vm(const nlohmann::json& task, const nlohmann::json& step) {
    std::string node = task["node"], uuid = step["vm"];
    auto rec = host().kv_get("vms", uuid);
    if (rec) {
      auto j = nlohmann::json::parse(rec->value, nullptr, false);
      if (j.is_object() && j.value("node", "") != node)  // rebuilt elsewhere: not ours to stop
        return StepResult::ok().because("nothing to stop: its record names " + j.value("node", std::string("no node")) +
                                         " now (generation " + j.value("generation", nlohmann::json()).dump() + ")");
    }
    // Why the agent cannot confirm the stop now. While the controller sees the node unreachable,
    // asking would only wait for a timeout (a dead host's subscriptions outlive it on the server
    // for minutes).
    std::string waiting;
    if (unreachable(node)) {
      waiting = node + " is unreachable";
    } else {
      nlohmann::json body = {{"uuid", uuid}, {"timeout_ms", stop_timeout_.count()}, {"force", stop_timeout_.count() == 0}};
      auto r = tasks::call(host(), host().subject("agent." + node + ".vm.stop"), body, stop_timeout_ + Millis(30000));
      if (r.ok || r.code == tasks::kUnknownVm) {  // stopped, or not on the node at all
        std::string id = task["id"];
        auto ev = evidence::decided(host(), (r.ok ? "stopped by drain task " : "not on " + node + " (nothing to stop): drain task ") +
                                                id + " step, " + node + " being drained");
        ev.task = id;
        ev.requester = task.value("requested_by", "");
        ev.facts = {{"agent_answer", r.ok ? "stopped" : r.code}};
        if (r.ok)
          (void)evidence::publish(host(), "evt.vm." + uuid,
                                  {{"event", "stopped"}, {"uuid", uuid}, {"node", node}, {"task", id}, {"by_task", "drain"}}, ev);
        return StepResult::ok().because(ev.summary, ev.facts);
      }
      if (!r.unreachable) return StepResult::failed(r.code + ": " + r.message);
      waiting = r.message;
    }
    // Waiting for the agent must not keep the node locked: a rebuild may come first. Once
    // released, the lock never names this task again: the first waiting step releases it.
    std::string id = task["id"];
    bool release = false;
    {
      std::lock_guard lock(probe_mu_);
      release = released_.insert(id).second;
    }
    if (release) {
      node_reads_.inc();
      if (!tasks::unlock_node(host(), node, id)) {
        std::lock_guard lock(probe_mu_);
        released_.erase(id);  // the store could not be reached: the next waiting step tries again
      }
    }
    return StepResult::retry("waiting for " + node + "'s agent to confirm the VM stopped: " + waiting);
  }

  // Whether the controller sees `node` unreachable: read once per round (retry_every) and shared
  // by every step of the round, so a dead node's drain of 10,000 VMs reads the node record once a
  // round, not 10,000 times. Steps of the round wait for the one read under way.
  bool unreachable(const std::string& node) {
    std::lock_guard lock(probe_mu_);
    auto now = std::chrono::steady_clock::now();
    auto it = probes_.find(node);
    if (it != probes_.end() && now - it->second.at < retry_every_) return it->second.unreachable;
    nlohmann::json record;
    auto id = NodeId::parse(node);  // the task's own record: checked when the task was made
    bool seen = id && !tasks::read_node(host(), id.value(), &record) && record.value("monitor", "") == "unreachable";
    node_reads_.inc();
    probes_[node] = {now, seen};
    return seen;
  }

  struct Probe {
    std::chrono::steady_clock::time_point at;
    bool unreachable = false;
  };
  std::mutex probe_mu_;
  std::map<std::string, Probe> probes_;  // node -> its last read; bounded by the nodes drained
  std::set<std::string> released_;       // tasks whose node lock was released, until they end
  Millis retry_every_{2000};
  Metric node_reads_;
  Millis stop_timeout_;
  int parallel_;
  plans::Keeper plans_;
  std::unique_ptr<tasks::Engine> engine_;
};

}  // namespace
}  // namespace nodeha::drain

NODEHA_PLUGIN(nodeha::drain::DrainPlugin, "drain", "0.1.0", "node.drain: drained state, every VM stopped",
              nodeha::kControllerRole, nodeha::drain::kKeys)
