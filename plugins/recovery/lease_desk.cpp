#include "lease_desk.h"

#include "command.h"

namespace nodeha::recovery {

LeaseDesk::LeaseDesk(const Host& host, Config config)
    : host_(host),
      config_(config),
      // Grant numbers start from this leader's start in ms, shifted past a million grants per ms: a
      // fence claim made under an old leader's grant never matches a new leader's.
      seq_(static_cast<uint64_t>(std::chrono::duration_cast<Millis>(std::chrono::system_clock::now().time_since_epoch()).count())
           << 20) {}

Status LeaseDesk::start() {
  auto s = host_.subscribe(host_.subject("ctl.*.lease"), [this](const Message& m) { renewal(m); }, "nodeha-controller");
  return s ? Status::ok() : s.status();
}

void LeaseDesk::renewal(const Message& m) {
  auto r = lease::decode_renewal(m.data);
  if (!r) return (void)host_.respond(m.reply, command::fail(command::kBadValue, r.status().message()));
  // The subject is the sender's (the bus lets node-i publish only on ctl.node-i.>): it must be the
  // node the body names.
  if (m.subject != host_.subject("ctl." + r->node + ".lease"))
    return (void)host_.respond(m.reply, command::fail(command::kBadValue, "a lease renewal must come on its own node's subject"));
  auto now = lease::Clock::now();
  lease::Grant g;
  {
    std::lock_guard lock(mu_);
    if (!addresses_.count(r->node))
      return (void)host_.respond(m.reply, command::fail(command::kUnknownNode, r->node + " has no node record yet"));
    log_.renewed(r->node, r->incarnation, now, r->leaving);
    for (const auto& h : r->heard)
      if (addresses_.count(h.node)) log_.add(r->node, h, now);
    auto& l = leases_[r->node];
    l = {now, ++seq_, r->watchdog_ms, config_.self_fence};
    g.fence_after_ms = config_.fence_after.count();
    g.seq = l.seq;
    g.response = config_.response;
    g.self_fence = config_.self_fence;
    g.hold = hold_;
    g.key = key_;
    g.peers_rev = peers_rev_;
    if (r->peers_rev != peers_rev_) {
      g.peers.emplace();
      for (const auto& [node, address] : addresses_)
        if (node != r->node && !address.empty()) g.peers->push_back({node, address});
    }
  }
  host_.respond(m.reply, command::ok(lease::to_json(g)));
}

void LeaseDesk::set_address(const std::string& node, const std::string& address) {
  std::lock_guard lock(mu_);
  auto [it, added] = addresses_.try_emplace(node, address);
  if (added || it->second != address) {
    it->second = address;
    ++peers_rev_;
  }
}

lease::Judgement LeaseDesk::judge(const std::string& node, const std::vector<std::string>& peers) {
  std::lock_guard lock(mu_);
  auto it = leases_.find(node);
  return lease::judge(node, it == leases_.end() ? lease::LeaseState{} : it->second, log_, peers, config_.response,
                      config_.fence_after, config_.margin, lease::Clock::now());
}

bool LeaseDesk::said_fenced(const std::string& node) {
  std::lock_guard lock(mu_);
  auto it = leases_.find(node);
  return it != leases_.end() && it->second.seq != 0 && log_.fenced_seq(node) == it->second.seq;
}

bool LeaseDesk::heard_since(const std::string& node, lease::Clock::time_point since) {
  std::lock_guard lock(mu_);
  return log_.heard(node, since, lease::Clock::time_point::max(), false);
}

void LeaseDesk::set_hold(bool hold) {
  std::lock_guard lock(mu_);
  if (hold != hold_) host_.warn(hold ? "lease grants now say: recovery held, keep VMs" : "lease grants no longer hold");
  hold_ = hold;
}

void LeaseDesk::forget(const std::string& node) {
  std::lock_guard lock(mu_);
  log_.forget(node);
}

}  // namespace nodeha::recovery
