// The business-network check's pure parts: target parsing and debouncing.
#include "verdict.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace nodeha::netcheck {
namespace {

using ::testing::HasSubstr;

TEST(Target, ParsesEveryForm) {
  auto icmp = parse_target("10.0.0.1", "eth1");
  ASSERT_TRUE(icmp.is_ok());
  EXPECT_EQ(icmp->method, Method::Icmp);
  EXPECT_EQ(icmp->interface, "eth1");
  EXPECT_EQ(icmp->label(), "icmp:10.0.0.1");

  auto tcp = parse_target("tcp:10.0.0.2:22@br-biz", "eth1");
  ASSERT_TRUE(tcp.is_ok());
  EXPECT_EQ(tcp->method, Method::Tcp);
  EXPECT_EQ(tcp->port, 22);
  EXPECT_EQ(tcp->interface, "br-biz");
  EXPECT_EQ(tcp->label(), "tcp:10.0.0.2:22");

  EXPECT_EQ(parse_target("icmp:192.168.1.1", "").value().address, "192.168.1.1");
}

TEST(Target, RefusesNonsenseWithReason) {
  EXPECT_THAT(parse_target("tcp:10.0.0.1", "").status().message(), HasSubstr("tcp targets need a port"));
  EXPECT_THAT(parse_target("tcp:10.0.0.1:x", "").status().message(), HasSubstr("the port is not a number"));
  EXPECT_THAT(parse_target("tcp:10.0.0.1:70000", "").status().message(), HasSubstr("between 1 and 65535"));
  EXPECT_THAT(parse_target("gateway", "").status().message(), HasSubstr("'gateway' is not an IPv4 address"));
  EXPECT_THAT(parse_target("10.0.0.1@", "").status().message(), HasSubstr("empty interface"));
}

TEST(Debounced, OneLostPacketIsNoAlarm) {
  Debounced d(3);
  EXPECT_FALSE(d.feed(false));
  EXPECT_FALSE(d.feed(false));
  EXPECT_FALSE(d.feed(true));  // streak broken
  EXPECT_FALSE(d.feed(false));
  EXPECT_FALSE(d.feed(false));
  EXPECT_TRUE(d.up());
  EXPECT_TRUE(d.feed(false));  // third in a row
  EXPECT_FALSE(d.up());
  EXPECT_FALSE(d.feed(false));  // no repeated change
  EXPECT_FALSE(d.feed(true));
  EXPECT_FALSE(d.feed(true));
  EXPECT_TRUE(d.feed(true));  // as many successes to turn back
  EXPECT_TRUE(d.up());
}

TEST(Debounced, ThresholdOneFollowsAtOnce) {
  Debounced d(1);
  EXPECT_TRUE(d.feed(false));
  EXPECT_TRUE(d.feed(true));
}

TEST(Summary, NamesWhatIsDown) {
  auto ok = summarize({{"eth1", "", true, ""}, {"eth1", "icmp:10.0.0.1", true, ""}});
  EXPECT_TRUE(ok.ok);
  auto down = summarize({{"eth1", "", false, "is down"}, {"eth1", "tcp:10.0.0.1:22", false, "connect: Connection refused"}});
  EXPECT_FALSE(down.ok);
  EXPECT_EQ(down.detail, "eth1 link is down; tcp:10.0.0.1:22 via eth1 connect: Connection refused");
}

}  // namespace
}  // namespace nodeha::netcheck
