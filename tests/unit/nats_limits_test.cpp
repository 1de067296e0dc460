// What nats-server accepts, checked before sending (host/nats_limits): each rule on its edge.
#include "nats_limits.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace nodeha::nats_limits {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

const Limits kDefault{};

TEST(NatsLimits, PublishSubjects) {
  EXPECT_THAT(check_publish("nodeha.cmd.node.drain", "", 10, kDefault), IsEmpty());
  EXPECT_THAT(check_publish("a*b.c>", "", 0, kDefault), IsEmpty());  // '*' inside a token is a literal
  EXPECT_THAT(check_publish("a.*", "", 0, kDefault), HasSubstr("wildcard"));
  EXPECT_THAT(check_publish("a.>", "", 0, kDefault), HasSubstr("wildcard"));
  EXPECT_THAT(check_publish("a..b", "", 0, kDefault), HasSubstr("empty token"));
  EXPECT_THAT(check_publish(".a", "", 0, kDefault), HasSubstr("empty token"));
  EXPECT_THAT(check_publish("a.", "", 0, kDefault), HasSubstr("empty token"));
  EXPECT_THAT(check_publish("a\tb", "", 0, kDefault), HasSubstr("byte 0x09 at offset 1"));
  EXPECT_THAT(check_publish(std::string("a\0b", 3), "", 0, kDefault), HasSubstr("byte 0x00"));
  EXPECT_THAT(check_publish("a\x7f", "", 0, kDefault), HasSubstr("control character"));
  EXPECT_THAT(check_publish("", "", 0, kDefault), HasSubstr("subject is empty"));
  EXPECT_THAT(check_publish("a", "r.*", 0, kDefault), HasSubstr("reply subject"));
}

TEST(NatsLimits, LineLengthKeepsRoomForTheProtocol) {
  size_t room = kDefault.max_control_line - kLineOverhead;
  EXPECT_THAT(check_publish(std::string(room, 'a'), "", 0, kDefault), IsEmpty());
  auto why = check_publish(std::string(room + 1, 'a'), "", 0, kDefault);
  EXPECT_THAT(why, HasSubstr("at most 3968 fit nats-server's max_control_line of 4096"));
  EXPECT_THAT(why, HasSubstr("(3969 bytes)"));  // the name is shown shortened, with its length
  EXPECT_LT(why.size(), 300u);
  EXPECT_THAT(check_publish(std::string(room - 10, 'a'), std::string(11, 'r'), 0, kDefault), HasSubstr("too long"));
  EXPECT_THAT(check_subscribe(std::string(room - 10, 'a'), std::string(11, 'q'), kDefault), HasSubstr("too long"));
  Limits small{.max_control_line = 512};
  EXPECT_THAT(check_publish(std::string(1000, 'a'), "", 0, small), HasSubstr("at most 384 fit"));
}

TEST(NatsLimits, Payload) {
  Limits l{.max_payload = 100};
  EXPECT_THAT(check_publish("a", "", 100, l), IsEmpty());
  EXPECT_THAT(check_publish("a", "", 101, l), HasSubstr("over the server's max_payload of 100"));
  EXPECT_THAT(check_kv("b", "k", false, 1000 - kKvHeaderRoom, Limits{.max_payload = 1000}), IsEmpty());
  EXPECT_THAT(check_kv("b", "k", false, 1001 - kKvHeaderRoom, Limits{.max_payload = 1000}), HasSubstr("headers"));
}

TEST(NatsLimits, Subscriptions) {
  EXPECT_THAT(check_subscribe("a.*.c", "", kDefault), IsEmpty());
  EXPECT_THAT(check_subscribe("a.>", "workers", kDefault), IsEmpty());
  EXPECT_THAT(check_subscribe(">", "", kDefault), IsEmpty());
  EXPECT_THAT(check_subscribe("a.>.c", "", kDefault), HasSubstr("'>' may only be the last token"));
  EXPECT_THAT(check_subscribe("a", "q q", kDefault), HasSubstr("queue group"));
  EXPECT_THAT(check_subscribe("a", "q\n", kDefault), HasSubstr("queue group"));
}

TEST(NatsLimits, KvBucketsAndKeys) {
  EXPECT_THAT(check_kv("nodes", "node-1", false, 0, kDefault), IsEmpty());
  EXPECT_THAT(check_kv("vms", "a/b_c=d.e-F9", false, 0, kDefault), IsEmpty());
  EXPECT_THAT(check_kv("nodes", "a b", false, 0, kDefault), HasSubstr("[-/_=.a-zA-Z0-9]"));
  EXPECT_THAT(check_kv("nodes", "a.", false, 0, kDefault), HasSubstr("empty token"));
  EXPECT_THAT(check_kv("nodes", "a*", false, 0, kDefault), HasSubstr("byte 0x2a"));
  EXPECT_THAT(check_kv("nodes", "", false, 0, kDefault), HasSubstr("kv key is empty"));
  EXPECT_THAT(check_kv("no.dots", "k", false, 0, kDefault), HasSubstr("bucket name is made of [-_a-zA-Z0-9]"));
  EXPECT_THAT(check_bucket(""), HasSubstr("empty"));
  // The key: 5,000 characters.
  EXPECT_THAT(check_kv("nodes", std::string(5000, 'x'), false, 0, kDefault), HasSubstr("max_control_line"));
  // The JetStream subject names the bucket twice: a long bucket leaves less room for the key.
  std::string bucket(1000, 'b');
  size_t fits = kDefault.max_control_line - kLineOverhead - 51 - 2 * bucket.size() - 5;
  EXPECT_THAT(check_kv(bucket, std::string(fits, 'k'), false, 0, kDefault), IsEmpty());
  EXPECT_THAT(check_kv(bucket, std::string(fits + 1, 'k'), false, 0, kDefault), HasSubstr("too long"));
}

TEST(NatsLimits, KvWatchPatterns) {
  EXPECT_THAT(check_kv("vms", ">", true, 0, kDefault), IsEmpty());
  EXPECT_THAT(check_kv("vms", "node-1.*", true, 0, kDefault), IsEmpty());
  EXPECT_THAT(check_kv("vms", "a.>.b", true, 0, kDefault), HasSubstr("last token"));
  EXPECT_THAT(check_kv("vms", "a*", true, 0, kDefault), HasSubstr("whole tokens"));
  EXPECT_THAT(check_kv("vms", ">", false, 0, kDefault), HasSubstr("byte 0x3e"));
}

}  // namespace
}  // namespace nodeha::nats_limits
