#include "plan_basis.h"

#include "record_fields.h"

#include <algorithm>
#include <map>
#include <set>

namespace nodeha::plans {
namespace {

using nlohmann::json;

json lock_task(const json& record) {
  const json& lock = record::field(record, "lock");
  if (!lock.is_object()) return nullptr;
  std::string task = record::text(lock, "task");
  return task.empty() ? json("?") : json(task);
}

json change(const std::string& what, const std::string& vm, const std::string& node, const json& was, const json& now) {
  json c = {{"what", what}, {"was", was}, {"now", now}};
  if (!vm.empty()) c["vm"] = vm;
  if (!node.empty()) c["node"] = node;
  return c;
}

std::map<std::string, json> by_key(const json& list, const char* key) {
  std::map<std::string, json> out;
  if (list.is_array())
    for (const auto& e : list) out[record::text(e, key)] = e;
  return out;
}

std::string state_text(const json& s) {
  return record::text(s, "management", "?") + "/" + record::text(s, "monitor", "?");
}

void diff_source(const json& was, const json& now, const std::string& node, json& out) {
  if (state_text(was) != state_text(now)) out.push_back(change("node_state", "", node, state_text(was), state_text(now)));
  if (record::field(was, "lock") != record::field(now, "lock"))
    out.push_back(change("node_locked", "", node, record::field(was, "lock"), record::field(now, "lock")));
}

void diff_vms(const json& was, const json& now, const std::string& node, json& out) {
  auto before = by_key(was, "uuid"), after = by_key(now, "uuid");
  for (const auto& [uuid, v] : after)
    if (!before.count(uuid))
      out.push_back(change("vm_added", uuid, node, nullptr, record::text(v, "name") + " " + record::text(v, "state")));
  for (const auto& [uuid, v] : before) {
    auto it = after.find(uuid);
    if (it == after.end()) {
      out.push_back(change("vm_gone", uuid, node, "on " + record::text(v, "node"), "not on " + node));
      continue;
    }
    const json& n = it->second;
    static const std::pair<const char*, const char*> kFields[] = {
        {"vm_moved", "node"}, {"vm_generation", "generation"}, {"vm_state", "state"}, {"vm_local_disk", "local_disk"}};
    for (const auto& [what, key] : kFields)
      if (record::field(v, key) != record::field(n, key))
        out.push_back(change(what, uuid, node, record::field(v, key), record::field(n, key)));
    json r_was, r_now;
    for (const char* key : {"vcpus", "memory_mib", "disk_gib"}) {
      r_was[key] = record::field(v, key);
      r_now[key] = record::field(n, key);
    }
    if (r_was != r_now) out.push_back(change("vm_resources", uuid, node, r_was, r_now));
  }
}

void diff_targets(const json& was, const json& now, json& out) {
  auto after = by_key(now, "node");
  for (const auto& [node, t] : by_key(was, "node")) {
    auto it = after.find(node);
    const json& n = it == after.end() ? json(nullptr) : it->second;
    std::string s_now = n.is_object() ? state_text(n) : "no record";
    if (state_text(t) != s_now) out.push_back(change("target_state", "", node, state_text(t), s_now));
    if (n.is_object() && record::field(t, "lock") != record::field(n, "lock"))
      out.push_back(change("target_locked", "", node, record::field(t, "lock"), record::field(n, "lock")));
  }
}

void diff_plan(const json& was, const json& now, json& out) {
  auto before = by_key(was, "vm"), after = by_key(now, "vm");
  for (const auto& [uuid, step] : after) {
    auto it = before.find(uuid);
    json w = it == before.end() ? json(nullptr) : it->second;
    if (w != step) out.push_back(change("plan", uuid, "", w, step));
  }
  for (const auto& [uuid, step] : before)
    if (!after.count(uuid)) out.push_back(change("plan", uuid, "", step, nullptr));
}

std::string text(const json& v) { return v.is_string() ? v.get<std::string>() : v.is_null() ? "none" : v.dump(); }

// "rebuild to node-b", "skip", "not listed".
std::string step_text(const json& step) {
  if (!step.is_object()) return "not listed";
  const json& target = record::field(step, "target");
  return record::text(step, "action") + (target.is_string() ? " to " + target.get<std::string>() : "");
}

}  // namespace

json source_of(const json& r) {
  return {{"management", record::text(r, "management", "enabled")}, {"monitor", record::text(r, "monitor")},
          {"lock", lock_task(r)}};
}

json vm_of(const json& r) {
  json v = {{"uuid", record::text(r, "uuid")}, {"name", record::text(r, "name")}, {"node", record::text(r, "node")},
            {"state", record::text(r, "state")}, {"local_disk", record::flag(r, "local_disk")}};
  for (const char* key : {"generation", "vcpus", "memory_mib", "disk_gib"}) v[key] = record::integer(r, key);
  return v;
}

json target_of(const std::string& node, const json& r) {
  json t = source_of(r);
  t["node"] = node;
  return t;
}

json vms_of(const std::vector<json>& records) {
  json out = json::array();
  for (const auto& r : records) out.push_back(vm_of(r));
  std::sort(out.begin(), out.end(), [](const json& a, const json& b) { return a["uuid"] < b["uuid"]; });
  return out;
}

json steps_of(const json& plan) {
  json out = json::array();
  if (plan.is_array())
    for (const auto& e : plan)
      out.push_back({{"vm", record::text(e, "vm")}, {"action", record::text(e, "action")}, {"target", record::field(e, "target")}});
  return out;
}

std::vector<std::string> targets_in(const json& plan) {
  std::set<std::string> out;
  if (plan.is_array())
    for (const auto& e : plan)
      if (record::field(e, "target").is_string()) out.insert(record::text(e, "target"));
  return {out.begin(), out.end()};
}

json room_on(const std::string& target, const json& plan, const json& vms) {
  auto records = by_key(vms, "uuid");
  json room = {{"vms", 0}, {"vcpus", 0}, {"memory_mib", 0}, {"disk_gib", 0}};
  for (const auto& e : plan) {
    if (record::text(e, "target") != target) continue;
    const json& v = records[record::text(e, "vm")];
    room["vms"] = room["vms"].get<int64_t>() + 1;
    for (const char* key : {"vcpus", "memory_mib", "disk_gib"})
      room[key] = room[key].get<int64_t>() + record::integer(v, key);
  }
  return room;
}

json changes(const json& was, const json& now) {
  json out = json::array();
  for (const char* key : {"command", "node", "request"})
    if (now.contains(key) && record::field(was, key) != now[key])
      out.push_back(change(key, "", "", record::field(was, key), now[key]));
  if (!out.empty()) return out;  // another command's plan: its records say nothing about this one
  std::string node = record::text(was, "node");
  if (now.contains("source")) diff_source(record::field(was, "source"), now["source"], node, out);
  if (now.contains("vms")) diff_vms(record::field(was, "vms"), now["vms"], node, out);
  if (now.contains("targets")) diff_targets(record::field(was, "targets"), now["targets"], out);
  if (now.contains("plan") && out.empty()) diff_plan(record::field(was, "plan"), now["plan"], out);
  return out;
}

std::string describe(const json& changes) {
  std::string out;
  for (const auto& c : changes) {
    std::string what = record::text(c, "what"), vm = record::text(c, "vm"), node = record::text(c, "node");
    std::string line;
    if (what == "vm_added") line = "VM " + vm + " (" + text(c["now"]) + ") is now on " + node + " and not in the plan";
    else if (what == "vm_gone") line = "VM " + vm + " is no longer on " + node;
    else if (what == "target_full") line = "target " + node + " no longer fits VM " + vm + ": " + text(c["now"]);
    else if (what == "target_state") line = "target " + node + " was " + text(c["was"]) + ", now " + text(c["now"]);
    else if (what == "plan") line = "VM " + vm + " would now be " + step_text(c["now"]) + ", planned: " + step_text(c["was"]);
    else if (!vm.empty()) line = "VM " + vm + "'s " + (what == "vm_moved" ? "node" : what.substr(3)) + " was " + text(c["was"]) +
                                 ", now " + text(c["now"]);
    else if (what == "target_locked") line = "target " + node + " is locked by task " + text(c["now"]);
    else if (what == "node_state") line = node + " was " + text(c["was"]) + ", now " + text(c["now"]);
    else if (what == "node_locked") line = node + "'s lock was " + text(c["was"]) + ", now " + text(c["now"]);
    else line = "the plan was made for " + what + " " + text(c["was"]) + ", not " + text(c["now"]);
    out += (out.empty() ? "" : "; ") + line;
  }
  return out;
}

}  // namespace nodeha::plans
