// node.list and node.show, answered alike by the leader's instance and a following controller's
// (plugin interface 1.5): the records of the `nodes` bucket as last watched, with what the
// controller knows live laid over them. The leader knows from its monitor (states, checks, the
// last heartbeat); a follower runs no monitor and knows only the heartbeats it hears, so its
// states are those the leader last wrote (at once on every change), and its answers say
// `"follower": "<controller>"`.
//
// Threads: everything on the plugin's event thread.
#pragma once

#include "heartbeat_codec.h"
#include "node_record.h"
#include "vm_lists.h"

#include <nodeha/ids.hpp>
#include <nodeha/plugin.hpp>

#include <nlohmann/json.hpp>

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace nodeha::heartbeat {

// What a controller knows of a node beyond its record.
struct NodeLive {
  nlohmann::json fields = nlohmann::json::object();  // laid over the stored record
  const Heartbeat* heartbeat = nullptr;               // the last one heard (`heartbeat` in show), its list taken
  const std::vector<VmInfo>* vms = nullptr;           // the VM list its heartbeats last told
};

// The heartbeat a message on <prefix>.hb.<node> carries, refused (with the reason) when malformed
// or when its node field names another node than the subject. `max_wire`: heartbeat_codec.h.
Result<Heartbeat> heartbeat_of(const Host& host, const Message& m, uint32_t max_wire);


// The node a {"node": "<id>"} command names; nullopt when the request is refused (and answered so).
std::optional<NodeId> requested_node(const Host& host, const Message& m);
// Answers unknown_node for `id`.
void refuse_unknown_node(const Host& host, const Message& m, const std::string& id);

class NodeBook {
 public:
  using Live = std::function<std::optional<NodeLive>(const std::string& id)>;
  // Calls its argument with the id of every node known live, in no order (views valid during
  // the call: everything runs on the plugin's event thread).
  using LiveIds = std::function<void(const std::function<void(std::string_view id)>&)>;
  // When node `id` was last heard from (unix ms), as known live; 0: not known so.
  using LastHeard = std::function<int64_t(const std::string& id)>;
  // `live`: what is known of node `id` now (nullopt: nothing beyond its record); `live_ids`: the
  // nodes known so, whether recorded or not.
  NodeBook(const Host& host, Live live, LiveIds live_ids, LastHeard last_heard)
      : host_(host), live_(std::move(live)), live_ids_(std::move(live_ids)), last_heard_(std::move(last_heard)) {}

  // A record as read from the bucket (a delete forgets it). Returns the record parsed, or a
  // discarded value when it was deleted or is not a JSON object.
  nlohmann::json keep(const KvEntry& e);
  bool knows(const std::string& id) const { return records_.count(id) != 0; }
  // A record as last watched. Null when none is known.
  using Stored = StoredRecord;
  const Stored* stored(const std::string& id) const;

  void cmd_list(const Message& m) const;
  void cmd_show(const Message& m) const;

 private:
  nlohmann::json describe(const std::string& id, const std::optional<NodeLive>& live) const;
  // node.list's {"ages": true} entry: {node, heartbeat_age_s}, built from last_heard_ (the record
  // only for a node not heard from): what the web page polls, at a fraction of describe()'s cost.
  nlohmann::json age_of(const std::string& id) const;

  const Host& host_;
  Live live_;
  LiveIds live_ids_;
  LastHeard last_heard_;
  // Kept as text: parsed JSON costs several KiB per node, and records are read rarely.
  std::unordered_map<std::string, Stored> records_;
};

}  // namespace nodeha::heartbeat
