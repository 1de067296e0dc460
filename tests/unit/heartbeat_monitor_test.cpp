// The controller's node monitor: every transition, no duplicate effects, the restart grace
// window, per-node intervals, and a seeded random walk checking the invariants.
#include "heartbeat_monitor_steps.h"
#include "monitor.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <random>

namespace nodeha::heartbeat {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

TEST(HeartbeatMonitor, UnknownNodeRegistersNormal) {
  Monitor m(fast());
  auto r = single<Registered>(m.on_heartbeat(beat("n1", 1, net_up()), at(0)));
  EXPECT_EQ(r.node, "n1");
  EXPECT_EQ(r.boot_id, "boot-1");
  EXPECT_EQ(r.monitor, MonitorState::Normal);
  EXPECT_EQ(r.reason, "");
  const auto* n = m.find("n1");
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(n->management, ManagementState::Enabled);
  EXPECT_EQ(n->monitor, MonitorState::Normal);
  EXPECT_EQ(n->last_seq, 1u);
  EXPECT_EQ(n->last_heartbeat, at(0));
  ASSERT_TRUE(n->heartbeat.has_value());
  EXPECT_EQ(n->heartbeat->node, "n1");
  EXPECT_EQ(m.next_due(), at(3000));
}

TEST(HeartbeatMonitor, UnknownNodeWithFailingChecksRegistersInError) {
  Monitor m(fast());
  auto r = single<Registered>(m.on_heartbeat(beat("n1", 1, net_down()), at(0)));
  EXPECT_EQ(r.monitor, MonitorState::Error);
  EXPECT_EQ(r.reason, "netcheck: eth1 target 10.0.0.1 unreachable");
  EXPECT_EQ(m.find("n1")->monitor, MonitorState::Error);
  EXPECT_EQ(m.find("n1")->reason, r.reason);
}

TEST(HeartbeatMonitor, SteadyHeartbeatsEmitNothing) {
  Monitor m(fast());
  m.on_heartbeat(beat("n1", 1), at(0));
  for (int i = 1; i <= 100; ++i) {
    EXPECT_THAT(m.on_heartbeat(beat("n1", i + 1), at(i * 1000)), IsEmpty());
    EXPECT_THAT(tick_through(m, i * 1000, i * 1000 + 900), IsEmpty());
  }
}

TEST(HeartbeatMonitor, SilentNodeIsPingedThenUnreachable) {
  Monitor m(fast());
  m.on_heartbeat(beat("n1", 1), at(0));
  EXPECT_THAT(tick_through(m, 0, 2900), IsEmpty());
  auto ping = single<PingRequest>(m.on_tick(at(3000)));
  EXPECT_EQ(ping.node, "n1");
  EXPECT_EQ(ping.timeout, milliseconds(500));
  EXPECT_TRUE(m.find("n1")->ping_pending);
  EXPECT_EQ(m.find("n1")->ping_deadline, at(3500));
  EXPECT_THAT(tick_through(m, 3000, 3400), IsEmpty());  // one ping, not one per tick
  auto t = single<Transition>(m.on_tick(at(3500)));
  EXPECT_EQ(t.node, "n1");
  EXPECT_EQ(t.from, MonitorState::Normal);
  EXPECT_EQ(t.to, MonitorState::Unreachable);
  EXPECT_EQ(t.reason, "silent for 3.5s; no answer to ping within 500ms");
  EXPECT_EQ(t.at, at(3500));
  EXPECT_EQ(m.find("n1")->monitor, MonitorState::Unreachable);
  EXPECT_EQ(m.find("n1")->reason, t.reason);
  EXPECT_FALSE(m.find("n1")->ping_pending);
  EXPECT_THAT(tick_through(m, 3500, 60000), IsEmpty());  // no repeats, no re-pings
  EXPECT_EQ(m.next_due(), std::nullopt);
}

TEST(HeartbeatMonitor, HeartbeatBringsUnreachableBack) {
  Monitor m(fast());
  m.on_heartbeat(beat("n1", 1), at(0));
  tick_through(m, 0, 3500);
  ASSERT_EQ(m.find("n1")->monitor, MonitorState::Unreachable);
  auto t = single<Transition>(m.on_heartbeat(beat("n1", 2), at(10000)));
  EXPECT_EQ(t.from, MonitorState::Unreachable);
  EXPECT_EQ(t.to, MonitorState::Normal);
  EXPECT_EQ(t.reason, "heartbeat received");
  EXPECT_EQ(m.find("n1")->reason, "");
  EXPECT_THAT(tick_through(m, 10000, 12900), IsEmpty());  // a fresh window
  single<PingRequest>(m.on_tick(at(13000)));
}

TEST(HeartbeatMonitor, UnreachableNodeWithFailingChecksComesBackInError) {
  Monitor m(fast());
  m.on_heartbeat(beat("n1", 1), at(0));
  tick_through(m, 0, 3500);
  auto t = single<Transition>(m.on_heartbeat(beat("n1", 2, net_down()), at(9000)));
  EXPECT_EQ(t.from, MonitorState::Unreachable);
  EXPECT_EQ(t.to, MonitorState::Error);
  EXPECT_EQ(t.reason, "netcheck: eth1 target 10.0.0.1 unreachable");
}

TEST(HeartbeatMonitor, PingReplyRescuesTheNode) {
  Monitor m(fast());
  m.on_heartbeat(beat("n1", 1), at(0));
  single<PingRequest>(m.on_tick(at(3000)));
  EXPECT_THAT(m.on_ping_reply("n1", "boot-1", at(3200)), IsEmpty());
  EXPECT_FALSE(m.find("n1")->ping_pending);
  EXPECT_THAT(tick_through(m, 3000, 6100), IsEmpty());  // the answer restarted the window
  single<PingRequest>(m.on_tick(at(6200)));
  EXPECT_EQ(m.find("n1")->monitor, MonitorState::Normal);
}

TEST(HeartbeatMonitor, LatePingReplyBringsUnreachableBack) {
  Monitor m(fast());
  m.on_heartbeat(beat("n1", 1), at(0));
  tick_through(m, 0, 3500);
  auto t = single<Transition>(m.on_ping_reply("n1", "boot-1", at(3600)));
  EXPECT_EQ(t.from, MonitorState::Unreachable);
  EXPECT_EQ(t.to, MonitorState::Normal);
  EXPECT_EQ(t.reason, "answered ping");
}

TEST(HeartbeatMonitor, PingReplyInErrorKeepsError) {
  Monitor m(fast());
  m.on_heartbeat(beat("n1", 1, net_down()), at(0));
  single<PingRequest>(m.on_tick(at(3000)));
  EXPECT_THAT(m.on_ping_reply("n1", "boot-1", at(3100)), IsEmpty());
  EXPECT_EQ(m.find("n1")->monitor, MonitorState::Error);
  // Unreachable, then a ping answer: the last known checks still fail.
  single<PingRequest>(m.on_tick(at(6100)));
  single<Transition>(m.on_tick(at(6600)));
  auto t = single<Transition>(m.on_ping_reply("n1", "boot-1", at(6700)));
  EXPECT_EQ(t.to, MonitorState::Error);
  EXPECT_EQ(t.reason, "netcheck: eth1 target 10.0.0.1 unreachable");
}

TEST(HeartbeatMonitor, PingFailureMarksUnreachableAtOnce) {
  Monitor m(fast());
  m.on_heartbeat(beat("n1", 1), at(0));
  EXPECT_THAT(m.on_ping_failed("n1", at(100), "no responders"), IsEmpty());  // no ping pending
  single<PingRequest>(m.on_tick(at(3000)));
  auto t = single<Transition>(m.on_ping_failed("n1", at(3001), "no responders"));
  EXPECT_EQ(t.to, MonitorState::Unreachable);
  EXPECT_EQ(t.reason, "silent for 3.001s; ping failed: no responders");
  EXPECT_THAT(tick_through(m, 3000, 10000), IsEmpty());  // the ping deadline does not fire again
  EXPECT_THAT(m.on_ping_failed("n1", at(10001)), IsEmpty());
}

TEST(HeartbeatMonitor, ErrorCarriesTheFailingChecksAndReturnsToNormal) {
  Monitor m(fast());
  m.on_heartbeat(beat("n1", 1, net_up()), at(0));
  auto t = single<Transition>(m.on_heartbeat(beat("n1", 2, net_down()), at(1000)));
  EXPECT_EQ(t.from, MonitorState::Normal);
  EXPECT_EQ(t.to, MonitorState::Error);
  EXPECT_EQ(t.reason, "netcheck: eth1 target 10.0.0.1 unreachable");
  EXPECT_EQ(m.find("n1")->reason, t.reason);
  EXPECT_THAT(m.on_heartbeat(beat("n1", 3, net_down()), at(2000)), IsEmpty());

  auto worse = net_down();
  worse.push_back({"disk", false, "sda: I/O errors"});
  auto rc = single<ReasonChanged>(m.on_heartbeat(beat("n1", 4, worse), at(3000)));
  EXPECT_EQ(rc.old_reason, "netcheck: eth1 target 10.0.0.1 unreachable");
  EXPECT_EQ(rc.new_reason, "netcheck: eth1 target 10.0.0.1 unreachable; disk: sda: I/O errors");
  EXPECT_THAT(m.on_heartbeat(beat("n1", 5, worse), at(4000)), IsEmpty());

  auto back = single<Transition>(m.on_heartbeat(beat("n1", 6, net_up()), at(5000)));
  EXPECT_EQ(back.from, MonitorState::Error);
  EXPECT_EQ(back.to, MonitorState::Normal);
  EXPECT_EQ(back.reason, "checks pass again");
  EXPECT_EQ(m.find("n1")->reason, "");
  EXPECT_THAT(m.on_heartbeat(beat("n1", 7, net_up()), at(6000)), IsEmpty());
}

TEST(HeartbeatMonitor, AlternatingStatesEmitEachTransitionOnce) {
  Monitor m(fast());
  m.on_heartbeat(beat("n1", 1), at(0));
  int64_t t = 0;
  uint64_t seq = 1;
  for (int round = 0; round < 5; ++round) {
    t += 1000;
    EXPECT_EQ(only<Transition>(m.on_heartbeat(beat("n1", ++seq, net_down()), at(t))).size(), 1u);
    EXPECT_THAT(m.on_heartbeat(beat("n1", ++seq, net_down()), at(t + 10)), IsEmpty());
    t += 1000;
    EXPECT_EQ(only<Transition>(m.on_heartbeat(beat("n1", ++seq, net_up()), at(t))).size(), 1u);
    EXPECT_THAT(m.on_heartbeat(beat("n1", ++seq, net_up()), at(t + 10)), IsEmpty());
    // Silent long enough to be declared unreachable, then back.
    auto lost = tick_through(m, t + 10, t + 10 + 3600);
    EXPECT_EQ(only<PingRequest>(lost).size(), 1u);
    EXPECT_EQ(only<Transition>(lost).size(), 1u);
    t += 10 + 3600;
    EXPECT_EQ(only<Transition>(m.on_heartbeat(beat("n1", ++seq), at(t))).size(), 1u);
  }
}

TEST(HeartbeatMonitor, NewBootIdIsAnEventNotAStateChange) {
  Monitor m(fast());
  m.on_heartbeat(beat("n1", 1, {}, "boot-1"), at(0));
  auto r = single<Rebooted>(m.on_heartbeat(beat("n1", 1, {}, "boot-2"), at(1000)));
  EXPECT_EQ(r.node, "n1");
  EXPECT_EQ(r.old_boot_id, "boot-1");
  EXPECT_EQ(r.new_boot_id, "boot-2");
  EXPECT_EQ(m.find("n1")->boot_id, "boot-2");
  EXPECT_THAT(m.on_heartbeat(beat("n1", 2, {}, "boot-2"), at(2000)), IsEmpty());
  // A ping answer names the boot too.
  single<PingRequest>(m.on_tick(at(5000)));
  auto p = single<Rebooted>(m.on_ping_reply("n1", "boot-3", at(5100)));
  EXPECT_EQ(p.old_boot_id, "boot-2");
  EXPECT_EQ(p.new_boot_id, "boot-3");
}

TEST(HeartbeatMonitor, RebootWhileUnreachableEmitsBothInOrder) {
  Monitor m(fast());
  m.on_heartbeat(beat("n1", 1, {}, "boot-1"), at(0));
  tick_through(m, 0, 3500);
  auto effects = m.on_heartbeat(beat("n1", 1, {}, "boot-2"), at(60000));
  ASSERT_EQ(effects.size(), 2u);
  EXPECT_TRUE(std::holds_alternative<Rebooted>(effects[0]));
  EXPECT_EQ(std::get<Transition>(effects[1]).to, MonitorState::Normal);
}

TEST(HeartbeatMonitor, RestartGivesKnownNodesOneFullWindow) {
  Monitor m(fast());
  KnownNode known{"n1", ManagementState::Disabled, MonitorState::Normal, "", "boot-1", milliseconds(0)};
  m.restore(std::span(&known, 1), at(10000));
  const auto* n = m.find("n1");
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(n->management, ManagementState::Disabled);
  EXPECT_EQ(n->monitor, MonitorState::Normal);
  EXPECT_THAT(tick_through(m, 10000, 12900), IsEmpty());  // not before the window ends
  single<PingRequest>(m.on_tick(at(13000)));
  EXPECT_THAT(tick_through(m, 13000, 13400), IsEmpty());
  auto t = single<Transition>(m.on_tick(at(13500)));  // window + ping timeout
  EXPECT_EQ(t.to, MonitorState::Unreachable);
  EXPECT_EQ(t.reason, "silent for 3.5s; no answer to ping within 500ms");
}

TEST(HeartbeatMonitor, RestoredNodeThatHeartbeatsStaysQuiet) {
  Monitor m(fast());
  KnownNode known{"n1", ManagementState::Enabled, MonitorState::Normal, "", "boot-1", milliseconds(0)};
  m.restore(std::span(&known, 1), at(10000));
  EXPECT_THAT(m.on_heartbeat(beat("n1", 9), at(10500)), IsEmpty());  // not a registration
  EXPECT_THAT(tick_through(m, 10000, 13400), IsEmpty());
  single<PingRequest>(m.on_tick(at(13500)));
}

TEST(HeartbeatMonitor, RestoredStatesAreKept) {
  Monitor m(fast());
  std::vector<KnownNode> known = {
      {"down", ManagementState::Enabled, MonitorState::Unreachable, "silent for 45s", "b", milliseconds(0)},
      {"sick", ManagementState::Enabled, MonitorState::Error, "netcheck: eth1 down", "b", milliseconds(0)},
  };
  m.restore(known, at(0));
  EXPECT_EQ(m.find("down")->reason, "silent for 45s");
  EXPECT_EQ(m.find("sick")->reason, "netcheck: eth1 down");
  auto effects = tick_through(m, 0, 3000);
  ASSERT_EQ(only<PingRequest>(effects).size(), 1u);  // the unreachable one is not pinged
  EXPECT_EQ(only<PingRequest>(effects)[0].node, "sick");
  EXPECT_THAT(m.on_ping_reply("sick", "b", at(3100)), IsEmpty());  // still in error
  auto t = single<Transition>(m.on_heartbeat(beat("down", 1, {}, "b"), at(4000)));
  EXPECT_EQ(t.from, MonitorState::Unreachable);
  EXPECT_EQ(t.to, MonitorState::Normal);
  auto ok = single<Transition>(m.on_heartbeat(beat("sick", 1, {}, "b"), at(4000)));
  EXPECT_EQ(ok.from, MonitorState::Error);
  EXPECT_EQ(ok.to, MonitorState::Normal);
}

TEST(HeartbeatMonitor, RestoreKeepsLiveStateButTakesManagement) {
  Monitor m(fast());
  m.on_heartbeat(beat("n1", 1, net_down()), at(0));
  KnownNode known{"n1", ManagementState::Drained, MonitorState::Normal, "", "old", milliseconds(0)};
  m.restore(std::span(&known, 1), at(500));
  EXPECT_EQ(m.find("n1")->management, ManagementState::Drained);
  EXPECT_EQ(m.find("n1")->monitor, MonitorState::Error);
  EXPECT_EQ(m.find("n1")->boot_id, "boot-1");
}

TEST(HeartbeatMonitor, RestoredIntervalSetsTheWindow) {
  Monitor m(fast());
  KnownNode known{"slow", ManagementState::Enabled, MonitorState::Normal, "", "b", milliseconds(5000)};
  m.restore(std::span(&known, 1), at(0));
  EXPECT_THAT(tick_through(m, 0, 14900), IsEmpty());
  single<PingRequest>(m.on_tick(at(15000)));
}

TEST(HeartbeatMonitor, EachNodeUsesItsOwnInterval) {
  Monitor m(fast());
  m.on_heartbeat(beat("quick", 1, {}, "b", 1000), at(0));
  m.on_heartbeat(beat("slow", 1, {}, "b", 5000), at(0));
  auto early = tick_through(m, 0, 14900);
  ASSERT_EQ(early.size(), 2u);  // only the quick node: pinged at 3 s, lost at 3.5 s
  EXPECT_EQ(std::get<PingRequest>(early[0]).node, "quick");
  EXPECT_EQ(std::get<Transition>(early[1]).node, "quick");
  EXPECT_EQ(single<PingRequest>(m.on_tick(at(15000))).node, "slow");
  EXPECT_EQ(m.find("slow")->interval, milliseconds(5000));
}

TEST(HeartbeatMonitor, ShorterAdvertisedIntervalMovesTheDeadlineEarlier) {
  Monitor m(fast());
  m.on_heartbeat(beat("n1", 1, {}, "b", 10000), at(0));  // window 30 s
  m.on_heartbeat(beat("n1", 2, {}, "b", 1000), at(1000));  // now 3 s
  EXPECT_THAT(tick_through(m, 1000, 3900), IsEmpty());
  single<PingRequest>(m.on_tick(at(4000)));
}

TEST(HeartbeatMonitor, ChecksMessageMergesWithHeartbeatChecks) {
  Monitor m(fast());
  m.on_heartbeat(beat("n1", 1, {{"disk", false, "sda: I/O errors"}, {"netcheck", true, ""}}), at(0));
  ASSERT_EQ(m.find("n1")->reason, "disk: sda: I/O errors");
  auto down = net_down();
  auto rc = single<ReasonChanged>(m.on_checks("n1", down, at(100)));
  EXPECT_EQ(rc.new_reason, "disk: sda: I/O errors; netcheck: eth1 target 10.0.0.1 unreachable");
  EXPECT_THAT(m.on_checks("n1", down, at(200)), IsEmpty());
  auto up = net_up();
  EXPECT_EQ(single<ReasonChanged>(m.on_checks("n1", up, at(300))).new_reason, "disk: sda: I/O errors");
  EXPECT_EQ(single<Transition>(m.on_heartbeat(beat("n1", 2, net_up()), at(1000))).to, MonitorState::Normal);
}

// A check publishes a new verdict on its own while the agent's heartbeat, built with the old
// one, is on its way: the heartbeat must not undo the verdict (the node would flap error ->
// normal -> error). Each verdict carries the time its check issued it.
TEST(HeartbeatMonitor, AHeartbeatWithAnOlderVerdictDoesNotUndoANewerOne) {
  Monitor m(fast());
  auto timed = [](std::vector<Check> checks, int64_t at_ms) {
    for (auto& c : checks) c.at = at_ms;
    return checks;
  };
  m.on_heartbeat(beat("n1", 1, timed(net_up(), 1'000)), at(0));
  auto down = timed(net_down(), 1'900);
  EXPECT_EQ(single<Transition>(m.on_checks("n1", down, at(900))).to, MonitorState::Error);
  // Sent after the verdict was issued, but carrying the verdict of 1.0 s: still error.
  auto stale = beat("n1", 2, timed(net_up(), 1'000));
  stale.sent_at = 1'950;
  EXPECT_THAT(only<Transition>(m.on_heartbeat(stale, at(1000))), IsEmpty());
  EXPECT_EQ(m.find("n1")->monitor, MonitorState::Error);
  // A verdict older than the one known is ignored too.
  EXPECT_THAT(m.on_checks("n1", timed(net_up(), 1'850), at(1100)), IsEmpty());
  // A heartbeat carrying a newer verdict counts.
  EXPECT_EQ(single<Transition>(m.on_heartbeat(beat("n1", 3, timed(net_up(), 2'800)), at(2000))).to,
            MonitorState::Normal);
  // Without times (an older agent) the last message wins, as before.
  EXPECT_EQ(single<Transition>(m.on_checks("n1", net_down(), at(2100))).to, MonitorState::Error);
}

TEST(HeartbeatMonitor, ChecksMessageChangesStateButNotTheWindow) {
  Monitor m(fast());
  m.on_heartbeat(beat("n1", 1, net_up()), at(0));
  auto down = net_down();
  auto t = single<Transition>(m.on_checks("n1", down, at(2000)));
  EXPECT_EQ(t.to, MonitorState::Error);
  EXPECT_EQ(t.reason, "netcheck: eth1 target 10.0.0.1 unreachable");
  single<PingRequest>(m.on_tick(at(3000)));  // counted from the heartbeat at 0
  auto up = net_up();
  EXPECT_EQ(single<Transition>(m.on_checks("n1", up, at(3100))).reason, "checks pass again");
  single<Transition>(m.on_tick(at(3500)));  // unreachable
  EXPECT_THAT(m.on_checks("n1", down, at(3600)), IsEmpty());  // recorded only
  EXPECT_EQ(single<Transition>(m.on_ping_reply("n1", "boot-1", at(3700))).to, MonitorState::Error);
  EXPECT_THAT(m.on_checks("ghost", down, at(3800)), IsEmpty());
}

TEST(HeartbeatMonitor, UnknownNodesAreIgnoredOutsideHeartbeats) {
  Monitor m(fast());
  EXPECT_THAT(m.on_ping_reply("ghost", "b", at(0)), IsEmpty());
  EXPECT_THAT(m.on_ping_failed("ghost", at(0)), IsEmpty());
  EXPECT_FALSE(m.set_management("ghost", ManagementState::Disabled));
  EXPECT_EQ(m.find("ghost"), nullptr);
  EXPECT_EQ(m.size(), 0u);
}

TEST(HeartbeatMonitor, ManagementIsChangedOnlyByCommands) {
  Monitor m(fast());
  m.on_heartbeat(beat("n1", 1), at(0));
  EXPECT_TRUE(m.set_management("n1", ManagementState::Disabled));
  m.on_heartbeat(beat("n1", 2, net_down()), at(1000));
  tick_through(m, 1000, 5000);
  m.on_heartbeat(beat("n1", 3), at(6000));
  EXPECT_EQ(m.find("n1")->management, ManagementState::Disabled);
}

TEST(HeartbeatMonitor, ApplyManagement) {
  auto s = ManagementState::Enabled;
  EXPECT_FALSE(apply_management(s, ManagementCommand::Enable));
  EXPECT_TRUE(apply_management(s, ManagementCommand::Disable));
  EXPECT_EQ(s, ManagementState::Disabled);
  EXPECT_FALSE(apply_management(s, ManagementCommand::Disable));
  EXPECT_TRUE(apply_management(s, ManagementCommand::Enable));
  EXPECT_EQ(s, ManagementState::Enabled);
  s = ManagementState::Drained;
  EXPECT_FALSE(apply_management(s, ManagementCommand::Disable));  // never loosens a drain
  EXPECT_EQ(s, ManagementState::Drained);
  EXPECT_TRUE(apply_management(s, ManagementCommand::Enable));
  EXPECT_EQ(s, ManagementState::Enabled);
}

TEST(HeartbeatMonitor, StateNamesRoundTrip) {
  for (auto s : {MonitorState::Normal, MonitorState::Unreachable, MonitorState::Error})
    EXPECT_EQ(parse_monitor_state(to_string(s)), s);
  for (auto s : {ManagementState::Enabled, ManagementState::Disabled, ManagementState::Drained})
    EXPECT_EQ(parse_management_state(to_string(s)), s);
  EXPECT_EQ(to_string(MonitorState::Unreachable), "unreachable");
  EXPECT_EQ(to_string(ManagementState::Drained), "drained");
  EXPECT_EQ(parse_monitor_state("running"), std::nullopt);
  EXPECT_EQ(parse_management_state("Enabled"), std::nullopt);
}

TEST(HeartbeatMonitor, FailingChecksReason) {
  std::vector<Check> checks = {{"disk", true, ""}, {"netcheck", false, kNetDown}, {"mem", false, ""}};
  EXPECT_EQ(failing_checks_reason(checks), "netcheck: eth1 target 10.0.0.1 unreachable; mem: failed");
  EXPECT_EQ(failing_checks_reason({}), "");
}

TEST(HeartbeatMonitor, ConfigIsValidated) {
  EXPECT_TRUE(validate(MonitorConfig{}).is_ok());
  EXPECT_THAT(validate({milliseconds(0), 3, milliseconds(500)}).message(), HasSubstr("'interval'"));
  EXPECT_THAT(validate({milliseconds(1000), 0, milliseconds(500)}).message(), HasSubstr("'misses'"));
  EXPECT_THAT(validate({milliseconds(1000), 3, milliseconds(0)}).message(), HasSubstr("'ping_timeout'"));
  EXPECT_THROW(Monitor({milliseconds(1000), 0, milliseconds(500)}), std::invalid_argument);
  Monitor defaults{MonitorConfig{}};
  EXPECT_EQ(defaults.config().interval, milliseconds(15000));
  EXPECT_EQ(defaults.config().misses, 3);
  EXPECT_EQ(defaults.config().ping_timeout, milliseconds(5000));
}

TEST(HeartbeatMonitor, ListIsSortedById) {
  Monitor m(fast());
  for (auto id : {"c", "a", "b"}) m.on_heartbeat(beat(id, 1), at(0));
  std::vector<std::string> ids;
  for (const auto* n : m.list()) ids.push_back(n->id);
  EXPECT_EQ(ids, (std::vector<std::string>{"a", "b", "c"}));
}

// 10,000 nodes at 1 Hz (staggered) for 10 s: no false alarm; one node stops and is unreachable
// exactly window + ping timeout after its last heartbeat.
TEST(HeartbeatMonitor, TenThousandNodesOnlyTheSilentOneIsLost) {
  constexpr int kNodes = 10000;
  Monitor m(fast());
  std::vector<std::string> ids;
  for (int i = 0; i < kNodes; ++i) ids.push_back("node-" + std::to_string(i));
  Effects lost;
  for (int64_t t = 0; t <= 10000; t += 100) {
    for (int i = 0; i < kNodes; ++i) {
      int64_t phase = (i * 7) % 1000;  // each node beats once a second at its own phase
      if (t % 1000 != phase - phase % 100) continue;
      if (i == 42 && t >= 5000) continue;  // node-42 dies at 5 s
      auto effects = m.on_heartbeat(beat(ids[i], uint64_t(t / 1000 + 1)), at(t));
      if (t >= 1000) {
        EXPECT_THAT(effects, IsEmpty());
      }
    }
    for (auto& e : m.on_tick(at(t))) lost.push_back(std::move(e));
  }
  ASSERT_EQ(lost.size(), 2u);
  EXPECT_EQ(std::get<PingRequest>(lost[0]).node, "node-42");
  auto t = std::get<Transition>(lost[1]);
  EXPECT_EQ(t.node, "node-42");
  EXPECT_EQ(t.to, MonitorState::Unreachable);
  EXPECT_EQ(t.at, at(4200 + 3000 + 500));  // its last beat was at 4.2 s
}

// A seeded random walk over events; after every step the effects must agree with find() and
// never repeat: no self-transition, no second ping while one is pending, no unreachable
// before a full window of silence.
TEST(HeartbeatMonitor, RandomWalkKeepsInvariants) {
  Monitor m(fast());
  std::mt19937 rng(7);
  std::vector<std::string> ids = {"a", "b", "c", "d", "e"};
  std::map<std::string, MonitorState> seen;
  std::map<std::string, bool> pinged;
  std::map<std::string, int64_t> last_life;
  int64_t now = 0;
  for (int step = 0; step < 20000; ++step) {
    now += std::uniform_int_distribution<int>(0, 400)(rng);
    const auto& id = ids[rng() % ids.size()];
    Effects fx;
    switch (rng() % 6) {
      case 0: fx = m.on_heartbeat(beat(id, step, rng() % 3 ? net_up() : net_down(), "boot-1"), at(now)); break;
      case 1: fx = m.on_ping_reply(id, "boot-1", at(now)); break;
      case 2: fx = m.on_ping_failed(id, at(now)); break;
      case 3: {
        auto c = rng() % 2 ? net_up() : net_down();
        fx = m.on_checks(id, c, at(now));
        break;
      }
      default: fx = m.on_tick(at(now)); break;
    }
    for (const auto& e : fx) {
      if (auto* r = std::get_if<Registered>(&e)) {
        EXPECT_FALSE(seen.count(r->node));
        seen[r->node] = r->monitor;
        last_life[r->node] = now;
      } else if (auto* t = std::get_if<Transition>(&e)) {
        EXPECT_NE(t->from, t->to);
        EXPECT_EQ(t->from, seen[t->node]);
        if (t->to == MonitorState::Unreachable) {
          EXPECT_TRUE(pinged[t->node]);
          EXPECT_GE(now - last_life[t->node], 3000);
        }
        seen[t->node] = t->to;
      } else if (auto* p = std::get_if<PingRequest>(&e)) {
        EXPECT_FALSE(pinged[p->node]) << "second ping while one is pending";
        EXPECT_NE(seen[p->node], MonitorState::Unreachable);
        EXPECT_GE(now - last_life[p->node], 3000);
        pinged[p->node] = true;
      } else if (auto* rc = std::get_if<ReasonChanged>(&e)) {
        EXPECT_NE(rc->old_reason, rc->new_reason);
      }
    }
    for (const auto& [node, state] : seen) {
      const auto* n = m.find(node);
      pinged[node] = n->ping_pending;
      last_life[node] = std::chrono::duration_cast<milliseconds>(n->last_seen - at(0)).count();
    }
    for (const auto& [node, state] : seen) ASSERT_EQ(m.find(node)->monitor, state);
  }
}

// fast(), with the controller's timing (MonitorConfig::ping_lead = ping_timeout), n1 and n2 heard at 0.
Monitor leading_two() {
  MonitorConfig c = fast();
  c.ping_lead = c.ping_timeout;
  Monitor m(c);
  m.on_heartbeat(beat("n1", 1), at(0));
  m.on_heartbeat(beat("n2", 1), at(0));
  return m;
}

// The ping-back goes out ping_timeout before the window ends, so a silent node is judged when its
// window of misses x interval ends, and a node that answers stays normal.
TEST(HeartbeatMonitor, WithAPingLeadASilentNodeIsJudgedWhenItsWindowEnds) {
  Monitor m = leading_two();
  EXPECT_THAT(tick_through(m, 0, 2400), IsEmpty());
  auto pings = only<PingRequest>(m.on_tick(at(2500)));
  ASSERT_EQ(pings.size(), 2u);
  EXPECT_EQ(pings[0].timeout, milliseconds(500));
  m.on_ping_reply("n2", "boot-1", at(2600));
  auto t = single<Transition>(m.on_tick(at(3000)));
  EXPECT_EQ(t.node, "n1");
  EXPECT_EQ(t.to, MonitorState::Unreachable);
  EXPECT_THAT(t.reason, HasSubstr("silent for 3"));
  EXPECT_EQ(m.find("n2")->monitor, MonitorState::Normal);
}

// A ping-back that fails at once (no responders: the agent's process is gone) counts only when the
// window ends: a node gets its whole window, and a heartbeat before then keeps it normal.
TEST(HeartbeatMonitor, WithAPingLeadAFastPingFailureIsJudgedWhenTheWindowEnds) {
  Monitor m = leading_two();
  EXPECT_EQ(only<PingRequest>(m.on_tick(at(2500))).size(), 2u);
  EXPECT_THAT(m.on_ping_failed("n1", at(2510), "request: no_responders"), IsEmpty());
  EXPECT_THAT(m.on_ping_failed("n2", at(2510), "request: no_responders"), IsEmpty());
  EXPECT_THAT(m.on_heartbeat(beat("n2", 2), at(2800)), IsEmpty());  // back before the window's end
  EXPECT_THAT(tick_through(m, 2500, 2900), IsEmpty());
  auto t = single<Transition>(m.on_tick(at(3000)));
  EXPECT_EQ(t.node, "n1");
  EXPECT_THAT(t.reason, HasSubstr("no_responders"));
  EXPECT_THAT(t.reason, HasSubstr("silent for 3"));
  EXPECT_EQ(m.find("n2")->monitor, MonitorState::Normal);
}

// ... but a heartbeat a little late is not worth a ping: never before 1.5 intervals of silence.
TEST(HeartbeatMonitor, APingLeadNeverPingsBeforeOneAndAHalfIntervals) {
  MonitorConfig c{milliseconds(1000), 2, milliseconds(2000)};
  c.ping_lead = c.ping_timeout;
  Monitor m(c);
  m.on_heartbeat(beat("n1", 1), at(0));
  EXPECT_THAT(tick_through(m, 0, 1400), IsEmpty());
  single<PingRequest>(m.on_tick(at(1500)));
}

}  // namespace
}  // namespace nodeha::heartbeat
