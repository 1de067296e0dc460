// The scheduler's placement core: every filter, every reason with its message, the target path,
// spread and pack, anti-affinity, capacity arithmetic, tie-breaking, the JSON codec, and
// properties over a few hundred random clusters.
#include "placement.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace nodeha::scheduler {
namespace {

using ::testing::HasSubstr;

NodeState node(std::string id, Resources capacity, Resources used = {}) {
  NodeState n;
  n.id = std::move(id);
  n.management = "enabled";
  n.monitor = "normal";
  n.capacity = capacity;
  n.used = used;
  return n;
}

VmRequest vm(std::string uuid, int64_t vcpus, int64_t memory_mib, std::string group = "") {
  return VmRequest{std::move(uuid), vcpus, memory_mib, 0, false, std::move(group)};
}

// No overcommit, so the numbers in messages are the numbers in the test.
SchedulerSettings exact() {
  SchedulerSettings s;
  s.overcommit = {1.0, 1.0, 1.0};
  return s;
}

PlacementRequest request_of(std::vector<VmRequest> vms) {
  PlacementRequest r;
  r.vms = std::move(vms);
  return r;
}

Placement place_one(const std::vector<NodeState>& nodes, PlacementRequest request,
                    const SchedulerSettings& settings = exact()) {
  auto result = place(nodes, request, settings);
  EXPECT_EQ(result.placements.size(), 1u);
  return result.placements.at(0);
}

void expect_reason(const Placement& p, ReasonCode code, const std::string& message) {
  ASSERT_FALSE(p.placed()) << "placed on " << p.node;
  EXPECT_EQ(p.node, "");
  EXPECT_EQ(reason_name(p.reason->code), std::string(reason_name(code)));
  EXPECT_EQ(p.reason->message, message);
}

// Capacity arithmetic ------------------------------------------------------------------------

TEST(SchedulerCapacity, ReserveIsSubtractedBeforeOvercommit) {
  NodeState n = node("a", {16, 65536, 1000});
  n.host_reserve = {2, 4096, 100};
  EXPECT_EQ(effective_capacity(n, {4.0, 1.5, 1.0}), (Resources{56, 92160, 900}));
}

TEST(SchedulerCapacity, RoundsDownButNotBelowTheIntendedProduct) {
  NodeState n = node("a", {3, 100, 10});
  EXPECT_EQ(effective_capacity(n, {1.5, 1.15, 0.7}), (Resources{4, 115, 7}));
}

TEST(SchedulerCapacity, ReserveLargerThanTheNodeLeavesNothing) {
  NodeState n = node("a", {4, 2048, 10});
  n.host_reserve = {8, 4096, 10};
  EXPECT_EQ(effective_capacity(n, {4.0, 1.5, 1.0}), (Resources{0, 0, 0}));
}

TEST(SchedulerCapacity, UsedAndReservationsBothTakeRoom) {
  NodeState n = node("node-a", {8, 8192, 0}, {0, 4096, 0});
  n.reservations = {0, 2048, 0};
  EXPECT_TRUE(place_one({n}, request_of({vm("fits", 1, 2048)})).placed());
  expect_reason(place_one({n}, request_of({vm("big", 1, 2049)})), ReasonCode::kInsufficientCapacity,
                "no candidate node has room (1 node); closest: node-a lacks memory: needs 2049 MiB, 2048 MiB free "
                "after overcommit, short by 1 MiB");
}

TEST(SchedulerCapacity, OvercommitMakesRoomAndReserveTakesIt) {
  NodeState n = node("node-a", {8, 16384, 0}, {28, 0, 0});
  n.host_reserve = {1, 0, 0};
  SchedulerSettings settings = exact();
  settings.overcommit.cpu = 4.0;  // (8 - 1) * 4 = 28 vCPUs, all used
  expect_reason(place_one({n}, request_of({vm("x", 1, 512)}), settings), ReasonCode::kInsufficientCapacity,
                "no candidate node has room (1 node); closest: node-a lacks vcpus: needs 1 vCPU, 0 vCPUs free "
                "after overcommit, short by 1 vCPU");
  n.host_reserve = {0, 0, 0};  // 32 vCPUs: room for 4
  EXPECT_EQ(place_one({n}, request_of({vm("x", 4, 512)}), settings).node, "node-a");
}

TEST(SchedulerCapacity, OverusedNodeHasNoRoomButTakesVmsThatNeedNoneOfIt) {
  NodeState n = node("node-a", {8, 8192, 100}, {0, 0, 500});  // disk used beyond capacity
  PlacementRequest r = request_of({vm("shared", 1, 512), vm("local", 1, 512)});
  r.vms[0].disk_gib = 50;
  r.vms[1].disk_gib = 50;
  r.vms[1].local_disk = true;
  auto result = place({n}, r, exact());
  EXPECT_EQ(result.placements[0].node, "node-a");
  expect_reason(result.placements[1], ReasonCode::kInsufficientCapacity,
                "no candidate node has room (1 node); closest: node-a lacks disk: needs 50 GiB, 0 GiB free after "
                "overcommit, short by 50 GiB");
}

TEST(SchedulerCapacity, EachPlacementConsumesRoomForTheNext) {
  auto request = request_of({vm("a", 1, 4096), vm("b", 1, 4096), vm("c", 1, 4096)});
  auto result = place({node("node-a", {8, 8192, 0})}, request, exact());
  EXPECT_EQ(result.placements[0].node, "node-a");
  EXPECT_EQ(result.placements[1].node, "node-a");
  expect_reason(result.placements[2], ReasonCode::kInsufficientCapacity,
                "no candidate node has room (1 node); closest: node-a lacks memory: needs 4096 MiB, 0 MiB free after "
                "overcommit, short by 4096 MiB");
}

TEST(SchedulerCapacity, NamesEveryShortResourceOfTheClosestNode) {
  std::vector<NodeState> nodes = {node("node-a", {2, 1024, 0}), node("node-b", {4, 8192, 0}, {2, 7168, 0})};
  // node-a misses 2 of 4 vCPUs and 3072 of 4096 MiB; node-b misses 2 of 4 vCPUs and 3072 MiB too,
  // so the tie goes to the smaller id.
  expect_reason(place_one(nodes, request_of({vm("x", 4, 4096)})), ReasonCode::kInsufficientCapacity,
                "no candidate node has room (2 nodes); closest: node-a lacks vcpus: needs 4 vCPUs, 2 vCPUs free after "
                "overcommit, short by 2 vCPUs; memory: needs 4096 MiB, 1024 MiB free after overcommit, short by 3072 "
                "MiB");
  nodes[1].used.vcpus = 0;  // now node-b misses only memory: closer
  expect_reason(place_one(nodes, request_of({vm("x", 4, 4096)})), ReasonCode::kInsufficientCapacity,
                "no candidate node has room (2 nodes); closest: node-b lacks memory: needs 4096 MiB, 1024 MiB free "
                "after overcommit, short by 3072 MiB");
}

// Filters and no_candidates ---------------------------------------------------------------------

TEST(SchedulerFilters, OnlyEnabledNormalAndNotExcludedNodesAreUsed) {
  std::vector<NodeState> nodes = {node("a-disabled", {64, 65536, 0}), node("b-down", {64, 65536, 0}),
                                  node("c-excluded", {64, 65536, 0}), node("d-small", {2, 2048, 0})};
  nodes[0].management = "disabled";
  nodes[1].monitor = "down";
  PlacementRequest r = request_of({vm("x", 1, 1024)});
  r.exclude = {"c-excluded", "no-such-node"};
  EXPECT_EQ(place_one(nodes, r).node, "d-small");
}

TEST(SchedulerFilters, NoCandidatesCountsEachFilter) {
  std::vector<NodeState> nodes;
  for (char i = '0'; i < '6'; ++i) nodes.push_back(node(std::string{'n', i}, {8, 8192, 0}));
  nodes[0].management = "disabled";
  nodes[1].management = "maintenance";
  nodes[2].management = "disabled";
  nodes[2].monitor = "down";  // counted once, by the first filter that rules it out
  nodes[3].monitor = "down";
  nodes[4].monitor = "suspect";
  PlacementRequest r = request_of({vm("x", 1, 512)});
  r.exclude = {"n5", "n0"};
  expect_reason(place_one(nodes, r), ReasonCode::kNoCandidates,
                "no candidate node: 3 nodes not enabled, 2 not normal, 1 excluded");
}

TEST(SchedulerFilters, NoCandidatesWithOneNodeAndWithNone) {
  std::vector<NodeState> nodes = {node("a", {8, 8192, 0})};
  nodes[0].monitor = "down";
  expect_reason(place_one(nodes, request_of({vm("x", 1, 512)})), ReasonCode::kNoCandidates,
                "no candidate node: 1 node not normal");
  expect_reason(place_one({}, request_of({vm("x", 1, 512)})), ReasonCode::kNoCandidates,
                "no candidate node: no nodes known");
}

TEST(SchedulerFilters, SharedDiskTakesNoNodeDisk) {
  std::vector<NodeState> nodes = {node("node-a", {8, 8192, 100})};
  PlacementRequest r = request_of({vm("x", 1, 512)});
  r.vms[0].disk_gib = 500;
  EXPECT_EQ(place_one(nodes, r).node, "node-a");
  r.vms[0].local_disk = true;
  expect_reason(place_one(nodes, r), ReasonCode::kInsufficientCapacity,
                "no candidate node has room (1 node); closest: node-a lacks disk: needs 500 GiB, 100 GiB free after "
                "overcommit, short by 400 GiB");
}

// Target --------------------------------------------------------------------------------------

std::vector<NodeState> target_cluster() {
  std::vector<NodeState> nodes = {node("big", {64, 65536, 0}), node("node-b", {8, 8192, 0}, {0, 7168, 0}),
                                  node("off", {8, 8192, 0}), node("down", {8, 8192, 0}), node("out", {8, 8192, 0})};
  nodes[2].management = "disabled";
  nodes[3].monitor = "down";
  return nodes;
}

Placement place_on_target(const std::string& target, VmRequest v = vm("x", 1, 512)) {
  PlacementRequest r = request_of({std::move(v)});
  r.target = target;
  r.exclude = {"out"};
  return place_one(target_cluster(), r);
}

TEST(SchedulerTarget, GoesToTheTargetEvenWhenAnotherNodeIsBetter) {
  EXPECT_EQ(place_on_target("node-b").node, "node-b");
}

TEST(SchedulerTarget, UnavailableNamesTheFilter) {
  expect_reason(place_on_target("ghost"), ReasonCode::kTargetUnavailable, "target ghost is not a known node");
  expect_reason(place_on_target("off"), ReasonCode::kTargetUnavailable,
                "target off is not enabled (management state 'disabled')");
  expect_reason(place_on_target("down"), ReasonCode::kTargetUnavailable,
                "target down is not normal (monitor state 'down')");
  expect_reason(place_on_target("out"), ReasonCode::kTargetUnavailable, "target out is excluded");
}

TEST(SchedulerTarget, HardAntiAffinityMakesItUnavailable) {
  auto nodes = target_cluster();
  nodes[1].groups = {{"db", 1}};
  PlacementRequest r = request_of({vm("x", 1, 512, "db")});
  r.target = "node-b";
  expect_reason(place_one(nodes, r), ReasonCode::kTargetUnavailable,
                "target node-b already has a VM of hard anti-affinity group 'db'");
  r.groups = {{"db", GroupPolicy::kSoft}};  // a preference only: ignored for a target
  EXPECT_EQ(place_one(nodes, r).node, "node-b");
}

TEST(SchedulerTarget, InsufficientGivesTheNumbersAndPlacesNothingElsewhere) {
  expect_reason(place_on_target("node-b", vm("x", 1, 4096)), ReasonCode::kTargetInsufficient,
                "node-b lacks memory: needs 4096 MiB, 1024 MiB free after overcommit, short by 3072 MiB");
}

TEST(SchedulerTarget, VmsConsumeTheTargetOneAfterAnother) {
  PlacementRequest r = request_of({vm("a", 1, 512), vm("b", 1, 512), vm("c", 1, 512)});
  r.target = "node-b";
  auto result = place(target_cluster(), r, exact());
  EXPECT_EQ(result.placements[0].node, "node-b");
  EXPECT_EQ(result.placements[1].node, "node-b");
  expect_reason(result.placements[2], ReasonCode::kTargetInsufficient,
                "node-b lacks memory: needs 512 MiB, 0 MiB free after overcommit, short by 512 MiB");
}

// Weighing ------------------------------------------------------------------------------------

// After a 1 vCPU / 100 MiB VM, node-a keeps (9/10 + 0/1000) / 2 = 0.45 of itself free and
// node-b (4/10 + 900/1000) / 2 = 0.65: disk, which neither has, stays out of the mean.
std::vector<NodeState> weighing_cluster() {
  return {node("node-a", {10, 1000, 0}, {0, 900, 0}), node("node-b", {10, 1000, 0}, {5, 0, 0})};
}

TEST(SchedulerWeighing, SpreadTakesTheMostFreeShareAndIsTheDefault) {
  PlacementRequest r = request_of({vm("x", 1, 100)});
  EXPECT_EQ(place_one(weighing_cluster(), r).node, "node-b");
  r.policy = Policy::kSpread;
  EXPECT_EQ(place_one(weighing_cluster(), r).node, "node-b");
}

TEST(SchedulerWeighing, PackTakesTheLeastFreeShare) {
  PlacementRequest r = request_of({vm("x", 1, 100)});
  r.policy = Policy::kPack;
  EXPECT_EQ(place_one(weighing_cluster(), r).node, "node-a");
  SchedulerSettings settings = exact();
  settings.default_policy = Policy::kPack;
  r.policy.reset();
  EXPECT_EQ(place_one(weighing_cluster(), r, settings).node, "node-a");
}

TEST(SchedulerWeighing, PackSkipsTheFullestNodeWhenItLacksRoom) {
  PlacementRequest r = request_of({vm("x", 1, 200)});  // node-a has 100 MiB left
  r.policy = Policy::kPack;
  EXPECT_EQ(place_one(weighing_cluster(), r).node, "node-b");
}

TEST(SchedulerWeighing, TiesGoToTheSmallestIdWhateverTheNodeOrder) {
  std::vector<NodeState> nodes = {node("node-c", {8, 8192, 0}), node("node-a", {8, 8192, 0}),
                                  node("node-b", {8, 8192, 0})};
  for (Policy policy : {Policy::kSpread, Policy::kPack}) {
    PlacementRequest r = request_of({vm("x", 1, 512)});
    r.policy = policy;
    EXPECT_EQ(place_one(nodes, r).node, "node-a");
    std::reverse(nodes.begin(), nodes.end());
    EXPECT_EQ(place_one(nodes, r).node, "node-a");
  }
}

TEST(SchedulerWeighing, BigVmsArePlacedFirstAndResultsKeepRequestOrder) {
  // Spread would put a small VM first on node-a, the only node with room for the big one.
  std::vector<NodeState> nodes = {node("node-a", {8, 8192, 0}), node("node-b", {8, 4096, 0})};
  auto result = place(nodes, request_of({vm("small", 1, 4096), vm("big", 1, 8192)}), exact());
  ASSERT_EQ(result.placements.size(), 2u);
  EXPECT_EQ(result.placements[0].uuid, "small");
  EXPECT_EQ(result.placements[0].node, "node-b");
  EXPECT_EQ(result.placements[1].uuid, "big");
  EXPECT_EQ(result.placements[1].node, "node-a");
}

// Automatic recovery's priorities: when room runs out, what is left is the least important, even
// when it is the biggest; the priority crosses the codec.
TEST(SchedulerWeighing, HigherPriorityIsPlacedFirstWhenRoomRunsOut) {
  std::vector<NodeState> nodes = {node("node-a", {8, 8192, 0})};
  VmRequest low = vm("low", 1, 8192), high = vm("high", 1, 4096), mid = vm("mid", 1, 4096);
  high.priority = 100;
  mid.priority = 5;
  auto result = place(nodes, request_of({low, mid, high}), exact());
  ASSERT_EQ(result.placements.size(), 3u);
  EXPECT_FALSE(result.placements[0].placed());
  EXPECT_EQ(result.placements[1].node, "node-a");
  EXPECT_EQ(result.placements[2].node, "node-a");
  auto decoded = decode_request(encode_request(request_of({high, low})));
  ASSERT_TRUE(decoded) << decoded.status().message();
  EXPECT_EQ(decoded->vms[0].priority, 100);
  EXPECT_EQ(decoded->vms[1].priority, 0);
  EXPECT_FALSE(decode_request(nlohmann::json::parse(R"({"vms":[{"uuid":"x","vcpus":1,"memory_mib":1,"priority":-1}]})")));
}

TEST(SchedulerWeighing, SpreadFillsNodesEvenly) {
  std::vector<NodeState> nodes = {node("a", {16, 16384, 0}), node("b", {16, 16384, 0}), node("c", {16, 16384, 0})};
  std::vector<VmRequest> vms;
  for (int i = 0; i < 9; ++i) vms.push_back(vm("vm" + std::to_string(i), 1, 1024));
  std::map<std::string, int> per_node;
  for (const auto& p : place(nodes, request_of(vms), exact()).placements) ++per_node[p.node];
  EXPECT_EQ(per_node, (std::map<std::string, int>{{"a", 3}, {"b", 3}, {"c", 3}}));
  PlacementRequest packed = request_of(vms);
  packed.policy = Policy::kPack;
  per_node.clear();
  for (const auto& p : place(nodes, packed, exact()).placements) ++per_node[p.node];
  EXPECT_EQ(per_node, (std::map<std::string, int>{{"a", 9}}));
}

// Anti-affinity -------------------------------------------------------------------------------

TEST(SchedulerAntiAffinity, HardGroupNeverSharesANode) {
  std::vector<NodeState> nodes = {node("node-a", {16, 16384, 0}), node("node-b", {16, 16384, 0})};
  PlacementRequest r = request_of({vm("db1", 1, 1024, "db"), vm("db2", 1, 1024, "db"), vm("db3", 1, 1024, "db")});
  r.groups = {{"db", GroupPolicy::kHard}};
  r.policy = Policy::kPack;  // would stack them all on one node otherwise
  auto result = place(nodes, r, exact());
  EXPECT_EQ(result.placements[0].node, "node-a");
  EXPECT_EQ(result.placements[1].node, "node-b");
  expect_reason(result.placements[2], ReasonCode::kAntiAffinity,
                "group 'db' (hard anti-affinity) already has a VM on every candidate node with room (2 nodes)");
}

TEST(SchedulerAntiAffinity, CountsVmsAlreadyOnNodesAndUnlistedGroupsAreHard) {
  std::vector<NodeState> nodes = {node("node-a", {64, 65536, 0}), node("node-b", {4, 4096, 0}, {3, 0, 0})};
  nodes[0].groups = {{"db", 1}, {"other", 5}};
  nodes[1].groups = {{"db", 0}};
  EXPECT_EQ(place_one(nodes, request_of({vm("x", 1, 1024, "db")})).node, "node-b");
}

TEST(SchedulerAntiAffinity, CapacityIsTheReasonWhenNoNodeHasRoomAnyway) {
  std::vector<NodeState> nodes = {node("node-a", {4, 4096, 0})};
  nodes[0].groups = {{"db", 1}};
  expect_reason(place_one(nodes, request_of({vm("x", 1, 8192, "db")})), ReasonCode::kInsufficientCapacity,
                "no candidate node has room (1 node); closest: node-a lacks memory: needs 8192 MiB, 4096 MiB free "
                "after overcommit, short by 4096 MiB");
}

TEST(SchedulerAntiAffinity, SoftGroupPrefersFewerMembersOverAnyResourceScore) {
  std::vector<NodeState> nodes = {node("node-a", {64, 65536, 0}), node("node-b", {4, 4096, 0}, {2, 2048, 0})};
  nodes[0].groups = {{"web", 1}};
  PlacementRequest r = request_of({vm("w1", 1, 1024, "web"), vm("w2", 1, 1024, "web")});
  r.groups = {{"web", GroupPolicy::kSoft}};
  auto result = place(nodes, r, exact());
  // w1 goes where the group has no VM yet; then both nodes hold one and the score decides.
  EXPECT_EQ(result.placements[0].node, "node-b");
  EXPECT_EQ(result.placements[1].node, "node-a");
}

TEST(SchedulerAntiAffinity, SoftGroupStacksWhenItMust) {
  std::vector<NodeState> nodes = {node("node-a", {16, 16384, 0})};
  PlacementRequest r = request_of({vm("w1", 1, 1024, "web"), vm("w2", 1, 1024, "web")});
  r.groups = {{"web", GroupPolicy::kSoft}};
  for (const auto& p : place(nodes, r, exact()).placements) EXPECT_EQ(p.node, "node-a");
}

// Settings ------------------------------------------------------------------------------------

TEST(SchedulerSettingsCheck, RatiosMustBePositive) {
  EXPECT_TRUE(check_settings(SchedulerSettings{}).is_ok());
  SchedulerSettings s;
  s.overcommit.memory = 0;
  EXPECT_EQ(check_settings(s).message(), "overcommit ratio for memory must be a positive number");
  s.overcommit.memory = 1;
  s.overcommit.disk = -1;
  EXPECT_EQ(check_settings(s).code(), NODEHA_ERR_INVALID);
}

// JSON ----------------------------------------------------------------------------------------

const char* kRequestJson = R"({
  "vms": [
    {"uuid": "a", "vcpus": 2, "memory_mib": 4096, "disk_gib": 20, "local_disk": true, "group": "web"},
    {"uuid": "b", "vcpus": 1, "memory_mib": 512, "disk_gib": 0, "local_disk": false}
  ],
  "exclude": ["node-c"],
  "target": "node-a",
  "policy": "pack",
  "groups": {"web": "soft", "db": "hard"}
})";

TEST(SchedulerJson, DecodesEveryField) {
  auto r = parse_request(kRequestJson);
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  const PlacementRequest& req = r.value();
  ASSERT_EQ(req.vms.size(), 2u);
  EXPECT_EQ(req.vms[0], (VmRequest{"a", 2, 4096, 20, true, "web"}));
  EXPECT_EQ(req.vms[1], (VmRequest{"b", 1, 512, 0, false, ""}));
  EXPECT_EQ(req.exclude, std::vector<std::string>{"node-c"});
  EXPECT_EQ(req.target, "node-a");
  EXPECT_EQ(req.policy, Policy::kPack);
  EXPECT_EQ(req.groups, (std::map<std::string, GroupPolicy>{{"web", GroupPolicy::kSoft}, {"db", GroupPolicy::kHard}}));
}

TEST(SchedulerJson, OptionalFieldsMayBeLeftOut) {
  auto r = parse_request(R"({"vms": []})");
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_EQ(r.value(), PlacementRequest{});
}

TEST(SchedulerJson, RequestSurvivesARoundTrip) {
  auto r = parse_request(kRequestJson);
  ASSERT_TRUE(r.is_ok());
  auto again = decode_request(encode_request(r.value()));
  ASSERT_TRUE(again.is_ok()) << again.status().message();
  EXPECT_EQ(again.value(), r.value());
}

std::string request_error(const std::string& text) {
  auto r = parse_request(text);
  EXPECT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), NODEHA_ERR_INVALID);
  return r.status().message();
}

std::string vm_error(const std::string& fields) {
  return request_error(R"({"vms": [{"uuid": "a", "vcpus": 1, "memory_mib": 1, "disk_gib": 0, "local_disk": false},)"
                       R"( {"uuid": "b", "vcpus": 1, "memory_mib": 1, "disk_gib": 0, "local_disk": false},)"
                       R"( {"uuid": "c", "vcpus": 1, "memory_mib": 1, "disk_gib": 0, "local_disk": false},)"
                       R"( {)" + fields + "}]}");
}

TEST(SchedulerJson, ErrorsNameTheField) {
  const std::string ok = R"("uuid": "d", "vcpus": 1, "memory_mib": 1, "disk_gib": 0, "local_disk": false)";
  EXPECT_EQ(vm_error(R"("uuid": "d", "vcpus": 1, "memory_mib": "4G", "disk_gib": 0, "local_disk": false)"),
            "vms[3].memory_mib must be a positive integer");
  EXPECT_EQ(vm_error(R"("uuid": "d", "vcpus": 1, "memory_mib": 1.5, "disk_gib": 0, "local_disk": false)"),
            "vms[3].memory_mib must be a positive integer");
  EXPECT_EQ(vm_error(R"("uuid": "d", "vcpus": 0, "memory_mib": 1, "disk_gib": 0, "local_disk": false)"),
            "vms[3].vcpus must be a positive integer");
  EXPECT_EQ(vm_error(R"("uuid": "d", "vcpus": 1, "memory_mib": 1, "disk_gib": -1, "local_disk": false)"),
            "vms[3].disk_gib must be a non-negative integer");
  EXPECT_EQ(vm_error(R"("uuid": "d", "vcpus": 1, "memory_mib": 18446744073709551615, "disk_gib": 0, )"
                     R"("local_disk": false)"),
            "vms[3].memory_mib must be at most 1099511627776");
  EXPECT_EQ(vm_error(R"("uuid": "d", "vcpus": 1, "memory_mib": 1, "disk_gib": 0, "local_disk": "yes")"),
            "vms[3].local_disk must be true or false");
  EXPECT_EQ(vm_error(R"("uuid": 7, "vcpus": 1, "memory_mib": 1, "disk_gib": 0, "local_disk": false)"),
            "vms[3].uuid must be a non-empty string");
  EXPECT_EQ(vm_error(ok + R"(, "group": "")"), "vms[3].group must be a non-empty string");
  EXPECT_EQ(vm_error(R"("uuid": "d", "vcpus": 1, "disk_gib": 0, "local_disk": false)"), "vms[3].memory_mib is missing");
  EXPECT_EQ(vm_error(R"("uuid": "a", "vcpus": 1, "memory_mib": 1, "disk_gib": 0, "local_disk": false)"),
            "vms[3].uuid repeats vms[0].uuid");
  EXPECT_EQ(vm_error(ok + R"(, "colour": "red")"),
            "vms[3].colour is not a known field (known: uuid, vcpus, memory_mib, disk_gib, local_disk, group, priority)");
}

TEST(SchedulerJson, RequestLevelErrors) {
  EXPECT_EQ(request_error(R"({})"), "vms is missing");
  EXPECT_EQ(request_error(R"({"vms": {}})"), "vms must be an array");
  EXPECT_EQ(request_error(R"({"vms": [3]})"), "vms[0] must be an object");
  EXPECT_EQ(request_error(R"({"vms": [], "priority": 1})"),
            "priority is not a known field (known: vms, exclude, target, policy, groups)");
  EXPECT_EQ(request_error(R"({"vms": [], "exclude": "node-a"})"), "exclude must be an array");
  EXPECT_EQ(request_error(R"({"vms": [], "exclude": ["node-a", 5]})"), "exclude[1] must be a non-empty string");
  EXPECT_EQ(request_error(R"({"vms": [], "target": null})"), "target must be a non-empty string");
  EXPECT_EQ(request_error(R"({"vms": [], "policy": "random"})"), "policy must be \"spread\" or \"pack\"");
  EXPECT_EQ(request_error(R"({"vms": [], "groups": ["web"]})"),
            "groups must be an object of group name to \"hard\" or \"soft\"");
  EXPECT_EQ(request_error(R"({"vms": [], "groups": {"web": "maybe"}})"), "groups.web must be \"hard\" or \"soft\"");
  EXPECT_EQ(request_error(R"({"vms": [], "groups": {"": "hard"}})"), "groups has an empty group name");
  EXPECT_EQ(request_error(R"([])"), "request must be a JSON object");
  EXPECT_THAT(request_error(R"({"vms": [)"), HasSubstr("request is not valid JSON (at byte"));
}

TEST(SchedulerJson, ResultRoundTripsAndIsStrict) {
  PlacementResult result;
  result.placements = {Placement{"a", "node-a", std::nullopt},
                       Placement{"b", "", Reason{ReasonCode::kAntiAffinity, "group 'db' ..."}}};
  nlohmann::json json = encode_result(result);
  EXPECT_EQ(json, nlohmann::json::parse(R"({"placements": [{"uuid": "a", "node": "node-a"},
      {"uuid": "b", "code": "anti_affinity", "message": "group 'db' ..."}]})"));
  auto back = decode_result(json);
  ASSERT_TRUE(back.is_ok()) << back.status().message();
  EXPECT_EQ(back.value(), result);

  auto error = [](const char* text) { return parse_result(text).status().message(); };
  EXPECT_EQ(error(R"({})"), "placements is missing");
  EXPECT_EQ(error(R"({"placements": [{"uuid": "a"}]})"), "placements[0].code is missing");
  EXPECT_EQ(error(R"({"placements": [{"uuid": "a", "node": "n", "code": "x"}]})"),
            "placements[0] has a node, so no code or message");
  EXPECT_EQ(error(R"({"placements": [{"uuid": "a", "code": "busy", "message": "m"}]})"),
            "placements[0].code must be no_candidates, insufficient_capacity, target_unavailable, "
            "target_insufficient or anti_affinity");
  EXPECT_EQ(error(R"({"placements": [{"uuid": "a", "node": "n", "extra": 1}]})"),
            "placements[0].extra is not a known field (known: uuid, node, code, message)");
}

// Properties over random clusters -------------------------------------------------------------

struct Scenario {
  std::vector<NodeState> nodes;
  PlacementRequest request;
  SchedulerSettings settings;
};

int64_t pick(std::mt19937& rng, int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); }

template <class T>
const T& one_of(std::mt19937& rng, const std::vector<T>& options) {
  return options[static_cast<size_t>(pick(rng, 0, static_cast<int64_t>(options.size()) - 1))];
}

Scenario random_scenario(std::mt19937& rng) {
  Scenario s;
  const std::vector<double> ratios = {0.5, 1.0, 1.5, 4.0};
  s.settings.overcommit = {one_of(rng, ratios), one_of(rng, ratios), one_of(rng, ratios)};
  s.settings.default_policy = pick(rng, 0, 1) ? Policy::kPack : Policy::kSpread;
  const std::vector<std::string> groups = {"g0", "g1", "g2", "g3", "g4"};  // g4 has no policy: hard

  int64_t node_count = pick(rng, 0, 24);
  for (int64_t i = 0; i < node_count; ++i) {
    NodeState n = node("n" + std::to_string(pick(rng, 0, 9999)) + "-" + std::to_string(i),
                       {pick(rng, 0, 64), pick(rng, 0, 65536), pick(rng, 0, 2000)});
    if (pick(rng, 0, 6) == 0) n.management = one_of(rng, std::vector<std::string>{"disabled", "maintenance"});
    if (pick(rng, 0, 6) == 0) n.monitor = one_of(rng, std::vector<std::string>{"down", "suspect"});
    n.host_reserve = {pick(rng, 0, 4), pick(rng, 0, 4096), pick(rng, 0, 100)};
    // Sometimes beyond capacity: the node then has no room, but nothing breaks.
    n.used = {pick(rng, 0, n.capacity.vcpus * 2), pick(rng, 0, n.capacity.memory_mib),
              pick(rng, 0, n.capacity.disk_gib)};
    n.reservations = {pick(rng, 0, 2), pick(rng, 0, 2048), pick(rng, 0, 50)};
    for (const auto& g : groups) {
      if (pick(rng, 0, 4) == 0) n.groups[g] = pick(rng, 0, 2);
    }
    s.nodes.push_back(std::move(n));
  }

  int64_t vm_count = pick(rng, 0, 60);
  for (int64_t i = 0; i < vm_count; ++i) {
    VmRequest v = vm("vm-" + std::to_string(pick(rng, 0, 999)) + "-" + std::to_string(i), pick(rng, 1, 16),
                     pick(rng, 1, 64) * 256);
    v.disk_gib = pick(rng, 0, 200);
    v.local_disk = pick(rng, 0, 1) == 1;
    if (pick(rng, 0, 2) == 0) v.group = one_of(rng, groups);
    s.request.vms.push_back(std::move(v));
  }
  s.request.groups = {{"g0", GroupPolicy::kHard}, {"g1", GroupPolicy::kSoft}, {"g3", GroupPolicy::kSoft}};
  if (pick(rng, 0, 1)) s.request.groups["g2"] = GroupPolicy::kSoft;
  for (const auto& n : s.nodes) {
    if (pick(rng, 0, 9) == 0) s.request.exclude.push_back(n.id);
  }
  if (pick(rng, 0, 9) == 0) s.request.exclude.push_back("ghost");
  if (pick(rng, 0, 7) == 0) {
    s.request.target = s.nodes.empty() || pick(rng, 0, 4) == 0 ? "ghost" : one_of(rng, s.nodes).id;
  }
  int64_t policy = pick(rng, 0, 2);
  if (policy == 1) s.request.policy = Policy::kSpread;
  if (policy == 2) s.request.policy = Policy::kPack;
  return s;
}

Resources need_of(const VmRequest& v) { return {v.vcpus, v.memory_mib, v.local_disk ? v.disk_gib : 0}; }

bool is_hard(const PlacementRequest& r, const std::string& group) {
  auto it = r.groups.find(group);
  return it == r.groups.end() || it->second == GroupPolicy::kHard;
}

bool passes_state(const NodeState& n, const PlacementRequest& r) {
  return n.management == "enabled" && n.monitor == "normal" &&
         std::find(r.exclude.begin(), r.exclude.end(), n.id) == r.exclude.end();
}

// The checks every plan must pass, whatever the cluster.
void check_properties(const Scenario& s, const PlacementResult& result) {
  const auto& vms = s.request.vms;
  ASSERT_EQ(result.placements.size(), vms.size());
  std::map<std::string, const NodeState*> by_id;
  for (const auto& n : s.nodes) by_id[n.id] = &n;
  std::map<std::string, Resources> added;                      // node -> what the plan put there
  std::map<std::pair<std::string, std::string>, int64_t> members;  // (node, group) -> VMs after the plan

  for (const auto& n : s.nodes) {
    for (const auto& [g, count] : n.groups) members[{n.id, g}] += count;
  }
  for (size_t i = 0; i < vms.size(); ++i) {
    const Placement& p = result.placements[i];
    SCOPED_TRACE("vm " + vms[i].uuid);
    EXPECT_EQ(p.uuid, vms[i].uuid);
    EXPECT_NE(p.placed(), p.node.empty()) << "either a node or a reason";
    if (!p.placed()) {
      EXPECT_FALSE(p.reason->message.empty());
      bool target_code =
          p.reason->code == ReasonCode::kTargetUnavailable || p.reason->code == ReasonCode::kTargetInsufficient;
      EXPECT_EQ(target_code, s.request.target.has_value());
      continue;
    }
    ASSERT_EQ(by_id.count(p.node), 1u) << "unknown node " << p.node;
    const NodeState& n = *by_id[p.node];
    EXPECT_TRUE(passes_state(n, s.request)) << "placed on filtered node " << n.id;
    if (s.request.target) {
      EXPECT_EQ(p.node, *s.request.target);
    }
    Resources need = need_of(vms[i]);
    Resources& a = added[n.id];
    a = {a.vcpus + need.vcpus, a.memory_mib + need.memory_mib, a.disk_gib + need.disk_gib};
    if (!vms[i].group.empty()) {
      int64_t before = members[{n.id, vms[i].group}]++;
      if (is_hard(s.request, vms[i].group)) {
        EXPECT_EQ(before, 0) << "hard group " << vms[i].group << " on " << n.id;
      }
    }
  }

  // Nothing over capacity: each resource a plan put on a node fits in what the node had free.
  std::map<std::string, Resources> free;
  for (const auto& n : s.nodes) {
    Resources cap = effective_capacity(n, s.settings.overcommit);
    auto room = [](int64_t c, int64_t used, int64_t held) { return std::max<int64_t>(0, c - used - held); };
    Resources f{room(cap.vcpus, n.used.vcpus, n.reservations.vcpus),
                room(cap.memory_mib, n.used.memory_mib, n.reservations.memory_mib),
                room(cap.disk_gib, n.used.disk_gib, n.reservations.disk_gib)};
    const Resources& a = added[n.id];
    EXPECT_LE(a.vcpus, f.vcpus) << n.id;
    EXPECT_LE(a.memory_mib, f.memory_mib) << n.id;
    EXPECT_LE(a.disk_gib, f.disk_gib) << n.id;
    free[n.id] = {f.vcpus - a.vcpus, f.memory_mib - a.memory_mib, f.disk_gib - a.disk_gib};
  }

  // No VM left out while a node could take it: room only shrinks and groups only grow during a
  // plan, so a node that could take an unplaced VM at the end could have taken it at its turn.
  if (s.request.target) return;
  for (size_t i = 0; i < vms.size(); ++i) {
    if (result.placements[i].placed()) continue;
    Resources need = need_of(vms[i]);
    bool any_state_candidate = false;
    for (const auto& n : s.nodes) {
      if (!passes_state(n, s.request)) continue;
      any_state_candidate = true;
      const Resources& f = free[n.id];
      bool fits = need.vcpus <= f.vcpus && need.memory_mib <= f.memory_mib && need.disk_gib <= f.disk_gib;
      bool blocked = !vms[i].group.empty() && is_hard(s.request, vms[i].group) && members[{n.id, vms[i].group}] > 0;
      EXPECT_FALSE(fits && !blocked) << vms[i].uuid << " left out though " << n.id << " could take it";
    }
    EXPECT_EQ(result.placements[i].reason->code == ReasonCode::kNoCandidates, !any_state_candidate);
  }
}

TEST(SchedulerProperties, HoldForRandomClusters) {
  std::map<std::string, int> outcomes;  // reason name or "placed": the clusters must reach them all
  for (uint32_t seed = 1; seed <= 300; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    Scenario s = random_scenario(rng);
    PlacementResult result = place(s.nodes, s.request, s.settings);
    check_properties(s, result);
    for (const auto& p : result.placements) ++outcomes[p.placed() ? "placed" : reason_name(p.reason->code)];

    EXPECT_EQ(place(s.nodes, s.request, s.settings), result) << "same input, same plan";
    std::shuffle(s.nodes.begin(), s.nodes.end(), rng);
    EXPECT_EQ(place(s.nodes, s.request, s.settings), result) << "node order changed the plan";

    // VM order does not matter either: each VM lands where it did before.
    std::map<std::string, Placement> by_uuid;
    for (const auto& p : result.placements) by_uuid[p.uuid] = p;
    PlacementRequest shuffled = s.request;
    std::shuffle(shuffled.vms.begin(), shuffled.vms.end(), rng);
    for (const auto& p : place(s.nodes, shuffled, s.settings).placements) EXPECT_EQ(p, by_uuid[p.uuid]);

    auto request = decode_request(encode_request(s.request));
    ASSERT_TRUE(request.is_ok()) << request.status().message();
    EXPECT_EQ(request.value(), s.request);
    auto decoded = decode_result(encode_result(result));
    ASSERT_TRUE(decoded.is_ok()) << decoded.status().message();
    EXPECT_EQ(decoded.value(), result);
    std::string text;
    append_placements(text, result);
    EXPECT_EQ(text, encode_result(result)["placements"].dump()) << "the reply's text is the codec's";
    if (HasFailure()) break;  // one seed's story is enough to read
  }
  for (const char* outcome : {"placed", "no_candidates", "insufficient_capacity", "target_unavailable",
                              "target_insufficient", "anti_affinity"}) {
    EXPECT_GT(outcomes[outcome], 0) << outcome << " never happened: the random clusters are too tame";
  }
}

TEST(SchedulerJson, PlacementsTextIsWhatDumpWrites) {
  PlacementResult result;
  result.placements.push_back({"5c4e0000-0000-4000-8000-000000000001", "node-a", std::nullopt});
  result.placements.push_back({"u2", "", Reason{ReasonCode::kAntiAffinity, "group 'q\"b\\s' \n\t\r\b\f \x01\x1f \xc3\xa9 \x7f"}});
  result.placements.push_back({"u3", "", Reason{ReasonCode::kInsufficientCapacity, ""}});
  std::string text;
  append_placements(text, result);
  EXPECT_EQ(text, encode_result(result)["placements"].dump());
  std::string empty;
  append_placements(empty, PlacementResult{});
  EXPECT_EQ(empty, "[]");
}

// Found by fuzz/command_fuzz.cpp: a number beyond a double (out_of_range, not parse_error)
// escaped parse_result and parse_request as an exception.
TEST(SchedulerJson, NumberBeyondDoubleIsInvalidNotThrown) {
  auto result = parse_result("6e398");
  ASSERT_FALSE(result.is_ok());
  EXPECT_EQ(result.status().code(), NODEHA_ERR_INVALID);
  auto request = parse_request(R"({"vms":[{"uuid":"a","vcpus":1e999}]})");
  ASSERT_FALSE(request.is_ok());
  EXPECT_EQ(request.status().code(), NODEHA_ERR_INVALID);
}

}  // namespace
}  // namespace nodeha::scheduler
