// The one parse function per kind of id (nodeha/ids.hpp), and the command helpers over them.
#include "command.h"

#include <nodeha/ids.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace nodeha {
namespace {

using ::testing::HasSubstr;

TEST(NodeId, TakesDnsLabels) {
  for (std::string ok : std::vector<std::string>{"a", "7", "node-1", "Node_A", "a-b_c9", std::string(63, 'x'), "a" + std::string(61, '-') + "b"}) {
    auto id = NodeId::parse(ok);
    ASSERT_TRUE(id) << ok << ": " << id.status().message();
    EXPECT_EQ(id->str(), ok);  // kept as written: case matters in subjects and keys
  }
}

TEST(NodeId, RefusesAnythingElseWithTheRule) {
  for (std::string bad : std::vector<std::string>{"", std::string(64, 'x'), "-a", "a-", "_a", "a_", "a.b", "a*", "a>", ">", "*", "a b", " a",
                          "a\t", "nœud", "a/b", "a:b", std::string("a\0b", 3)}) {
    auto id = NodeId::parse(bad);
    ASSERT_FALSE(id) << bad;
    EXPECT_EQ(id.status().code(), NODEHA_ERR_INVALID);
    EXPECT_THAT(id.status().message(),
                HasSubstr("is not a node id: 1-63 letters, digits, '-' or '_', starting and ending with a letter or digit"));
  }
}

TEST(NodeId, EchoesAtMost64BytesOfABadValue) {
  auto id = NodeId::parse(std::string(5000, 'x') + ".");
  ASSERT_FALSE(id);
  const auto& m = id.status().message();
  EXPECT_LT(m.size(), 250u) << m;
  EXPECT_THAT(m, HasSubstr("\"" + std::string(64, 'x') + "\"… (5001 bytes)"));
}

TEST(NodeId, EchoCutsOnACharacterBoundary) {
  std::string v = std::string(63, 'a') + "é" + std::string(10, 'b');  // é straddles byte 64
  EXPECT_EQ(echo_value(v), "\"" + std::string(63, 'a') + "\"… (75 bytes)");
  EXPECT_EQ(echo_value("short"), "\"short\"");
}

TEST(VmUuid, TakesCanonicalUuidsInEitherCaseAndKeepsLowerCase) {
  auto lower = VmUuid::parse("6f1c2a3b-0d4e-4f5a-9b8c-7d6e5f4a3b2c");
  ASSERT_TRUE(lower) << lower.status().message();
  EXPECT_EQ(lower->str(), "6f1c2a3b-0d4e-4f5a-9b8c-7d6e5f4a3b2c");
  auto upper = VmUuid::parse("6F1C2A3B-0D4E-4F5A-9B8C-7D6E5F4A3B2C");
  ASSERT_TRUE(upper);
  EXPECT_EQ(upper.value(), lower.value());
}

TEST(VmUuid, RefusesOtherForms) {
  for (std::string bad : std::vector<std::string>{"", "vm-1", "{6f1c2a3b-0d4e-4f5a-9b8c-7d6e5f4a3b2c}", "6f1c2a3b0d4e4f5a9b8c7d6e5f4a3b2c",
                          "6f1c2a3b-0d4e-4f5a-9b8c-7d6e5f4a3b2", "6f1c2a3b-0d4e-4f5a-9b8c-7d6e5f4a3b2cc",
                          "6f1c2a3-b0d4e-4f5a-9b8c-7d6e5f4a3b2c", "6f1c2a3b-0d4e4-f5a-9b8c-7d6e5f4a3b2c",
                          "6f1c2a3g-0d4e-4f5a-9b8c-7d6e5f4a3b2c", "6f1c2a3b-0d4e-4f5a-9b8c-7d6e5f4a3b2*",
                          "6f1c2a3b-0d4e-4f5a-9b8c.7d6e5f4a3b2c", " 6f1c2a3b-0d4e-4f5a-9b8c-7d6e5f4a3b2", std::string(5000, 'a')}) {
    auto id = VmUuid::parse(bad);
    ASSERT_FALSE(id) << bad;
    EXPECT_EQ(id.status().code(), NODEHA_ERR_INVALID);
    EXPECT_THAT(id.status().message(), HasSubstr("is not a VM uuid: a uuid of 36 characters, 8-4-4-4-12 hex digits"));
    EXPECT_LT(id.status().message().size(), 200u);
  }
}

TEST(TaskId, TakesSixteenHexDigitsAsMade) {
  auto id = TaskId::parse("7f3c000000000001");
  ASSERT_TRUE(id);
  EXPECT_EQ(id->str(), "7f3c000000000001");
  EXPECT_EQ(TaskId::parse("7F3C00000000ABCD")->str(), "7f3c00000000abcd");
  for (std::string bad : {"", "t1", "7f3c00000000000", "7f3c0000000000011", "7f3c00000000000g", "7f3c.00000000001",
                          "7f3c-00000000001", "7f3c 00000000001", "7f3c*00000000001", "7f3c>00000000001"}) {
    auto t = TaskId::parse(bad);
    ASSERT_FALSE(t) << bad;
    EXPECT_THAT(t.status().message(), HasSubstr("is not a task id: 16 hex digits"));
  }
}

TEST(CommandIds, ABadIdIsBadValueNamingTheField) {
  std::optional<NodeId> node;
  auto e = command::parse_id("node", nlohmann::json(std::string(5000, 'x')), &node);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code, command::kBadValue);
  EXPECT_THAT(e->message, HasSubstr("field \"node\": \"xxxx"));
  EXPECT_LT(e->message.size(), 250u);
  EXPECT_FALSE(node);
  EXPECT_FALSE(command::parse_id("node", nlohmann::json("node-1"), &node));
  EXPECT_EQ(node->str(), "node-1");
  EXPECT_EQ(command::parse_id("node", nlohmann::json(7), &node)->code, command::kBadValue);
}

TEST(CommandIds, ArraysNameTheBadElement) {
  std::vector<VmUuid> vms;
  auto good = nlohmann::json::array({"6f1c2a3b-0d4e-4f5a-9b8c-7d6e5f4a3b2c", "00000000-0000-0000-0000-000000000001"});
  EXPECT_FALSE(command::parse_ids("vms", good, &vms));
  EXPECT_EQ(vms.size(), 2u);
  auto e = command::parse_ids("vms", nlohmann::json::array({good[0], "web-1"}), &vms);
  ASSERT_TRUE(e);
  EXPECT_THAT(e->message, HasSubstr("field \"vms[1]\": \"web-1\" is not a VM uuid"));
  EXPECT_EQ(command::parse_ids("vms", good, &vms, 1)->code, command::kBadValue);  // over the count limit
}

TEST(CommandDecode, RefusesARequestOverItsLimitBeforeParsing) {
  nlohmann::json req;
  std::string big = R"({"node":")" + std::string(kMaxCommandBytes, 'x') + R"("})";
  auto e = command::decode(big, {{"node", command::Type::String, true}}, &req);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code, command::kBadValue);
  EXPECT_THAT(e->message, HasSubstr("the limit is 65536"));
  EXPECT_FALSE(command::decode(big, {{"node", command::Type::String, true}}, &req, kMaxDomainCommandBytes));
  // An unknown field of 5,000 characters is named, cut.
  auto unknown = command::decode("{\"" + std::string(5000, 'k') + "\":1}", {}, &req);
  ASSERT_TRUE(unknown);
  EXPECT_LT(unknown->message.size(), 250u);
}

}  // namespace
}  // namespace nodeha
