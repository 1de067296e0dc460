#include "plans.h"

#include "record_fields.h"

#include <cinttypes>
#include <cstdio>
#include <map>
#include <random>

namespace nodeha::plans {
namespace {

using nlohmann::json;

constexpr Millis kMinTtl{1000}, kMaxTtl{24 * 3600 * 1000};
constexpr Millis kSweepEvery{60000};

std::string new_plan_id() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  char id[33];
  std::snprintf(id, sizeof id, "%016" PRIx64 "%016" PRIx64, static_cast<uint64_t>(rng()), static_cast<uint64_t>(rng()));
  return id;
}

command::Error drifted(const std::string& id, const json& changes) {
  return {kPlanDrifted,
          "plan " + id + " no longer holds, nothing was done: " + describe(changes) +
              ". Make a new plan with --dry-run (\"dry_run\": true) and check it",
          changes};
}

}  // namespace

nodeha_config_key ttl_key() {
  return key("plan_ttl", NODEHA_CONFIG_DURATION, "\"10m\"", "duration",
             "how long a dry run's plan can be run with `plan` (1s to 24h)");
}

json request_of(const json& req) {
  json out = req;
  out.erase("dry_run");
  out.erase("plan");
  return out;
}

Keeper::Keeper(const Host& host) : host_(host), ttl_(host.duration("plan_ttl")) {
  if (ttl_ < kMinTtl || ttl_ > kMaxTtl) throw ConfigError("plan_ttl must be from 1s to 24h");
}

Status Keeper::start() {
  auto t = host_.timer(std::min(ttl_, kSweepEvery), std::min(ttl_, kSweepEvery), [this] {
    host_.spawn([this] { sweep(); });
  });
  if (!t) return t.status();
  timer_ = t.value();
  return Status::ok();
}

void Keeper::stop() {
  if (timer_) (void)host_.cancel_timer(timer_);
  timer_ = 0;
}

void Keeper::sweep() const {
  auto all = host_.kv_list(kBucket);
  if (!all) return;  // the next sweep tries again; a use checks the time itself
  int64_t now = tasks::unix_ms();
  for (const auto& e : all.value()) {
    auto j = json::parse(e.value, nullptr, false);
    if (record::integer(j, "expires_at") < now) (void)host_.kv_delete(kBucket, e.key);
  }
}

std::optional<command::Error> Keeper::open(const std::string& command, json& req, std::optional<Kept>* out) const {
  out->reset();
  if (!req.contains("plan")) return std::nullopt;
  if (req.value("dry_run", false))
    return command::Error{command::kBadValue, "a request runs a plan (\"plan\") or makes one (\"dry_run\"), not both"};
  std::optional<PlanId> id;
  if (auto e = command::parse_id("plan", req["plan"], &id)) return e;
  auto cur = host_.kv_get(kBucket, id->str());
  if (!cur && cur.status().code() == NODEHA_ERR_NOT_FOUND)
    return command::Error{kUnknownPlan, "no plan " + id->str() + " is kept (never made, or expired and removed); make one "
                                                                 "with a dry run"};
  if (!cur) return command::Error{command::kUnavailable, "cannot read plan " + id->str() + ": " + cur.status().message()};
  json stored = json::parse(cur->value, nullptr, false);
  if (!stored.is_object() || !record::field(stored, "basis").is_object())
    return command::Error{command::kInternal, "the record of plan " + id->str() + " is not a plan"};
  if (record::integer(stored, "expires_at") < tasks::unix_ms()) {
    (void)host_.kv_delete(kBucket, id->str());
    return command::Error{kPlanExpired, "plan " + id->str() + " expired (plan_ttl); make a new one with a dry run"};
  }
  if (std::string used = record::text(stored, "used_by"); !used.empty())
    return command::Error{kPlanUsed, "plan " + id->str() + " ran already, as task " + used + "; a plan runs once"};
  Kept kept{id->str(), cur->revision, stored["basis"]};
  const json& planned = record::field(kept.basis, "request");
  json asked = request_of(req);
  json found = json::array();
  if (record::text(kept.basis, "command") != command)
    found.push_back({{"what", "command"}, {"was", kept.basis["command"]}, {"now", command}});
  for (const auto& [field, value] : asked.items())
    if (!planned.contains(field) || planned[field] != value)
      found.push_back({{"what", "request"}, {"was", planned.contains(field) ? json{{field, planned[field]}} : json(nullptr)},
                       {"now", json{{field, value}}}});
  if (!found.empty()) return drifted(kept.id, found);
  for (const auto& [field, value] : planned.items())
    if (!req.contains(field)) req[field] = value;
  *out = std::move(kept);
  return std::nullopt;
}

std::optional<command::Error> Keeper::check_records(const std::optional<Kept>& kept, const json& node_record,
                                                    const std::vector<json>& vms) const {
  if (!kept) return std::nullopt;
  json listed = vms_of(vms);
  auto targets = targets_now(record::field(kept->basis, "plan"), listed);
  if (!targets) return command::Error{command::kUnavailable, targets.status().message()};
  json found = changes(kept->basis, {{"source", source_of(node_record)}, {"vms", listed}, {"targets", targets.value()}});
  if (found.empty()) return std::nullopt;
  return drifted(kept->id, found);
}

std::optional<command::Error> Keeper::check_plan(const std::optional<Kept>& kept, const json& plan, const json& found) {
  if (!kept) return std::nullopt;
  json all = found;
  if (all.empty()) all = changes(kept->basis, {{"plan", steps_of(plan)}});
  if (all.empty()) return std::nullopt;
  return drifted(kept->id, all);
}

std::optional<command::Error> Keeper::check_source(const std::optional<Kept>& kept, const json& node_record) {
  if (!kept) return std::nullopt;
  json found = changes(kept->basis, {{"source", source_of(node_record)}});
  if (found.empty()) return std::nullopt;
  return drifted(kept->id, found);
}

std::optional<command::Error> Keeper::keep(const std::string& command, const std::string& node, const json& req,
                                           const json& node_record, const std::vector<json>& vms, const json& plan,
                                           json& result) const {
  json listed = vms_of(vms), steps = steps_of(plan);
  auto targets = targets_now(steps, listed);
  if (!targets) return command::Error{command::kUnavailable, targets.status().message()};
  json basis = {{"command", command}, {"node", node}, {"request", request_of(req)}, {"source", source_of(node_record)},
                {"vms", listed}, {"targets", targets.value()}, {"plan", steps}};
  std::string id = new_plan_id();
  int64_t now = tasks::unix_ms(), expires = now + ttl_.count();
  json stored = {{"id", id}, {"basis", basis}, {"created", now}, {"expires_at", expires},
                 {"made_by", host_.node_id()}, {"used_by", ""}};
  if (auto w = host_.kv_create(kBucket, id, stored.dump()); !w)
    return command::Error{command::kUnavailable, "the plan could not be kept (" + w.status().message() + "); try again"};
  result["plan_id"] = id;
  result["expires_at"] = expires;
  return std::nullopt;
}

std::optional<command::Error> Keeper::use(const Kept& kept, const std::string& task) const {
  auto cur = host_.kv_get(kBucket, kept.id);
  json stored = cur ? json::parse(cur->value, nullptr, false) : json();
  if (!cur || cur->revision != kept.revision || !stored.is_object())
    return command::Error{kPlanUsed, "plan " + kept.id + " was taken by another run meanwhile; a plan runs once"};
  stored["used_by"] = task;
  auto w = host_.kv_update(kBucket, kept.id, stored.dump(), kept.revision);
  if (w) return std::nullopt;
  if (w.status().code() == NODEHA_ERR_CONFLICT)
    return command::Error{kPlanUsed, "plan " + kept.id + " was taken by another run meanwhile; a plan runs once"};
  return command::Error{command::kUnavailable, "cannot mark plan " + kept.id + " used: " + w.status().message()};
}

Result<json> Keeper::targets_now(const json& plan, const json& vms) const {
  json out = json::array();
  for (const auto& target : targets_in(plan)) {
    auto id = NodeId::parse(target);
    json record;
    std::optional<command::Error> e = id ? tasks::read_node(host_, id.value(), &record)
                                         : command::Error{command::kUnknownNode, "bad target"};
    if (e && e->code == command::kUnavailable) return Status(NODEHA_ERR_UNAVAILABLE, e->message);
    json t = e ? json{{"node", target}, {"management", "no record"}, {"monitor", "?"}, {"lock", nullptr}}
               : target_of(target, record);
    t["room"] = room_on(target, plan, vms);
    out.push_back(std::move(t));
  }
  return out;
}

Result<tasks::Placements> place_pinned(const Host& host, const std::vector<json>& movable, const std::string& node,
                                       const json& planned, double reserve_s, const std::string& task, json& found) {
  std::map<std::string, std::string> target_of_vm;
  for (const auto& e : planned)
    if (record::field(e, "target").is_string()) target_of_vm[record::text(e, "vm")] = record::text(e, "target");
  std::map<std::string, std::vector<json>> by_target;
  for (const auto& v : movable)
    if (auto it = target_of_vm.find(record::text(v, "uuid")); it != target_of_vm.end()) by_target[it->second].push_back(v);
  tasks::Placements out;
  for (const auto& [target, vms] : by_target) {
    auto p = tasks::place(host, vms, node, target, reserve_s, task);
    if (!p) {
      if (reserve_s > 0) tasks::release(host, task);  // what the targets before this one hold
      return p.status();
    }
    tasks::Placements placed = std::move(p.value());
    for (const auto& [uuid, where] : placed.node) out.node[uuid] = where;
    for (const auto& [uuid, why] : placed.refused) {
      std::string code = placed.refused_code[uuid];
      found.push_back({{"what", code == "target_insufficient" ? "target_full" : "target_state"}, {"vm", uuid},
                       {"node", target}, {"was", "fits"}, {"now", why}});
      out.refused[uuid] = why;
      out.refused_code[uuid] = code;
    }
  }
  return out;
}

}  // namespace nodeha::plans
