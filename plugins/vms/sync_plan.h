// The inventory sync's decisions (docs/node-operations.md, "The vms bucket"), as a pure function:
// from what libvirt shows, what the vms bucket holds and which domains were this node's at the
// previous sync, which domains are stale copies, which are claimed, which records are created,
// updated or marked missing, and which VMs are started again. inventory.cpp carries the plan out,
// checking each change against a fresh read of the record before it acts.
#pragma once

#include "record_fields.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace nodeha::vms {

// One domain as libvirt shows it at this sync.
struct Domain {
  std::string uuid;
  std::string name;
  int state = 0;  // virDomainState
  int reason = 0;
  int64_t vcpus = 0;
  int64_t memory_mib = 0;
  int64_t disk_gib = 0;
  bool persistent = true;
  bool autostart = false;  // libvirt starts it when libvirtd starts
  std::vector<std::string> local_disks;
  std::string xml;  // inactive, secure
};

// What the node a record names says of a domain this node has but never owned (its vm.list).
enum class OwnerView { Runs, Defined, Absent, Unknown };

struct SyncInput {
  std::string node;  // this node
  // The first sync since the agent started or since the bus came back.
  bool first = true;
  std::map<std::string, Domain> domains;          // by uuid
  std::map<std::string, nlohmann::json> records;  // the vms bucket, by uuid
  // Domains this node owned at its last sync (kept across restarts in the state dir): one whose
  // record names another node now was moved away while it was here, and is a stale copy.
  std::set<std::string> owned;
  // Every domain libvirt showed at the previous successful sync (empty at the first).
  std::set<std::string> seen;
  // For the domains of needs_owner_view(): what their record's node says.
  std::map<std::string, OwnerView> owners;
  bool supervise = true;
  bool may_start = true;  // the node is not drained (and its record could be read)
};

struct SyncPlan {
  std::vector<std::string> stale;  // destroy and undefine, before anything else
  std::vector<std::string> claim;  // move the record to this node
  std::vector<std::string> create;
  std::vector<std::string> update;
  std::vector<std::string> missing;
  std::vector<std::string> restart;
  // This node's domains that libvirt would start by itself at boot, before the agent has checked
  // where they belong: their autostart is turned off (nodeha starts them).
  std::vector<std::string> autostart_off;
  // Another node's, which cannot be told yet: left alone, asked again at the next sync.
  std::vector<std::string> unverified;
  // This node's until another claimed it while this node could not answer, and not shut off here:
  // the claimer may run it too (a double), or may have lied. Left alone (kept in `mine`, never
  // supervised): the operator decides; claimed back at once if the claimer says it has no copy.
  std::vector<std::string> contested;
  // This node's domains after the sync (recorded here, claimed or new): the next `owned`.
  std::set<std::string> mine;
};

// The domains whose record names another node and that this node never owned: a copy left
// behind (the owner has it), or a VM that came here while the records could not follow (a
// `nodeha local migrate`, a migration while this node was cut off): only the owner can tell.
std::vector<std::string> needs_owner_view(const SyncInput& in);

SyncPlan plan_sync(const SyncInput& in);

// Whether `record` was claimed from `node` while `node` did not answer the controller (the
// record desk marks such claims: "claim": {"from": node, "answered": false}).
bool claimed_unanswered_from(const nlohmann::json& record, const std::string& node);

// The string at `key` of a record, or "" (absent, or not a string: records come from anyone).
using record::text;

// The record of a domain no record names yet (generation 1).
nlohmann::json new_record(const Domain& d, const std::string& node, int64_t now_ms);

// The owner's fields of `record` that differ from what libvirt shows, with their new values (an
// empty object: nothing to write). `desired` becomes "stopped" when the guest shut itself down; a
// stranded mark (vm_record.h) asks for a write, so that the record desk ends it.
nlohmann::json owner_changes(const nlohmann::json& record, const Domain& d);

// Whether supervision starts the VM again: desired running, and shut off for a reason other than
// a guest shutdown, or crashed. A migrated, saved or snapshot-restored domain was stopped by
// libvirt on purpose (a migrated one may run elsewhere): never restarted.
bool needs_restart(const nlohmann::json& record, const Domain& d);

// Running in the claim's sense: QEMU runs the guest here, not paused for a migration.
bool runs_here(const Domain& d);

}  // namespace nodeha::vms
