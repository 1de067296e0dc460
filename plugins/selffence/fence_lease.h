// Self-fencing by lease (docs/operations.md, "Self-fencing"): the records the agent and the
// leading controller exchange, the witness datagrams agents exchange on the business network, and
// the two pure rules built on them. No bus, no clock, no socket: unit-tested in
// tests/unit/self_fence_lease_test.cpp.
//
//   renewal   agent -> leader, a request on <prefix>.ctl.<node>.lease every second:
//             {"node", "watchdog_ms", "seq", "fenced", "heard": [{"node", "any_ms", "invalid_ms",
//             "fenced_seq"}]}
//   grant     leader -> agent, its reply: {"fence_after_ms", "seq", "response": "keep"|"stop",
//             "self_fence", "key", "peers": [{"node", "address"}]}
//   witness   agent <-> agent over UDP on the business network, one line of JSON:
//             {"kind": "probe"|"reply", "from", "to", "nonce", "valid", "fenced_seq", "mac"}
//
// Why it is safe (the argument in full is in docs/architecture.md, "Self-fencing"): an agent
// counts its lease from before it sent the renewal, the leader from when it answered, so the
// agent's lease always ends first, on monotonic clocks that only drift. An agent whose lease
// ended fences itself unless a witness answered it in the window, and answers tell apart
// "only I am cut off" (isolated) from "the controller is gone for everyone" (outage). The
// leader counts the node fenced only when the node said so through a peer, or when no peer heard
// it at all around the time its lease ended and the watchdog's time has passed as well.
#pragma once

#include <nodeha/plugin.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace nodeha::lease {

using Clock = std::chrono::steady_clock;

// An agent takes a grant only if it came within this long of its request; the leader widens its
// windows by as much, and takes a renewal's ages as up to this late.
inline constexpr Millis kRenewTimeout{500};
// An agent counts a peer's answer received at most this long ago, to a probe sent at most this long
// before the answer came (two probes).
inline constexpr Millis kWitnessWindow{1000};
// A witness vouches for its own lease only on a grant asked for at most this long ago: a peer cut
// off at the same moment, whose lease has not ended yet, must not vouch with what its leader said
// before the cut (that recovery is not held).
inline constexpr Millis kVouchFresh{2000};
// How long the leader waits past a node's time for its peers' witness reports.
inline constexpr Millis kReportPatience{5000};
// Bounds on what a renewal may claim: a watchdog's timeout, an age.
inline constexpr int64_t kMaxWatchdogMs = 600000;
inline constexpr size_t kMaxPeers = 10000;
inline constexpr size_t kMaxDatagramBytes = 1024;
inline constexpr size_t kMaxRenewalBytes = 1024 * 1024;

enum class Response { kKeep, kStop };
const char* name(Response r);
std::optional<Response> parse_response(std::string_view text);

// What one node's witness heard of a peer since its last renewal that was granted: the oldest and
// the newest probe, as ages on its own monotonic clock when it sent this renewal (-1: none).
struct Heard {
  std::string node;
  int64_t any_first_ms = -1, any_last_ms = -1;          // with any lease state of our own
  int64_t invalid_first_ms = -1, invalid_last_ms = -1;  // while our own lease had ended
  uint64_t fenced_seq = 0;  // it said it fenced itself under grant `fenced_seq` (0: it did not)

  bool operator==(const Heard&) const = default;
};

struct Renewal {
  std::string node;
  int64_t watchdog_ms = 0;  // the armed watchdog's timeout; 0: no watchdog
  uint64_t seq = 0;         // the grant the agent holds (0: none yet)
  bool fenced = false;      // it destroyed its VMs by itself under grant `seq`
  uint64_t peers_rev = 0;   // the peer list it holds (0: none): the grant sends a new one only
  uint64_t incarnation = 0; // random per agent process: a change says what it heard was lost
  bool leaving = false;     // its last, on a clean stop: no watchdog, no witness from now on
  std::vector<Heard> heard;

  bool operator==(const Renewal&) const = default;
};

struct Peer {
  std::string node;
  std::string address;  // its business address, where its witness listens

  bool operator==(const Peer&) const = default;
};

struct Grant {
  int64_t fence_after_ms = 0;  // the lease: from the request's sending, on the agent's clock
  uint64_t seq = 0;            // the grant's number: a fence claim names the grant it ended
  Response response = Response::kKeep;
  bool self_fence = false;  // false: the leader does not count on it, so the agent never fences
  // The leader holds automatic recovery (too many nodes lost at once): this agent's answers tell
  // peers to keep their VMs, as if its own lease had ended.
  bool hold = false;
  std::string key;          // hex: the witness's HMAC key
  uint64_t peers_rev = 0;   // the leader's peer list's revision
  std::optional<std::vector<Peer>> peers;  // only when the renewal named another revision

  bool operator==(const Grant&) const = default;
};

// Strict codecs: unknown fields, wrong types, bad ids and out-of-range numbers are refused with
// NODEHA_ERR_INVALID and a message that names the field.
std::string encode(const Renewal& r);
Result<Renewal> decode_renewal(std::string_view json);
std::string encode(const Grant& g);
nlohmann::json to_json(const Grant& g);  // encode's object, for a reply envelope or a file
Result<Grant> decode_grant(std::string_view json);

struct Datagram {
  bool reply = false;
  std::string from, to;
  uint64_t nonce = 0;       // a reply echoes its probe's: an old reply cannot be replayed
  bool valid = false;       // the sender's own lease is valid and its leader does not hold
  uint64_t fenced_seq = 0;  // the sender fenced itself under this grant (0: it did not)

  bool operator==(const Datagram&) const = default;
};
// Signed with HMAC-SHA256 under `key` (hex); open() refuses any other key's, or a malformed one.
std::string seal(const Datagram& d, const std::string& key);
Result<Datagram> open(std::string_view text, const std::string& key);
std::string random_key();  // 32 random bytes, hex

// ---- the agent's rule
enum class Verdict {
  kLeased,    // the lease is valid: run, feed the watchdog
  kIsolated,  // ended, but peers with a valid lease answer: only this node is cut off
  kOutage,    // ended, and the peers that answer have none either: the control plane is gone
  kFence,     // destroy every VM now
};
const char* name(Verdict v);
// `answers`: peers that answered in the window; `valid_answers`: those whose lease is valid.
// Without self_fence in the last grant nothing is ever fenced.
Verdict decide(bool lease_valid, bool self_fence, Response response, size_t answers, size_t valid_answers);

// ---- the leader's rule
// What the leader knows of one node's lease, on its own monotonic clock.
struct LeaseState {
  Clock::time_point granted;  // when it answered the node's last renewal
  uint64_t seq = 0;
  int64_t watchdog_ms = 0;  // as that renewal said
  bool self_fence = false;  // as that grant said
};

// The times, on the leader's clock, at which some peer may have heard a node: from each peer's
// renewals, as spans, merged when they touch. Spans older than kKeep go; past kMaxSpans per node
// the two oldest are merged into one wider span, which can only make a node look heard more.
class WitnessLog {
 public:
  static constexpr std::chrono::minutes kKeep{15};
  static constexpr size_t kMaxSpans = 1024;
  struct Span {
    Clock::time_point from, to;
  };
  // A renewal from `peer` came at `at`, from agent process `incarnation`: call before add(). A new
  // incarnation lost what it heard since its last report, so every node counts as heard by it
  // from then until now. `leaving`: its last before a clean stop.
  void renewed(const std::string& peer, uint64_t incarnation, Clock::time_point at, bool leaving = false);
  // A renewal from `peer`, received at `at`, says it heard `heard`.
  void add(const std::string& peer, const Heard& heard, Clock::time_point at);
  // Whether any peer may have heard `node` between from and to (invalid_only: while its own lease
  // had ended); the fence seq `node` last claimed through a peer, 0 for none.
  bool heard(const std::string& node, Clock::time_point from, Clock::time_point to, bool invalid_only) const;
  uint64_t fenced_seq(const std::string& node) const;
  // The last time `peer` renewed (nullopt: not since this leader began).
  std::optional<Clock::time_point> reported(const std::string& peer) const;
  // Whether `peer`'s last renewal said it was leaving (a clean stop): it answers no one since.
  bool left(const std::string& peer) const { return left_.count(peer) > 0; }
  void forget(const std::string& node);

 private:
  struct Spans {
    std::vector<Span> any, invalid;
  };
  static void insert(std::vector<Span>& v, Span s);
  std::map<std::string, Spans> spans_;  // heard node -> spans
  std::vector<Span> restarts_;           // spans in which a restarted peer may have heard anyone
  std::map<std::string, uint64_t> incarnations_;
  std::set<std::string> left_;
  std::map<std::string, Clock::time_point> reported_;
  std::map<std::string, uint64_t> fenced_;
};

struct Judgement {
  enum Kind { kWait, kFenced, kIsolated, kRefused } kind = kWait;
  std::string why;
};
// Whether `node`, unreachable, is fenced by its lease at `now`. `peers`: every other node whose
// reports count (all known nodes but this one). kWait until its time has come; kIsolated when a
// peer with a valid lease may have heard it and the response is keep; kRefused (why) when its
// lease cannot tell (no watchdog, no self-fencing in its grant, a peer's reports missing).
Judgement judge(const std::string& node, const LeaseState& lease, const WitnessLog& log, const std::vector<std::string>& peers,
                Response response, Millis fence_after, Millis margin, Clock::time_point now);

}  // namespace nodeha::lease
