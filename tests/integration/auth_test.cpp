// The bus's security, against a real nats-server running the config `nodeha auth init` made
// (TLS with its CA, one nkey user per identity with its permissions). Each denial that
// docs/security.md claims is shown two ways: the server refuses it (the client gets a
// "Permissions Violation" naming the subject, or cannot connect at all), and nothing changed (a
// subscriber allowed on the target subject got nothing; a KV value kept its revision). Each
// test also shows the same subscriber does get what an allowed identity sends, so a silent
// subscriber means something.
#include "bus.h"
#include "bus_security.h"
#include "cli_run.h"
#include "credential.h"
#include "host_process.h"
#include "nats_server.h"
#include "nkey.h"

#include <nats/nats.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>

namespace nodeha::test {
namespace {

using ::testing::HasSubstr;

// A raw cnats client with one identity's credential: what any program holding that file can do,
// not only nodeha's own code. Collects the server's asynchronous errors.
class Client {
 public:
  Client(const std::string& url, const std::string& creds, const std::string& ca) {
    natsOptions_Create(&opts_);
    natsOptions_SetURL(opts_, url.c_str());
    natsOptions_SetTimeout(opts_, 2000);
    natsOptions_SetErrorHandler(opts_, &Client::on_error, this);
    auto login = auth::BusLogin::apply(opts_, {creds, ca, "", ""});
    if (!login) {
      error_ = login.status().message();
      return;
    }
    login_ = std::move(login.value());
    if (natsStatus s = static_cast<natsStatus>(auth::connect_with_retry(&conn_, opts_)); s != NATS_OK) {
      const char* text = nats_GetLastError(nullptr);
      error_ = text ? text : natsStatus_GetText(s);
      conn_ = nullptr;
    }
  }
  ~Client() {
    for (auto* s : subs_) natsSubscription_Destroy(s);
    natsConnection_Destroy(conn_);
    natsOptions_Destroy(opts_);
  }
  bool connected() const { return conn_ != nullptr; }
  const std::string& connect_error() const { return error_; }

  void publish(const std::string& subject, const std::string& data = "{}") {
    EXPECT_EQ(natsConnection_Publish(conn_, subject.c_str(), data.data(), static_cast<int>(data.size())), NATS_OK);
  }
  // The reply's data, or nullopt with no reply within `timeout`.
  std::optional<std::string> request(const std::string& subject, std::chrono::milliseconds timeout = 1s,
                                     const std::string& body = "{}") {
    natsMsg* reply = nullptr;
    if (natsConnection_RequestString(&reply, conn_, subject.c_str(), body.c_str(), timeout.count()) != NATS_OK)
      return std::nullopt;
    std::string data(natsMsg_GetData(reply), natsMsg_GetDataLength(reply));
    natsMsg_Destroy(reply);
    return data;
  }
  natsSubscription* subscribe(const std::string& subject) {
    natsSubscription* sub = nullptr;
    EXPECT_EQ(natsConnection_SubscribeSync(&sub, conn_, subject.c_str()), NATS_OK);
    subs_.push_back(sub);
    EXPECT_EQ(natsConnection_FlushTimeout(conn_, 2000), NATS_OK);  // registered before anyone publishes
    return sub;
  }
  // Answers every request on `subject` with `reply` (from cnats' thread).
  void serve(const std::string& subject, const std::string& reply) {
    natsSubscription* sub = nullptr;
    reply_ = reply;
    auto on_request = [](natsConnection* nc, natsSubscription*, natsMsg* m, void* self) {
      const std::string& r = static_cast<Client*>(self)->reply_;
      if (natsMsg_GetReply(m)) natsConnection_Publish(nc, natsMsg_GetReply(m), r.data(), static_cast<int>(r.size()));
      natsMsg_Destroy(m);
    };
    EXPECT_EQ(natsConnection_Subscribe(&sub, conn_, subject.c_str(), on_request, this), NATS_OK);
    subs_.push_back(sub);
    EXPECT_EQ(natsConnection_FlushTimeout(conn_, 2000), NATS_OK);
  }
  // Messages `sub` holds once every message the server routed to it before now has arrived
  // (a PING/PONG round trip orders them).
  int delivered(natsSubscription* sub) {
    EXPECT_EQ(natsConnection_FlushTimeout(conn_, 2000), NATS_OK);
    int msgs = 0, bytes = 0;
    natsSubscription_GetPending(sub, &msgs, &bytes);
    return msgs;
  }
  // Waits for the server's "Permissions Violation" naming `subject`.
  bool refused(const std::string& subject) {
    return wait_until([&] {
      std::lock_guard lock(mu_);
      for (const auto& e : errors_)
        if (e.find("Permissions Violation") != std::string::npos && e.find("\"" + subject + "\"") != std::string::npos)
          return true;
      return false;
    }, 5s);
  }

 private:
  static void on_error(natsConnection* nc, natsSubscription*, natsStatus, void* self) {
    const char* text = nullptr;
    natsConnection_GetLastError(nc, &text);
    auto* c = static_cast<Client*>(self);
    std::lock_guard lock(c->mu_);
    c->errors_.push_back(text ? text : "");
  }
  natsOptions* opts_ = nullptr;
  natsConnection* conn_ = nullptr;
  std::unique_ptr<auth::BusLogin> login_;
  std::vector<natsSubscription*> subs_;
  std::string error_, reply_;
  std::mutex mu_;
  std::vector<std::string> errors_;
};

class BusAuth : public ::testing::Test {
 protected:
  void SetUp() override {
    security_ = std::make_unique<BusSecurity>(
        dir_.file("bus"), BusIdentities{.nodes = {"node-1", "node-2"}, .controllers = {"ctl-1"}, .admins = {"alice"},
                                        .viewers = {"bob"}});
    ASSERT_TRUE(security_->ok()) << security_->error();
    NatsServerOptions o;
    o.include = security_->server_config();
    nats_ = std::make_unique<NatsServer>(o);
  }
  void TearDown() override {
    if (HasFailure() && nats_) std::cerr << "nats-server log:\n" << nats_->log();
  }
  std::string cred(const std::string& name) const { return security_->credential(name); }
  std::string ca() const { return security_->ca(); }
  // A host's config tables, logged in as `name` over TLS.
  std::string secured(const std::string& role, const std::string& name) const {
    std::string t = host_tables(role, name, nats_->url());
    size_t at = t.find("[nats]\n") + 7;
    return t.insert(at, security_->host_keys(name));
  }
  // Agent `node` on a libvirt test driver node with no domains, heartbeat and vms plugins.
  std::string agent_config(const std::string& node) {
    std::string node_file = dir_.write(node + ".xml", "<node><cpu><mhz>2000</mhz><model>x86_64</model><nodes>1</nodes>"
                                                      "<sockets>1</sockets><cores>4</cores><threads>1</threads><active>4"
                                                      "</active></cpu><memory>8388608</memory></node>\n");
    return secured("agent", node) + "[libvirt]\nuri = \"test://" + node_file + "\"\n" +
           "[[plugin]]\nlibrary = \"heartbeat\"\ninterval = \"1s\"\ndisk_path = \"/\"\n"
           "[[plugin]]\nlibrary = \"vms\"\nsync_every = \"300ms\"\n";
  }
  // The lines of the server's log that report a permissions violation.
  std::vector<std::string> violations() const {
    std::istringstream log(nats_->log());
    std::vector<std::string> out;
    for (std::string line; std::getline(log, line);)
      if (line.find("Violation") != std::string::npos) out.push_back(line);
    return out;
  }
  std::unique_ptr<Client> as(const std::string& name) {
    auto c = std::make_unique<Client>(nats_->url(), cred(name), ca());
    EXPECT_TRUE(c->connected()) << name << ": " << c->connect_error();
    return c;
  }
  // The host's own Bus, logged in as `name` (the path nodeha-host takes).
  std::unique_ptr<host::Bus> bus_as(const std::string& name) {
    auto bus = host::Bus::create(security_->settings(nats_->settings(), name), "test-" + name, nullptr);
    EXPECT_TRUE(bus) << bus.status().message();
    if (!bus) return nullptr;
    EXPECT_TRUE(bus.value()->wait_connected(5s)) << name;
    return std::move(bus.value());
  }

  TempDir dir_;
  std::unique_ptr<BusSecurity> security_;
  std::unique_ptr<NatsServer> nats_;
};

TEST_F(BusAuth, AnAgentCannotPublishACommand) {
  auto controller = as("ctl-1"), agent = as("node-1"), admin = as("alice");
  natsSubscription* drains = controller->subscribe("nodeha.cmd.node.drain");
  agent->publish("nodeha.cmd.node.drain", R"({"node":"node-2"})");
  EXPECT_TRUE(agent->refused("nodeha.cmd.node.drain"));
  EXPECT_EQ(controller->delivered(drains), 0);
  admin->publish("nodeha.cmd.node.drain", R"({"node":"node-2"})");
  EXPECT_TRUE(wait_until([&] { return controller->delivered(drains) == 1; }));
}

TEST_F(BusAuth, AnAgentCannotSendAnotherNodesHeartbeat) {
  auto controller = as("ctl-1"), agent = as("node-1");
  natsSubscription* heartbeats = controller->subscribe("nodeha.hb.*");
  agent->publish("nodeha.hb.node-2");
  EXPECT_TRUE(agent->refused("nodeha.hb.node-2"));
  EXPECT_EQ(controller->delivered(heartbeats), 0);
  agent->publish("nodeha.hb.node-1");  // its own: allowed
  EXPECT_TRUE(wait_until([&] { return controller->delivered(heartbeats) == 1; }));
}

TEST_F(BusAuth, AnAgentCannotWriteATaskNorReadOthersReplies) {
  auto controller = bus_as("ctl-1");
  ASSERT_TRUE(controller);
  auto written = controller->kv_create("tasks", "t-1", R"({"state":"running"})");
  ASSERT_TRUE(written) << written.status().message();
  auto agent = as("node-1");
  agent->publish("$KV.tasks.t-1", R"({"state":"done"})");  // what kv put sends
  EXPECT_TRUE(agent->refused("$KV.tasks.t-1"));
  agent->subscribe("_INBOX_ctl-1.>");
  EXPECT_TRUE(agent->refused("_INBOX_ctl-1.>"));
  agent->subscribe("nodeha.agent.node-2.>");
  EXPECT_TRUE(agent->refused("nodeha.agent.node-2.>"));
  auto now = controller->kv_get("tasks", "t-1");
  ASSERT_TRUE(now) << now.status().message();
  EXPECT_EQ(now->value, R"({"state":"running"})");
  EXPECT_EQ(now->revision, written.value());
}

// The vms bucket: an agent writes no record itself. Its own node's records go through the
// controller's record desk (docs/node-operations.md, "Who writes what"), on a subject only its
// node may publish on; what a stolen node-1 credential asks there of node-2's VM, the controller
// refuses. node-2's record stays as it was throughout.
TEST_F(BusAuth, AnAgentWritesOnlyItsOwnNodesVmRecordsAndSpeaksForItsOwnNode) {
  const std::string vm = "0a000000-0000-4000-8000-000000000002";
  const nlohmann::json stored = {{"uuid", vm}, {"name", "db-1"}, {"node", "node-2"}, {"generation", 1}, {"desired", "running"}};
  auto seeder = bus_as("ctl-1");
  ASSERT_TRUE(seeder);
  auto rev = seeder->kv_create("vms", vm, stored.dump());
  ASSERT_TRUE(rev) << rev.status().message();
  HostProcess ctl(host_tables("controller", "ctl-1", nats_->url()) + "[[plugin]]\nlibrary = \"vms\"\n",
                  {"nats.credentials=" + cred("ctl-1"), "nats.tls_ca=" + ca()});
  ASSERT_TRUE(ctl.wait_ready()) << ctl.log();
  auto node2 = as("node-2");
  node2->serve("nodeha.agent.node-2.vm.list",
               nlohmann::json{{"ok", true}, {"result", {{"vms", {{{"uuid", vm}, {"state", "running"}}}}}}}.dump());
  auto node1 = as("node-1");

  nlohmann::json claimed = stored;
  claimed["node"] = "node-1";
  claimed["generation"] = 2;
  node1->publish("$KV.vms." + vm, claimed.dump());  // what a kv put sends
  EXPECT_TRUE(node1->refused("$KV.vms." + vm));
  const nlohmann::json as_node2 = {{"uuid", vm}, {"revision", rev.value()}, {"remove", true}};
  EXPECT_FALSE(node1->request("nodeha.ctl.node-2.vm.write", 1s, as_node2.dump()));
  EXPECT_TRUE(node1->refused("nodeha.ctl.node-2.vm.write"));
  auto desk = node1->request("nodeha.ctl.node-1.vm.write", 5s,
                             nlohmann::json{{"uuid", vm}, {"revision", rev.value()}, {"record", claimed}}.dump());
  ASSERT_TRUE(desk);
  EXPECT_THAT(*desk, HasSubstr("\"code\":\"claim_refused\""));

  auto now = seeder->kv_get("vms", vm);
  ASSERT_TRUE(now) << now.status().message();
  EXPECT_EQ(now->revision, rev.value());
  EXPECT_EQ(nlohmann::json::parse(now->value), stored);

  // Events too: node-1 cannot publish on evt.vm.<uuid>; what it says through its desk is relayed
  // as said by node-1, whatever node it names.
  auto admin = as("alice");
  natsSubscription* events = admin->subscribe("nodeha.evt.vm.>");
  node1->publish("nodeha.evt.vm." + vm, R"({"event":"stale_copy_removed","node":"node-2"})");
  EXPECT_TRUE(node1->refused("nodeha.evt.vm." + vm));
  node1->publish("nodeha.ctl.node-1.vm.event",
                 nlohmann::json{{"uuid", vm}, {"event", {{"event", "restarted"}, {"node", "node-2"}}}}.dump());
  EXPECT_TRUE(wait_until([&] { return admin->delivered(events) == 1; }));
  natsMsg* relayed = nullptr;
  ASSERT_EQ(natsSubscription_NextMsg(&relayed, events, 1000), NATS_OK);
  auto said = nlohmann::json::parse(std::string(natsMsg_GetData(relayed), natsMsg_GetDataLength(relayed)));
  EXPECT_EQ(std::string(natsMsg_GetSubject(relayed)), "nodeha.evt.vm." + vm);
  natsMsg_Destroy(relayed);
  EXPECT_EQ(said["node"], "node-1") << said;
  EXPECT_EQ(said["event"], "restarted") << said;
}

TEST_F(BusAuth, OnlyControllersReachAnAgent) {
  auto node = as("node-1"), controller = as("ctl-1");
  natsSubscription* requests = node->subscribe("nodeha.agent.node-1.>");
  for (const std::string who : {"alice", "bob", "node-2"}) {
    auto caller = as(who);
    for (const std::string op : {"vm.define", "vm.start", "vm.stop"}) {
      std::string subject = "nodeha.agent.node-1." + op;
      EXPECT_FALSE(caller->request(subject, 300ms)) << who << " " << op;
      EXPECT_TRUE(caller->refused(subject)) << who << " " << op;
    }
  }
  EXPECT_EQ(node->delivered(requests), 0);
  controller->publish("nodeha.agent.node-1.vm.start", R"({"uuid":"x"})");
  EXPECT_TRUE(wait_until([&] { return node->delivered(requests) == 1; }));
}

// The host's asynchronous requests (the controller's pings) wait for replies under the
// controller's own inbox prefix, the only inbox its permissions let it read.
TEST_F(BusAuth, TheControllersAsyncRepliesComeToItsOwnInbox) {
  auto node = as("node-1");
  node->serve("nodeha.agent.node-1.ping", R"({"ok":true})");
  auto controller = bus_as("ctl-1");
  ASSERT_TRUE(controller);
  std::mutex mu;
  std::optional<std::string> answer;
  auto sent = controller->request_async("nodeha.agent.node-1.ping", "{}", [&](nodeha_status, std::string body) {
    std::lock_guard lock(mu);
    answer = std::move(body);
  });
  ASSERT_TRUE(sent) << sent.status().message();
  EXPECT_TRUE(wait_until([&] {
    std::lock_guard lock(mu);
    return answer == R"({"ok":true})";
  }));
}

TEST_F(BusAuth, AViewerListsButCannotDrain) {
  auto controller = as("ctl-1"), viewer = as("bob");
  natsSubscription* drains = controller->subscribe("nodeha.cmd.node.drain");
  controller->serve("nodeha.cmd.node.list", R"({"ok":true,"result":{"nodes":[]}})");
  EXPECT_FALSE(viewer->request("nodeha.cmd.node.drain", 300ms));
  EXPECT_TRUE(viewer->refused("nodeha.cmd.node.drain"));
  EXPECT_EQ(controller->delivered(drains), 0);
  // Maintenance disables a node and moves its VMs: the viewer's publish is refused by the server.
  natsSubscription* maintenances = controller->subscribe("nodeha.cmd.node.maintenance");
  EXPECT_FALSE(viewer->request("nodeha.cmd.node.maintenance", 300ms));
  EXPECT_TRUE(viewer->refused("nodeha.cmd.node.maintenance"));
  EXPECT_EQ(controller->delivered(maintenances), 0);
  auto listed = viewer->request("nodeha.cmd.node.list", 2s);  // the reply comes back to its own inbox
  ASSERT_TRUE(listed);
  EXPECT_THAT(*listed, HasSubstr("\"ok\":true"));
}

TEST_F(BusAuth, NoCredentialNoStrangerAndNoCaAreRefusedAtConnect) {
  Client anonymous(nats_->url(), "", ca());
  EXPECT_FALSE(anonymous.connected());
  EXPECT_THAT(anonymous.connect_error(), HasSubstr("Authorization Violation"));

  auto stranger_key = auth::generate_user_nkey();  // a well-formed key the server does not know
  ASSERT_TRUE(stranger_key);
  std::string stranger = dir_.file("stranger.cred");
  {
    std::ofstream(stranger) << auth::format_credential({"node-1", "agent", "_INBOX_node-1", stranger_key.value().seed});
  }
  chmod(stranger.c_str(), 0600);
  Client impostor(nats_->url(), stranger, ca());
  EXPECT_FALSE(impostor.connected());
  EXPECT_THAT(impostor.connect_error(), HasSubstr("Authorization Violation"));

  Client without_ca(nats_->url(), cred("alice"), "");
  EXPECT_FALSE(without_ca.connected());
  EXPECT_THAT(without_ca.connect_error(), HasSubstr("certificate"));
}

TEST_F(BusAuth, ACredentialOthersCanReadIsRefusedBeforeConnecting) {
  chmod(cred("alice").c_str(), 0644);
  Client c(nats_->url(), cred("alice"), ca());
  EXPECT_FALSE(c.connected());
  EXPECT_THAT(c.connect_error(), HasSubstr("chmod 600"));
}

// The whole path: nodeha-host agent and controller log in with their generated credentials over
// TLS, the heartbeat reaches the controller, and operators see the node with the CLI.
TEST_F(BusAuth, HostsAndCliWorkWithTheirCredentials) {
  HostProcess controller(secured("controller", "ctl-1") + controller_plugin_tables());
  ASSERT_TRUE(controller.wait_ready()) << controller.log();
  // Agents may not create buckets (docs/security.md, known gaps): the controller's plugins do.
  auto observer = as("ctl-1");
  for (const std::string bucket : {"nodes", "vms", "tasks"})
    EXPECT_TRUE(wait_until([&] {
      auto info = observer->request("$JS.API.STREAM.INFO.KV_" + bucket);
      return info && info->find("\"config\"") != std::string::npos;
    })) << bucket << "\n" << controller.log();
  HostProcess agent(agent_config("node-1"));
  ASSERT_TRUE(agent.wait_ready()) << agent.log();

  auto node_state = [&](const std::string& who) {
    CliRun r = run_cli({"--server", nats_->url(), "--creds", cred(who), "--tls-ca", ca(), "--json", "node", "show", "node-1"},
                       dir_);
    return r.status == 0 ? r.doc().value("monitor", "") : "";
  };
  EXPECT_TRUE(wait_until([&] { return node_state("alice") == "normal"; }, 15s))
      << controller.log() << agent.log();

  // The viewer, its files named by the environment: list works, a drain is refused by the server.
  setenv("NODEHA_CREDS", cred("bob").c_str(), 1);
  setenv("NODEHA_TLS_CA", ca().c_str(), 1);
  CliRun list = run_cli({"--server", nats_->url(), "--json", "node", "list"}, dir_);
  CliRun drain = run_cli({"--server", nats_->url(), "--timeout", "2s", "node", "drain", "node-1", "--yes"}, dir_);
  unsetenv("NODEHA_CREDS");
  unsetenv("NODEHA_TLS_CA");
  EXPECT_EQ(list.status, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr("node-1"));
  EXPECT_EQ(drain.status, 2) << drain.out << drain.err;  // refused, nothing done
  EXPECT_THAT(drain.err, HasSubstr("refused nodeha.cmd.node.drain to your credential"));
  CliRun after = run_cli({"--server", nats_->url(), "--creds", cred("alice"), "--tls-ca", ca(), "--json", "node", "show",
                          "node-1"},
                         dir_);
  EXPECT_EQ(after.doc().value("management", ""), "enabled") << after.out;
  // An admin's dry run: the controller keeps the plan in its bucket `plans` (docs/security.md).
  CliRun plan = run_cli({"--server", nats_->url(), "--creds", cred("alice"), "--tls-ca", ca(), "--json", "node", "drain",
                         "node-1", "--dry-run"},
                        dir_);
  EXPECT_EQ(plan.doc().value("plan_id", "").size(), 32u) << plan.out << plan.err << controller.log();
  // The hosts ran on exactly the permissions they were given: the server refused only the drain.
  auto refused = violations();
  ASSERT_EQ(refused.size(), 1u) << testing::PrintToString(refused);
  EXPECT_THAT(refused[0], HasSubstr("Subject \"nodeha.cmd.node.drain\""));
}

// History under auth: the admin's disable names the admin (the server-enforced inbox prefix of
// its request); the viewer reads the node's history from the events stream; an agent may not read
// it, and nobody may make a consumer on it (its deliveries would go wherever the maker says).
TEST_F(BusAuth, AViewerReadsANodesHistoryAnAgentCannot) {
  HostProcess controller(secured("controller", "ctl-1") + controller_plugin_tables());
  ASSERT_TRUE(controller.wait_ready()) << controller.log();
  HostProcess agent(agent_config("node-1"));
  ASSERT_TRUE(agent.wait_ready()) << agent.log();
  auto cli_as = [&](const std::string& who, std::vector<std::string> args) {
    args.insert(args.begin(), {"--server", nats_->url(), "--creds", cred(who), "--tls-ca", ca()});
    return run_cli(args, dir_);
  };
  ASSERT_TRUE(wait_until([&] { return cli_as("alice", {"node", "disable", "node-1", "--yes"}).status == 0; }, 15s))
      << controller.log();
  CliRun history;
  EXPECT_TRUE(wait_until([&] {
    history = cli_as("bob", {"node", "history", "node-1"});
    return history.out.find("enabled -> disabled") != std::string::npos;
  }, 15s)) << history.out << history.err;
  EXPECT_THAT(history.out, HasSubstr("disabled by command node.disable from identity alice  (by ctl-1, epoch"));
  EXPECT_THAT(history.out, HasSubstr("first heartbeat from a node nobody knew"));

  const std::string get = "$JS.API.STREAM.MSG.GET.NODEHA_EVENTS", create = "$JS.API.CONSUMER.CREATE.NODEHA_EVENTS";
  auto node = as("node-1");
  EXPECT_FALSE(node->request(get, 1s, R"({"seq":1,"next_by_subj":"nodeha.evt.node.node-1"})"));
  EXPECT_TRUE(node->refused(get));
  auto viewer = as("bob");
  EXPECT_FALSE(viewer->request(create, 1s, R"({"stream_name":"NODEHA_EVENTS","config":{"deliver_subject":"nodeha.cmd.node.drain"}})"));
  EXPECT_TRUE(viewer->refused(create));
  CliRun agent_history = cli_as("node-1", {"--timeout", "2s", "node", "history", "node-1"});
  EXPECT_EQ(agent_history.status, 2) << agent_history.out << agent_history.err;
  EXPECT_THAT(agent_history.err, HasSubstr("reading history needs an admin or viewer identity"));
}

// With auth and TLS on: what the controller asks an agent to define goes through the agent's
// domain policy (a disk on the host's /dev/vda is refused, nothing defined), and what it defines is
// recorded through the controller's record desk, the agent writing no bucket itself.
TEST_F(BusAuth, AControllerGetsGuestsNotTheHostAndTheRecordComesThroughTheDesk) {
  HostProcess controller(secured("controller", "ctl-1") + "[[plugin]]\nlibrary = \"vms\"\n[[plugin]]\nlibrary = \"tasks\"\n");
  ASSERT_TRUE(controller.wait_ready()) << controller.log();
  HostProcess agent(agent_config("node-1"));
  ASSERT_TRUE(agent.wait_ready()) << agent.log();
  auto ctl = as("ctl-1");
  // vm.define on `node` of a domain with a block disk on `disk`, once its agent serves (after its
  // first inventory sync).
  auto define = [&](const std::string& node, const std::string& uuid, const std::string& disk) {
    std::string xml = "<domain type='test'><name>g-" + uuid.substr(34) + "</name><uuid>" + uuid +
                      "</uuid><memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os>"
                      "<devices><disk type='block' device='disk'><source dev='" + disk +
                      "'/><target dev='vda'/></disk></devices></domain>";
    std::optional<std::string> reply;
    wait_until([&] {
      reply = ctl->request("nodeha.agent." + node + ".vm.define", 5s, nlohmann::json{{"xml", xml}}.dump());
      return reply && reply->find("unavailable") == std::string::npos;
    });
    return reply ? nlohmann::json::parse(*reply, nullptr, false) : nlohmann::json();
  };
  const std::string evil = "0a000000-0000-4000-8000-0000000000e1";
  auto refused = define("node-1", evil, "/dev/vda");
  EXPECT_EQ(refused["error"]["code"], "policy") << refused;
  EXPECT_THAT(refused["error"]["message"].get<std::string>(), HasSubstr("/dev/vda is a host block device"));
  auto listed = ctl->request("nodeha.agent.node-1.vm.list", 5s);
  ASSERT_TRUE(listed);
  EXPECT_THAT(*listed, ::testing::Not(HasSubstr(evil)));

  HostProcess widened(agent_config("node-2") + "allow_block_devices = true\n");  // node-2 takes host block disks
  ASSERT_TRUE(widened.wait_ready()) << widened.log();
  const std::string fine = "0a000000-0000-4000-8000-0000000000e2";
  auto defined = define("node-2", fine, "/dev/vdb");
  EXPECT_EQ(defined["ok"], true) << defined;
  auto seeder = bus_as("ctl-1");
  ASSERT_TRUE(seeder);
  EXPECT_TRUE(wait_until([&] {
    auto r = seeder->kv_get("vms", fine);
    return r && nlohmann::json::parse(r->value, nullptr, false).value("node", "") == "node-2";
  })) << widened.log() << controller.log();
  EXPECT_FALSE(seeder->kv_get("vms", evil));
  EXPECT_TRUE(violations().empty()) << testing::PrintToString(violations());  // the agents wrote no bucket
}

TEST_F(BusAuth, InitRefusesBadNamesAndAnExistingCa) {
  CliRun bad = run_cli({"auth", "init", "--node", "node_1.evil", "--out", dir_.file("other")}, dir_);
  EXPECT_EQ(bad.status, 2);
  EXPECT_THAT(bad.err, HasSubstr("DNS label"));
  CliRun twice = run_cli({"auth", "init", "--node", "node-1", "--admin", "node-1", "--out", dir_.file("other")}, dir_);
  EXPECT_EQ(twice.status, 2);
  EXPECT_THAT(twice.err, HasSubstr("named twice"));
  CliRun again = run_cli({"auth", "init", "--node", "node-3", "--out", dir_.file("bus")}, dir_);
  EXPECT_EQ(again.status, 2);
  EXPECT_THAT(again.err, HasSubstr("already holds"));
  EXPECT_FALSE(std::filesystem::exists(dir_.file("other")));
  EXPECT_FALSE(std::filesystem::exists(cred("node-3")));
}

}  // namespace
}  // namespace nodeha::test
