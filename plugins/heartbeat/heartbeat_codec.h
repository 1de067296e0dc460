// The heartbeat message an agent publishes on `<prefix>.hb.<node>`, and its JSON codec.
//
// Pure: no bus, no clock. Decoding is strict, because a heartbeat decides a node's monitor
// state: malformed JSON, a missing required field (node, seq, boot_id, interval_ms), a wrong
// type or an unknown field (at any level) is refused with a message naming the field.
//
// Wire form (optional fields in brackets; encode_heartbeat always writes every field):
//   {"node":"n1","seq":7,"boot_id":"6f1c…","interval_ms":15000,["sent_at":1700000000000,]
//    ["capacity":{"vcpus":32,"memory_mib":65536,"disk_gib":900},]
//    ["use":{"vcpus":4,"memory_mib":8192,"disk_gib":80,"vms_running":2},]
//    ["addresses":{"management":"10.0.0.5","business":"192.168.10.5"},]
//    ["vms":[{"uuid":"…","name":"web-1","state":"running"}],]
//    ["checks":[{"name":"netcheck","ok":false,"detail":"eth1 target 10.0.0.1 unreachable",
//                ["time":1700000000000]}]]}
#pragma once

#include <nodeha/plugin.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nodeha::heartbeat {

// One health check's verdict, as the agent reports it ("detail" is optional on the wire).
struct Check {
  std::string name;
  bool ok = true;
  std::string detail;
  // When the check issued this verdict (the agent's clock, unix ms; 0: unknown), so that a
  // heartbeat built before a newer verdict reached the agent's heartbeat cannot undo it. Not part
  // of equality: two checks are equal when their verdicts are.
  int64_t at = 0;

  bool operator==(const Check& o) const { return name == o.name && ok == o.ok && detail == o.detail; }
};

struct Capacity {
  uint32_t vcpus = 0;
  uint64_t memory_mib = 0;
  uint64_t disk_gib = 0;

  bool operator==(const Capacity&) const = default;
};

struct Usage {
  uint32_t vcpus = 0;
  uint64_t memory_mib = 0;
  uint64_t disk_gib = 0;
  uint32_t vms_running = 0;

  bool operator==(const Usage&) const = default;
};

struct VmInfo {
  std::string uuid;
  std::string name;
  std::string state;  // libvirt's word: "running", "shutoff", "paused", ...

  bool operator==(const VmInfo&) const = default;
};

struct Heartbeat {
  std::string node;     // required; a node id (NodeId::parse: it is part of subjects)
  uint64_t seq = 0;     // required; restarts when the agent process restarts
  std::string boot_id;  // required, non-empty; changes when the node reboots
  int64_t sent_at = 0;  // unix milliseconds on the agent's clock (informational)
  int64_t interval_ms = 0;  // required, > 0: the agent's own heartbeat interval
  Capacity capacity;
  Usage use;
  std::map<std::string, std::string> addresses;  // network name -> address
  std::vector<VmInfo> vms;
  std::vector<Check> checks;

  bool operator==(const Heartbeat&) const = default;
};

// A verdict as a check publishes it on <prefix>.check.<node>.<name> (netcheck's message):
// {"node", "name", "ok", "detail"?, "time"?, ...}; other fields are the check's own and ignored.
// `node` is empty when absent, else a node id (NodeId::parse). INVALID, with the reason, when
// name or ok is missing or of the wrong type, an id is bad, a string is over its limit
// (kMaxNameLength, kMaxDetailLength) or the message is over kMaxCheckBytes.
struct CheckMessage {
  std::string node;
  Check check;
};
Result<CheckMessage> decode_check_message(std::string_view json);

// Errors carry NODEHA_ERR_INVALID and a message such as
// `heartbeat: field "seq" must be an unsigned integer, got string`. The node is a NodeId, VM
// uuids are VmUuids (kept in lower case), strings are bounded (kMaxNameLength; a check's detail
// kMaxDetailLength) and the whole message by kMaxHeartbeatBytes (nodeha/ids.hpp).
Result<Heartbeat> decode_heartbeat(std::string_view json);

std::string encode_heartbeat(const Heartbeat& hb);

// Now on the wall clock, in ms since the epoch: the unit of a heartbeat's and a record's times.
int64_t unix_ms();

}  // namespace nodeha::heartbeat
