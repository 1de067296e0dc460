// The VM list of every node, as the controller keeps it from heartbeats (heartbeat_codec.h, wire
// versions). Pure; one thread (the plugin's event thread).
#pragma once

#include "heartbeat_codec.h"

#include <string>
#include <unordered_map>
#include <vector>

namespace nodeha::heartbeat {

// The VM list of every node as its heartbeats tell it: the whole list in wire version 1, and in
// version 2 whenever one carries it; a version-2 heartbeat without the list keeps the one its
// digest names.
class VmLists {
 public:
  // Takes the list out of `hb` (which keeps none). False when `hb` carries no list and its digest
  // is not that of the list kept: the list kept is not the node's, and the whole one is needed.
  bool take(Heartbeat& hb);
  const std::vector<VmInfo>* find(const std::string& node) const;

 private:
  struct List {
    std::string digest;  // empty: from a version-1 heartbeat
    std::vector<VmInfo> vms;
  };
  std::unordered_map<std::string, List> lists_;
};

}  // namespace nodeha::heartbeat
