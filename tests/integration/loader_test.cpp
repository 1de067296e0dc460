// The host refuses bad plugins before anything starts (exit 2, message naming file, plugin and
// why), and unwinds started plugins in reverse order when one fails to start (exit 1) on an
// agent; a leading controller keeps running and tries it again.
#include "host_process.h"
#include "nats_server.h"
#include "wait.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace nodeha::test {
namespace {

using ::testing::HasSubstr;

// A lifecycle fixture table that records into `journal`; `fail` makes its start fail.
std::string lifecycle(const std::string& name, const std::string& journal, bool fail) {
  return "[[plugin]]\nname = \"" + name + "\"\nlibrary = \"lifecycle\"\njournal = \"" + journal +
         "\"\nfail_start = " + (fail ? "true" : "false") + "\n\n";
}

std::string agent_with(const std::string& plugins) {
  return "[host]\nrole = \"agent\"\nnode_id = \"node-a\"\nplugin_path = [\"{plugins}\", \"{fixtures}\"]\n"
         "[nats]\nservers = [\"nats://127.0.0.1:1\"]\nconnect_timeout = \"100ms\"\n"
         "[metrics]\nlisten = \"127.0.0.1:0\"\n\n" +
         plugins;
}

TEST(Loader, MissingLibraryIsRefused) {
  auto r = run_host(agent_with("[[plugin]]\nlibrary = \"no_such_plugin\"\n"));
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("host.toml:11: plugin 'no_such_plugin': library 'no_such_plugin' not found (tried "));
  EXPECT_THAT(r.output, Not(HasSubstr("up: node")));
}

TEST(Loader, MissingPathIsRefused) {
  auto r = run_host(agent_with("[[plugin]]\nlibrary = \"./nowhere/x.so\"\n"));
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("plugin './nowhere/x.so': library "));
  EXPECT_THAT(r.output, HasSubstr("nowhere/x.so does not exist"));
}

TEST(Loader, LibraryWithoutEntrySymbolIsRefused) {
  auto r = run_host(agent_with("[[plugin]]\nlibrary = \"no_entry\"\n"));
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("no_entry.so has no entry symbol 'nodeha_plugin_entry'"));
}

TEST(Loader, UnresolvedSymbolIsRefusedWithLoaderReason) {
  auto r = run_host(agent_with("[[plugin]]\nlibrary = \"missing_symbol\"\n"));
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("cannot load library"));
  EXPECT_THAT(r.output, HasSubstr("nodeha_fixture_symbol_nobody_defines"));
}

TEST(Loader, WrongMajorIsRefusedNamingBothVersions) {
  auto r = run_host(agent_with("[[plugin]]\nlibrary = \"wrong_major\"\n"));
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("plugin 'wrong_major': "));
  EXPECT_THAT(r.output, HasSubstr(std::string("built for plugin interface 2.3, this host speaks 1.") + std::to_string(NODEHA_PLUGIN_API_MINOR)));
}

TEST(Loader, DuplicateNamesAreRefused) {
  auto r = run_host(agent_with("[[plugin]]\nlibrary = \"echo\"\n\n[[plugin]]\nlibrary = \"echo\"\nsubject = \"other\"\n"));
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("host.toml:14: plugin 'echo': two plugins with one name (the other is at "));
  EXPECT_THAT(r.output, HasSubstr("host.toml:11)"));
}

TEST(Loader, UnknownPluginKeyIsRefused) {
  auto r = run_host(agent_with("[[plugin]]\nlibrary = \"echo\"\nsubjekt = \"x\"\n"));
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("host.toml:13: [plugin echo] unknown key 'subjekt' (known keys: subject, reply_prefix)"));
}

TEST(Loader, TomlSyntaxErrorIsRefused) {
  auto r = run_host(agent_with("[[plugin]\nlibrary = \"echo\"\n"));
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("host.toml:11:10:"));
  EXPECT_THAT(r.output, HasSubstr("TOML syntax error"));
}

TEST(Loader, CheckModeValidatesWithoutStarting) {
  TempDir dir;
  auto good = dir.write("good.toml", "[host]\nrole = \"controller\"\nplugin_path = [\"" NODEHA_PLUGIN_DIR "\"]\n[[plugin]]\nlibrary = \"echo\"\n");
  Process ok({NODEHA_HOST_BIN, "--check", "--config", good}, dir.file("check.log"));
  EXPECT_EQ(ok.wait_exit(10s), 0) << ok.output();
  auto bad = dir.write("bad.toml", "[host]\nrole = \"controller\"\n[[plugin]]\nlibrary = \"nope\"\n");
  Process refused({NODEHA_HOST_BIN, "--check", "--config", bad}, dir.file("check2.log"));
  EXPECT_EQ(refused.wait_exit(10s), 2) << refused.output();
}

TEST(Loader, StartFailureStopsStartedPluginsInReverseOrder) {
  NatsServer nats;
  TempDir dir;
  std::string journal = dir.file("journal");
  auto plugin = [&](const std::string& name, bool fail) { return lifecycle(name, journal, fail); };
  auto r = run_host(agent_with(plugin("first", false) + plugin("second", false) + plugin("broken", true) +
                               plugin("never", false)),
                    {"nats.servers=[\"" + nats.url() + "\"]"});
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("plugin broken (" ));
  EXPECT_THAT(r.output, HasSubstr("failed to start: the database is on fire"));
  EXPECT_EQ(read_file(journal), "start first\nstart second\nstart broken\nstop second\nstop first\n");
}

// A controller that leads at boot and whose plugin fails to start (a bucket still electing on a
// fresh NATS cluster, in CI) stays up, runs the others, and tries it again every second, as after
// a takeover.
TEST(Loader, ALeadingControllersPluginThatFailsToStartIsTriedAgainAndTheHostStaysUp) {
  NatsServer nats;
  TempDir dir;
  std::string journal = dir.file("journal");
  auto plugin = [&](const std::string& name, bool fail) { return lifecycle(name, journal, fail); };
  std::string config = host_tables("controller", "ctl", nats.url());
  config.replace(config.find("plugin_path = [\"{plugins}\"]"), std::string("plugin_path = [\"{plugins}\"]").size(),
                 "plugin_path = [\"{plugins}\", \"{fixtures}\"]");
  HostProcess ctl(config + plugin("first", false) + plugin("broken", true));
  ASSERT_TRUE(ctl.wait_ready()) << ctl.log();
  auto starts = [&] {
    std::string j = read_file(journal);
    size_t n = 0;
    for (size_t at = j.find("start broken"); at != std::string::npos; at = j.find("start broken", at + 1)) ++n;
    return n;
  };
  EXPECT_TRUE(wait_until([&] { return starts() >= 3; }, 10s)) << read_file(journal) << ctl.log();
  EXPECT_TRUE(ctl.process().running());
  EXPECT_EQ(ctl.metric("nodeha_plugin_up{plugin=\"first\"}"), 1);
  EXPECT_EQ(ctl.metric("nodeha_plugin_up{plugin=\"broken\"}"), 0);
  EXPECT_THAT(ctl.log(), HasSubstr("the others are tried again in 1 s"));
}

}  // namespace
}  // namespace nodeha::test
