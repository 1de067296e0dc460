// Lenient reads of one field of a KV record. Records come from a bucket that anyone with write
// access shapes, so a reader never trusts a field's type: a field absent or of the wrong type
// reads as the fallback (nlohmann's value() throws instead). Header-only, for the pure cores.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <limits>
#include <string>

namespace nodeha::record {

inline const nlohmann::json& field(const nlohmann::json& record, const char* key) {
  static const nlohmann::json kNone;
  auto it = record.is_object() ? record.find(key) : record.end();
  return it != record.end() ? *it : kNone;
}

inline std::string text(const nlohmann::json& record, const char* key, const char* fallback = "") {
  const auto& f = field(record, key);
  return f.is_string() ? f.get<std::string>() : std::string(fallback);
}

inline bool flag(const nlohmann::json& record, const char* key, bool fallback = false) {
  const auto& f = field(record, key);
  return f.is_boolean() ? f.get<bool>() : fallback;
}

// An integer in [minimum, maximum]; anything else (a fraction, a string, out of range) is 0.
inline int64_t integer(const nlohmann::json& record, const char* key,
                       int64_t minimum = std::numeric_limits<int64_t>::min(),
                       int64_t maximum = std::numeric_limits<int64_t>::max()) {
  const auto& f = field(record, key);
  if (!f.is_number_integer()) return 0;
  if (f.is_number_unsigned() && f.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max())) return 0;
  int64_t n = f.get<int64_t>();
  return n >= minimum && n <= maximum ? n : 0;
}

}  // namespace nodeha::record
