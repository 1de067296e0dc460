// What the scheduler knows of the cluster, kept from KV watches: each node's state and reported
// capacity (nodes bucket), the VMs placed on it (vms bucket), and reservations held by plans in
// flight. Pure bookkeeping; the plugin feeds it on its event thread.
#pragma once

#include "placement.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace nodeha::scheduler {

using Clock = std::chrono::steady_clock;

class ClusterView {
 public:
  explicit ClusterView(Resources host_reserve) : host_reserve_(host_reserve) {}

  // A node record (nodes bucket) changed or went away.
  void on_node(const std::string& id, const nlohmann::json* record);
  // A VM record (vms bucket) changed or went away: its resources move with its node.
  void on_vm(const std::string& uuid, const nlohmann::json* record);

  // Holds room for a placement until `expires` or until `task` is released.
  void reserve(const std::string& task, const std::string& node, const VmRequest& vm, Clock::time_point expires);
  size_t release(const std::string& task);
  void expire(Clock::time_point now);
  Resources reserved_total() const;

  // The nodes as place() wants them. Used room per resource is the larger of what the vms bucket
  // places there and what the node itself reports (VMs nodeha does not know of still take room).
  std::vector<NodeState> nodes() const;

 private:
  struct Node {
    std::string management = "enabled", monitor = "normal";
    Resources capacity, reported_use;
  };
  struct Vm {
    std::string node, group;
    Resources resources;
  };
  struct Reservation {
    std::string task, node, group;
    Resources resources;
    Clock::time_point expires;
  };
  Resources host_reserve_;
  std::map<std::string, Node> nodes_;
  std::map<std::string, Vm> vms_;
  std::vector<Reservation> reservations_;
};

}  // namespace nodeha::scheduler
