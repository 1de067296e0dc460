// The heartbeat message an agent publishes on `<prefix>.hb.<node>`, and its JSON codec.
//
// Pure: no bus, no clock. Decoding is strict, because a heartbeat decides a node's monitor
// state: malformed JSON, a missing required field (node, seq, boot_id, interval_ms), a wrong
// type or an unknown field (at any level) is refused with a message naming the field.
//
// Wire versions (docs/architecture.md, "Heartbeat wire format"): version 1 has no "v" and
// always carries the whole VM list; version 2 says "v":2 and carries "vms_digest", the digest of
// its VM list (vms_digest()), and the list itself only when it changed or the controller asked.
// An agent speaks 2 only after a controller said it reads it (agent.<node>.hb.wire, WireGrant):
// a controller of version 1 refuses unknown fields.
//
// Wire form (optional fields in brackets; encode_heartbeat writes every field its version has):
//   {["v":2,]"node":"n1","seq":7,"boot_id":"6f1c…","interval_ms":15000,["sent_at":1700000000000,]
//    ["capacity":{"vcpus":32,"memory_mib":65536,"disk_gib":900},]
//    ["use":{"vcpus":4,"memory_mib":8192,"disk_gib":80,"vms_running":2},]
//    ["addresses":{"management":"10.0.0.5","business":"192.168.10.5"},]
//    ["vms":[{"uuid":"…","name":"web-1","state":"running"}],]["vms_digest":"9f86d081884c7d65",]
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

inline constexpr uint32_t kWireVersion = 2;  // the highest heartbeat wire version this code speaks

struct Heartbeat {
  uint32_t version = 1;  // the wire version: 1 (no "v" on the wire) or 2
  std::string node;     // required; a node id (NodeId::parse: it is part of subjects)
  uint64_t seq = 0;     // required; restarts when the agent process restarts
  std::string boot_id;  // required, non-empty; changes when the node reboots
  int64_t sent_at = 0;  // unix milliseconds on the agent's clock (informational)
  int64_t interval_ms = 0;  // required, > 0: the agent's own heartbeat interval
  Capacity capacity;
  Usage use;
  std::map<std::string, std::string> addresses;  // network name -> address
  std::vector<VmInfo> vms;
  bool has_vms = true;     // version 2: whether `vms` is on the wire (version 1: always)
  std::string vms_digest;  // version 2: vms_digest() of the agent's whole list, sent or not
  std::vector<Check> checks;

  bool operator==(const Heartbeat&) const = default;
};

// 16 lower-case hex digits (FNV-1a, 64 bits) over the list in uuid order: equal lists, equal
// digests, whatever order libvirt listed them in.
std::string vms_digest(const std::vector<VmInfo>& vms);

// A controller's word to one agent on <prefix>.agent.<node>.hb.wire: it reads heartbeats up to
// `wire`; `full`: send the whole VM list in the next one, now.
//   {"wire":2,["full":true]}
struct WireGrant {
  uint32_t wire = 1;
  bool full = false;

  bool operator==(const WireGrant&) const = default;
};
Result<WireGrant> decode_wire_grant(std::string_view json);
std::string encode_wire_grant(const WireGrant& g);

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
// `max_version`: the highest wire version this side reads; a heartbeat of a higher one, or with
// a field of one (a controller pinned to version 1 refuses "v" and "vms_digest" as unknown, as
// version 1 did), is refused.
Result<Heartbeat> decode_heartbeat(std::string_view json, uint32_t max_version = kWireVersion);

// The highest wire version this side speaks (agent) or takes (controller): its `wire` setting.
// Throws ConfigError outside 1..kWireVersion.
uint32_t wire_setting(const Host& host);

std::string encode_heartbeat(const Heartbeat& hb);

// Now on the wall clock, in ms since the epoch: the unit of a heartbeat's and a record's times.
int64_t unix_ms();

}  // namespace nodeha::heartbeat
