// The node record in the `nodes` bucket, as the heartbeat plugin sees it. Pure.
//
// The record is shared: the heartbeat plugin owns the monitor fields (monitor, reason, boot_id,
// last_heartbeat, interval_ms, capacity, use, addresses, checks); `management` is changed only by
// commands (enable/disable here, drain elsewhere) and `lock` by task plugins. Every writer does a
// revision-checked read-modify-write that keeps the fields it does not own.
#pragma once

#include "monitor.h"

#include <nlohmann/json.hpp>

namespace nodeha::heartbeat {

// The fields this plugin owns, from the monitor's view of the node.
nlohmann::json monitor_fields(const NodeState& n, int64_t last_heartbeat_unix_ms);

// `record` with `fields` laid over it; a missing record becomes a new one, management enabled.
nlohmann::json merge_record(const nlohmann::json& record, const nlohmann::json& fields);

// Whether the record must be written: a state, reason, boot id, address or check changed, the
// capacity or use moved by more than `change_share` of capacity, or the stored last_heartbeat is
// older than `refresh_ms`. Heartbeats alone never cause a write.
bool needs_write(const nlohmann::json& written, const nlohmann::json& fields, int64_t refresh_ms,
                 double change_share = 0.05);

// The node's management state in a record ("enabled" when absent or unreadable).
ManagementState management_of(const nlohmann::json& record);

}  // namespace nodeha::heartbeat
