#include "hostile_inputs.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <regex>

namespace nodeha::test::hostile {
namespace {

using json = nlohmann::json;
constexpr double kMaxReserveS = 7 * 24 * 3600;  // the scheduler's bound on a reservation
bool in_range(const Field& f, double v) {
  return (f.min_exclusive ? v > f.min : v >= f.min) && v <= f.max;
}

// Whether `v` is what `f` takes, by the strict rules (ids in their form, numbers in range).
bool field_ok(const Field& f, const json& v) {
  switch (f.kind) {
    case Kind::NodeId: return v.is_string() && valid_node_id(v.get<std::string>());
    case Kind::VmUuid: return v.is_string() && valid_vm_uuid(v.get<std::string>());
    case Kind::TaskId: return v.is_string() && valid_task_id(v.get<std::string>());
    case Kind::PlanId: return v.is_string() && valid_plan_id(v.get<std::string>());
    case Kind::String:
    case Kind::Xml: return v.is_string();
    case Kind::Bool:
    case Kind::DryRun: return v.is_boolean();
    case Kind::Int: return v.is_number_integer() && in_range(f, v.get<double>());
    case Kind::Number: return v.is_number() && in_range(f, v.get<double>());
    case Kind::Array: return v.is_array();
    case Kind::Object: return v.is_object();
  }
  return false;
}

const Field* field_of(const Op& op, const std::string& name) {
  for (const auto& f : op.fields)
    if (name == f.name) return &f;
  return nullptr;
}

bool conforms(const Op& op, const json& j) {
  for (auto it = j.begin(); it != j.end(); ++it) {
    const Field* f = field_of(op, it.key());
    if (!f || !field_ok(*f, it.value())) return false;
  }
  for (const auto& f : op.fields)
    if (f.required && !j.contains(f.name)) return false;
  return true;
}

std::string normalized(const std::string& s) {
  std::string out;
  for (unsigned char c : s)
    if (std::isalnum(c)) out += static_cast<char>(std::tolower(c));
  return out;
}

// The first real id any key or string of `j` contains, compared on letters and digits only (so
// " node-1\n" and "NODE_1" name node-1 too).
std::string real_id_in(const json& j, const World& w) {
  std::vector<std::string> texts;
  std::vector<const json*> todo{&j};
  while (!todo.empty()) {
    const json* v = todo.back();
    todo.pop_back();
    if (v->is_string()) texts.push_back(v->get<std::string>());
    if (v->is_object())
      for (auto it = v->begin(); it != v->end(); ++it) {
        texts.push_back(it.key());
        todo.push_back(&it.value());
      }
    if (v->is_array())
      for (const auto& child : *v) todo.push_back(&child);
  }
  for (const auto* ids : {&w.nodes, &w.vms, &w.vm_names})
    for (const auto& id : *ids)
      for (const auto& t : texts)
        if (normalized(t).find(normalized(id)) != std::string::npos) return id;
  return "";
}

json parse_body(const std::string& body) {
  return body.empty() ? json::object() : json::parse(body, nullptr, false);
}

}  // namespace

bool field_takes(const Field& f, const std::string& raw) {
  json v = json::parse(raw, nullptr, false);
  return !v.is_discarded() && field_ok(f, v);
}

bool valid_node_id(const std::string& s) {
  static const std::regex re("[A-Za-z0-9]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?");
  return std::regex_match(s, re);
}
bool valid_vm_uuid(const std::string& s) {
  static const std::regex re("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}");
  return std::regex_match(s, re);
}
bool valid_task_id(const std::string& s) {
  static const std::regex re("[0-9a-f]{16}");
  return std::regex_match(s, re);
}
bool valid_plan_id(const std::string& s) {
  static const std::regex re("[0-9a-fA-F]{32}");
  return std::regex_match(s, re);
}

const std::vector<Op>& command_ops() {
  using K = Kind;
  static const std::vector<Op> ops = {
      {"node.list", {{"after", K::String}, {"ages", K::Bool}}, false, false},
      {"node.show", {{"node", K::NodeId, true}}, false, true},
      {"node.enable", {{"node", K::NodeId, true}}, true, true},
      {"node.disable", {{"node", K::NodeId, true}}, true, true},
      {"node.drain", {{"node", K::NodeId, true}, {"dry_run", K::DryRun}, {"plan", K::PlanId}}, true, true},
      {"node.rebuild", {{"node", K::NodeId, true}, {"target", K::NodeId}, {"dry_run", K::DryRun}, {"plan", K::PlanId}}, true, true},
      {"node.migrate",
       {{"node", K::NodeId, true}, {"target", K::NodeId}, {"include_local_disk", K::Bool}, {"vms", K::Array},
        {"network", K::String}, {"max_parallel", K::Int, false, 1, 64}, {"dry_run", K::DryRun}, {"plan", K::PlanId}},
       true, true},
      {"node.maintenance",
       {{"node", K::NodeId, true}, {"include_local_disk", K::Bool}, {"network", K::String},
        {"max_parallel", K::Int, false, 1, 64}, {"dry_run", K::DryRun}, {"plan", K::PlanId}},
       true, true},
      {"sched.place",
       {{"vms", K::Array, true}, {"exclude", K::Array}, {"target", K::NodeId}, {"policy", K::String},
        {"groups", K::Object}, {"reserve", K::Number, false, 0, kMaxReserveS}, {"task", K::TaskId}},
       true, false},
      {"sched.release", {{"task", K::TaskId, true}}, true, false},
      {"sched.hold", {{"task", K::TaskId, true}, {"reserve", K::Number, true, 0, kMaxReserveS, true}, {"held", K::Array, true}}, true, false},
      {"task.list", {{"node", K::NodeId}, {"state", K::String}, {"kind", K::String}, {"after", K::String}}, false, false},
      {"task.show", {{"task", K::TaskId, true}, {"chunk", K::Int, false, 0, 1 << 24}}, false, true},
      {"task.cancel", {{"task", K::TaskId, true}}, true, true},
      {"vm.list", {{"node", K::NodeId}, {"stranded", K::Bool}, {"after", K::String}}, false, true},
  };
  return ops;
}

const std::vector<Op>& agent_ops() {
  using K = Kind;
  static const std::vector<Op> ops = {
      {"vm.list", {}, false, false},
      {"vm.define", {{"xml", K::Xml, true}}, true, true},
      {"vm.start", {{"uuid", K::VmUuid, true}}, true, true},
      {"vm.stop", {{"uuid", K::VmUuid, true}, {"timeout_ms", K::Int, false, 0}, {"force", K::Bool}}, true, true},
      {"vm.undefine", {{"uuid", K::VmUuid, true}}, true, false},  // undefining what is not there succeeds
      {"drain", {{"timeout_ms", K::Int, false, 0}, {"parallel", K::Int, false, 1, 256}}, true, false},
      {"migrate.target", {{"network", K::String, true}}, false, true},
      {"vm.migrate",
       {{"uuid", K::VmUuid, true}, {"task", K::TaskId}, {"dest_node", K::NodeId, true}, {"dest_uri", K::String, true},
        {"migrate_uri", K::String, true}, {"include_local_disk", K::Bool, true}, {"timeout_ms", K::Int, false, 0},
        {"stall_ms", K::Int, false, 0}},
       true, true},
      {"vm.abort", {{"uuid", K::VmUuid, true}}, true, true},
  };
  return ops;
}

std::string could_act(const Op& op, const std::string& body, const World& world) {
  if (!op.acts) return "";
  json j = parse_body(body);
  if (!j.is_object()) return "";
  if (field_of(op, "dry_run") && j.contains("dry_run") && j["dry_run"].is_boolean() && j["dry_run"].get<bool>())
    return "";
  if (auto id = real_id_in(j, world); !id.empty()) return "it names the real " + id;
  if (!conforms(op, j)) return "";
  std::string name = op.name;
  if (name == "vm.define")
    return j["xml"].get<std::string>().find("</domain>") != std::string::npos ? "it defines a complete domain" : "";
  // These act on whatever is there, naming nothing: a drain of the agent's node, a reservation.
  if (name == "drain" || name == "sched.place") return "it is well-formed, and acts without naming anything";
  return "";
}

std::string heartbeat_could_act(const std::string& subject_node, const std::string& body) {
  json j = json::parse(body, nullptr, false);
  if (!j.is_object()) return "";
  static const std::vector<std::string> known = {"node", "seq", "boot_id", "sent_at", "interval_ms",
                                                 "capacity", "use", "addresses", "vms", "checks"};
  for (auto it = j.begin(); it != j.end(); ++it)
    if (std::find(known.begin(), known.end(), it.key()) == known.end()) return "";
  auto has = [&](const char* k, bool (json::*is)() const noexcept) { return j.contains(k) && (j[k].*is)(); };
  if (!has("node", &json::is_string) || j["node"] != subject_node || !valid_node_id(subject_node)) return "";
  if (!has("seq", &json::is_number_unsigned) || !has("boot_id", &json::is_string) || j["boot_id"] == "") return "";
  if (!has("interval_ms", &json::is_number_integer) || j["interval_ms"].get<double>() <= 0) return "";
  if (j.contains("sent_at") && !j["sent_at"].is_number_integer()) return "";
  for (const char* k : {"capacity", "use", "addresses"})
    if (j.contains(k) && !j[k].is_object()) return "";
  for (const char* k : {"vms", "checks"})
    if (j.contains(k) && !j[k].is_array()) return "";
  return "it is a well-formed heartbeat of " + subject_node;
}

std::string check_could_act(const std::string& node, const std::string& name, const std::string& body) {
  json j = json::parse(body, nullptr, false);
  if (!j.is_object() || !j.contains("name") || j["name"] != name || !j.contains("ok") || !j["ok"].is_boolean())
    return "";
  if (j.contains("node") && j["node"] != node) return "";
  return valid_node_id(node) ? "it is a readable verdict of " + node + "'s check " + name : "";
}

std::string quote(const std::string& s) { return json(s).dump(); }

std::string render(const Body& body) {
  std::string out = "{";
  for (const auto& [k, v] : body) out += (out.size() > 1 ? "," : "") + quote(k) + ":" + v;
  return out + "}";
}

std::string preview(const std::string& body, size_t max) {
  std::string out;
  for (size_t i = 0; i < body.size() && out.size() < max; ++i) {
    unsigned char c = static_cast<unsigned char>(body[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  if (out.size() >= max || body.size() > max) out += "... (" + std::to_string(body.size()) + " bytes)";
  return out;
}

}  // namespace nodeha::test::hostile
