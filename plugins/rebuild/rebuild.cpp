// rebuild (controller): `cmd.node.rebuild` {node, target?, dry_run?, plan?} (a plan:
// plugins/tasks/plans.h). Only for a drained node: its VMs without local disks are placed by the
// scheduler (or on `target`) and recreated there from their stored definitions. Each VM's record moves first (new generation), so that the old node,
// if it comes back, finds its copy stale and removes it before it could run twice. VMs with
// local disks are skipped with the reason and marked stranded on the node in their records
// (vm_record.h), which their node's record counts (stranded_counts.h) until the node is back; a VM
// the scheduler has no room for fails its step, and the task can be run again for what is left
// (the records of rebuilt VMs no longer name the node).
//
// `cmd.node.recover` {node, cause}: the same, asked by the recovery plugin (plugins/recovery/) for a
// node confirmed off (its record carries `fence`), as a task of kind `recover`: the node is
// drained in the write that locks it, and only its VMs with an `ha` priority are recreated, the
// highest first (placed first too: when room runs out, the least important are left). The others
// stay recorded on the node, which does not start them while it is drained.
#include "engine.h"
#include "evidence.h"
#include "plans.h"
#include "record_fields.h"
#include "stranded_counts.h"
#include "task_record.h"
#include "vm_record.h"

#include <nodeha/plugin.hpp>

namespace nodeha::rebuild {
namespace {

using command::Type;
using nodeha::tasks::StepResult;

const nodeha_config_key kKeys[] = {
    key("parallel", NODEHA_CONFIG_INTEGER, "4", "VMs", "VMs recreated at the same time"),
    key("agent_timeout", NODEHA_CONFIG_DURATION, "\"60s\"", "duration", "how long a define or start on an agent may take"),
    key("reserve", NODEHA_CONFIG_DURATION, "\"10m\"", "duration", "how long the scheduler holds the room of a rebuild"),
    plans::ttl_key(),
};

class RebuildPlugin : public Plugin {
 public:
  explicit RebuildPlugin(Host h)
      : Plugin(std::move(h)), parallel_(host().config().at("parallel").get<int>()),
        agent_timeout_(host().duration("agent_timeout")), reserve_(host().duration("reserve")), stranded_(host()),
        plans_(host()) {
    if (parallel_ < 1) throw ConfigError("parallel must be at least 1");
    tasks::Kind kind;
    kind.name = "rebuild";
    kind.parallel = parallel_;
    kind.run_step = [this](const nlohmann::json& task, const nlohmann::json& step) { return recreate(task, step); };
    kind.on_finish = [this](const nlohmann::json& task) { tasks::release(host(), task["id"]); };
    kind.on_resume = [this](const nlohmann::json& task) {
      tasks::hold_again(host(), task, reserve_);
      mark_skipped(task);
    };
    engine_ = std::make_unique<tasks::Engine>(host(), kind);
    kind.name = "recover";
    // VMs are down while a recover step waits (a target's agent still starting): asked again soon.
    kind.retry_every = Millis(500);
    recover_engine_ = std::make_unique<tasks::Engine>(host(), std::move(kind));
  }

  Status start() override {
    if (auto s = engine_->start(); !s) return s;
    if (auto s = recover_engine_->start(); !s) return s;
    if (auto s = stranded_.start(); !s) return s;
    if (auto s = plans_.start(); !s) return s;
    auto r = host().subscribe(host().subject("cmd.node.rebuild"), [this](const Message& m) {
      host().spawn([this, m] { rebuild(m); });
    }, "nodeha-controller");
    if (!r) return r.status();
    r = host().subscribe(host().subject("cmd.node.recover"), [this](const Message& m) {
      host().spawn([this, m] { recover(m); });
    }, "nodeha-controller");
    return r ? Status::ok() : r.status();
  }
  void stop() override {
    plans_.stop();
    engine_->stop();
    recover_engine_->stop();
  }

 private:
  static std::optional<command::Error> not_drained(const std::string& node, const nlohmann::json& record) {
    std::string management = record.value("management", "enabled");
    if (management == "drained") return std::nullopt;
    return command::Error{tasks::kNodeNotDrained,
                          node + " is " + management + ", not drained: rebuild only recreates the VMs of a drained node, "
                          "so that they never run twice; drain it first with `nodeha node drain " + node + "`"};
  }

  void rebuild(const Message& m) {
    auto refuse = [&](const command::Error& e) { host().respond(m.reply, command::fail(e)); };
    nlohmann::json req;
    if (auto e = command::decode(m.data, {{"node", Type::String, true}, {"target", Type::String}, {"dry_run", Type::Bool},
                                          {"plan", Type::String}}, &req))
      return refuse(*e);
    std::optional<plans::Kept> kept;
    if (auto e = plans_.open("rebuild", req, &kept)) return refuse(*e);
    std::optional<NodeId> node_id, target_id;
    auto e = command::parse_id("node", req["node"], &node_id);
    if (!e && req.contains("target")) e = command::parse_id("target", req["target"], &target_id);
    if (e) return refuse(*e);
    std::string node = node_id->str(), target = target_id ? target_id->str() : "";
    nlohmann::json record, target_record;
    if (auto e = tasks::read_node(host(), *node_id, &record)) return refuse(*e);
    auto vms = tasks::vms_on(host(), node);
    if (!vms) return refuse({command::kUnavailable, "cannot read the vms bucket: " + vms.status().message()});
    e = plans_.check_records(kept, record, vms.value());
    if (!e) e = not_drained(node, record);
    if (!e && record.contains("lock") && record["lock"].is_object())
      e = command::Error{tasks::kNodeLocked, task_record::locked_message(node, record["lock"])};
    if (!e && !target.empty()) {
      e = tasks::read_node(host(), *target_id, &target_record);
      if (!e && target == node) e = command::Error{command::kBadValue, "the target is the node being rebuilt; name another node"};
    }
    if (e) return refuse(*e);
    std::vector<nlohmann::json> movable, stranded;
    for (const auto& v : vms.value()) (record::flag(v, "local_disk") ? stranded : movable).push_back(v);

    bool dry = req.value("dry_run", false);
    std::string id = task_record::new_id();
    tasks::Placements placed;
    nlohmann::json found = nlohmann::json::array();
    if (!movable.empty()) {
      double reserve_s = dry ? 0 : reserve_.count() / 1000.0;
      auto p = kept ? plans::place_pinned(host(), movable, node, kept->basis["plan"], reserve_s, id, found)
                    : tasks::place(host(), movable, node, target, reserve_s, id);
      if (!p) return refuse({command::kUnavailable, p.status().message()});
      placed = std::move(p.value());
    }
    // A named target that cannot take them all, or no room anywhere: refused, nothing changed.
    // A plan's run was checked when the plan was made, and place_pinned says what changed since.
    if (auto e = kept ? std::nullopt : tasks::no_room(placed, movable.size(), node, target)) {
      if (!dry) tasks::release(host(), id);
      return refuse(*e);
    }

    nlohmann::json plan = nlohmann::json::array();
    auto task = task_record::make(id, "rebuild", node, req, host().node_id(), tasks::unix_ms());
    task["requested_by"] = evidence::requester_of(m.reply);  // the server vouches for the inbox
    const std::string why = "has local disks: its data is on " + node + "; migrate it when the node is back, or restore it";
    for (const auto& v : vms.value()) tasks::plan_vm(plan, task, v, placed, "rebuild", record::flag(v, "local_disk") ? why : "");
    if (auto e = plans::Keeper::check_plan(kept, plan, found)) {
      tasks::release(host(), id);
      return refuse(*e);
    }
    nlohmann::json result = {{"node", node}, {"plan", plan}};
    if (dry) {
      if (auto e = plans_.keep("rebuild", node, req, record, vms.value(), plan, result)) return refuse(*e);
      result["dry_run"] = true;
      host().respond(m.reply, command::ok(result));
      return;
    }
    auto refused = tasks::lock_node(host(), node, task, [&](nlohmann::json& r) {
      auto drift = plans::Keeper::check_source(kept, r);
      return drift ? drift : not_drained(node, r);
    });
    if (!refused && kept)
      if ((refused = plans_.use(*kept, id))) (void)tasks::unlock_node(host(), node, id);
    if (refused) {
      tasks::release(host(), id);
      return refuse(*refused);
    }
    if (auto s = engine_->submit(task, parallel_); !s) {
      (void)tasks::unlock_node(host(), node, id);
      tasks::release(host(), id);
      return refuse({command::kUnavailable, "the task could not be stored (" + s.message() + "); try again"});
    }
    for (const auto& v : stranded) mark_stranded(record::text(v, "uuid"), {node, id, tasks::unix_ms(), why});
    host().info("rebuilding " + node + " (task " + id + ", " + std::to_string(plan.size()) + " VM(s))" +
                (kept ? ", plan " + kept->id : ""));
    result["task"] = id;
    if (kept) result["plan_id"] = kept->id;
    host().respond(m.reply, command::ok(result));
  }

  // Why the node's record does not allow a recover: not fenced, or it answers again (whatever
  // fenced it, a node that answers is not off).
  static std::optional<command::Error> not_recoverable(const std::string& node, const nlohmann::json& record) {
    if (!record::field(record, "fence").is_object())
      return command::Error{"node_not_fenced", node + " is not fenced: automatic recovery recreates only the VMs of a "
                                               "node confirmed off (docs/operations.md, \"Automatic recovery\")"};
    if (record::text(record, "monitor") != "unreachable")
      return command::Error{"node_reachable", node + " is " + record::text(record, "monitor", "not judged yet") +
                                                  ", not unreachable: automatic recovery is for a node that is off"};
    return std::nullopt;
  }

  // Worker. The recovery plugin asks; it also says why (cause), which the task keeps.
  void recover(const Message& m) {
    nlohmann::json req;
    if (auto e = command::decode(m.data, {{"node", Type::String, true}, {"cause", Type::String, true}}, &req)) {
      host().respond(m.reply, command::fail(*e));
      return;
    }
    std::optional<NodeId> node_id;
    auto e = command::parse_id("node", req["node"], &node_id);
    if (!e && req["cause"].get_ref<const std::string&>().size() > 1000)
      e = command::Error{command::kBadValue, "field \"cause\" must be at most 1000 characters"};
    nlohmann::json record;
    if (!e) e = tasks::read_node(host(), *node_id, &record);
    if (!e) e = not_recoverable(node_id->str(), record);
    if (!e && record.contains("lock") && record["lock"].is_object())
      e = command::Error{tasks::kNodeLocked, task_record::locked_message(node_id->str(), record["lock"])};
    if (e) {
      host().respond(m.reply, command::fail(*e));
      return;
    }
    const std::string node = node_id->str();
    auto vms = tasks::vms_on(host(), node);
    if (!vms) {
      host().respond(m.reply, command::fail(command::kUnavailable, "cannot read the vms bucket: " + vms.status().message()));
      return;
    }
    // Highest priority first: steps run in this order.
    std::stable_sort(vms.value().begin(), vms.value().end(), [](const nlohmann::json& a, const nlohmann::json& b) {
      return vm_record::ha_priority(a).value_or(-1) > vm_record::ha_priority(b).value_or(-1);
    });
    std::vector<nlohmann::json> movable;
    for (const auto& v : vms.value())
      if (vm_record::ha_priority(v) && !record::flag(v, "local_disk")) movable.push_back(v);
    std::string id = task_record::new_id();
    tasks::Placements placed;
    if (!movable.empty()) {
      auto p = tasks::place(host(), movable, node, "", reserve_.count() / 1000.0, id);
      if (!p) {
        host().respond(m.reply, command::fail(command::kUnavailable, p.status().message()));
        return;
      }
      placed = std::move(p.value());
      if (auto e = tasks::no_room(placed, movable.size(), node, "")) {
        tasks::release(host(), id);
        host().respond(m.reply, command::fail(e->code, e->message));
        return;
      }
    }
    auto task = task_record::make(id, "recover", node, req, host().node_id(), tasks::unix_ms());
    task["requested_by"] = evidence::requester_of(m.reply);  // the server vouches for the inbox
    nlohmann::json plan = nlohmann::json::array();
    const std::string off = "ha off: stays on " + node + ", stopped; `nodeha node rebuild " + node + "` recreates it";
    const std::string local = "has local disks: its data is on " + node + "; it stays there, stopped";
    for (const auto& v : vms.value())
      tasks::plan_vm(plan, task, v, placed, "rebuild",
                     !vm_record::ha_priority(v) ? off : record::flag(v, "local_disk") ? local : "");
    if (auto refused = tasks::lock_and_drain(host(), node, task, [&](nlohmann::json& r) { return not_recoverable(node, r); })) {
      tasks::release(host(), id);
      host().respond(m.reply, command::fail(*refused));
      return;
    }
    if (auto s = recover_engine_->submit(task, parallel_); !s) {
      (void)tasks::unlock_node(host(), node, id);
      tasks::release(host(), id);
      host().respond(m.reply, command::fail(command::kUnavailable, "the task could not be stored (" + s.message() + "); try again"));
      return;
    }
    // What it leaves shows in `nodeha vm list` as stranded on the node, until the node reports it again.
    for (const auto& v : vms.value())
      if (!vm_record::ha_priority(v) || record::flag(v, "local_disk"))
        mark_stranded(record::text(v, "uuid"),
                      {node, id, tasks::unix_ms(), !vm_record::ha_priority(v) ? off : local});
    host().info("recovering " + node + " (task " + id + ", " + std::to_string(movable.size()) + " HA VM(s)): " +
                req["cause"].get<std::string>());
    host().respond(m.reply, command::ok({{"node", node}, {"plan", plan}, {"task", id}}));
  }

  // The record of a VM left behind says so, for `nodeha vm list` and the node's record. Worker.
  void mark_stranded(const std::string& uuid, const vm_record::Stranded& mark) {
    if (auto r = vm_record::mark_stranded(host(), uuid, mark); !r)
      host().warn("could not mark VM " + uuid + " stranded on " + mark.node + ": " + r.status().message());
  }
  // A controller stopped between storing the task and marking its skipped VMs: marked now (a mark
  // already there stays as it is).
  void mark_skipped(const nlohmann::json& task) {
    const auto& steps = record::field(task, "steps");
    if (!steps.is_array()) return;
    for (const auto& s : steps)
      if (record::text(s, "state") == "skipped")
        mark_stranded(record::text(s, "vm"), {record::text(task, "node"), record::text(task, "id"), tasks::unix_ms(),
                                              record::text(s, "reason")});
  }

  // Idempotent: run again after a controller restart, each part finds its work done.
  StepResult recreate(const nlohmann::json& task, const nlohmann::json& step) {
    std::string node = task["node"], uuid = step["vm"], target = step["target"];
    // The drained node may be back: never recreate a VM it still runs. A recover task's node was
    // confirmed off: while the controller still sees it unreachable, asking would only wait out the
    // timeout (a dead host's subscriptions outlive it on the server), with VMs down meanwhile.
    nlohmann::json node_record;
    auto id = NodeId::parse(node);  // the task's own record: checked when the task was made
    bool off = record::text(task, "kind") == "recover" && id && !tasks::read_node(host(), id.value(), &node_record) &&
               record::text(node_record, "monitor") == "unreachable";
    if (!off) {
      auto on_node = tasks::call(host(), host().subject("agent." + node + ".vm.list"), nlohmann::json::object(), Millis(2000));
      if (on_node.ok && vm_record::listed_states(on_node.result)[uuid] == "running")
        return StepResult::failed("still running on " + node + ": stop it first (`nodeha node drain " + node + "`)");
    }

    auto rec = host().kv_get("vms", uuid);
    if (!rec && store_unreachable(rec.status().code())) return StepResult::retry("cannot read the record of the VM: " + rec.status().message());
    if (!rec) return StepResult::failed("cannot read the record of the VM: " + rec.status().message());
    auto record = nlohmann::json::parse(rec->value, nullptr, false);
    if (!record.is_object() || !record.contains("xml") || !record["xml"].is_string() || record["xml"].get<std::string>().empty())
      return StepResult::failed("its record holds no definition to recreate it from");
    std::string owner = record::text(record, "node");
    if (owner != node && owner != target) return StepResult::failed("its record now names " + owner + ": moved by someone else");
    std::string desired = record::text(record, "desired", "running");
    // The record moves before the VM is made: without a store (no JetStream quorum) nothing is
    // made, and the step waits for the store rather than fail.
    auto moved = vm_record::move(host(), uuid, target, desired);
    if (!moved)
      return store_unreachable(moved.status().code()) ? StepResult::retry("cannot move its record to " + target + ": " + moved.status().message())
                                        : StepResult::failed("cannot move its record to " + target + ": " + moved.status().message());

    // An agent answers `unavailable` while it cannot keep its records (its inventory out of
    // sync, the store down): it did nothing, and will do it once it can.
    auto agent_failed = [&](const std::string& what, const tasks::Reply& r) {
      std::string why = what + " on " + target + ": " + r.code + ": " + r.message;
      return r.code == "unavailable" ? StepResult::retry(why) : StepResult::failed(why);
    };
    auto defined = tasks::call(host(), host().subject("agent." + target + ".vm.define"), {{"xml", record["xml"]}}, agent_timeout_);
    if (!defined.ok) return agent_failed("define", defined);
    if (desired == "running") {
      auto started = tasks::call(host(), host().subject("agent." + target + ".vm.start"), {{"uuid", uuid}}, agent_timeout_);
      if (!started.ok) return agent_failed("start", started);
    }
    return moved_with_evidence(task, uuid, target, desired, moved.value(), id ? &id.value() : nullptr, node_record);
  }

  // The step's outcome and the VM's `moved` event on evt.vm.<uuid>: why its record left `node`.
  StepResult moved_with_evidence(const nlohmann::json& task, const std::string& uuid, const std::string& target,
                                 const std::string& desired, const nlohmann::json& moved, const NodeId* node_id,
                                 nlohmann::json node_record) {
    std::string node = task["node"], kind = record::text(task, "kind"), tid = task["id"];
    if (node_record.is_null() && node_id) (void)tasks::read_node(host(), *node_id, &node_record);
    std::string monitor = record::text(node_record, "monitor", "?"), management = record::text(node_record, "management", "?");
    int64_t generation = record::integer(moved, "generation");
    auto ev = evidence::decided(host(), kind + " task " + tid + ": " + node + " " + monitor + " and " + management +
                                            ", record moved to " + target + " generation " + std::to_string(generation) +
                                            (desired == "running" ? ", started there" : ", defined there (stopped)"));
    ev.task = tid;
    ev.requester = task.value("requested_by", "");
    ev.facts = {{"from", node}, {"to", target}, {"generation", generation}, {"node_monitor", monitor}, {"node_management", management}};
    (void)evidence::publish(host(), "evt.vm." + uuid,
                            {{"event", "moved"}, {"uuid", uuid}, {"node", target}, {"from", node}, {"to", target},
                             {"generation", generation}, {"task", tid}, {"by_task", kind}}, ev);
    return StepResult::ok().because(ev.summary, ev.facts);
  }

  int parallel_;
  Millis agent_timeout_;
  Millis reserve_;
  StrandedCounts stranded_;
  plans::Keeper plans_;
  std::unique_ptr<tasks::Engine> engine_;
  std::unique_ptr<tasks::Engine> recover_engine_;
};

}  // namespace
}  // namespace nodeha::rebuild

NODEHA_PLUGIN(nodeha::rebuild::RebuildPlugin, "rebuild", "0.1.0", "node.rebuild: a drained node's VMs recreated elsewhere",
              nodeha::kControllerRole, nodeha::rebuild::kKeys)
