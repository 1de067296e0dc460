// The record desks (docs/node-operations.md, "Who writes what"): an agent may write neither the
// `vms` nor the `tasks` bucket (its NATS permissions say so, docs/security.md). It asks the
// controller instead, on subjects that carry its node id, which the server lets only that node's
// agent publish on:
//   <prefix>.ctl.<node>.vm.write    {uuid, revision, record} or {uuid, revision, remove: true}
//                                   -> {revision}; refused conflict (the record changed since
//                                   `revision`: read again), not_yours, claim_refused, bad_value
//   <prefix>.ctl.<node>.task.report {task} (a finished local task of the node's journal)
//                                   -> {created}; refused not_yours, bad_value
//   <prefix>.ctl.<node>.vm.event    {uuid, event} (published, no reply): relayed on
//                                   <prefix>.evt.vm.<uuid> with "node" set to <node>, so an
//                                   agent speaks for its own node only
// The controller writes only what that node's agent may: see plugins/vms/desk_rules.h and the
// tasks plugin. One codec per request kind, shared by both sides.
#pragma once

#include "command.h"

#include <nodeha/plugin.hpp>

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace nodeha::desk {

inline constexpr const char* kConflict = "conflict";           // revision-checked write lost: read again
inline constexpr const char* kNotYours = "not_yours";          // the record is another node's
inline constexpr const char* kClaimRefused = "claim_refused";  // the recorded node has the VM

// The queue-group subjects a controller serves (the node is the token after "ctl").
std::string vm_write_subject(const Host& host, const std::string& node);
std::string task_report_subject(const Host& host, const std::string& node);
std::string vm_event_subject(const Host& host, const std::string& node);
// The node named by a desk subject, checked (NodeId), or bad_value.
std::optional<command::Error> node_of(const Host& host, const std::string& subject, std::string* node);

struct VmWrite {
  std::string uuid;        // canonical (VmUuid)
  uint64_t revision = 0;   // of the record the change was made from; 0: there was none
  nlohmann::json record;   // the whole new record (null when remove)
  bool remove = false;
};
std::string encode(const VmWrite& w);
std::optional<command::Error> decode(std::string_view body, VmWrite* out);

struct TaskReport {
  nlohmann::json task;  // a task record (task_record.h), finished
};
std::string encode(const TaskReport& r);
std::optional<command::Error> decode(std::string_view body, TaskReport* out);

struct VmEvent {
  std::string uuid;      // canonical (VmUuid)
  nlohmann::json event;  // an object with a string "event"
};
std::string encode(const VmEvent& e);
std::optional<command::Error> decode(std::string_view body, VmEvent* out);

// Controller side, at start: binds `bucket`, creating it on a new cluster, since agents, which
// read it, may not create buckets. Blocking (one KV round trip).
Status ensure_bucket(const Host& host, const std::string& bucket);

// Agent side. Sends the write and maps the answer: ok -> the new revision; conflict ->
// NODEHA_ERR_CONFLICT (vm_record::modify reads again); no controller answered -> UNAVAILABLE;
// a refusal -> INVALID with "<code>: <message>".
Result<uint64_t> send(const Host& host, const VmWrite& w);
// Ok when the controller stored the task or already had it; INVALID when it refused it (it never
// will take it); UNAVAILABLE, TIMEOUT... when it could not be asked (try again later).
Status send(const Host& host, const TaskReport& r);
// Publishes a VM event for the controller to relay (stamped with the time). Buffered while the
// bus reconnects; lost when no controller runs (events are news, not state).
void publish(const Host& host, const std::string& uuid, nlohmann::json event);

}  // namespace nodeha::desk
