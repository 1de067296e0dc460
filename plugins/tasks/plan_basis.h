// What a plan was made from, and what changed since: pure functions over records, no bus, no KV,
// no clock; safe from any thread (unit-tested in tests/unit/plan_basis_test.cpp).
//
// A basis is one JSON object with these sections (each optional in a comparison):
//   command  "drain" | "migrate" | "rebuild" | "maintenance"
//   node     the source node
//   request  the request's own fields (not dry_run, not plan)
//   source   the source node's record: {management, monitor, lock (the task id or null)}
//   vms      each VM record on the node that the plan lists: [{uuid, name, generation, node,
//            state, local_disk, vcpus, memory_mib, disk_gib}], by uuid
//   targets  each planned target's record and the room the plan needs on it:
//            [{node, management, monitor, lock, room: {vms, vcpus, memory_mib, disk_gib}}]
//   plan     what it does: [{vm, action, target}] (action: stop, migrate, rebuild, skip, unplaced)
//
// changes(was, now) compares the sections present in `now` and lists each difference as
// {what, vm?, node?, was, now}, `what` one of:
//   command, node, request        the plan was made for another command, node or request
//   node_state, node_locked       the source node's management/monitor changed, or it is locked
//   vm_added, vm_gone             a VM on the node that the plan does not list / no longer there
//   vm_moved, vm_generation, vm_state, vm_local_disk, vm_resources    a listed VM's record changed
//   target_state, target_locked   a target is no longer enabled and normal, or it is locked
//   target_full                   the scheduler no longer fits the VM there (added by the caller)
//   plan                          the plan built now differs (action or target of a VM)
// The cost is O(V log V) in the VMs listed.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace nodeha::plans {

nlohmann::json source_of(const nlohmann::json& node_record);
nlohmann::json vm_of(const nlohmann::json& vm_record);
nlohmann::json target_of(const std::string& node, const nlohmann::json& node_record);
// The `vms` section from records (sorted by uuid).
nlohmann::json vms_of(const std::vector<nlohmann::json>& vm_records);
// The `plan` section of a plan as the commands reply it ([{vm, name, target, action, reason}]).
nlohmann::json steps_of(const nlohmann::json& plan);
// The distinct targets of a plan, sorted.
std::vector<std::string> targets_in(const nlohmann::json& plan);
// The room the plan needs on `target`: the sum over its VMs moved there (`vms` a vms section).
nlohmann::json room_on(const std::string& target, const nlohmann::json& plan, const nlohmann::json& vms);

nlohmann::json changes(const nlohmann::json& was, const nlohmann::json& now);

// "VM 1f… (web-1) added on node-b; node-c's management was enabled, now disabled": for a person.
std::string describe(const nlohmann::json& changes);

}  // namespace nodeha::plans
