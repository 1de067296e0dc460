// The control plane fails (issue 15, point 4): two controllers on the namespace cluster
// (cluster.h, `controllers` = 2), one leading by the lease in KV. The leader dies with SIGKILL in
// the middle of a rebuild, a drain and a node migration, or loses its link: the other takes
// over without a restart. In every test each task ends exactly once (one `finished` event on
// nodeha.evt.task.<id>), no VM ever runs twice (the invariant monitor, from start to end), no
// live node is called `unreachable`, the other agents keep their guests and answer on their
// node-local path during the fault, and Prometheus + Alertmanager page for exactly what they
// should. docs/operations.md, "The control plane fails", is the operator's side.
//
// On a 3-server NATS cluster (`nats_servers` = 3, every bucket and stream replicated x3) one
// server stops in the middle of a rebuild, two stop (no quorum: nothing acts, nothing is lost,
// all goes on when one is back), and the leader dies together with a NATS server, as when their
// machine loses power.
//
// Each test prints `[ figure   ] <test>: takeover <seconds> s` (from the kill or cut to the
// other controller's nodeha_controller_leader 1).
#include "cluster_test.h"

namespace nodeha::test {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

class ControlPlane : public ClusterTest {
 protected:
  // What NodehaNoLeader may do in a test: never fire; fire (then also be resolved) or not; fire
  // and be resolved.
  enum class NoLeader { kNever, kAllowed, kExpected };

  void start(ClusterOptions options) {
    options.controllers = 2;
    began_ = Clock::now();
    ASSERT_NO_FATAL_FAILURE(ClusterTest::start(std::move(options)));
    ASSERT_EQ(c().leader(), 1);
  }

  // SIGKILL to the leader (controller 1); controller 2 must lead: the takeover figure.
  void kill_leader_and_take_over() {
    auto killed = Clock::now();
    c().kill_controller(1);
    expect_local_paths();
    ASSERT_TRUE(c().wait_leader(2, 20s)) << "controller 2 did not take over";
    figure("takeover", seconds_since(killed));
  }

  // The node-local path of every node but node 1 (the one acted on) answers, whatever the control
  // plane does: a dry-run `nodeha local drain` through the agent's socket plans every guest the
  // node started with, and changes nothing.
  void expect_local_paths() {
    for (int i = 2; i <= c().nodes(); ++i) {
      auto r = c().local(i, {"drain"});
      EXPECT_EQ(r.status, 0) << Cluster::node(i) << ": " << r.out << r.err;
      std::set<std::string> planned;
      for (const auto& p : r.doc().value("plan", nlohmann::json::array())) planned.insert(p.value("vm", ""));
      for (const auto& uuid : c().guests_of(i)) EXPECT_TRUE(planned.count(uuid)) << Cluster::node(i) << ": " << r.out;
    }
  }

  // Node 1 loses power, is judged unreachable (and paged for, with alerting) and drained; its
  // rebuild begins and has a step under way but not all done. The rebuild's task id; empty when any of that failed.
  std::string begin_rebuild_of_lost_node() {
    auto lost = Clock::now();
    c().power_off(1);
    EXPECT_TRUE(c().wait_monitor(1, "unreachable", 20s));
    // Paged while it is in service: the drain takes it out, and the alarm with it.
    if (c().alerting()) delivered_for("firing", "NodehaNodeUnreachable", Cluster::node(1), lost);
    if (begin({"node", "drain", Cluster::node(1)}).empty()) return "";
    std::string id = begin({"node", "rebuild", Cluster::node(1)});
    if (id.empty()) return "";
    auto t = wait_started(id);
    EXPECT_LT(steps(t, "succeeded"), static_cast<int>(c().guests_of(1).size()))
        << "the rebuild ended before the fault: " << t.dump(2);
    return HasFailure() ? "" : id;
  }

  // On a 3-server NATS cluster (with alerting), from began_: node 1 (4 guests) is lost and its
  // rebuild under way (begin_rebuild_of_lost_node); node 3 runs a guest. The task id, and the
  // server that leads the lease's stream (KV_controllers), the one whose loss costs the most.
  void begin_rebuild_on_nats_cluster(std::string* id, size_t* lease_server) {
    replies_lost_in_restart_ = true;  // answers to requests a stopped server had passed on
    ASSERT_NO_FATAL_FAILURE(start(ClusterOptions{.nodes = 3, .guests = {{1, 4}, {3, 1}}, .nats_servers = 3}));
    *id = begin_rebuild_of_lost_node();
    ASSERT_FALSE(id->empty());
    auto server = c().nats_cluster().stream_leader("KV_controllers");
    ASSERT_TRUE(server) << "no NATS server leads the lease's stream";
    *lease_server = *server;
  }
  Clock::time_point began_;  // the test's start: alarms are looked for from here

  // Task `id` ended once, in `state`: its record says so and one `finished` event was published.
  void expect_ended_once(const std::string& id, const std::string& state) {
    auto final = c().wait_task(id, 120s);
    EXPECT_EQ(final.value("state", ""), state) << final.dump(2);
    const std::string subject = "nodeha.evt.task." + id;
    auto finished_events = [&] {
      int n = 0;
      for (const auto& e : c().events(subject)) n += e.subject == subject && e.body.value("event", "") == "finished";
      return n;
    };
    // The event follows the record's write: a moment to arrive, then never a second one.
    EXPECT_TRUE(wait_until([&] { return finished_events() >= 1; }, 5s)) << "no finished event for " << id;
    EXPECT_FALSE(wait_until([&] { return finished_events() > 1; }, 3s)) << id << " finished twice";
  }

  // No node but `except` was ever judged unreachable.
  void expect_no_false_unreachable(int except = 0) {
    for (int i = 1; i <= c().nodes(); ++i) {
      if (i == except) continue;
      for (const auto& change : c().monitor_changes(i))
        EXPECT_EQ(change.find("->unreachable"), std::string::npos) << Cluster::node(i) << ": " << change;
      EXPECT_EQ(c().monitor_state(i), "normal") << Cluster::node(i);
    }
  }

  // Every guest of node i runs on exactly one node (a rebuild's or migration's result).
  void expect_each_runs_once(int i) {
    EXPECT_TRUE(wait_until([&] {
      for (const auto& uuid : c().guests_of(i))
        if (c().monitor().running_on(uuid).size() != 1) return false;
      return true;
    }, 30s));
  }

  // The alarms of a test (with alerting) in which node `lost` (0: none) lost power:
  // NodehaNodeUnreachable for it and for no other node; NodehaNoLeader as `no_leader` says.
  void expect_alarms(int lost, NoLeader no_leader, Clock::time_point since) {
    if (!c().alerting()) return;
    if (lost != 0) delivered_for("firing", "NodehaNodeUnreachable", Cluster::node(lost), since);
    auto paged = [&] { return c().alerts().webhook().find("firing", "NodehaNoLeader", "").has_value(); };
    if (no_leader == NoLeader::kExpected) delivered_for("firing", "NodehaNoLeader", "", since);
    if (no_leader == NoLeader::kExpected || (no_leader == NoLeader::kAllowed && paged()))
      delivered_for("resolved", "NodehaNoLeader", "", since);
    // Alertmanager groups for 1 s: what fired late is delivered within a few.
    EXPECT_FALSE(wait_until([&] {
      if (no_leader == NoLeader::kNever && paged()) return true;
      for (int i = 1; i <= c().nodes(); ++i)
        if (i != lost && c().alerts().webhook().find("firing", "NodehaNodeUnreachable", Cluster::node(i))) return true;
      return false;
    }, 5s)) << c().alerts().webhook().text();
  }

  // The rebuild of begin_rebuild_of_lost_node ended once and well: each of node 1's guests runs
  // once, no other node was unreachable, node 3's guest never stopped, the alarms as expected.
  void expect_rebuild_ended_once(const std::string& id, NoLeader no_leader) {
    ASSERT_NO_FATAL_FAILURE(expect_ended_once(id, "succeeded"));
    expect_each_runs_once(1);
    expect_no_false_unreachable(1);
    ASSERT_NO_FATAL_FAILURE(expect_untouched(3));
    expect_alarms(1, no_leader, began_);
  }

  // The drain of node 1 (3 guests, one at a time) begun and a step under way, not all done; the
  // task id, empty when any of that failed.
  std::string begin_drain() {
    std::string id = begin({"node", "drain", Cluster::node(1)});
    if (id.empty()) return "";
    auto t = wait_started(id);
    EXPECT_LT(steps(t, "succeeded"), 3) << "the drain ended before the fault: " << t.dump(2);
    return HasFailure() ? "" : id;
  }
  // That drain ended once and well: node 1 drained, its guests stopped (`stopped` gets them, for
  // expect_invariants), no node unreachable, node 2's guest never stopped, the alarms as expected.
  void expect_drain_ended_once(const std::string& id, std::map<std::string, std::string>* stopped, NoLeader no_leader) {
    ASSERT_NO_FATAL_FAILURE(expect_ended_once(id, "succeeded"));
    EXPECT_EQ(c().record("nodes", Cluster::node(1)).value("management", ""), "drained");
    for (const auto& uuid : c().guests_of(1)) {
      EXPECT_TRUE(wait_until([&] { return c().monitor().running_on(uuid).empty(); }, 15s)) << uuid;
      (*stopped)[uuid] = "stopped by the drain";
    }
    expect_no_false_unreachable();
    ASSERT_NO_FATAL_FAILURE(expect_untouched(2));
    expect_alarms(0, no_leader, began_);
  }

  // Node i's guests still run on it and never stopped; their records never moved.
  void expect_untouched(int i) {
    ASSERT_TRUE(c().monitor().wait_rounds(2));
    for (const auto& uuid : c().guests_of(i)) {
      EXPECT_EQ(c().monitor().running_on(uuid), std::vector<std::string>{Cluster::node(i)}) << uuid;
      EXPECT_EQ(c().monitor().longest_gap(uuid).count(), 0) << "the guest stopped: " << c().monitor().timeline_text(uuid);
    }
  }
};

// a. The leader dies (SIGKILL) in the middle of a rebuild of a lost node; nobody restarts it:
// controller 2 takes over the lease and the task, which ends once; every guest runs once.
TEST_F(ControlPlane, LeaderKilledMidRebuild) {
  ASSERT_NO_FATAL_FAILURE(start(ClusterOptions{.nodes = 3, .guests = {{1, 4}, {3, 1}}}));
  std::string id = begin_rebuild_of_lost_node();
  ASSERT_FALSE(id.empty());
  ASSERT_NO_FATAL_FAILURE(kill_leader_and_take_over());
  ASSERT_NO_FATAL_FAILURE(expect_rebuild_ended_once(id, NoLeader::kNever));
  c().expect_invariants();
}

// b. The leader dies in the middle of a drain of a reachable node: one guest at a time, each
// given 5 s to shut down (the test guests ignore ACPI), so the kill falls between guests.
TEST_F(ControlPlane, LeaderKilledMidDrain) {
  ASSERT_NO_FATAL_FAILURE(start(ClusterOptions{.nodes = 3, .guests = {{1, 3}, {2, 1}},
                                               .drain_extra = "parallel = 1\n"}));
  std::string id = begin_drain();
  ASSERT_FALSE(id.empty());
  ASSERT_NO_FATAL_FAILURE(kill_leader_and_take_over());
  std::map<std::string, std::string> stopped;
  ASSERT_NO_FATAL_FAILURE(expect_drain_ended_once(id, &stopped, NoLeader::kNever));
  c().expect_invariants(stopped);
}

// c. The leader dies in the middle of a live node migration (bandwidth-limited, so that the kill
// falls inside a guest's copy): the task ends once, each guest runs once, on another node.
TEST_F(ControlPlane, LeaderKilledMidMigration) {
  ASSERT_NO_FATAL_FAILURE(start(ClusterOptions{.nodes = 3, .guests = {{1, 2}},
                                               .migrate_extra = "bandwidth_mib = 2\n"}));
  std::string id = begin({"node", "migrate", Cluster::node(1)});
  ASSERT_FALSE(id.empty());
  ASSERT_NO_FATAL_FAILURE(wait_inside_migration(id));
  ASSERT_NO_FATAL_FAILURE(kill_leader_and_take_over());
  ASSERT_NO_FATAL_FAILURE(expect_ended_once(id, "succeeded"));
  ASSERT_TRUE(c().monitor().wait_rounds(2));
  for (const auto& uuid : c().guests_of(1)) {
    auto on = c().monitor().running_on(uuid);
    ASSERT_EQ(on.size(), 1u) << uuid << ": " << c().monitor().timeline_text(uuid);
    EXPECT_NE(on[0], Cluster::node(1)) << uuid;
  }
  expect_no_false_unreachable();
  expect_alarms(0, NoLeader::kNever, began_);
  c().expect_invariants();
}

// d. The leader's namespace is cut off from everything: it steps down (its own /metrics, read
// inside its namespace, says leader 0), controller 2 leads, no node is blamed; back, it follows.
TEST_F(ControlPlane, LeaderCutOffStepsDownAndFollows) {
  ASSERT_NO_FATAL_FAILURE(start(ClusterOptions{.nodes = 3, .guests = {{1, 1}, {2, 1}}}));
  auto cut = Clock::now();
  ASSERT_TRUE(c().cut_controller(1)) << c().net().error();
  expect_local_paths();
  ASSERT_TRUE(c().wait_leader(2, 20s)) << "controller 2 did not take over";
  figure("takeover", seconds_since(cut));
  EXPECT_EQ(c().leader_gauge(1), 0) << "the cut-off controller still says it leads";
  auto restored = Clock::now();
  ASSERT_TRUE(c().restore_controller(1)) << c().net().error();
  // Back, it learns the new epoch from the lease and follows.
  EXPECT_TRUE(wait_until([&] { return c().epoch_gauge(1) == c().epoch_gauge(2) && c().epoch_gauge(2) >= 2; }, 30s))
      << "epochs: " << c().epoch_gauge(1) << " and " << c().epoch_gauge(2);
  figure("epoch agreed after the link returned", seconds_since(restored));
  // For longer than a lease (2 s) it never leads again, and controller 2 stays the leader.
  EXPECT_FALSE(wait_until([&] { return c().leader_gauge(1) != 0; }, 5s)) << "controller 1 led again";
  EXPECT_EQ(c().leader(), 2);
  // Prometheus sees one leader, among both controllers it scrapes.
  EXPECT_TRUE(wait_until([&] { return c().alerts().query_value("sum(nodeha_controller_leader)") == 1.0; }, 20s));
  expect_no_false_unreachable();
  for (int i : {1, 2}) ASSERT_NO_FATAL_FAILURE(expect_untouched(i));
  expect_alarms(0, NoLeader::kNever, began_);
  c().expect_invariants();
}

// e. One of three NATS servers stops (SIGTERM, as for maintenance) in the middle of a rebuild: the
// one that leads the lease's stream (KV_controllers), the hardest for the leader. Its clients
// reconnect to another, its streams hand their leadership over, and the rebuild ends once.
// Nobody is paged for it: no NodehaNoLeader, no live node unreachable.
TEST_F(ControlPlane, NatsServerStoppedMidRebuild) {
  std::string id;
  size_t server = 0;
  ASSERT_NO_FATAL_FAILURE(begin_rebuild_on_nats_cluster(&id, &server));
  auto stopped = Clock::now();
  c().nats(server).stop();
  expect_local_paths();
  ASSERT_NO_FATAL_FAILURE(expect_rebuild_ended_once(id, NoLeader::kNever));
  figure("rebuild ended after a NATS server stopped", seconds_since(stopped));
  c().nats(server).start();
  c().expect_invariants();
}

// f. Two of three NATS servers stop in the middle of a rebuild: no quorum. The leader cannot
// renew its lease and steps down; nobody leads, nothing is started or stopped, no record is
// lost, and NodehaNoLeader pages. One server back: a controller leads, the rebuild ends once.
TEST_F(ControlPlane, TwoNatsServersStoppedMidRebuild) {
  std::string id;
  size_t server = 0;
  ASSERT_NO_FATAL_FAILURE(begin_rebuild_on_nats_cluster(&id, &server));
  // The lease's stream leader first: whichever server is left, it is not the one that led.
  const size_t first = server, second = (server + 1) % 3;
  auto stopped = Clock::now();
  c().nats(first).stop();
  c().nats(second).stop();
  ASSERT_TRUE(wait_until([&] { return c().leader_gauge(1) == 0 && c().leader_gauge(2) == 0; }, 10s))
      << "a controller still leads without quorum: " << c().leader_gauge(1) << ", " << c().leader_gauge(2);
  figure("no leader after quorum was lost", seconds_since(stopped));
  expect_local_paths();
  // Nothing acts without a leader: what runs where stays as it is (a start asked before the loss
  // has had a lease's time to end).
  ASSERT_TRUE(c().monitor().wait_rounds(2));
  std::map<std::string, std::vector<std::string>> where;
  for (const auto& uuid : c().all_guests()) where[uuid] = c().monitor().running_on(uuid);
  EXPECT_FALSE(wait_until([&] {
    if (c().leader() != -1) return true;
    for (const auto& [uuid, on] : where)
      if (c().monitor().running_on(uuid) != on) return true;
    return false;
  }, 8s)) << "something acted without quorum";
  auto back = Clock::now();
  c().nats(first).start();
  ASSERT_TRUE(wait_until([&] { return c().leader() != -1; }, 60s)) << "no controller leads with quorum back";
  figure("a leader again after one server returned", seconds_since(back));
  ASSERT_NO_FATAL_FAILURE(expect_rebuild_ended_once(id, NoLeader::kExpected));
  c().nats(second).start();
  c().expect_invariants();
}

// g. The leader and a NATS server die together (SIGKILL both, as when their machine loses power)
// in the middle of a drain: the server that leads the lease's stream, the worst case, for its
// Raft group elects a new leader only after 4-9 s (nats-server's election timeout) and nobody can
// take the lease before. Controller 2 takes over on the two servers left, the drain ends once,
// no node is called unreachable. NodehaNoLeader pages when the takeover took longer than twice
// the lease (4 s, its `for`), and is resolved; it must not page after a takeover under 3 s.
TEST_F(ControlPlane, LeaderAndNatsServerKilledMidDrain) {
  replies_lost_in_restart_ = true;  // answers to requests a stopped server had passed on
  ASSERT_NO_FATAL_FAILURE(start(ClusterOptions{.nodes = 3, .guests = {{1, 3}, {2, 1}}, .drain_extra = "parallel = 1\n",
                                               .nats_servers = 3}));
  std::string id = begin_drain();
  ASSERT_FALSE(id.empty());
  auto server = c().nats_cluster().stream_leader("KV_controllers");
  ASSERT_TRUE(server) << "no NATS server leads the lease's stream";
  auto killed = Clock::now();
  c().kill_controller(1);
  c().nats(*server).stop(SIGKILL);
  expect_local_paths();
  ASSERT_TRUE(c().wait_leader(2, 30s)) << "controller 2 did not take over";
  const double takeover = seconds_since(killed);
  figure("takeover", takeover);
  std::map<std::string, std::string> stopped;
  ASSERT_NO_FATAL_FAILURE(expect_drain_ended_once(id, &stopped, takeover < 3.0 ? NoLeader::kNever : NoLeader::kAllowed));
  c().nats(*server).start();
  c().expect_invariants(stopped);
}

}  // namespace
}  // namespace nodeha::test
