// The pure rules of automatic recovery (plugins/recovery/policy.h): the fence ladder as the config
// gives it, and the budget.
#include "policy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace nodeha::recovery {
namespace {

using ::testing::HasSubstr;

std::string ladder_error(const char* json) {
  auto r = parse_ladder(nlohmann::json::parse(json));
  return r ? "accepted" : r.status().message();
}

TEST(RecoveryLadder, MethodsComeInOrderWithTheirTimeoutsAndAckLast) {
  auto r = parse_ladder(nlohmann::json::parse(R"([{"method":"ipmi","timeout":"10s"},{"method":"pdu","timeout":"500ms"},
                                                  {"method":"ack"}])"));
  ASSERT_TRUE(r) << r.status().message();
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ((*r)[0].method, "ipmi");
  EXPECT_EQ((*r)[0].timeout, Millis(10000));
  EXPECT_EQ((*r)[1].timeout, Millis(500));
  EXPECT_EQ((*r)[2].method, kAck);
  EXPECT_EQ((*r)[2].timeout, Millis(0));
  EXPECT_TRUE(parse_ladder(nlohmann::json::parse(R"([{"method":"ipmi","timeout":"2m"}])")));
}

TEST(RecoveryLadder, BadLaddersAreRefusedWithTheReason) {
  EXPECT_THAT(ladder_error("[]"), HasSubstr("at least one method"));
  EXPECT_THAT(ladder_error(R"({"method":"ack"})"), HasSubstr("at least one method"));
  EXPECT_THAT(ladder_error(R"([1])"), HasSubstr("entry 1 is not a table"));
  EXPECT_THAT(ladder_error(R"([{"timeout":"1s"}])"), HasSubstr("method (a string) is required"));
  EXPECT_THAT(ladder_error(R"([{"method":"ipmi"}])"), HasSubstr("needs a timeout"));
  EXPECT_THAT(ladder_error(R"([{"method":"ipmi","timeout":"0s"}])"), HasSubstr("needs a timeout"));
  EXPECT_THAT(ladder_error(R"([{"method":"ipmi","timeout":"11m"}])"), HasSubstr("needs a timeout"));
  EXPECT_THAT(ladder_error(R"([{"method":"ipmi","timeout":"ten"}])"), HasSubstr("needs a timeout"));
  EXPECT_THAT(ladder_error(R"([{"method":"ipmi","timeout":10}])"), HasSubstr("needs a timeout"));
  EXPECT_THAT(ladder_error(R"([{"method":"a.b","timeout":"1s"}])"), HasSubstr("must be a label"));
  EXPECT_THAT(ladder_error(R"([{"method":"ipmi","timeout":"1s","retries":2}])"), HasSubstr("unknown key retries"));
  EXPECT_THAT(ladder_error(R"([{"method":"ipmi","timeout":"1s"},{"method":"ipmi","timeout":"2s"}])"),
              HasSubstr("listed twice"));
  EXPECT_THAT(ladder_error(R"([{"method":"ack"},{"method":"ipmi","timeout":"1s"}])"), HasSubstr("only be last"));
  EXPECT_THAT(ladder_error(R"([{"method":"ack","timeout":"1s"}])"), HasSubstr("ack takes no timeout"));
}

TEST(RecoveryBudget, BothTheCountAndTheShareHold) {
  Budget b{1, 0.34};
  EXPECT_FALSE(budget_refusal(1, 3, b));
  EXPECT_FALSE(budget_refusal(1, 10, b));
  EXPECT_FALSE(budget_refusal(0, 0, b));
  auto two = budget_refusal(2, 10, b);
  ASSERT_TRUE(two);
  EXPECT_THAT(*two, HasSubstr("2 of 10 nodes are unreachable or silent"));
  EXPECT_THAT(*two, HasSubstr("max_auto_nodes 1"));
  // The share: 1 of 2 is more than a third.
  EXPECT_TRUE(budget_refusal(1, 2, b));
  Budget wide{5, 0.5};
  EXPECT_FALSE(budget_refusal(5, 10, wide));
  EXPECT_TRUE(budget_refusal(6, 20, wide));
  EXPECT_TRUE(budget_refusal(3, 5, wide));
  Budget none{0, 1.0};
  EXPECT_TRUE(budget_refusal(1, 100, none));
}

}  // namespace
}  // namespace nodeha::recovery
