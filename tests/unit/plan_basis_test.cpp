// The pure part of plans (plugins/tasks/plan_basis.h): what a plan is made from, and each kind
// of change between then and now, named for a person and as data. The PlanId rule too.
#include "plan_basis.h"
#include "plan_id.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace nodeha::plans {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;

json vm(const std::string& uuid, const std::string& state = "running") {
  return {{"uuid", uuid}, {"name", "vm-" + uuid}, {"node", "node-a"}, {"state", state}, {"generation", 3},
          {"vcpus", 2}, {"memory_mib", 1024}, {"disk_gib", 10}, {"local_disk", false}, {"xml", "<domain/>"}};
}

json node(const std::string& management = "enabled", const std::string& monitor = "normal") {
  return {{"management", management}, {"monitor", monitor}, {"lock", nullptr}, {"capacity", {{"vcpus", 8}}}};
}

json plan_to(const std::string& target) {
  return json::array({{{"vm", "u1"}, {"name", "vm-u1"}, {"action", "rebuild"}, {"target", target}, {"reason", ""}},
                      {{"vm", "u2"}, {"name", "vm-u2"}, {"action", "rebuild"}, {"target", target}, {"reason", ""}}});
}

json basis() {
  json steps = steps_of(plan_to("node-b")), vms = vms_of({vm("u2"), vm("u1")});
  json target = target_of("node-b", node());
  target["room"] = room_on("node-b", steps, vms);
  return {{"command", "rebuild"}, {"node", "node-a"}, {"request", {{"node", "node-a"}}}, {"source", source_of(node("drained"))},
          {"vms", vms}, {"targets", json::array({target})}, {"plan", steps}};
}

std::vector<std::string> whats(const json& changes) {
  std::vector<std::string> out;
  for (const auto& c : changes) out.push_back(c["what"]);
  return out;
}

TEST(PlanBasis, WhatAPlanCoversLeavesTheRestOfTheRecordsOut) {
  json b = basis();
  EXPECT_EQ(b["vms"][0]["uuid"], "u1");  // sorted
  EXPECT_FALSE(b["vms"][0].contains("xml"));
  EXPECT_EQ(b["targets"][0]["room"], (json{{"vms", 2}, {"vcpus", 4}, {"memory_mib", 2048}, {"disk_gib", 20}}));
  EXPECT_FALSE(b["source"].contains("capacity"));
  EXPECT_TRUE(changes(b, b).empty());
}

TEST(PlanBasis, EachKindOfChangeIsNamed) {
  json b = basis();
  json moved = vm("u1");
  moved["node"] = "node-c";
  json stopped = vm("u2", "shutoff");
  stopped["generation"] = 4;
  json now = {{"vms", vms_of({moved, stopped, vm("u3")})}};
  auto c = changes(b, now);
  EXPECT_THAT(whats(c), ::testing::UnorderedElementsAre("vm_added", "vm_moved", "vm_state", "vm_generation"));
  EXPECT_THAT(describe(c), HasSubstr("VM u3 (vm-u3 running) is now on node-a and not in the plan"));
  EXPECT_THAT(describe(c), HasSubstr("VM u1's node was node-a, now node-c"));

  c = changes(b, {{"vms", vms_of({vm("u1")})}});
  ASSERT_EQ(whats(c), std::vector<std::string>{"vm_gone"});
  EXPECT_EQ(c[0]["vm"], "u2");

  json locked = node("drained");
  locked["lock"] = {{"task", "0123456789abcdef"}};
  c = changes(b, {{"source", source_of(locked)}});
  EXPECT_EQ(whats(c), std::vector<std::string>{"node_locked"});
  c = changes(b, {{"source", source_of(node("enabled"))}});
  EXPECT_EQ(whats(c), std::vector<std::string>{"node_state"});
  EXPECT_THAT(describe(c), HasSubstr("node-a was drained/normal, now enabled/normal"));

  c = changes(b, {{"targets", json::array({target_of("node-b", node("disabled"))})}});
  EXPECT_EQ(whats(c), std::vector<std::string>{"target_state"});
  EXPECT_EQ(c[0]["node"], "node-b");
  c = changes(b, {{"targets", json::array({target_of("node-b", node("enabled", "unreachable"))})}});
  EXPECT_THAT(describe(c), HasSubstr("target node-b was enabled/normal, now enabled/unreachable"));

  c = changes(b, {{"plan", steps_of(plan_to("node-c"))}});
  EXPECT_EQ(whats(c), (std::vector<std::string>{"plan", "plan"}));
  EXPECT_THAT(describe(c), HasSubstr("VM u1 would now be rebuild to node-c, planned: rebuild to node-b"));
}

TEST(PlanBasis, APlanOfAnotherCommandOrNodeSaysOnlyThat) {
  auto c = changes(basis(), {{"command", "drain"}, {"node", "node-a"}, {"source", source_of(node())}});
  EXPECT_EQ(whats(c), std::vector<std::string>{"command"});
  EXPECT_THAT(describe(c), HasSubstr("the plan was made for command rebuild, not drain"));
}

TEST(PlanBasis, APlanIdIs32HexDigitsAndNothingElse) {
  EXPECT_TRUE(PlanId::parse("0123456789abcdef0123456789ABCDEF"));
  EXPECT_EQ(PlanId::parse("0123456789abcdef0123456789ABCDEF")->str(), "0123456789abcdef0123456789abcdef");
  for (const std::string& bad : std::vector<std::string>{"", "0123456789abcdef", "0123456789abcdef0123456789abcdeg", "../../nodes/node-a0123456789abcd",
                          "0123456789abcdef0123456789abcdef0", "*", std::string(5000, 'a')}) {
    auto r = PlanId::parse(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_THAT(r.status().message(), HasSubstr("is not a plan id: 32 hex digits"));
  }
}

}  // namespace
}  // namespace nodeha::plans
