// The leader's side of self-fencing by lease (plugins/selffence/fence_lease.h): it answers every agent's
// renewal on <prefix>.ctl.<node>.lease with a grant, keeps what each agent's witness heard of its
// peers, and judges whether an unreachable node fenced itself.
//
// Thread contract: renewals come on the event thread; judge(), heard_since() and the setters may be
// called from any thread (one mutex).
#pragma once

#include "fence_lease.h"

#include <nodeha/plugin.hpp>

#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace nodeha::recovery {

class LeaseDesk {
 public:
  struct Config {
    Millis fence_after{10000};
    Millis margin{2000};
    lease::Response response = lease::Response::kKeep;
    bool self_fence = false;  // automatic recovery is on and its ladder has "lease"
  };
  LeaseDesk(const Host& host, Config config);
  Status start();

  // A node's record says its witness address (empty: none, and it is no one's peer).
  void set_address(const std::string& node, const std::string& address);
  lease::Judgement judge(const std::string& node, const std::vector<std::string>& peers);
  // Whether its peers report that `node` destroyed its VMs itself on its last grant's lease: its own
  // word, sealed with the grant's key, which holds whatever judge() said before.
  bool said_fenced(const std::string& node);
  // Whether a peer heard `node` on the witness network after `since`.
  bool heard_since(const std::string& node, lease::Clock::time_point since);
  void forget(const std::string& node);
  // Whether grants tell agents that automatic recovery is held (the budget): their witnesses then
  // tell isolated peers to keep their VMs.
  void set_hold(bool hold);
  const Config& config() const { return config_; }

 private:
  void renewal(const Message& m);  // event thread

  const Host& host_;
  const Config config_;
  const std::string key_ = lease::random_key();
  std::mutex mu_;
  uint64_t seq_;  // the last grant's: unique across leaders (it starts from the wall clock)
  std::map<std::string, lease::LeaseState> leases_;
  std::map<std::string, std::string> addresses_;  // every node with a record
  uint64_t peers_rev_ = 1;
  bool hold_ = false;
  lease::WitnessLog log_;
};

}  // namespace nodeha::recovery
