// recovery_bench: a node's power loss to its HA VMs running elsewhere, round after round, on the
// namespace cluster of the system tests (tests/system/cluster.h: real nats-server, controller,
// agents, libvirtd and QEMU guests, a BMC (ipmi_sim) per node; heartbeats every 1 s, 3 misses, a
// 0.5 s ping). Each round powers off the node that runs the HA guests (its chassis off at the BMC,
// or with --chassis on still on, so that the fence must power it off), times when the controller
// judged it unreachable, fenced it and when every guest ran on another node (the invariant
// monitor's 100 ms samples), then brings the node back and enables it. The monitor checks for the
// whole run that no guest ever runs twice.
//
//   recovery_bench [--rounds 20] [--guests 1] [--chassis off|on]
//
// Run it from a Release build as root; docs/performance.md quotes it, side by side with
// Pacemaker (bench/recovery_side_by_side).
#include "cluster.h"
#include "measure.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace nodeha::test {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

struct Options {
  int rounds = 20;
  int guests = 1;
  bool chassis_off = true;
} g_options;

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

void print_row(const char* what, std::vector<double> v) {
  std::printf("%-34s %8s %8s %8s %8s %8s\n", what, bench::fixed(bench::percentile(v, 50), 2).c_str(),
              bench::fixed(bench::percentile(v, 90), 2).c_str(), bench::fixed(bench::percentile(v, 95), 2).c_str(),
              bench::fixed(*std::min_element(v.begin(), v.end()), 2).c_str(),
              bench::fixed(*std::max_element(v.begin(), v.end()), 2).c_str());
}

TEST(RecoveryBench, PowerLossToHaVmsRunningElsewhere) {
  ClusterOptions o;
  o.guests = {{1, g_options.guests}};
  o.alerting = false;
  o.bmcs = true;
  o.controller_extra =
      "[[plugin]]\nlibrary = \"recovery\"\nenabled = true\n"
      "[[plugin.fence]]\nmethod = \"ipmi\"\ntimeout = \"5s\"\n[[plugin.fence]]\nmethod = \"ack\"\n";
  Cluster c(o);
  ASSERT_NO_FATAL_FAILURE(c.start());
  const auto guests = c.guests_of(1);
  for (const auto& uuid : guests) {
    auto r = c.cli({"vm", "set-ha", uuid, "1"});
    ASSERT_EQ(r.status, 0) << r.out << r.err;
  }
  std::vector<double> unreachable, fenced, running;
  int victim = 1;
  std::printf("round  node    unreachable  fenced  running (s after the power loss)\n");
  for (int round = 1; round <= g_options.rounds; ++round) {
    const std::string node = Cluster::node(victim);
    auto lost = Clock::now();
    c.power_off(victim, g_options.chassis_off);
    double t_unreachable = -1, t_fenced = -1, t_running = -1;
    bool done = wait_until([&] {
      json rec = c.record("nodes", node);
      if (t_unreachable < 0 && rec.value("monitor", "") == "unreachable") t_unreachable = since(lost);
      if (t_fenced < 0 && rec.contains("fence")) t_fenced = since(lost);
      for (const auto& uuid : guests) {
        auto on = c.monitor().running_on(uuid);
        if (on.size() != 1 || on[0] == node) return false;
      }
      t_running = since(lost);
      return true;
    }, 60s);
    ASSERT_TRUE(done) << "round " << round << ": the guests of " << node << " did not run elsewhere\n" << c.logs();
    ASSERT_TRUE(wait_until([&] { return c.record("nodes", node).value("recovery", json::object()).value("state", "") == "recovered"; },
                           30s));
    std::printf("%5d  %s  %11.2f  %6.2f  %7.2f\n", round, node.c_str(), t_unreachable, t_fenced, t_running);
    // A slow round says why: the steps of its recover task (a step that waited says on what).
    if (t_running - t_fenced > 1.5) {
      json task = c.record("tasks", c.record("nodes", node).value("recovery", json::object()).value("task", ""));
      for (const auto& step : task.value("steps", json::array())) std::printf("       step %s\n", step.dump().c_str());
    }
    std::fflush(stdout);
    unreachable.push_back(t_unreachable);
    fenced.push_back(t_fenced);
    running.push_back(t_running);
    // Back, and in service again; the guests are now elsewhere: the next round loses their node.
    ASSERT_TRUE(c.bmc(victim).power_on()) << c.bmc(victim).log();
    c.power_on(victim);
    ASSERT_TRUE(c.wait_monitor(victim, "normal", 30s));
    // Settled, as a node long in service is: its agent has synced its inventory (until then it
    // answers `unavailable` to a define, and a recover step placed there waits).
    ASSERT_TRUE(wait_until([&] { return c.agent(victim)->metric("nodeha_vms_syncs_total{result=\"ok\"}") > 0; }, 30s));
    auto enabled = c.cli({"node", "enable", node});
    ASSERT_EQ(enabled.status, 0) << enabled.out << enabled.err;
    ASSERT_TRUE(wait_until([&] { return !c.record("nodes", node).contains("fence"); }, 20s));
    victim = std::stoi(c.vm_node(guests[0]).substr(5));
  }
  c.expect_invariants();
  std::printf("\n%d rounds, %d HA guest(s), chassis %s after the loss; load %s\n", g_options.rounds, g_options.guests,
              g_options.chassis_off ? "off" : "still on", bench::loadavg().c_str());
  std::printf("%-34s %8s %8s %8s %8s %8s\n", "seconds after the power loss", "p50", "p90", "p95", "min", "max");
  print_row("node judged unreachable", unreachable);
  print_row("node fenced", fenced);
  print_row("every HA guest running elsewhere", running);
  std::printf("figure: recovery.power_loss_to_running_p50_s %s\n", bench::fixed(bench::percentile(running, 50), 2).c_str());
}

}  // namespace
}  // namespace nodeha::test

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--rounds") nodeha::test::g_options.rounds = std::atoi(value.c_str());
    else if (flag == "--guests") nodeha::test::g_options.guests = std::atoi(value.c_str());
    else if (flag == "--chassis") nodeha::test::g_options.chassis_off = value != "on";
    else {
      std::fprintf(stderr, "usage: recovery_bench [--rounds N] [--guests N] [--chassis off|on]\n");
      return 2;
    }
  }
  if (nodeha::test::g_options.rounds < 1 || nodeha::test::g_options.guests < 1) {
    std::fprintf(stderr, "--rounds and --guests must be at least 1\n");
    return 2;
  }
  return RUN_ALL_TESTS();
}
