// NodeTable: every entry found by its id and by nothing else, at any size, and where it was made.
#include "node_table.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace nodeha::heartbeat {
namespace {

struct Value {
  int n = 0;
};

TEST(NodeTable, AnEmptyTableFindsNothing) {
  NodeTable<Value> t;
  EXPECT_EQ(t.find("node-1"), nullptr);
  EXPECT_EQ(t.find(""), nullptr);
  EXPECT_EQ(t.size(), 0u);
  EXPECT_EQ(t.begin(), t.end());
}

// 20,000 entries, made one by one through many doublings of the index: each is found by its id,
// at the address it was made at, with its value; ids never made are not found.
TEST(NodeTable, EveryEntryIsFoundWhereItWasMadeAtAnySize) {
  NodeTable<Value> t;
  std::vector<NodeTable<Value>::value_type*> made;
  for (int i = 0; i < 20000; ++i) {
    auto [entry, fresh] = t.try_emplace("node-" + std::to_string(i), Value{i});
    ASSERT_TRUE(fresh);
    made.push_back(entry);
    ASSERT_EQ(t.find("node-" + std::to_string(i / 2)), made[static_cast<size_t>(i / 2)]);
  }
  EXPECT_EQ(t.size(), 20000u);
  for (int i = 0; i < 20000; ++i) {
    std::string id = "node-" + std::to_string(i);
    auto* e = t.find(std::string_view(id));
    ASSERT_EQ(e, made[static_cast<size_t>(i)]) << id;
    EXPECT_EQ(e->first, id);
    EXPECT_EQ(e->second.n, i);
  }
  for (const std::string& absent : std::vector<std::string>{"node-20000", "node-", "node-01", "Node-1", std::string(5000, 'x'),
                                                             std::string("node-1\0", 7)})
    EXPECT_EQ(t.find(absent), nullptr) << absent.size();
  size_t walked = 0;
  for (const auto& [id, v] : t) walked += id == "node-" + std::to_string(v.n) ? 1 : 0;
  EXPECT_EQ(walked, 20000u);
}

TEST(NodeTable, MakingAnIdTwiceGivesTheFirstEntry) {
  NodeTable<Value> t;
  auto first = t.try_emplace("node-a", Value{1});
  auto again = t.try_emplace("node-a", Value{2});
  EXPECT_TRUE(first.second);
  EXPECT_FALSE(again.second);
  EXPECT_EQ(again.first, first.first);
  EXPECT_EQ(again.first->second.n, 1);
  EXPECT_EQ(t.size(), 1u);
}

TEST(NodeTable, AMovedTableKeepsItsEntriesWhereTheyWere) {
  NodeTable<Value> t;
  auto* a = t.try_emplace("node-a", Value{7}).first;
  NodeTable<Value> moved = std::move(t);
  EXPECT_EQ(moved.find("node-a"), a);
  EXPECT_EQ(moved.find("node-a")->second.n, 7);
}

}  // namespace
}  // namespace nodeha::heartbeat
