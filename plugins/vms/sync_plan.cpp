#include "sync_plan.h"

#include "libvirt.h"
#include "vm_ops.h"
#include "vm_record.h"

namespace nodeha::vms {

bool claimed_unanswered_from(const nlohmann::json& record, const std::string& node) {
  if (!record.is_object() || !record.contains("claim")) return false;
  const auto& c = record["claim"];
  return c.is_object() && text(c, "from") == node && c.contains("answered") && c["answered"] == false;
}

bool runs_here(const Domain& d) { return d.state == VIR_DOMAIN_RUNNING || d.state == VIR_DOMAIN_BLOCKED; }

nlohmann::json new_record(const Domain& d, const std::string& node, int64_t now_ms) {
  bool runs = vm_ops::active(d.state) && d.state != VIR_DOMAIN_SHUTDOWN;
  return {{"uuid", d.uuid},
          {"name", d.name},
          {"node", node},
          {"generation", 1},
          {"state", libvirt::state_name(d.state)},
          {"desired", runs ? "running" : "stopped"},
          {"vcpus", d.vcpus},
          {"memory_mib", d.memory_mib},
          {"disk_gib", d.disk_gib},
          {"local_disk", !d.local_disks.empty()},
          {"local_disks", d.local_disks},
          {"group", ""},
          {"xml", d.xml},
          {"updated", now_ms}};
}

nlohmann::json owner_changes(const nlohmann::json& record, const Domain& d) {
  const nlohmann::json seen = {{"name", d.name},
                               {"state", libvirt::state_name(d.state)},
                               {"vcpus", d.vcpus},
                               {"memory_mib", d.memory_mib},
                               {"disk_gib", d.disk_gib},
                               {"local_disk", !d.local_disks.empty()},
                               {"local_disks", d.local_disks},
                               {"xml", d.xml}};
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [field, value] : seen.items())
    if (!record.contains(field) || record[field] != value) out[field] = value;
  bool shut_itself_down = d.state == VIR_DOMAIN_SHUTOFF && d.reason == VIR_DOMAIN_SHUTOFF_SHUTDOWN;
  if (shut_itself_down && text(record, "desired") != "stopped") out["desired"] = "stopped";
  // A rebuild left it stranded while this node was away: reporting it here again is what ends the
  // mark, which the record desk drops (an agent cannot clear it by itself, desk_rules.h).
  if (vm_record::stranded_of(record)) out[vm_record::kStranded] = nullptr;
  return out;
}

bool needs_restart(const nlohmann::json& record, const Domain& d) {
  if (text(record, "desired") != "running") return false;
  if (d.state == VIR_DOMAIN_CRASHED) return true;
  if (d.state != VIR_DOMAIN_SHUTOFF) return false;
  switch (d.reason) {
    case VIR_DOMAIN_SHUTOFF_SHUTDOWN:
    case VIR_DOMAIN_SHUTOFF_MIGRATED:
    case VIR_DOMAIN_SHUTOFF_SAVED:
    case VIR_DOMAIN_SHUTOFF_FROM_SNAPSHOT: return false;
    default: return true;  // destroyed, crashed, failed, daemon, unknown
  }
}

namespace {

// Whose a domain is by its record, before asking anyone.
enum class Whose { Mine, Nobody, Unrecorded, Others, OthersNeverMine, Contested, Migrating };

Whose whose(const SyncInput& in, const std::string& uuid, const Domain& d) {
  auto it = in.records.find(uuid);
  if (it == in.records.end()) return Whose::Unrecorded;
  std::string owner = text(it->second, "node");
  if (owner == in.node) return Whose::Mine;
  // A domain arriving by migration belongs to the migration until it ends.
  if (vm_ops::arriving(d.state, d.reason, d.persistent)) return Whose::Migrating;
  if (owner.empty()) return Whose::Nobody;
  if (!in.owned.count(uuid)) return Whose::OthersNeverMine;
  // Claimed away while this node could not answer, and still up here: not a copy left behind by a
  // migration (that one is shut off), so only the claimer can tell.
  if (claimed_unanswered_from(it->second, in.node) && d.state != VIR_DOMAIN_SHUTOFF) return Whose::Contested;
  return Whose::Others;
}

}  // namespace

std::vector<std::string> needs_owner_view(const SyncInput& in) {
  std::vector<std::string> out;
  for (const auto& [uuid, d] : in.domains)
    if (auto w = whose(in, uuid, d); w == Whose::OthersNeverMine || w == Whose::Contested) out.push_back(uuid);
  return out;
}

SyncPlan plan_sync(const SyncInput& in) {
  SyncPlan plan;
  for (const auto& [uuid, d] : in.domains) {
    switch (whose(in, uuid, d)) {
      case Whose::Migrating: break;
      case Whose::Unrecorded:
        plan.create.push_back(uuid);
        plan.mine.insert(uuid);
        break;
      case Whose::Mine: {
        const auto& record = in.records.at(uuid);
        plan.mine.insert(uuid);
        // Shut off because a migration took it away: it runs elsewhere, and the migration moves
        // its record there. Writing `shutoff` now would stand in the moved record for a moment.
        bool left = d.state == VIR_DOMAIN_SHUTOFF && d.reason == VIR_DOMAIN_SHUTOFF_MIGRATED;
        if (!left && !owner_changes(record, d).empty()) plan.update.push_back(uuid);
        if (in.supervise && in.may_start && needs_restart(record, d)) plan.restart.push_back(uuid);
        break;
      }
      case Whose::Nobody:  // a record that names no node: this node has the domain, so it takes it
        plan.claim.push_back(uuid);
        plan.mine.insert(uuid);
        break;
      case Whose::Others:  // it was ours and its record moved away meanwhile (a rebuild elsewhere)
        plan.stale.push_back(uuid);
        break;
      case Whose::Contested: {
        auto view = in.owners.count(uuid) ? in.owners.at(uuid) : OwnerView::Unknown;
        if (view == OwnerView::Absent) {
          plan.claim.push_back(uuid);  // the claimer has no copy: the claim was wrong, ours is the one
        } else {
          plan.contested.push_back(uuid);
        }
        plan.mine.insert(uuid);  // still owned: asked again, never taken for a copy left behind
        break;
      }
      case Whose::OthersNeverMine: {
        auto view = in.owners.count(uuid) ? in.owners.at(uuid) : OwnerView::Unknown;
        // It arrived and runs while this node was in sync with the bucket: a live migration
        // landed here, and libvirt stopped the source. Taken even if the source cannot answer
        // (its management network may be down: that is why it migrated with `nodeha local`).
        bool landed = !in.first && runs_here(d) && !in.seen.count(uuid);
        if (view == OwnerView::Runs || (view == OwnerView::Defined && !runs_here(d))) {
          plan.stale.push_back(uuid);  // the owner has it: ours is a copy left behind
        } else if (view == OwnerView::Absent || (view == OwnerView::Unknown && landed)) {
          plan.claim.push_back(uuid);  // the only copy is here
          plan.mine.insert(uuid);
        } else {
          plan.unverified.push_back(uuid);
        }
        break;
      }
    }
  }
  for (const auto& uuid : plan.mine)
    if (in.domains.at(uuid).autostart) plan.autostart_off.push_back(uuid);
  // Missing only when it was not here at the previous sync either: a VM that just migrated away
  // is gone from libvirt a moment before its record follows it.
  for (const auto& [uuid, record] : in.records)
    if (text(record, "node") == in.node && !in.domains.count(uuid) && !in.seen.count(uuid) &&
        text(record, "state") != "missing")
      plan.missing.push_back(uuid);
  return plan;
}

}  // namespace nodeha::vms
