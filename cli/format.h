// Small pieces of text every command prints: fields read leniently from replies, durations,
// sizes, counts, and colour (only when stdout is a terminal).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

namespace nodeha::cli {

// The string at `key`, or "" when absent or not a string.
std::string str(const nlohmann::json& j, const char* key);
// The number at `key`, or 0 when absent, not a number or beyond int64.
int64_t num(const nlohmann::json& j, const char* key);
// The boolean at `key`, or false when absent or not a boolean.
bool flag(const nlohmann::json& j, const char* key);
std::string or_dash(std::string s);
// `j` on stdout as the one JSON document of --json.
void print_document(const nlohmann::json& j);

std::string format_ms(int64_t ms);           // 850ms, 4.2s, 3m07s
std::string format_mib(int64_t mib);         // 512M, 15.6G
std::string format_bytes(int64_t bytes);     // 312.0 MiB
std::string format_time(int64_t unix_ms);    // 12:01:07 (UTC), - for 0
std::string plural(size_t n, const char* what);  // 1 VM, 3 VMs

// Whether stdout is a terminal and NO_COLOR is unset (decided once).
bool colour_on();
// `text` in the colour a state deserves (green normal/succeeded, yellow error/partial/disabled,
// red unreachable/failed/drained) when colour_on(); otherwise `text` as it is.
std::string coloured(const std::string& text, const std::string& state);

}  // namespace nodeha::cli
