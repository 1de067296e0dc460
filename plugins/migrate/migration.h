// One live migration of one domain to a peer libvirtd (virDomainMigrateToURI3, peer-to-peer,
// persistent on the destination, undefined here), watched while it runs: job statistics every
// 250 ms, progress handed out at most once a second, and virDomainAbortJob when it takes longer
// than its timeout, stalls, or someone asks (vm.abort, the plugin stopping).
#pragma once

#include "disk_plan.h"
#include "progress.h"

#include <nodeha/plugin.hpp>

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace nodeha::migrate {

// Reply codes of a migration beyond command.h's (docs/node-operations.md lists unknown_vm).
inline constexpr const char* kUnknownVm = "unknown_vm";
inline constexpr const char* kMigrationFailed = "migration_failed";    // libvirt refused or failed it
inline constexpr const char* kMigrationTimeout = "migration_timeout";  // aborted: took longer than timeout_ms
inline constexpr const char* kMigrationStalled = "migration_stalled";  // aborted: data_remaining stuck for stall_ms
inline constexpr const char* kMigrationAborted = "migration_aborted";  // aborted: vm.abort, or the agent stopping

struct MigrationSpec {
  std::string uuid;
  std::string dest_uri;     // the peer libvirtd, as the source libvirtd reaches it
  std::string migrate_uri;  // where QEMU's stream goes (VIR_MIGRATE_PARAM_URI)
  bool include_local_disk = false;
  int64_t timeout_ms = 0;  // 0: no limit
  int64_t stall_ms = 0;    // 0: no limit
  uint64_t bandwidth_mib = 0;  // MiB/s; 0: unlimited
  std::vector<std::string> shared_paths;
};

struct MigrationError {
  std::string code;
  std::string message;
};

struct MigrationOutcome {
  std::optional<MigrationError> error;  // empty: the guest runs on the destination
  int64_t duration_ms = 0;
  // The last job reading; on success completed_sample: the destination's figures of the whole
  // migration when it can be asked (dest_uri, from this process), the disks' from the source.
  JobSample last;
  // The local disks copied with it (NON_SHARED_INC), and what became of their images: the
  // source's removed after a success, the destination's after a failure; kept when in doubt.
  std::vector<DiskCopy> disks;
  std::string images;  // a sentence for people; empty without local disks
};

// A migration in flight, shared between the thread that runs it, its monitor and whoever wants
// it aborted. Thread-safe.
class ActiveMigration {
 public:
  // Asks the monitor to abort the job; the first reason wins ("timeout", "stalled", "aborted",
  // "stopping"). Returns whether this call set it.
  bool request_abort(const std::string& reason);
  std::string abort_reason() const;

 private:
  friend class Monitor;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string reason_;
  bool done_ = false;
};

// The migrations running on this node, one per uuid at most. Thread-safe.
class ActiveMigrations {
 public:
  // Null when `uuid` is migrating already.
  std::shared_ptr<ActiveMigration> begin(const std::string& uuid);
  void end(const std::string& uuid);
  std::shared_ptr<ActiveMigration> find(const std::string& uuid) const;
  bool contains(const std::string& uuid) const { return find(uuid) != nullptr; }
  // Asks every migration in flight to abort with `reason`.
  void abort_all(const std::string& reason);
  size_t size() const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<ActiveMigration>> active_;
};

// Called on the monitor thread with a job reading and the time since the migration started.
using ProgressFn = std::function<void(const JobSample& sample, int64_t elapsed_ms)>;

// Checks the domain (here, running, local disks allowed) and migrates it. Blocking: call from a
// worker, never from the event thread. `active` must come from ActiveMigrations::begin.
MigrationOutcome run_migration(const Host& host, const MigrationSpec& spec, ActiveMigration& active,
                               const ProgressFn& on_progress);

// The reply code for an abort reason ("timeout" -> migration_timeout, ...).
const char* abort_code(const std::string& reason);

}  // namespace nodeha::migrate
