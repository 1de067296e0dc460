// The node record in the `nodes` bucket, as the heartbeat plugin sees it. Pure.
//
// The record is shared: the heartbeat plugin owns the monitor fields (monitor, reason, boot_id,
// last_heartbeat, interval_ms, capacity, use, addresses, checks); `management` is changed only by
// commands (enable/disable here, drain elsewhere) and `lock` by task plugins. Every writer does a
// revision-checked read-modify-write that keeps the fields it does not own.
#pragma once

#include "monitor.h"

#include <nlohmann/json.hpp>

#include <functional>
#include <optional>
#include <string>

namespace nodeha::heartbeat {

inline constexpr const char* kNodesBucket = "nodes";

// The fields this plugin owns, from the monitor's view of the node.
nlohmann::json monitor_fields(const NodeState& n, int64_t last_heartbeat_unix_ms);

// The fields a heartbeat alone says: capacity, use, addresses.
nlohmann::json heartbeat_fields(const Heartbeat& hb);

// `record` with `fields` laid over it; a missing record becomes a new one, management enabled.
nlohmann::json merge_record(const nlohmann::json& record, const nlohmann::json& fields);

// A record as read from the bucket: its text and revision.
struct StoredRecord {
  std::string text;
  uint64_t revision = 0;
};

// How a record write reaches the bucket: the host's KV calls in the plugin, a stand-in store in
// the unit tests. `get` fails NOT_FOUND when there is no record; `update` (compare-and-set at
// `revision`) and `create` fail CONFLICT when someone wrote first.
struct RecordStore {
  std::function<Result<StoredRecord>(const std::string& node)> get;
  std::function<Result<uint64_t>(const std::string& node, const std::string& text, uint64_t revision)> update;
  std::function<Result<uint64_t>(const std::string& node, const std::string& text)> create;
};

// Lays `fields` over node's record, keeping every field this plugin does not own. The first try
// merges into `base`, the record as last watched, at its revision: no read. When the store
// refuses it (someone wrote since), the record is read again and merged again, up to 5 tries in
// all. True when written; false on any other failure, or after 5 conflicts.
bool write_record(const RecordStore& store, const std::string& node, const nlohmann::json& fields,
                  std::optional<StoredRecord> base);

// A use figure that moved by more than this share of the node's capacity is worth a write.
inline constexpr double kChangeShare = 0.05;

// Whether `after` differs from `before` by more than `share` of `total` (any change when total
// is 0).
bool moved_beyond(double before, double after, double total, double share = kChangeShare);

// Whether a heartbeat changes what the record keeps, compared with the node's previous one
// (none: yes). Decided on the structs, so that the many heartbeats that change nothing cost no
// JSON.
bool heartbeat_changes_record(const Heartbeat* previous, const Heartbeat& next, double share = kChangeShare);

// Whether a record that stores last_heartbeat `stored` (unix ms) is due for its refresh at the
// heartbeat of `latest`: `refresh_ms` or more later. The one refresh rule: needs_write() applies it
// to the fields written, the controller to the integer it keeps of them (no parse).
inline bool refresh_due(int64_t stored, int64_t latest, int64_t refresh_ms) { return latest - stored >= refresh_ms; }

// Whether the record must be written: a state, reason, boot id, address or check changed, the
// capacity or use moved by more than `change_share` of capacity, or the stored last_heartbeat is
// older than `refresh_ms`. Heartbeats alone never cause a write.
bool needs_write(const nlohmann::json& written, const nlohmann::json& fields, int64_t refresh_ms,
                 double change_share = kChangeShare);

// The node's management state in a record ("enabled" when absent or unreadable).
ManagementState management_of(const nlohmann::json& record);

// What a controller starting up knows of node `id` from its record: a field absent or of the wrong
// type (records come from anyone who can write the bucket) reads as its default.
KnownNode known_node(const std::string& id, const nlohmann::json& record);

}  // namespace nodeha::heartbeat
