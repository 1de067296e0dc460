// Config parsing and every refusal: messages must name the file, the line and the key.
#include "config.h"
#include "loader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace nodeha::host {
namespace {

using ::testing::HasSubstr;

const char* kMinimal = R"([host]
role = "agent"
node_id = "node-a"
)";

Result<ConfigDocument> parse(const std::string& text, std::vector<std::string> overrides = {}) {
  return ConfigDocument::parse(text, "/etc/nodeha/agent.toml", overrides);
}

TEST(Config, MinimalGetsDefaults) {
  auto doc = parse(kMinimal);
  ASSERT_TRUE(doc.is_ok()) << doc.status().message();
  const auto& h = doc.value().host();
  EXPECT_EQ(h.node_id, "node-a");
  EXPECT_EQ(h.role, NODEHA_ROLE_AGENT);
  EXPECT_EQ(h.nats.servers, std::vector<std::string>{"nats://127.0.0.1:4222"});
  EXPECT_EQ(h.nats.prefix, "nodeha");
  EXPECT_EQ(h.nats.reconnect_wait_ms, 1000);
  EXPECT_EQ(h.nats.max_control_line, 4096);
  EXPECT_EQ(h.metrics_listen, "127.0.0.1:9464");
  EXPECT_EQ(h.libvirt_uri, "qemu:///system");
  EXPECT_EQ(h.local_socket, "/var/lib/nodeha/local.sock");
  EXPECT_TRUE(h.plugins.empty());
}

TEST(Config, SyntaxErrorNamesFileLineAndColumn) {
  auto doc = parse("[host]\nrole = \"agent\"\nnode_id = = 3\n");
  ASSERT_FALSE(doc.is_ok());
  EXPECT_THAT(doc.status().message(), HasSubstr("/etc/nodeha/agent.toml:3:"));
  EXPECT_THAT(doc.status().message(), HasSubstr("TOML syntax error"));
}

TEST(Config, UnknownKeyNamesLineAndKey) {
  auto doc = parse("[host]\nrole = \"agent\"\n\n[nats]\nserverz = [\"nats://x:1\"]\n");
  ASSERT_FALSE(doc.is_ok());
  EXPECT_THAT(doc.status().message(), HasSubstr("/etc/nodeha/agent.toml:5: [nats] unknown key 'serverz'"));
  EXPECT_THAT(doc.status().message(), HasSubstr("known keys: servers"));
}

TEST(Config, MistypedKeyNamesExpectedType) {
  auto doc = parse("[host]\nrole = \"agent\"\nworkers = \"eight\"\n");
  ASSERT_FALSE(doc.is_ok());
  EXPECT_EQ(doc.status().message(), "/etc/nodeha/agent.toml:3: [host] key 'workers' must be an integer");
}

TEST(Config, BadDurationIsRefused) {
  auto doc = parse("[host]\nrole = \"agent\"\n[nats]\nreconnect_wait = \"soon\"\n");
  ASSERT_FALSE(doc.is_ok());
  EXPECT_THAT(doc.status().message(), HasSubstr(":4: [nats] key 'reconnect_wait': 'soon' is not a duration"));
}

TEST(Config, MaxControlLineIsBounded) {
  auto doc = parse("[host]\nrole = \"agent\"\n[nats]\nmax_control_line = 8192\n");
  ASSERT_TRUE(doc.is_ok()) << doc.status().message();
  EXPECT_EQ(doc.value().host().nats.max_control_line, 8192);
  auto small = parse("[host]\nrole = \"agent\"\n[nats]\nmax_control_line = 100\n");
  ASSERT_FALSE(small.is_ok());
  EXPECT_THAT(small.status().message(), HasSubstr("[nats] key 'max_control_line' must be between 256 and 1048576"));
}

TEST(Config, MissingRoleIsRefused) {
  auto doc = parse("[host]\nnode_id = \"a\"\n");
  ASSERT_FALSE(doc.is_ok());
  EXPECT_THAT(doc.status().message(), HasSubstr("[host] required key 'role' is missing"));
}

TEST(Config, BadRoleValueIsRefused) {
  auto doc = parse("[host]\nrole = \"worker\"\n");
  ASSERT_FALSE(doc.is_ok());
  EXPECT_THAT(doc.status().message(), HasSubstr(":2: [host] key 'role' must be \"agent\" or \"controller\""));
}

TEST(Config, UnknownSectionIsRefused) {
  auto doc = parse(std::string(kMinimal) + "[hots]\nx = 1\n");
  ASSERT_FALSE(doc.is_ok());
  EXPECT_THAT(doc.status().message(), HasSubstr(":4: unknown section 'hots'"));
}

TEST(Config, NodeIdMustBeSubjectSafe) {
  auto doc = parse("[host]\nrole = \"agent\"\nnode_id = \"a.b\"\n");
  ASSERT_FALSE(doc.is_ok());
  EXPECT_THAT(doc.status().message(), HasSubstr("is not a node id: 1-63 letters"));
  EXPECT_THAT(doc.status().message(), HasSubstr(":3: [host] key 'node_id'"));  // the file and line
  // A DNS label: 64 characters, or a leading '-', are refused as well.
  EXPECT_FALSE(parse("[host]\nrole = \"agent\"\nnode_id = \"" + std::string(64, 'a') + "\"\n").is_ok());
  EXPECT_FALSE(parse("[host]\nrole = \"agent\"\nnode_id = \"-a\"\n").is_ok());
  EXPECT_TRUE(parse("[host]\nrole = \"agent\"\nnode_id = \"" + std::string(63, 'a') + "\"\n").is_ok());
}

TEST(Config, OverridesSetHostKeys) {
  auto doc = parse(kMinimal, {"host.role=controller", "nats.servers=[\"nats://10.0.0.1:4222\"]", "metrics.listen=127.0.0.1:0",
                              "host.workers=3"});
  ASSERT_TRUE(doc.is_ok()) << doc.status().message();
  const auto& h = doc.value().host();
  EXPECT_EQ(h.role, NODEHA_ROLE_CONTROLLER);
  EXPECT_EQ(h.nats.servers, std::vector<std::string>{"nats://10.0.0.1:4222"});
  EXPECT_EQ(h.metrics_listen, "127.0.0.1:0");  // not TOML: taken as a plain string
  EXPECT_EQ(h.workers, 3);
}

TEST(Config, OverrideErrorsNameTheOverride) {
  auto doc = parse(kMinimal, {"host.workers=\"many\""});
  ASSERT_FALSE(doc.is_ok());
  EXPECT_THAT(doc.status().message(), HasSubstr("--set host.workers=\"many\""));
  EXPECT_THAT(doc.status().message(), HasSubstr("must be an integer"));

  auto bad = parse(kMinimal, {"workers=3"});
  ASSERT_FALSE(bad.is_ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("expected section.key=value"));

  auto missing = parse(kMinimal, {"plugin.nope.interval=\"1s\""});
  ASSERT_FALSE(missing.is_ok());
  EXPECT_THAT(missing.status().message(), HasSubstr("no [[plugin]] named 'nope'"));
}

const char* kWithPlugin = R"([host]
role = "agent"

[[plugin]]
library = "heartbeat"
interval = "2s"

[[plugin]]
name = "second"
library = "/opt/x.so"
misses = "three"
)";

std::vector<KeyDecl> heartbeat_keys() {
  return {{"interval", NODEHA_CONFIG_DURATION, "\"15s\"", "", ""},
          {"misses", NODEHA_CONFIG_INTEGER, "3", "", ""},
          {"targets", NODEHA_CONFIG_STRING_ARRAY, "[]", "", ""}};
}

TEST(Config, PluginTablesAreValidatedAgainstDeclaredKeys) {
  auto doc = parse(kWithPlugin);
  ASSERT_TRUE(doc.is_ok()) << doc.status().message();
  const auto& plugins = doc.value().host().plugins;
  ASSERT_EQ(plugins.size(), 2u);
  EXPECT_EQ(plugins[0].library, "heartbeat");
  EXPECT_EQ(plugins[0].where, "/etc/nodeha/agent.toml:4");
  EXPECT_EQ(plugins[1].name, "second");

  auto first = doc.value().validate_plugin(0, heartbeat_keys());
  ASSERT_TRUE(first.is_ok()) << first.status().message();
  auto json = nlohmann::json::parse(first.value());
  EXPECT_EQ(json["interval"], 2000);  // durations handed over in ms
  EXPECT_EQ(json["misses"], 3);       // default filled
  EXPECT_EQ(json["targets"], nlohmann::json::array());
  EXPECT_FALSE(json.contains("library"));

  auto second = doc.value().validate_plugin(1, heartbeat_keys());
  ASSERT_FALSE(second.is_ok());
  EXPECT_EQ(second.status().message(), "/etc/nodeha/agent.toml:11: [plugin second] key 'misses' must be an integer");
}

TEST(Config, PluginUnknownKeyIsRefused) {
  auto doc = parse("[host]\nrole = \"agent\"\n[[plugin]]\nlibrary = \"heartbeat\"\nintervall = \"1s\"\n");
  ASSERT_TRUE(doc.is_ok());
  auto r = doc.value().validate_plugin(0, heartbeat_keys());
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().message(),
            "/etc/nodeha/agent.toml:5: [plugin heartbeat] unknown key 'intervall' (known keys: interval, misses, targets)");
}

TEST(Config, PluginWithoutLibraryIsRefused) {
  auto doc = parse("[host]\nrole = \"agent\"\n[[plugin]]\nname = \"x\"\n");
  ASSERT_FALSE(doc.is_ok());
  EXPECT_THAT(doc.status().message(), HasSubstr(":3: [[plugin]] #1 has no 'library' key"));
}

TEST(Config, PluginOverride) {
  auto doc = parse(kWithPlugin, {"plugin.heartbeat.interval=\"500ms\"", "plugin.second.misses=5"});
  ASSERT_TRUE(doc.is_ok()) << doc.status().message();
  auto first = nlohmann::json::parse(doc.value().validate_plugin(0, heartbeat_keys()).value());
  EXPECT_EQ(first["interval"], 500);
  auto second = doc.value().validate_plugin(1, heartbeat_keys());
  ASSERT_TRUE(second.is_ok()) << second.status().message();
  EXPECT_EQ(nlohmann::json::parse(second.value())["misses"], 5);
}

TEST(Duration, Parses) {
  EXPECT_EQ(parse_duration_ms("500ms"), 500);
  EXPECT_EQ(parse_duration_ms("15s"), 15000);
  EXPECT_EQ(parse_duration_ms("1.5s"), 1500);
  EXPECT_EQ(parse_duration_ms("2m"), 120000);
  EXPECT_EQ(parse_duration_ms("1h"), 3600000);
  EXPECT_FALSE(parse_duration_ms("15"));
  EXPECT_FALSE(parse_duration_ms("s"));
  EXPECT_FALSE(parse_duration_ms("-1s"));
  EXPECT_FALSE(parse_duration_ms("3 s"));
  EXPECT_FALSE(parse_duration_ms("1d"));
  // Too large for a count of ms: refused, never wrapped to a negative one.
  EXPECT_FALSE(parse_duration_ms(std::string(120, '2') + "ms"));
  EXPECT_FALSE(parse_duration_ms("20000000000h"));
  EXPECT_EQ(parse_duration_ms("87600h"), int64_t{87600} * 3'600'000);
}

nodeha_plugin descriptor(uint32_t major, uint32_t minor) {
  static auto create = [](const nodeha_host_api*, nodeha_host*, nodeha_error*) -> void* { return nullptr; };
  static auto start = [](void*, nodeha_error*) -> int { return 0; };
  static auto nothing = [](void*) {};
  return nodeha_plugin{sizeof(nodeha_plugin), major, minor, "x", "1", "d", 0, nullptr, 0, create, start, nothing, nothing};
}

TEST(Version, SameMajorIsAccepted) {
  EXPECT_TRUE(check_version(descriptor(NODEHA_PLUGIN_API_MAJOR, 0), "/p.so").is_ok());
  EXPECT_TRUE(check_version(descriptor(NODEHA_PLUGIN_API_MAJOR, 7), "/p.so").is_ok());
}

TEST(Version, OtherMajorIsRefusedNamingBoth) {
  auto s = check_version(descriptor(NODEHA_PLUGIN_API_MAJOR + 1, 2), "/p.so");
  ASSERT_FALSE(s.is_ok());
  EXPECT_THAT(s.message(), HasSubstr(std::string("/p.so: built for plugin interface 2.2, this host speaks 1.") + std::to_string(NODEHA_PLUGIN_API_MINOR)));
}

TEST(Version, TruncatedDescriptorIsRefused) {
  auto d = descriptor(NODEHA_PLUGIN_API_MAJOR, 0);
  d.struct_size = 4;
  EXPECT_FALSE(check_version(d, "/p.so").is_ok());
}

// Found by fuzz/config_fuzz.cpp: an override that is not a TOML literal is kept as a plain string,
// and one with bytes that are not UTF-8 made the plugin table's JSON throw.
TEST(Config, OverrideThatIsNotUtf8IsRefused) {
  std::string text = std::string(kMinimal) + "\n[[plugin]]\nlibrary = \"heartbeat\"\n";
  auto doc = parse(text, {"plugin.heartbeat.interval=\xf7\x80"});
  ASSERT_FALSE(doc.is_ok());
  EXPECT_THAT(doc.status().message(), HasSubstr("must be UTF-8"));
  EXPECT_FALSE(parse(kMinimal, {"host.node_id\xff=a"}).is_ok());
  EXPECT_TRUE(parse(text, {"plugin.heartbeat.interval=d\xc3\xa9j\xc3\xa0"}).is_ok());
}

}  // namespace
}  // namespace nodeha::host
