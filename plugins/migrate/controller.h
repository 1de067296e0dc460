// migrate, controller side: `cmd.node.migrate` (docs/node-operations.md). Plans every VM of the
// node with the scheduler (or onto a named target), then asks the source agent to live-migrate
// them, `max_parallel` at a time, each to the address the target agent offers on the chosen
// network. VMs with local disks are skipped unless asked; a named target without room refuses
// the whole command. A dry run keeps its plan, which `plan` runs exactly (plugins/tasks/plans.h).
//
// `cmd.node.maintenance` is the same migration of every VM of the node, the node first made
// `disabled` in the write that takes its lock (task kind `maintenance`); it stays disabled until
// `node.enable`, whatever the task's outcome.
#pragma once

#include "engine.h"
#include "plans.h"

#include <nodeha/plugin.hpp>

#include <memory>

namespace nodeha::migrate {

class ControllerSide {
 public:
  explicit ControllerSide(const Host& host);
  Status start();
  void stop();

 private:
  void migrate(const Message& m, bool maintenance);
  tasks::StepResult migrate_vm(const nlohmann::json& task, const nlohmann::json& step);
  void abort_vm(const nlohmann::json& task, const nlohmann::json& step);
  void on_vm_event(const Message& m);

  Host host_;
  int max_parallel_;
  Millis migration_timeout_, stall_timeout_, agent_timeout_, reserve_;
  plans::Keeper plans_;
  std::unique_ptr<tasks::Engine> engine_, maintenance_engine_;
};

}  // namespace nodeha::migrate
