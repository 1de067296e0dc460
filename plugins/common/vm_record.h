// Records of the `vms` bucket (docs/node-operations.md): revision-checked changes shared by the
// agents (inventory, claims, migrations) and the controller's task plugins (rebuild, migrate).
// An agent's writes go through the controller's record desk (record_desk.h), which writes only
// what that node's agent may; a controller writes the bucket itself.
#pragma once

#include <nodeha/plugin.hpp>

#include <nlohmann/json.hpp>

#include <functional>
#include <string>

namespace nodeha::vm_record {

inline constexpr const char* kBucket = "vms";

// Reads the record of `uuid`, lets `change` modify it, and writes it back with the revision it
// read; on a conflict (another writer won) it reads again and repeats, up to `attempts` times.
// `change` returns false to leave the record as it is (nothing is written). A missing record is
// passed as null; `change` may fill it in (it is then created). Returns the record as stored.
Result<nlohmann::json> modify(const Host& host, const std::string& uuid,
                              const std::function<bool(nlohmann::json& record)>& change, int attempts = 8);

// Moves the VM to `node`: sets `node`, bumps `generation` and stamps `updated` unless the record
// already names `node` (then nothing is written: whoever moved it first won). `desired`, when
// not empty, is set too. NOT_FOUND when there is no record.
Result<nlohmann::json> move(const Host& host, const std::string& uuid, const std::string& node,
                            const std::string& desired = "");

// Sets `desired` ("running" / "stopped") when it differs. NOT_FOUND when there is no record.
Result<nlohmann::json> set_desired(const Host& host, const std::string& uuid, const std::string& desired);

// Deletes the record if it names this host's node (vm.undefine); a record naming another node, or
// none, is left alone (ok).
Status remove_own(const Host& host, const std::string& uuid);

// The record with the bulky fields (xml) left out, for listings.
nlohmann::json summary(const nlohmann::json& record);

int64_t unix_ms();

}  // namespace nodeha::vm_record
