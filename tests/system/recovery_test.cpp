// Automatic recovery behind fencing (issue 16; docs/operations.md, "Automatic recovery") on the
// namespace cluster (cluster.h): real QEMU guests, the invariant monitor sampling every node's
// libvirt every 100 ms, and a real BMC per node, Debian's ipmi_sim (bmc_sim.h), in a namespace of
// its own on the management network: a BMC is hardware of its own on standby power, so a node's
// power loss leaves it answering. Its chassis power-off kills every process of the node's
// namespace (QEMUs, libvirtd, agent), as pulling the power does. The controller fences through the
// fence_ipmi plugin (ipmitool), then the operator's ack. The self-fencing scenarios give every
// agent the selffence plugin instead, its witness on the business network and its watchdog a
// stand-in process (tests/fixtures/watchdog_standin.cpp: no hardware watchdog can run here) that,
// unfed, kills every process of the node's namespace as a reset would.
//
// Each test prints its figures as `[ figure   ] <test>: <what> <seconds> s`.
#include "cluster_test.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace nodeha::test {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

// Recovery on, fenced by IPMI (5 s), then by the operator; the budget: one node of three.
ClusterOptions recovery_cluster(std::map<int, int> guests, bool alerting = false) {
  ClusterOptions o;
  o.guests = std::move(guests);
  o.alerting = alerting;
  o.bmcs = true;
  o.controller_extra =
      "[[plugin]]\nlibrary = \"recovery\"\nenabled = true\nmax_auto_nodes = 1\nmax_auto_share = 0.34\n"
      "[[plugin.fence]]\nmethod = \"ipmi\"\ntimeout = \"5s\"\n[[plugin.fence]]\nmethod = \"ack\"\n";
  return o;
}

// Recovery on, fenced by the nodes' own leases (5 s, watchdog 4 s, margin 1 s), then by the
// operator; `response` for a node cut from management only.
ClusterOptions self_fence_cluster(std::map<int, int> guests, const std::string& response) {
  ClusterOptions o;
  o.guests = std::move(guests);
  o.alerting = false;
  o.self_fence = true;
  o.controller_extra = "[[plugin]]\nlibrary = \"recovery\"\nenabled = true\nfence_after = \"5s\"\nlease_margin = \"1s\"\n"
                       "isolation_response = \"" + response + "\"\n"
                       "[[plugin.fence]]\nmethod = \"lease\"\n[[plugin.fence]]\nmethod = \"ack\"\n";
  return o;
}

class RecoveryScenario : public ClusterTest {
 protected:
  void set_ha(const std::string& uuid, const std::string& ha) {
    auto r = c().cli({"vm", "set-ha", uuid, ha});
    ASSERT_EQ(r.status, 0) << r.out << r.err;
  }
  json recovery(int i) { return c().record("nodes", Cluster::node(i)).value("recovery", json::object()); }
  json fence(int i) { return c().record("nodes", Cluster::node(i)).value("fence", json()); }
  // The nodes VM `uuid` runs on now (the monitor's last sample of every libvirt).
  std::vector<std::string> where(const std::string& uuid) { return c().monitor().running_on(uuid); }
  bool runs_elsewhere(const std::string& uuid, int i) {
    auto on = where(uuid);
    return on.size() == 1 && on[0] != Cluster::node(i);
  }
  // A self-fencing cluster (self_fence_cluster) with one guest on node-1, made HA, once every
  // agent holds a lease and has armed its watchdog; the guest's uuid in `guest`.
  void start_self_fencing(const std::string& response, std::string* guest) {
    ASSERT_NO_FATAL_FAILURE(start(self_fence_cluster({{1, 1}}, response)));
    for (int i = 1; i <= c().nodes(); ++i) {
      ASSERT_TRUE(wait_until([&] { return c().agent(i)->metric("nodeha_lease_valid") == 1; }, 20s)) << c().agent(i)->log();
      ASSERT_TRUE(wait_until([&] { return c().watchdog_log(i).find("armed") != std::string::npos; }, 10s)) << c().watchdog_log(i);
    }
    *guest = c().guests_of(1)[0];
    ASSERT_NO_FATAL_FAILURE(set_ha(*guest, "1"));
  }
  // Waits until `guest` runs on another node than node-1, fenced by its lease; the figure `what`.
  void expect_recovered_by_lease(const std::string& guest, Clock::time_point since, const std::string& what) {
    ASSERT_TRUE(wait_until([&] { return runs_elsewhere(guest, 1); }, 30s))
        << ::testing::PrintToString(where(guest)) << c().watchdog_log(1) << c().record("nodes", "node-1").dump(2)
        << c().logs();
    figure(what + " to HA VM running elsewhere", seconds_since(since));
    EXPECT_EQ(fence(1)["method"], "lease") << fence(1);
  }
};

// Power loss of node-1 (everything in it killed, its links cut): the controller powers it off
// through its BMC, then recreates its two HA guests elsewhere; the guest with ha off stays down.
// node-1 comes back drained, removes its stale copies and starts nothing.
TEST_F(RecoveryScenario, PowerLossFencedByIpmiHaVmsRunElsewhereAndHaOffStaysDown) {
  ASSERT_NO_FATAL_FAILURE(start(recovery_cluster({{1, 3}})));
  const auto& g = c().guests_of(1);
  ASSERT_NO_FATAL_FAILURE(set_ha(g[0], "10"));
  ASSERT_NO_FATAL_FAILURE(set_ha(g[1], "20"));
  ASSERT_NO_FATAL_FAILURE(set_ha(g[2], "off"));

  auto lost = Clock::now();
  c().power_off(1);
  ASSERT_TRUE(wait_until([&] { return runs_elsewhere(g[0], 1) && runs_elsewhere(g[1], 1); }, 30s))
      << c().record("nodes", "node-1").dump(2) << c().logs();
  figure("power loss to HA VMs running elsewhere", seconds_since(lost));

  ASSERT_TRUE(wait_until([&] { return recovery(1).value("state", "") == "recovered"; }, 20s)) << recovery(1).dump(2);
  EXPECT_EQ(fence(1)["method"], "ipmi") << fence(1);
  EXPECT_EQ(c().bmc(1).power_status(), std::optional<bool>(false));
  json node = c().record("nodes", "node-1");
  EXPECT_EQ(node["management"], "drained");
  json task = c().record("tasks", recovery(1)["task"]);
  EXPECT_EQ(task["kind"], "recover");
  EXPECT_EQ(task["steps"][0]["vm"], g[1]);  // priority 20 first
  EXPECT_EQ(c().vm_node(g[2]), "node-1");
  EXPECT_TRUE(where(g[2]).empty());
  auto show = c().cli({"node", "show", "node-1"});
  EXPECT_THAT(show.out, HasSubstr("\"fence\""));

  // Back: power on at the BMC, then the node boots (guests defined, shut off).
  ASSERT_TRUE(c().bmc(1).power_on()) << c().bmc(1).log();
  c().power_on(1);
  ASSERT_TRUE(c().wait_monitor(1, "normal", 30s));
  EXPECT_TRUE(wait_until([&] { return c().agent(1)->metric("nodeha_stale_copies_removed_total") == 2; }, 20s))
      << c().agent(1)->log();
  EXPECT_EQ(c().record("nodes", "node-1")["management"], "drained");
  EXPECT_TRUE(where(g[2]).empty());
  c().expect_invariants({{g[2], "ha off: stays down with its node"}});
}

// node-1 crashes but its chassis stays on (everything in it killed, its links cut, the BMC still
// reading on): the controller's fence powers it off through the BMC, and only then are its HA
// guests recreated.
TEST_F(RecoveryScenario, ACrashedNodeWhoseChassisIsOnIsPoweredOffByItsBmcFirst) {
  ASSERT_NO_FATAL_FAILURE(start(recovery_cluster({{1, 1}})));
  const auto& g = c().guests_of(1);
  ASSERT_NO_FATAL_FAILURE(set_ha(g[0], "1"));
  auto lost = Clock::now();
  c().power_off(1, /*chassis_off=*/false);
  EXPECT_EQ(c().bmc(1).power_status(), std::optional<bool>(true));
  ASSERT_TRUE(wait_until([&] { return runs_elsewhere(g[0], 1); }, 30s)) << c().record("nodes", "node-1").dump(2);
  figure("crash to HA VM running elsewhere", seconds_since(lost));
  EXPECT_EQ(fence(1)["method"], "ipmi");
  EXPECT_THAT(fence(1)["detail"].get<std::string>(), HasSubstr("off"));
  EXPECT_EQ(c().bmc(1).power_status(), std::optional<bool>(false));
  EXPECT_FALSE(c().bmc(1).machine_running());
  c().expect_invariants();
}

// The BMC cannot be reached (its link cut): the ipmi rung fails within its timeout and the
// ladder waits for the operator; nothing moves until the ack, then the HA guests run elsewhere.
TEST_F(RecoveryScenario, AnUnreachableBmcFallsToTheOperatorsAck) {
  ASSERT_NO_FATAL_FAILURE(start(recovery_cluster({{1, 2}})));
  const auto& g = c().guests_of(1);
  for (const auto& uuid : g) ASSERT_NO_FATAL_FAILURE(set_ha(uuid, "1"));
  ASSERT_TRUE(c().net().cut_bmc(1)) << c().net().error();

  c().power_off(1);
  ASSERT_TRUE(wait_until([&] { return recovery(1).value("method", "") == "ack"; }, 30s)) << recovery(1).dump(2);
  EXPECT_THAT(recovery(1)["reason"].get<std::string>(), HasSubstr("ipmi: fence_failed"));
  EXPECT_TRUE(fence(1).is_null());
  for (const auto& uuid : g) {
    EXPECT_EQ(c().vm_node(uuid), "node-1");
    EXPECT_TRUE(where(uuid).empty());
  }

  auto acked = Clock::now();
  auto ack = c().cli({"node", "fence-ack", "node-1", "--yes"});
  ASSERT_EQ(ack.status, 0) << ack.out << ack.err;
  ASSERT_TRUE(wait_until([&] { return runs_elsewhere(g[0], 1) && runs_elsewhere(g[1], 1); }, 30s)) << c().logs();
  figure("ack to HA VMs running elsewhere", seconds_since(acked));
  EXPECT_EQ(fence(1)["method"], "ack");
  EXPECT_EQ(fence(1)["by"], "admin");
  c().expect_invariants();
}

// Two of three nodes lose power at once: more than the budget. Nothing is fenced or moved, and one
// alarm says why (NodehaRecoveryHeld, reason budget).
TEST_F(RecoveryScenario, TwoNodesLostAtOnceTheBudgetHoldsWithOneAlarm) {
  ASSERT_NO_FATAL_FAILURE(start(recovery_cluster({{1, 1}, {2, 1}}, /*alerting=*/true)));
  for (int i : {1, 2}) ASSERT_NO_FATAL_FAILURE(set_ha(c().guests_of(i)[0], "1"));
  auto lost = Clock::now();
  c().power_off(1);
  c().power_off(2);
  ASSERT_TRUE(wait_until([&] { return recovery(1).value("held", "") == "budget" && recovery(2).value("held", "") == "budget"; },
                         30s))
      << recovery(1).dump(2) << recovery(2).dump(2);
  if (auto fired = delivered_for("firing", "NodehaRecoveryHeld", "", lost)) figure("budget alarm delivery", *fired);
  auto alerts = c().alerts().webhook().text();
  EXPECT_THAT(alerts, HasSubstr("budget"));
  for (int i : {1, 2}) {
    EXPECT_TRUE(fence(i).is_null());
    EXPECT_EQ(c().vm_node(c().guests_of(i)[0]), Cluster::node(i));
  }
  for (const char* result : {"off", "failed"})  // no BMC was even asked
    EXPECT_EQ(c().controller_gauge(1, std::string("nodeha_recovery_fence_attempts_total{method=\"ipmi\",result=\"") +
                                          result + "\"}"),
              0);
  c().expect_invariants({{c().guests_of(1)[0], "its node is off, held by the budget"},
                         {c().guests_of(2)[0], "its node is off, held by the budget"}});
}

// The agent crashes and is restarted at once, as systemd would: its node never looks dead, so it
// is not fenced and its guests keep their QEMUs. The agents self-fence too: the restarted one goes
// on with its lease, and its watchdog, armed all along, is fed again in time.
TEST_F(RecoveryScenario, AnAgentRestartedInsideTheWindowIsNotFenced) {
  ClusterOptions o = recovery_cluster({{1, 2}});
  o.self_fence = true;
  ASSERT_NO_FATAL_FAILURE(start(o));
  ASSERT_TRUE(wait_until([&] { return c().agent(1)->metric("nodeha_lease_valid") == 1; }, 20s)) << c().agent(1)->log();
  const auto& g = c().guests_of(1);
  for (const auto& uuid : g) ASSERT_NO_FATAL_FAILURE(set_ha(uuid, "1"));
  std::map<std::string, std::vector<pid_t>> qemu;
  for (const auto& uuid : g) qemu[uuid] = Libvirtd::processes_with(uuid);
  c().kill_agent(1);
  c().start_agent(1);
  ASSERT_TRUE(wait_until([&] { return c().agent(1)->metric("nodeha_plugin_up{plugin=\"vms\"}") == 1; }, 20s));
  // For longer than detection (3.5 s) and the ipmi rung would take, nothing happens.
  EXPECT_FALSE(wait_until([&] { return !recovery(1).empty() || !fence(1).is_null(); }, 6s)) << recovery(1).dump(2);
  EXPECT_EQ(c().monitor_state(1), "normal");
  EXPECT_EQ(c().bmc(1).power_status(), std::optional<bool>(true));
  for (const auto& uuid : g) EXPECT_EQ(Libvirtd::processes_with(uuid), qemu[uuid]) << uuid;
  EXPECT_THAT(c().agent(1)->log(), HasSubstr("lease of the previous process taken over: valid"));
  EXPECT_FALSE(c().watchdog_fired(1)) << c().watchdog_log(1);
  c().expect_invariants();
}

// The agent hangs (SIGSTOP) past its lease: it feeds its watchdog no more, so the watchdog (the
// stand-in: no hardware watchdog can run here) resets the node, killing its QEMUs. The controller
// counts the node fenced once the lease, the watchdog's timeout and the margin have passed with
// no peer hearing it; then the guest runs elsewhere, never twice.
TEST_F(RecoveryScenario, AHungAgentIsResetByItsWatchdogThenItsVmsAreRecovered) {
  std::string g;
  ASSERT_NO_FATAL_FAILURE(start_self_fencing("keep", &g));
  auto hung = Clock::now();
  c().agent(1)->process().signal(SIGSTOP);
  ASSERT_TRUE(wait_until([&] { return c().watchdog_fired(1); }, 20s)) << c().watchdog_log(1);
  figure("hung agent to watchdog reset", seconds_since(hung));
  ASSERT_TRUE(wait_until([&] { return Libvirtd::processes_with(g).empty(); }, 10s)) << "the reset left the QEMU running";
  c().power_off(1, /*chassis_off=*/false);  // what the reset left: nothing, and the node is down
  ASSERT_NO_FATAL_FAILURE(expect_recovered_by_lease(g, hung, "hung agent"));
  EXPECT_THAT(fence(1)["detail"].get<std::string>(), HasSubstr("watchdog"));
  c().expect_invariants();
}

// node-1 loses both its management and its business links: its lease ends and no peer answers
// its witness, so it destroys its VMs itself (its watchdog never fires). The controller counts it
// fenced when its time has passed with no peer hearing it; the guest runs elsewhere. node-1 comes
// back drained.
TEST_F(RecoveryScenario, ANodeCutFromBothNetworksFencesItselfThenItsVmsAreRecovered) {
  std::string g;
  ASSERT_NO_FATAL_FAILURE(start_self_fencing("keep", &g));
  auto cut = Clock::now();
  // Business first: cut in the other order, the node is isolated for a moment (its peers hear it
  // after its last heartbeat), and the leader rightly cannot count it fenced by the lease.
  ASSERT_TRUE(c().net().cut(1, Network::kBusiness) && c().net().cut(1, Network::kManagement)) << c().net().error();
  ASSERT_TRUE(wait_until([&] { return Libvirtd::processes_with(g).empty(); }, 20s)) << c().agent(1)->log();
  figure("both networks cut to self-fence", seconds_since(cut));
  ASSERT_NO_FATAL_FAILURE(expect_recovered_by_lease(g, cut, "both networks cut"));
  EXPECT_FALSE(c().watchdog_fired(1)) << c().watchdog_log(1);
  ASSERT_TRUE(c().net().restore(1, Network::kManagement) && c().net().restore(1, Network::kBusiness)) << c().net().error();
  ASSERT_TRUE(c().wait_monitor(1, "normal", 30s));
  EXPECT_EQ(c().record("nodes", "node-1")["management"], "drained");
  EXPECT_EQ(c().agent(1)->metric("nodeha_self_fences_total"), 1);
  c().expect_invariants();
}

// node-1 loses its management link only: its peers still hear it on the business network, so it
// is isolated, not dead. Under keep its VMs keep running there and nothing is rebuilt, however
// long it lasts; the hold says why. When the link is back it simply returns.
TEST_F(RecoveryScenario, AnIsolatedNodeUnderKeepKeepsItsVmsAndNothingMoves) {
  std::string g;
  ASSERT_NO_FATAL_FAILURE(start_self_fencing("keep", &g));
  auto qemu = Libvirtd::processes_with(g);
  ASSERT_TRUE(c().net().cut(1, Network::kManagement)) << c().net().error();
  ASSERT_TRUE(wait_until([&] { return recovery(1).value("held", "") == "isolated"; }, 20s)) << recovery(1).dump(2);
  EXPECT_EQ(c().controller_gauge(1, "nodeha_recovery_held_nodes{reason=\"isolated\"}"), 1);
  EXPECT_EQ(c().controller_gauge(1, "nodeha_node_isolated{node=\"node-1\"}"), 1);
  // Past the lease, the watchdog's timeout and the margin (10 s) and more, nothing moves.
  EXPECT_FALSE(wait_until([&] { return !fence(1).is_null() || (!where(g).empty() && where(g) != std::vector<std::string>{"node-1"}); },
                          14s))
      << fence(1);
  EXPECT_EQ(Libvirtd::processes_with(g), qemu);
  EXPECT_EQ(c().vm_node(g), "node-1");
  EXPECT_FALSE(c().watchdog_fired(1)) << c().watchdog_log(1);
  EXPECT_EQ(c().agent(1)->metric("nodeha_self_fences_total"), 0);
  ASSERT_TRUE(c().net().restore(1, Network::kManagement)) << c().net().error();
  // It says so (an event), then, back in service, the record forgets it.
  ASSERT_TRUE(wait_until([&] {
    for (const auto& e : c().events("nodeha.evt.node.node-1"))
      if (e.body.value("event", "") == "recovery" && e.body.value("state", "") == "returned") return true;
    return false;
  }, 30s)) << recovery(1).dump(2);
  EXPECT_TRUE(wait_until([&] { return recovery(1).empty() && c().monitor_state(1) == "normal"; }, 10s)) << recovery(1).dump(2);
  EXPECT_EQ(c().controller_gauge(1, "nodeha_recovery_held_nodes{reason=\"isolated\"}"), 0);
  EXPECT_TRUE(std::isnan(c().controller_gauge(1, "nodeha_node_isolated{node=\"node-1\"}")));
  c().expect_invariants();

  // An agent stopped cleanly tells the controller, then disarms its watchdog: the node is not reset.
  c().agent(2)->process().signal(SIGTERM);
  EXPECT_TRUE(c().agent(2)->process().wait_exit(10s));
  EXPECT_TRUE(wait_until([&] { return c().watchdog_log(2).find("disarmed") != std::string::npos; }, 5s)) << c().watchdog_log(2);
  EXPECT_FALSE(wait_until([&] { return c().watchdog_fired(2); }, 5s)) << c().watchdog_log(2);
}

// The same cut under stop: node-1, isolated, destroys its VMs itself and tells its peers, whose
// reports let the controller count it fenced without waiting for the watchdog's time; then its
// guest runs elsewhere.
TEST_F(RecoveryScenario, AnIsolatedNodeUnderStopFencesItselfThenItsVmsAreRecovered) {
  std::string g;
  ASSERT_NO_FATAL_FAILURE(start_self_fencing("stop", &g));
  auto cut = Clock::now();
  ASSERT_TRUE(c().net().cut(1, Network::kManagement)) << c().net().error();
  ASSERT_TRUE(wait_until([&] { return Libvirtd::processes_with(g).empty(); }, 20s)) << c().agent(1)->log();
  ASSERT_NO_FATAL_FAILURE(expect_recovered_by_lease(g, cut, "management cut (stop)"));
  EXPECT_THAT(fence(1)["detail"].get<std::string>(), HasSubstr("said so to its peers"));
  EXPECT_FALSE(c().watchdog_fired(1)) << c().watchdog_log(1);
  c().expect_invariants();
}

// Two of three nodes lose their management link at once (a switch on the controller's side):
// more than the budget. Under stop each would fence itself, since node-3, whose lease is valid,
// still answers; but the grants node-3 holds say recovery is held, so its answers tell them to keep
// their VMs. Nothing is fenced, nothing moves, and the hold says why.
TEST_F(RecoveryScenario, HalfTheNodesCutFromManagementUnderStopKeepTheirVmsAndTheBudgetHolds) {
  ASSERT_NO_FATAL_FAILURE(start(self_fence_cluster({{1, 1}, {2, 1}}, "stop")));
  for (int i = 1; i <= 3; ++i)
    ASSERT_TRUE(wait_until([&] { return c().agent(i)->metric("nodeha_lease_valid") == 1; }, 20s)) << c().agent(i)->log();
  std::map<int, std::vector<pid_t>> qemu;
  for (int i : {1, 2}) {
    ASSERT_NO_FATAL_FAILURE(set_ha(c().guests_of(i)[0], "1"));
    qemu[i] = Libvirtd::processes_with(c().guests_of(i)[0]);
  }
  for (int i : {1, 2}) ASSERT_TRUE(c().net().cut(i, Network::kManagement)) << c().net().error();
  ASSERT_TRUE(wait_until([&] { return recovery(1).value("held", "") == "budget" && recovery(2).value("held", "") == "budget"; },
                         20s))
      << recovery(1).dump(2) << recovery(2).dump(2);
  // Past their leases' end, the watchdog's timeout and the margin (10 s) and more, nothing moves.
  EXPECT_FALSE(wait_until([&] { return !fence(1).is_null() || !fence(2).is_null(); }, 14s)) << fence(1) << fence(2);
  for (int i : {1, 2}) {
    EXPECT_EQ(Libvirtd::processes_with(c().guests_of(i)[0]), qemu[i]) << Cluster::node(i) << " fenced itself";
    EXPECT_FALSE(c().watchdog_fired(i)) << c().watchdog_log(i);
  }
  EXPECT_EQ(c().controller_gauge(1, "nodeha_recovery_held_nodes{reason=\"budget\"}"), 2);
  for (int i : {1, 2}) ASSERT_TRUE(c().net().restore(i, Network::kManagement)) << c().net().error();
  for (int i : {1, 2}) EXPECT_TRUE(c().wait_monitor(i, "normal", 30s));
  c().expect_invariants();
}

}  // namespace
}  // namespace nodeha::test
