#include "format.h"

#include <fmt/format.h>

#include <cmath>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <unistd.h>

namespace nodeha::cli {

std::string str(const nlohmann::json& j, const char* key) {
  if (!j.is_object()) return {};
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

int64_t num(const nlohmann::json& j, const char* key) {
  if (!j.is_object()) return 0;
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return 0;
  if (it->is_number_integer()) return it->get<int64_t>();
  double d = it->get<double>();  // a cast of a double beyond int64 is undefined
  return std::isfinite(d) && std::fabs(d) < 9.2e18 ? static_cast<int64_t>(d) : 0;
}

bool flag(const nlohmann::json& j, const char* key) {
  if (!j.is_object()) return false;
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() && it->get<bool>();
}

std::string or_dash(std::string s) { return s.empty() ? "-" : s; }

void print_document(const nlohmann::json& j) { std::cout << j.dump(2) << '\n'; }

std::string format_ms(int64_t ms) {
  if (ms < 1000) return fmt::format("{}ms", ms);
  if (ms < 60'000) return fmt::format("{:.1f}s", ms / 1000.0);
  return fmt::format("{}m{:02}s", ms / 60'000, (ms / 1000) % 60);
}

std::string format_mib(int64_t mib) {
  return mib < 1024 ? fmt::format("{}M", mib) : fmt::format("{:.1f}G", mib / 1024.0);
}

std::string format_bytes(int64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  size_t u = 0;
  while (v >= 1024 && u + 1 < std::size(units)) v /= 1024, ++u;
  return u == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.1f} {}", v, units[u]);
}

std::string format_time(int64_t unix_ms) {
  if (unix_ms <= 0) return "-";
  std::time_t t = unix_ms / 1000;
  std::tm tm{};
  char out[16] = "?";
  if (gmtime_r(&t, &tm)) std::strftime(out, sizeof out, "%H:%M:%S", &tm);
  return out;
}

std::string plural(size_t n, const char* what) { return fmt::format("{} {}{}", n, what, n == 1 ? "" : "s"); }

bool colour_on() {
  static const bool on = isatty(STDOUT_FILENO) && !std::getenv("NO_COLOR");
  return on;
}

std::string coloured(const std::string& text, const std::string& state) {
  if (!colour_on()) return text;
  const char* code = nullptr;
  if (state == "normal" || state == "succeeded" || state == "enabled") code = "32";
  else if (state == "error" || state == "partial" || state == "disabled" || state == "waiting") code = "33";
  else if (state == "unreachable" || state == "failed" || state == "drained" || state == "cancelled") code = "31";
  return code ? fmt::format("\033[{}m{}\033[0m", code, text) : text;
}

}  // namespace nodeha::cli
