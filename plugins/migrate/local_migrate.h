// `nodeha local migrate` (docs/node-operations.md, "The node-local path"): <prefix>.local.migrate,
// subscribed with NODEHA_SUB_LOCAL_ONLY: only the node's own administrator reaches it, on the local
// socket, also when the management network is down (over NATS every agent would answer).
//
//   {interface, dest, all?, vms?, confirm?=false, include_local_disk?=false}
//
// Without `confirm`: the plan, nothing changed. With it: the planned domains migrate, a few at a
// time (`local_parallel`), to `local_peer_uri` / `local_migrate_uri` with {dest} replaced; the
// task is appended to <state_dir>/journal.jsonl (kind local-migrate) and reported into the tasks
// bucket when the bus is up. `interface` is checked, not bound (route.h).
#pragma once

#include "local_plan.h"

#include <nodeha/plugin.hpp>

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace nodeha::migrate {

class AgentSide;

class LocalMigrate {
 public:
  explicit LocalMigrate(AgentSide& agent) : agent_(agent) {}
  // Event thread: decodes, then works on a worker.
  void on_request(const Message& m);

 private:
  // Worker.
  void handle(const nlohmann::json& request, const std::string& reply);
  // This node's domains as the plan sees them; blocking.
  Result<std::vector<LocalDomain>> list_domains() const;
  // The node whose heartbeat reports `address` (from the nodes bucket); empty when none or
  // several do, or the bus is down.
  std::string node_at(const std::string& address) const;
  // Runs the confirmed plan into `task`'s steps and returns the per-VM results.
  nlohmann::json execute(const std::vector<PlanEntry>& plan, const LocalRequest& request, const std::string& dest_node,
                         nlohmann::json& task);

  AgentSide& agent_;
};

}  // namespace nodeha::migrate
