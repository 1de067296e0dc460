// The configs shipped in config/ load with the shipped plugins (only the plugin path changed),
// and a plugin that refuses its configuration is a refusal (exit 2) before anything starts.
#include "host_process.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

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

TEST(ShippedConfig, PluginRefusingItsConfigIsARefusal) {
  auto r = run_host("[host]\nrole = \"agent\"\nnode_id = \"n\"\nplugin_path = [\"{plugins}\"]\n"
                    "[nats]\nservers = [\"nats://127.0.0.1:1\"]\nconnect_timeout = \"100ms\"\n"
                    "[metrics]\nlisten = \"127.0.0.1:0\"\n"
                    "[[plugin]]\nlibrary = \"netcheck\"\ntargets = [\"tcp:10.0.0.1\"]\n");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("host.toml:10: plugin 'netcheck': target 'tcp:10.0.0.1': tcp targets need a port"));
}

}  // namespace
}  // namespace nodeha::test
