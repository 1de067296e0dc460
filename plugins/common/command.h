// Commands and replies shared by every controller plugin: the reply envelope of the BRIEF
// ({"ok":true,"result":…} / {"ok":false,"error":{"code","message","changes"?}}) and strict decoding of
// request bodies, so every plugin refuses bad input the same way, with its own code.
#pragma once

#include <nodeha/ids.hpp>
#include <nodeha/plugin.hpp>

#include <nlohmann/json.hpp>

#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace nodeha::command {

// Error codes every command may return; plugins add their own (node_locked, ...).
inline constexpr const char* kBadJson = "bad_json";            // not JSON, or not an object
inline constexpr const char* kUnknownField = "unknown_field";  // a field the command does not take
inline constexpr const char* kBadType = "bad_type";            // a field of the wrong type
inline constexpr const char* kMissingField = "missing_field";  // a required field is absent
inline constexpr const char* kBadValue = "bad_value";          // right type, impossible value
inline constexpr const char* kUnknownNode = "unknown_node";    // no such node
inline constexpr const char* kUnknownVm = "unknown_vm";        // no such VM
inline constexpr const char* kUnavailable = "unavailable";     // the store or bus failed; retry
inline constexpr const char* kInternal = "internal";

struct Error {
  std::string code;
  std::string message;
  // What a person reads in `message`, as data, when there is more than a sentence: a refused
  // plan's `changes` ([{what, vm?, node?, was, now}], plugins/tasks/plans.h). Null: none.
  nlohmann::json changes;
};

std::string ok(const nlohmann::json& result);
std::string fail(const Error& e);
std::string fail(std::string_view code, std::string_view message);

// A reply envelope as another process sent it (an agent, a controller): read without trusting a
// field's type. `malformed` when it is not an envelope (then ok is false, code internal).
struct Envelope {
  bool ok = false;
  bool malformed = false;
  nlohmann::json result;  // an object (empty when absent or not an object)
  std::string code, message;
};
Envelope parse_envelope(std::string_view reply);

enum class Type { String, Bool, Integer, Number, Array, Object, StringOrInteger };

struct Field {
  const char* name;
  Type type;
  bool required = false;
};

// Parses `body` as a JSON object with exactly these fields (unknown ones refused); an empty body
// is an empty object. The error names the field and what was expected. A body over `limit` bytes
// is refused with bad_value before it is parsed (kMaxDomainCommandBytes for requests that carry
// domain XML, kMaxCommandBytes for every other).
std::optional<Error> decode(std::string_view body, std::initializer_list<Field> fields, nlohmann::json* out,
                            size_t limit = kMaxCommandBytes);
// The same, for a field list kept in a table (fuzz/command_fuzz.cpp).
std::optional<Error> decode_fields(std::string_view body, std::span<const Field> fields, nlohmann::json* out,
                                   size_t limit = kMaxCommandBytes);

// The id in a request field, checked by its type's one parse function (NodeId, VmUuid, TaskId);
// a bad one is bad_value with the rule: `field "node": "xx…" is not a node id: 1-63 letters, ...`.
// Call it before any bus or KV call that uses the id. `value` must be a string (decode checked).
template <class Id>
std::optional<Error> parse_id(std::string_view field, const nlohmann::json& value, std::optional<Id>* out) {
  auto r = value.is_string() ? Id::parse(value.get_ref<const std::string&>())
                             : Result<Id>(Status(NODEHA_ERR_INVALID, std::string("must be a string, got ") + value.type_name()));
  if (!r) return Error{kBadValue, "field \"" + std::string(field) + "\": " + r.status().message()};
  *out = r.value();
  return std::nullopt;
}

// Every element of an array field, each by parse_id ("vms[3]" names a bad one); at most `max`.
template <class Id>
std::optional<Error> parse_ids(std::string_view field, const nlohmann::json& array, std::vector<Id>* out,
                               size_t max = 100000) {
  if (!array.is_array()) return Error{kBadType, "field \"" + std::string(field) + "\" must be an array"};
  if (array.size() > max)
    return Error{kBadValue, "field \"" + std::string(field) + "\" has " + std::to_string(array.size()) +
                                " entries; the limit is " + std::to_string(max)};
  out->clear();
  for (size_t i = 0; i < array.size(); ++i) {
    std::optional<Id> one;
    if (auto e = parse_id(std::string(field) + "[" + std::to_string(i) + "]", array[i], &one)) return e;
    out->push_back(*one);
  }
  return std::nullopt;
}

// Lists in pages (node.list, vm.list, task.list). nats-server refuses a message over its
// max_payload (1 MiB by default) and the caller would hear nothing: a list is sent in the order of
// its keys (a node id; a VM uuid; a task's newest-first rank, opaque to callers), from the first
// key after the request's optional "after", in pages of about
// kPageBytes; a page that was cut names its last key in "next", which the caller sends back as
// "after" for the rest. Each page is read anew: no key comes twice, and an item added or removed
// meanwhile is in the pages read after the change.
inline constexpr size_t kPageBytes = 384 * 1024;
inline constexpr size_t kMaxAfterBytes = 256;

// The request's "after" (decode took it as a string; "" when absent), at most kMaxAfterBytes.
std::optional<Error> page_after(const nlohmann::json& request, std::string* after);

class Page {
 public:
  explicit Page(size_t limit = kPageBytes) : limit_(limit) {}
  // Takes `item`, of key `key` (keys given in increasing order), unless the page already holds
  // `limit` bytes: then returns false, and the page is cut after the last key it took. The first
  // item is always taken.
  bool add(const std::string& key, nlohmann::json item);
  // Puts the items under result[list_key], and "next" when the page was cut.
  void put(nlohmann::json* result, const char* list_key) &&;

 private:
  size_t limit_;
  size_t bytes_ = 0;
  bool cut_ = false;
  std::string last_;
  nlohmann::json items_ = nlohmann::json::array();
};

}  // namespace nodeha::command
