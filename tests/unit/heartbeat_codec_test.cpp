// The heartbeat message codec: a round trip, defaults, and every refusal naming its field.
#include "heartbeat_codec.h"
#include "vm_lists.h"

#include <nodeha/ids.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>

namespace nodeha::heartbeat {
namespace {

using ::testing::HasSubstr;

Heartbeat full() {
  Heartbeat hb;
  hb.node = "node-1";
  hb.seq = 42;
  hb.boot_id = "6f1c2d7e-boot";
  hb.sent_at = 1700000000123;
  hb.interval_ms = 15000;
  hb.capacity = {32, 65536, 900};
  hb.use = {4, 8192, 80, 2};
  hb.addresses = {{"management", "10.0.0.5"}, {"business", "192.168.10.5"}, {"storage", "172.16.0.5"}};
  hb.vms = {{"0b7e0000-0000-4000-8000-000000000001", "web-1", "running"},
            {"0b7e0000-0000-4000-8000-000000000002", "db-1", "shutoff"}};
  hb.checks = {{"netcheck", false, "eth1 target 10.0.0.1 unreachable"}, {"disk", true, ""}};
  return hb;
}

// Decodes text that must be refused and returns the message.
std::string refusal(const std::string& text) {
  auto r = decode_heartbeat(text);
  EXPECT_FALSE(r.is_ok()) << "accepted: " << text;
  EXPECT_EQ(r.status().code(), NODEHA_ERR_INVALID);
  return r.status().message();
}

const char* kMinimal = R"({"node":"n1","seq":1,"boot_id":"b1","interval_ms":1000)";

std::string minimal_with(const std::string& extra) { return std::string(kMinimal) + "," + extra + "}"; }

TEST(HeartbeatCodec, RoundTripKeepsEveryField) {
  auto hb = full();
  auto decoded = decode_heartbeat(encode_heartbeat(hb));
  ASSERT_TRUE(decoded.is_ok()) << decoded.status().message();
  EXPECT_EQ(decoded.value(), hb);
}

TEST(HeartbeatCodec, OptionalFieldsDefault) {
  auto r = decode_heartbeat(std::string(kMinimal) + "}");
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  const auto& hb = r.value();
  EXPECT_EQ(hb.node, "n1");
  EXPECT_EQ(hb.seq, 1u);
  EXPECT_EQ(hb.boot_id, "b1");
  EXPECT_EQ(hb.interval_ms, 1000);
  EXPECT_EQ(hb.sent_at, 0);
  EXPECT_EQ(hb.capacity, Capacity{});
  EXPECT_TRUE(hb.addresses.empty());
  EXPECT_TRUE(hb.vms.empty());
  EXPECT_TRUE(hb.checks.empty());
}

TEST(HeartbeatCodec, CheckDetailIsOptional) {
  auto r = decode_heartbeat(minimal_with(R"("checks":[{"name":"disk","ok":true}])"));
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  ASSERT_EQ(r.value().checks.size(), 1u);
  EXPECT_EQ(r.value().checks[0], (Check{"disk", true, ""}));
}

TEST(HeartbeatCodec, MalformedJson) {
  EXPECT_THAT(refusal(R"({"node":"n1",)"), HasSubstr("heartbeat: malformed JSON"));
  EXPECT_THAT(refusal(""), HasSubstr("heartbeat: malformed JSON"));
}

TEST(HeartbeatCodec, NotAnObject) {
  EXPECT_EQ(refusal("[1,2]"), "heartbeat: message must be a JSON object, got array");
}

TEST(HeartbeatCodec, MissingRequiredFieldIsNamed) {
  EXPECT_EQ(refusal(R"({"seq":1,"boot_id":"b","interval_ms":1000})"), "heartbeat: missing field \"node\"");
  EXPECT_EQ(refusal(R"({"node":"n","boot_id":"b","interval_ms":1000})"), "heartbeat: missing field \"seq\"");
  EXPECT_EQ(refusal(R"({"node":"n","seq":1,"interval_ms":1000})"), "heartbeat: missing field \"boot_id\"");
  EXPECT_EQ(refusal(R"({"node":"n","seq":1,"boot_id":"b"})"), "heartbeat: missing field \"interval_ms\"");
  EXPECT_EQ(refusal(minimal_with(R"("checks":[{"ok":true}])")), "heartbeat: missing field \"checks[0].name\"");
  EXPECT_EQ(refusal(minimal_with(R"("vms":[{"name":"x"}])")), "heartbeat: missing field \"vms[0].uuid\"");
}

TEST(HeartbeatCodec, WrongTypeIsNamed) {
  EXPECT_EQ(refusal(R"({"node":7,"seq":1,"boot_id":"b","interval_ms":1000})"),
            "heartbeat: field \"node\" must be a string, got number");
  EXPECT_EQ(refusal(R"({"node":"n","seq":"1","boot_id":"b","interval_ms":1000})"),
            "heartbeat: field \"seq\" must be an unsigned integer, got string");
  EXPECT_EQ(refusal(R"({"node":"n","seq":1.5,"boot_id":"b","interval_ms":1000})"),
            "heartbeat: field \"seq\" must be an unsigned integer, got number");
  EXPECT_EQ(refusal(R"({"node":"n","seq":-1,"boot_id":"b","interval_ms":1000})"),
            "heartbeat: field \"seq\" must not be negative");
  EXPECT_EQ(refusal(R"({"node":"n","seq":1,"boot_id":"b","interval_ms":"15s"})"),
            "heartbeat: field \"interval_ms\" must be an integer, got string");
  EXPECT_EQ(refusal(minimal_with(R"("checks":[{"name":"disk","ok":"yes"}])")),
            "heartbeat: field \"checks[0].ok\" must be a boolean, got string");
  EXPECT_EQ(refusal(minimal_with(R"("checks":{"name":"disk"})")),
            "heartbeat: field \"checks\" must be an array, got object");
  EXPECT_EQ(refusal(minimal_with(R"("capacity":[])")), "heartbeat: field \"capacity\" must be an object, got array");
  EXPECT_EQ(refusal(minimal_with(R"("capacity":{"vcpus":-4})")),
            "heartbeat: field \"capacity.vcpus\" must not be negative");
  EXPECT_EQ(refusal(minimal_with(R"("capacity":{"vcpus":4294967296})")),
            "heartbeat: field \"capacity.vcpus\" is out of range");
  EXPECT_EQ(refusal(minimal_with(R"("addresses":{"business":null})")),
            "heartbeat: field \"addresses.business\" must be a string, got null");
  EXPECT_EQ(refusal(minimal_with(R"("sent_at":18446744073709551615)")),
            "heartbeat: field \"sent_at\" is out of range");
}

TEST(HeartbeatCodec, UnknownFieldIsNamed) {
  EXPECT_EQ(refusal(minimal_with(R"("hostname":"x")")), "heartbeat: unknown field \"hostname\"");
  EXPECT_EQ(refusal(minimal_with(R"("use":{"gpus":1})")), "heartbeat: unknown field \"use.gpus\"");
  EXPECT_EQ(refusal(minimal_with(R"("vms":[{"uuid":"u","cpu":2}])")), "heartbeat: unknown field \"vms[0].cpu\"");
  EXPECT_EQ(refusal(minimal_with(R"("checks":[{"name":"d","ok":true,"why":""}])")),
            "heartbeat: unknown field \"checks[0].why\"");
}

TEST(HeartbeatCodec, BadValuesAreRefused) {
  EXPECT_THAT(refusal(R"({"node":"","seq":1,"boot_id":"b","interval_ms":1000})"),
              HasSubstr("field \"node\": \"\" is not a node id: 1-63 letters"));
  EXPECT_THAT(refusal(R"({"node":"a.b","seq":1,"boot_id":"b","interval_ms":1000})"),
              HasSubstr("field \"node\": \"a.b\" is not a node id"));
  EXPECT_EQ(refusal(R"({"node":"n","seq":1,"boot_id":"","interval_ms":1000})"),
            "heartbeat: field \"boot_id\" must not be empty");
  EXPECT_EQ(refusal(R"({"node":"n","seq":1,"boot_id":"b","interval_ms":0})"),
            "heartbeat: field \"interval_ms\" must be positive");
  EXPECT_EQ(refusal(R"({"node":"n","seq":1,"boot_id":"b","interval_ms":-5})"),
            "heartbeat: field \"interval_ms\" must be positive");
  EXPECT_EQ(refusal(minimal_with(R"("checks":[{"name":"","ok":true}])")),
            "heartbeat: field \"checks[0].name\" must not be empty");
}

TEST(HeartbeatCodec, EncodeSurvivesInvalidUtf8) {
  auto hb = full();
  hb.vms[0].name = "bad\xff name";
  auto text = encode_heartbeat(hb);
  auto r = decode_heartbeat(text);
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_NE(r.value().vms[0].name, hb.vms[0].name);  // the bad byte was replaced
  EXPECT_EQ(r.value().node, "node-1");
}

TEST(HeartbeatCodec, CheckMessagesAsChecksPublishThem) {
  auto m = decode_check_message(
      R"({"node":"n1","name":"netcheck","ok":false,"detail":"biz0 link is down","changed":true,"items":[],"time":1900})");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->node, "n1");
  EXPECT_EQ(m->check, (Check{"netcheck", false, "biz0 link is down"}));
  EXPECT_EQ(m->check.at, 1900);
  auto bare = decode_check_message(R"({"name":"disk","ok":true})");
  ASSERT_TRUE(bare);
  EXPECT_EQ(bare->node, "");
  EXPECT_EQ(bare->check.at, 0);
  EXPECT_FALSE(decode_check_message(R"({"node":"n1","name":"disk"})"));
  EXPECT_FALSE(decode_check_message(R"({"node":"n1","name":7,"ok":true})"));
  EXPECT_FALSE(decode_check_message("not json"));
}

TEST(HeartbeatCodec, BadIdsAreRefused) {
  std::string hb5000 = R"({"node":")" + std::string(5000, 'x') + R"(","seq":1,"boot_id":"b","interval_ms":1000})";
  auto long_node = refusal(hb5000);
  EXPECT_THAT(long_node, HasSubstr("is not a node id"));
  EXPECT_LT(long_node.size(), 300u) << "the bad id is echoed cut";
  EXPECT_THAT(refusal(R"({"node":"-n","seq":1,"boot_id":"b","interval_ms":1000})"), HasSubstr("is not a node id"));
  EXPECT_THAT(refusal(minimal_with(R"("vms":[{"uuid":"web-1"}])")),
              HasSubstr("field \"vms[0].uuid\": \"web-1\" is not a VM uuid"));
  EXPECT_THAT(refusal(minimal_with(R"("vms":[{"uuid":"{0b7e0000-0000-4000-8000-000000000001}"}])")),
              HasSubstr("is not a VM uuid"));
  // Upper case is taken and kept as libvirt reports it: lower case.
  auto r = decode_heartbeat(minimal_with(R"("vms":[{"uuid":"0B7E0000-0000-4000-8000-00000000000A"}])"));
  ASSERT_TRUE(r) << r.status().message();
  EXPECT_EQ(r->vms[0].uuid, "0b7e0000-0000-4000-8000-00000000000a");
}

TEST(HeartbeatCodec, OversizeIsRefusedNotCut) {
  EXPECT_THAT(refusal(minimal_with(R"("vms":[{"uuid":"0b7e0000-0000-4000-8000-000000000001","name":")" +
                                   std::string(kMaxNameLength + 1, 'n') + "\"}]")),
              HasSubstr("field \"vms[0].name\" is 257 bytes; the limit is 256"));
  EXPECT_THAT(refusal(minimal_with(R"("checks":[{"name":"c","ok":true,"detail":")" + std::string(kMaxDetailLength + 1, 'd') +
                                   "\"}]")),
              HasSubstr("the limit is 1024"));
  EXPECT_THAT(refusal(std::string(kMaxHeartbeatBytes + 1, ' ')), HasSubstr("the limit is"));
  // A network's name goes into the node record: bounded like any name, and so is their number.
  EXPECT_THAT(refusal(minimal_with(R"("addresses":{")" + std::string(kMaxNameLength + 1, 'a') + R"(":"10.0.0.1"})")),
              HasSubstr("a name in field \"addresses\" must be 1 to 256 bytes, got 257"));
  EXPECT_THAT(refusal(minimal_with(R"("addresses":{"":"10.0.0.1"})")), HasSubstr("must be 1 to 256 bytes, got 0"));
  std::string many;
  for (int i = 0; i < 65; ++i) many += (i ? "," : "") + ("\"net" + std::to_string(i) + "\":\"10.0.0.1\"");
  EXPECT_THAT(refusal(minimal_with("\"addresses\":{" + many + "}")), HasSubstr("more than 64 networks"));
  many = "\"m\":\"10.0.0.1\"";
  for (int i = 0; i < 70; ++i) many += ",\"m\":\"10.0.0.2\"";  // one name repeated is one network
  EXPECT_TRUE(decode_heartbeat(minimal_with("\"addresses\":{" + many + "}")));
}

// The bound is sized from a measured heartbeat: 10,000 VMs with 16-character names fit with margin.
TEST(HeartbeatCodec, TenThousandVmsFitTheBound) {
  auto hb = full();
  hb.vms.clear();
  for (int i = 0; i < 10000; ++i) {
    char uuid[37];
    std::snprintf(uuid, sizeof uuid, "0b7e0000-0000-4000-8000-%012d", i);
    hb.vms.push_back({uuid, "customer-vm-" + std::to_string(10000 + i), "running"});
  }
  auto text = encode_heartbeat(hb);
  std::printf("heartbeat of 10,000 VMs: %zu bytes (%zu per VM)\n", text.size(), text.size() / 10000);
  EXPECT_LT(text.size() * 2, kMaxHeartbeatBytes);
  auto r = decode_heartbeat(text);
  ASSERT_TRUE(r) << r.status().message();
  EXPECT_EQ(r->vms.size(), 10000u);
}

TEST(HeartbeatCodec, CheckMessagesRefuseBadIdsAndOversize) {
  auto bad_node = decode_check_message(R"({"node":"n.1","name":"netcheck","ok":true})");
  ASSERT_FALSE(bad_node);
  EXPECT_EQ(bad_node.status().code(), NODEHA_ERR_INVALID);
  EXPECT_THAT(bad_node.status().message(), HasSubstr("check verdict: field \"node\": \"n.1\" is not a node id"));
  auto big = decode_check_message(R"({"name":"netcheck","ok":true,"detail":")" + std::string(kMaxCheckBytes, 'd') + "\"}");
  ASSERT_FALSE(big);
  EXPECT_THAT(big.status().message(), HasSubstr("the limit is 4096"));
  auto long_detail = decode_check_message(R"({"name":"netcheck","ok":true,"detail":")" + std::string(kMaxDetailLength + 1, 'd') + "\"}");
  ASSERT_FALSE(long_detail);
  EXPECT_THAT(long_detail.status().message(), HasSubstr("field \"detail\" is 1025 bytes"));
  EXPECT_FALSE(decode_check_message(R"({"name":"","ok":true})"));
}

// Found by fuzz/heartbeat_fuzz.cpp: a number beyond a double is nlohmann's out_of_range, not a
// parse_error; it escaped the decoder and took the controller's handler down.
TEST(HeartbeatCodec, NumberBeyondDoubleIsRefusedNotThrown) {
  EXPECT_THAT(refusal("2e1615"), HasSubstr("malformed JSON"));
  EXPECT_THAT(refusal(R"({"node":"n1","seq":1,"boot_id":"b","interval_ms":1000,"sent_at":6e398})"),
              HasSubstr("malformed JSON"));
}

// Found by fuzz/check_fuzz.cpp: a verdict named "" went into the agent's heartbeats, which the
// controller then refused whole: one message on check.<node>.x made the node unreachable.
TEST(HeartbeatCodec, CheckMessageWithoutAUsableNameOrDetailIsRefused) {
  EXPECT_FALSE(decode_check_message(R"({"name":"","ok":false})"));
  EXPECT_FALSE(decode_check_message(R"({"name":"disk","ok":true,"detail":3})"));
  EXPECT_FALSE(decode_check_message("6e398"));
  auto m = decode_check_message(R"({"name":"disk","ok":true,"time":"soon"})");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->check.at, 0);
  Heartbeat hb = full();
  hb.checks = {m->check};
  EXPECT_TRUE(decode_heartbeat(encode_heartbeat(hb)).is_ok());
}

// Wire version 2 (heartbeat_codec.h): "v", the list's digest, and the list only when sent.
TEST(HeartbeatCodec, VersionTwoRoundTripsWithAndWithoutItsList) {
  Heartbeat hb = full();
  hb.version = 2;
  hb.vms_digest = vms_digest(hb.vms);
  auto with = decode_heartbeat(encode_heartbeat(hb));
  ASSERT_TRUE(with.is_ok()) << with.status().message();
  EXPECT_EQ(with.value(), hb);

  hb.has_vms = false;
  std::string text = encode_heartbeat(hb);
  EXPECT_EQ(text.find("\"vms\""), std::string::npos) << text;
  auto without = decode_heartbeat(text);
  ASSERT_TRUE(without.is_ok()) << without.status().message();
  EXPECT_FALSE(without->has_vms);
  EXPECT_TRUE(without->vms.empty());
  EXPECT_EQ(without->vms_digest, hb.vms_digest);
}

// What version 1 wrote is what it writes still, and a side pinned to version 1 refuses version 2
// as version 1 did: by its unknown fields.
TEST(HeartbeatCodec, VersionOneIsUnchangedAndRefusesVersionTwo) {
  std::string v1 = encode_heartbeat(full());
  EXPECT_EQ(v1.find("\"v\""), std::string::npos);
  EXPECT_EQ(v1.find("vms_digest"), std::string::npos);
  EXPECT_NE(v1.find("\"vms\":[{"), std::string::npos);
  auto back = decode_heartbeat(v1, 1);
  ASSERT_TRUE(back.is_ok()) << back.status().message();
  EXPECT_EQ(back->version, 1u);
  EXPECT_TRUE(back->has_vms);

  Heartbeat hb = full();
  hb.version = 2;
  hb.vms_digest = vms_digest(hb.vms);
  auto r = decode_heartbeat(encode_heartbeat(hb), 1);
  ASSERT_FALSE(r.is_ok());
  EXPECT_THAT(r.status().message(), HasSubstr("unknown field"));
}

TEST(HeartbeatCodec, VersionTwoFieldsAreChecked) {
  const std::string head = R"({"node":"n1","seq":1,"boot_id":"b1","interval_ms":1000)";
  EXPECT_THAT(refusal(head + R"(,"v":2})"), HasSubstr("missing field \"vms_digest\""));
  EXPECT_THAT(refusal(head + R"(,"v":2,"vms_digest":"XYZ"})"), HasSubstr("16 lower-case hex digits"));
  EXPECT_THAT(refusal(head + R"(,"v":3,"vms_digest":"0123456789abcdef"})"), HasSubstr("wire versions 1 to 2"));
  EXPECT_THAT(refusal(head + R"(,"v":1})"), HasSubstr("wire versions 1 to 2"));
  EXPECT_THAT(refusal(head + R"(,"v":"2","vms_digest":"0123456789abcdef"})"), HasSubstr("\"v\" must be an unsigned integer"));
  EXPECT_THAT(refusal(head + R"(,"vms_digest":"0123456789abcdef"})"), HasSubstr("needs \"v\": 2"));
  EXPECT_TRUE(decode_heartbeat(head + R"(,"v":2,"vms_digest":"0123456789abcdef"})").is_ok());
}

TEST(HeartbeatCodec, TheDigestIgnoresOrderAndSeesEveryField) {
  std::vector<VmInfo> a = full().vms, b = {a[1], a[0]};
  EXPECT_EQ(vms_digest(a), vms_digest(b));
  EXPECT_EQ(vms_digest(a).size(), 16u);
  auto c = a;
  c[0].state = "paused";
  EXPECT_NE(vms_digest(a), vms_digest(c));
  auto d = a;
  d[0].name = "web-2";
  EXPECT_NE(vms_digest(a), vms_digest(d));
  // Field boundaries count: ("ab", "c") is not ("a", "bc").
  EXPECT_NE(vms_digest({{"u", "ab", "c"}}), vms_digest({{"u", "a", "bc"}}));
  EXPECT_NE(vms_digest({}), vms_digest(a));
}

TEST(HeartbeatCodec, WireGrantsAreCheckedAsHostileInput) {
  auto g = decode_wire_grant(encode_wire_grant({2, true}));
  ASSERT_TRUE(g.is_ok()) << g.status().message();
  EXPECT_EQ(g.value(), (WireGrant{2, true}));
  EXPECT_EQ(decode_wire_grant(R"({"wire":2})")->full, false);
  for (const char* bad : {"", "[]", "{}", R"({"wire":0})", R"({"wire":-1})", R"({"wire":"2"})", R"({"wire":2,"full":1})",
                          R"({"wire":2,"x":1})", R"({"wire":100000})"}) {
    auto r = decode_wire_grant(bad);
    EXPECT_FALSE(r.is_ok()) << bad;
  }
  EXPECT_FALSE(decode_wire_grant(std::string(300, ' ')).is_ok());
}

// The controller's VM lists: a list taken whole, kept while the digest names it, and asked for
// again (take() false) when it does not.
TEST(HeartbeatVmLists, AListIsKeptWhileItsDigestStaysAndAskedForWhenItChanges) {
  VmLists lists;
  Heartbeat v1 = full();
  ASSERT_TRUE(lists.take(v1));
  EXPECT_TRUE(v1.vms.empty());  // taken
  ASSERT_NE(lists.find("node-1"), nullptr);
  EXPECT_EQ(lists.find("node-1")->size(), 2u);

  Heartbeat v2 = full();
  v2.version = 2;
  v2.vms_digest = vms_digest(v2.vms);
  v2.has_vms = false;
  EXPECT_FALSE(lists.take(v2));  // kept from version 1: no digest to compare with
  v2.has_vms = true;
  ASSERT_TRUE(lists.take(v2));
  v2.has_vms = false;
  EXPECT_TRUE(lists.take(v2));  // the digest names the list kept
  EXPECT_EQ(lists.find("node-1")->size(), 2u);

  Heartbeat changed = full();
  changed.vms.pop_back();
  changed.version = 2;
  changed.vms_digest = vms_digest(changed.vms);
  changed.has_vms = false;
  EXPECT_FALSE(lists.take(changed));               // a list sent and lost
  EXPECT_EQ(lists.find("node-1")->size(), 2u);     // the old one stays until the whole comes
  EXPECT_EQ(lists.find("node-2"), nullptr);
}

}  // namespace
}  // namespace nodeha::heartbeat
