// The scheduler's placement core: which node each VM of a request goes to, or why it cannot go
// anywhere. A pure function over plain data: no bus, no KV, no libvirt, no clock, no shared
// state; safe to call from any thread. The plugin gathers the nodes and decodes the request,
// calls place(), and publishes what comes back.
//
// The rules, in the order they are applied:
//  * Capacity of a node, per resource: floor((reported - host_reserve) * ratio), as Nova does;
//    zero when the reserve is larger than the node. Free = capacity - used - reservations,
//    never below zero. A VM's disk counts only when it is on local disk. Amounts are whole
//    numbers; capacities are capped at 2^52.
//  * Filters: management state "enabled", monitor state "normal", not in `exclude`, room for
//    the VM, and no VM of the same hard anti-affinity group already there (counting the VMs
//    this plan has put there). A group with no policy in the request is hard.
//  * Order: VMs are placed one at a time, largest memory first, then most vCPUs, most local
//    disk, then uuid; each placement consumes room (and group slots) for the next.
//  * Choice: with a soft group, the node holding the fewest VMs of the group wins outright;
//    then the policy's score, the mean over resources of free_after / capacity (spread: the
//    highest, pack: the lowest; a resource the node has none of stays out of its mean); then
//    the smallest node id. The same input always gives the same plan, whatever the order of
//    the nodes or of the VMs (node ids and VM uuids being unique).
//  * A target is checked by the same filters (soft groups aside), and the VM goes there or
//    nowhere.
//
// Cost: the candidates are indexed by capacity class and room left (room_index.h), so a VM looks
// at the few best nodes of each class rather than every node: 10,000 VMs onto 10,000 nodes of a
// few hardware kinds take 13-30 ms with spread, not 200-400. With pack the nearly full nodes come
// first and the search often falls back to scoring every node. A VM that cannot be placed still
// looks at every node, to name the closest.
//
// Reasons, for a VM that cannot be placed:
//  no_candidates          "no candidate node: 3 nodes not enabled, 2 not normal, 1 excluded"
//                         (each node counted once, by the first of these filters it fails)
//  insufficient_capacity  "no candidate node has room (5 nodes); closest: node-b lacks memory:
//                         needs 4096 MiB, 1024 MiB free after overcommit, short by 3072 MiB"
//                         (closest: the smallest sum over short resources of missing/needed)
//  anti_affinity          "group 'db' (hard anti-affinity) already has a VM on every candidate
//                         node with room (2 nodes)"; only when some candidate has room
//  target_unavailable     "target node-b is not a known node" / "is not enabled (management
//                         state 'disabled')" / "is not normal (monitor state 'unreachable')" / "is
//                         excluded" / "already has a VM of hard anti-affinity group 'db'"
//  target_insufficient    "node-b lacks memory: needs 4096 MiB, 1024 MiB free after overcommit,
//                         short by 3072 MiB" (every short resource, joined by "; ")
#pragma once

#include <nodeha/plugin.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nodeha::scheduler {

// The only states that accept VMs.
inline constexpr std::string_view kManagementEnabled = "enabled";
inline constexpr std::string_view kMonitorNormal = "normal";

struct Resources {
  int64_t vcpus = 0;
  int64_t memory_mib = 0;
  int64_t disk_gib = 0;
  bool operator==(const Resources&) const = default;
};

// One node as the caller sees it. Ids are unique.
struct NodeState {
  std::string id;
  std::string management;  // "enabled", "disabled", "drained"
  std::string monitor;     // "normal", "unreachable", "error"
  Resources capacity;      // what the node reports
  Resources host_reserve;  // kept for the host itself, subtracted before overcommit
  Resources used;          // VMs already there
  Resources reservations;  // room promised to placements in flight; counts as used
  std::map<std::string, int64_t> groups;  // anti-affinity group -> VMs of it already there
  bool operator==(const NodeState&) const = default;
};

struct VmRequest {
  std::string uuid;
  int64_t vcpus = 0;
  int64_t memory_mib = 0;
  int64_t disk_gib = 0;
  bool local_disk = false;  // false: the disk lives on shared storage and takes no node disk
  std::string group;        // anti-affinity group; empty: none
  int64_t priority = 0;     // placed before every VM of a lower one (automatic recovery's "ha")
  bool operator==(const VmRequest&) const = default;
};

enum class Policy { kSpread, kPack };
enum class GroupPolicy { kHard, kSoft };

struct PlacementRequest {
  std::vector<VmRequest> vms;
  std::vector<std::string> exclude;   // node ids never to use
  std::optional<std::string> target;  // every VM goes here or nowhere
  std::optional<Policy> policy;       // unset: SchedulerSettings::default_policy
  std::map<std::string, GroupPolicy> groups;  // unlisted groups are hard
  bool operator==(const PlacementRequest&) const = default;
};

struct OvercommitRatios {
  double cpu = 4.0;  // Nova's initial_cpu_allocation_ratio
  double memory = 1.0;
  double disk = 1.0;
  bool operator==(const OvercommitRatios&) const = default;
};

// From the plugin's config; the same for every request.
struct SchedulerSettings {
  OvercommitRatios overcommit;
  Policy default_policy = Policy::kSpread;
};

enum class ReasonCode {
  kNoCandidates,          // every node filtered out by state or exclusion
  kInsufficientCapacity,  // no candidate has room; names the closest node's shortfall
  kTargetUnavailable,     // the target is unknown, not enabled, not normal, excluded, or holds the group
  kTargetInsufficient,    // the target lacks room
  kAntiAffinity,          // nodes with room exist, but each holds a VM of the hard group
};

struct Reason {
  ReasonCode code = ReasonCode::kNoCandidates;
  std::string message;  // for a person: names the filters and the numbers
  bool operator==(const Reason&) const = default;
};

struct Placement {
  std::string uuid;
  std::string node;              // where the VM goes; empty when it could not be placed
  std::optional<Reason> reason;  // set exactly when node is empty
  bool placed() const { return !reason.has_value(); }
  bool operator==(const Placement&) const = default;
};

struct PlacementResult {
  std::vector<Placement> placements;  // one per requested VM, in request order
  bool operator==(const PlacementResult&) const = default;
};

// Places every VM of `request` onto `nodes`. Never fails: a VM that cannot be placed carries a
// reason instead of a node.
PlacementResult place(const std::vector<NodeState>& nodes, const PlacementRequest& request,
                      const SchedulerSettings& settings);

// A node's capacity after reserve and overcommit: floor((capacity - host_reserve) * ratio).
Resources effective_capacity(const NodeState& node, const OvercommitRatios& ratios);

// Ratios must be positive and finite; names the bad one.
Status check_settings(const SchedulerSettings& settings);

const char* reason_name(ReasonCode code);  // "no_candidates", "insufficient_capacity", ...
const char* policy_name(Policy policy);    // "spread", "pack"

// The most of one resource a VM or a node may have: far beyond any, and small enough that sums
// over any cluster never overflow. Figures beyond it are refused (requests) or ignored (records).
inline constexpr int64_t kMaxQuantity = int64_t{1} << 40;

// JSON, strict: unknown fields, missing fields and wrong types are NODEHA_ERR_INVALID with a
// message naming the field, e.g. "vms[3].memory_mib must be a positive integer".
//   request: {"vms": [{"uuid", "vcpus", "memory_mib", "disk_gib", "local_disk", "group"?}],
//             "exclude"?: [id], "target"?: id, "policy"?: "spread"|"pack",
//             "groups"?: {name: "hard"|"soft"}}
//   result:  {"placements": [{"uuid", "node"} | {"uuid", "code", "message"}]}
Result<PlacementRequest> decode_request(const nlohmann::json& json);
Result<PlacementRequest> parse_request(std::string_view text);
nlohmann::json encode_request(const PlacementRequest& request);
Result<PlacementResult> decode_result(const nlohmann::json& json);
Result<PlacementResult> parse_result(std::string_view text);
nlohmann::json encode_result(const PlacementResult& result);
// Appends the text of encode_result(result)["placements"] as dump() writes it, without building
// JSON: the reply of 10,000 placements is most of a request's JSON time.
void append_placements(std::string& out, const PlacementResult& result);

}  // namespace nodeha::scheduler
