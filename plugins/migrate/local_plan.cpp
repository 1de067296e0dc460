#include "local_plan.h"

#include <algorithm>
#include <set>

namespace nodeha::migrate {
namespace {

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : ", ") + i;
  return out;
}

PlanEntry entry_for(const LocalDomain& d, const LocalRequest& request) {
  PlanEntry e{d.uuid, d.name, request.dest, "migrate", ""};
  if (d.migrating) e.reason = "already migrating";
  else if (d.state != "running" && d.state != "blocked") e.reason = "not running (" + d.state + ")";
  else if (!d.local_disks.empty() && !request.include_local_disk)
    e.reason = "has local disks (" + joined(d.local_disks) + ") and include_local_disk is not set";
  if (!e.reason.empty()) e.action = "skip";
  return e;
}

}  // namespace

std::optional<PlanError> build_local_plan(const std::vector<LocalDomain>& domains, const LocalRequest& request,
                                          std::vector<PlanEntry>* plan) {
  plan->clear();
  if (request.all == !request.vms.empty())
    return PlanError{"bad_value", request.all ? "give either \"all\": true or \"vms\", not both"
                                              : "give \"all\": true or a non-empty \"vms\""};
  std::vector<const LocalDomain*> chosen;
  if (request.all) {
    for (const auto& d : domains) chosen.push_back(&d);
    std::sort(chosen.begin(), chosen.end(), [](const LocalDomain* a, const LocalDomain* b) {
      return a->name != b->name ? a->name < b->name : a->uuid < b->uuid;
    });
  } else {
    std::set<std::string> seen;
    for (const auto& wanted : request.vms) {
      auto it = std::find_if(domains.begin(), domains.end(),
                             [&](const LocalDomain& d) { return d.uuid == wanted || d.name == wanted; });
      if (it == domains.end()) return PlanError{"unknown_vm", "no VM \"" + wanted + "\" on this node"};
      if (seen.insert(it->uuid).second) chosen.push_back(&*it);
    }
  }
  for (const auto* d : chosen) plan->push_back(entry_for(*d, request));
  return std::nullopt;
}

}  // namespace nodeha::migrate
