// A task's steps kept in chunks (task_steps.h): keys, the head, the chunk codec, the one reader
// (over a map standing for the buckets), and the bound on a step.
#include "task_record.h"
#include "task_steps.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>

namespace nodeha::task_steps {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

constexpr const char* kId = "0123456789abcdef";

json task_of(size_t steps) {
  auto t = task_record::make(kId, "drain", "node-a", json::object(), "ctl", 1);
  t["epoch"] = 3;
  for (size_t i = 0; i < steps; ++i) {
    auto s = task_record::make_step("vm-" + std::to_string(i), "n", nullptr);
    if (i % 3 == 0) s["state"] = "succeeded";
    t["steps"].push_back(s);
  }
  return t;
}

// The buckets as a map: what store_new writes, by bucket and key.
struct Store {
  std::map<std::pair<std::string, std::string>, std::string> kv;
  void put(const json& task) {
    kv[{"tasks", task["id"]}] = head(task).dump();
    for (size_t k = 0; k < chunk_count(task["steps"].size()); ++k) kv[{kBucket, chunk_key(task["id"], k)}] = encode_chunk(task, k);
  }
  Get get() {
    return [this](const std::string& b, const std::string& k) -> Result<KvEntry> {
      auto it = kv.find({b, k});
      if (it == kv.end()) return Status(NODEHA_ERR_NOT_FOUND, "no " + b + "/" + k);
      return KvEntry{b, k, it->second, 7};
    };
  }
};

TEST(TaskSteps, KeysNameOneTaskAndOneChunk) {
  EXPECT_EQ(chunk_key(kId, 0), "0123456789abcdef.0");
  EXPECT_EQ(chunk_key(kId, 156), "0123456789abcdef.156");
  EXPECT_EQ(chunk_count(0), 0u);
  EXPECT_EQ(chunk_count(64), 1u);
  EXPECT_EQ(chunk_count(10000), 157u);
  EXPECT_EQ(chunk_of_step(63), 0u);
  EXPECT_EQ(chunk_of_step(64), 1u);
}

TEST(TaskSteps, TheHeadHoldsNoStepsButTheirCounts) {
  json h = head(task_of(10));
  EXPECT_FALSE(h.contains("steps"));
  EXPECT_EQ(h["step_count"], 10);
  EXPECT_EQ(h["step_counts"], json({{"succeeded", 4}, {"pending", 6}}));
  EXPECT_EQ(h["chunk_steps"], kChunkSteps);
  EXPECT_EQ(h["kind"], "drain");
  EXPECT_TRUE(chunked(h));
}

TEST(TaskSteps, AChunkDecodesAsWrittenAndAnythingElseIsRefused) {
  auto t = task_of(70);
  auto c = decode_chunk(encode_chunk(t, 1));
  ASSERT_TRUE(c) << c.status().message();
  EXPECT_EQ(c->task, kId);
  EXPECT_EQ(c->index, 1u);
  EXPECT_EQ(c->epoch, 3u);
  ASSERT_EQ(c->steps.size(), 6u);
  EXPECT_EQ(c->steps[0]["vm"], "vm-64");
  for (const char* bad : {"[]", "{}", R"({"task":"x","chunk":0,"epoch":0,"steps":[]})",
                          R"({"task":"0123456789abcdef","chunk":-1,"epoch":0,"steps":[]})",
                          R"({"task":"0123456789abcdef","chunk":0,"epoch":"1","steps":[]})",
                          R"({"task":"0123456789abcdef","chunk":0,"epoch":0,"steps":[1]})",
                          R"({"task":"0123456789abcdef","chunk":0,"epoch":0,"steps":{}})"})
    EXPECT_FALSE(decode_chunk(bad)) << bad;
}

TEST(TaskSteps, LoadReadsTheWholeTaskBack) {
  Store s;
  auto t = task_of(130);
  s.put(t);
  Revisions rev;
  auto back = load(kId, s.get(), &rev);
  ASSERT_TRUE(back) << back.status().message();
  EXPECT_EQ((*back)["steps"], t["steps"]);
  EXPECT_EQ((*back)["node"], "node-a");
  EXPECT_EQ(rev.chunks.size(), 3u);
  EXPECT_EQ(rev.head, 7u);
}

TEST(TaskSteps, ARecordFromBeforeChunksIsReadAsItIs) {
  Store s;
  auto t = task_of(5);
  s.kv[{"tasks", kId}] = t.dump();
  auto back = load(kId, s.get());
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, t);
}

TEST(TaskSteps, AMissingOrForeignChunkIsAnErrorNamingIt) {
  Store s;
  s.put(task_of(130));
  EXPECT_EQ(load("fedcba9876543210", s.get()).status().code(), NODEHA_ERR_NOT_FOUND);
  auto other = task_of(64);
  other["id"] = "fedcba9876543210";
  s.kv[{kBucket, chunk_key(kId, 1)}] = encode_chunk(other, 0);
  auto foreign = load(kId, s.get());
  ASSERT_FALSE(foreign);
  EXPECT_THAT(foreign.status().message(), HasSubstr("chunk 1 of task 0123456789abcdef"));
  s.put(task_of(130));
  s.kv.erase({kBucket, chunk_key(kId, 2)});
  auto missing = load(kId, s.get());
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.status().code(), NODEHA_ERR_NOT_FOUND);
  EXPECT_THAT(missing.status().message(), HasSubstr("chunk 2"));
}

TEST(TaskSteps, AStepIsCutToItsBound) {
  auto s = task_record::make_step("vm", "name", "node-b");
  auto small = s;
  bound_step(small);
  EXPECT_EQ(small, s) << "a usual step stays as it is";
  s["error"] = std::string(20000, 'e');
  bound_step(s);
  EXPECT_LE(s.dump().size(), kMaxStepBytes);
  EXPECT_THAT(s["error"].get<std::string>(), HasSubstr("(cut)"));
  EXPECT_EQ(s["vm"], "vm");
  auto huge = task_record::make_step("vm", "name", "node-b");
  huge["figures"] = json::array();
  for (int i = 0; i < 5000; ++i) huge["figures"].push_back(i);
  bound_step(huge);
  EXPECT_LE(huge.dump().size(), kMaxStepBytes);
  EXPECT_EQ(huge["cut"], true);
  EXPECT_EQ(huge["state"], "pending");
}

}  // namespace
}  // namespace nodeha::task_steps
