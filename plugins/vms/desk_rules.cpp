#include "desk_rules.h"

#include "record_fields.h"

#include <nodeha/ids.hpp>

namespace nodeha::vms {
namespace {

DeskVerdict refuse(const char* code, std::string message) {
  return {DeskVerdict::Kind::Refuse, code, std::move(message), ""};
}
DeskVerdict write() { return {DeskVerdict::Kind::Write, "", "", ""}; }

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

}  // namespace nodeha::vms
