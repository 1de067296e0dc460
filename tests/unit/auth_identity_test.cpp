// The pure parts of the bus's security: nkeys in NATS' text form, the credential file, identity
// names, and who gets which subjects (the server enforcing them: integration/auth_test.cpp).
#include "credential.h"
#include "nkey.h"
#include "permissions.h"

#include <nats/nats.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>

namespace nodeha::auth {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(Nkey, AGeneratedSeedSignsAndNamesItsPublicKey) {
  auto key = generate_user_nkey();
  ASSERT_TRUE(key) << key.status().message();
  EXPECT_EQ(key.value().public_key.size(), 56u);
  EXPECT_EQ(key.value().public_key[0], 'U');
  EXPECT_EQ(key.value().seed.size(), 58u);
  EXPECT_EQ(key.value().seed.substr(0, 2), "SU");
  auto derived = public_key_of_seed(key.value().seed);
  ASSERT_TRUE(derived) << derived.status().message();
  EXPECT_EQ(derived.value(), key.value().public_key);
  unsigned char* signature = nullptr;
  int length = 0;
  ASSERT_EQ(nats_Open(-1), NATS_OK);
  ASSERT_EQ(nats_Sign(key.value().seed.c_str(), "nonce", &signature, &length), NATS_OK);  // cnats reads our seed
  EXPECT_EQ(length, 64);
  std::free(signature);
  EXPECT_NE(generate_user_nkey().value().seed, key.value().seed);
}

TEST(Nkey, ADamagedSeedIsRefused) {
  std::string seed = generate_user_nkey().value().seed;
  seed[20] = seed[20] == 'A' ? 'B' : 'A';
  auto r = public_key_of_seed(seed);
  EXPECT_EQ(r.status().code(), NODEHA_ERR_INVALID);
  EXPECT_THAT(r.status().message(), HasSubstr("checksum"));
  EXPECT_EQ(public_key_of_seed("SUshort").status().code(), NODEHA_ERR_INVALID);
}

TEST(Credential, RoundTripsAndNamesTheLineAtFault) {
  Credential c{"node-1", "agent", "_INBOX_node-1", generate_user_nkey().value().seed};
  auto back = parse_credential(format_credential(c));
  ASSERT_TRUE(back) << back.status().message();
  EXPECT_EQ(back.value().identity, "node-1");
  EXPECT_EQ(back.value().inbox_prefix, "_INBOX_node-1");
  EXPECT_EQ(back.value().seed, c.seed);
  EXPECT_THAT(parse_credential("identity = \"a\"\npassword = \"x\"\n").status().message(), HasSubstr("line 2"));
  EXPECT_THAT(parse_credential("identity = \"a\"\n").status().message(), HasSubstr("no 'role' line"));
}

TEST(IdentityName, IsADnsLabel) {
  for (const std::string& ok : std::vector<std::string>{"node-1", "a", "ctl_2", std::string(63, 'x')}) EXPECT_TRUE(check_identity_name(ok)) << ok;
  for (const std::string& bad : std::vector<std::string>{"", "-a", "a-", "a.b", "a*", "a>", "a b", std::string(64, 'x')})
    EXPECT_EQ(check_identity_name(bad).code(), NODEHA_ERR_INVALID) << bad;
}

bool has(const std::vector<std::string>& v, const std::string& s) { return std::find(v.begin(), v.end(), s) != v.end(); }

TEST(Permissions, EachRoleGetsOnlyItsSubjects) {
  auto agent = permissions_for({"node-1", Role::kAgent}, "nodeha");
  EXPECT_TRUE(has(agent.publish, "nodeha.hb.node-1"));
  EXPECT_THAT(agent.publish, Not(Contains(HasSubstr("cmd."))));
  EXPECT_THAT(agent.publish, Not(Contains(HasSubstr("KV_tasks"))));
  EXPECT_THAT(agent.publish, Not(Contains(HasSubstr("$KV.tasks"))));
  EXPECT_THAT(agent.publish, Not(Contains(HasSubstr("$KV.nodes"))));
  EXPECT_EQ(agent.subscribe.front(), "_INBOX_node-1.>");
  EXPECT_TRUE(agent.allow_responses);

  auto controller = permissions_for({"ctl-1", Role::kController}, "nodeha");
  EXPECT_TRUE(has(controller.publish, "nodeha.agent.>"));
  EXPECT_TRUE(has(controller.publish, "$KV.tasks.>"));

  auto admin = permissions_for({"alice", Role::kAdmin}, "nodeha");
  EXPECT_TRUE(has(admin.publish, "nodeha.cmd.>"));
  EXPECT_THAT(admin.publish, Not(Contains(HasSubstr("agent."))));
  EXPECT_THAT(admin.publish, Not(Contains(HasSubstr("$KV."))));
  EXPECT_FALSE(admin.allow_responses);

  auto viewer = permissions_for({"bob", Role::kViewer}, "nodeha");
  EXPECT_TRUE(has(viewer.publish, "nodeha.cmd.node.list"));
  EXPECT_THAT(viewer.publish, Not(Contains(HasSubstr("drain"))));
  EXPECT_THAT(viewer.publish, Not(Contains("nodeha.cmd.>")));
  // History: one message at a time from the events stream, no consumer (docs/security.md).
  auto site_admin = permissions_for({"alice", Role::kAdmin}, "site.a");
  EXPECT_TRUE(has(viewer.publish, "$JS.API.STREAM.MSG.GET.NODEHA_EVENTS"));
  EXPECT_TRUE(has(site_admin.publish, "$JS.API.STREAM.MSG.GET.SITE_A_EVENTS"));  // named as the host names it
  for (const auto& reader : {viewer, admin, site_admin})
    for (const auto& subject : reader.publish)
      EXPECT_FALSE(subject.starts_with("$JS.API.CONSUMER.") && subject.find("_EVENTS") != std::string::npos) << subject;
  EXPECT_THAT(agent.publish, Not(Contains(HasSubstr("_EVENTS"))));
}

TEST(ServerConfig, AWebsocketListenerHasTheServersCertificateAndOnlyTheGivenOrigins) {
  std::vector<UserEntry> users = {{{"bob", Role::kViewer}, "UABC"}};
  ServerTls tls{"/etc/nats/server-cert.pem", "/etc/nats/server-key.pem"};
  EXPECT_THAT(server_auth_config(users, "nodeha", tls), Not(HasSubstr("websocket")));
  std::string with = server_auth_config(users, "nodeha", tls, {8443, {"https://ctl.example:8480"}});
  std::string ws = with.substr(with.find("websocket {"));
  EXPECT_THAT(ws, HasSubstr("port: 8443"));
  EXPECT_THAT(ws, HasSubstr("cert_file: \"/etc/nats/server-cert.pem\""));
  EXPECT_THAT(ws, HasSubstr("\"https://ctl.example:8480\""));
  EXPECT_THAT(ws, Not(HasSubstr("no_tls")));
  EXPECT_THAT(ws, Not(HasSubstr("authorization")));  // the users above sign in there too
  EXPECT_THAT(server_auth_config(users, "nodeha", tls, {8443, {}}), Not(HasSubstr("allowed_origins")));
}

}  // namespace
}  // namespace nodeha::auth
