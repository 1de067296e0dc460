#include "fence_lease.h"

#include <nodeha/ids.hpp>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <set>

namespace nodeha::lease {
namespace {

using nlohmann::json;

Status bad(const char* what, const std::string& why) { return Status(NODEHA_ERR_INVALID, std::string(what) + ": " + why); }

// The object `j`'s fields, each checked against `allowed`; the first unknown one, if any.
std::optional<std::string> unknown_field(const json& j, std::initializer_list<const char*> allowed) {
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    if (std::none_of(allowed.begin(), allowed.end(), [&](const char* a) { return k == a; })) return k;
  }
  return std::nullopt;
}

// Reads field `k` of `j` into `out`, checked; an error message, or nullopt.
std::optional<std::string> get_int(const json& j, const char* k, int64_t min, int64_t max, int64_t* out, bool required) {
  if (!j.contains(k)) return required ? std::optional<std::string>(fmt::format("field \"{}\" is required", k)) : std::nullopt;
  const auto& v = j[k];
  if (!v.is_number_integer()) return fmt::format("field \"{}\" must be an integer, got {}", k, v.type_name());
  int64_t n = v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX : v.get<int64_t>();
  if (n < min || n > max) return fmt::format("field \"{}\" must be from {} to {}, got {}", k, min, max, n);
  *out = n;
  return std::nullopt;
}
std::optional<std::string> get_seq(const json& j, const char* k, uint64_t* out) {
  if (!j.contains(k)) return std::nullopt;
  if (!j[k].is_number_unsigned() && !(j[k].is_number_integer() && j[k].get<int64_t>() == 0))
    return fmt::format("field \"{}\" must be an unsigned integer, got {}", k, j[k].type_name());
  *out = j[k].get<uint64_t>();
  return std::nullopt;
}
std::optional<std::string> get_bool(const json& j, const char* k, bool* out) {
  if (!j.contains(k)) return std::nullopt;
  if (!j[k].is_boolean()) return fmt::format("field \"{}\" must be true or false, got {}", k, j[k].type_name());
  *out = j[k].get<bool>();
  return std::nullopt;
}
std::optional<std::string> get_node(const json& j, const char* k, std::string* out) {
  if (!j.contains(k) || !j[k].is_string()) return fmt::format("field \"{}\" (a node id) is required", k);
  auto id = NodeId::parse(j[k].get<std::string>());
  if (!id) return fmt::format("field \"{}\": {}", k, id.status().message());
  *out = id->str();
  return std::nullopt;
}

constexpr int64_t kAgeMax = 86400000;  // a day, in ms: older than that is "never"

std::string hex(const unsigned char* p, size_t n) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    s += d[p[i] >> 4];
    s += d[p[i] & 15];
  }
  return s;
}

std::optional<std::string> unhex(const std::string& h) {
  if (h.size() != 64) return std::nullopt;
  std::string out;
  for (size_t i = 0; i < h.size(); i += 2) {
    auto v = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; };
    int a = v(h[i]), b = v(h[i + 1]);
    if (a < 0 || b < 0) return std::nullopt;
    out += static_cast<char>(a * 16 + b);
  }
  return out;
}

std::string mac(const Datagram& d, const std::string& raw_key) {
  std::string text = fmt::format("{}|{}|{}|{}|{}|{}", d.reply ? "reply" : "probe", d.from, d.to, d.nonce, d.valid, d.fenced_seq);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  HMAC(EVP_sha256(), raw_key.data(), static_cast<int>(raw_key.size()), reinterpret_cast<const unsigned char*>(text.data()),
       text.size(), out, &n);
  return hex(out, n);
}

}  // namespace

const char* name(Response r) { return r == Response::kStop ? "stop" : "keep"; }

std::optional<Response> parse_response(std::string_view text) {
  if (text == "keep") return Response::kKeep;
  if (text == "stop") return Response::kStop;
  return std::nullopt;
}

const char* name(Verdict v) {
  switch (v) {
    case Verdict::kLeased: return "leased";
    case Verdict::kIsolated: return "isolated";
    case Verdict::kOutage: return "outage";
    case Verdict::kFence: return "fence";
  }
  return "?";
}

std::string encode(const Renewal& r) {
  json heard = json::array();
  for (const auto& h : r.heard)
    heard.push_back({{"node", h.node}, {"any_first_ms", h.any_first_ms}, {"any_last_ms", h.any_last_ms},
                     {"invalid_first_ms", h.invalid_first_ms}, {"invalid_last_ms", h.invalid_last_ms},
                     {"fenced_seq", h.fenced_seq}});
  return json{{"node", r.node}, {"watchdog_ms", r.watchdog_ms}, {"seq", r.seq}, {"fenced", r.fenced},
              {"peers_rev", r.peers_rev}, {"incarnation", r.incarnation}, {"leaving", r.leaving}, {"heard", heard}}
      .dump();
}

Result<Renewal> decode_renewal(std::string_view text) {
  const char* what = "lease renewal";
  if (text.size() > kMaxRenewalBytes) return bad(what, fmt::format("over {} bytes", kMaxRenewalBytes));
  auto j = json::parse(text, nullptr, false);
  if (!j.is_object()) return bad(what, "not a JSON object");
  if (auto k = unknown_field(j, {"node", "watchdog_ms", "seq", "fenced", "peers_rev", "incarnation", "leaving", "heard"}))
    return bad(what, "unknown field \"" + *k + "\"");
  Renewal r;
  std::optional<std::string> e;
  if ((e = get_node(j, "node", &r.node)) || (e = get_int(j, "watchdog_ms", 0, kMaxWatchdogMs, &r.watchdog_ms, false)) ||
      (e = get_seq(j, "seq", &r.seq)) || (e = get_bool(j, "fenced", &r.fenced)) || (e = get_seq(j, "peers_rev", &r.peers_rev)) ||
      (e = get_seq(j, "incarnation", &r.incarnation)) || (e = get_bool(j, "leaving", &r.leaving)))
    return bad(what, *e);
  if (j.contains("heard")) {
    if (!j["heard"].is_array()) return bad(what, "field \"heard\" must be an array");
    if (j["heard"].size() > kMaxPeers) return bad(what, fmt::format("field \"heard\" has over {} entries", kMaxPeers));
    std::set<std::string> seen;
    for (const auto& x : j["heard"]) {
      if (!x.is_object()) return bad(what, "an entry of \"heard\" is not an object");
      if (auto k = unknown_field(x, {"node", "any_first_ms", "any_last_ms", "invalid_first_ms", "invalid_last_ms", "fenced_seq"}))
        return bad(what, "heard: unknown field \"" + *k + "\"");
      Heard h;
      if ((e = get_node(x, "node", &h.node)) || (e = get_int(x, "any_first_ms", -1, kAgeMax, &h.any_first_ms, false)) ||
          (e = get_int(x, "any_last_ms", -1, kAgeMax, &h.any_last_ms, false)) ||
          (e = get_int(x, "invalid_first_ms", -1, kAgeMax, &h.invalid_first_ms, false)) ||
          (e = get_int(x, "invalid_last_ms", -1, kAgeMax, &h.invalid_last_ms, false)) || (e = get_seq(x, "fenced_seq", &h.fenced_seq)))
        return bad(what, "heard: " + *e);
      // An age pair is (first, last), first the older; one without the other says nothing.
      if ((h.any_first_ms < 0) != (h.any_last_ms < 0) || h.any_first_ms < h.any_last_ms ||
          (h.invalid_first_ms < 0) != (h.invalid_last_ms < 0) || h.invalid_first_ms < h.invalid_last_ms)
        return bad(what, "heard: " + h.node + ": each first_ms must come with its last_ms and be at least as old");
      if (h.node == r.node) return bad(what, "heard: a node does not witness itself");
      if (!seen.insert(h.node).second) return bad(what, "heard: " + h.node + " is listed twice");
      r.heard.push_back(h);
    }
  }
  return r;
}

nlohmann::json to_json(const Grant& g) {
  json j{{"fence_after_ms", g.fence_after_ms}, {"seq", g.seq}, {"response", name(g.response)},
         {"self_fence", g.self_fence}, {"hold", g.hold}, {"key", g.key}, {"peers_rev", g.peers_rev}};
  if (g.peers) {
    json peers = json::array();
    for (const auto& p : *g.peers) peers.push_back({{"node", p.node}, {"address", p.address}});
    j["peers"] = peers;
  }
  return j;
}

std::string encode(const Grant& g) { return to_json(g).dump(); }

Result<Grant> decode_grant(std::string_view text) {
  const char* what = "lease grant";
  auto j = json::parse(text, nullptr, false);
  if (!j.is_object()) return bad(what, "not a JSON object");
  if (auto k = unknown_field(j, {"fence_after_ms", "seq", "response", "self_fence", "hold", "key", "peers_rev", "peers"}))
    return bad(what, "unknown field \"" + *k + "\"");
  Grant g;
  std::optional<std::string> e;
  if ((e = get_int(j, "fence_after_ms", 1, kMaxWatchdogMs, &g.fence_after_ms, true)) || (e = get_seq(j, "seq", &g.seq)) ||
      (e = get_bool(j, "self_fence", &g.self_fence)) || (e = get_bool(j, "hold", &g.hold)) ||
      (e = get_seq(j, "peers_rev", &g.peers_rev)))
    return bad(what, *e);
  if (g.seq == 0) return bad(what, "field \"seq\" must be above 0");
  auto r = j.contains("response") && j["response"].is_string() ? parse_response(j["response"].get<std::string>()) : std::nullopt;
  if (!r) return bad(what, "field \"response\" must be \"keep\" or \"stop\"");
  g.response = *r;
  if (!j.contains("key") || !j["key"].is_string() || !unhex(j["key"].get<std::string>()))
    return bad(what, "field \"key\" must be 64 hex digits");
  g.key = j["key"].get<std::string>();
  if (j.contains("peers")) {
    if (!j["peers"].is_array() || j["peers"].size() > kMaxPeers) return bad(what, "field \"peers\" must be an array of peers");
    g.peers.emplace();
    for (const auto& p : j["peers"]) {
      Peer peer;
      if (!p.is_object() || !p.contains("address") || !p["address"].is_string() || p["address"].get<std::string>().size() > 255)
        return bad(what, "a peer needs a node and an address");
      if ((e = get_node(p, "node", &peer.node))) return bad(what, "peers: " + *e);
      peer.address = p["address"].get<std::string>();
      g.peers->push_back(peer);
    }
  }
  return g;
}

std::string seal(const Datagram& d, const std::string& key) {
  auto raw = unhex(key);
  return json{{"kind", d.reply ? "reply" : "probe"}, {"from", d.from},  {"to", d.to},
              {"nonce", d.nonce},                    {"valid", d.valid}, {"fenced_seq", d.fenced_seq},
              {"mac", raw ? mac(d, *raw) : ""}}
      .dump();
}

Result<Datagram> open(std::string_view text, const std::string& key) {
  const char* what = "witness datagram";
  auto raw = unhex(key);
  if (!raw) return bad(what, "no key to check it with");
  if (text.size() > kMaxDatagramBytes) return bad(what, "too long");
  auto j = json::parse(text, nullptr, false);
  if (!j.is_object()) return bad(what, "not a JSON object");
  if (auto k = unknown_field(j, {"kind", "from", "to", "nonce", "valid", "fenced_seq", "mac"})) return bad(what, "unknown field \"" + *k + "\"");
  Datagram d;
  std::optional<std::string> e;
  if ((e = get_node(j, "from", &d.from)) || (e = get_node(j, "to", &d.to)) || (e = get_seq(j, "nonce", &d.nonce)) ||
      (e = get_bool(j, "valid", &d.valid)) || (e = get_seq(j, "fenced_seq", &d.fenced_seq)))
    return bad(what, *e);
  std::string kind = j.contains("kind") && j["kind"].is_string() ? j["kind"].get<std::string>() : "";
  if (kind != "probe" && kind != "reply") return bad(what, "field \"kind\" must be probe or reply");
  d.reply = kind == "reply";
  std::string want = mac(d, *raw);
  std::string got = j.contains("mac") && j["mac"].is_string() ? j["mac"].get<std::string>() : "";
  if (got.size() != want.size() || CRYPTO_memcmp(got.data(), want.data(), want.size()) != 0)
    return bad(what, "its mac does not match this cluster's key");
  return d;
}

std::string random_key() {
  unsigned char b[32];
  if (RAND_bytes(b, sizeof b) != 1) throw std::runtime_error("no randomness for the witness key");
  return hex(b, sizeof b);
}

Verdict decide(bool lease_valid, bool self_fence, Response response, size_t answers, size_t valid_answers) {
  if (lease_valid) return Verdict::kLeased;
  if (valid_answers > 0) return self_fence && response == Response::kStop ? Verdict::kFence : Verdict::kIsolated;
  if (answers > 0 || !self_fence) return Verdict::kOutage;
  return Verdict::kFence;
}

void WitnessLog::insert(std::vector<Span>& v, Span s) {
  // Most spans extend the last one: a peer that keeps hearing a node reports it every second.
  for (auto it = v.rbegin(); it != v.rend() && it != v.rbegin() + 4; ++it)
    if (s.from <= it->to + kRenewTimeout && s.to + kRenewTimeout >= it->from) {
      it->from = std::min(it->from, s.from);
      it->to = std::max(it->to, s.to);
      return;
    }
  v.push_back(s);
  std::sort(v.begin(), v.end(), [](const Span& a, const Span& b) { return a.to < b.to; });
  auto old = v.back().to - kKeep;
  v.erase(v.begin(), std::find_if(v.begin(), v.end(), [&](const Span& x) { return x.to >= old; }));
  if (v.size() > kMaxSpans) {
    v[1].from = std::min(v[0].from, v[1].from);
    v.erase(v.begin());
  }
}

void WitnessLog::renewed(const std::string& peer, uint64_t incarnation, Clock::time_point at, bool leaving) {
  if (leaving) left_.insert(peer);
  else left_.erase(peer);
  auto [it, first] = incarnations_.try_emplace(peer, incarnation);
  if (!first && it->second != incarnation) {
    // The peer's agent restarted: what it heard since its last report is lost. Any node may have
    // been heard by it meanwhile.
    auto since = reported_.count(peer) ? reported_[peer] : at;
    restarts_.push_back({since - kRenewTimeout, at});
    if (restarts_.size() > kMaxSpans) restarts_.erase(restarts_.begin());
  }
  it->second = incarnation;
  reported_[peer] = at;
}

void WitnessLog::add(const std::string& peer, const Heard& h, Clock::time_point at) {
  reported_[peer] = at;
  // Ages count from when the peer sent its renewal, which is before `at` by the time in transit.
  auto span = [&](int64_t first, int64_t last) { return Span{at - Millis(first) - kRenewTimeout, at - Millis(last)}; };
  if (h.any_last_ms >= 0) insert(spans_[h.node].any, span(h.any_first_ms, h.any_last_ms));
  if (h.invalid_last_ms >= 0) insert(spans_[h.node].invalid, span(h.invalid_first_ms, h.invalid_last_ms));
  if (h.fenced_seq > 0) fenced_[h.node] = std::max(fenced_[h.node], h.fenced_seq);
}

bool WitnessLog::heard(const std::string& node, Clock::time_point from, Clock::time_point to, bool invalid_only) const {
  auto overlaps = [&](const Span& s) { return s.from <= to && s.to >= from; };
  if (std::any_of(restarts_.begin(), restarts_.end(), overlaps)) return true;
  auto it = spans_.find(node);
  if (it == spans_.end()) return false;
  const auto& v = invalid_only ? it->second.invalid : it->second.any;
  return std::any_of(v.begin(), v.end(), overlaps);
}

uint64_t WitnessLog::fenced_seq(const std::string& node) const {
  auto it = fenced_.find(node);
  return it == fenced_.end() ? 0 : it->second;
}

std::optional<Clock::time_point> WitnessLog::reported(const std::string& peer) const {
  auto it = reported_.find(peer);
  if (it == reported_.end()) return std::nullopt;
  return it->second;
}

void WitnessLog::forget(const std::string& node) {
  spans_.erase(node);
  fenced_.erase(node);
}

Judgement judge(const std::string& node, const LeaseState& lease, const WitnessLog& log, const std::vector<std::string>& peers,
                Response response, Millis fence_after, Millis margin, Clock::time_point now) {
  if (lease.seq == 0) return {Judgement::kRefused, "this controller has not granted it a lease"};
  if (!lease.self_fence) return {Judgement::kRefused, "its lease did not let it fence itself"};
  if (log.fenced_seq(node) == lease.seq)
    return {Judgement::kFenced, "it destroyed its VMs itself when its lease ended, and said so to its peers"};
  if (lease.watchdog_ms <= 0) return {Judgement::kRefused, "it reported no armed watchdog, so a hung agent might not have fenced it"};
  auto expiry = lease.granted + fence_after;
  auto watchdog = Millis(lease.watchdog_ms);
  auto deadline = expiry + watchdog + margin;
  if (now < deadline) return {Judgement::kWait, ""};
  // Any decision it took to keep its VMs lies between the end of its lease (on its clock, up to
  // kRenewTimeout before ours) and the watchdog's reset, and needed an answer received at most a
  // witness window before, to a probe sent at most a window before that.
  auto from = expiry - kRenewTimeout - 2 * kWitnessWindow - margin, to = expiry + watchdog + margin;
  for (const auto& p : peers) {
    if (log.left(p)) continue;  // stopped cleanly: its witness answers no one, and said what it heard
    auto r = log.reported(p);
    if (r && *r >= to + kRenewTimeout) continue;
    if (now < to + kRenewTimeout + kReportPatience) return {Judgement::kWait, ""};
    return {Judgement::kRefused, "the witness reports of " + p + " since its lease ended are missing: it may have answered it"};
  }
  if (response == Response::kKeep) {
    if (log.heard(node, from, to, false))
      return {Judgement::kIsolated, "peers heard it on the witness network after its lease ended: it is isolated, and "
                                    "isolation_response is keep"};
    return {Judgement::kFenced, "no peer heard it after its lease ended: it fenced itself, or its watchdog reset it"};
  }
  if (log.heard(node, from, to, true))
    return {Judgement::kRefused, "a peer whose own lease had ended heard it: it may have kept its VMs, as in a control-plane outage"};
  return {Judgement::kFenced, "its lease and its watchdog's time passed with no peer telling it to wait: it fenced itself, "
                              "or its watchdog reset it"};
}

}  // namespace nodeha::lease
