#include "desk_rules.h"

#include "record_fields.h"
#include "vm_record.h"

#include <nodeha/ids.hpp>

#include <algorithm>
#include <optional>

namespace nodeha::vms {
namespace {

DeskVerdict refuse(const char* code, std::string message) {
  return {DeskVerdict::Kind::Refuse, code, std::move(message), ""};
}
DeskVerdict write() { return {DeskVerdict::Kind::Write, "", "", ""}; }

// The fields every reader of the bucket reads, each of its type when present: an agent's record
// reaches the scheduler, the task engine and the CLI.
std::optional<std::string> misshapen(const nlohmann::json& r) {
  using V = nlohmann::json;
  struct Rule {
    const char* field;
    bool (*ok)(const V&);
    const char* what;
  };
  static const Rule rules[] = {
      {"name", [](const V& v) { return v.is_string() && v.get_ref<const std::string&>().size() <= kMaxNameLength; }, "a string of at most 256 bytes"},
      {"state", [](const V& v) { return v.is_string() && v.get_ref<const std::string&>().size() <= 32; }, "a short string"},
      {"desired", [](const V& v) { return v == "running" || v == "stopped"; }, "\"running\" or \"stopped\""},
      {"vcpus", [](const V& v) { return v.is_number_unsigned(); }, "a non-negative integer"},
      {"memory_mib", [](const V& v) { return v.is_number_unsigned(); }, "a non-negative integer"},
      {"disk_gib", [](const V& v) { return v.is_number_unsigned(); }, "a non-negative integer"},
      {"local_disk", [](const V& v) { return v.is_boolean(); }, "a boolean"},
      {"local_disks", [](const V& v) { return v.is_array() && std::all_of(v.begin(), v.end(), [](const V& p) { return p.is_string(); }); }, "an array of strings"},
      {"group", [](const V& v) { return v.is_string() && v.get_ref<const std::string&>().size() <= kMaxNameLength; }, "a string of at most 256 bytes"},
      {"xml", [](const V& v) { return v.is_string(); }, "a string"},
      {"updated", [](const V& v) { return v.is_number_integer(); }, "an integer"},
  };
  for (const auto& rule : rules)
    if (r.contains(rule.field) && !rule.ok(r[rule.field]))
      return std::string("the record's \"") + rule.field + "\" must be " + rule.what;
  return std::nullopt;
}

}  // namespace

DeskVerdict judge(const std::string& node, const nlohmann::json& current, const desk::VmWrite& w) {
  const std::string owner = record::text(current, "node");
  const std::string vm = "VM " + w.uuid;
  if (w.remove) {
    if (current.is_null() || owner == node) return write();
    return refuse(desk::kNotYours, vm + " is recorded on " + echo_value(owner) + ", not " + node +
                                       ": only its own node's agent removes its record");
  }
  const auto& n = w.record;
  if (!n.is_object() || record::text(n, "uuid") != w.uuid)
    return refuse(command::kBadValue, "the record's \"uuid\" must be " + w.uuid);
  const std::string to = record::text(n, "node");
  if (auto id = NodeId::parse(to); !id) return refuse(command::kBadValue, "the record's \"node\": " + id.status().message());
  const int64_t generation = record::integer(n, "generation", 1);
  if (generation == 0) return refuse(command::kBadValue, "the record's \"generation\" must be an integer from 1");
  if (auto why = misshapen(n)) return refuse(command::kBadValue, *why);

  if (current.is_null()) {
    if (to != node || generation != 1)
      return refuse(desk::kNotYours, "a new record of " + vm + " must name " + node + " with generation 1");
    return write();
  }
  const int64_t was = record::integer(current, "generation", 0);
  if (owner == node) {
    int64_t expected = to == node ? was : was + 1;
    if (generation != expected)
      return refuse(command::kBadValue, "generation " + std::to_string(generation) + " of " + vm + ": it is " +
                                            std::to_string(was) + " and grows by one only when the VM changes node");
    return write();
  }
  if (to != node)
    return refuse(desk::kNotYours, vm + " is recorded on " + (owner.empty() ? std::string("no node") : echo_value(owner)) +
                                       ": " + node + " may only claim it for itself");
  if (generation != was + 1)
    return refuse(command::kBadValue, "a claim of " + vm + " takes generation " + std::to_string(was + 1) + ", not " +
                                          std::to_string(generation));
  if (owner.empty()) return write();  // a record naming no node goes to the node that has the domain
  return {DeskVerdict::Kind::AskOwner, "", "", owner};
}

nlohmann::json stranded_after(const std::string& node, const nlohmann::json& current, const desk::VmWrite& w) {
  auto mark = vm_record::stranded_of(current);
  if (w.remove || !mark || record::text(w.record, "node") != mark->node) return nullptr;
  const std::string state = record::text(w.record, "state");
  if (node == mark->node && !state.empty() && state != "missing") return nullptr;
  return current.at(vm_record::kStranded);
}

}  // namespace nodeha::vms
