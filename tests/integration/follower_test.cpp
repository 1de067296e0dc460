// A following controller stays warm (plugin interface 1.5): two controllers with a long lease on
// a real nats-server, agents on the libvirt test driver. While the leader lives, read-only
// commands are answered by either (one queue group) and a command that changes something is
// done once, by the leader; the follower's instances may answer but their writes are refused.
// Once the leader is killed, nobody leads for the rest of its lease, yet `nodeha node list|show`,
// `task list|show` and `vm list` are answered by the follower with the cluster's content, and a
// change (`node disable`, `node drain`) is done by nobody: the CLI says no controller leads.
#include "operations_fixture.h"

#include <cmath>

namespace nodeha::test {
namespace {

using ::testing::HasSubstr;

class Followers : public Operations {
 protected:
  std::unique_ptr<HostProcess> controller(const std::string& id, const std::string& lease = "60s") {
    std::string probe = "[[plugin]]\nlibrary = \"follower_probe\"\n";
    auto c = std::make_unique<HostProcess>(controller_config(probe, id),
                                           std::vector<std::string>{"host.lease=\"" + lease + "\"",
                                                                    "host.plugin_path=[\"{plugins}\", \"{fixtures}\"]"});
    EXPECT_TRUE(c->wait_ready()) << c->log();
    return c;
  }
  static bool leads(const HostProcess& c) { return c.metric("nodeha_controller_leader") == 1; }
  static bool following(const HostProcess& c) {
    for (const char* p : {"heartbeat", "tasks", "vms", "follower_probe"})
      if (c.metric(std::string("nodeha_plugin_following{plugin=\"") + p + "\"}") != 1) return false;
    return true;
  }
  // What the follower_probe instance of controller `id` says of itself.
  json probe(const std::string& id) {
    auto r = bus_->request("nodeha.probe.mode." + id, "{}", 10s);
    EXPECT_TRUE(r.is_ok()) << id << ": " << (r ? "" : r.status().message());
    return r ? json::parse(r.value(), nullptr, false) : json();
  }
  CliRun cli(std::vector<std::string> args) {
    args.insert(args.begin(), {"--server", nats_.url(), "--timeout", "5s"});
    return run_cli(args, files_);
  }
  int management_events(const std::string& node) {
    std::lock_guard lock(mu_);
    int n = 0;
    for (const auto& e : events_) n += e["subject"] == "nodeha.evt.node." + node && e.value("event", "") == "management";
    return n;
  }
  // A cluster of two controllers (ctl-1 leads), node-a with two VMs and node-b, and a finished
  // drain of node-b: something in every bucket.
  void build(std::unique_ptr<HostProcess>& one, std::unique_ptr<HostProcess>& two, std::unique_ptr<HostProcess>& a,
             std::unique_ptr<HostProcess>& b, std::string* drain_id) {
    one = controller("ctl-1");
    two = controller("ctl-2");
    ASSERT_TRUE(wait_until([&] { return leads(*one) && following(*two); })) << two->log();
    a = start_agent("node-a", vms_);
    b = start_agent("node-b");
    ASSERT_TRUE(wait_until([&] { return normal("node-a") && normal("node-b") && recorded(vms_, "node-a"); }, 20s))
        << one->log();
    auto r = command("node.drain", {{"node", "node-b"}});
    ASSERT_TRUE(r["ok"]) << r;
    *drain_id = r["result"]["task"];
    ASSERT_TRUE(wait_until([&] { return task_state(*drain_id) == "succeeded"; }, 20s)) << task(*drain_id).dump(2);
  }

  std::vector<Vm> vms_ = vms_of(1, 2);
};

TEST_F(Followers, WithTheLeaderAliveReadsAreSharedAChangeIsDoneOnceAndTheFollowerWritesNothing) {
  std::unique_ptr<HostProcess> one, two, a, b;
  std::string drain_id;
  ASSERT_NO_FATAL_FAILURE(build(one, two, a, b, &drain_id));
  EXPECT_EQ(one->metric("nodeha_plugin_up{plugin=\"heartbeat\"}"), 1);
  EXPECT_EQ(two->metric("nodeha_plugin_up{plugin=\"heartbeat\"}"), 0) << "the follower runs no leader's instance";
  EXPECT_EQ(two->metric("nodeha_plugin_up{plugin=\"drain\"}"), 0);
  EXPECT_TRUE(std::isnan(two->metric("nodeha_plugin_following{plugin=\"drain\"}"))) << "drain does not serve followers";

  // The host tells each instance what it is; a follower may answer, and nothing else.
  auto leader = probe("ctl-1"), follower = probe("ctl-2");
  EXPECT_EQ(leader["mode"], "active") << leader;
  EXPECT_EQ(leader["publish"], "ok") << leader;
  EXPECT_EQ(leader["kv_put"], "ok") << leader;
  EXPECT_EQ(follower["mode"], "follower") << follower;
  EXPECT_EQ(follower["publish"], "unavailable") << follower;
  EXPECT_EQ(follower["kv_put"], "unavailable") << follower;
  EXPECT_EQ(follower["kv_get"], "not_found") << "it reads: its own write never landed";

  // One queue group: each read is answered once, by one or the other, in the same shape.
  int by_follower = 0, by_leader = 0;
  for (int i = 0; i < 40; ++i) {
    auto r = command("node.list", json::object());
    ASSERT_TRUE(r["ok"]) << r;
    ASSERT_EQ(r["result"]["nodes"].size(), 2u) << r;
    const json& node_a = r["result"]["nodes"][0];
    EXPECT_EQ(node_a["node"], "node-a");
    EXPECT_EQ(node_a["monitor"], "normal");
    EXPECT_EQ(node_a["vms"].size(), 2u) << node_a;
    ASSERT_TRUE(node_a["heartbeat_age_s"].is_number()) << node_a;
    EXPECT_LT(node_a["heartbeat_age_s"].get<double>(), 5) << "heard, not read from the lazily written record";
    (r["result"].contains("follower") ? by_follower : by_leader)++;
    if (r["result"].contains("follower")) {
      EXPECT_EQ(r["result"]["follower"], "ctl-2");
    }
  }
  EXPECT_GT(by_follower, 0);
  EXPECT_GT(by_leader, 0);
  // The web page's poll (`ages`): each answers from what it heard, not from the record.
  by_follower = by_leader = 0;
  for (int i = 0; i < 40; ++i) {
    auto r = command("node.list", {{"ages", true}});
    ASSERT_TRUE(r["ok"]) << r;
    ASSERT_EQ(r["result"]["nodes"].size(), 2u) << r;
    const json& node_a = r["result"]["nodes"][0];
    EXPECT_EQ(node_a, (json{{"node", "node-a"}, {"heartbeat_age_s", node_a["heartbeat_age_s"]}})) << node_a;
    ASSERT_TRUE(node_a["heartbeat_age_s"].is_number()) << node_a;
    EXPECT_LT(node_a["heartbeat_age_s"].get<double>(), 5) << "heard, not read from the lazily written record";
    (r["result"].contains("follower") ? by_follower : by_leader)++;
  }
  EXPECT_GT(by_follower, 0);
  EXPECT_GT(by_leader, 0);

  // A change: done once, by the leader (the only one subscribed).
  uint64_t before = bus_->kv_get("nodes", "node-a").value().revision;
  auto r = command("node.disable", {{"node", "node-a"}});
  ASSERT_TRUE(r["ok"]) << r;
  EXPECT_EQ(r["result"]["changed"], true);
  ASSERT_TRUE(wait_until([&] { return management_events("node-a") == 1; })) << one->log();
  EXPECT_EQ(node_record("node-a")["management"], "disabled");
  EXPECT_GT(bus_->kv_get("nodes", "node-a").value().revision, before);
  EXPECT_FALSE(wait_until([&] { return management_events("node-a") > 1; }, 1s)) << "disabled once";
  int drains = 0;
  auto tasks = bus_->kv_list("tasks");
  ASSERT_TRUE(tasks.is_ok());
  for (const auto& e : tasks.value()) drains += json::parse(e.value)["kind"] == "drain";
  EXPECT_EQ(drains, 1) << "one task for the one drain asked (in build)";
  EXPECT_THAT(two->log(), ::testing::Not(HasSubstr("plugin heartbeat started")));
  EXPECT_THAT(two->log(), HasSubstr("plugin heartbeat answers read-only commands as a follower"));
}

TEST_F(Followers, WithTheLeaderDeadAndItsLeaseRunningTheFollowerAnswersReadsAndNobodyChangesAnything) {
  std::unique_ptr<HostProcess> one, two, a, b;
  std::string drain_id;
  ASSERT_NO_FATAL_FAILURE(build(one, two, a, b, &drain_id));
  one->process().signal(SIGKILL);
  one->process().wait_exit(5s);
  ASSERT_FALSE(leads(*two)) << "the lease (60 s) still runs: nobody leads";

  auto list = cli({"--json", "node", "list"});
  ASSERT_EQ(list.status, 0) << list.err;
  auto nodes = list.doc()["nodes"];
  ASSERT_EQ(nodes.size(), 2u) << list.out;
  EXPECT_EQ(nodes[0]["node"], "node-a");
  EXPECT_EQ(nodes[0]["monitor"], "normal");
  EXPECT_EQ(nodes[0]["management"], "enabled");
  EXPECT_EQ(nodes[1]["node"], "node-b");
  EXPECT_EQ(nodes[1]["management"], "drained");
  EXPECT_EQ(list.doc()["follower"], "ctl-2");
  EXPECT_LT(nodes[0]["heartbeat_age_s"].get<double>(), 5) << "the follower hears the heartbeats";
  // And goes on hearing them: a steady node's heartbeats are mostly taken as repeats of its last
  // one, undecoded (repeat.h), and each must count as heard, not only the decoded ones.
  auto seq_of_a = [&] {
    auto s = cli({"--json", "node", "show", "node-a"});
    return s.status == 0 ? s.doc()["heartbeat"].value("seq", uint64_t{0}) : uint64_t{0};
  };
  uint64_t first_seq = seq_of_a();
  ASSERT_TRUE(wait_until([&] { return seq_of_a() >= first_seq + 6; }, 20s)) << "node-a's heartbeats stopped";
  auto later = cli({"--json", "node", "list"});
  ASSERT_EQ(later.status, 0) << later.err;
  EXPECT_LT(later.doc()["nodes"][0]["heartbeat_age_s"].get<double>(), 3.5) << later.out;

  auto table = cli({"node", "list"});
  ASSERT_EQ(table.status, 0) << table.err;
  EXPECT_THAT(table.out, HasSubstr("node-b"));
  EXPECT_THAT(table.err, HasSubstr("answered by ctl-2, a following controller"));

  auto show = cli({"--json", "node", "show", "node-a"});
  ASSERT_EQ(show.status, 0) << show.err;
  EXPECT_EQ(show.doc()["node"], "node-a");
  EXPECT_EQ(show.doc()["vms"].size(), 2u) << show.out;
  EXPECT_EQ(show.doc()["heartbeat"]["node"], "node-a") << show.out;
  auto unknown = cli({"--json", "node", "show", "node-z"});
  EXPECT_EQ(unknown.status, 2) << unknown.out << unknown.err;
  EXPECT_EQ(unknown.doc()["error"]["code"], "unknown_node") << unknown.out;

  auto tasks = cli({"--json", "task", "list"});
  ASSERT_EQ(tasks.status, 0) << tasks.err;
  ASSERT_EQ(tasks.doc()["tasks"].size(), 1u) << tasks.out;
  EXPECT_EQ(tasks.doc()["tasks"][0]["id"], drain_id);
  auto shown = cli({"--json", "task", "show", drain_id});
  ASSERT_EQ(shown.status, 0) << shown.err;
  EXPECT_EQ(shown.doc()["state"], "succeeded") << shown.out;
  EXPECT_EQ(shown.doc()["kind"], "drain") << shown.out;

  auto vms = cli({"--json", "vm", "list"});
  ASSERT_EQ(vms.status, 0) << vms.err;
  ASSERT_EQ(vms.doc()["vms"].size(), 2u) << vms.out;
  for (const auto& v : vms.doc()["vms"]) EXPECT_EQ(v["node"], "node-a") << v;

  // A change reaches nobody: refused by the CLI with the reason, nothing written.
  auto record = bus_->kv_get("nodes", "node-a").value();
  auto disable = cli({"node", "disable", "node-a", "--yes"});
  EXPECT_EQ(disable.status, 3) << disable.out << disable.err;
  EXPECT_THAT(disable.err, HasSubstr("no controller leads now"));
  EXPECT_THAT(disable.err, HasSubstr("nothing was done"));
  auto drain = cli({"--json", "node", "drain", "node-a", "--yes"});
  EXPECT_EQ(drain.status, 3) << drain.out << drain.err;
  EXPECT_EQ(drain.doc()["error"]["code"], "no_leader") << drain.out;
  auto asked = bus_->request("nodeha.cmd.node.enable", json{{"node", "node-b"}}.dump(), 2s);
  EXPECT_EQ(asked.status().code(), NODEHA_ERR_NO_RESPONDERS) << "the follower does not take changes";
  auto after = bus_->kv_get("nodes", "node-a").value();
  EXPECT_EQ(after.value, record.value);
  EXPECT_EQ(json::parse(after.value)["management"], "enabled");
  EXPECT_EQ(bus_->kv_list("tasks").value().size(), 1u) << "no task was made";
  auto follower = probe("ctl-2");
  EXPECT_EQ(follower["mode"], "follower");
  EXPECT_EQ(follower["kv_put"], "unavailable") << "still fenced while nobody leads";
  EXPECT_FALSE(leads(*two)) << "all of this happened inside the dead leader's lease";
}

TEST_F(Followers, AFollowerThatComesToLeadStopsItsFollowerInstancesAndStartsTheLeaders) {
  auto one = controller("ctl-1", "30s");
  auto two = controller("ctl-2", "30s");
  ASSERT_TRUE(wait_until([&] { return leads(*one) && following(*two); })) << two->log();
  one->process().signal(SIGTERM);  // releases the lease: ctl-2 leads at once
  ASSERT_TRUE(wait_until([&] { return leads(*two); }, 10s)) << two->log();
  // A new leader starts its plugins side by side: each is up in its own time.
  for (const char* p : {"heartbeat", "tasks", "vms", "follower_probe"})
    ASSERT_TRUE(wait_until([&] { return two->metric(std::string("nodeha_plugin_up{plugin=\"") + p + "\"}") == 1; }))
        << p << "\n" << two->log();
  for (const char* p : {"heartbeat", "tasks", "vms", "follower_probe"})
    EXPECT_EQ(two->metric(std::string("nodeha_plugin_following{plugin=\"") + p + "\"}"), 0) << p;
  auto now = probe("ctl-2");
  EXPECT_EQ(now["mode"], "active") << now;
  EXPECT_EQ(now["kv_put"], "ok") << now;
  auto r = command("node.list", json::object());
  ASSERT_TRUE(r["ok"]) << r;
  EXPECT_FALSE(r["result"].contains("follower")) << "the leader answers";
}

}  // namespace
}  // namespace nodeha::test
