#include "nats_limits.h"

#include <cstdio>
#include <string>

namespace nodeha::nats_limits {
namespace {

// The longest JetStream API subject a KV call wraps `$KV.<bucket>.<key>` in: a consumer create,
// "$JS.API.CONSUMER.CREATE.KV_<bucket>.<22-character name>.", before the KV subject.
constexpr size_t kKvApiBytes = sizeof("$JS.API.CONSUMER.CREATE.KV_") - 1 + 1 + 22 + 1;

// A name as an operator can read it in a log: the first bytes, escaped, and the length.
std::string shown(std::string_view s) {
  constexpr size_t kShown = 48;
  std::string out = "\"";
  for (size_t i = 0; i < s.size() && i < kShown; ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  out += s.size() > kShown ? "...\"" : "\"";
  if (s.size() > kShown) out += " (" + std::to_string(s.size()) + " bytes)";
  return out;
}

std::string byte_at(std::string_view s, size_t i) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "byte 0x%02x at offset %zu", static_cast<unsigned char>(s[i]), i);
  return buf;
}

// Tokens between '.': none empty; '*' and '>' only as whole tokens, '>' only last, and neither
// unless `wildcards`.
std::string check_tokens(const std::string& what, std::string_view s, bool wildcards) {
  size_t start = 0;
  for (;;) {
    size_t dot = s.find('.', start);
    std::string_view token = s.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (token.empty()) return what + " " + shown(s) + " has an empty token (a leading, trailing or doubled '.')";
    bool last = dot == std::string_view::npos;
    if (token == "*" || token == ">") {
      if (!wildcards) return what + " " + shown(s) + " has a wildcard token ('*' or '>'); only a subscription may";
      if (token == ">" && !last) return what + " " + shown(s) + ": '>' may only be the last token";
    }
    if (last) return "";
    start = dot + 1;
  }
}

// Not empty; no space or control byte (they end a name on the protocol line).
std::string check_bytes(const std::string& what, std::string_view s) {
  if (s.empty()) return what + " is empty";
  for (size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c <= 0x20 || c == 0x7f) return what + " " + shown(s) + " has a space or control character (" + byte_at(s, i) + ")";
  }
  return "";
}

std::string check_subject(const std::string& what, std::string_view s, bool wildcards) {
  if (auto why = check_bytes(what, s); !why.empty()) return why;
  return check_tokens(what, s, wildcards);
}

std::string check_line(const std::string& what, size_t names_bytes, const Limits& limits) {
  if (names_bytes + kLineOverhead <= limits.max_control_line) return "";
  size_t room = limits.max_control_line > kLineOverhead ? limits.max_control_line - kLineOverhead : 0;
  return what + " is too long for one protocol line: " + std::to_string(names_bytes) + " bytes of names, at most " +
         std::to_string(room) + " fit nats-server's max_control_line of " + std::to_string(limits.max_control_line) +
         " bytes ([nats] max_control_line)";
}

std::string check_payload(size_t bytes, size_t room, const Limits& limits) {
  if (bytes + room <= limits.max_payload) return "";
  return "a payload of " + std::to_string(bytes) + " bytes" +
         (room ? " (plus " + std::to_string(room) + " bytes kept for headers)" : std::string()) +
         " is over the server's max_payload of " + std::to_string(limits.max_payload) + " bytes";
}

bool key_byte(unsigned char c, bool pattern) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '/' ||
         c == '_' || c == '=' || c == '.' || (pattern && (c == '*' || c == '>'));
}

std::string check_key(std::string_view key, bool pattern) {
  std::string what = pattern ? "kv key pattern" : "kv key";
  if (key.empty()) return what + " is empty";
  const char* rule = pattern ? "; a key pattern is made of [-/_=.a-zA-Z0-9] and '*'/'>' tokens"
                             : "; a key is made of [-/_=.a-zA-Z0-9] and does not start or end with '.'";
  for (size_t i = 0; i < key.size(); ++i)
    if (!key_byte(static_cast<unsigned char>(key[i]), pattern)) return what + " " + shown(key) + " has " + byte_at(key, i) + rule;
  if (auto why = check_tokens(what, key, pattern); !why.empty()) return why + rule;
  if (pattern) {
    for (size_t i = 0; i < key.size(); ++i) {
      bool wild = key[i] == '*' || key[i] == '>';
      bool alone = (i == 0 || key[i - 1] == '.') && (i + 1 == key.size() || key[i + 1] == '.');
      if (wild && !alone) return what + " " + shown(key) + ": '*' and '>' must be whole tokens";
    }
  }
  return "";
}

}  // namespace

std::string check_publish(std::string_view subject, std::string_view reply, size_t payload, const Limits& limits) {
  if (auto why = check_subject("subject", subject, false); !why.empty()) return why;
  if (!reply.empty())
    if (auto why = check_subject("reply subject", reply, false); !why.empty()) return why;
  if (auto why = check_line("subject " + shown(subject), subject.size() + reply.size(), limits); !why.empty()) return why;
  return check_payload(payload, 0, limits);
}

std::string check_subscribe(std::string_view subject, std::string_view queue, const Limits& limits) {
  if (auto why = check_subject("subject", subject, true); !why.empty()) return why;
  if (!queue.empty())
    if (auto why = check_bytes("queue group", queue); !why.empty()) return why;
  return check_line("subject " + shown(subject), subject.size() + queue.size(), limits);
}

std::string check_bucket(std::string_view bucket) {
  if (bucket.empty()) return "kv bucket name is empty";
  for (size_t i = 0; i < bucket.size(); ++i) {
    auto c = static_cast<unsigned char>(bucket[i]);
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok) return "kv bucket " + shown(bucket) + " has " + byte_at(bucket, i) + "; a bucket name is made of [-_a-zA-Z0-9]";
  }
  return "";
}

std::string check_kv(std::string_view bucket, std::string_view key, bool pattern, size_t value_bytes,
                     const Limits& limits) {
  if (auto why = check_bucket(bucket); !why.empty()) return why;
  if (auto why = check_key(key, pattern); !why.empty()) return why;
  // $KV.<bucket>.<key>, inside a JetStream API subject that names the bucket's stream again.
  size_t names = kKvApiBytes + bucket.size() + sizeof("$KV..") - 1 + bucket.size() + key.size();
  std::string what = "kv key " + shown(key) + " (as $KV." + std::string(bucket) + ".<key> in a JetStream request)";
  if (auto why = check_line(what, names, limits); !why.empty()) return why;
  return value_bytes ? check_payload(value_bytes, kKvHeaderRoom, limits) : "";
}

}  // namespace nodeha::nats_limits
