// The host's services against a real nats-server: request/reply through a plugin, KV conflicts,
// reconnect after a server restart, /metrics over HTTP, SIGHUP swapping one plugin.
#include "bus.h"
#include "host_process.h"
#include "nats_server.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <filesystem>
#include <thread>

namespace nodeha::test {
namespace {

using ::testing::HasSubstr;

std::string controller(const NatsServer& nats, const std::string& plugins) {
  return "[host]\nrole = \"controller\"\nnode_id = \"ctl-1\"\nplugin_path = [\"{plugins}\", \"{fixtures}\"]\n"
         "[nats]\nservers = [\"" + nats.url() + "\"]\nreconnect_wait = \"100ms\"\n"
         "[metrics]\nlisten = \"127.0.0.1:0\"\n\n" + plugins;
}

// Asks until it gets an answer (subscriptions of a just-started host may take a moment).
std::string ask(host::Bus& bus, const std::string& subject, const std::string& body) {
  std::string answer;
  wait_until([&] {
    auto r = bus.request(subject, body, 500ms);
    if (r) answer = r.value();
    return r.is_ok();
  });
  return answer;
}

TEST(Host, RequestReplyThroughAPluginAndMetrics) {
  NatsServer nats;
  HostProcess host(controller(nats, "[[plugin]]\nlibrary = \"echo\"\nreply_prefix = \"echo: \"\n"));
  ASSERT_TRUE(host.wait_ready()) << host.log();
  auto bus = nats.client();
  EXPECT_EQ(ask(*bus, "nodeha.echo", "hello"), "echo: hello");
  EXPECT_EQ(bus->request("nodeha.echo", "again", 2s).value(), "echo: again");

  auto m = host.metrics();
  EXPECT_EQ(metric_value(m, "nodeha_plugin_up{plugin=\"echo\"}"), 1);
  EXPECT_EQ(metric_value(m, "nodeha_bus_connected"), 1);
  EXPECT_GE(metric_value(m, "nodeha_echo_requests_total{instance=\"echo\"}"), 2);
  EXPECT_THAT(m, HasSubstr("nodeha_build_info{"));
  EXPECT_THAT(m, HasSubstr("role=\"controller\""));

  host.process().signal(SIGTERM);
  EXPECT_EQ(host.process().wait_exit(10s), 0) << host.log();
  EXPECT_THAT(host.log(), HasSubstr("stopping plugin echo"));
}

TEST(Host, NoRespondersAndTimeoutsAreDistinct) {
  NatsServer nats;
  auto bus = nats.client();
  auto r = bus->request("nodeha.nobody.home", "x", 500ms);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), NODEHA_ERR_NO_RESPONDERS);
}

TEST(Kv, CreateConflictAndRevisionCheckedUpdate) {
  NatsServer nats;
  auto bus = nats.client();
  auto first = bus->kv_create("nodes", "node-a", R"({"state":"normal"})");
  ASSERT_TRUE(first.is_ok()) << first.status().message();
  auto again = bus->kv_create("nodes", "node-a", R"({"state":"other"})");
  ASSERT_FALSE(again.is_ok());
  EXPECT_EQ(again.status().code(), NODEHA_ERR_CONFLICT) << again.status().message();

  auto updated = bus->kv_update("nodes", "node-a", R"({"state":"error"})", first.value());
  ASSERT_TRUE(updated.is_ok()) << updated.status().message();
  EXPECT_GT(updated.value(), first.value());
  // A second writer holding the old revision loses, and changes nothing.
  auto stale = bus->kv_update("nodes", "node-a", R"({"state":"stale"})", first.value());
  ASSERT_FALSE(stale.is_ok());
  EXPECT_EQ(stale.status().code(), NODEHA_ERR_CONFLICT) << stale.status().message();
  auto got = bus->kv_get("nodes", "node-a");
  ASSERT_TRUE(got.is_ok());
  EXPECT_EQ(got.value().value, R"({"state":"error"})");
  EXPECT_EQ(got.value().revision, updated.value());

  EXPECT_EQ(bus->kv_get("nodes", "node-z").status().code(), NODEHA_ERR_NOT_FOUND);
  ASSERT_TRUE(bus->kv_delete("nodes", "node-a").is_ok());
  EXPECT_EQ(bus->kv_get("nodes", "node-a").status().code(), NODEHA_ERR_NOT_FOUND);
  // A deleted key can be created again.
  EXPECT_TRUE(bus->kv_create("nodes", "node-a", "{}").is_ok());
}

TEST(Kv, ListAndWatch) {
  NatsServer nats;
  auto bus = nats.client();
  ASSERT_TRUE(bus->kv_put("vms", "vm-1", "one").is_ok());
  ASSERT_TRUE(bus->kv_put("vms", "vm-2", "two").is_ok());
  ASSERT_TRUE(bus->kv_delete("vms", "vm-2").is_ok());
  auto list = bus->kv_list("vms");
  ASSERT_TRUE(list.is_ok()) << list.status().message();
  ASSERT_EQ(list.value().size(), 1u);
  EXPECT_EQ(list.value()[0].key, "vm-1");

  std::mutex mu;
  std::vector<KvEntry> seen;
  auto w = bus->kv_watch("vms", ">", [&](KvEntry e) {
    std::lock_guard lock(mu);
    seen.push_back(std::move(e));
  });
  ASSERT_TRUE(w.is_ok());
  ASSERT_TRUE(bus->kv_put("vms", "vm-3", "three").is_ok());
  ASSERT_TRUE(wait_until([&] {
    std::lock_guard lock(mu);
    return !seen.empty() && seen.back().key == "vm-3";
  }));
  bus->kv_unwatch(w.value());
}

TEST(Host, SurvivesNatsRestart) {
  NatsServer nats;
  HostProcess host(controller(nats, "[[plugin]]\nlibrary = \"echo\"\n"));
  ASSERT_TRUE(host.wait_ready()) << host.log();
  {
    auto bus = nats.client();
    EXPECT_EQ(ask(*bus, "nodeha.echo", "before"), "before");
  }
  nats.stop();
  EXPECT_TRUE(wait_until([&] { return host.metric("nodeha_bus_connected") == 0; })) << host.log();
  nats.start();
  EXPECT_TRUE(wait_until([&] { return host.metric("nodeha_bus_connected") == 1; }, 15s)) << host.log();
  auto bus = nats.client();
  EXPECT_EQ(ask(*bus, "nodeha.echo", "after"), "after");
  EXPECT_TRUE(host.process().running());
}

const char* kTwoPlugins = R"([[plugin]]
name = "steady"
library = "echo"
subject = "steady"

[[plugin]]
name = "swapped"
library = "echo"
subject = "swapped"
reply_prefix = "old:"
)";

const char* kSwapped = R"([[plugin]]
name = "steady"
library = "echo"
subject = "steady"

[[plugin]]
name = "swapped"
library = "lifecycle"
subject = "nodeha.swapped"
)";

TEST(Host, SighupSwapsOnePluginWhileTheOtherKeepsAnswering) {
  NatsServer nats;
  HostProcess host(controller(nats, kTwoPlugins));
  ASSERT_TRUE(host.wait_ready()) << host.log();
  auto bus = nats.client();
  ASSERT_EQ(ask(*bus, "nodeha.swapped", "x"), "old:x");
  ASSERT_EQ(ask(*bus, "nodeha.steady", "x"), "x");

  // The steady plugin is asked without pause during the swap: it must never miss.
  std::atomic<bool> done{false};
  std::atomic<int> answered{0}, missed{0};
  std::thread asker([&] {
    while (!done) {
      auto r = bus->request("nodeha.steady", "ping", 1s);
      (r && r.value() == "ping" ? answered : missed)++;
    }
  });
  host.rewrite(controller(nats, kSwapped));
  host.process().signal(SIGHUP);
  EXPECT_TRUE(wait_until([&] {
    auto r = bus->request("nodeha.swapped", "x", 300ms);
    return r && r.value() == "X";
  })) << host.log();
  done = true;
  asker.join();
  EXPECT_EQ(missed, 0);
  EXPECT_GT(answered, 0);
  EXPECT_EQ(host.metric("nodeha_config_reloads_total{result=\"ok\"}"), 1);
  // Only the swapped plugin restarted.
  EXPECT_THAT(host.log(), HasSubstr("reload: stopping plugin swapped"));
  EXPECT_THAT(host.log(), Not(HasSubstr("reload: stopping plugin steady")));
  EXPECT_GE(host.metric("nodeha_echo_requests_total{instance=\"steady\"}"), answered.load());
}

TEST(Host, InvalidReloadIsRefusedAndTheOldConfigKeepsRunning) {
  NatsServer nats;
  HostProcess host(controller(nats, "[[plugin]]\nlibrary = \"echo\"\n"));
  ASSERT_TRUE(host.wait_ready()) << host.log();
  host.rewrite(controller(nats, "[[plugin]]\nlibrary = \"echo\"\nbogus = 1\n"));
  host.process().signal(SIGHUP);
  EXPECT_TRUE(wait_until([&] { return host.metric("nodeha_config_reloads_total{result=\"refused\"}") == 1; }))
      << host.log();
  EXPECT_THAT(host.log(), HasSubstr("reload refused, the running configuration stays"));
  EXPECT_THAT(host.log(), HasSubstr("unknown key 'bogus'"));
  auto bus = nats.client();
  EXPECT_EQ(ask(*bus, "nodeha.echo", "still"), "still");
}

}  // namespace
}  // namespace nodeha::test

namespace nodeha::test {
namespace {

// A library rebuilt in place (installed under the same path) must run its new code after SIGHUP,
// although the dynamic loader still holds the old one.
TEST(Host, SighupLoadsALibraryRebuiltInPlace) {
  NatsServer nats;
  TempDir lib;
  std::string path = lib.file("plugin.so");
  std::filesystem::copy_file(NODEHA_PLUGIN_DIR "/nodeha_echo.so", path);
  HostProcess host(controller(nats, "[[plugin]]\nname = \"swap\"\nlibrary = \"" + path + "\"\nsubject = \"nodeha.swap\"\n"));
  ASSERT_TRUE(host.wait_ready()) << host.log();
  auto bus = nats.client();
  ASSERT_EQ(ask(*bus, "nodeha.swap", "abc"), "abc");

  // Installed the way install(1) does it: a new file renamed over the old one.
  std::filesystem::copy_file(NODEHA_FIXTURE_DIR "/lifecycle.so", path + ".new");
  std::filesystem::rename(path + ".new", path);
  host.process().signal(SIGHUP);
  EXPECT_TRUE(wait_until([&] {
    auto r = bus->request("nodeha.swap", "abc", 300ms);
    return r && r.value() == "ABC";
  })) << host.log();
  EXPECT_EQ(host.metric("nodeha_config_reloads_total{result=\"ok\"}"), 1);
}

}  // namespace
}  // namespace nodeha::test
