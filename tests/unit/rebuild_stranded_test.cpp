// The rebuild plugin's count of the VMs stranded on each node (stranded_tally.h), as the vms
// bucket changes, and how it lands in the node record without touching its other fields.
#include "stranded_tally.h"
#include "vm_record.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace nodeha::rebuild {
namespace {

using json = nlohmann::json;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

json vm(const std::string& node, const std::string& stranded_on = "") {
  json r = {{"node", node}, {"generation", 1}};
  if (!stranded_on.empty()) r["stranded"] = vm_record::encode({stranded_on, "t1", 5, "has local disks"});
  return r;
}

TEST(StrandedTally, CountsEachMarkOnceAndFollowsItsEnd) {
  StrandedTally t;
  EXPECT_THAT(t.update("a", vm("node-a")), IsEmpty());
  EXPECT_THAT(t.update("a", vm("node-a", "node-a")), ElementsAre("node-a"));
  EXPECT_THAT(t.update("a", vm("node-a", "node-a")), IsEmpty());  // a watch delivers it again
  EXPECT_THAT(t.update("b", vm("node-a", "node-a")), ElementsAre("node-a"));
  EXPECT_THAT(t.update("c", vm("node-b", "node-b")), ElementsAre("node-b"));
  EXPECT_EQ(t.count("node-a"), 2);
  EXPECT_EQ(t.count("node-b"), 1);
  EXPECT_EQ(t.count("node-c"), 0);

  EXPECT_THAT(t.update("a", vm("node-a")), ElementsAre("node-a"));  // its node reported it again
  EXPECT_THAT(t.update("b", nullptr), ElementsAre("node-a"));        // its record was removed
  EXPECT_EQ(t.count("node-a"), 0);
  EXPECT_THAT(t.update("c", vm("node-b", "node-c")), UnorderedElementsAre("node-b", "node-c"));
  EXPECT_EQ(t.count("node-b"), 0);
  EXPECT_EQ(t.count("node-c"), 1);
  EXPECT_THAT(t.update("c", json::parse("not json", nullptr, false)), ElementsAre("node-c"));
  EXPECT_EQ(t.count("node-c"), 0);
}

TEST(StrandedTally, TheNodeRecordKeepsItsOtherFieldsAndIsWrittenOnlyWhenTheCountDiffers) {
  json node = {{"node", "node-a"}, {"monitor", "unreachable"}, {"management", "drained"}, {"lock", nullptr}};
  EXPECT_FALSE(with_stranded_count(node, 0));  // never had any: nothing to write
  auto one = with_stranded_count(node, 1);
  ASSERT_TRUE(one);
  EXPECT_EQ((*one)["stranded"], 1);
  EXPECT_EQ((*one)["monitor"], "unreachable");
  EXPECT_EQ((*one)["management"], "drained");
  EXPECT_FALSE(with_stranded_count(*one, 1));
  auto none = with_stranded_count(*one, 0);
  ASSERT_TRUE(none);
  EXPECT_EQ(*none, node);
  json garbled = node;
  garbled["stranded"] = "many";
  EXPECT_EQ((*with_stranded_count(garbled, 0)), node);
  EXPECT_FALSE(with_stranded_count(json::array(), 2));
}

}  // namespace
}  // namespace nodeha::rebuild
