// The controller side of the heartbeat: tracks every node with the Monitor state machine, pings
// silent nodes, keeps node records in the `nodes` bucket (only when something an operator needs
// changed), publishes events on <prefix>.evt.node.<node>, exports the node metrics, and answers
// node.list / node.show / node.enable / node.disable.
//
// It never blames nodes for its own trouble (controller_link.cpp): while its link to NATS is
// down, was lost and made again, or fails a round-trip probe taken before a node is blamed, the
// monitor is suspended (gauge nodeha_monitor_suspended), and a probe that succeeds resumes it
// with a grace window for every node.
//
// Threads: everything here runs on the plugin's event thread, except KV reads and writes and
// link probes, which run on workers and post their results back.
#pragma once

#include "evidence.h"
#include "monitor.h"
#include "node_book.h"
#include "node_record.h"
#include "node_table.h"
#include "repeat.h"

#include <nodeha/plugin.hpp>

#include <array>
#include <set>

namespace nodeha::heartbeat {

class ControllerSide {
 public:
  explicit ControllerSide(const Host& host);
  Status start();

 private:
  struct NodeMetrics {
    std::array<Metric, 3> monitor;     // normal, unreachable, error
    std::array<Metric, 3> management;  // enabled, disabled, drained
    Metric age;
  };
  struct Written {
    std::string fields;          // the fields last written by us
    int64_t last_heartbeat = 0;  // their last_heartbeat
  };
  // When a node may next be told the wire version (or asked for its list), and the gap after
  // that: it doubles, up to kMaxGrantGap, for a node that keeps to version 1 (an older agent).
  struct NextGrant {
    TimePoint at{};
    Millis gap{0};
  };
  // What the controller keeps of a node beside the monitor's state, in one place: a heartbeat
  // costs one lookup here (docs/performance.md, "Node monitoring").
  struct Node {
    explicit Node(int64_t refresh) : refresh_ms(refresh) {}
    int64_t refresh_ms;                // refresh_for(id)
    int64_t last_heartbeat_unix = 0;   // 0: none heard, and none stored
    std::optional<Written> written;
    std::optional<Repeat> repeat;      // the last heartbeat taken, while its like may be taken undecoded
    NextGrant grant;
    std::optional<NodeMetrics> metrics;
    Monitor::Handle monitor;  // set when the monitor first knows the node
  };

  void on_heartbeat(const Message& m);
  bool take_repeat(const Message& m);
  void took_heartbeat(const std::string& id, Node& node, bool changed, int64_t now_ms);
  void grant_wire(const std::string& node, NextGrant& grant, bool full);
  void on_check(const Message& m);
  void on_record(const KvEntry& e);
  void tick();
  void watch_link();
  void probe_link();
  void link_probed(TimePoint sent, const Status& status, uint64_t connects);
  void suspend(const std::string& reason);
  void apply(const Effects& effects);
  void ping(const PingRequest& p);
  int64_t refresh_for(const std::string& node) const;
  void publish_event(const std::string& node, nlohmann::json event, const evidence::Evidence& why);
  evidence::Evidence transition_evidence(const Transition& t) const;
  void set_metrics(const NodeState& n);
  void mark_dirty(const std::string& node);
  void flush();
  void refresh_ages();

  void cmd_management(const Message& m, ManagementCommand command);
  std::optional<NodeLive> live(const std::string& id) const;
  Node& node(const std::string& id);  // made on first use

  const Host& host_;
  Monitor monitor_;
  int64_t refresh_ms_;
  uint32_t max_wire_;  // config `wire`
  std::string hb_prefix_;  // "<prefix>.hb.": a heartbeat's subject is this and its node
  NodeBook book_;  // the records last seen in KV; node.list and node.show
  NodeTable<Node> nodes_;
  VmLists lists_;
  std::set<std::string> dirty_;
  bool writing_ = false;
  Metric received_, bad_heartbeats_, suspended_;
  uint64_t connects_ = 0;  // the host's connection count last seen: a change means "I was away"
  bool probing_ = false;   // one link probe at a time
  bool probe_again_ = false;
  std::array<Metric, 3> changes_;
};

}  // namespace nodeha::heartbeat
