// Strict ids at every entry, on a real nats-server (issue 13): a 5,000-character id sent to any
// command, agent request or heartbeat is refused with bad_value (INVALID for heartbeats) before
// any bus or KV call, so the server never sees it and the controller stays connected and answers.
#include "bus.h"
#include "host_process.h"
#include "nats_server.h"

#include <nodeha/ids.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace nodeha::test {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

const std::string kLong(5000, 'x');
const char* kUuid = "00000001-0000-4000-8000-000000000001";

class Ids : public ::testing::Test {
 protected:
  void SetUp() override {
    bus_ = nats_.client();
    ASSERT_TRUE(bus_);
    ctl_ = std::make_unique<HostProcess>(
        host_tables("controller", "ctl", nats_.url()) +
        "[[plugin]]\nlibrary = \"heartbeat\"\ninterval = \"1s\"\nmisses = 2\nping_timeout = \"300ms\"\n"
        "[[plugin]]\nlibrary = \"scheduler\"\n[[plugin]]\nlibrary = \"tasks\"\n[[plugin]]\nlibrary = \"vms\"\n"
        "[[plugin]]\nlibrary = \"drain\"\n[[plugin]]\nlibrary = \"rebuild\"\n[[plugin]]\nlibrary = \"migrate\"\n");
    ASSERT_TRUE(ctl_->wait_ready()) << ctl_->log();
    agent_ = std::make_unique<HostProcess>(host_tables("agent", "node-a", nats_.url()) +
                                           "[libvirt]\nuri = \"test:///default\"\n"
                                           "[[plugin]]\nlibrary = \"heartbeat\"\ninterval = \"1s\"\ndisk_path = \"/\"\n"
                                           "[[plugin]]\nlibrary = \"vms\"\nsync_every = \"300ms\"\n"
                                           "[[plugin]]\nlibrary = \"migrate\"\n");
    ASSERT_TRUE(agent_->wait_ready()) << agent_->log();
    ASSERT_TRUE(wait_until([&] { return node_state("node-a") == "normal"; }, 20s)) << ctl_->log();
  }

  // The reply to `body` on `subject`, which must be a refusal; its code.
  std::string refusal(const std::string& subject, const json& body) {
    auto r = bus_->request(subject, body.dump(), 5s);
    if (!r) return "no answer: " + r.status().message();
    EXPECT_LT(r.value().size(), 1000u) << subject << ": the reply echoes the whole id";
    auto j = json::parse(r.value(), nullptr, false);
    if (!j.is_object() || j.value("ok", true)) return "accepted: " + r.value().substr(0, 200);
    return j["error"]["code"];
  }

  std::string node_state(const std::string& node) {
    auto r = bus_->request("nodeha.cmd.node.list", "{}", 2s);
    if (!r) return "";
    auto j = json::parse(r.value(), nullptr, false);
    for (const auto& n : j["result"]["nodes"])
      if (n.value("node", "") == node || n.value("id", "") == node) return n.value("monitor", "");
    return "";
  }

  NatsServer nats_;
  std::unique_ptr<host::Bus> bus_;
  std::unique_ptr<HostProcess> ctl_, agent_;
};

TEST_F(Ids, ALongIdIsBadValueEverywhereAndTheControlPlaneStaysUp) {
  const json vm = {{"uuid", kUuid}, {"vcpus", 1}, {"memory_mib", 64}, {"disk_gib", 1}, {"local_disk", false}};
  const std::vector<std::pair<std::string, json>> commands = {
      {"node.drain", {{"node", kLong}, {"dry_run", true}}},
      {"node.rebuild", {{"node", kLong}, {"dry_run", true}}},
      {"node.rebuild", {{"node", "node-a"}, {"target", kLong}, {"dry_run", true}}},
      {"node.migrate", {{"node", kLong}, {"dry_run", true}}},
      {"node.migrate", {{"node", "node-a"}, {"target", kLong}, {"dry_run", true}}},
      {"node.migrate", {{"node", "node-a"}, {"vms", {kLong}}, {"dry_run", true}}},
      {"node.maintenance", {{"node", kLong}, {"dry_run", true}}},
      {"node.show", {{"node", kLong}}},
      {"node.enable", {{"node", kLong}}},
      {"node.disable", {{"node", kLong}}},
      {"vm.list", {{"node", kLong}}},
      {"task.list", {{"node", kLong}}},
      {"task.show", {{"task", kLong}}},
      {"task.cancel", {{"task", kLong}}},
      {"sched.place", {{"vms", {vm}}, {"target", kLong}}},
      {"sched.place", {{"vms", {vm}}, {"exclude", {kLong}}}},
      {"sched.place", {{"vms", {json{{"uuid", kLong}, {"vcpus", 1}, {"memory_mib", 64}, {"disk_gib", 1}, {"local_disk", false}}}}}},
      {"sched.place", {{"vms", {vm}}, {"task", kLong}, {"reserve", 5}}},
      {"sched.release", {{"task", kLong}}},
      {"sched.hold", {{"task", kLong}, {"reserve", 5}, {"held", json::array()}}},
      {"sched.hold", {{"task", "7f3c000000000001"}, {"reserve", 5}, {"held", {{{"node", kLong}, {"vms", {vm}}}}}}},
  };
  for (const auto& [op, body] : commands) {
    SCOPED_TRACE(op + " " + body.dump().substr(0, 120));
    EXPECT_EQ(refusal("nodeha.cmd." + op, body), "bad_value");
  }
  // The agent's own requests: the vms agent answers only once its inventory is in sync.
  ASSERT_TRUE(wait_until([&] { return refusal("nodeha.agent.node-a.vm.start", {{"uuid", kLong}}) == "bad_value"; }));
  for (const char* op : {"vm.stop", "vm.undefine", "vm.abort"}) {
    SCOPED_TRACE(op);
    EXPECT_EQ(refusal(std::string("nodeha.agent.node-a.") + op, {{"uuid", kLong}}), "bad_value");
  }
  json migrate = {{"uuid", kUuid},          {"dest_node", kLong},           {"dest_uri", "qemu+tcp://b/system"},
                  {"migrate_uri", "tcp://b"}, {"include_local_disk", false}};
  EXPECT_EQ(refusal("nodeha.agent.node-a.vm.migrate", migrate), "bad_value");
  migrate["dest_node"] = "node-b";
  migrate["uuid"] = kLong;
  EXPECT_EQ(refusal("nodeha.agent.node-a.vm.migrate", migrate), "bad_value");
  // A request over the command limit is refused whole, not cut.
  EXPECT_EQ(refusal("nodeha.cmd.node.show", {{"node", std::string(kMaxCommandBytes, 'y')}}), "bad_value");

  // A heartbeat naming a long node, or a bad VM uuid, is refused and counted; no node appears.
  json hb = {{"node", kLong}, {"seq", 1}, {"boot_id", "b"}, {"interval_ms", 1000}};
  ASSERT_TRUE(bus_->publish("nodeha.hb.node-z", hb.dump()).is_ok());
  hb["node"] = "node-z";
  hb["vms"] = {{{"uuid", kLong}}};
  ASSERT_TRUE(bus_->publish("nodeha.hb.node-z", hb.dump()).is_ok());
  ASSERT_TRUE(bus_->publish("nodeha.check.node-a.disk", json{{"node", kLong}, {"name", "disk"}, {"ok", false}}.dump()).is_ok());
  EXPECT_TRUE(wait_until([&] { return ctl_->metric("nodeha_heartbeats_rejected_total") >= 2; }))
      << ctl_->metrics();
  EXPECT_EQ(node_state("node-z"), "");

  // Still connected and serving: a command answers, and node-a was never blamed.
  auto list = bus_->request("nodeha.cmd.node.list", "{}", 2s);
  ASSERT_TRUE(list) << list.status().message() << ctl_->log();
  EXPECT_TRUE(json::parse(list.value())["ok"]);
  EXPECT_EQ(node_state("node-a"), "normal");
  EXPECT_THAT(ctl_->log(), ::testing::Not(HasSubstr("maximum control line")));
}

}  // namespace
}  // namespace nodeha::test
