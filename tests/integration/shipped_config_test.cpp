// The configs shipped in config/ load with the shipped plugins (only the plugin path changed),
// and a plugin that refuses its configuration is a refusal (exit 2) before anything starts. The
// example nats-server configs (config/nats/) pass `nats-server -t` beside a real nats-auth.conf.
#include "bus_security.h"
#include "host_process.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace nodeha::test {
namespace {

using ::testing::HasSubstr;

int check(const std::string& file, const std::string& log) {
  TempDir dir;
  Process p({NODEHA_HOST_BIN, "--check", "--config", file, "--set", "host.plugin_path=[\"" NODEHA_PLUGIN_DIR "\"]"},
            dir.file(log));
  auto status = p.wait_exit(20s);
  if (status != 0) ADD_FAILURE() << p.output();
  return status.value_or(-1);
}

TEST(ShippedConfig, ControllerAndAgentAreValid) {
  EXPECT_EQ(check(NODEHA_SOURCE_DIR "/config/controller.toml", "c.log"), 0);
  EXPECT_EQ(check(NODEHA_SOURCE_DIR "/config/agent.toml", "a.log"), 0);
}

// `nats-server -t -c file`: its exit status, and its words in *out.
int nats_check(const std::string& file, std::string* out) {
  Process p({"nats-server", "-t", "-c", file}, file + ".check.log");
  auto status = p.wait_exit(20s);
  *out = p.output();
  return status.value_or(-1);
}

TEST(ShippedConfig, TheNatsClusterExampleIsValid) {
  TempDir dir;
  BusSecurity bus(dir.file("bus"), {{"node-a"}, {"controller"}, {"admin"}, {}, {}});
  ASSERT_TRUE(bus.ok()) << bus.error();
  for (const auto& f : std::filesystem::directory_iterator(NODEHA_SOURCE_DIR "/config/nats/cluster"))
    std::filesystem::copy_file(f.path(), dir.file("bus/" + f.path().filename().string()));
  std::string out;
  for (const char* server : {"nats-1.conf", "nats-2.conf", "nats-3.conf"}) {
    EXPECT_EQ(nats_check(dir.file(std::string("bus/") + server), &out), 0) << server << ": " << out;
    EXPECT_THAT(out, HasSubstr("is valid"));
  }
  EXPECT_EQ(nats_check(bus.server_config(), &out), 0) << "nats-server.conf: " << out;

  // The check can fail: a cluster block with a misspelt key is refused.
  std::string shared = read_file(dir.file("bus/cluster.conf"));
  shared.replace(shared.find("routes:"), 7, "roots:");
  std::ofstream(dir.file("bus/cluster.conf")) << shared;
  EXPECT_NE(nats_check(dir.file("bus/nats-1.conf"), &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("roots"));
}

TEST(ShippedConfig, PluginRefusingItsConfigIsARefusal) {
  auto r = run_host("[host]\nrole = \"agent\"\nnode_id = \"n\"\nplugin_path = [\"{plugins}\"]\n"
                    "[nats]\nservers = [\"nats://127.0.0.1:1\"]\nconnect_timeout = \"100ms\"\n"
                    "[metrics]\nlisten = \"127.0.0.1:0\"\n"
                    "[[plugin]]\nlibrary = \"netcheck\"\ntargets = [\"tcp:10.0.0.1\"]\n");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("host.toml:10: plugin 'netcheck': target 'tcp:10.0.0.1': tcp targets need a port"));
}

// A controller refuses a heartbeat wire version it does not speak, as an agent does.
TEST(ShippedConfig, AHeartbeatWireVersionOutOfRangeIsRefusedOnEitherSide) {
  for (const char* role : {"controller", "agent"}) {
    auto r = run_host(std::string("[host]\nrole = \"") + role + "\"\nnode_id = \"n\"\nplugin_path = [\"{plugins}\"]\n"
                      "[nats]\nservers = [\"nats://127.0.0.1:1\"]\nconnect_timeout = \"100ms\"\n"
                      "[metrics]\nlisten = \"127.0.0.1:0\"\n"
                      "[[plugin]]\nlibrary = \"heartbeat\"\nwire = 3\n");
    EXPECT_EQ(r.status, 2) << role << ": " << r.output;
    EXPECT_THAT(r.output, HasSubstr("plugin 'heartbeat': wire must be 1 or 2")) << role;
  }
}

}  // namespace
}  // namespace nodeha::test
