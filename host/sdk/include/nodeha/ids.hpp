// Identifiers and size limits: one checking function per kind of id, and types that only that
// function can make ("parse, don't validate"). An id from outside (a command, a heartbeat, an
// agent request, the local socket, the config) becomes a NodeId, VmUuid or TaskId before it
// reaches a subject or a KV key, so no bus call ever carries an id nats-server would punish.
//
//   auto node = nodeha::NodeId::parse(req["node"].get<std::string>());
//   if (!node) return fail(node.status());          // NODEHA_ERR_INVALID, message shows the rule
//   host().kv_get("nodes", node->str());
//
// Header-only, no state; safe from any thread.
#pragma once

#include <nodeha/plugin.hpp>

#include <cstddef>
#include <string>
#include <string_view>

namespace nodeha {

// Size limits of what may arrive from outside; a payload over its limit is refused, never cut.
inline constexpr size_t kMaxNodeIdLength = 63;                 // a DNS label
inline constexpr size_t kVmUuidLength = 36;                    // 8-4-4-4-12
inline constexpr size_t kTaskIdLength = 16;                    // 64 random bits in hex
inline constexpr size_t kMaxCommandBytes = 64 * 1024;          // a command request
inline constexpr size_t kMaxDomainCommandBytes = 1024 * 1024;  // a request carrying domain XML
// A request listing a node's VMs (sched.place, sched.hold, node.migrate's `vms`): ~110 B per VM,
// so 100,000 VMs (the most parse_ids takes) fit. nats-server's max_payload is the tighter bound.
inline constexpr size_t kMaxBulkCommandBytes = 16 * 1024 * 1024;
inline constexpr size_t kMaxHeartbeatBytes = 2 * 1024 * 1024;  // ~95 B per VM measured: 10,000 VMs x2
inline constexpr size_t kMaxCheckBytes = 4 * 1024;             // a check verdict
inline constexpr size_t kMaxDetailLength = 1024;               // a check detail, an error text
inline constexpr size_t kMaxNameLength = 256;                  // a VM or check name
inline constexpr size_t kMaxEchoedLength = 64;                 // of a bad value quoted in a message

// At most the first `max` bytes of `v`, never splitting a UTF-8 character: outside text cut to a
// bound stays valid UTF-8, which JSON needs (nlohmann's dump throws on a split character).
inline std::string_view cut_text(std::string_view v, size_t max) {
  if (v.size() <= max) return v;
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(v[n]) & 0xC0) == 0x80) --n;
  return v.substr(0, n);
}

// A bad value as quoted in an error: at most kMaxEchoedLength bytes, then "…", so an error
// never carries a 5,000-byte id back. Cuts on a UTF-8 character boundary.
inline std::string echo_value(std::string_view v) {
  if (v.size() <= kMaxEchoedLength) return "\"" + std::string(v) + "\"";
  return "\"" + std::string(cut_text(v, kMaxEchoedLength)) + "\"… (" + std::to_string(v.size()) + " bytes)";
}

// "the request is 70000 bytes; the limit is 65536": the refusal of an oversize payload.
inline std::string over_limit(std::string_view what, size_t size, size_t limit) {
  return std::string(what) + " is " + std::to_string(size) + " bytes; the limit is " + std::to_string(limit);
}

namespace ids_detail {
inline bool alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }
inline bool hex(char c) { return (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || (c >= '0' && c <= '9'); }
inline std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

// What every id type shares: its checked text, compared as text. Only the id's own parse makes one.
template <class Self>
class IdBase {
 public:
  const std::string& str() const { return value_; }
  friend bool operator==(const Self& a, const Self& b) { return a.str() == b.str(); }
  friend bool operator!=(const Self& a, const Self& b) { return a.str() != b.str(); }
  friend bool operator<(const Self& a, const Self& b) { return a.str() < b.str(); }

 protected:
  IdBase() = default;
  explicit IdBase(std::string v) : value_(std::move(v)) {}

 private:
  std::string value_;
};
}  // namespace ids_detail

// A node: a DNS label, [A-Za-z0-9]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?. Kept as written (case
// matters: it is a subject token and a KV key).
class NodeId : public ids_detail::IdBase<NodeId> {
 public:
  static constexpr const char* kRule =
      "1-63 letters, digits, '-' or '_', starting and ending with a letter or digit";

  static Result<NodeId> parse(std::string_view s) {
    bool ok = !s.empty() && s.size() <= kMaxNodeIdLength && ids_detail::alnum(s.front()) && ids_detail::alnum(s.back());
    for (char c : s) ok = ok && (ids_detail::alnum(c) || c == '-' || c == '_');
    if (!ok) return Status(NODEHA_ERR_INVALID, echo_value(s) + " is not a node id: " + kRule);
    return NodeId(std::string(s));
  }

 private:
  friend class Result<NodeId>;  // holds an empty one beside a failure only
  NodeId() = default;
  explicit NodeId(std::string v) : IdBase(std::move(v)) {}
};

// A VM: a canonical 36-character uuid (8-4-4-4-12 hex digits). Either case is accepted and kept
// in lower case, as libvirt reports it, so the same VM is always the same KV key.
class VmUuid : public ids_detail::IdBase<VmUuid> {
 public:
  static constexpr const char* kRule = "a uuid of 36 characters, 8-4-4-4-12 hex digits";

  static Result<VmUuid> parse(std::string_view s) {
    bool ok = s.size() == kVmUuidLength;
    for (size_t i = 0; ok && i < s.size(); ++i)
      ok = (i == 8 || i == 13 || i == 18 || i == 23) ? s[i] == '-' : ids_detail::hex(s[i]);
    if (!ok) return Status(NODEHA_ERR_INVALID, echo_value(s) + " is not a VM uuid: " + kRule);
    return VmUuid(ids_detail::lower(s));
  }

 private:
  friend class Result<VmUuid>;
  VmUuid() = default;
  explicit VmUuid(std::string v) : IdBase(std::move(v)) {}
};

// A task: 16 hex digits (task_record::new_id makes them from 64 random bits). Either case is
// accepted and kept in lower case, as they are made.
class TaskId : public ids_detail::IdBase<TaskId> {
 public:
  static constexpr const char* kRule = "16 hex digits";

  static Result<TaskId> parse(std::string_view s) {
    bool ok = s.size() == kTaskIdLength;
    for (char c : s) ok = ok && ids_detail::hex(c);
    if (!ok) return Status(NODEHA_ERR_INVALID, echo_value(s) + " is not a task id: " + kRule);
    return TaskId(ids_detail::lower(s));
  }

 private:
  friend class Result<TaskId>;
  TaskId() = default;
  explicit TaskId(std::string v) : IdBase(std::move(v)) {}
};

}  // namespace nodeha
