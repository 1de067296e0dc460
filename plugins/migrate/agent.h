// The agent side of the migrate plugin (docs/node-operations.md, "Agent subjects"):
//   <prefix>.agent.<node>.migrate.target  {network} -> where peers send this node migrations
//   <prefix>.agent.<node>.vm.migrate      live-migrates one domain to a peer (blocking reply)
//   <prefix>.agent.<node>.vm.abort        aborts the domain's job
//   <prefix>.local.migrate                `nodeha local migrate` (local_migrate.h)
// Handlers run on the event thread and hand every libvirt call to a worker.
#pragma once

#include "answers.h"
#include "migration.h"

#include <nodeha/plugin.hpp>

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace nodeha::migrate {

class LocalMigrate;

// The agent's config keys (plugin.cpp), validated.
struct AgentConfig {
  std::string peer_uri;     // template, {address}
  std::string migrate_uri;  // template, {address}
  std::map<std::string, std::string> addresses;  // network -> this node's address
  Millis timeout{0};
  Millis stall_timeout{0};
  uint64_t bandwidth_mib = 0;
  std::string local_peer_uri;     // template, {dest}
  std::string local_migrate_uri;  // template, {dest}
  std::vector<std::string> shared_paths;
  int local_parallel = 2;
};

// Throws ConfigError for a value a person must fix.
AgentConfig read_agent_config(const nlohmann::json& config);

// One migration as the agent runs it: what to move where, and on whose behalf.
struct MigrationJob {
  MigrationSpec spec;
  std::string task;       // may be empty
  std::string dest_node;  // empty when not known (local.migrate to an address no node claims)
};

struct MigrationReport {
  MigrationOutcome outcome;
  nlohmann::json record;  // what became of the VM record: {"moved": bool, "generation"?, "error"?}
};

// The local disks a migration copied, for replies and events: [{target, path, format, capacity}].
nlohmann::json copied_disks(const MigrationOutcome& out);

class AgentSide {
 public:
  explicit AgentSide(const Host& host);
  ~AgentSide();
  AgentSide(const AgentSide&) = delete;
  AgentSide& operator=(const AgentSide&) = delete;

  Status start();  // event thread
  // Event thread. Migrations in flight are aborted (the guests stay here): a stopping agent could
  // not report their outcome. The host then waits for the workers.
  void stop();

  // Runs one migration: progress and outcome on <prefix>.evt.vm.<uuid>, metrics, and on success
  // the VM record moved to the destination node (a bus that is down is logged, not fatal: the
  // destination agent claims the VM). `extra` sees every progress reading too. Blocking: a worker
  // or a thread of its own. `active` comes from active().begin(uuid).
  MigrationReport migrate_one(const MigrationJob& job, ActiveMigration& active, const ProgressFn& extra = {});

  ActiveMigrations& active() { return active_; }
  const AgentConfig& config() const { return config_; }
  const Host& host() const { return host_; }
  bool stopping() const { return stopping_; }
  // Asks for the journal to be reported into the tasks bucket (now, and again until it works).
  void report_journal();

 private:
  void on_target(const Message& m);   // event thread
  void on_migrate(const Message& m);  // event thread; the migration runs on a worker
  void on_abort(const Message& m);    // event thread; the abort runs on a worker
  void publish_event(const std::string& uuid, nlohmann::json event) const;  // any thread

  const Host& host_;
  AgentConfig config_;
  ActiveMigrations active_;
  Answers answers_;
  std::unique_ptr<LocalMigrate> local_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> report_pending_{true};  // a journal entry may wait for the bus
  std::atomic<bool> reporting_{false};
  std::map<std::string, Metric> results_;  // nodeha_migrate_migrations_total by result
  Metric duration_;
  Metric running_;
  Metric bytes_;  // nodeha_migrate_bytes_total
};

}  // namespace nodeha::migrate
