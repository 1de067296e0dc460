// scheduler (controller): answers <prefix>.cmd.sched.place with a target node for every VM, or
// the reason it has none, from the cluster as the nodes and vms buckets describe it. Placements
// made with `reserve` hold their room until they expire or `sched.release` names their task;
// `sched.hold` holds again the room of placements made before (a task resumed by another
// controller, or after a restart: reservations live in this process only).
#include "cluster_view.h"
#include "command.h"
#include "placement.h"

#include <nodeha/plugin.hpp>

namespace nodeha::scheduler {
namespace {

// A reservation outlives no task: a week, and a huge `reserve` cannot overflow the deadline.
constexpr double kMaxReserveS = 7 * 24 * 3600;

const nodeha_config_key kKeys[] = {
    key("cpu_ratio", NODEHA_CONFIG_FLOAT, "4.0", nullptr, "vCPU overcommit: schedulable vCPUs per physical CPU"),
    key("memory_ratio", NODEHA_CONFIG_FLOAT, "1.0", nullptr, "memory overcommit"),
    key("disk_ratio", NODEHA_CONFIG_FLOAT, "1.0", nullptr, "local disk overcommit"),
    key("reserve_vcpus", NODEHA_CONFIG_INTEGER, "1", "vCPUs", "kept on every node for the host itself"),
    key("reserve_memory_mib", NODEHA_CONFIG_INTEGER, "1024", "MiB", "kept on every node for the host itself"),
    key("reserve_disk_gib", NODEHA_CONFIG_INTEGER, "0", "GiB", "kept on every node for the host itself"),
    key("policy", NODEHA_CONFIG_STRING, "\"spread\"", nullptr, "spread (most free after placement) or pack"),
};

// The ids of a place or hold request (task, target, exclude, vms[].uuid, held[].node): each by its
// one parse function, so a bad id is bad_value before it is held or echoed back.
std::optional<command::Error> check_ids(const nlohmann::json& req, const std::string& where = "") {
  std::optional<TaskId> task;
  std::optional<NodeId> node;
  std::vector<NodeId> nodes;
  if (req.contains("task"))
    if (auto e = command::parse_id(where + "task", req["task"], &task)) return e;
  if (req.contains("target"))
    if (auto e = command::parse_id(where + "target", req["target"], &node)) return e;
  if (req.contains("node"))
    if (auto e = command::parse_id(where + "node", req["node"], &node)) return e;
  if (req.contains("exclude"))
    if (auto e = command::parse_ids(where + "exclude", req["exclude"], &nodes)) return e;
  const auto& vms = req.contains("vms") && req["vms"].is_array() ? req["vms"] : nlohmann::json::array();
  for (size_t i = 0; i < vms.size(); ++i) {
    std::optional<VmUuid> uuid;
    if (vms[i].is_object() && vms[i].contains("uuid"))
      if (auto e = command::parse_id(where + "vms[" + std::to_string(i) + "].uuid", vms[i]["uuid"], &uuid)) return e;
  }
  return std::nullopt;
}

class Scheduler : public Plugin {
 public:
  explicit Scheduler(Host h)
      : Plugin(std::move(h)),
        view_(Resources{host().config().at("reserve_vcpus").get<int64_t>(),
                        host().config().at("reserve_memory_mib").get<int64_t>(),
                        host().config().at("reserve_disk_gib").get<int64_t>()}) {
    const auto& c = host().config();
    settings_.overcommit = {c.at("cpu_ratio").get<double>(), c.at("memory_ratio").get<double>(),
                            c.at("disk_ratio").get<double>()};
    std::string policy = c.at("policy");
    if (policy != "spread" && policy != "pack") throw ConfigError("policy must be \"spread\" or \"pack\", not \"" + policy + "\"");
    settings_.default_policy = policy == "pack" ? Policy::kPack : Policy::kSpread;
    if (auto s = check_settings(settings_); !s) throw ConfigError(s.message());
  }

  Status start() override {
    duration_ = host().histogram("nodeha_scheduler_duration_seconds", "time to answer one placement request",
                                 {0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1});
    for (const char* r : {"vcpus", "memory_mib", "disk_gib"})
      reserved_[r] = host().gauge("nodeha_scheduler_reserved", "room held by placements in flight", {{"resource", r}});
    // The view is read whole before the first request is taken. A watch delivers the current
    // values when its stream lets it: after a NATS server's death that can be seconds later (the
    // stream elects its leader), and a scheduler answering meanwhile would see no nodes, or nodes
    // without their VMs (room that is not there). A bucket that cannot be listed fails the start;
    // the host tries it again every second. The watches deliver the same values again: harmless.
    for (const char* bucket : {"nodes", "vms"}) {
      auto all = host().kv_list(bucket);
      if (!all)
        return Status(all.status().code(), std::string("cannot read the ") + bucket + " bucket for the cluster view: " +
                                               all.status().message());
      for (const auto& e : all.value()) on_entry(bucket, e);
    }
    for (const char* bucket : {"nodes", "vms"}) {
      auto w = host().kv_watch(bucket, ">", [this, bucket](const KvEntry& e) { on_entry(bucket, e); });
      if (!w) return w.status();
    }
    for (auto [op, fn] : {std::pair<const char*, void (Scheduler::*)(const Message&)>{"cmd.sched.place", &Scheduler::place_cmd},
                          {"cmd.sched.release", &Scheduler::release_cmd},
                          {"cmd.sched.hold", &Scheduler::hold_cmd}}) {
      auto sub = host().subscribe(host().subject(op), [this, fn](const Message& m) { (this->*fn)(m); }, "nodeha-controller");
      if (!sub) return sub.status();
    }
    auto t = host().timer(Millis(1000), Millis(1000), [this] {
      view_.expire(Clock::now());
      publish_reserved();
    });
    return t ? Status::ok() : t.status();
  }

 private:
  void on_entry(std::string_view bucket, const KvEntry& e) {
    auto j = nlohmann::json::parse(e.value, nullptr, false);
    const nlohmann::json* record = e.deleted || j.is_discarded() ? nullptr : &j;
    if (bucket == "nodes") view_.on_node(e.key, record);
    else view_.on_vm(e.key, record);
  }

  void count(const char* result) {
    host().counter("nodeha_scheduler_requests_total", "placement requests by result", {{"result", result}}).inc();
  }

  void place_cmd(const Message& m) {
    auto started = Clock::now();
    nlohmann::json req;
    using command::Type;
    if (auto e = command::decode(m.data,
                                 {{"vms", Type::Array, true},
                                  {"exclude", Type::Array},
                                  {"target", Type::String},
                                  {"policy", Type::String},
                                  {"groups", Type::Object},
                                  {"reserve", Type::Number},
                                  {"task", Type::String}},
                                 &req, kMaxBulkCommandBytes)) {
      count("refused");
      host().respond(m.reply, command::fail(*e));
      return;
    }
    if (auto e = check_ids(req)) {
      count("refused");
      host().respond(m.reply, command::fail(*e));
      return;
    }
    double reserve_s = req.value("reserve", 0.0);
    std::string task = req.value("task", "");
    req.erase("reserve");
    req.erase("task");
    if (!(reserve_s >= 0 && reserve_s <= kMaxReserveS)) {
      count("refused");
      host().respond(m.reply, command::fail(command::kBadValue, "field \"reserve\" must be a number of seconds from 0 to 604800 (a week)"));
      return;
    }
    auto request = decode_request(req);
    if (!request) {
      count("refused");
      host().respond(m.reply, command::fail(command::kBadValue, request.status().message()));
      return;
    }
    PlacementResult result = place(view_.nodes(), request.value(), settings_);
    size_t placed = 0;
    auto expires = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(reserve_s * 1000));
    for (size_t i = 0; i < result.placements.size(); ++i) {
      const Placement& p = result.placements[i];
      if (!p.placed()) continue;
      ++placed;
      if (reserve_s > 0) view_.reserve(task, p.node, request->vms[i], expires);
    }
    publish_reserved();
    count(placed == result.placements.size() ? "placed" : placed == 0 ? "unplaced" : "partial");
    // command::ok(encode_result + reserved), written as text: keys in dump()'s order.
    std::string reply = R"({"ok":true,"result":{"placements":)";
    append_placements(reply, result);
    reply += reserve_s > 0 ? R"(,"reserved":true}})" : R"(,"reserved":false}})";
    host().respond(m.reply, reply);
    duration_.observe(std::chrono::duration<double>(Clock::now() - started).count());
  }

  void release_cmd(const Message& m) {
    nlohmann::json req;
    if (auto e = command::decode(m.data, {{"task", command::Type::String, true}}, &req)) {
      host().respond(m.reply, command::fail(*e));
      return;
    }
    if (auto e = check_ids(req)) {
      host().respond(m.reply, command::fail(*e));
      return;
    }
    size_t released = view_.release(req["task"]);
    publish_reserved();
    host().respond(m.reply, command::ok({{"task", req["task"]}, {"released", released}}));
  }

  // {task, reserve, held: [{node, vms: [vm as in place]}]}: replaces what `task` holds with these
  // placements, unchecked (they were granted when the task was made).
  void hold_cmd(const Message& m) {
    nlohmann::json req;
    using command::Type;
    if (auto e = command::decode(m.data, {{"task", Type::String, true}, {"reserve", Type::Number, true}, {"held", Type::Array, true}},
                                 &req, kMaxBulkCommandBytes)) {
      host().respond(m.reply, command::fail(*e));
      return;
    }
    if (auto e = check_ids(req)) {
      host().respond(m.reply, command::fail(*e));
      return;
    }
    double reserve_s = req["reserve"].get<double>();
    if (!(reserve_s > 0 && reserve_s <= kMaxReserveS)) {
      host().respond(m.reply, command::fail(command::kBadValue, "field \"reserve\" must be a number of seconds above 0, at most 604800 (a week)"));
      return;
    }
    std::vector<std::pair<std::string, VmRequest>> held;
    for (size_t i = 0; i < req["held"].size(); ++i) {
      const auto& group = req["held"][i];
      std::string where = "held[" + std::to_string(i) + "]";
      if (!group.is_object() || !group.contains("node") || !group["node"].is_string() || !group.contains("vms")) {
        host().respond(m.reply, command::fail(command::kBadValue, where + " must be an object with \"node\" and \"vms\""));
        return;
      }
      if (auto e = check_ids(group, where + ".")) {
        host().respond(m.reply, command::fail(*e));
        return;
      }
      auto vms = decode_request(nlohmann::json{{"vms", group["vms"]}});
      if (!vms) {
        host().respond(m.reply, command::fail(command::kBadValue, where + ": " + vms.status().message()));
        return;
      }
      for (auto& vm : vms.value().vms) held.emplace_back(group["node"].get<std::string>(), std::move(vm));
    }
    std::string task = req["task"];
    view_.release(task);
    auto expires = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(reserve_s * 1000));
    for (const auto& [node, vm] : held) view_.reserve(task, node, vm, expires);
    publish_reserved();
    host().respond(m.reply, command::ok({{"task", task}, {"held", held.size()}}));
  }

  void publish_reserved() {
    Resources r = view_.reserved_total();
    reserved_["vcpus"].set(static_cast<double>(r.vcpus));
    reserved_["memory_mib"].set(static_cast<double>(r.memory_mib));
    reserved_["disk_gib"].set(static_cast<double>(r.disk_gib));
  }

  SchedulerSettings settings_;
  ClusterView view_;
  Metric duration_;
  std::map<std::string, Metric> reserved_;
};

}  // namespace
}  // namespace nodeha::scheduler

NODEHA_PLUGIN(nodeha::scheduler::Scheduler, "scheduler", "0.1.0", "places VMs on nodes (controller)",
              nodeha::kControllerRole, nodeha::scheduler::kKeys)
