// The events stream as history (docs/operations.md, "History"): which stream and subject hold a
// node's or a VM's events, the JetStream message-get requests that read them one by one, and the
// timeline a person reads. Pure: the CLI (history.cpp) and the tests send and print.
//
// Reading: `$JS.API.STREAM.MSG.GET.<STREAM>` with {"seq": N, "next_by_subj": SUBJECT} answers the
// first event on SUBJECT at or after sequence N, to the requester's own inbox; the next request
// asks from its seq + 1, until the server answers 404 "no message found". No consumer is made, so
// a reader can aim deliveries at nobody else's subject.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace nodeha::cli::event_log {

// "NODEHA_EVENTS" for prefix "nodeha" (the host's keep_event_stream: upper case, '.' -> '_').
std::string stream_name(const std::string& prefix);
std::string get_subject(const std::string& prefix);  // $JS.API.STREAM.MSG.GET.<stream>
std::string request_body(uint64_t from_seq, const std::string& subject);

struct Event {
  uint64_t seq = 0;
  std::string subject;
  nlohmann::json record;  // the event as published (an object; {"event":"?"} when it was not JSON)
  int64_t stored_ms = 0;  // when the stream stored it (the answer's "time"); 0 when unreadable
};
struct End {};  // no event at or after the sequence asked
struct Failure {
  int code = 0;      // the API's error code (404: the stream does not exist)
  std::string text;  // the API's description, or why the answer could not be read
};
using Answer = std::variant<Event, End, Failure>;
// Decodes one message-get answer (message data and headers come base64-encoded).
Answer decode_answer(const std::string& body);

// "2026-12-07T03:16:16.830123456Z" as unix ms; nullopt when it is not an RFC 3339 UTC time.
std::optional<int64_t> parse_utc(const std::string& text);

// The stream's last sequence from a `$JS.API.STREAM.INFO.<stream>` answer; nullopt when absent.
std::optional<uint64_t> last_seq(const std::string& info_answer);

// The last `limit` of `events` whose time (unix ms) is at or after `since_ms` (0: all), oldest first.
std::vector<Event> newest(std::vector<Event> events, size_t limit, int64_t since_ms);

// One timeline line: "2026-12-07 02:55:01.120  monitor  normal -> unreachable  <summary>  (by X, epoch N)",
// and for a task outcome one indented line per step.
std::string timeline_line(const nlohmann::json& record);

// "90s", "30m", "1h", "7d" as milliseconds; nullopt otherwise.
std::optional<int64_t> parse_since(const std::string& text);

}  // namespace nodeha::cli::event_log
