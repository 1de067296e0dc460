// The plan of `local.migrate` (docs/node-operations.md, "The node-local path"): which of this
// node's domains move to `dest`, and why the others stay. Pure.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace nodeha::migrate {

// A domain of this node as libvirt shows it.
struct LocalDomain {
  std::string uuid;
  std::string name;
  std::string state;  // libvirt::state_name
  std::vector<std::string> local_disks;
  bool migrating = false;  // a migration of it runs now (from this plugin)
};

struct LocalRequest {
  bool all = false;
  std::vector<std::string> vms;  // uuids or names
  bool include_local_disk = false;
  std::string dest;
};

struct PlanEntry {
  std::string vm;  // uuid
  std::string name;
  std::string dest;
  std::string action;  // "migrate" | "skip"
  std::string reason;  // why skipped
};

struct PlanError {
  std::string code;  // bad_value | unknown_vm
  std::string message;
};

// The plan, in the order of `vms` (or by name for `all`); an error when the request names no
// domain or an unknown one. Only running domains migrate; the rest are skipped with a reason.
std::optional<PlanError> build_local_plan(const std::vector<LocalDomain>& domains, const LocalRequest& request,
                                          std::vector<PlanEntry>* plan);

}  // namespace nodeha::migrate
