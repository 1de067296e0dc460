// Node monitoring end to end on a real nats-server: a controller and two agents (libvirt test
// driver) as processes with 1 s heartbeats. Stopping an agent makes its node unreachable (event,
// KV record, metric); restarting it brings it back; a failing business-network target makes
// a node `error` and its recovery `normal`; the node commands answer and refuse bad input.
#include "bus.h"
#include "cli_run.h"
#include "list_pages.h"
#include "host_process.h"
#include "nats_server.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <mutex>

namespace nodeha::test {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

// A TCP listener on loopback that the test opens and closes: netcheck's target.
class Listener {
 public:
  Listener() : port_(free_port()) { open(); }
  ~Listener() { close_it(); }
  void open() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port_));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd_, 64) != 0) ADD_FAILURE() << "listen";
  }
  void close_it() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int port() const { return port_; }

 private:
  int port_;
  int fd_ = -1;
};

std::string controller_config(const NatsServer& nats) {
  return "[host]\nrole = \"controller\"\nnode_id = \"ctl\"\nplugin_path = [\"{plugins}\"]\n"
         "[nats]\nservers = [\"" + nats.url() + "\"]\nreconnect_wait = \"100ms\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n"
         "[[plugin]]\nlibrary = \"heartbeat\"\ninterval = \"1s\"\nmisses = 3\nping_timeout = \"500ms\"\n";
}

std::string agent_config(const NatsServer& nats, const std::string& node, int target_port) {
  return "[host]\nrole = \"agent\"\nnode_id = \"" + node + "\"\nplugin_path = [\"{plugins}\"]\n"
         "[nats]\nservers = [\"" + nats.url() + "\"]\nreconnect_wait = \"100ms\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n"
         "[libvirt]\nuri = \"test:///default\"\n"
         "[[plugin]]\nlibrary = \"heartbeat\"\ninterval = \"1s\"\naddresses = { management = \"127.0.0.1\" }\n"
         "disk_path = \"/\"\n\n"
         "[[plugin]]\nlibrary = \"netcheck\"\ninterval = \"300ms\"\ntimeout = \"200ms\"\nfail_after = 2\n"
         "interfaces = [\"lo\"]\ntargets = [\"tcp:127.0.0.1:" + std::to_string(target_port) + "\"]\n";
}

class Monitoring : public ::testing::Test {
 protected:
  void SetUp() override {
    bus_ = nats_.client();
    ASSERT_TRUE(bus_);
    ASSERT_TRUE(bus_->subscribe("nodeha.evt.node.*", "", [this](Message m) {
      std::lock_guard lock(mu_);
      events_.push_back(json::parse(m.data));
    }).is_ok());
  }

  json command(const std::string& op, const std::string& body) {
    auto r = bus_->request("nodeha.cmd." + op, body, 5s);
    EXPECT_TRUE(r.is_ok()) << r.status().message();
    return r ? json::parse(r.value()) : json();
  }
  std::string monitor_state(const std::string& node) {
    auto r = bus_->request("nodeha.cmd.node.show", json{{"node", node}}.dump(), 2s);
    if (!r) return "";
    auto j = json::parse(r.value());
    return j["ok"] ? j["result"].value("monitor", "") : "";
  }
  std::string stored_state(const std::string& node) {
    auto e = bus_->kv_get("nodes", node);
    return e ? json::parse(e->value).value("monitor", "") : "";
  }
  bool saw_event(const std::string& node, const std::string& to) {
    std::lock_guard lock(mu_);
    for (const auto& e : events_)
      if (e["node"] == node && e["event"] == "monitor" && e["to"] == to) return true;
    return false;
  }

  json last_event(const std::string& node, const std::string& to) {
    std::lock_guard lock(mu_);
    for (auto e = events_.rbegin(); e != events_.rend(); ++e)
      if ((*e)["node"] == node && (*e)["event"] == "monitor" && (*e)["to"] == to) return *e;
    return json();
  }

  NatsServer nats_;
  std::unique_ptr<host::Bus> bus_;
  std::mutex mu_;
  std::vector<json> events_;
};

TEST_F(Monitoring, AgentStopsAndReturns) {
  Listener target;
  HostProcess ctl(controller_config(nats_));
  ASSERT_TRUE(ctl.wait_ready()) << ctl.log();
  auto a = std::make_unique<HostProcess>(agent_config(nats_, "node-a", target.port()));
  HostProcess b(agent_config(nats_, "node-b", target.port()));
  ASSERT_TRUE(a->wait_ready()) << a->log();
  ASSERT_TRUE(b.wait_ready()) << b.log();
  ASSERT_TRUE(wait_until([&] { return monitor_state("node-a") == "normal" && monitor_state("node-b") == "normal"; }))
      << ctl.log();
  EXPECT_TRUE(wait_until([&] { return stored_state("node-a") == "normal"; }));

  auto list = command("node.list", "{}");
  ASSERT_TRUE(list["ok"]) << list;
  ASSERT_EQ(list["result"]["nodes"].size(), 2u);
  auto first = list["result"]["nodes"][0];
  EXPECT_EQ(first["node"], "node-a");
  EXPECT_EQ(first["management"], "enabled");
  EXPECT_GT(first["capacity"]["memory_mib"].get<int>(), 0);  // from the test driver's node info
  EXPECT_EQ(first["addresses"]["management"], "127.0.0.1");
  EXPECT_EQ(first["vms"].size(), 1u);  // test:///default has one domain, "test"

  // The agent stops: unreachable after 3 silent intervals and a failed ping-back.
  auto stopped = std::chrono::steady_clock::now();
  a.reset();
  ASSERT_TRUE(wait_until([&] { return saw_event("node-a", "unreachable"); }, 10s)) << ctl.log();
  auto detection = std::chrono::steady_clock::now() - stopped;
  EXPECT_LT(detection, 6s);
  EXPECT_TRUE(wait_until([&] { return stored_state("node-a") == "unreachable"; }));
  EXPECT_EQ(ctl.metric("nodeha_node_monitor_state{node=\"node-a\",state=\"unreachable\"}"), 1);
  EXPECT_EQ(ctl.metric("nodeha_node_monitor_state{node=\"node-a\",state=\"normal\"}"), 0);
  EXPECT_EQ(monitor_state("node-b"), "normal");  // the other node is untouched

  HostProcess again(agent_config(nats_, "node-a", target.port()));
  ASSERT_TRUE(wait_until([&] { return saw_event("node-a", "normal"); }, 10s)) << ctl.log();
  EXPECT_TRUE(wait_until([&] { return stored_state("node-a") == "normal"; }));
  EXPECT_TRUE(wait_until([&] { return ctl.metric("nodeha_node_monitor_state{node=\"node-a\",state=\"normal\"}") == 1; }));
  EXPECT_GE(ctl.metric("nodeha_node_state_changes_total{state=\"unreachable\"}"), 1);
}

TEST_F(Monitoring, BusinessNetworkFailureMakesTheNodeErrorAndBack) {
  Listener target;
  HostProcess ctl(controller_config(nats_));
  ASSERT_TRUE(ctl.wait_ready()) << ctl.log();
  HostProcess a(agent_config(nats_, "node-a", target.port()));
  ASSERT_TRUE(a.wait_ready()) << a.log();
  ASSERT_TRUE(wait_until([&] { return monitor_state("node-a") == "normal"; })) << ctl.log();

  target.close_it();
  ASSERT_TRUE(wait_until([&] { return saw_event("node-a", "error"); }, 10s)) << ctl.log() << a.log();
  auto show = command("node.show", R"({"node":"node-a"})");
  EXPECT_EQ(show["result"]["monitor"], "error");
  EXPECT_THAT(show["result"]["reason"].get<std::string>(), HasSubstr("netcheck"));
  EXPECT_THAT(show["result"]["reason"].get<std::string>(), HasSubstr("tcp:127.0.0.1:" + std::to_string(target.port())));
  EXPECT_TRUE(wait_until([&] { return a.metric("nodeha_netcheck_up{interface=\"lo\",target=\"tcp:127.0.0.1:" +
                                               std::to_string(target.port()) + "\"}") == 0; }));
  EXPECT_EQ(a.metric("nodeha_netcheck_up{interface=\"lo\",target=\"link\"}"), 1);
  EXPECT_TRUE(wait_until([&] { return stored_state("node-a") == "error"; }));
  // The event's evidence is the failing check's own words, and who decided.
  json error_event = last_event("node-a", "error");
  EXPECT_EQ(error_event["evidence"]["summary"], show["result"]["reason"]) << error_event;
  EXPECT_EQ(error_event["evidence"]["facts"]["checks"], show["result"]["reason"]) << error_event;
  EXPECT_EQ(error_event["evidence"]["by"], "ctl") << error_event;

  target.open();
  ASSERT_TRUE(wait_until([&] { return saw_event("node-a", "normal"); }, 10s)) << ctl.log();
  EXPECT_EQ(monitor_state("node-a"), "normal");
}

TEST_F(Monitoring, NodeCommandsAndTheirRefusals) {
  Listener target;
  HostProcess ctl(controller_config(nats_));
  ASSERT_TRUE(ctl.wait_ready()) << ctl.log();
  HostProcess a(agent_config(nats_, "node-a", target.port()));
  ASSERT_TRUE(wait_until([&] { return monitor_state("node-a") == "normal"; })) << ctl.log();

  auto off = command("node.disable", R"({"node":"node-a"})");
  ASSERT_TRUE(off["ok"]) << off;
  EXPECT_EQ(off["result"]["management"], "disabled");
  EXPECT_EQ(off["result"]["changed"], true);
  EXPECT_EQ(json::parse(bus_->kv_get("nodes", "node-a")->value)["management"], "disabled");
  EXPECT_TRUE(wait_until([&] { return ctl.metric("nodeha_node_management_state{node=\"node-a\",state=\"disabled\"}") == 1; }));
  EXPECT_EQ(command("node.disable", R"({"node":"node-a"})")["result"]["changed"], false);
  auto on = command("node.enable", R"({"node":"node-a"})");
  EXPECT_EQ(on["result"]["management"], "enabled");
  EXPECT_EQ(json::parse(bus_->kv_get("nodes", "node-a")->value)["management"], "enabled");

  auto code = [&](const std::string& op, const std::string& body) {
    auto j = command(op, body);
    EXPECT_FALSE(j["ok"]) << j;
    return j["error"]["code"].get<std::string>();
  };
  EXPECT_EQ(code("node.show", R"({"node":"node-zz"})"), "unknown_node");
  EXPECT_EQ(code("node.enable", R"({"node":"node-zz"})"), "unknown_node");
  EXPECT_EQ(code("node.show", R"({"node":)"), "bad_json");
  EXPECT_EQ(code("node.show", R"({"node":"node-a","force":true})"), "unknown_field");
  EXPECT_EQ(code("node.disable", R"({"node":7})"), "bad_type");
  EXPECT_EQ(code("node.disable", R"({})"), "missing_field");
  EXPECT_EQ(code("node.list", R"({"all":1})"), "unknown_field");
  // Refused commands changed nothing.
  EXPECT_EQ(json::parse(bus_->kv_get("nodes", "node-a")->value)["management"], "enabled");
}

// 4,000 nodes' records are more than nats-server's 1 MiB max_payload for one reply: node.list
// answers in pages by node id, each under the limit, every node in exactly one page, whole records
// or (`ages`) only the heartbeat ages; the CLI asks for every page and shows them all.
TEST_F(Monitoring, FourThousandNodesComeInPagesAndTheCliShowsThemAll) {
  constexpr size_t kCount = 4000;
  HostProcess ctl(controller_config(nats_));
  ASSERT_TRUE(ctl.wait_ready());
  std::vector<std::string> ids;
  for (size_t i = 0; i < kCount; ++i) {
    std::string id = "node-" + std::to_string(i);
    ids.push_back(id);
    // As the controller writes them (node_record.h), about 400 bytes.
    json record = {{"node", id},
                   {"management", "enabled"},
                   {"monitor", "normal"},
                   {"reason", ""},
                   {"boot_id", "6f1c2a9e-8a52-4a0f-9a61-0c3e5d7b" + std::to_string(1000 + i % 9000)},
                   {"interval_ms", 1000},
                   {"capacity", {{"vcpus", 64}, {"memory_mib", 262144}, {"disk_gib", 2000}}},
                   {"use", {{"vcpus", 12}, {"memory_mib", 40960}, {"disk_gib", 300}}},
                   {"addresses", {{"management", "10.1.2.3"}, {"business", "10.9.2.3"}, {"storage", "10.5.2.3"}}},
                   {"checks", json::array({{{"name", "netcheck"}, {"ok", true}}})},
                   {"last_heartbeat", 1765000000000},
                   {"lock", nullptr}};
    ASSERT_TRUE(bus_->kv_put("nodes", id, record.dump())) << i;
  }
  std::sort(ids.begin(), ids.end());

  // Every page, once the controller's watch has delivered every record.
  ListPages pages;
  ASSERT_TRUE(wait_until([&] {
    pages = list_pages(*bus_, "nodeha.cmd.node.list", json::object(), "nodes");
    return pages.ok && pages.items.size() == kCount;
  }, 20s)) << pages.items.size() << " " << pages.error << "\n" << ctl.log();
  EXPECT_GT(pages.pages, 1);
  EXPECT_LT(pages.largest, 1u << 20);
  std::vector<std::string> listed;
  for (const auto& n : pages.items) listed.push_back(n["node"]);
  EXPECT_EQ(listed, ids);  // each once, in id order

  // What the web page polls: only each node's id and heartbeat age, fewer pages, every node once.
  auto ages = list_pages(*bus_, "nodeha.cmd.node.list", json{{"ages", true}}, "nodes");
  ASSERT_TRUE(ages.ok) << ages.error;
  EXPECT_LT(ages.pages, pages.pages);
  std::vector<std::string> aged;
  for (const auto& n : ages.items) {
    aged.push_back(n["node"]);
    EXPECT_EQ(n.size(), 2u) << n;
    EXPECT_GT(n["heartbeat_age_s"].get<double>(), 0) << n;  // from its record's last_heartbeat
  }
  EXPECT_EQ(aged, ids);
  EXPECT_EQ(command("node.list", R"({"ages":"yes"})")["error"]["code"], "bad_type");

  auto end = command("node.list", json{{"after", ids.back()}}.dump());
  EXPECT_EQ(end["result"]["nodes"], json::array()) << end;
  EXPECT_FALSE(end["result"].contains("next"));
  EXPECT_EQ(command("node.list", json{{"after", std::string(300, 'n')}}.dump())["error"]["code"], "bad_value");
  EXPECT_EQ(command("node.list", R"({"after":[]})")["error"]["code"], "bad_type");
  EXPECT_EQ(command("node.list", R"({"before":"a"})")["error"]["code"], "unknown_field");

  TempDir dir;
  auto cli = run_cli({"--server", nats_.url(), "--json", "node", "list"}, dir);
  ASSERT_EQ(cli.status, 0) << cli.err;
  std::vector<std::string> shown;
  const auto doc = cli.doc();
  for (const auto& n : doc["nodes"]) shown.push_back(n["node"]);
  EXPECT_EQ(shown, ids);
  EXPECT_FALSE(doc.contains("next"));
  auto table = run_cli({"--server", nats_.url(), "node", "list"}, dir);
  ASSERT_EQ(table.status, 0) << table.err;
  EXPECT_EQ(std::count(table.out.begin(), table.out.end(), '\n'), static_cast<long>(kCount + 1));  // a header, a line a node
}

TEST_F(Monitoring, ControllerRestartGivesKnownNodesAFullWindow) {
  Listener target;
  auto ctl = std::make_unique<HostProcess>(controller_config(nats_));
  ASSERT_TRUE(ctl->wait_ready());
  {
    HostProcess a(agent_config(nats_, "node-a", target.port()));
    ASSERT_TRUE(wait_until([&] { return stored_state("node-a") == "normal"; })) << ctl->log();
  }
  // node-a's agent is gone and the controller restarts: node-a is not unreachable at once, but
  // after one full window and a ping-back.
  ctl.reset();
  auto restarted = std::chrono::steady_clock::now();
  HostProcess ctl2(controller_config(nats_));
  ASSERT_TRUE(ctl2.wait_ready());
  ASSERT_TRUE(wait_until([&] { return saw_event("node-a", "unreachable"); }, 15s)) << ctl2.log();
  EXPECT_GE(std::chrono::steady_clock::now() - restarted, 3s);
}

}  // namespace
}  // namespace nodeha::test
