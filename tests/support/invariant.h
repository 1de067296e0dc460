// The safety invariant of nodeha, watched from outside: one and only one running copy of a VM,
// ever. Every system test that moves VMs (migrate, drain, rebuild, fencing) runs one of these
// over all its nodes' libvirtd for the whole test.
//
//   InvariantMonitor monitor({{"node-a", a.uri()}, {"node-b", b.uri()}});   // sampling starts
//   ... move VMs ...
//   monitor.stop();
//   EXPECT_THAT(monitor.violations(), IsEmpty());
//   monitor.expect_all_running({uuid1, uuid2}, {{uuid3, "stopped by the drain"}});
//
// What it does: a thread of its own takes a *round* every `period` (100 ms): for each node in
// turn, virConnectListAllDomains(ACTIVE) and the state of each domain. It keeps one connection
// per libvirt URI and reopens it when a call fails; a node it cannot read in a round is
// *unknown* for that round, never evidence of anything (a killed libvirtd is a test scenario).
//
// Running means VIR_DOMAIN_RUNNING (and BLOCKED), nothing else. During a live migration libvirt
// shows the source running and the destination *paused* (the incoming copy) until the switch-
// over, then the destination running and the source paused/gone: that is not two copies.
//
// A *violation* is a VM seen running on two or more nodes in two consecutive rounds (on the same
// nodes both times). One round is not proof: the nodes of a round are read one after another, so
// node-a read just before a switch-over and node-b read just after it would show the VM on both
// although it never ran twice. Two rounds are: with reads a1 < b1 < a2 < b2, running at a1 and a2
// on node-a (and a VM does not stop and restart on a node within 100 ms) and at b1 on node-b
// means both ran at b1. The cost: an overlap shorter than one period may go unseen.
//
// It also keeps, per VM, a timeline of where it ran (changes only, from rounds in which every node
// was readable), from which `longest_gap` tells how long a VM ran nowhere: a live migration shows
// a gap of at most a round or two; a restart, far more.
//
// Thread-safety: every method may be called from any thread while the sampler runs.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace nodeha::test {

class InvariantMonitor {
 public:
  // The uuids of the VMs running on a node (libvirt RUNNING or BLOCKED); nullopt when it cannot
  // be read. Called on the sampler's thread.
  using Reader = std::function<std::optional<std::vector<std::string>>()>;
  struct Node {
    std::string name;  // node id, as the test calls it
    std::string uri;   // its libvirtd
    // When set, read instead of `uri`: a node whose libvirt only its agent can reach (the test
    // driver lives in the agent's process), asked through the agent.
    Reader read;
  };
  struct Violation {
    std::string uuid;
    std::vector<std::string> nodes;  // where it ran at once
    std::chrono::milliseconds at;    // since the monitor started (the first of the two rounds)
    std::string text;                // "VM <uuid> running on node-a and node-b at 1.234 s"
  };
  struct Change {
    std::chrono::milliseconds at;    // since the monitor started
    std::vector<std::string> nodes;  // where the VM runs from then on (empty: nowhere)
  };

  // Starts sampling at once.
  explicit InvariantMonitor(std::vector<Node> nodes, std::chrono::milliseconds period = std::chrono::milliseconds(100));
  ~InvariantMonitor();  // stops
  InvariantMonitor(const InvariantMonitor&) = delete;
  InvariantMonitor& operator=(const InvariantMonitor&) = delete;

  // Stops sampling (idempotent); what was recorded stays readable.
  void stop();

  std::vector<Violation> violations() const;
  // The violations as text, one per line; empty when there were none (for EXPECT messages).
  std::string violations_text() const;
  // Rounds taken so far, and how many of them could read every node.
  int rounds() const;
  int complete_rounds() const;
  // Blocks until `n` more complete rounds were taken (false on timeout): "the monitor has seen
  // the state after this point".
  bool wait_rounds(int n, std::chrono::milliseconds timeout = std::chrono::seconds(10)) const;

  // Where `uuid` ran, as it changed (complete rounds only).
  std::vector<Change> timeline(const std::string& uuid) const;
  std::string timeline_text(const std::string& uuid) const;
  // The longest time `uuid` ran nowhere between being seen running and being seen running again
  // (or the end of sampling), from complete rounds; zero when it never stopped running.
  std::chrono::milliseconds longest_gap(const std::string& uuid) const;
  // The nodes `uuid` runs on in the latest complete round.
  std::vector<std::string> running_on(const std::string& uuid) const;

  // Marks a node as powered off (a test killed every process of it) or back on. While it is off
  // the monitor does not read it and takes it to run nothing, so rounds stay complete; once it is
  // back, it is read again (unknown until its libvirtd answers).
  void set_down(const std::string& node, bool down);

  // Reads every node now but those set_down (its own connections; works after stop()) and adds a
  // test failure for every VM of `expected` that does not run on exactly one node, unless
  // `allowed_missing` names it with the reason it may be missing (then it may run nowhere, never
  // twice). Also fails on any unreadable node. Returns whether all held.
  bool expect_all_running(const std::set<std::string>& expected,
                          const std::map<std::string, std::string>& allowed_missing = {}) const;

 private:
  using Round = std::map<std::string, std::vector<std::string>>;  // uuid -> nodes running it
  void run();
  // One round; `complete` says whether every node was read.
  Round sample(bool* complete);
  void record(const Round& round, bool complete, std::chrono::milliseconds at);

  std::vector<Node> nodes_;
  std::chrono::milliseconds period_;
  std::chrono::steady_clock::time_point start_;
  std::vector<void*> conns_;  // virConnectPtr per node, sampler thread only

  mutable std::mutex mu_;
  std::vector<Violation> violations_;
  std::set<std::string> reported_;  // uuid + nodes already reported (once each)
  Round previous_;
  std::chrono::milliseconds previous_at_{0};
  bool previous_complete_ = false;
  std::map<std::string, std::vector<Change>> timelines_;
  std::chrono::milliseconds last_complete_{0};
  std::set<std::string> down_;  // nodes set_down
  int rounds_ = 0;
  int complete_rounds_ = 0;

  std::atomic<bool> stop_{false};
  std::thread thread_;  // last: starts once everything above is set
};

}  // namespace nodeha::test
