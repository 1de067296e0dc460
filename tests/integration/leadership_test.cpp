// Two controllers and one leader lease (host/src/lease.h) on a real nats-server, with agents on
// the libvirt test driver: one leads and alone runs the plugins (the follower only those that answer
// read-only commands: follower_test.cpp); a leader killed in the middle of
// a rebuild is replaced and the rebuild ends once, every VM moved once, no node unreachable; a
// leader cut off from NATS steps down and follows on its return; a leader that stops hands over
// at once.
#include "operations_fixture.h"
#include "tcp_relay.h"

namespace nodeha::test {
namespace {

using ::testing::HasSubstr;

class Leadership : public Operations {
 protected:
  std::unique_ptr<HostProcess> controller(const std::string& id, const std::string& url = "", const std::string& lease = "2s") {
    auto c = std::make_unique<HostProcess>(rebuild_config_for(id, url), std::vector<std::string>{"host.lease=\"" + lease + "\""});
    EXPECT_TRUE(c->wait_ready()) << c->log();
    return c;
  }
  std::string rebuild_config_for(const std::string& id, const std::string& url) const {
    return controller_config("[[plugin]]\nlibrary = \"rebuild\"\nparallel = 1\n", id, url);
  }
  static bool leads(const HostProcess& c) { return c.metric("nodeha_controller_leader") == 1; }
  static double epoch(const HostProcess& c) { return c.metric("nodeha_controller_epoch"); }
  // Events naming `node` unreachable, since the test began.
  int unreachable_events(const std::string& node) {
    std::lock_guard lock(mu_);
    int n = 0;
    for (const auto& e : events_)
      n += e["subject"] == "nodeha.evt.node." + node && e.value("event", "") == "monitor" && e.value("to", "") == "unreachable";
    return n;
  }
  int task_events(const std::string& id, const std::string& event) {
    std::lock_guard lock(mu_);
    int n = 0;
    for (const auto& e : events_) n += e["subject"] == "nodeha.evt.task." + id && e.value("event", "") == event;
    return n;
  }
};

TEST_F(Leadership, OneOfTwoControllersLeadsAndOnlyItRunsThePlugins) {
  auto one = controller("ctl-1");
  auto two = controller("ctl-2");
  ASSERT_TRUE(wait_until([&] { return epoch(*two) == 1; })) << two->log();
  EXPECT_TRUE(leads(*one));
  EXPECT_FALSE(leads(*two));
  EXPECT_EQ(one->metric("nodeha_plugin_up{plugin=\"heartbeat\"}"), 1);
  EXPECT_EQ(two->metric("nodeha_plugin_up{plugin=\"heartbeat\"}"), 0) << "a follower runs no leader's instance";
  EXPECT_EQ(two->metric("nodeha_plugin_following{plugin=\"heartbeat\"}"), 1) << "it answers node.list and node.show";
  EXPECT_EQ(two->metric("nodeha_plugin_up{plugin=\"rebuild\"}"), 0);
  auto lease = json::parse(bus_->kv_get("controllers", "leader").value().value);
  EXPECT_EQ(lease["holder"], "ctl-1");
  EXPECT_EQ(lease["epoch"], 1);
  // Commands are answered, once, by the leader.
  auto a = start_agent("node-a", vms_of(1, 2));
  ASSERT_TRUE(wait_until([&] { return normal("node-a"); })) << one->log();
  auto r = command("node.show", {{"node", "node-a"}});
  EXPECT_TRUE(r["ok"]) << r;
  EXPECT_THAT(two->log(), HasSubstr("following"));
  EXPECT_THAT(two->log(), ::testing::Not(HasSubstr("plugin heartbeat started")));
}

TEST_F(Leadership, ALeaderKilledInTheMiddleOfARebuildIsReplacedAndTheRebuildEndsOnceWithEveryVmMovedOnce) {
  auto vms = vms_of(1, 150);
  std::unique_ptr<HostProcess> one, b;
  ASSERT_NO_FATAL_FAILURE(lose_and_drain_node_a(vms, one, b, rebuild_config_for("ctl-1", ""), {"host.lease=\"2s\""}));
  auto two = controller("ctl-2");
  ASSERT_TRUE(wait_until([&] { return epoch(*two) == 1; })) << two->log();

  std::string id = rebuild_node_a();
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(wait_until([&] { return succeeded_steps(id) >= 1; }, 20s)) << task(id).dump(2);
  one->process().signal(SIGKILL);
  one->process().wait_exit(5s);
  ASSERT_EQ(task_state(id), "running") << "the rebuild ended before the leader was killed: nothing to take over";

  ASSERT_TRUE(wait_until([&] { return leads(*two); }, 10s)) << two->log();
  EXPECT_EQ(epoch(*two), 2);
  ASSERT_TRUE(wait_until([&] { return task_state(id) == "succeeded"; }, 60s)) << task(id).dump(2) << two->log();
  EXPECT_THAT(two->log(), HasSubstr("resuming rebuild task " + id));
  EXPECT_EQ(task(id)["epoch"], 2) << "the task is written under the new leader's epoch";
  auto on_b = domains("node-b");
  EXPECT_EQ(on_b.size(), vms.size());
  for (const auto& v : vms) {
    EXPECT_EQ(on_b[v.uuid], "running") << v.name;
    EXPECT_EQ(vm_record(v.uuid)["generation"], 2) << v.name << ": moved once, even if its step ran twice";
  }
  EXPECT_EQ(task_events(id, "finished"), 1) << "the task ends exactly once";
  EXPECT_EQ(unreachable_events("node-b"), 0) << "the takeover made no node look failed";
  EXPECT_TRUE(normal("node-b"));
}

TEST_F(Leadership, ALeaderCutOffFromNatsStepsDownAnotherLeadsAndOnItsReturnItFollows) {
  TcpRelay relay(nats_.port());
  auto one = controller("ctl-1", "nats://127.0.0.1:" + std::to_string(relay.port()));
  auto two = controller("ctl-2");
  auto a = start_agent("node-a", vms_of(1, 2));
  ASSERT_TRUE(wait_until([&] { return normal("node-a") && epoch(*two) == 1; })) << one->log();
  ASSERT_TRUE(leads(*one));

  relay.hold();
  // It cannot renew: it stops acting a margin before its lease ends, then another leads.
  ASSERT_TRUE(wait_until([&] { return !leads(*one); }, 10s)) << one->log();
  EXPECT_THAT(one->log(), HasSubstr("stepping down"));
  ASSERT_TRUE(wait_until([&] { return leads(*two); }, 10s)) << two->log();
  EXPECT_EQ(epoch(*two), 2);
  // Its plugins end their work (fenced since the step-down: nothing they do reaches anyone), and
  // those that serve followers run again as follower instances.
  EXPECT_TRUE(wait_until([&] { return one->metric("nodeha_plugin_up{plugin=\"heartbeat\"}") == 0; }, 30s)) << one->log();
  EXPECT_TRUE(wait_until([&] { return one->metric("nodeha_plugin_following{plugin=\"heartbeat\"}") == 1; }, 30s))
      << one->log();

  relay.release();
  ASSERT_TRUE(wait_until([&] { return epoch(*one) == 2; }, 20s)) << "it reads the new epoch once back\n" << one->log();
  // Back and following: for longer than a lease, it never leads again and the leader stays.
  EXPECT_FALSE(wait_until([&] { return leads(*one) || !leads(*two); }, 3s));
  EXPECT_EQ(json::parse(bus_->kv_get("controllers", "leader").value().value)["holder"], "ctl-2");
  EXPECT_EQ(unreachable_events("node-a"), 0);
  EXPECT_TRUE(command("node.show", {{"node", "node-a"}})["ok"]);
}

TEST_F(Leadership, ALeaderThatStopsReleasesTheLeaseAndAnotherLeadsAtOnce) {
  // A long lease: a takeover that waited for it to run out would miss the deadline below.
  auto one = controller("ctl-1", "", "30s");
  auto two = controller("ctl-2", "", "30s");
  ASSERT_TRUE(wait_until([&] { return epoch(*two) == 1; })) << two->log();
  one->process().signal(SIGTERM);
  EXPECT_EQ(one->process().wait_exit(10s), 0) << one->log();
  EXPECT_THAT(one->log(), HasSubstr("leader lease released"));
  ASSERT_TRUE(wait_until([&] { return leads(*two); }, 10s)) << two->log();
  EXPECT_EQ(epoch(*two), 2);
}

// A plan is kept in KV, not in the leader's memory: made under one leader, it runs under the
// next, exactly (plugins/tasks/plans.h).
TEST_F(Leadership, APlanMadeUnderOneLeaderRunsUnderTheNext) {
  auto vms = vms_of(1, 2);
  std::unique_ptr<HostProcess> one, b;
  ASSERT_NO_FATAL_FAILURE(lose_and_drain_node_a(vms, one, b, rebuild_config_for("ctl-1", ""), {"host.lease=\"2s\""}));
  auto two = controller("ctl-2");
  ASSERT_TRUE(wait_until([&] { return epoch(*two) == 1; })) << two->log();
  auto dry = command("node.rebuild", {{"node", "node-a"}, {"dry_run", true}});
  ASSERT_TRUE(dry["ok"]) << dry;
  std::string id = dry["result"]["plan_id"];
  EXPECT_EQ(json::parse(bus_->kv_get("plans", id).value().value)["made_by"], "ctl-1");

  one.reset();  // a clean stop hands the lease over at once
  // Leading, and its rebuild plugin started (the lease comes first, the plugins a moment later).
  ASSERT_TRUE(wait_until([&] { return leads(*two) && two->metric("nodeha_plugin_up{plugin=\"rebuild\"}") == 1; }, 10s))
      << two->log();
  auto r = command("node.rebuild", {{"node", "node-a"}, {"plan", id}});
  ASSERT_TRUE(r["ok"]) << r << two->log();
  std::string task_id = r["result"]["task"];
  EXPECT_EQ(r["result"]["plan"], dry["result"]["plan"]);
  ASSERT_TRUE(wait_until([&] { return task_state(task_id) == "succeeded"; }, 30s)) << task(task_id).dump(2) << two->log();
  EXPECT_TRUE(recorded(vms, "node-b"));
  EXPECT_EQ(json::parse(bus_->kv_get("plans", id).value().value)["used_by"], task_id);
}

}  // namespace
}  // namespace nodeha::test
