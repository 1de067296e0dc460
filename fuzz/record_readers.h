// The record fuzz targets share this: a record as a KV watch hands it over (text, parsed the way
// every reader parses it: not JSON is null), and the scheduler's view, which reads node and VM
// records alike and then places a VM with what it read.
#pragma once

#include "cluster_view.h"
#include "fuzz_check.h"

#include <nlohmann/json.hpp>

namespace nodeha::fuzz {

inline nlohmann::json parse_record(const uint8_t* data, size_t size) {
  auto j = nlohmann::json::parse(as_text(data, size), nullptr, false);
  return j.is_discarded() ? nlohmann::json() : j;
}

// A node record (or VM record) read into the scheduler's view beside sane ones, then a placement.
inline void place_with(const nlohmann::json* node_record, const nlohmann::json* vm_record) {
  const nlohmann::json sane_node = {{"management", "enabled"}, {"monitor", "normal"},
                                    {"capacity", {{"vcpus", 32}, {"memory_mib", 65536}, {"disk_gib", 900}}},
                                    {"use", {{"vcpus", 2}, {"memory_mib", 4096}, {"disk_gib", 20}}}};
  const nlohmann::json sane_vm = {{"node", "node-a"}, {"vcpus", 2}, {"memory_mib", 2048}, {"disk_gib", 10},
                                  {"local_disk", true}, {"group", "web"}};
  scheduler::ClusterView view(scheduler::Resources{1, 1024, 10});
  view.on_node("node-a", &sane_node);
  view.on_node("node-b", node_record ? node_record : &sane_node);
  view.on_vm("vm-1", &sane_vm);
  view.on_vm("vm-2", vm_record ? vm_record : &sane_vm);
  scheduler::PlacementRequest request;
  request.vms.push_back({"vm-3", 2, 2048, 10, true, "web"});
  request.groups["web"] = scheduler::GroupPolicy::kSoft;
  auto result = scheduler::place(view.nodes(), request, scheduler::SchedulerSettings{});
  require(result.placements.size() == 1, "one placement per VM");
}

}  // namespace nodeha::fuzz
