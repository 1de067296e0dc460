#include "event_log.h"

#include "evidence.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <ctime>

namespace nodeha::cli::event_log {
namespace {

using nlohmann::json;

std::optional<std::string> base64_decode(const std::string& in) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    if (c == '=') break;
    int v = value(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return out;
}

std::string text(const json& j, const char* key) {
  auto f = j.find(key);
  if (f == j.end() || f->is_null()) return "";
  return f->is_string() ? f->get<std::string>() : f->dump();
}

// The stream holds what any controller wrote: a field of another type reads as 0.
int64_t integer(const json& j, const char* key) {
  auto f = j.find(key);
  return f != j.end() && f->is_number_integer() ? f->get<int64_t>() : 0;
}

std::string utc_ms(int64_t unix_ms) {
  if (unix_ms < 0 || unix_ms > 253402300799999) unix_ms = 0;  // gmtime_r fails after year 9999
  std::time_t secs = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return fmt::format("{}.{:03}", buf, unix_ms % 1000);
}

// "from -> to" as each kind of event has it.
std::string change_of(const json& r) {
  std::string e = text(r, "event");
  auto arrow = [](const std::string& a, const std::string& b) { return (a.empty() ? "?" : a) + " -> " + (b.empty() ? "?" : b); };
  if (e == "monitor" || e == "management" || e == "reason") return arrow(text(r, "from"), text(r, "to"));
  if (e == "registered") return "-> " + text(r, "monitor");
  if (e == "recovery") return text(r, "state");
  if (e == "fenced") return text(r, "method");
  if (e == "task") return text(r, "kind") + " " + text(r, "state");
  if (e == "moved") return arrow(text(r, "from"), text(r, "to"));
  if (e == "claimed") return arrow(text(r, "from"), text(r, "node"));
  if (e == "migrated" || e == "migration_failed") return arrow(text(r, "node"), text(r, "dest_node"));
  return text(r, "node");
}

}  // namespace

std::string stream_name(const std::string& prefix) {
  std::string name = prefix;
  for (auto& c : name) c = (c == '.' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  return name + "_EVENTS";
}

std::string get_subject(const std::string& prefix) { return "$JS.API.STREAM.MSG.GET." + stream_name(prefix); }

std::string request_body(uint64_t from_seq, const std::string& subject) {
  return json{{"seq", from_seq}, {"next_by_subj", subject}}.dump();
}

Answer decode_answer(const std::string& body) {
  json j = json::parse(body, nullptr, false);
  if (!j.is_object()) return Failure{0, "the JetStream answer is not JSON: " + body.substr(0, 200)};
  if (auto e = j.find("error"); e != j.end() && e->is_object()) {
    int code = static_cast<int>(integer(*e, "code"));
    if (code == 404 && integer(*e, "err_code") == 10037) return End{};  // no message found
    std::string description = text(*e, "description");
    return Failure{code, description.empty() ? "error" : description};
  }
  auto m = j.find("message");
  if (m == j.end() || !m->is_object() || !(*m)["seq"].is_number_unsigned())
    return Failure{0, "the JetStream answer holds no message: " + body.substr(0, 200)};
  Event ev;
  ev.seq = (*m)["seq"].get<uint64_t>();
  ev.subject = text(*m, "subject");
  ev.stored_ms = parse_utc(text(*m, "time")).value_or(0);
  auto data = base64_decode(text(*m, "data"));
  ev.record = data ? json::parse(*data, nullptr, false) : json();
  if (!ev.record.is_object()) ev.record = json{{"event", "?"}, {"undecodable", text(*m, "data").substr(0, 200)}};
  return ev;
}

std::optional<int64_t> parse_utc(const std::string& t) {
  std::tm tm{};
  int frac_digits = 0;
  int64_t frac = 0;
  size_t i = 0;
  auto digits = [&](size_t n, int* out) {
    if (i + n > t.size()) return false;
    int v = 0;
    for (size_t k = 0; k < n; ++k, ++i) {
      if (!std::isdigit(static_cast<unsigned char>(t[i]))) return false;
      v = v * 10 + (t[i] - '0');
    }
    *out = v;
    return true;
  };
  auto sep = [&](char c) { return i < t.size() && t[i++] == c; };
  if (!digits(4, &tm.tm_year) || !sep('-') || !digits(2, &tm.tm_mon) || !sep('-') || !digits(2, &tm.tm_mday) || !sep('T') ||
      !digits(2, &tm.tm_hour) || !sep(':') || !digits(2, &tm.tm_min) || !sep(':') || !digits(2, &tm.tm_sec))
    return std::nullopt;
  if (i < t.size() && t[i] == '.')
    for (++i; i < t.size() && std::isdigit(static_cast<unsigned char>(t[i])); ++i, ++frac_digits)
      if (frac_digits < 3) frac = frac * 10 + (t[i] - '0');
  if (i + 1 != t.size() || t[i] != 'Z' || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
      tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
    return std::nullopt;
  for (int k = std::min(frac_digits, 3); k < 3; ++k) frac *= 10;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return static_cast<int64_t>(timegm(&tm)) * 1000 + frac;
}

std::optional<uint64_t> last_seq(const std::string& info_answer) {
  json j = json::parse(info_answer, nullptr, false);
  if (!j.is_object() || !j.contains("state") || !j["state"].is_object()) return std::nullopt;
  auto f = j["state"].find("last_seq");
  if (f == j["state"].end() || !f->is_number_unsigned()) return std::nullopt;
  return f->get<uint64_t>();
}

std::vector<Event> newest(std::vector<Event> events, size_t limit, int64_t since_ms) {
  if (since_ms > 0)
    events.erase(std::remove_if(events.begin(), events.end(),
                                [&](const Event& e) { return integer(e.record, "time") < since_ms; }),
                 events.end());
  if (events.size() > limit) events.erase(events.begin(), events.end() - static_cast<std::ptrdiff_t>(limit));
  return events;
}

std::string timeline_line(const json& r) {
  std::string summary = "(no evidence recorded)", who;
  if (auto e = r.find("evidence"); e != r.end()) {
    if (auto ev = evidence::from_json(*e)) {
      summary = ev->summary;
      who = "by " + ev->by + (ev->epoch ? ", epoch " + std::to_string(ev->epoch) : "");
    } else {
      summary = "(unreadable evidence: " + ev.status().message() + ")";
    }
  }
  std::string line = fmt::format("{}  {:<18} {:<28} {}{}", utc_ms(integer(r, "time")), text(r, "event"), change_of(r),
                                 summary, who.empty() ? "" : "  (" + who + ")");
  if (text(r, "event") == "task" && r.contains("steps") && r["steps"].is_array())
    for (const auto& s : r["steps"]) {
      std::string name = text(s, "name");
      line += fmt::format("\n    step {} {}: {}", name.empty() ? text(s, "vm") : name + " (" + text(s, "vm") + ")",
                          text(s, "state"), text(s, "summary"));
    }
  return line;
}

std::optional<int64_t> parse_since(const std::string& t) {
  size_t digits = 0;
  while (digits < t.size() && std::isdigit(static_cast<unsigned char>(t[digits]))) ++digits;
  if (digits == 0 || digits > 9 || digits + 1 != t.size()) return std::nullopt;
  int64_t n = std::stoll(t.substr(0, digits));
  int64_t scale = t.back() == 's' ? 1000 : t.back() == 'm' ? 60'000 : t.back() == 'h' ? 3'600'000 : t.back() == 'd' ? 86'400'000 : 0;
  if (scale == 0 || n <= 0) return std::nullopt;
  return n * scale;
}

}  // namespace nodeha::cli::event_log
