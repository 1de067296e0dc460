// Task records: ids, steps, final states, and the advice a locked node's refusal gives.
#include "task_record.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

namespace nodeha::task_record {
namespace {

using json = nlohmann::json;

json with_steps(std::initializer_list<const char*> states, const std::string& error = "") {
  auto t = make("0123456789abcdef", "rebuild", "node-a", json::object(), "ctl", 1);
  for (const char* s : states) {
    auto step = make_step("vm", "name", "node-b");
    step["state"] = s;
    t["steps"].push_back(step);
  }
  t["error"] = error;
  return t;
}

TEST(TaskRecord, IdsAreSixteenHexDigitsAndDiffer) {
  std::set<std::string> ids;
  for (int i = 0; i < 1000; ++i) {
    auto id = new_id();
    ASSERT_EQ(id.size(), 16u);
    EXPECT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos) << id;
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), 1000u);
}

TEST(TaskRecord, ANewTaskIsPendingAndAStepWithAReasonIsSkipped) {
  auto t = make("id", "drain", "node-a", json{{"node", "node-a"}}, "ctl", 42);
  EXPECT_EQ(t["state"], "pending");
  EXPECT_EQ(t["created"], 42);
  EXPECT_EQ(t["cancel_requested"], false);
  EXPECT_TRUE(t["steps"].empty());
  EXPECT_EQ(make_step("u", "n", nullptr)["state"], "pending");
  auto skipped = make_step("u", "n", nullptr, "has local disks");
  EXPECT_EQ(skipped["state"], "skipped");
  EXPECT_EQ(skipped["reason"], "has local disks");
}

TEST(TaskRecord, FinalStates) {
  EXPECT_EQ(final_state(with_steps({})), "succeeded");
  EXPECT_EQ(final_state(with_steps({"succeeded", "skipped"})), "succeeded");
  EXPECT_EQ(final_state(with_steps({"skipped"})), "succeeded");
  EXPECT_EQ(final_state(with_steps({"succeeded", "failed"})), "partial");
  EXPECT_EQ(final_state(with_steps({"succeeded", "cancelled"})), "partial");
  EXPECT_EQ(final_state(with_steps({"failed", "skipped"})), "failed");
  EXPECT_EQ(final_state(with_steps({"cancelled", "cancelled"})), "failed");
  EXPECT_EQ(final_state(with_steps({"succeeded"}, "the store went away")), "partial");
  EXPECT_EQ(final_state(with_steps({}, "the store went away")), "failed");
}

TEST(TaskRecord, FinalityOfStates) {
  for (const char* s : {"succeeded", "failed", "partial"}) EXPECT_TRUE(task_final(s)) << s;
  for (const char* s : {"pending", "running"}) EXPECT_FALSE(task_final(s)) << s;
  for (const char* s : {"succeeded", "failed", "skipped", "cancelled"}) EXPECT_TRUE(step_final(s)) << s;
  for (const char* s : {"pending", "running", "waiting"}) EXPECT_FALSE(step_final(s)) << s;
}

TEST(TaskRecord, ALockedNodeIsExplainedWithTheWayOut) {
  json lock = {{"task", "7f3c000000000001"}, {"kind", "drain"}, {"since", 1'795'000'000'000}, {"owner", "ctl"}};
  EXPECT_EQ(locked_message("node-b", lock),
            "node-b is locked by task 7f3c000000000001 (drain, running since 2026-11-18 11:06:40 UTC); wait for it "
            "or cancel it with `nodeha task cancel 7f3c000000000001`");
}

// Found by fuzz/task_record_fuzz.cpp: records of any shape (not an object, fields of the wrong
// type) made nlohmann's value() throw.
TEST(TaskRecord, RecordsOfAnyShapeAreRead) {
  EXPECT_EQ(final_state(json()), "succeeded");
  EXPECT_EQ(final_state(json{{"steps", 5}, {"error", 3}}), "succeeded");
  EXPECT_EQ(final_state(json{{"steps", {7, json{{"state", 1}}}}}), "failed");
  auto message = locked_message("node-b", json{{"task", 7}, {"kind", json::array()}, {"since", "x"}});
  EXPECT_THAT(message, ::testing::HasSubstr("locked by task ? (?, running since 1970-01-01 00:00:00 UTC)"));
  EXPECT_THAT(locked_message("node-b", json()), ::testing::HasSubstr("locked by task ?"));
}

}  // namespace
}  // namespace nodeha::task_record
