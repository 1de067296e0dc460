// Why a verdict was taken: the `evidence` object every node, VM and task event carries (and every
// step of a task record), one codec for every publisher and for the CLI that shows the history.
//
//   "evidence": {"v": 1,
//                "summary": "silent 3.01 s (3 intervals of 1 s), ping to nodeha.agent.node-2.ping ...",
//                "by": "controller-1",      // who decided: a controller's id, or the node (agent) that saw it
//                "epoch": 4,                // the leader's lease epoch (0: decided by an agent)
//                "requester": "admin",      // commands only: the identity that asked, or "unauthenticated"
//                "task": "t-...",           // when a task (or one of its steps) decided
//                "facts": {"silence_s": 3.01, "intervals": 3, ...}}  // the figures, named, scalars only
//
// Only `v`, `summary` and `by` are always there. The facts' names are listed in
// docs/operations.md ("Events and their evidence"). Pure: no bus, no clock.
#pragma once

#include <nodeha/plugin.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace nodeha::evidence {

inline constexpr int kVersion = 1;
inline constexpr const char* kUnauthenticated = "unauthenticated";

struct Evidence {
  std::string summary;    // one sentence a person reads
  std::string by;         // controller id, or node id
  uint64_t epoch = 0;     // leader epoch; 0 when no leader decided
  std::string requester;  // who asked (commands); empty otherwise
  std::string task;       // task id; empty otherwise
  nlohmann::json facts = nlohmann::json::object();  // name -> string, number or bool
};

nlohmann::json to_json(const Evidence& e);
// Strict: an object with v == kVersion, a string summary and by, the optional fields of their
// types, facts an object of scalars. The error names the field.
Result<Evidence> from_json(const nlohmann::json& j);

// The identity a request came from, from its reply subject: under auth every identity's replies
// arrive below its own inbox prefix `_INBOX_<name>` (docs/security.md), which the server
// enforces; a body field could be forged, the reply subject cannot. "unauthenticated" for the
// default `_INBOX.` prefix, an empty reply or anything else.
std::string requester_of(std::string_view reply_subject);

// "3.01 s", "0.5 s", "15 s": seconds with at most two decimals.
std::string seconds(double s);

// Evidence decided by this plugin instance: `by` its node id (a controller's id), `epoch` the
// lease epoch while it leads (0 otherwise).
inline Evidence decided(const Host& host, std::string summary) {
  Evidence e;
  e.summary = std::move(summary);
  e.by = host.node_id();
  e.epoch = host.epoch().value_or(0);
  return e;
}

// The scalar fields of a record (a fence, a recovery state) as facts; objects and arrays left out.
inline nlohmann::json scalar_facts(const nlohmann::json& record) {
  nlohmann::json facts = nlohmann::json::object();
  if (record.is_object())
    for (const auto& [k, v] : record.items())
      if (v.is_primitive() && !v.is_null()) facts[k] = v;
  return facts;
}

// Publishes `event` on <prefix>.<tail> (evt.vm.<uuid>, evt.node.<node>) with its evidence and,
// when it has none, the time (unix ms).
inline Status publish(const Host& host, const std::string& tail, nlohmann::json event, const Evidence& why) {
  event["evidence"] = to_json(why);
  if (!event.contains("time"))
    event["time"] = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  return host.publish(host.subject(tail), event.dump());
}

}  // namespace nodeha::evidence
