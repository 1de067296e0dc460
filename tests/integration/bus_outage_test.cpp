// The controller never blames nodes for its own trouble, on a real nats-server under a
// controller and three agents (libvirt test driver) at 1 s heartbeats:
// - the server stopped for 10 s, then started again on the same port and store: no node turns
//   unreachable, and the monitor says it was suspended (gauge, log) and resumed;
// - a node whose agent dies during that outage is unreachable one grace window after the resume;
// - the server frozen for 10 s (SIGSTOP: connections stay open and nothing answers, which is how
//   a cut link looks to the controller before cnats notices): no node turns unreachable either;
// - the controller's own link alone cut silently for 10 s (a relay between it and the server
//   stops forwarding) while the agents keep heartbeating to the server: no node turns unreachable.
#include "bus.h"
#include "host_process.h"
#include "nats_server.h"
#include "tcp_relay.h"

#include <gtest/gtest.h>

#include <csignal>
#include <mutex>

namespace nodeha::test {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr auto kOutage = 10s;
constexpr const char* kSuspended = "nodeha_monitor_suspended";
constexpr const char* kUnreachableChanges = "nodeha_node_state_changes_total{state=\"unreachable\"}";

// Holds for `period` while `cond` keeps holding; false as soon as it does not.
bool holds_for(std::chrono::milliseconds period, const std::function<bool()>& cond) {
  auto end = Clock::now() + period;
  bool broken = wait_until([&] { return !cond() || Clock::now() >= end; }, period + 5s) && Clock::now() < end;
  return !broken && cond();
}

class BusOutage : public ::testing::Test {
 protected:
  void SetUp() override { start(nats_.url()); }
  // The controller connects to `controller_url`, the agents to the server itself. Its lease is
  // longer than the outages here, so that it leads throughout and its monitor's own suspension is
  // what is tested; with a lease shorter than an outage it steps down instead (the last test).
  void start(const std::string& controller_url, const std::string& lease = "60s") {
    ctl_ = std::make_unique<HostProcess>(host_tables("controller", "ctl", controller_url) +
                                             "[[plugin]]\nlibrary = \"heartbeat\"\ninterval = \"1s\"\nmisses = 3\n"
                                             "ping_timeout = \"500ms\"\n",
                                         std::vector<std::string>{"host.lease=\"" + lease + "\""});
    ASSERT_TRUE(ctl_->wait_ready()) << ctl_->log();
    for (const char* node : {"node-1", "node-2", "node-3"}) {
      agents_.push_back(std::make_unique<HostProcess>(host_tables("agent", node, nats_.url()) +
                                                      "[libvirt]\nuri = \"test:///default\"\n"
                                                      "[[plugin]]\nlibrary = \"heartbeat\"\ninterval = \"1s\"\n"
                                                      "disk_path = \"/\"\n"));
      ASSERT_TRUE(agents_.back()->wait_ready()) << agents_.back()->log();
    }
    watch_events();
    ASSERT_TRUE(wait_until([&] { return all_stored("normal"); })) << ctl_->log();
    ASSERT_EQ(ctl_->metric(kSuspended), 0);
  }
  void TearDown() override { nats_.signal(SIGCONT); }  // never leave a frozen server behind

  // An outage the controller's connection does not see (it stays open; nothing answers) for
  // 10 s: heartbeats stop reaching it; after the window the ping-backs go unanswered, and the
  // probe of its own link does too: suspended, instead of three nodes blamed.
  void silent_outage(const std::function<void()>& cut, const std::function<void()>& restore) {
    auto cut_at = Clock::now();
    cut();
    ASSERT_TRUE(wait_until([&] { return ctl_->metric(kSuspended) == 1; }, 8s)) << ctl_->log();
    EXPECT_EQ(ctl_->metric(kUnreachableChanges), 0) << ctl_->log();
    EXPECT_TRUE(holds_for(std::chrono::duration_cast<std::chrono::milliseconds>(kOutage - (Clock::now() - cut_at)),
                          [&] { return ctl_->metric(kSuspended) == 1 && ctl_->metric(kUnreachableChanges) == 0; }))
        << ctl_->log();
    restore();
    ASSERT_TRUE(wait_until([&] { return ctl_->metric(kSuspended) == 0; }, 10s)) << ctl_->log();
    EXPECT_TRUE(holds_for(5s, [&] { return ctl_->metric(kUnreachableChanges) == 0; })) << ctl_->log();
    expect_no_node_blamed();
    EXPECT_NE(ctl_->log().find("the link to NATS failed a round trip"), std::string::npos) << ctl_->log();
  }

  // The test's client reconnects and subscribes again by itself (it is the host's own Bus).
  void watch_events() {
    bus_ = nats_.client();
    ASSERT_TRUE(bus_);
    ASSERT_TRUE(bus_->subscribe("nodeha.evt.node.>", "", [this](Message m) {
      auto e = json::parse(m.data, nullptr, false);
      std::lock_guard lock(mu_);
      if (e.is_object() && e.value("event", "") == "monitor" && e.value("to", "") == "unreachable")
        unreachable_.push_back({e.value("node", ""), Clock::now()});
    }).is_ok());
  }
  std::string stored(const std::string& node) {
    auto e = bus_->kv_get("nodes", node);
    return e ? json::parse(e->value).value("monitor", "") : "";
  }
  bool all_stored(const std::string& state) {
    for (const char* node : {"node-1", "node-2", "node-3"})
      if (stored(node) != state) return false;
    return true;
  }
  std::vector<std::pair<std::string, Clock::time_point>> unreachable_events() {
    std::lock_guard lock(mu_);
    return unreachable_;
  }
  // No unreachable transition by any count: the controller's counter (which also counts events
  // it could not deliver), the event stream, and no record says so.
  void expect_no_node_blamed() {
    EXPECT_EQ(ctl_->metric(kUnreachableChanges), 0) << ctl_->log();
    EXPECT_TRUE(unreachable_events().empty());
    EXPECT_TRUE(wait_until([&] { return all_stored("normal"); }));
  }

  NatsServer nats_;
  std::unique_ptr<HostProcess> ctl_;
  std::vector<std::unique_ptr<HostProcess>> agents_;
  std::unique_ptr<host::Bus> bus_;
  std::mutex mu_;
  std::vector<std::pair<std::string, Clock::time_point>> unreachable_;
};

TEST_F(BusOutage, ServerStoppedForTenSecondsBlamesNoNode) {
  auto down = Clock::now();
  nats_.stop();
  ASSERT_TRUE(wait_until([&] { return ctl_->metric(kSuspended) == 1; }, 3s)) << ctl_->log();
  EXPECT_TRUE(holds_for(std::chrono::duration_cast<std::chrono::milliseconds>(kOutage - (Clock::now() - down)),
                        [&] { return ctl_->metric(kSuspended) == 1 && ctl_->metric(kUnreachableChanges) == 0; }))
      << ctl_->log();
  nats_.start();
  ASSERT_TRUE(wait_until([&] { return ctl_->metric(kSuspended) == 0; }, 10s)) << ctl_->log();
  // Past the grace window (3 s) and a ping-back: still nobody blamed.
  EXPECT_TRUE(holds_for(5s, [&] { return ctl_->metric(kUnreachableChanges) == 0; })) << ctl_->log();
  expect_no_node_blamed();
  EXPECT_NE(ctl_->log().find("monitor suspended: not connected to NATS"), std::string::npos) << ctl_->log();
  EXPECT_NE(ctl_->log().find("monitor resumed after "), std::string::npos) << ctl_->log();
}

TEST_F(BusOutage, ANodeThatDiesDuringTheOutageIsFoundAfterTheGrace) {
  nats_.stop();
  ASSERT_TRUE(wait_until([&] { return ctl_->metric(kSuspended) == 1; }, 3s)) << ctl_->log();
  agents_[2].reset();  // node-3's agent dies while the controller cannot see anything
  EXPECT_TRUE(holds_for(kOutage - 1s, [&] { return ctl_->metric(kSuspended) == 1; })) << ctl_->log();
  auto back = Clock::now();  // the controller resumes after this
  nats_.start();
  ASSERT_TRUE(wait_until([&] { return ctl_->metric(kSuspended) == 0; }, 10s)) << ctl_->log();
  ASSERT_TRUE(wait_until([&] { return !unreachable_events().empty(); }, 10s)) << ctl_->log();
  auto events = unreachable_events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].first, "node-3");
  auto found = events[0].second - back;
  EXPECT_GE(found, 3s) << "not before the grace window (3 intervals) is over";
  EXPECT_LT(found, 8s);
  EXPECT_TRUE(wait_until([&] { return stored("node-3") == "unreachable"; })) << ctl_->log();
  EXPECT_EQ(stored("node-1"), "normal");
  EXPECT_EQ(stored("node-2"), "normal");
  EXPECT_EQ(ctl_->metric(kUnreachableChanges), 1);
}

TEST_F(BusOutage, ServerFrozenForTenSecondsBlamesNoNode) {
  silent_outage([&] { nats_.signal(SIGSTOP); }, [&] { nats_.signal(SIGCONT); });
}

// With the default 2 s lease, a lone controller that loses NATS cannot prove it still leads: it
// steps down (its plugins stop), takes its own lease again once NATS is back (a new epoch), and
// its monitor gives every node a full window: nobody is blamed.
class BusOutageShortLease : public BusOutage {
 protected:
  void SetUp() override { start(nats_.url(), "2s"); }
};

TEST_F(BusOutageShortLease, ServerStoppedForTenSecondsTheControllerStepsDownAndLeadsAgainBlamingNoNode) {
  nats_.stop();
  ASSERT_TRUE(wait_until([&] { return ctl_->metric("nodeha_controller_leader") == 0; }, 5s)) << ctl_->log();
  EXPECT_NE(ctl_->log().find("stepping down"), std::string::npos) << ctl_->log();
  EXPECT_TRUE(holds_for(8s, [&] { return ctl_->metric("nodeha_controller_leader") == 0; })) << ctl_->log();
  nats_.start();
  ASSERT_TRUE(wait_until([&] { return ctl_->metric("nodeha_controller_leader") == 1; }, 15s)) << ctl_->log();
  EXPECT_EQ(ctl_->metric("nodeha_controller_epoch"), 2) << "a new term, also for the same controller";
  ASSERT_TRUE(wait_until([&] { return ctl_->metric("nodeha_plugin_up{plugin=\"heartbeat\"}") == 1; }, 10s)) << ctl_->log();
  // Past the full window (3 intervals) and a ping-back: still nobody blamed.
  EXPECT_TRUE(holds_for(5s, [&] { return ctl_->metric(kUnreachableChanges) == 0; })) << ctl_->log();
  expect_no_node_blamed();
}

class ControllerLinkCut : public BusOutage {
 protected:
  void SetUp() override { start("nats://127.0.0.1:" + std::to_string(relay_.port())); }
  TcpRelay relay_{nats_.port()};
};

TEST_F(ControllerLinkCut, TenSecondsBlameNoNode) {
  silent_outage([&] { relay_.hold(); }, [&] { relay_.release(); });
}

}  // namespace
}  // namespace nodeha::test
