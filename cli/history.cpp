#include "history.h"

#include "controller.h"
#include "event_log.h"

#include <nodeha/ids.hpp>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <chrono>
#include <iostream>
#include <memory>

namespace nodeha::cli {
namespace {

using nlohmann::json;

constexpr size_t kMaxLimit = 10000;

struct Args {
  std::string id;
  size_t limit = 50;
  std::string since;
};

// One request to the JetStream API; the answer's body, or nullopt with the failure reported in
// *exit.
std::optional<std::string> ask(Controller& c, const std::string& api, const std::string& body, int* exit) {
  auto reply = c.request_api(api, body);
  *exit = kExitUnreachable;
  if (!reply) return std::nullopt;
  switch (reply->outcome) {
    case BusReply::kAnswered: return reply->body;
    case BusReply::kNotPermitted:
      *exit = c.fail("not_permitted",
                     fmt::format("the NATS server refused {} to your credential; reading history needs an admin or viewer identity", api),
                     kExitRefused, "docs/security.md says what each identity may do");
      break;
    case BusReply::kNoResponders:
      *exit = c.fail("no_jetstream", "nobody answers " + api + ": is JetStream on in nats-server?", kExitUnreachable);
      break;
    case BusReply::kTimeout: *exit = c.fail("timeout", "no answer to " + api + " in time (--timeout)", kExitUnreachable); break;
    case BusReply::kLost:
    case BusReply::kRefused: *exit = c.fail("unreachable", "cannot read the events stream: " + reply->error, kExitUnreachable); break;
  }
  return std::nullopt;
}

// The event on `subject` at or after `seq`: an Event, End, or nullopt with the failure reported.
std::optional<event_log::Answer> get(Controller& c, uint64_t seq, const std::string& subject, int* exit) {
  const Globals& g = c.globals();
  auto body = ask(c, event_log::get_subject(g.prefix), event_log::request_body(seq, subject), exit);
  if (!body) return std::nullopt;
  auto answer = event_log::decode_answer(*body);
  auto* f = std::get_if<event_log::Failure>(&answer);
  if (!f) return answer;
  if (f->code == 404)
    *exit = c.fail("no_events", "there is no events stream " + event_log::stream_name(g.prefix) + " (" + f->text +
                                    "): no controller has run with prefix " + g.prefix + " yet",
                   kExitFailed);
  else
    *exit = c.fail("bad_reply", "the events stream answered: " + f->text, kExitFailed);
  return std::nullopt;
}

// The first sequence stored at or after `since_ms`, by bisection over the whole stream (any
// subject): log2(events) requests instead of reading 30 days. nullopt when a request failed
// (reported, its exit code in *exit).
std::optional<uint64_t> first_since(Controller& c, int64_t since_ms, int* exit) {
  const Globals& g = c.globals();
  auto info = ask(c, "$JS.API.STREAM.INFO." + event_log::stream_name(g.prefix), "", exit);
  if (!info) return std::nullopt;
  auto last = event_log::last_seq(*info);
  if (!last) return 1;  // no stream yet: reading says so
  uint64_t lo = 1, hi = *last + 1;  // the answer is in [lo, hi]
  while (lo < hi) {
    uint64_t mid = lo + (hi - lo) / 2;
    auto a = get(c, mid, g.prefix + ".evt.>", exit);
    if (!a) return std::nullopt;
    auto* e = std::get_if<event_log::Event>(&*a);
    if (!e || e->stored_ms >= since_ms) hi = mid;
    else lo = e->seq + 1;
  }
  return lo;
}

// Reads every event on `subject` from `seq` on (oldest first), one message-get each; an exit
// code on failure.
int read_events(Controller& c, uint64_t seq, const std::string& subject, std::vector<event_log::Event>* out) {
  for (int exit = 0;;) {
    auto answer = get(c, seq, subject, &exit);
    if (!answer) return exit;
    auto* ev = std::get_if<event_log::Event>(&*answer);
    if (!ev) return kExitDone;
    seq = ev->seq + 1;
    out->push_back(std::move(*ev));
  }
}

int show_history(const Globals& g, const std::string& what, const std::string& id, const std::string& tail, const Args& a) {
  int64_t since_ms = 0;
  if (!a.since.empty()) {
    auto d = event_log::parse_since(a.since);
    since_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count() - *d;
  }
  Controller c(g);
  std::string subject = g.prefix + "." + tail;
  std::vector<event_log::Event> events;
  int exit = kExitDone;
  auto from = since_ms > 0 ? first_since(c, since_ms, &exit) : std::optional<uint64_t>(1);
  if (!from) return exit;
  if (int code = read_events(c, *from, subject, &events); code != kExitDone) return code;
  events = event_log::newest(std::move(events), a.limit, since_ms);
  if (g.json) {
    json records = json::array();
    for (auto& e : events) {
      e.record["seq"] = e.seq;
      records.push_back(e.record);
    }
    std::cout << json{{what, id}, {"subject", subject}, {"events", records}}.dump(2) << '\n';
    return kExitDone;
  }
  if (events.empty()) {
    std::cout << fmt::format("no events for {} {}{}\n", what, id, a.since.empty() ? "" : " in the last " + a.since);
    return kExitDone;
  }
  for (const auto& e : events) std::cout << event_log::timeline_line(e.record) << '\n';
  return kExitDone;
}

// `history` under `parent` for ids of type Id, read from evt.<what>.<id>. An id that is not one is a
// usage error: nothing is sent.
template <class Id>
void add_one(CLI::App* parent, const std::string& what, const std::string& help, const std::string& id_help,
             std::vector<Command>* commands) {
  auto a = std::make_shared<Args>();
  auto* cmd = parent->add_subcommand("history", help);
  cmd->add_option(what == "node" ? "NODE" : "VM", a->id, id_help)->required();
  cmd->add_option("--limit", a->limit, "at most this many events, the newest (default 50)")
      ->check(CLI::Range(size_t{1}, kMaxLimit));
  cmd->add_option("--since", a->since, "only events of the last DURATION: 90s, 30m, 12h, 7d")
      ->check(CLI::Validator([](std::string& s) { return event_log::parse_since(s) ? "" : "not a duration like 30m, 12h or 7d"; },
                             "DURATION"));
  commands->push_back({cmd, [a, what](const Globals& g) {
                         auto id = Id::parse(a->id);
                         if (!id) return Controller(g).fail("bad_value", "\"" + a->id.substr(0, 80) + "\": " + id.status().message(), kExitRefused);
                         return show_history(g, what, id->str(), "evt." + what + "." + id->str(), *a);
                       }});
}

}  // namespace

void add_history_commands(CLI::App& root, std::vector<Command>* commands) {
  add_one<NodeId>(root.get_subcommand("node"), "node",
                  "the node's events, oldest first: monitor and management changes, fences, recovery, the tasks run on "
                  "it, each with its evidence (from the events stream, kept 30 days)",
                  "the node's id", commands);
  add_one<VmUuid>(root.get_subcommand("vm"), "vm",
                  "the VM's events, oldest first: stops, moves, claims, stale copies removed, migrations, each with its "
                  "evidence",
                  "the VM's uuid", commands);
}

}  // namespace nodeha::cli
