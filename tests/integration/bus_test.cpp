// The Bus against a real nats-server: what the server would punish is refused locally and never
// sent; a connection the server closes for good (a -ERR, a user removed by a reload) is made
// again with every subscription, KV watch and the async inbox; a subscription is at the server
// when subscribe() returns.
#include "bus.h"
#include "host_process.h"
#include "nats_server.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <mutex>
#include <vector>

namespace nodeha::test {
namespace {

using ::testing::HasSubstr;

// Every message one client sees, in order.
struct Seen {
  std::mutex mu;
  std::vector<Message> messages;
  host::MessageHandler handler() {
    return [this](Message m) {
      std::lock_guard lock(mu);
      messages.push_back(std::move(m));
    };
  }
  size_t size() {
    std::lock_guard lock(mu);
    return messages.size();
  }
  std::string data(size_t i) {
    std::lock_guard lock(mu);
    return i < messages.size() ? messages[i].data : "";
  }
  std::string subject(size_t i) {
    std::lock_guard lock(mu);
    return i < messages.size() ? messages[i].subject : "";
  }
};

// A Bus that counts the connections closed for good under it, and says why.
struct Closes {
  std::mutex mu;
  std::vector<std::string> reasons;
  size_t size() {
    std::lock_guard lock(mu);
    return reasons.size();
  }
  std::string last() {
    std::lock_guard lock(mu);
    return reasons.empty() ? "" : reasons.back();
  }
  std::string first() {
    std::lock_guard lock(mu);
    return reasons.empty() ? "" : reasons.front();
  }
};
std::unique_ptr<host::Bus> counted_client(const host::NatsSettings& settings, Closes& closes) {
  auto bus = host::Bus::create(settings, "counted", nullptr, [&closes](const std::string& reason, const std::string&) {
    std::lock_guard lock(closes.mu);
    closes.reasons.push_back(reason);
  });
  if (!bus) ADD_FAILURE() << bus.status().message();
  else if (!bus.value()->wait_connected(5s)) ADD_FAILURE() << "no connection to " << settings.servers.front();
  return bus ? std::move(bus.value()) : nullptr;
}

void expect_invalid(const Status& st, const std::string& words) {
  EXPECT_EQ(st.code(), NODEHA_ERR_INVALID) << st.message();
  EXPECT_THAT(st.message(), HasSubstr("nothing sent"));
  EXPECT_THAT(st.message(), HasSubstr(words));
}

TEST(BusLimits, WhatTheServerWouldPunishIsRefusedAndNeverSent) {
  NatsServer nats(NatsServerOptions{.config = "max_payload: 4096\n"});
  auto bus = nats.client();
  auto spy = nats.client();
  Seen seen;
  ASSERT_TRUE(spy->subscribe(">", "", seen.handler()).is_ok());

  std::string long_subject = "nodeha." + std::string(5000, 'x');
  expect_invalid(bus->publish(long_subject, "x"), "max_control_line of 4096");
  expect_invalid(bus->publish("nodeha.a b", "x"), "space or control character");
  expect_invalid(bus->publish("nodeha.a\r\nPUB", "x"), "space or control character");
  expect_invalid(bus->publish("nodeha..a", "x"), "empty token");
  expect_invalid(bus->publish("nodeha.*", "x"), "wildcard");
  expect_invalid(bus->publish("", "x"), "empty");
  expect_invalid(bus->publish("nodeha.big", std::string(5000, 'p')), "max_payload of 4096");
  expect_invalid(bus->subscribe("nodeha.>.a", "", [](Message) {}).status(), "last token");
  expect_invalid(bus->subscribe("nodeha.a", "q q", [](Message) {}).status(), "queue group");
  expect_invalid(bus->subscribe(long_subject, "", [](Message) {}).status(), "max_control_line");
  expect_invalid(bus->request(long_subject, "x", 500ms).status(), "max_control_line");
  expect_invalid(bus->request_async(long_subject, "x", [](nodeha_status, std::string) {}).status(), "max_control_line");
  // The issue's request: a 5,000-character node id as a KV key.
  expect_invalid(bus->kv_get("nodes", std::string(5000, 'x')).status(), "max_control_line");
  expect_invalid(bus->kv_put("nodes", "a b", "v").status(), "[-/_=.a-zA-Z0-9]");
  expect_invalid(bus->kv_put("nodes", ".a", "v").status(), "empty token");
  expect_invalid(bus->kv_put("nodes", "a*", "v").status(), "byte 0x2a");
  expect_invalid(bus->kv_create("no.dots", "k", "v").status(), "bucket");
  expect_invalid(bus->kv_update("nodes", "k", std::string(4000, 'v'), 1).status(), "max_payload");
  expect_invalid(bus->kv_delete("nodes", ""), "empty");
  expect_invalid(bus->kv_list("").status(), "empty");
  expect_invalid(bus->kv_watch("nodes", "a.>.b", [](KvEntry) {}).status(), "last token");

  // Nothing went out: the first message the spy sees is the one sent after them all.
  ASSERT_TRUE(bus->publish("nodeha.marker", "after").is_ok());
  ASSERT_TRUE(wait_until([&] { return seen.size() >= 1; }));
  EXPECT_EQ(seen.subject(0), "nodeha.marker");
  EXPECT_TRUE(bus->connected());
  EXPECT_EQ(bus->connects(), 1u);
  // The longest subject that fits is sent, and the server takes it.
  std::string longest = "nodeha." + std::string(4096 - 128 - 7, 'y');
  EXPECT_TRUE(bus->publish(longest, "x").is_ok());
  EXPECT_TRUE(bus->probe(2s).is_ok());
  EXPECT_EQ(bus->connects(), 1u);
}

// A server that closes the connection on the first protocol line over 512 bytes; the Bus
// (max_control_line left at 4096) lets a 1,000-byte subject pass.
const char* kShortLines = "max_control_line: 512\n";

TEST(BusReconnect, AConnectionTheServerClosesIsMadeAgainWithEverythingOnIt) {
  NatsServer nats(NatsServerOptions{.config = kShortLines});
  auto settings = nats.settings();
  Closes closes;
  auto bus = counted_client(settings, closes);
  auto other = nats.client();
  Seen subscribed, held;
  ASSERT_TRUE(bus->subscribe("probe.sub", "", subscribed.handler()).is_ok());
  ASSERT_TRUE(other->subscribe("svc.echo", "", [&](Message m) { other->publish(m.reply, "echo: " + m.data); }).is_ok());
  ASSERT_TRUE(other->subscribe("svc.hold", "", held.handler()).is_ok());
  std::mutex mu;
  std::vector<std::string> watched;
  ASSERT_TRUE(bus->kv_watch("probe", ">", [&](KvEntry e) {
    std::lock_guard lock(mu);
    watched.push_back(e.value);
  }).is_ok());
  auto last_watched = [&] {
    std::lock_guard lock(mu);
    return watched.empty() ? std::string() : watched.back();
  };
  ASSERT_TRUE(other->kv_put("probe", "k", "before").is_ok());
  ASSERT_TRUE(wait_until([&] { return last_watched() == "before"; }));
  // A request pending when the connection closes is answered UNAVAILABLE, not left to time out.
  std::atomic<int> pending_status{-1};
  ASSERT_TRUE(bus->request_async("svc.hold", "x", [&](nodeha_status st, std::string) { pending_status = st; }).is_ok());
  ASSERT_TRUE(wait_until([&] { return held.size() == 1; }));

  auto closed_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(bus->publish("probe." + std::string(1000, 'z'), "x").is_ok());
  // Back within 2 x reconnect_wait (and some room for a busy machine).
  EXPECT_TRUE(wait_until([&] { return bus->connects() >= 2 && bus->connected(); },
                         std::chrono::milliseconds(2 * settings.reconnect_wait_ms) + 1500ms));
  auto back_after = std::chrono::steady_clock::now() - closed_at;
  EXPECT_THAT(nats.log(), HasSubstr("maximum control line exceeded"));
  EXPECT_EQ(closes.size(), 1u);
  EXPECT_EQ(closes.last(), "control_line");
  EXPECT_TRUE(wait_until([&] { return pending_status == NODEHA_ERR_UNAVAILABLE; }, 1s)) << pending_status;

  ASSERT_TRUE(other->publish("probe.sub", "after").is_ok());
  EXPECT_TRUE(wait_until([&] { return subscribed.size() == 1 && subscribed.data(0) == "after"; }));
  ASSERT_TRUE(other->kv_put("probe", "k", "after").is_ok());
  EXPECT_TRUE(wait_until([&] { return last_watched() == "after"; }));
  Seen answers;
  ASSERT_TRUE(bus->request_async("svc.echo", "async", [&](nodeha_status st, std::string body) {
    answers.handler()(Message{status_name(st), "", std::move(body)});
  }).is_ok());
  EXPECT_TRUE(wait_until([&] { return answers.size() == 1; }));
  EXPECT_EQ(answers.subject(0), "ok");
  EXPECT_EQ(answers.data(0), "echo: async");
  auto sync = bus->request("svc.echo", "sync", 2s);
  EXPECT_TRUE(sync.is_ok() && sync.value() == "echo: sync") << sync.status().message();
  EXPECT_EQ(bus->connects(), 2u) << "closed again after "
                                 << std::chrono::duration_cast<std::chrono::milliseconds>(back_after).count() << " ms";
}

std::string users(bool with_probe) {
  return std::string("authorization {\n  users = [\n    {user: admin, password: admin-pw}\n") +
         (with_probe ? "    {user: probe, password: probe-pw}\n" : "") + "  ]\n}\n";
}

TEST(BusReconnect, AUserRemovedAndRestoredByAReloadConnectsAgain) {
  NatsServer nats(NatsServerOptions{.config = users(true)});
  auto as = [&](const std::string& user) {
    auto s = nats.settings();
    s.servers = {"nats://" + user + ":" + user + "-pw@" + nats.address() + ":" + std::to_string(nats.port())};
    return s;
  };
  auto settings = as("probe");
  Closes closes;
  auto bus = counted_client(settings, closes);
  auto admin = nats.client(as("admin"));
  ASSERT_TRUE(bus && admin);
  ASSERT_TRUE(bus->subscribe("probe.echo", "", [&](Message m) { bus->publish(m.reply, m.data); }).is_ok());
  ASSERT_EQ(admin->request("probe.echo", "one", 2s).value(), "one");

  nats.reload(users(false));
  EXPECT_TRUE(wait_until([&] { return !bus->connected(); })) << nats.log();
  // cnats gives up on the second refusal in a row and closes the connection for good; the Bus
  // makes new ones, each refused and closed again, until the user is back.
  // (The later ones end with cnats' "No server available": `other`.)
  EXPECT_TRUE(wait_until([&] { return closes.size() >= 2; })) << nats.log();
  EXPECT_EQ(closes.first(), "auth");
  // Refused while the user is gone: the Bus keeps trying, and nobody answers.
  EXPECT_EQ(admin->request("probe.echo", "gone", 300ms).status().code(), NODEHA_ERR_NO_RESPONDERS);

  uint64_t before = bus->connects();
  nats.reload(users(true));
  EXPECT_TRUE(wait_until([&] { return bus->connected(); },
                         std::chrono::milliseconds(2 * settings.reconnect_wait_ms) + 1500ms))
      << nats.log();
  EXPECT_GT(bus->connects(), before);
  std::string answer;
  EXPECT_TRUE(wait_until([&] {
    auto r = admin->request("probe.echo", "back", 300ms);
    answer = r ? r.value() : r.status().message();
    return r.is_ok();
  })) << answer;
  EXPECT_EQ(answer, "back");
}

// Whoever hears of a subscription after subscribe() returned finds it served: no retry here.
TEST(Bus, ASubscriptionIsAtTheServerWhenSubscribeReturns) {
  NatsServer nats;
  auto served = nats.client();
  auto asker = nats.client();
  for (int i = 0; i < 50; ++i) {
    std::string subject = "fresh." + std::to_string(i);
    ASSERT_TRUE(served->subscribe(subject, "", [&](Message m) { served->publish(m.reply, m.data); }).is_ok());
    auto r = asker->request(subject, "now", 2s);
    ASSERT_TRUE(r.is_ok()) << i << ": " << r.status().message();
    EXPECT_EQ(r.value(), "now");
  }
}

// --- inside nodeha-host ---

std::string probe_host(const NatsServer& nats) {
  return "[host]\nrole = \"controller\"\nnode_id = \"ctl-1\"\nplugin_path = [\"{plugins}\", \"{fixtures}\"]\n"
         "[nats]\nservers = [\"" + nats.url() + "\"]\nreconnect_wait = \"200ms\"\n"
         "[metrics]\nlisten = \"127.0.0.1:0\"\n\n[[plugin]]\nlibrary = \"bus_probe\"\n";
}

// bus_probe's answer on nodeha.probe.<suffix>, or "error: <why>".
std::string ask_probe(host::Bus& client, const std::string& suffix, const std::string& body) {
  auto r = client.request("nodeha.probe." + suffix, body, 1s);
  return r ? r.value() : "error: " + r.status().message();
}

TEST(HostBus, ServesAgainAfterTheServerClosedItsConnection) {
  NatsServer nats(NatsServerOptions{.config = kShortLines});
  HostProcess host(probe_host(nats));
  ASSERT_TRUE(host.wait_ready()) << host.log();
  auto client = nats.client();
  auto ask = [&](const std::string& suffix, const std::string& body) { return ask_probe(*client, suffix, body); };
  ASSERT_TRUE(wait_until([&] { return ask("echo", "up") == "up"; })) << host.log();
  ASSERT_TRUE(client->kv_put("probe", "k", "before").is_ok());
  ASSERT_TRUE(wait_until([&] { return ask("last", "") == "before"; })) << host.log();
  EXPECT_EQ(ask("send", std::string(5000, 'z')), "invalid");  // refused by the host, still connected
  EXPECT_EQ(host.metric("nodeha_bus_reconnects_total"), 0);

  // 1,000 bytes: under the host's 4096, over the server's 512.
  ASSERT_TRUE(client->publish("nodeha.probe.send", "probe." + std::string(1000, 'z')).is_ok());
  EXPECT_TRUE(wait_until([&] { return host.metric("nodeha_bus_closed_total{reason=\"control_line\"}") == 1; }))
      << host.log();
  EXPECT_TRUE(wait_until([&] { return host.metric("nodeha_bus_reconnects_total") >= 1 &&
                                      host.metric("nodeha_bus_connected") == 1; },
                         2 * 200ms + 1500ms))
      << host.log();
  EXPECT_THAT(host.log(), HasSubstr("maximum control line exceeded"));

  // Connected again does not yet mean the server has processed the host's resent subscriptions:
  // they travel on the host's connection, the request on another one.
  std::string again;
  EXPECT_TRUE(wait_until([&] { return (again = ask("echo", "again")) == "again"; })) << again << host.log();
  ASSERT_TRUE(client->kv_put("probe", "k", "after").is_ok());
  EXPECT_TRUE(wait_until([&] { return ask("last", "") == "after"; })) << host.log();
  EXPECT_EQ(ask("ask", "nodeha.probe.echo"), "asked") << host.log();
  EXPECT_EQ(host.metric("nodeha_bus_reconnects_total"), 1);
}

// The raw libvirt_watch / libvirt_unwatch, called as the SDK never calls them: a watch without a
// function is refused INVALID, a controller has no libvirt (NOT_FOUND), an id is unwatched once,
// an unknown id is NOT_FOUND; every context handed over is released, once.
std::string ask_libvirt_calls(const NatsServer& nats, HostProcess& host, int released) {
  auto client = nats.client();
  auto ask = [&](const std::string& suffix) { return ask_probe(*client, suffix, ""); };
  std::string calls;
  EXPECT_TRUE(wait_until([&] { return (calls = ask("libvirt_watch")).rfind("error: ", 0) != 0; })) << calls << host.log();
  std::string seen;
  EXPECT_TRUE(wait_until([&] { return (seen = ask("released")) == std::to_string(released); })) << seen;
  EXPECT_EQ(host.metric("nodeha_bus_reconnects_total"), 0);  // nothing closed the host's connection
  return calls;
}

TEST(HostLibvirtWatch, AControllerRefusesAWatchAndReleasesWhatItWasGiven) {
  NatsServer nats;
  HostProcess host(probe_host(nats));
  ASSERT_TRUE(host.wait_ready()) << host.log();
  EXPECT_EQ(ask_libvirt_calls(nats, host, 2), "invalid not_found - - not_found");
}

TEST(HostLibvirtWatch, AnAgentWatchesOnceAndUnwatchesOnce) {
  NatsServer nats;
  HostProcess host("[host]\nrole = \"agent\"\nnode_id = \"node-a\"\nplugin_path = [\"{plugins}\", \"{fixtures}\"]\n"
                   "[nats]\nservers = [\"" + nats.url() + "\"]\n[metrics]\nlisten = \"127.0.0.1:0\"\n"
                   "[libvirt]\nuri = \"test:///default\"\n\n[[plugin]]\nlibrary = \"bus_probe\"\n");
  ASSERT_TRUE(host.wait_ready()) << host.log();
  EXPECT_EQ(ask_libvirt_calls(nats, host, 2), "invalid ok ok not_found not_found");
}

}  // namespace
}  // namespace nodeha::test
