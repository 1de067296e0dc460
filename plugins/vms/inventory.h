// The agent's inventory sync: every `sync_every`, on a worker and one at a time, it reads every
// domain from libvirt, the vms bucket and this node's record in the nodes bucket, plans
// (sync_plan.h) and carries the plan out in the contract's order: stale copies destroyed and
// undefined first, then claims, new records, owner updates, missing VMs, restarts. Each change
// is checked against a fresh read of the record just before it is made, and every record write is
// revision-checked (vm_record).
//
// A sync whose bucket read fails puts the agent out of sync: no operation is served until a sync
// succeeds again, and that one is a first sync. Who owns a domain whose record names another node
// (sync_plan.h): if it was this node's at its last sync, it was moved away meanwhile and is a
// stale copy; if it never was, the named node is asked (vm.list): it has it running, ours is a
// stale copy; it does not have it, ours is the only one and is claimed; no answer, it is claimed
// only if it arrived running while this node was in sync (a live migration from a node that is
// cut off), and is otherwise left alone until the owner answers.
#pragma once

#include "guards.h"
#include "sync_plan.h"
#include "vm_ops.h"

#include <nodeha/plugin.hpp>

#include <atomic>
#include <chrono>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace nodeha::vms {

// Whether this node's record says `drained` (no record: not drained). Blocking.
Result<bool> node_drained(const Host& host);

// What libvirt shows of one domain, its disks classified (disk_gib left 0). Blocking.
Result<Domain> read_domain(virDomainPtr dom, const std::vector<std::string>& shared_paths);

class Inventory {
 public:
  struct Settings {
    std::vector<std::string> shared_paths;
    bool supervise = true;
  };
  Inventory(const Host& host, Settings settings, Busy& busy, Held& held);

  // Event thread: registers the metrics and watches the vms bucket for changes.
  void start();
  // One sync. Blocking: on a worker, never two at once.
  void sync();
  // Any thread: a sync succeeded and no bucket read failed since.
  bool in_sync() const { return in_sync_; }

 private:
  Result<std::map<std::string, Domain>> read_domains();
  Result<std::map<std::string, nlohmann::json>> read_records();
  // The bucket: as read last, or read again (`fresh`) when it may have changed since or `force`.
  Result<std::map<std::string, nlohmann::json>> records(bool force, bool* fresh);
  void remove_stale(const std::string& uuid);
  void claim(const std::string& uuid, const std::string& from);
  void create(const Domain& d);
  void update(const Domain& d);
  void mark_missing(const std::string& uuid);
  void autostart_off(const std::string& uuid);
  void restart(const std::string& uuid);
  void release_held();
  void publish(const std::string& uuid, nlohmann::json event) const;
  void ask_owners(SyncInput& in);
  std::string owned_path() const;
  void load_owned();
  void save_owned(const std::set<std::string>& owned) const;

  const Host& host_;
  Settings settings_;
  Busy& busy_;
  Held& held_;
  std::atomic<bool> in_sync_{false};
  // Entries the watch of the vms bucket delivered: a change since the last read (anyone's, ours
  // included). 0 and never counting when the watch could not be made: then every sync reads.
  std::atomic<uint64_t> bucket_changes_{0};
  bool watching_ = false;
  // Sync worker only (syncs never overlap):
  bool first_ = true;
  bool libvirt_failed_ = false;  // each failure logged once, until it works again
  bool bucket_failed_ = false;
  std::map<std::string, nlohmann::json> records_;  // the bucket at the last read
  uint64_t read_changes_ = 0;                      // bucket_changes_ before that read
  uint64_t read_connects_ = 0;                     // the bus's connection count at that read
  std::chrono::steady_clock::time_point read_at_{};
  bool reread_ = true;  // the last sync wrote, or nothing was read yet
  std::set<std::string> owned_;       // this node's domains at the last sync (state_dir/owned.json)
  std::set<std::string> seen_;        // every domain at the last sync
  std::set<std::string> unverified_;  // warned about once
  std::set<std::string> contested_;   // logged and published once
  std::map<std::string, std::pair<std::string, int64_t>> disk_gib_;  // uuid -> (xml, GiB): sized once per definition
  std::set<std::string> autostart_failed_;                           // logged once
  std::set<std::string> restart_failed_;                             // logged once until it works
  Metric synced_;
  Metric sync_failed_;
  Metric stale_removed_;
  Metric restarts_;
  Metric running_;
};

}  // namespace nodeha::vms
