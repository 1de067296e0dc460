// The control plane fails (issue 15, point 4): two controllers on the namespace cluster
// (cluster.h, `controllers` = 2), one leading by the lease in KV. The leader dies with SIGKILL in
// the middle of a rebuild, a drain and a node migration, or loses its link: the other takes
// over without a restart. In every test each task ends exactly once (one `finished` event on
// nodeha.evt.task.<id>), no VM ever runs twice (the invariant monitor, from start to end), no
// live node is called `unreachable`, and the agents keep their guests. docs/operations.md,
// "The control plane fails", is the operator's side.
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
  void start(ClusterOptions options) {
    options.controllers = 2;
    ASSERT_NO_FATAL_FAILURE(ClusterTest::start(std::move(options)));
    ASSERT_EQ(c().leader(), 1);
  }

  // SIGKILL to the leader (controller 1); controller 2 must lead: the takeover figure.
  void kill_leader_and_take_over() {
    auto killed = Clock::now();
    c().kill_controller(1);
    ASSERT_TRUE(c().wait_leader(2, 20s)) << "controller 2 did not take over";
    figure("takeover", seconds_since(killed));
  }

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
  ASSERT_NO_FATAL_FAILURE(start(ClusterOptions{.nodes = 3, .guests = {{1, 4}, {3, 1}}, .alerting = false}));
  c().power_off(1);
  ASSERT_TRUE(c().wait_monitor(1, "unreachable", 20s));
  ASSERT_FALSE(begin({"node", "drain", Cluster::node(1)}).empty());
  std::string id = begin({"node", "rebuild", Cluster::node(1)});
  ASSERT_FALSE(id.empty());
  auto t = wait_started(id);
  ASSERT_LT(steps(t, "succeeded"), 4) << "the rebuild ended before the leader was killed: " << t.dump(2);
  ASSERT_NO_FATAL_FAILURE(kill_leader_and_take_over());
  ASSERT_NO_FATAL_FAILURE(expect_ended_once(id, "succeeded"));
  ASSERT_TRUE(wait_until([&] {
    for (const auto& uuid : c().guests_of(1))
      if (c().monitor().running_on(uuid).size() != 1) return false;
    return true;
  }, 30s));
  expect_no_false_unreachable(1);
  ASSERT_NO_FATAL_FAILURE(expect_untouched(3));
  c().expect_invariants();
}

// b. The leader dies in the middle of a drain of a reachable node: one guest at a time, each
// given 5 s to shut down (the test guests ignore ACPI), so the kill falls between guests.
TEST_F(ControlPlane, LeaderKilledMidDrain) {
  ASSERT_NO_FATAL_FAILURE(start(ClusterOptions{.nodes = 3, .guests = {{1, 3}, {2, 1}}, .alerting = false,
                                               .drain_extra = "parallel = 1\n"}));
  std::string id = begin({"node", "drain", Cluster::node(1)});
  ASSERT_FALSE(id.empty());
  auto t = wait_started(id);
  ASSERT_LT(steps(t, "succeeded"), 3) << "the drain ended before the leader was killed: " << t.dump(2);
  ASSERT_NO_FATAL_FAILURE(kill_leader_and_take_over());
  ASSERT_NO_FATAL_FAILURE(expect_ended_once(id, "succeeded"));
  EXPECT_EQ(c().record("nodes", Cluster::node(1)).value("management", ""), "drained");
  std::map<std::string, std::string> stopped;
  for (const auto& uuid : c().guests_of(1)) {
    EXPECT_TRUE(wait_until([&] { return c().monitor().running_on(uuid).empty(); }, 15s)) << uuid;
    stopped[uuid] = "stopped by the drain";
  }
  expect_no_false_unreachable();
  ASSERT_NO_FATAL_FAILURE(expect_untouched(2));
  c().expect_invariants(stopped);
}

// c. The leader dies in the middle of a live node migration (bandwidth-limited, so that the kill
// falls inside a guest's copy): the task ends once, each guest runs once, on another node.
TEST_F(ControlPlane, LeaderKilledMidMigration) {
  ASSERT_NO_FATAL_FAILURE(start(ClusterOptions{.nodes = 3, .guests = {{1, 2}}, .alerting = false,
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
  c().expect_invariants();
}

// d. The leader's namespace is cut off from everything: it steps down (its own /metrics, read
// inside its namespace, says leader 0), controller 2 leads, no node is blamed; back, it follows.
TEST_F(ControlPlane, LeaderCutOffStepsDownAndFollows) {
  ASSERT_NO_FATAL_FAILURE(start(ClusterOptions{.nodes = 3, .guests = {{1, 1}, {2, 1}}}));
  auto cut = Clock::now();
  ASSERT_TRUE(c().cut_controller(1)) << c().net().error();
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
  c().expect_invariants();
}

}  // namespace
}  // namespace nodeha::test
