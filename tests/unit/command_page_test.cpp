// Lists in pages (command.h): what a page takes, where it is cut, and which "after" is refused.
#include "command.h"

#include <gtest/gtest.h>

namespace nodeha::command {
namespace {

using json = nlohmann::json;

json item(const std::string& key, size_t bytes) { return json{{"key", key}, {"pad", std::string(bytes, 'x')}}; }

TEST(CommandPage, TakesItemsUntilTheLimitThenNamesTheLastKeyItTook) {
  Page page(1000);
  EXPECT_TRUE(page.add("a", item("a", 400)));
  EXPECT_TRUE(page.add("b", item("b", 400)));
  EXPECT_FALSE(page.add("c", item("c", 400)));  // 1,200 bytes would be over
  EXPECT_FALSE(page.add("d", item("d", 1)));    // cut: nothing more, not even a small one
  json result = json::object();
  std::move(page).put(&result, "things");
  ASSERT_EQ(result["things"].size(), 2u) << result;
  EXPECT_EQ(result["things"][1]["key"], "b");
  EXPECT_EQ(result["next"], "b");
  EXPECT_LE(result.dump().size(), 1000u + 64);
}

TEST(CommandPage, AListThatFitsNamesNoNext) {
  Page page(1000);
  for (const char* k : {"a", "b", "c"}) EXPECT_TRUE(page.add(k, item(k, 10)));
  json result = json::object();
  std::move(page).put(&result, "things");
  EXPECT_EQ(result["things"].size(), 3u);
  EXPECT_FALSE(result.contains("next")) << result;
}

TEST(CommandPage, TheFirstItemIsTakenWhateverItsSizeSoEveryPageMovesOn) {
  Page page(100);
  EXPECT_TRUE(page.add("big", item("big", 5000)));
  EXPECT_FALSE(page.add("next", item("next", 1)));
  json result = json::object();
  std::move(page).put(&result, "things");
  EXPECT_EQ(result["things"].size(), 1u);
  EXPECT_EQ(result["next"], "big");
}

TEST(CommandPage, AnEmptyPageIsAnEmptyList) {
  json result = json::object();
  Page().put(&result, "things");
  EXPECT_EQ(result["things"], json::array());
  EXPECT_FALSE(result.contains("next"));
}

TEST(CommandPage, AfterIsAStringOfAtMost256Bytes) {
  std::string after = "kept";
  EXPECT_FALSE(page_after(json::object(), &after));
  EXPECT_EQ(after, "");  // absent: from the first key
  EXPECT_FALSE(page_after(json{{"after", std::string(kMaxAfterBytes, 'k')}}, &after));
  EXPECT_EQ(after.size(), kMaxAfterBytes);
  auto long_one = page_after(json{{"after", std::string(kMaxAfterBytes + 1, 'k')}}, &after);
  ASSERT_TRUE(long_one);
  EXPECT_EQ(long_one->code, kBadValue);
  EXPECT_EQ(after, "");
  auto number = page_after(json{{"after", 5}}, &after);
  ASSERT_TRUE(number);
  EXPECT_EQ(number->code, kBadType);
}

}  // namespace
}  // namespace nodeha::command
