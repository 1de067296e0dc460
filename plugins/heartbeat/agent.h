// The agent side of the heartbeat: every `interval`, one heartbeat on <prefix>.hb.<node> with
// identity, boot id, capacity and use from libvirt, addresses, VM inventory and the latest verdict
// of every health check published on <prefix>.check.<node>.*; answers <prefix>.agent.<node>.ping.
#pragma once

#include "heartbeat_codec.h"

#include <nodeha/plugin.hpp>

#include <map>
#include <string>

namespace nodeha::heartbeat {

// What libvirt says of this node. Blocking: call from a worker.
struct Inventory {
  Capacity capacity;
  Usage use;
  std::vector<VmInfo> vms;
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

  const Host& host_;
  Millis interval_;
  std::string disk_path_;
  std::map<std::string, std::string> addresses_;
  std::string boot_id_;
  uint64_t seq_ = 0;
  std::map<std::string, Check> checks_;
  bool in_flight_ = false;
  Metric sent_;
};

}  // namespace nodeha::heartbeat
