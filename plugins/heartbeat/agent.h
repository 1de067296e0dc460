// The agent side of the heartbeat: every `interval`, one heartbeat on <prefix>.hb.<node> with
// identity, boot id, capacity and use from libvirt, addresses, VM inventory and the latest verdict
// of every health check published on <prefix>.check.<node>.*; answers <prefix>.agent.<node>.ping.
//
// Wire version (heartbeat_codec.h): 1 until a controller grants 2 on <prefix>.agent.<node>.hb.wire;
// then the VM list only when it changed or the controller asked. A ping-back means the controller
// did not take our heartbeats (a controller of version 1 refuses version 2): back to 1 until the
// next grant. Between heartbeats, a change of a domain (libvirt's lifecycle events) sends a
// heartbeat at once (at most one a second), so that an emptied node is seen empty at once; while
// libvirt gives no events (not connected, or a driver without them) it counts the active domains
// every second instead.
#pragma once

#include "heartbeat_codec.h"

#include <nodeha/plugin.hpp>

#include <chrono>
#include <map>
#include <string>

namespace nodeha::heartbeat {

// What libvirt says of this node. Blocking: call from a worker.
struct Inventory {
  Capacity capacity;
  Usage use;
  std::vector<VmInfo> vms;
  int active = 0;  // domains libvirt counts active (virConnectNumOfDomains)
};
Result<Inventory> read_inventory(const Host& host, const std::string& disk_path);

std::string read_boot_id();

class AgentSide {
 public:
  explicit AgentSide(const Host& host);
  Status start();

 private:
  void beat();  // event thread
  void send(const Result<Inventory>& inv);
  void on_grant(const Message& m);
  void on_libvirt(nodeha_libvirt_event e);
  Status poll(bool on);  // counting domains every second, while libvirt gives no events
  void count_domains();
  void soon();  // something changed: a heartbeat now, or a second after the last one
  void pending();

  using SteadyClock = std::chrono::steady_clock;

  const Host& host_;
  Millis interval_;
  std::string disk_path_;
  std::map<std::string, std::string> addresses_;
  std::string boot_id_;
  uint64_t seq_ = 0;
  std::map<std::string, Check> checks_;
  bool in_flight_ = false;
  uint32_t max_wire_ = kWireVersion;  // config `wire`
  uint32_t wire_ = 1;                 // granted by the controller
  bool full_ = true;                  // the next heartbeat carries the VM list
  std::string digest_sent_;
  int active_sent_ = -1;  // Inventory::active in the last heartbeat
  bool counting_ = false;
  uint64_t count_timer_ = 0;  // while polling
  uint64_t soon_timer_ = 0;
  bool again_ = false;  // a change came while a heartbeat read before it was in flight
  SteadyClock::time_point changed_at_{};  // the last change a heartbeat must tell
  SteadyClock::time_point read_at_{};     // when the last heartbeat's inventory was read
  bool events_seen_ = false;  // libvirt's events came once
  SteadyClock::time_point last_beat_{};
  Metric sent_;
};

}  // namespace nodeha::heartbeat
