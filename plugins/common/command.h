// Commands and replies shared by every controller plugin: the reply envelope of the BRIEF
// ({"ok":true,"result":…} / {"ok":false,"error":{"code","message"}}) and strict decoding of
// request bodies, so every plugin refuses bad input the same way, with its own code.
#pragma once

#include <nodeha/plugin.hpp>

#include <nlohmann/json.hpp>

#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace nodeha::command {

// Error codes every command may return; plugins add their own (node_locked, ...).
inline constexpr const char* kBadJson = "bad_json";            // not JSON, or not an object
inline constexpr const char* kUnknownField = "unknown_field";  // a field the command does not take
inline constexpr const char* kBadType = "bad_type";            // a field of the wrong type
inline constexpr const char* kMissingField = "missing_field";  // a required field is absent
inline constexpr const char* kBadValue = "bad_value";          // right type, impossible value
inline constexpr const char* kUnknownNode = "unknown_node";    // no such node
inline constexpr const char* kUnavailable = "unavailable";     // the store or bus failed; retry
inline constexpr const char* kInternal = "internal";

struct Error {
  std::string code;
  std::string message;
};

std::string ok(const nlohmann::json& result);
std::string fail(const Error& e);
std::string fail(std::string_view code, std::string_view message);

enum class Type { String, Bool, Integer, Number, Array, Object };

struct Field {
  const char* name;
  Type type;
  bool required = false;
};

// Parses `body` as a JSON object with exactly these fields (unknown ones refused); an empty body
// is an empty object. The error names the field and what was expected.
std::optional<Error> decode(std::string_view body, std::initializer_list<Field> fields, nlohmann::json* out);
// The same, for a field list kept in a table (fuzz/command_fuzz.cpp).
std::optional<Error> decode_fields(std::string_view body, std::span<const Field> fields, nlohmann::json* out);

// "node" must name a node id that is safe in a subject.
std::optional<Error> check_node_id(const std::string& node);

}  // namespace nodeha::command
