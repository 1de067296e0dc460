// The scheduler's room index against the straightforward scan it replaces: the same node for every
// query, on random clusters from fixed seeds (few hardware classes, so many exact ties, and all
// capacities distinct), through inserts and erases; and place() against a planner that scores
// every candidate for every VM, the way the scheduler did before the index.
#include "placement.h"
#include "room_index.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <map>
#include <optional>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace nodeha::scheduler {
namespace {

constexpr size_t kUnbounded = std::numeric_limits<size_t>::max();

int64_t pick(std::mt19937& rng, int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); }

// The scan: every node scored, the highest sign * score wins, the first (smallest index) on ties.
template <typename Skip>
size_t scan(const std::vector<Amounts>& free, const std::vector<Amounts>& weight, double sign, const Amounts& need,
            Skip skip) {
  size_t best = kNone;
  double best_score = 0;
  for (size_t i = 0; i < free.size(); ++i) {
    if (!fits(free[i], need) || skip(i)) continue;
    double score = sign * share_left_after(free[i], weight[i], need);
    if (best == kNone || score > best_score) {
      best = i;
      best_score = score;
    }
  }
  return best;
}

Amounts weights_of(const Amounts& capacity) {
  double counted = 0;
  for (double c : capacity) counted += c > 0 ? 1 : 0;
  Amounts w{};
  for (size_t r = 0; r < kResourceCount; ++r) w[r] = capacity[r] > 0 ? 1.0 / (capacity[r] * counted) : 0.0;
  return w;
}

// classes == 0: every node's capacity drawn on its own.
void check_index_against_scan(uint32_t seed, size_t nodes, size_t classes, double sign) {
  SCOPED_TRACE("seed " + std::to_string(seed) + ", " + std::to_string(classes) + " classes, sign " +
               std::to_string(sign));
  std::mt19937 rng(seed);
  std::vector<Amounts> hardware;
  for (size_t c = 0; c < classes; ++c)
    hardware.push_back({double(pick(rng, 1, 4) * 32), double(pick(rng, 1, 8) * 1024), double(pick(rng, 0, 2) * 500)});
  std::vector<Amounts> capacity(nodes), free(nodes), weight(nodes);
  RoomIndex index(sign);
  for (size_t i = 0; i < nodes; ++i) {
    capacity[i] = classes > 0 ? hardware[static_cast<size_t>(pick(rng, 0, int64_t(classes) - 1))]
                              : Amounts{double(pick(rng, 1, 128)), double(pick(rng, 1, 8192)), double(pick(rng, 0, 1000))};
    weight[i] = weights_of(capacity[i]);
    free[i] = capacity[i];  // empty: many nodes in exactly the same state
    if (pick(rng, 0, 3) == 0) free[i][1] = double(pick(rng, 0, int64_t(capacity[i][1])));
    index.insert(i, weight[i], free[i]);
  }
  std::set<size_t> skipped;
  for (size_t i = 0; i < nodes / 10; ++i) skipped.insert(static_cast<size_t>(pick(rng, 0, int64_t(nodes) - 1)));
  auto skip = [&](size_t i) { return skipped.count(i) > 0; };
  size_t found = 0;
  for (int q = 0; q < 3000; ++q) {
    Amounts need{double(pick(rng, 1, 16)), double(pick(rng, 1, 64) * 128), double(pick(rng, 0, 1) * pick(rng, 0, 300))};
    bool with_skip = pick(rng, 0, 2) == 0;
    size_t expected = with_skip ? scan(free, weight, sign, need, skip) : scan(free, weight, sign, need, [](size_t) { return false; });
    std::optional<size_t> got_or =
        with_skip ? index.best(need, skip, kUnbounded) : index.best(need, [](size_t) { return false; }, kUnbounded);
    ASSERT_TRUE(got_or.has_value());
    size_t got = *got_or;
    ASSERT_EQ(got, expected) << "query " << q;
    if (got == kNone) continue;
    ++found;
    // Take the room, as a placement does, so states split and move.
    index.erase(got, weight[got], free[got]);
    for (size_t r = 0; r < kResourceCount; ++r) free[got][r] -= need[r];
    index.insert(got, weight[got], free[got]);
  }
  EXPECT_GT(found, 100u) << "the clusters filled up too early to test much";
}

TEST(SchedulerRoomIndex, FindsWhatTheScanFinds) {
  for (uint32_t seed = 1; seed <= 6; ++seed) {
    for (double sign : {1.0, -1.0}) {
      check_index_against_scan(seed, 400, 1, sign);
      check_index_against_scan(seed, 400, 6, sign);
      check_index_against_scan(seed, 400, 0, sign);
    }
  }
}

TEST(SchedulerRoomIndex, TiesGoToTheSmallestIndexAndEmptyFindsNothing) {
  RoomIndex index(1.0);
  auto none = [](size_t) { return false; };
  EXPECT_EQ(index.best(Amounts{1, 1, 0}, none, kUnbounded), kNone);
  Amounts w = weights_of({8, 1024, 0});
  for (size_t i : {7u, 3u, 5u}) index.insert(i, w, {8, 1024, 0});
  EXPECT_EQ(index.best(Amounts{1, 1, 0}, none, kUnbounded), 3u);
  EXPECT_EQ(index.best(Amounts{1, 1, 0}, [](size_t i) { return i == 3; }, kUnbounded), 5u);
  index.erase(3, w, {8, 1024, 0});
  EXPECT_EQ(index.best(Amounts{1, 1, 0}, none, kUnbounded), 5u);
  EXPECT_EQ(index.best(Amounts{9, 1, 0}, none, kUnbounded), kNone) << "no node has 9 vCPUs";
}

TEST(SchedulerRoomIndex, GivesUpWhenNodesWithoutRoomStandInTheWay) {
  RoomIndex index(-1.0);  // pack: the fullest first
  Amounts w = weights_of({8, 1024, 0});
  for (size_t i = 0; i < 10; ++i) index.insert(i, w, {1, 100.0 + double(i), 0});  // ten nearly full nodes
  index.insert(10, w, {8, 1024, 0});
  auto none = [](size_t) { return false; };
  EXPECT_EQ(index.best(Amounts{4, 512, 0}, none, 5), std::nullopt) << "ten states lack room, five may be looked at";
  EXPECT_EQ(index.best(Amounts{4, 512, 0}, none, 11), 10u);
}

// place() against the scan ----------------------------------------------------------------------

// The planner before the index: each VM, in the scheduler's order, scores every candidate.
std::vector<std::string> scanning_plan(const std::vector<NodeState>& nodes, const PlacementRequest& request,
                                       const SchedulerSettings& settings) {
  std::vector<const NodeState*> candidates;
  for (const auto& n : nodes) {
    bool excluded = std::find(request.exclude.begin(), request.exclude.end(), n.id) != request.exclude.end();
    if (n.management == kManagementEnabled && n.monitor == kMonitorNormal && !excluded) candidates.push_back(&n);
  }
  std::sort(candidates.begin(), candidates.end(), [](auto* a, auto* b) { return a->id < b->id; });
  std::vector<Amounts> free, weight;
  std::vector<std::map<std::string, int64_t>> members;
  for (const NodeState* n : candidates) {
    Resources c = effective_capacity(*n, settings.overcommit);
    Amounts capacity{double(c.vcpus), double(c.memory_mib), double(c.disk_gib)};
    Amounts used{double(n->used.vcpus + n->reservations.vcpus), double(n->used.memory_mib + n->reservations.memory_mib),
                 double(n->used.disk_gib + n->reservations.disk_gib)};
    Amounts f{};
    for (size_t r = 0; r < kResourceCount; ++r) f[r] = std::max(0.0, capacity[r] - used[r]);
    free.push_back(f);
    weight.push_back(weights_of(capacity));
    members.push_back(n->groups);
  }
  const auto& vms = request.vms;
  auto need_of = [](const VmRequest& v) { return Amounts{double(v.vcpus), double(v.memory_mib), v.local_disk ? double(v.disk_gib) : 0}; };
  std::vector<size_t> order(vms.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    Amounts x = need_of(vms[a]), y = need_of(vms[b]);
    auto key = [&](size_t i, const Amounts& n) { return std::make_tuple(-vms[i].priority, -n[1], -n[0], -n[2], vms[i].uuid, i); };
    return key(a, x) < key(b, y);
  });
  double sign = request.policy.value_or(settings.default_policy) == Policy::kPack ? -1 : 1;
  std::vector<std::string> plan(vms.size());
  for (size_t v : order) {
    const VmRequest& vm = vms[v];
    Amounts need = need_of(vm);
    auto policy = request.groups.find(vm.group);
    bool soft = !vm.group.empty() && policy != request.groups.end() && policy->second == GroupPolicy::kSoft;
    auto count = [&](size_t i) { return vm.group.empty() ? 0 : members[i].count(vm.group) ? members[i][vm.group] : 0; };
    size_t best = kNone;
    int64_t best_count = 0;
    double best_score = 0;
    for (size_t i = 0; i < candidates.size(); ++i) {
      if (!fits(free[i], need) || (!soft && count(i) > 0)) continue;
      double score = sign * share_left_after(free[i], weight[i], need);
      if (best == kNone || count(i) < best_count || (count(i) == best_count && score > best_score)) {
        best = i;
        best_count = count(i);
        best_score = score;
      }
    }
    if (best == kNone) continue;
    for (size_t r = 0; r < kResourceCount; ++r) free[best][r] -= need[r];
    if (!vm.group.empty()) ++members[best][vm.group];
    plan[v] = candidates[best]->id;
  }
  return plan;
}

// A cluster of a few hardware kinds, partly used, some nodes out, groups hard and soft.
void check_place_against_scan(uint32_t seed, size_t node_count, size_t vm_count) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  std::vector<Resources> hardware;
  for (int c = 0; c < 5; ++c) hardware.push_back({pick(rng, 1, 4) * 32, pick(rng, 1, 8) * 65536, pick(rng, 1, 4) * 1000});
  std::vector<NodeState> nodes(node_count);
  for (size_t i = 0; i < node_count; ++i) {
    NodeState& n = nodes[i];
    n.id = "node-" + std::to_string(pick(rng, 0, 99999)) + "-" + std::to_string(i);
    n.management = pick(rng, 0, 30) == 0 ? "disabled" : "enabled";
    n.monitor = pick(rng, 0, 30) == 0 ? "unreachable" : "normal";
    n.capacity = hardware[static_cast<size_t>(pick(rng, 0, 4))];
    if (pick(rng, 0, 9) == 0) n.capacity.memory_mib -= pick(rng, 1, 300);  // a node of its own
    n.host_reserve = {1, 1024, 0};
    if (pick(rng, 0, 2) == 0) n.used = {pick(rng, 0, n.capacity.vcpus), pick(rng, 0, n.capacity.memory_mib / 2), 0};
    if (pick(rng, 0, 20) == 0) n.groups["hard"] = 1;
    if (pick(rng, 0, 20) == 0) n.groups["soft"] = pick(rng, 1, 2);
  }
  PlacementRequest request;
  request.groups = {{"soft", GroupPolicy::kSoft}, {"hard", GroupPolicy::kHard}};
  for (size_t i = 0; i < vm_count; ++i) {
    VmRequest v{"vm-" + std::to_string(i), pick(rng, 1, 16), pick(rng, 1, 128) * 512, pick(rng, 1, 20) * 10,
                pick(rng, 0, 1) == 1, "", 0};
    int64_t g = pick(rng, 0, 19);
    if (g == 0) v.group = "hard";
    if (g == 1) v.group = "soft";
    if (pick(rng, 0, 20) == 0) v.priority = 1;
    request.vms.push_back(std::move(v));
  }
  for (size_t i = 0; i < node_count / 50; ++i) request.exclude.push_back(nodes[static_cast<size_t>(pick(rng, 0, int64_t(node_count) - 1))].id);
  SchedulerSettings settings;
  for (Policy policy : {Policy::kSpread, Policy::kPack}) {
    request.policy = policy;
    std::vector<std::string> expected = scanning_plan(nodes, request, settings);
    PlacementResult result = place(nodes, request, settings);
    ASSERT_EQ(result.placements.size(), expected.size());
    size_t placed = 0, differ = 0;
    for (size_t i = 0; i < expected.size(); ++i) {
      placed += result.placements[i].placed() ? 1 : 0;
      if (result.placements[i].node != expected[i]) ++differ;
    }
    EXPECT_EQ(differ, 0u) << policy_name(policy) << ": " << differ << " of " << expected.size() << " VMs placed elsewhere";
    EXPECT_GT(placed, vm_count / 4) << policy_name(policy);
    EXPECT_LT(placed, vm_count) << policy_name(policy) << ": the cluster should run out of room, so reasons are tested too";
  }
}

TEST(SchedulerRoomIndex, PlaceMatchesTheScanningPlanner) {
  for (uint32_t seed = 1; seed <= 8; ++seed) check_place_against_scan(seed, 300, 3000);
}

}  // namespace
}  // namespace nodeha::scheduler
