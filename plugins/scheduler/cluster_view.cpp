#include "cluster_view.h"

#include "record_fields.h"

#include <algorithm>

namespace nodeha::scheduler {
namespace {

// A figure outside [0, kMaxQuantity] counts as 0, so that sums over the cluster never overflow.
int64_t number(const nlohmann::json& j, const char* key) { return record::integer(j, key, 0, kMaxQuantity); }

Resources resources_of(const nlohmann::json& j) {
  return Resources{number(j, "vcpus"), number(j, "memory_mib"), number(j, "disk_gib")};
}

void add(Resources& a, const Resources& b) {
  a.vcpus += b.vcpus;
  a.memory_mib += b.memory_mib;
  a.disk_gib += b.disk_gib;
}

}  // namespace

void ClusterView::on_node(const std::string& id, const nlohmann::json* record) {
  if (!record || !record->is_object()) {
    nodes_.erase(id);
    return;
  }
  Node& n = nodes_[id];
  n.management = record::text(*record, "management", "enabled");
  n.monitor = record::text(*record, "monitor", "normal");
  n.capacity = resources_of(record::field(*record, "capacity"));
  n.reported_use = resources_of(record::field(*record, "use"));
}

void ClusterView::on_vm(const std::string& uuid, const nlohmann::json* record) {
  if (!record || !record->is_object() || !record->contains("node") || !(*record)["node"].is_string()) {
    vms_.erase(uuid);
    return;
  }
  Vm vm;
  vm.node = (*record)["node"];
  vm.group = record::text(*record, "group", "");
  vm.resources = resources_of(*record);
  if (!record::flag(*record, "local_disk")) vm.resources.disk_gib = 0;  // shared storage takes no node disk
  vms_[uuid] = vm;
}

void ClusterView::reserve(const std::string& task, const std::string& node, const VmRequest& vm,
                          Clock::time_point expires) {
  reservations_.push_back(
      {task, node, vm.group, Resources{vm.vcpus, vm.memory_mib, vm.local_disk ? vm.disk_gib : 0}, expires});
}

size_t ClusterView::release(const std::string& task) {
  auto before = reservations_.size();
  std::erase_if(reservations_, [&](const Reservation& r) { return r.task == task; });
  return before - reservations_.size();
}

void ClusterView::expire(Clock::time_point now) {
  std::erase_if(reservations_, [&](const Reservation& r) { return r.expires <= now; });
}

Resources ClusterView::reserved_total() const {
  Resources total;
  for (const auto& r : reservations_) add(total, r.resources);
  return total;
}

std::vector<NodeState> ClusterView::nodes() const {
  // In id order, as nodes_ is; a VM or reservation finds its node by binary search. Built for
  // every request: no map, one allocation per node's groups at most.
  std::vector<NodeState> list;
  list.reserve(nodes_.size());
  for (const auto& [id, n] : nodes_) {
    NodeState& s = list.emplace_back();
    s.id = id;
    s.management = n.management;
    s.monitor = n.monitor;
    s.capacity = n.capacity;
    s.host_reserve = host_reserve_;
  }
  auto find = [&](const std::string& id) -> NodeState* {
    auto it = std::lower_bound(list.begin(), list.end(), id,
                               [](const NodeState& s, const std::string& k) { return s.id < k; });
    return it != list.end() && it->id == id ? &*it : nullptr;
  };
  std::vector<Resources> placed(list.size());
  for (const auto& [uuid, vm] : vms_) {
    NodeState* s = find(vm.node);
    if (!s) continue;
    add(placed[static_cast<size_t>(s - list.data())], vm.resources);
    if (!vm.group.empty()) s->groups[vm.group]++;
  }
  size_t i = 0;
  for (const auto& [id, n] : nodes_) {
    const Resources& mine = placed[i];
    const Resources& reported = n.reported_use;
    list[i++].used = Resources{std::max(mine.vcpus, reported.vcpus), std::max(mine.memory_mib, reported.memory_mib),
                               std::max(mine.disk_gib, reported.disk_gib)};
  }
  for (const auto& r : reservations_) {
    NodeState* s = find(r.node);
    if (!s) continue;
    add(s->reservations, r.resources);
    if (!r.group.empty()) s->groups[r.group]++;
  }
  return list;
}

}  // namespace nodeha::scheduler
