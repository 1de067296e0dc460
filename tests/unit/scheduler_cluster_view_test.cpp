// The scheduler's view of the cluster, fed from KV records: used room, groups, reservations.
#include "cluster_view.h"

#include <gtest/gtest.h>

namespace nodeha::scheduler {
namespace {

using json = nlohmann::json;

json node(int64_t vcpus, int64_t memory, int64_t used_memory, const char* management = "enabled") {
  return {{"management", management}, {"monitor", "normal"},
          {"capacity", {{"vcpus", vcpus}, {"memory_mib", memory}, {"disk_gib", 100}}},
          {"use", {{"vcpus", 0}, {"memory_mib", used_memory}, {"disk_gib", 0}}}};
}

TEST(ClusterView, UsedIsTheLargerOfRecordsAndReports) {
  ClusterView view(Resources{1, 512, 0});
  auto a = node(8, 16384, 4096), b = node(8, 16384, 0, "disabled");
  view.on_node("node-a", &a);
  view.on_node("node-b", &b);
  json vm = {{"node", "node-a"}, {"vcpus", 2}, {"memory_mib", 2048}, {"disk_gib", 20}, {"local_disk", false}, {"group", "db"}};
  view.on_vm("vm-1", &vm);
  auto nodes = view.nodes();
  ASSERT_EQ(nodes.size(), 2u);
  EXPECT_EQ(nodes[0].id, "node-a");
  EXPECT_EQ(nodes[0].host_reserve, (Resources{1, 512, 0}));
  EXPECT_EQ(nodes[0].used.memory_mib, 4096);  // the node reports more than nodeha placed
  EXPECT_EQ(nodes[0].used.vcpus, 2);          // nodeha placed more than the node reports
  EXPECT_EQ(nodes[0].used.disk_gib, 0);       // shared storage takes no node disk
  EXPECT_EQ(nodes[0].groups.at("db"), 1);
  EXPECT_EQ(nodes[1].management, "disabled");

  json moved = vm;
  moved["node"] = "node-b";
  view.on_vm("vm-1", &moved);  // the VM's room follows it
  nodes = view.nodes();
  EXPECT_EQ(nodes[0].used.vcpus, 0);
  EXPECT_EQ(nodes[1].used.vcpus, 2);
  view.on_vm("vm-1", nullptr);
  view.on_node("node-b", nullptr);
  nodes = view.nodes();
  ASSERT_EQ(nodes.size(), 1u);
  EXPECT_TRUE(nodes[0].groups.empty());
}

TEST(ClusterView, ReservationsHoldUntilReleasedOrExpired) {
  ClusterView view(Resources{});
  auto a = node(8, 16384, 0);
  view.on_node("node-a", &a);
  auto now = Clock::now();
  VmRequest vm{"vm-1", 2, 1024, 10, true, "web"};
  view.reserve("t1", "node-a", vm, now + std::chrono::seconds(60));
  view.reserve("t2", "node-a", vm, now + std::chrono::seconds(1));
  auto nodes = view.nodes();
  EXPECT_EQ(nodes[0].reservations, (Resources{4, 2048, 20}));
  EXPECT_EQ(nodes[0].groups.at("web"), 2);
  EXPECT_EQ(view.reserved_total(), (Resources{4, 2048, 20}));

  view.expire(now + std::chrono::seconds(2));  // t2 expired
  EXPECT_EQ(view.reserved_total(), (Resources{2, 1024, 10}));
  EXPECT_EQ(view.release("t1"), 1u);
  EXPECT_EQ(view.release("t1"), 0u);
  EXPECT_EQ(view.nodes()[0].reservations, Resources{});
}

// Found by fuzz/node_record_fuzz.cpp: a field of the wrong type made value() throw, and a figure
// like 1e300 was cast to int64 (undefined) and summed past int64.
TEST(ClusterView, RecordsOfAnyShapeAreRead) {
  ClusterView view(Resources{});
  json odd = {{"management", 1}, {"monitor", json::array()},
              {"capacity", {{"vcpus", 1e300}, {"memory_mib", -5}, {"disk_gib", uint64_t(1) << 63}}}};
  json vm = {{"node", "node-a"}, {"vcpus", int64_t(1) << 62}, {"memory_mib", 1e300}, {"local_disk", "yes"}};
  view.on_node("node-a", &odd);
  view.on_vm("vm-1", &vm);
  view.on_vm("vm-2", &vm);
  auto nodes = view.nodes();
  ASSERT_EQ(nodes.size(), 1u);
  EXPECT_EQ(nodes[0].management, "enabled");
  EXPECT_EQ(nodes[0].monitor, "normal");
  EXPECT_EQ(nodes[0].capacity, (Resources{0, 0, 0}));
  EXPECT_EQ(nodes[0].used, (Resources{0, 0, 0}));
}

}  // namespace
}  // namespace nodeha::scheduler
