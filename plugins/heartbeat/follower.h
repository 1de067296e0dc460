// The heartbeat plugin on a following controller (plugin interface 1.5, NODEHA_MODE_FOLLOWER):
// it watches the `nodes` bucket and hears every heartbeat, and answers node.list and node.show
// in the leader's queue group (node_book.h), from what it watched and heard. It runs no monitor,
// pings no node and writes nothing: the leader judges, alone. A node's last heartbeat, its age,
// capacity, use and VMs are as fresh as the leader's; its monitor state and reason are those the
// leader last wrote.
//
// Threads: everything on the plugin's event thread.
#pragma once

#include "node_book.h"
#include "node_table.h"
#include "repeat.h"

#include <nodeha/plugin.hpp>

namespace nodeha::heartbeat {

class FollowerSide {
 public:
  explicit FollowerSide(const Host& host);
  Status start();

 private:
  void on_heartbeat(const Message& m);
  std::optional<NodeLive> live(const std::string& id) const;

  bool take_repeat(const Message& m);

  struct Heard {
    Heartbeat heartbeat;
    int64_t at_unix_ms = 0;        // when this controller heard it
    std::optional<Repeat> repeat;  // its bytes, to take the next one like it undecoded (repeat.h)
  };
  const Host& host_;
  const uint32_t max_wire_;  // config `wire`, as the leader's
  const std::string hb_prefix_;  // "<prefix>.hb."
  NodeTable<Heard> heard_;
  VmLists lists_;
  NodeBook book_;
};

}  // namespace nodeha::heartbeat
