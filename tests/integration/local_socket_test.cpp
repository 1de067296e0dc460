// The node-local transport: LocalSocket on its own (routes, bad lines, timeouts, clients that
// leave, plugins that stop, concurrency, the socket file), then inside nodeha-host with a plugin
// subscribed with NODEHA_SUB_LOCAL, with NATS up, down, and never there.
#include "host_process.h"
#include "local_socket.h"
#include "nats_server.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <csignal>
#include <fstream>
#include <future>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace nodeha::test {
namespace {

using ::testing::HasSubstr;
using nlohmann::json;

// One request as `nodeha local` makes it: the line out, the reply up to EOF (newline dropped).
std::string ask_socket(const std::string& path, const std::string& line) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return "connect failed";
  }
  timeval tv{20, 0};  // a bound for a broken host; every answer here comes far sooner
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string out = line + "\n";
  // The host may refuse before reading it all (too long): then the rest cannot be sent.
  for (size_t sent = 0; sent < out.size();) {
    ssize_t n = send(fd, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  out.clear();
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  close(fd);
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

std::string request(const std::string& subject, const std::string& data) {
  return json{{"subject", subject}, {"data", data}}.dump();
}

// The error code of a host envelope, empty when the reply is not one.
std::string error_code(const std::string& reply) {
  auto j = json::parse(reply, nullptr, false);
  return j.is_object() && j.contains("error") ? j["error"].value("code", "") : "";
}

// What a plugin would get: requests handed over, kept for the test to answer.
class Inbox {
 public:
  host::LocalSocket::Deliver deliver() {
    return [this](Message m) {
      std::lock_guard lock(mu_);
      messages_.push_back(std::move(m));
      return true;
    };
  }
  bool wait_for(size_t n) {
    return wait_until([&] {
      std::lock_guard lock(mu_);
      return messages_.size() >= n;
    });
  }
  Message at(size_t i) {
    std::lock_guard lock(mu_);
    return messages_.at(i);
  }

 private:
  std::mutex mu_;
  std::vector<Message> messages_;
};

struct LocalSocketTest : ::testing::Test {
  TempDir dir;
  std::string path = dir.file("local.sock");
  Inbox inbox;
  int owner = 0;  // any address names an owner
  std::unique_ptr<host::LocalSocket> open(host::LocalSocketOptions o = {}) {
    o.path = path;
    o.prefix = "nodeha";
    auto s = host::LocalSocket::open(std::move(o));
    EXPECT_TRUE(s.is_ok()) << s.status().message();
    return s ? std::move(s.value()) : nullptr;
  }
  std::future<std::string> ask_async(const std::string& subject, const std::string& data) {
    return std::async(std::launch::async, [this, subject, data] { return ask_socket(path, request(subject, data)); });
  }
};

TEST_F(LocalSocketTest, DeliversLikeNatsAndTheReplyComesBackFromAnyThread) {
  auto sock = open();
  ASSERT_TRUE(sock->serve(&owner, "nodeha.local.echo", inbox.deliver()).is_ok());
  struct stat st{};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  auto reply = ask_async("local.echo", "hi");
  ASSERT_TRUE(inbox.wait_for(1));
  Message m = inbox.at(0);
  EXPECT_EQ(m.subject, "nodeha.local.echo");
  EXPECT_EQ(m.data, "hi");
  EXPECT_TRUE(host::LocalSocket::is_token(m.reply)) << m.reply;
  std::thread([&] { sock->respond(m.reply, R"({"ok":true,"result":"hi"})"); }).join();
  EXPECT_EQ(reply.get(), R"({"ok":true,"result":"hi"})");
}

TEST_F(LocalSocketTest, RefusesMalformedLinesAndUnknownSubjects) {
  auto sock = open();
  ASSERT_TRUE(sock->serve(&owner, "nodeha.local.echo", inbox.deliver()).is_ok());
  for (const char* line : {"not json", "[1]", R"({"subject":1})", R"({"subject":"local.echo","data":{}})",
                           R"({"subject":"local.echo","extra":1})", R"({"data":"x"})"})
    EXPECT_EQ(error_code(ask_socket(path, line)), "bad_json") << line;
  EXPECT_EQ(error_code(ask_socket(path, std::string(2 << 20, 'x'))), "bad_json");
  auto unknown = ask_socket(path, request("local.nothing", ""));
  EXPECT_EQ(error_code(unknown), "unknown_subject");
  EXPECT_THAT(unknown, HasSubstr("local.echo"));  // says what is served
  EXPECT_EQ(error_code(ask_socket(path, request("nodeha.local.echo", ""))), "unknown_subject");
}

TEST_F(LocalSocketTest, RoutesAreExactOnePerSubjectAndGoAway) {
  auto sock = open();
  EXPECT_EQ(sock->serve(&owner, "nodeha.echo", inbox.deliver()).status().code(), NODEHA_ERR_INVALID);
  EXPECT_EQ(sock->serve(&owner, "nodeha.local.>", inbox.deliver()).status().code(), NODEHA_ERR_INVALID);
  auto route = sock->serve(&owner, "nodeha.local.echo", inbox.deliver());
  ASSERT_TRUE(route.is_ok());
  EXPECT_EQ(sock->serve(&owner, "nodeha.local.echo", inbox.deliver()).status().code(), NODEHA_ERR_CONFLICT);
  sock->unserve(route.value());
  EXPECT_EQ(error_code(ask_socket(path, request("local.echo", ""))), "unknown_subject");
  // An instance that is stopping cannot take it: the client hears at once.
  ASSERT_TRUE(sock->serve(&owner, "nodeha.local.echo", [](Message) { return false; }).is_ok());
  EXPECT_EQ(error_code(ask_socket(path, request("local.echo", ""))), "unavailable");
}

TEST_F(LocalSocketTest, NoReplyInTimeIsATimeout) {
  auto sock = open({.max_wait = std::chrono::milliseconds(300)});
  ASSERT_TRUE(sock->serve(&owner, "nodeha.local.hold", inbox.deliver()).is_ok());
  EXPECT_EQ(error_code(ask_socket(path, request("local.hold", ""))), "timeout");
  sock->respond(inbox.at(0).reply, "too late");  // nobody waits: no error, no effect
  EXPECT_EQ(error_code(ask_socket(path, request("local.hold", ""))), "timeout");
}

TEST_F(LocalSocketTest, AClientThatLeavesIsForgotten) {
  auto metrics = host::Metrics::create("127.0.0.1:0");
  ASSERT_TRUE(metrics.is_ok());
  auto sock = open({.metrics = metrics.value().get()});
  ASSERT_TRUE(sock->serve(&owner, "nodeha.local.echo", inbox.deliver()).is_ok());
  {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    std::string line = request("local.echo", "bye") + "\n";
    ASSERT_EQ(write(fd, line.data(), line.size()), static_cast<ssize_t>(line.size()));
    ASSERT_TRUE(inbox.wait_for(1));
    close(fd);
  }
  auto left = [&] {
    return metric_value(http_get(metrics.value()->address(), "/metrics"), "nodeha_local_requests_total{result=\"client_left\"}");
  };
  EXPECT_TRUE(wait_until([&] { return left() == 1; }));
  sock->respond(inbox.at(0).reply, "nobody hears this");
  auto next = ask_async("local.echo", "next");
  ASSERT_TRUE(inbox.wait_for(2));
  sock->respond(inbox.at(1).reply, "answered");
  EXPECT_EQ(next.get(), "answered");
}

TEST_F(LocalSocketTest, ConcurrentRequestsEachGetTheirOwnReply) {
  auto sock = open();
  ASSERT_TRUE(sock->serve(&owner, "nodeha.local.echo", inbox.deliver()).is_ok());
  constexpr int kClients = 8;
  std::vector<std::future<std::string>> replies;
  for (int i = 0; i < kClients; ++i) replies.push_back(ask_async("local.echo", std::to_string(i)));
  ASSERT_TRUE(inbox.wait_for(kClients));
  for (int i = kClients - 1; i >= 0; --i) sock->respond(inbox.at(i).reply, "re:" + inbox.at(i).data);
  for (int i = 0; i < kClients; ++i) EXPECT_EQ(replies[i].get(), "re:" + std::to_string(i));
}

TEST_F(LocalSocketTest, WaitingClientsHearWhenThePluginStopsAndWhenTheHostStops) {
  auto sock = open();
  ASSERT_TRUE(sock->serve(&owner, "nodeha.local.hold", inbox.deliver()).is_ok());
  auto first = ask_async("local.hold", "");
  ASSERT_TRUE(inbox.wait_for(1));
  sock->abandon(&owner, "plugin holder stopped before it answered");
  auto reply = first.get();
  EXPECT_EQ(error_code(reply), "unavailable");
  EXPECT_THAT(reply, HasSubstr("plugin holder stopped"));
  EXPECT_EQ(error_code(ask_socket(path, request("local.hold", ""))), "unknown_subject");  // its routes went too

  int other = 0;
  ASSERT_TRUE(sock->serve(&other, "nodeha.local.hold", inbox.deliver()).is_ok());
  auto second = ask_async("local.hold", "");
  ASSERT_TRUE(inbox.wait_for(2));
  sock.reset();
  EXPECT_THAT(second.get(), HasSubstr("nodeha-host is stopping"));
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST_F(LocalSocketTest, StaleFileReplacedLiveSocketAndOtherFilesRefused) {
  {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);  // bound, then gone: what a crash leaves
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    close(fd);
  }
  auto sock = open();
  ASSERT_NE(sock, nullptr);
  auto second = host::LocalSocket::open({.path = path, .prefix = "nodeha"});
  ASSERT_FALSE(second.is_ok());
  EXPECT_THAT(second.status().message(), HasSubstr("another process answers on it"));
  sock.reset();
  EXPECT_FALSE(std::filesystem::exists(path));

  std::ofstream(path) << "not a socket";
  auto file = host::LocalSocket::open({.path = path, .prefix = "nodeha"});
  ASSERT_FALSE(file.is_ok());
  EXPECT_THAT(file.status().message(), HasSubstr("not a socket"));
  auto too_long = host::LocalSocket::open({.path = dir.file(std::string(120, 's')), .prefix = "nodeha"});
  EXPECT_FALSE(too_long.is_ok());
}

// --- inside nodeha-host ---

std::string agent(const std::string& nats_url, const std::string& plugins) {
  return "[host]\nrole = \"agent\"\nnode_id = \"node-a\"\nplugin_path = [\"{plugins}\", \"{fixtures}\"]\n"
         "[nats]\nservers = [\"" + nats_url + "\"]\nreconnect_wait = \"100ms\"\nconnect_timeout = \"500ms\"\n"
         "[metrics]\nlisten = \"127.0.0.1:0\"\n[libvirt]\nuri = \"test:///default\"\n\n" + plugins;
}
const char* kLocalEcho = "[[plugin]]\nlibrary = \"local_echo\"\n";

// Asks until the plugin answers (it subscribes just after the host is ready).
std::string ask_until_served(const std::string& path, const std::string& subject, const std::string& data) {
  std::string reply;
  wait_until([&] {
    reply = ask_socket(path, request(subject, data));
    return error_code(reply) != "unknown_subject" && reply != "connect failed";
  });
  return reply;
}

TEST(HostLocalSocket, ServedWithNatsThenAfterNatsStops) {
  NatsServer nats;
  HostProcess host(agent(nats.url(), kLocalEcho));
  ASSERT_TRUE(host.wait_ready()) << host.log();
  std::string sock = host.dir().file("state/local.sock");
  EXPECT_EQ(ask_until_served(sock, "local.echo", "one"), "one") << host.log();
  struct stat st{};
  ASSERT_EQ(stat(sock.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // The same handler answers over NATS.
  auto bus = nats.client();
  EXPECT_EQ(bus->request("nodeha.local.echo", "over nats", 2s).value(), "over nats");

  nats.stop();
  ASSERT_TRUE(wait_until([&] { return host.metric("nodeha_bus_connected") == 0; })) << host.log();
  EXPECT_EQ(ask_socket(sock, request("local.echo", "two")), "two");
  EXPECT_EQ(error_code(ask_socket(sock, request("local.drain", "{}"))), "unknown_subject");
  EXPECT_EQ(error_code(ask_socket(sock, "{\"subject\":")), "bad_json");
  EXPECT_EQ(host.metric("nodeha_local_requests_total{result=\"answered\"}"), 2);
  EXPECT_EQ(host.metric("nodeha_local_requests_total{result=\"bad_json\"}"), 1);

  host.process().signal(SIGTERM);
  EXPECT_EQ(host.process().wait_exit(10s), 0) << host.log();
  EXPECT_FALSE(std::filesystem::exists(sock));
}

TEST(HostLocalSocket, StartsAndServesWhenNatsWasNeverThere) {
  NatsServer nats;
  nats.stop();  // its port, with nobody on it until later
  HostProcess host(agent(nats.url(), kLocalEcho));
  ASSERT_TRUE(host.wait_ready()) << host.log();
  std::string sock = host.dir().file("state/local.sock");
  EXPECT_EQ(ask_until_served(sock, "local.echo", "offline"), "offline") << host.log();
  EXPECT_EQ(host.metric("nodeha_bus_connected"), 0);
  // The NATS subscription made while disconnected reaches the server once it is there.
  nats.start();
  auto bus = nats.client();
  std::string answer;
  EXPECT_TRUE(wait_until([&] {
    auto r = bus->request("nodeha.local.echo", "online", 500ms);
    return r && (answer = r.value()) == "online";
  }, 15s)) << host.log();
}

TEST(HostLocalSocket, ConcurrentRequestsAreServedSideBySide) {
  NatsServer nats;
  HostProcess host(agent(nats.url(), kLocalEcho));
  ASSERT_TRUE(host.wait_ready()) << host.log();
  std::string sock = host.dir().file("state/local.sock");
  ASSERT_EQ(ask_until_served(sock, "local.echo", "x"), "x");
  // The plugin answers none of them until all five are waiting at once.
  std::vector<std::future<std::string>> replies;
  for (int i = 0; i < 5; ++i)
    replies.push_back(std::async(std::launch::async, [&] { return ask_socket(sock, request("local.gather", "5")); }));
  for (auto& r : replies) EXPECT_EQ(r.get(), "done");
}

TEST(HostLocalSocket, PendingRequestHearsWhenItsPluginIsReloadedAway) {
  NatsServer nats;
  HostProcess host(agent(nats.url(), kLocalEcho));
  ASSERT_TRUE(host.wait_ready()) << host.log();
  std::string sock = host.dir().file("state/local.sock");
  ASSERT_EQ(ask_until_served(sock, "local.echo", "x"), "x");
  auto held = std::async(std::launch::async, [&] { return ask_socket(sock, request("local.hold", "")); });
  ASSERT_TRUE(wait_until([&] { return host.log().find("local.hold from") != std::string::npos; })) << host.log();
  host.rewrite(agent(nats.url(), "[[plugin]]\nlibrary = \"lifecycle\"\n"));
  host.process().signal(SIGHUP);
  auto reply = held.get();
  EXPECT_EQ(error_code(reply), "unavailable") << reply << host.log();
  EXPECT_THAT(reply, HasSubstr("plugin local_echo stopped before it answered"));
  EXPECT_EQ(error_code(ask_socket(sock, request("local.echo", ""))), "unknown_subject");
}

TEST(HostLocalSocket, ControllersOpenNoSocketAndTheFlagLeavesNatsAlone) {
  NatsServer nats;
  std::string config = agent(nats.url(), kLocalEcho);
  config.replace(config.find("\"agent\""), 7, "\"controller\"");
  HostProcess host(config);
  ASSERT_TRUE(host.wait_ready()) << host.log();
  auto bus = nats.client();
  std::string answer;
  EXPECT_TRUE(wait_until([&] {
    auto r = bus->request("nodeha.local.echo", "ctl", 500ms);
    return r && (answer = r.value()) == "ctl";
  })) << host.log();
  EXPECT_FALSE(std::filesystem::exists(host.dir().file("state/local.sock")));
}

}  // namespace
}  // namespace nodeha::test
