// The scheduler plugin on a real nats-server, with node records from real heartbeats of agents on
// the libvirt test driver: spread placement, named targets refused with the reason, filters,
// reservations, bad requests; then the first-fit example swapped in by SIGHUP answers instead.
#include "bus.h"
#include "host_process.h"
#include "nats_server.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nodeha/ids.hpp>

#include <csignal>
#include <cstdio>
#include <map>

namespace nodeha::test {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

std::string controller(const NatsServer& nats, const std::string& scheduler_library) {
  return "[host]\nrole = \"controller\"\nnode_id = \"ctl\"\nplugin_path = [\"{plugins}\"]\n"
         "[nats]\nservers = [\"" + nats.url() + "\"]\n[metrics]\nlisten = \"127.0.0.1:0\"\n"
         "[[plugin]]\nlibrary = \"heartbeat\"\ninterval = \"1s\"\nping_timeout = \"500ms\"\n\n"
         "[[plugin]]\nname = \"scheduler\"\nlibrary = \"" + scheduler_library + "\"\n" +
         (scheduler_library == "scheduler" ? "reserve_memory_mib = 0\n" : "");
}

std::string agent(const NatsServer& nats, const std::string& node) {
  return "[host]\nrole = \"agent\"\nnode_id = \"" + node + "\"\nplugin_path = [\"{plugins}\"]\n"
         "[nats]\nservers = [\"" + nats.url() + "\"]\n[metrics]\nlisten = \"127.0.0.1:0\"\n"
         "[libvirt]\nuri = \"test:///default\"\n[[plugin]]\nlibrary = \"heartbeat\"\ninterval = \"1s\"\ndisk_path = \"/\"\n";
}

// A canonical uuid for a short label (the scheduler takes VM uuids only), the same for each label.
std::string uuid_of(const std::string& label) {
  static std::map<std::string, int> ids;
  auto it = ids.emplace(label, static_cast<int>(ids.size()) + 1).first;
  char buf[40];
  std::snprintf(buf, sizeof buf, "00000000-0000-4000-8000-%012d", it->second);
  return buf;
}

json vm(const std::string& label, int memory_mib) {
  return {{"uuid", uuid_of(label)}, {"vcpus", 1}, {"memory_mib", memory_mib}, {"disk_gib", 1}, {"local_disk", false}};
}

class Scheduling : public ::testing::Test {
 protected:
  void SetUp() override {
    bus_ = nats_.client();
    ASSERT_TRUE(bus_);
  }
  json place(const json& request) {
    auto r = bus_->request("nodeha.cmd.sched.place", request.dump(), 5s);
    EXPECT_TRUE(r.is_ok()) << r.status().message();
    return r ? json::parse(r.value()) : json();
  }
  // The test driver reports 3072 MiB per node, 2048 of it used by its one domain: with no host
  // reserve, 1024 MiB are free on each node.
  // Both nodes known to the scheduler: a placement of one small VM per node succeeds.
  bool ready() {
    auto r = bus_->request("nodeha.cmd.sched.place", json{{"vms", {vm("probe-1", 64), vm("probe-2", 64)}}}.dump(), 1s);
    if (!r) return false;
    auto j = json::parse(r.value());
    if (!j["ok"]) return false;
    std::set<std::string> nodes;
    for (const auto& p : j["result"]["placements"])
      if (p.contains("node")) nodes.insert(p["node"].get<std::string>());
    return nodes.size() == 2;
  }
  NatsServer nats_;
  std::unique_ptr<host::Bus> bus_;
};

TEST_F(Scheduling, PlacesFiltersReservesAndSwaps) {
  HostProcess ctl(controller(nats_, "scheduler"));
  ASSERT_TRUE(ctl.wait_ready()) << ctl.log();
  HostProcess a(agent(nats_, "node-a")), b(agent(nats_, "node-b"));
  ASSERT_TRUE(wait_until([&] { return ready(); }, 15s)) << ctl.log();

  // Spread: two equal VMs on two equal nodes go one each, ties broken by node id.
  auto spread = place({{"vms", {vm("vm-1", 512), vm("vm-2", 512)}}});
  ASSERT_TRUE(spread["ok"]) << spread;
  EXPECT_EQ(spread["result"]["placements"][0]["node"], "node-a");
  EXPECT_EQ(spread["result"]["placements"][1]["node"], "node-b");

  // The source is excluded; a named target that lacks room is refused with the numbers, and
  // nothing is placed elsewhere instead.
  auto excluded = place({{"vms", {vm("vm-1", 512)}}, {"exclude", {"node-a"}}});
  EXPECT_EQ(excluded["result"]["placements"][0]["node"], "node-b");
  auto big = place({{"vms", {vm("vm-big", 1 << 22)}}, {"target", "node-a"}});
  auto p = big["result"]["placements"][0];
  EXPECT_FALSE(p.contains("node")) << big;
  EXPECT_EQ(p["code"], "target_insufficient");
  EXPECT_THAT(p["message"].get<std::string>(), HasSubstr("node-a lacks memory: needs 4194304 MiB"));
  auto unknown = place({{"vms", {vm("vm-1", 512)}}, {"target", "node-zz"}});
  EXPECT_EQ(unknown["result"]["placements"][0]["code"], "target_unavailable");

  // A reservation holds room for its task until released.
  auto first = place({{"vms", {vm("r-1", 600)}}, {"target", "node-a"}, {"reserve", 60}, {"task", "0000000000000001"}});
  ASSERT_EQ(first["result"]["placements"][0]["node"], "node-a") << first;
  EXPECT_EQ(ctl.metric("nodeha_scheduler_reserved{resource=\"memory_mib\"}"), 600);
  auto second = place({{"vms", {vm("r-2", 600)}}, {"target", "node-a"}});
  EXPECT_EQ(second["result"]["placements"][0]["code"], "target_insufficient") << second;
  auto released = bus_->request("nodeha.cmd.sched.release", R"({"task":"0000000000000001"})", 2s);
  ASSERT_TRUE(released.is_ok());
  EXPECT_EQ(json::parse(released.value())["result"]["released"], 1);
  EXPECT_EQ(place({{"vms", {vm("r-2", 600)}}, {"target", "node-a"}})["result"]["placements"][0]["node"], "node-a");

  // A resumed task holds its room again: what it held is replaced, not added to; a bad hold
  // changes nothing.
  auto hold = [&](const json& body) {
    auto r = bus_->request("nodeha.cmd.sched.hold", body.dump(), 2s);
    return r ? json::parse(r.value()) : json{{"no answer", r.status().message()}};
  };
  json two = {{"task", "0000000000000002"}, {"reserve", 60}, {"held", {{{"node", "node-a"}, {"vms", {vm("h-1", 300), vm("h-2", 300)}}}}}};
  auto held = hold(two);
  ASSERT_TRUE(held["ok"]) << held;
  EXPECT_EQ(held["result"]["held"], 2);
  EXPECT_TRUE(hold(two)["ok"]);
  EXPECT_EQ(ctl.metric("nodeha_scheduler_reserved{resource=\"memory_mib\"}"), 600);
  EXPECT_EQ(hold({{"task", "0000000000000002"}, {"reserve", 0}, {"held", json::array()}})["error"]["code"], "bad_value");
  EXPECT_EQ(hold({{"task", "0000000000000002"}, {"reserve", 1e308}, {"held", json::array()}})["error"]["code"], "bad_value");
  EXPECT_EQ(place({{"vms", json::array()}, {"reserve", 1e308}})["error"]["code"], "bad_value");
  EXPECT_EQ(hold({{"task", "0000000000000002"}, {"reserve", 60}, {"held", {{{"node", "node-a"}}}}})["error"]["code"], "bad_value");
  auto bad_vm = hold({{"task", "0000000000000002"}, {"reserve", 60}, {"held", {{{"node", "node-a"}, {"vms", {{{"uuid", uuid_of("x")}}}}}}}});
  EXPECT_EQ(bad_vm["error"]["code"], "bad_value");
  EXPECT_THAT(bad_vm["error"]["message"].get<std::string>(), HasSubstr("held[0]: vms[0]"));
  EXPECT_EQ(hold({{"reserve", 60}, {"held", json::array()}})["error"]["code"], "missing_field");
  EXPECT_EQ(ctl.metric("nodeha_scheduler_reserved{resource=\"memory_mib\"}"), 600);
  ASSERT_TRUE(bus_->request("nodeha.cmd.sched.release", R"({"task":"0000000000000002"})", 2s).is_ok());

  // A disabled node takes nothing.
  ASSERT_TRUE(bus_->request("nodeha.cmd.node.disable", R"({"node":"node-b"})", 2s).is_ok());
  EXPECT_TRUE(wait_until([&] {
    auto r = place({{"vms", {vm("vm-1", 512)}}, {"target", "node-b"}});
    return r["result"]["placements"][0].value("code", "") == "target_unavailable";
  })) << ctl.log();
  auto all = place({{"vms", {vm("vm-1", 512), vm("vm-2", 512)}}});
  EXPECT_EQ(all["result"]["placements"][0]["node"], "node-a");
  EXPECT_EQ(all["result"]["placements"][1]["node"], "node-a");
  ASSERT_TRUE(bus_->request("nodeha.cmd.node.enable", R"({"node":"node-b"})", 2s).is_ok());

  // A request listing a big node's VMs is over a plain command's 64 KiB but within its own limit:
  // a rebuild of ~1,000 VMs must not be refused for its size.
  json many = json::array();
  for (int i = 0; i < 1000; ++i) many.push_back(vm("many-" + std::to_string(i), 1));
  json many_request = {{"vms", many}};
  ASSERT_GT(many_request.dump().size(), nodeha::kMaxCommandBytes);
  auto many_placed = place(many_request);
  EXPECT_TRUE(many_placed["ok"]) << many_placed.dump().substr(0, 300);
  EXPECT_EQ(many_placed["result"]["placements"].size(), 1000u) << many_placed.dump().substr(0, 300);

  // Bad requests: each its own code, nothing reserved.
  EXPECT_EQ(place(json::object())["error"]["code"], "missing_field");
  EXPECT_EQ(place({{"vms", json::array()}, {"hurry", true}})["error"]["code"], "unknown_field");
  EXPECT_EQ(place({{"vms", "all"}})["error"]["code"], "bad_type");
  auto nested = place({{"vms", {{{"uuid", uuid_of("x")}, {"vcpus", -1}, {"memory_mib", 1}, {"disk_gib", 0}, {"local_disk", false}}}}});
  EXPECT_EQ(nested["error"]["code"], "bad_value");
  EXPECT_THAT(nested["error"]["message"].get<std::string>(), HasSubstr("vms[0].vcpus"));
  EXPECT_GE(ctl.metric("nodeha_scheduler_requests_total{result=\"refused\"}"), 4);
  EXPECT_EQ(ctl.metric("nodeha_scheduler_reserved{resource=\"memory_mib\"}"), 0);

  // Swap in the first-fit example: the same subject now answers with first-fit placements.
  ctl.rewrite(controller(nats_, NODEHA_PLUGIN_DIR "/nodeha_first_fit.so"));
  ctl.process().signal(SIGHUP);
  json swapped;
  EXPECT_TRUE(wait_until([&] {
    // During the swap the subject briefly has no responder: ask again until the new one answers.
    auto r = bus_->request("nodeha.cmd.sched.place", json{{"vms", {vm("vm-1", 512), vm("vm-2", 512)}}}.dump(), 1s);
    if (!r) return false;
    swapped = json::parse(r.value());
    return swapped.value("ok", false) && swapped["result"].value("scheduler", "") == "first-fit" &&
           swapped["result"]["placements"][1].contains("node");
  }, 15s)) << ctl.log();
  EXPECT_EQ(swapped["result"]["placements"][0]["node"], "node-a");
  EXPECT_EQ(swapped["result"]["placements"][1]["node"], "node-a");  // first fit, not spread
  EXPECT_THAT(ctl.log(), Not(HasSubstr("reload: stopping plugin heartbeat")));
}

}  // namespace
}  // namespace nodeha::test
