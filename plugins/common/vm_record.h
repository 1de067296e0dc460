// Records of the `vms` bucket (docs/node-operations.md): revision-checked changes shared by the
// agents (inventory, claims, migrations) and the controller's task plugins (rebuild, migrate).
// An agent's writes go through the controller's record desk (record_desk.h), which writes only
// what that node's agent may; a controller writes the bucket itself.
#pragma once

#include <nodeha/plugin.hpp>

#include <nlohmann/json.hpp>

#include <functional>
#include <map>
#include <optional>
#include <string>

namespace nodeha::vm_record {

inline constexpr const char* kBucket = "vms";

// Reads the record of `uuid`, lets `change` modify it, and writes it back with the revision it
// read; on a conflict (another writer won) it reads again and repeats, up to `attempts` times.
// `change` returns false to leave the record as it is (nothing is written). A missing record is
// passed as null; `change` may fill it in (it is then created). Returns the record as stored.
Result<nlohmann::json> modify(const Host& host, const std::string& uuid,
                              const std::function<bool(nlohmann::json& record)>& change, int attempts = 8);

// Moves the VM to `node`: sets `node`, bumps `generation`, drops the stranded mark and stamps
// `updated` unless the record already names `node` (then nothing is written: whoever moved it
// first won). `desired`, when
// not empty, is set too. NOT_FOUND when there is no record.
Result<nlohmann::json> move(const Host& host, const std::string& uuid, const std::string& node,
                            const std::string& desired = "");

// The controller's mark on a VM that a rebuild of its node skipped, its disks being on that node
// only: "stranded": {"node", "task", "since" (unix ms), "reason"}. Only controllers set it (an
// agent's write never sets or clears it: the record desk keeps it, plugins/vms/desk_rules.h); it
// goes when that node's agent reports the VM again, when the VM moves to another node (move()),
// or with the record.
inline constexpr const char* kStranded = "stranded";
struct Stranded {
  std::string node;
  std::string task;
  int64_t since = 0;
  std::string reason;
};
nlohmann::json encode(const Stranded& s);
// The mark of `record`; nullopt when there is none, or it is no object naming a node (records
// come from anyone who can write the bucket).
std::optional<Stranded> stranded_of(const nlohmann::json& record);

// Marks VM `uuid` stranded (controller only) if its record still names `s.node`; a mark of the
// same node stays as it is (its first task and `since`). Returns whether the record carries it.
Result<bool> mark_stranded(const Host& host, const std::string& uuid, const Stranded& s);

// The VM's automatic-recovery priority, "ha" (docs/operations.md, "Automatic recovery"): absent or
// "off", never recovered automatically; an integer 0..kMaxHa, recovered when its node is fenced,
// higher first. Only controllers set it (`vm.set_ha`); an agent's write keeps the stored one (the
// record desk, desk_rules.h).
inline constexpr const char* kHa = "ha";
inline constexpr int kMaxHa = 1000;
// The priority of `record`; nullopt for off, and for anything that is not an integer in range.
std::optional<int> ha_priority(const nlohmann::json& record);
// Sets the priority (nullopt: off). NOT_FOUND when there is no record.
Result<nlohmann::json> set_ha(const Host& host, const std::string& uuid, std::optional<int> priority);

// Sets `desired` ("running" / "stopped") when it differs. NOT_FOUND when there is no record.
Result<nlohmann::json> set_desired(const Host& host, const std::string& uuid, const std::string& desired);

// Deletes the record if it names this host's node (vm.undefine); a record naming another node, or
// none, is left alone (ok).
Status remove_own(const Host& host, const std::string& uuid);

// The domains of an agent's vm.list result, uuid -> state ("defined" when it gives none);
// entries that are not objects with a string uuid are skipped (the reply is another process's).
std::map<std::string, std::string> listed_states(const nlohmann::json& result);

// The record with the bulky fields (xml) left out, for listings.
nlohmann::json summary(const nlohmann::json& record);

int64_t unix_ms();

}  // namespace nodeha::vm_record
