// Randomized faults against automatic recovery (issue 16, point 6) on the namespace cluster
// (cluster.h): three nodes with HA guests, a BMC (ipmi_sim) per node, self-fencing agents (a
// witness on the business network, a watchdog stand-in), recovery fenced by IPMI, then by the
// nodes' leases (isolation_response stop), then by the operator's ack. Each round draws one
// fault, waits until the cluster has settled again
// (every node normal and in service, every HA guest running exactly once), and checks:
//   - never two running copies of a guest (the invariant monitor, every 100 ms, all along);
//   - no HA guest down longer than its budget, kBudget from the fault.
// Faults: a node's power loss (chassis off), a crash with the chassis still on (the BMC powers it
// off), a power loss with the node's BMC cut off (the ladder falls to the lease), an agent hung
// (SIGSTOP: its watchdog resets the node), a node cut from management only (isolated), an agent
// killed and restarted at once, the controller killed and restarted, nats-server stopped and
// started.
//
// NODEHA_CHAOS_ROUNDS (default 4: the short run of scripts/test) and NODEHA_CHAOS_SEED (default: a
// fresh one) repeat a run; every round prints its seed, fault and figures, and a failure names the
// seed that replays it.
#include "cluster_test.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <random>

namespace nodeha::test {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr auto kBudget = 20s;  // an HA guest may be down this long after a fault (detection ~3.5 s)

enum class Fault {
  PowerLoss, CrashChassisOn, PowerLossBmcCut, AgentRestart, ControllerRestart, NatsRestart, AgentHang, ManagementCut,
  kCount
};
const char* name(Fault f) {
  switch (f) {
    case Fault::PowerLoss: return "power loss";
    case Fault::CrashChassisOn: return "crash, chassis on";
    case Fault::PowerLossBmcCut: return "power loss, BMC cut off";
    case Fault::AgentRestart: return "agent restart";
    case Fault::ControllerRestart: return "controller restart";
    case Fault::NatsRestart: return "nats-server restart";
    case Fault::AgentHang: return "agent hung";
    case Fault::ManagementCut: return "management cut";
    case Fault::kCount: break;
  }
  return "?";
}

uint64_t env_or(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 10) : fallback;
}

class Chaos : public ClusterTest {
 protected:
  std::vector<std::string> ha_guests_;

  // Every HA guest runs on exactly one node.
  bool all_running() {
    for (const auto& uuid : ha_guests_)
      if (c().monitor().running_on(uuid).size() != 1) return false;
    return true;
  }
  // Seconds from `since` (the fault) until every HA guest runs again (sampled every 10 ms), or
  // nullopt when that did not happen within kBudget of it.
  // Only samples complete after the fault count: until then the monitor's last word on the lost
  // node is from before it.
  std::optional<double> wait_all_running(Clock::time_point since) {
    const int sampled = c().monitor().complete_rounds();
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(since + kBudget - Clock::now());
    bool done = left.count() > 0 &&
                wait_until([&] { return c().monitor().complete_rounds() > sampled + 1 && all_running(); }, left);
    return done ? std::optional<double>(seconds_since(since)) : std::nullopt;
  }
  // A node with at least one HA guest, drawn with `rng`.
  int victim(std::mt19937_64& rng) {
    std::vector<int> with;
    for (int i = 1; i <= c().nodes(); ++i)
      for (const auto& uuid : ha_guests_)
        if (c().vm_node(uuid) == Cluster::node(i)) {
          with.push_back(i);
          break;
        }
    return with.empty() ? 1 : with[rng() % with.size()];
  }
  // Node i back from a fence: powered on at its BMC, booted, enabled again.
  void bring_back(int i) {
    if (c().bmc(i).power_status() == std::optional<bool>(false)) {
      ASSERT_TRUE(c().bmc(i).power_on()) << c().bmc(i).log();
    }
    c().power_on(i);
    ASSERT_TRUE(c().wait_monitor(i, "normal", 30s)) << c().record("nodes", Cluster::node(i)).dump(2);
    auto r = c().cli({"node", "enable", Cluster::node(i)});
    ASSERT_EQ(r.status, 0) << r.out << r.err;
    ASSERT_TRUE(wait_until([&] { return !c().record("nodes", Cluster::node(i)).contains("fence"); }, 20s));
  }
  // Every agent holds its lease: a node that never got one cannot be fenced by it, and the ladder
  // then waits for an operator (the first round cut a node's BMC 0.1 s after the start, before its
  // first renewal, and its guests stayed down past the budget: right, but not what is tested).
  bool leases_valid() {
    for (int i = 1; i <= c().nodes(); ++i)
      if (!c().agent(i) || c().agent(i)->metric("nodeha_lease_valid") != 1) return false;
    return true;
  }
  // The round's end: a node a fault got fenced (an agent restart the monitor did not wait for is
  // one) brought back, then every node normal and in service, no recovery under way, every HA
  // guest running once, every agent holding its lease.
  void settled(const std::string& round) {
    for (int i = 1; i <= c().nodes(); ++i) {
      bool fenced = wait_until([&] {
        json r = c().record("nodes", Cluster::node(i));
        std::string state = r.value("recovery", json::object()).value("state", "");
        return r.contains("fence") && (state == "recovered" || state == "partial");
      }, 1s);
      if (fenced) {
        std::printf("[ chaos    ] %s: %s was fenced; brought back\n", round.c_str(), Cluster::node(i).c_str());
        ASSERT_NO_FATAL_FAILURE(bring_back(i));
      }
    }
    ASSERT_TRUE(wait_until([&] {
      for (int i = 1; i <= c().nodes(); ++i) {
        json r = c().record("nodes", Cluster::node(i));
        if (r.value("monitor", "") != "normal" || r.value("management", "") != "enabled" || r.contains("recovery") ||
            !r["lock"].is_null())
          return false;
      }
      return all_running() && leases_valid();
    }, 60s)) << round << ": the cluster did not settle\n" << c().logs();
  }
};

TEST_F(Chaos, RandomFaultsNeverRunAVmTwiceNorLeaveAnHaVmDownPastItsBudget) {
  ClusterOptions o;
  o.guests = {{1, 2}, {2, 1}};
  o.alerting = false;
  o.bmcs = true;
  o.self_fence = true;
  o.controller_extra =
      "[[plugin]]\nlibrary = \"recovery\"\nenabled = true\nfence_after = \"5s\"\nlease_margin = \"1s\"\n"
      "isolation_response = \"stop\"\n[[plugin.fence]]\nmethod = \"ipmi\"\ntimeout = \"3s\"\n"
      "[[plugin.fence]]\nmethod = \"lease\"\n[[plugin.fence]]\nmethod = \"ack\"\n";
  ASSERT_NO_FATAL_FAILURE(start(o));
  ASSERT_TRUE(wait_until([&] { return leases_valid(); }, 20s)) << c().logs();
  for (int i : {1, 2})
    for (const auto& uuid : c().guests_of(i)) {
      auto r = c().cli({"vm", "set-ha", uuid, std::to_string(ha_guests_.size() + 1)});
      ASSERT_EQ(r.status, 0) << r.out << r.err;
      ha_guests_.push_back(uuid);
    }

  const uint64_t seed = env_or("NODEHA_CHAOS_SEED", std::random_device{}());
  const uint64_t rounds = env_or("NODEHA_CHAOS_ROUNDS", 4);
  std::printf("[ chaos    ] seed %llu, %llu rounds (NODEHA_CHAOS_SEED=%llu replays it)\n", (unsigned long long)seed,
              (unsigned long long)rounds, (unsigned long long)seed);
  std::mt19937_64 rng(seed);
  for (uint64_t n = 1; n <= rounds && !HasFailure(); ++n) {
    const Fault fault = static_cast<Fault>(rng() % static_cast<uint64_t>(Fault::kCount));
    const int i = victim(rng);
    const std::string round = "round " + std::to_string(n) + " (seed " + std::to_string(seed) + "): " + name(fault) +
                              " of " + Cluster::node(i);
    std::printf("[ chaos    ] %s\n", round.c_str());
    std::fflush(stdout);
    std::optional<double> down;
    const auto at = Clock::now();
    switch (fault) {
      case Fault::PowerLoss:
      case Fault::CrashChassisOn:
        c().power_off(i, fault == Fault::PowerLoss);
        down = wait_all_running(at);
        EXPECT_TRUE(down) << round << ": HA guests down past " << kBudget.count() << " s\n" << c().logs();
        if (down) {
          ASSERT_NO_FATAL_FAILURE(bring_back(i));
        }
        break;
      case Fault::PowerLossBmcCut:
        // The ipmi rung fails; the node's lease, which its dead agent no longer renews, fences it.
        ASSERT_TRUE(c().net().cut_bmc(i)) << c().net().error();
        c().power_off(i);
        down = wait_all_running(at);
        EXPECT_TRUE(down) << round << ": HA guests down past " << kBudget.count() << " s\n" << c().logs();
        EXPECT_EQ(c().record("nodes", Cluster::node(i)).value("fence", json::object()).value("method", ""), "lease");
        ASSERT_TRUE(c().net().restore_bmc(i)) << c().net().error();
        if (down) {
          ASSERT_NO_FATAL_FAILURE(bring_back(i));
        }
        break;
      case Fault::AgentHang:
      case Fault::ManagementCut:
        // The hung agent's watchdog resets the node; the isolated node fences itself (stop). Either
        // way the BMC may power it off first. Once one of them acted, the node is taken as off.
        if (fault == Fault::AgentHang) {
          c().agent(i)->process().signal(SIGSTOP);
        } else {
          ASSERT_TRUE(c().net().cut(i, Network::kManagement)) << c().net().error();
        }
        ASSERT_TRUE(wait_until([&] {
          return c().watchdog_fired(i) || c().bmc(i).power_status() == std::optional<bool>(false) ||
                 c().record("nodes", Cluster::node(i)).contains("fence");
        }, kBudget)) << round << "\n" << c().record("nodes", Cluster::node(i)).dump(2) << c().logs();
        c().power_off(i, /*chassis_off=*/false);
        down = wait_all_running(at);
        EXPECT_TRUE(down) << round << ": HA guests down past " << kBudget.count() << " s\n" << c().logs();
        if (down) {
          ASSERT_NO_FATAL_FAILURE(bring_back(i));
        }
        break;
      case Fault::AgentRestart:
        c().kill_agent(i);
        c().start_agent(i);
        break;
      case Fault::ControllerRestart:
        c().kill_controller();
        c().start_controller();
        break;
      case Fault::NatsRestart:
        replies_lost_in_restart_ = true;
        c().nats().stop();
        c().nats().start();
        break;
      case Fault::kCount:  // not a fault: the modulo above never gives it
        break;
    }
    if (down) std::printf("[ chaos    ] %s: HA guests running again %.2f s after the %s\n", round.c_str(), *down,
                          fault == Fault::PowerLossBmcCut ? "ack" : "fault");
    ASSERT_NO_FATAL_FAILURE(settled(round));
  }
  c().expect_invariants();
}

}  // namespace
}  // namespace nodeha::test
