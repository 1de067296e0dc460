// nodeha on a 3-server NATS cluster (nats_cluster.h): real nats-servers with JetStream and
// routes, a controller and agents on the libvirt test driver, every host and the CLI given the
// three URLs. The buckets and the event stream are replicated 3 times (a bucket made with fewer
// is raised; one with more is left alone); the server a host is connected to is killed and the
// host goes on through another; one server stopped during a rebuild changes nothing the operator
// sees; two stopped leave no quorum, so nothing acts and nothing is lost, and all goes on once one
// is back. Throughout: every VM runs once (invariant.h, each node read through its agent), and
// no node is ever reported unreachable.
#include "bus.h"
#include "cli_run.h"
#include "host_process.h"
#include "invariant.h"
#include "nats_cluster.h"
#include "task_read.h"
#include "test_nodes.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <mutex>
#include <set>

namespace nodeha::test {
namespace {

using ::testing::AnyOf;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using json = nlohmann::json;

const std::vector<std::string> kReplicated = {"KV_nodes", "KV_vms", "KV_tasks", "NODEHA_EVENTS"};

class NatsClusterOps : public ::testing::Test {
 protected:
  void SetUp() override {
    bus_ = cluster_.client();
    ASSERT_TRUE(bus_);
  }

  void watch_alarms() {
    // Every change of a node record, read again after any reconnect: a node that went anything
    // but normal once it was normal is a false alarm in these tests.
    ASSERT_TRUE(bus_->kv_watch("nodes", ">", [this](KvEntry e) {
      auto j = json::parse(e.value, nullptr, false);
      if (!j.is_object() || e.deleted) return;
      std::lock_guard lock(mu_);
      std::string monitor = j.value("monitor", "");
      if (monitor == "normal") was_normal_.insert(e.key);
      else if (was_normal_.count(e.key)) alarms_.push_back(e.key + " went " + monitor + ": " + j.dump());
    }));
  }

  // kv_replicas 3 on every host: agents create buckets too.
  std::vector<std::string> replicated() const { return {"nats.kv_replicas=3"}; }

  std::unique_ptr<HostProcess> start_controller() {
    auto c = std::make_unique<HostProcess>(host_tables("controller", "ctl", cluster_.urls()) + controller_plugin_tables(),
                                           replicated());
    EXPECT_TRUE(c->wait_ready()) << c->log();
    return c;
  }
  std::unique_ptr<HostProcess> start_agent(const std::string& node, const std::vector<Vm>& vms = {}) {
    std::string path = nodes_.path(node, vms);
    auto a = std::make_unique<HostProcess>(test_agent_config(node, path, cluster_.urls()), replicated());
    EXPECT_TRUE(a->wait_ready()) << a->log();
    return a;
  }

  json command(const std::string& op, const json& body, std::chrono::milliseconds timeout = 10s) {
    auto r = bus_->request("nodeha.cmd." + op, body.dump(), timeout);
    if (!r) return {{"transport", r.status().message()}};
    return json::parse(r.value(), nullptr, false);
  }
  json record(const std::string& bucket, const std::string& key) {
    if (bucket == "tasks") return read_task(*bus_, key);
    auto e = bus_->kv_get(bucket, key);
    return e ? json::parse(e->value) : json::object();
  }
  bool normal(const std::string& node) { return record("nodes", node).value("monitor", "") == "normal"; }
  std::string task_state(const std::string& id) { return record("tasks", id).value("state", ""); }
  int steps_done(const std::string& id) {
    int n = 0;
    for (const auto& s : record("tasks", id).value("steps", json::array())) n += s["state"] == "succeeded";
    return n;
  }
  int replicas(const std::string& stream) {
    auto info = cluster_.stream_info(stream);
    return info.is_object() ? info.value("/config/num_replicas"_json_pointer, 0) : 0;
  }
  std::string leader_of(const std::string& stream) {
    auto info = cluster_.stream_info(stream);
    return info.is_object() ? info.value("/cluster/leader"_json_pointer, std::string()) : "";
  }
  size_t index_of(const std::string& server_name) {
    for (size_t i = 0; i < cluster_.size(); ++i)
      if (NatsCluster::name(i) == server_name) return i;
    ADD_FAILURE() << "no server named " << server_name;
    return 0;
  }
  // The running VMs of `node`, asked of its agent; nullopt when it does not answer.
  std::optional<std::vector<std::string>> running(const std::string& node) {
    auto r = bus_->request("nodeha.agent." + node + ".vm.list", "{}", 2s);
    if (!r) return std::nullopt;
    auto j = json::parse(r.value(), nullptr, false);
    if (!j.is_object() || !j.value("ok", false)) return std::nullopt;
    std::vector<std::string> out;
    for (const auto& v : j["result"]["vms"])
      if (v["state"] == "running") out.push_back(v["uuid"]);
    return out;
  }
  std::unique_ptr<InvariantMonitor> invariant(const std::vector<std::string>& nodes) {
    std::vector<InvariantMonitor::Node> watched;
    for (const auto& n : nodes) watched.push_back({n, "", [this, n] { return running(n); }});
    return std::make_unique<InvariantMonitor>(std::move(watched));
  }
  std::vector<std::string> alarms() {
    std::lock_guard lock(mu_);
    return alarms_;
  }
  CliRun cli(std::vector<std::string> args) {
    args.insert(args.begin(), {"--server", cluster_.urls_csv()});
    return run_cli(args, files_, 30s);
  }

  // A controller, node-b empty, node-a with `vms` recorded, then lost and drained: the rebuild of
  // node-a may start. The agents are kept in a_ (null once lost) and b_.
  void lose_and_drain_node_a(const std::vector<Vm>& vms) {
    ASSERT_NO_FATAL_FAILURE(watch_alarms());
    ctl_ = start_controller();
    a_ = start_agent("node-a", vms);
    b_ = start_agent("node-b");
    ASSERT_TRUE(wait_until([&] { return normal("node-a") && normal("node-b") &&
                                        record("vms", vms.back().uuid).value("node", "") == "node-a"; }, 20s))
        << ctl_->log();
    {
      std::lock_guard lock(mu_);
      was_normal_.erase("node-a");  // its loss is this test's doing
    }
    a_.reset();
    ASSERT_TRUE(wait_until([&] { return record("nodes", "node-a").value("monitor", "") == "unreachable"; }, 10s));
    ASSERT_EQ(command("node.drain", {{"node", "node-a"}})["ok"], true);
    ASSERT_TRUE(wait_until([&] { return record("nodes", "node-a")["lock"].is_null(); }));
  }

  // After a rebuild of `vms` to node-b: each record names node-b, moved once (generation 2); each
  // VM ran on one node at a time and runs once now; no node was taken for unreachable.
  void expect_rebuilt_once(const std::vector<Vm>& vms, InvariantMonitor& monitor) {
    std::set<std::string> uuids;
    for (const auto& v : vms) {
      uuids.insert(v.uuid);
      auto rec = record("vms", v.uuid);
      EXPECT_EQ(rec["node"], "node-b") << v.name;
      EXPECT_EQ(rec["generation"], 2) << v.name << ": moved once";
    }
    // node-b answers once its inventory is in sync again (its writes waited on the new leaders).
    ASSERT_TRUE(monitor.wait_rounds(2, 30s)) << "node-b did not answer vm.list";
    monitor.stop();
    EXPECT_EQ(monitor.violations_text(), "");
    monitor.expect_all_running(uuids);
    EXPECT_THAT(alarms(), IsEmpty());
  }

  // A rebuild step first asks the drained node whether it runs the VM again: a listener on
  // node-a's subject that never answers makes each step take that question's 2 s, so that the
  // rebuild (4 steps at a time) is still going when servers stop.
  void slow_steps() {
    ASSERT_TRUE(bus_->subscribe("nodeha.agent.node-a.vm.list", "", [](Message) {}).is_ok());
  }

  NatsCluster cluster_;
  TempDir files_;
  NodeFiles nodes_{files_};
  std::mutex mu_;
  std::set<std::string> was_normal_;
  std::vector<std::string> alarms_;
  std::unique_ptr<HostProcess> ctl_, a_, b_;
  std::unique_ptr<host::Bus> bus_;  // last: gone first, with the watch that writes the alarms
};

// A bucket a host made with 1 replica before kv_replicas was 3 is raised to 3, its records kept;
// the other buckets and the event stream are made with 3. A host whose kv_replicas is lower
// (an agent left at the default 1) leaves them at 3 and says how to lower them.
TEST_F(NatsClusterOps, BucketsAndTheEventStreamHaveThreeReplicasAnOlderBucketIsRaised) {
  // Written before the cluster was known: a client with kv_replicas 1.
  host::NatsSettings single = cluster_.settings();
  single.kv_replicas = 1;
  auto old = cluster_.server(0).client(single);
  ASSERT_TRUE(old);
  ASSERT_TRUE(old->kv_put("nodes", "old-node", R"({"node":"old-node","management":"drained"})").is_ok());
  ASSERT_EQ(replicas("KV_nodes"), 1);

  ctl_ = start_controller();
  for (const auto& s : kReplicated)
    EXPECT_TRUE(wait_until([&] { return replicas(s) == 3; }, 20s)) << s << ": " << cluster_.stream_info(s).dump(2);
  EXPECT_THAT(ctl_->log(), HasSubstr("raised stream KV_nodes from 1 to 3 replicas ([nats] kv_replicas)"));
  EXPECT_EQ(record("nodes", "old-node")["management"], "drained");
  // Three peers: the leader and two replicas, each on another server.
  auto info = cluster_.stream_info("KV_tasks");
  EXPECT_EQ(info["cluster"]["replicas"].size(), 2u) << info.dump(2);

  std::string path = files_.write("node-a.xml", node_xml({}));
  HostProcess agent(test_agent_config("node-a", path, cluster_.urls()));  // kv_replicas 1
  ASSERT_TRUE(agent.wait_ready()) << agent.log();
  ASSERT_TRUE(wait_until([&] { return normal("node-a"); }, 10s)) << agent.log();
  // The agent binds a bucket when it first writes to it, which may come after the node is normal.
  const std::string left = "stream KV_nodes has 3 replicas, more than [nats] kv_replicas = 1: left as it is. "
                           "To lower it, `nats stream edit KV_nodes --replicas 1`";
  EXPECT_TRUE(wait_until([&] { return agent.log().find(left) != std::string::npos; }, 10s)) << agent.log();
  EXPECT_EQ(replicas("KV_nodes"), 3);
}

// The controller's server is killed (-9): it goes on through another at once. Commands, KV
// writes and the CLI (given the three URLs, the dead one first) keep working; no node is taken
// for unreachable.
TEST_F(NatsClusterOps, AHostWhoseServerIsKilledGoesOnThroughAnother) {
  ASSERT_NO_FATAL_FAILURE(watch_alarms());
  ctl_ = start_controller();
  a_ = start_agent("node-a");
  b_ = start_agent("node-b");
  ASSERT_TRUE(wait_until([&] { return normal("node-a") && normal("node-b"); }, 15s)) << ctl_->log();
  std::optional<size_t> before;
  ASSERT_TRUE(wait_until([&] { return (before = cluster_.serving("nodeha-controller-ctl")).has_value(); }));

  cluster_.stop(*before, SIGKILL);
  std::optional<size_t> after;
  ASSERT_TRUE(wait_until([&] { return (after = cluster_.serving("nodeha-controller-ctl")).has_value(); }, 5s))
      << ctl_->log();
  EXPECT_NE(*after, *before);

  // A command that writes a node record, once the buckets' Raft groups have their leaders again.
  // When the killed server led the `controllers` bucket, the controller's lease renewals wait for
  // that election longer than its 2 s lease allows: it steps down, its plugins stop (their KV
  // calls time out first), and it takes its own lease again; a loaded machine has taken over 20 s.
  json r;
  ASSERT_TRUE(wait_until([&] { return (r = command("node.disable", {{"node", "node-a"}}, 3s)).value("ok", false); }, 45s))
      << r << ctl_->log();
  EXPECT_EQ(record("nodes", "node-a")["management"], "disabled");
  // The CLI tries the URLs in the order given: the dead server's first.
  std::vector<std::string> urls = cluster_.urls();
  std::rotate(urls.begin(), urls.begin() + static_cast<long>(*before), urls.end());
  std::string csv;
  for (const auto& u : urls) csv += (csv.empty() ? "" : ",") + u;
  auto enabled = run_cli({"--server", csv, "node", "enable", "node-a"}, files_, 30s);
  EXPECT_EQ(enabled.status, 0) << enabled.out << enabled.err;
  EXPECT_EQ(record("nodes", "node-a")["management"], "enabled");
  auto listed = cli({"--json", "node", "list"});
  ASSERT_EQ(listed.status, 0) << listed.err;
  EXPECT_EQ(listed.doc()["nodes"].size(), 2u) << listed.out;

  // Heartbeats went on through the failover: the nodes stay normal for a few more intervals.
  EXPECT_FALSE(wait_until([&] { return !alarms().empty(); }, 4s));
  EXPECT_TRUE(normal("node-a") && normal("node-b"));
  EXPECT_THAT(alarms(), IsEmpty());
  cluster_.start(*before);
}

// The leader of the tasks bucket's Raft group is stopped in the middle of a rebuild: another
// server leads it, the rebuild finishes, every VM runs once, no node is taken for unreachable.
TEST_F(NatsClusterOps, OneServerStoppedDuringARebuildChangesNothingTheOperatorSees) {
  auto vms = vms_of(1, 16);
  ASSERT_NO_FATAL_FAILURE(lose_and_drain_node_a(vms));
  ASSERT_NO_FATAL_FAILURE(slow_steps());
  auto monitor = invariant({"node-b"});  // node-a is powered off
  auto r = command("node.rebuild", {{"node", "node-a"}, {"target", "node-b"}});
  ASSERT_EQ(r.value("ok", false), true) << r;
  std::string id = r["result"]["task"];
  ASSERT_TRUE(wait_until([&] { return steps_done(id) >= 1; }, 20s)) << record("tasks", id).dump(2);

  size_t stopped = index_of(leader_of("KV_tasks"));
  // Read before: a read just after may meet the test's own client reconnecting. Steps take 2 s.
  ASSERT_EQ(task_state(id), "running") << "the rebuild ended before the server stopped: nothing to go on with";
  cluster_.stop(stopped);
  ASSERT_TRUE(wait_until([&] { return task_state(id) == "succeeded"; }, 40s)) << record("tasks", id).dump(2) << ctl_->log()
                                                                                << "node-b:\n" << b_->log();
  EXPECT_NE(leader_of("KV_tasks"), NatsCluster::name(stopped));
  ASSERT_NO_FATAL_FAILURE(expect_rebuilt_once(vms, *monitor));
  cluster_.start(stopped);
}

// Two of three servers stopped in the middle of a rebuild: no JetStream quorum. KV writes fail
// with a clear error, commands that write are answered `unavailable` saying why, the rebuild
// starts no VM; heartbeats (core NATS, on the server left) keep every node normal. One server
// back: the rebuild finishes, each VM moved once, no record lost.
TEST_F(NatsClusterOps, TwoServersStoppedNothingActsAndAllGoesOnOnceOneIsBack) {
  auto vms = vms_of(1, 16);
  ASSERT_NO_FATAL_FAILURE(lose_and_drain_node_a(vms));
  ASSERT_NO_FATAL_FAILURE(slow_steps());
  auto monitor = invariant({"node-b"});
  auto r = command("node.rebuild", {{"node", "node-a"}, {"target", "node-b"}});
  ASSERT_EQ(r.value("ok", false), true) << r;
  std::string id = r["result"]["task"];
  ASSERT_TRUE(wait_until([&] { return steps_done(id) >= 1; }, 20s)) << record("tasks", id).dump(2);

  size_t kept = (index_of(leader_of("KV_tasks")) + 1) % cluster_.size();
  std::vector<size_t> stopped;
  for (size_t i = 0; i < cluster_.size(); ++i)
    if (i != kept) stopped.push_back(i);
  ASSERT_EQ(task_state(id), "running") << "the rebuild ended before the servers stopped";
  for (size_t i : stopped) cluster_.stop(i);
  // Every VM a rebuild makes is a vm.define then a vm.start to node-b: the test hears them too.
  std::atomic<int> asked{0};
  for (const char* op : {"vm.define", "vm.start"})
    ASSERT_TRUE(bus_->subscribe(std::string("nodeha.agent.node-b.") + op, "", [&](Message) { ++asked; }).is_ok());

  // A write with no quorum: the stream's leader stepped down (a timeout) or none is left (no
  // responders); either way refused, and said why. Asked once this client is connected again (it
  // may have been on a server just stopped): refused then for want of quorum, not of a connection.
  ASSERT_TRUE(wait_until([&] { return bus_->connected(); }, 30s)) << "the test's client did not reconnect";
  auto put = bus_->kv_put("nodes", "probe", "{}");
  EXPECT_TRUE(put.status().code() == NODEHA_ERR_UNAVAILABLE || put.status().code() == NODEHA_ERR_TIMEOUT)
      << put.status().message();
  EXPECT_THAT(put.status().message(), HasSubstr("is a majority of the NATS servers up? (2 of 3 for kv_replicas 3)"));
  // Refused either way: by the leader, saying why, while its lease time lasts (the store did not
  // answer; or, once its time ran out while the write waited, its own host refused the write);
  // or unanswered (no responders, or a timeout when it steps down while the request waits:
  // without quorum it cannot renew its lease), and then no controller acts at all.
  auto refused = command("node.disable", {{"node", "node-b"}}, 30s);
  if (!refused.contains("transport")) {
    EXPECT_EQ(refused.value("/error/code"_json_pointer, std::string()), "unavailable") << refused;
    EXPECT_THAT(refused.value("/error/message"_json_pointer, std::string()),
                HasSubstr("could not update the node record of node-b (kv update nodes/node-b: "));
    EXPECT_THAT(refused.dump(), AnyOf(HasSubstr("JetStream did not answer: is a majority of the NATS servers up?"),
                                      HasSubstr("this controller does not lead: its host refuses its writes")));
  }
  // The rebuild moves a record before it makes the VM: with no store, it asks for none.
  const int before = asked;
  EXPECT_FALSE(wait_until([&] { return asked > before; }, 3s)) << "the rebuild made VMs without quorum";

  cluster_.start(stopped[0]);
  // The bounds are nats-server's, not ours: after a quorum loss its Raft groups elect again (4-9 s
  // each) and the server that returns catches up; on a loaded machine that took 20 s and more.
  ASSERT_FALSE(cluster_.wait_meta_leader(60s).empty());
  ASSERT_TRUE(wait_until([&] { return task_state(id) == "succeeded"; }, 90s)) << record("tasks", id).dump(2) << ctl_->log()
                                                                                << "node-b:\n" << b_->log();
  ASSERT_NO_FATAL_FAILURE(expect_rebuilt_once(vms, *monitor));
  cluster_.start(stopped[1]);
}

}  // namespace
}  // namespace nodeha::test
