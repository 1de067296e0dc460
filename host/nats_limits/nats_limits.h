// What nats-server accepts from a client, checked before anything is sent. A subject, queue
// group, KV bucket or key the server would reject gets a message for a person here, instead of
// a -ERR after which the server (or cnats) closes the whole connection. Pure functions of their
// arguments; the host's Bus and the CLI's client both call them, on any thread.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace nodeha::nats_limits {

struct Limits {
  size_t max_control_line = 4096;  // the server's max_control_line ([nats] max_control_line)
  size_t max_payload = 1 << 20;    // the server's max_payload (its INFO says it once connected)
};

// Room kept on a protocol line for what the client adds around the names it is given: the verb,
// the subscription id, a request's reply inbox (_INBOX.<nuid>.<token>) and the size fields.
inline constexpr size_t kLineOverhead = 128;
// Room kept for the headers JetStream KV adds to a value (expected revision, operation).
inline constexpr size_t kKvHeaderRoom = 256;
// The smallest max_control_line that leaves room for a name at all.
inline constexpr size_t kMinControlLine = 2 * kLineOverhead;

// Each returns "" when the server would accept it, else why not.

// A publish of `payload` bytes to `subject` (a literal: no wildcard token), with an optional
// literal `reply` subject.
std::string check_publish(std::string_view subject, std::string_view reply, size_t payload, const Limits& limits);
// A subscription; `subject` may use '*' tokens and a last '>' token; `queue` may be empty.
std::string check_subscribe(std::string_view subject, std::string_view queue, const Limits& limits);
// A KV operation on `key` of `bucket` (a value of `value_bytes`; 0 for reads). With `pattern`,
// `key` may use '*' tokens and a last '>' token (a watch).
std::string check_kv(std::string_view bucket, std::string_view key, bool pattern, size_t value_bytes,
                     const Limits& limits);
// A KV bucket name alone (listing a bucket).
std::string check_bucket(std::string_view bucket);

}  // namespace nodeha::nats_limits
