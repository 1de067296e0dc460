// The monitor when its own caller is in trouble: suspended it holds every verdict, resumed it
// gives every node a full window, and with confirm_link a failed ping only suspects the node
// until the caller's link is confirmed.
#include "heartbeat_monitor_steps.h"
#include "monitor.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <random>

namespace nodeha::heartbeat {
namespace {

using ::testing::IsEmpty;

MonitorConfig confirming() {
  auto c = fast();
  c.confirm_link = true;
  return c;
}

TEST(HeartbeatMonitorSuspend, HoldsEveryVerdictWhileSuspended) {
  Monitor m(fast());
  m.on_heartbeat(beat("n1", 1), at(0));
  m.on_heartbeat(beat("n2", 1), at(0));
  ASSERT_TRUE(m.suspend(at(500), "not connected to NATS"));
  EXPECT_EQ(m.next_due(), std::nullopt);
  EXPECT_THAT(tick_through(m, 500, 30000), IsEmpty());  // ten windows of silence
  EXPECT_EQ(m.find("n1")->monitor, MonitorState::Normal);
  EXPECT_EQ(m.find("n2")->monitor, MonitorState::Normal);
  ASSERT_TRUE(m.suspension());
  EXPECT_EQ(m.suspension()->reason, "not connected to NATS");
  EXPECT_EQ(m.suspension()->since, at(500));
}

TEST(HeartbeatMonitorSuspend, ResumeGivesAFullWindowAndStillFindsTheDead) {
  Monitor m(fast());
  m.on_heartbeat(beat("alive", 1), at(0));
  m.on_heartbeat(beat("dead", 1), at(0));
  m.suspend(at(500), "outage");
  EXPECT_THAT(m.on_heartbeat(beat("alive", 2), at(9000)), IsEmpty());
  EXPECT_THAT(m.resume(at(10000)), IsEmpty());  // nothing changed that an operator reads
  EXPECT_FALSE(m.suspension());
  EXPECT_THAT(tick_through(m, 10000, 12900), IsEmpty());  // the grace
  auto pings = only<PingRequest>(tick_through(m, 12900, 13000));
  ASSERT_EQ(pings.size(), 2u);
  EXPECT_THAT(m.on_ping_reply("alive", "boot-1", at(13100)), IsEmpty());
  auto t = single<Transition>(m.on_tick(at(13500)));
  EXPECT_EQ(t.node, "dead");
  EXPECT_EQ(t.to, MonitorState::Unreachable);
  EXPECT_EQ(t.reason, "silent for 3.5s; no answer to ping within 500ms");
}

TEST(HeartbeatMonitorSuspend, APendingPingIsForgottenAndItsFailureIgnored) {
  auto m = pinged_n1();
  m.suspend(at(3100), "outage");
  EXPECT_THAT(m.on_ping_failed("n1", at(3200), "unavailable"), IsEmpty());
  EXPECT_THAT(m.resume(at(5000)), IsEmpty());
  EXPECT_FALSE(m.find("n1")->ping_pending);
  EXPECT_THAT(m.on_ping_failed("n1", at(5100), "late timeout"), IsEmpty());  // that ping is gone
  EXPECT_THAT(tick_through(m, 5000, 7900), IsEmpty());
  single<PingRequest>(m.on_tick(at(8000)));
}

TEST(HeartbeatMonitorSuspend, WhatWasHeardIsEmittedOnResume) {
  Monitor m(fast());
  for (const char* id : {"a-sick", "c-reboot", "d-down"}) m.on_heartbeat(beat(id, 1), at(0));
  ASSERT_EQ(only<PingRequest>(m.on_tick(at(3000))).size(), 3u);
  m.on_ping_reply("a-sick", "boot-1", at(3100));
  m.on_ping_reply("c-reboot", "boot-1", at(3100));
  EXPECT_EQ(single<Transition>(m.on_tick(at(3500))).node, "d-down");

  m.suspend(at(4000), "outage");
  EXPECT_THAT(m.on_heartbeat(beat("a-sick", 2, net_down()), at(4100)), IsEmpty());
  EXPECT_THAT(m.on_heartbeat(beat("b-new", 1), at(4100)), IsEmpty());
  EXPECT_THAT(m.on_heartbeat(beat("c-reboot", 1, {}, "boot-2"), at(4100)), IsEmpty());
  EXPECT_THAT(m.on_heartbeat(beat("d-down", 5), at(4100)), IsEmpty());
  EXPECT_EQ(m.find("a-sick")->monitor, MonitorState::Normal);  // held
  EXPECT_EQ(m.find("d-down")->monitor, MonitorState::Unreachable);

  auto fx = m.resume(at(6000));
  ASSERT_EQ(fx.size(), 4u);
  auto sick = std::get<Transition>(fx[0]);
  EXPECT_EQ(sick.node, "a-sick");
  EXPECT_EQ(sick.to, MonitorState::Error);
  EXPECT_EQ(sick.reason, std::string("netcheck: ") + kNetDown);
  auto fresh = std::get<Registered>(fx[1]);
  EXPECT_EQ(fresh.node, "b-new");
  EXPECT_EQ(fresh.monitor, MonitorState::Normal);
  auto reboot = std::get<Rebooted>(fx[2]);
  EXPECT_EQ(reboot.old_boot_id, "boot-1");
  EXPECT_EQ(reboot.new_boot_id, "boot-2");
  auto back = std::get<Transition>(fx[3]);
  EXPECT_EQ(back.node, "d-down");
  EXPECT_EQ(back.to, MonitorState::Normal);
  EXPECT_THAT(m.resume(at(6100)), IsEmpty());  // not suspended any more
}

TEST(HeartbeatMonitorSuspend, AnUnreachableNodeStaysSoWithoutASignOfLife) {
  Monitor m(fast());
  m.on_heartbeat(beat("n1", 1), at(0));
  tick_through(m, 0, 3500);
  ASSERT_EQ(m.find("n1")->monitor, MonitorState::Unreachable);
  m.suspend(at(4000), "outage");
  EXPECT_THAT(m.resume(at(5000)), IsEmpty());
  EXPECT_EQ(m.find("n1")->monitor, MonitorState::Unreachable);
  EXPECT_THAT(tick_through(m, 5000, 20000), IsEmpty());  // not pinged again
}

TEST(HeartbeatMonitorSuspend, ASecondSuspendKeepsTheFirstReason) {
  Monitor m(fast());
  EXPECT_TRUE(m.suspend(at(0), "first"));
  EXPECT_FALSE(m.suspend(at(100), "second"));
  EXPECT_EQ(m.suspension()->reason, "first");
  EXPECT_EQ(m.suspension()->since, at(0));
}

TEST(HeartbeatMonitorSuspend, FailedPingOnlySuspectsUntilTheLinkIsConfirmed) {
  auto m = pinged_n1(confirming());
  auto s = single<Suspected>(m.on_tick(at(3500)));
  EXPECT_EQ(s.node, "n1");
  EXPECT_EQ(s.detail, "no answer to ping within 500ms");
  EXPECT_EQ(m.find("n1")->monitor, MonitorState::Normal);
  EXPECT_THAT(tick_through(m, 3500, 20000), IsEmpty());  // no deadline while suspected
  EXPECT_THAT(m.on_link_ok(at(3400), at(20000)), IsEmpty());  // a probe older than the suspicion
  auto t = single<Transition>(m.on_link_ok(at(20000), at(20001)));
  EXPECT_EQ(t.to, MonitorState::Unreachable);
  EXPECT_EQ(t.reason, "silent for 20.001s; no answer to ping within 500ms");
  EXPECT_THAT(m.on_link_ok(at(20002), at(20003)), IsEmpty());  // blamed once
}

TEST(HeartbeatMonitorSuspend, ConfirmedLinkBlamesTheNodeAtOnceAfterAFailedPing) {
  auto m = pinged_n1(confirming());
  auto s = single<Suspected>(m.on_ping_failed("n1", at(3001), "no responders"));
  EXPECT_EQ(s.detail, "ping failed: no responders");
  auto t = single<Transition>(m.on_link_ok(at(3001), at(3002)));
  EXPECT_EQ(t.reason, "silent for 3.002s; ping failed: no responders");
}

TEST(HeartbeatMonitorSuspend, ASignOfLifeClearsTheSuspicion) {
  auto m = pinged_n1(confirming());
  single<Suspected>(m.on_tick(at(3500)));
  EXPECT_THAT(m.on_heartbeat(beat("n1", 2), at(3600)), IsEmpty());
  EXPECT_THAT(m.on_link_ok(at(3700), at(3701)), IsEmpty());
  EXPECT_EQ(m.next_due(), at(6600));
}

TEST(HeartbeatMonitorSuspend, AFailedProbeSuspendsAndOnlyANewerProbeResumes) {
  auto m = pinged_n1(confirming());
  single<Suspected>(m.on_tick(at(3500)));
  m.suspend(at(4000), "the probe went unanswered");
  EXPECT_THAT(m.on_link_ok(at(3600), at(4100)), IsEmpty());  // sent before the suspension
  EXPECT_TRUE(m.suspension());
  EXPECT_THAT(m.on_link_ok(at(9000), at(9001)), IsEmpty());  // resumes: no verdict held
  EXPECT_FALSE(m.suspension());
  EXPECT_EQ(m.find("n1")->monitor, MonitorState::Normal);
  EXPECT_FALSE(m.find("n1")->suspected_at);
  EXPECT_THAT(tick_through(m, 9001, 12000), IsEmpty());
  single<PingRequest>(m.on_tick(at(12100)));
}

// Random events with suspensions and probes: nothing is emitted while suspended, and no node is
// pinged or blamed before a full window since it was last heard from or the monitor resumed.
TEST(HeartbeatMonitorSuspend, RandomWalkNeverBlamesDuringOrRightAfterASuspension) {
  Monitor m(confirming());
  std::mt19937 rng(11);
  std::vector<std::string> ids = {"a", "b", "c", "d"};
  std::map<std::string, int64_t> window_start;
  int64_t now = 0, resumed = 0;
  for (int step = 0; step < 20000; ++step) {
    now += std::uniform_int_distribution<int>(0, 400)(rng);
    const auto& id = ids[rng() % ids.size()];
    bool held = m.suspension().has_value();
    Effects fx;
    switch (rng() % 9) {
      case 0: fx = m.on_heartbeat(beat(id, step, rng() % 3 ? net_up() : net_down()), at(now)); break;
      case 1: fx = m.on_ping_reply(id, "boot-1", at(now)); break;
      case 2: fx = m.on_ping_failed(id, at(now)); break;
      case 3: m.suspend(at(now), "outage"); break;
      case 4: fx = m.resume(at(now)); break;
      case 5: fx = m.on_link_ok(at(now - std::uniform_int_distribution<int>(0, 2000)(rng)), at(now)); break;
      default: fx = m.on_tick(at(now)); break;
    }
    if (held && !m.suspension()) resumed = now;
    if (held && m.suspension()) {
      EXPECT_THAT(fx, IsEmpty()) << "step " << step;
    }
    for (const auto& e : fx) {
      if (auto* p = std::get_if<PingRequest>(&e)) {
        EXPECT_GE(now - std::max(window_start[p->node], resumed), 3000) << "step " << step;
      } else if (auto* t = std::get_if<Transition>(&e); t && t->to == MonitorState::Unreachable) {
        EXPECT_GE(now - std::max(window_start[t->node], resumed), 3000) << "step " << step;
      }
    }
    for (const auto& other : ids)
      if (const auto* n = m.find(other)) window_start[other] = std::chrono::duration_cast<milliseconds>(n->last_seen - at(0)).count();
  }
}

}  // namespace
}  // namespace nodeha::heartbeat
