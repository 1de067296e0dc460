#include "controller.h"

#include "evidence.h"
#include "progress.h"
#include "record_fields.h"
#include "task_record.h"
#include "vm_record.h"

#include <set>

namespace nodeha::migrate {

using command::Type;
using tasks::StepResult;

ControllerSide::ControllerSide(const Host& host)
    : host_(host), max_parallel_(host.config().at("max_parallel").get<int>()),
      migration_timeout_(host.duration("timeout")), stall_timeout_(host.duration("stall_timeout")),
      agent_timeout_(host.duration("agent_timeout")), reserve_(host.duration("reserve")), plans_(host) {
  if (max_parallel_ < 1) throw ConfigError("max_parallel must be at least 1");
  // A maintenance task's steps are a migration's: only its kind (and so `task list`) differs.
  for (const char* name : {"migrate", "maintenance"}) {
    tasks::Kind kind;
    kind.name = name;
    kind.parallel = max_parallel_;
    kind.run_step = [this](const nlohmann::json& task, const nlohmann::json& step) { return migrate_vm(task, step); };
    kind.on_cancel = [this](const nlohmann::json& task, const nlohmann::json& step) { abort_vm(task, step); };
    kind.on_finish = [this](const nlohmann::json& task) { tasks::release(host_, task["id"]); };
    kind.on_resume = [this](const nlohmann::json& task) { tasks::hold_again(host_, task, reserve_); };
    (std::string(name) == "migrate" ? engine_ : maintenance_engine_) = std::make_unique<tasks::Engine>(host_, std::move(kind));
  }
}

Status ControllerSide::start() {
  if (auto s = engine_->start(); !s) return s;
  if (auto s = plans_.start(); !s) return s;
  if (auto s = maintenance_engine_->start(); !s) return s;
  auto r = host_.subscribe(host_.subject("cmd.node.migrate"), [this](const Message& m) {
    host_.spawn([this, m] { migrate(m, false); });
  }, "nodeha-controller");
  if (!r) return r.status();
  r = host_.subscribe(host_.subject("cmd.node.maintenance"), [this](const Message& m) {
    host_.spawn([this, m] { migrate(m, true); });
  }, "nodeha-controller");
  if (!r) return r.status();
  auto p = host_.subscribe(host_.subject("evt.vm.*"), [this](const Message& m) { on_vm_event(m); });
  return p ? Status::ok() : p.status();
}

void ControllerSide::stop() {
  plans_.stop();
  engine_->stop();
  maintenance_engine_->stop();
}

namespace {

std::optional<command::Error> check_network(const std::string& node, const nlohmann::json& record, const std::string& network) {
  if (network == "management") return std::nullopt;  // every agent answers on it
  auto addresses = record.value("addresses", nlohmann::json::object());
  if (addresses.is_object() && addresses.contains(network)) return std::nullopt;
  return command::Error{tasks::kUnknownNetwork, node + " reports no address on the \"" + network +
                                                    "\" network; set it in its heartbeat plugin's `addresses`, or choose "
                                                    "another network"};
}

// A drained node has no running VM to move: enabling it is a management change, not maintenance.
std::optional<command::Error> maintainable(const std::string& node, const nlohmann::json& record) {
  if (record.value("management", "") != "drained") return std::nullopt;
  return command::Error{tasks::kNodeDrained, node + " is drained: its VMs were stopped, there is nothing to migrate; "
                                                    "`nodeha node enable " + node + "` first if it should run VMs again"};
}

}  // namespace

void ControllerSide::migrate(const Message& m, bool maintenance) {
  nlohmann::json req;
  // Maintenance empties the whole node onto what the scheduler picks: no target, no VM list.
  std::vector<command::Field> fields = {{"node", Type::String, true},
                                        {"include_local_disk", Type::Bool},
                                        {"network", Type::String},
                                        {"max_parallel", Type::Integer},
                                        {"dry_run", Type::Bool},
                                        {"plan", Type::String}};
  if (!maintenance) fields.insert(fields.end(), {{"target", Type::String}, {"vms", Type::Array}});
  if (auto e = command::decode_fields(m.data, fields, &req, kMaxBulkCommandBytes)) {
    host_.respond(m.reply, command::fail(*e));
    return;
  }
  auto refuse = [&](const command::Error& e) { host_.respond(m.reply, command::fail(e)); };
  std::optional<plans::Kept> kept;
  if (auto e = plans_.open(maintenance ? "maintenance" : "migrate", req, &kept)) return refuse(*e);
  std::optional<NodeId> node_id, target_id;
  if (auto e = command::parse_id("node", req["node"], &node_id)) return refuse(*e);
  if (req.contains("target"))
    if (auto e = command::parse_id("target", req["target"], &target_id)) return refuse(*e);
  std::vector<VmUuid> chosen_ids;
  if (req.contains("vms"))
    if (auto e = command::parse_ids("vms", req["vms"], &chosen_ids)) return refuse(*e);
  std::string node = node_id->str(), target = target_id ? target_id->str() : "";
  std::string network = req.value("network", "management");
  bool with_disks = req.value("include_local_disk", false), dry = req.value("dry_run", false);
  int parallel = req.value("max_parallel", max_parallel_);
  if (parallel < 1 || parallel > 64) return refuse({command::kBadValue, "max_parallel must be between 1 and 64"});
  if (network != "management" && network != "business" && network != "storage")
    return refuse({command::kBadValue, "network must be \"management\", \"business\" or \"storage\", not " + echo_value(network)});
  req["max_parallel"] = parallel;
  req["network"] = network;

  nlohmann::json record, target_record;
  if (auto e = tasks::read_node(host_, *node_id, &record)) return refuse(*e);
  auto vms = tasks::vms_on(host_, node);
  if (!vms) return refuse({command::kUnavailable, "cannot read the vms bucket: " + vms.status().message()});
  std::set<std::string> chosen;
  for (const auto& v : chosen_ids) chosen.insert(v.str());
  std::vector<nlohmann::json> listed;  // the VMs the command is about
  for (const auto& v : vms.value())
    if (chosen.empty() || chosen.count(record::text(v, "uuid"))) listed.push_back(v);
  if (auto e = plans_.check_records(kept, record, listed)) return refuse(*e);
  if (record.contains("lock") && record["lock"].is_object())
    return refuse({tasks::kNodeLocked, task_record::locked_message(node, record["lock"])});
  if (record.value("monitor", "") == "unreachable")
    return refuse({tasks::kNodeUnreachable, node + " is unreachable (" + record.value("reason", "") +
                                                "): its agent cannot migrate anything; on the node, `nodeha local migrate` "
                                                "works without the controller, or drain and rebuild it"});
  if (maintenance)
    if (auto e = maintainable(node, record)) return refuse(*e);
  if (!target.empty()) {
    if (auto e = tasks::read_node(host_, *target_id, &target_record)) return refuse(*e);
    if (target == node) return refuse({command::kBadValue, "the target is the node being migrated; name another node"});
    if (auto e = check_network(target, target_record, network)) return refuse(*e);
  }
  if (auto e = check_network(node, record, network)) return refuse(*e);

  for (const auto& uuid : chosen) {
    bool found = false;
    for (const auto& v : vms.value()) found |= record::text(v, "uuid") == uuid;
    if (!found) return refuse({tasks::kUnknownVm, "VM " + uuid + " is not on " + node + "; `nodeha vm list --node " + node + "` shows its VMs"});
  }

  // What moves, and why the rest does not.
  std::vector<nlohmann::json> movable;
  std::map<std::string, std::string> skip;
  for (const auto& v : vms.value()) {
    std::string uuid = v["uuid"];
    if (!chosen.empty() && !chosen.count(uuid)) continue;
    if (v.value("state", "") != "running")
      skip[uuid] = "not running (" + v.value("state", "?") + "): live migration moves running VMs";
    else if (v.value("local_disk", false) && !with_disks)
      skip[uuid] = "has local disks; include_local_disk (--with-local-disks) copies them with the VM";
    else
      movable.push_back(v);
  }

  std::string id = task_record::new_id();
  tasks::Placements placed;
  nlohmann::json found = nlohmann::json::array();
  if (!movable.empty()) {
    double reserve_s = dry ? 0 : reserve_.count() / 1000.0;
    auto p = kept ? plans::place_pinned(host_, movable, node, kept->basis["plan"], reserve_s, id, found)
                  : tasks::place(host_, movable, node, target, reserve_s, id);
    if (!p) return refuse({command::kUnavailable, p.status().message()});
    placed = std::move(p.value());
  }
  // A plan's run was checked when the plan was made, and place_pinned says what changed since.
  if (auto e = kept ? std::nullopt : tasks::no_room(placed, movable.size(), node, target)) {
    if (!dry) tasks::release(host_, id);
    return refuse(*e);
  }

  nlohmann::json plan = nlohmann::json::array();
  const char* kind = maintenance ? "maintenance" : "migrate";
  auto task = task_record::make(id, kind, node, req, host_.node_id(), tasks::unix_ms());
  task["requested_by"] = evidence::requester_of(m.reply);  // the server vouches for the inbox
  for (const auto& v : vms.value()) {
    std::string uuid = v["uuid"];
    if (!chosen.empty() && !chosen.count(uuid)) continue;
    tasks::plan_vm(plan, task, v, placed, "migrate", skip.count(uuid) ? skip[uuid] : "");
  }
  if (auto e = plans::Keeper::check_plan(kept, plan, found)) {
    tasks::release(host_, id);
    return refuse(*e);
  }
  nlohmann::json result = {{"node", node}, {"plan", plan}};
  if (maintenance) result["management"] = "disabled";
  if (dry) {
    if (auto e = plans_.keep(maintenance ? "maintenance" : "migrate", node, req, record, listed, plan, result)) return refuse(*e);
    result["dry_run"] = true;
    host_.respond(m.reply, command::ok(result));
    return;
  }
  auto check = [&](nlohmann::json& r) -> std::optional<command::Error> {
    if (auto drift = plans::Keeper::check_source(kept, r)) return drift;
    if (r.value("monitor", "") == "unreachable") return command::Error{tasks::kNodeUnreachable, node + " became unreachable"};
    return maintenance ? maintainable(node, r) : std::nullopt;
  };
  // Maintenance disables the node in the write that takes the lock: nothing is placed there
  // from then on, and nothing else can have locked it in between.
  auto refused = maintenance ? tasks::lock_and_set_management(host_, node, task, "disabled", check)
                             : tasks::lock_node(host_, node, task, check);
  if (!refused && kept)
    if ((refused = plans_.use(*kept, id))) (void)tasks::unlock_node(host_, node, id);
  if (refused) {
    tasks::release(host_, id);
    return refuse(*refused);
  }
  if (auto s = (maintenance ? maintenance_engine_ : engine_)->submit(task, parallel); !s) {
    (void)tasks::unlock_node(host_, node, id);
    tasks::release(host_, id);
    std::string left = maintenance ? " (" + node + " stays disabled; `nodeha node enable " + node + "` undoes it)" : "";
    return refuse({command::kUnavailable, "the task could not be stored (" + s.message() + "); try again" + left});
  }
  host_.info(std::string(maintenance ? "maintenance: " : "") + "migrating " + std::to_string(placed.node.size()) +
             " VM(s) off " + node + " (task " + id + ")" + (kept ? ", plan " + kept->id : ""));
  result["task"] = id;
  if (kept) result["plan_id"] = kept->id;
  host_.respond(m.reply, command::ok(result));
}

// Idempotent: after a controller restart the VM may already be on the target.
StepResult ControllerSide::migrate_vm(const nlohmann::json& task, const nlohmann::json& step) {
  std::string node = task["node"], uuid = step["vm"], target = step["target"];
  std::string network = task["params"].value("network", "management");
  auto rec = host_.kv_get("vms", uuid);
  if (rec) {
    auto j = nlohmann::json::parse(rec->value, nullptr, false);
    if (j.is_object() && j.value("node", "") == target) return StepResult::ok();  // moved already
  }
  auto offer = tasks::call(host_, host_.subject("agent." + target + ".migrate.target"), {{"network", network}}, agent_timeout_);
  if (!offer.ok) return StepResult::failed(target + " cannot receive it: " + offer.code + ": " + offer.message);
  nlohmann::json body = {{"uuid", uuid},
                         {"task", task["id"]},
                         {"dest_node", target},
                         {"dest_uri", offer.result.value("libvirt_uri", "")},
                         {"migrate_uri", offer.result.value("migrate_uri", "")},
                         {"include_local_disk", task["params"].value("include_local_disk", false)},
                         {"timeout_ms", migration_timeout_.count()},
                         {"stall_ms", stall_timeout_.count()}};
  // Asked again every 5 s while it runs: the agent joins the asks (answers.h), and one of them
  // gets the answer even if a nats-server restart lost the others'.
  auto r = tasks::call_until(host_, host_.subject("agent." + node + ".vm.migrate"), body,
                             migration_timeout_ + Millis(30000), Millis(5000));
  if (r.ok || r.code == tasks::kUnknownVm) {
    // Not on the source (any more): done only if the target runs it.
    auto there = tasks::call(host_, host_.subject("agent." + target + ".vm.list"), nlohmann::json::object(), agent_timeout_);
    bool runs = there.ok && vm_record::listed_states(there.result)[uuid] == "running";
    if (!runs && !r.ok) return StepResult::failed("not on " + node + " and not running on " + target);
    if (auto moved = vm_record::move(host_, uuid, target); !moved)
      host_.warn("VM " + uuid + " runs on " + target + " but its record could not be moved: " + moved.status().message());
    if (!r.ok || !r.result.is_object()) return StepResult::ok();
    // What the migration took and moved, for the record (progress events are a second apart:
    // a short migration may have published none with a figure in it). Nothing remains.
    JobSample moved = sample_from_json(r.result);
    moved.time_remaining_ms = 0;
    nlohmann::json fields = {{"duration_ms", r.result.value("duration_ms", 0)}, {"progress", to_json(moved)}};
    // What became of the local disks' images (disk_images.h), as the agent said it.
    std::string images = record::text(r.result, "images");
    if (!images.empty()) fields["images"] = std::string(cut_text(images, kMaxDetailLength));
    return StepResult::ok(std::move(fields));
  }
  return StepResult::failed(r.code + ": " + r.message);
}

void ControllerSide::abort_vm(const nlohmann::json& task, const nlohmann::json& step) {
  std::string node = task["node"];
  auto r = tasks::call(host_, host_.subject("agent." + node + ".vm.abort"), {{"uuid", step["vm"]}}, agent_timeout_);
  if (!r.ok) host_.warn("could not abort the migration of " + step.value("vm", "") + ": " + r.message);
}

void ControllerSide::on_vm_event(const Message& m) {
  if (m.data.size() > kMaxCommandBytes) return;
  auto j = nlohmann::json::parse(m.data, nullptr, false);
  if (!j.is_object() || j.value("event", "") != "migration_progress" || !j.contains("task") || !j["task"].is_string()) return;
  auto task_id = TaskId::parse(j["task"].get<std::string>());
  auto vm = VmUuid::parse(m.subject.substr(m.subject.rfind('.') + 1));
  if (!task_id || !vm) return;  // not one of ours: tasks and VMs have no other ids
  std::string uuid = vm->str();
  // Read through the codec: only the figures, each a count or an unknown time, reach the record.
  host_.spawn([this, task = task_id->str(), uuid, progress = to_json(sample_from_json(j))] {
    engine_->progress(task, uuid, progress);  // the engine that does not run the task ignores it
    maintenance_engine_->progress(task, uuid, progress);
  });
}

}  // namespace nodeha::migrate
