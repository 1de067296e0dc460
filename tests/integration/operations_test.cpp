// Node operations end to end on a real nats-server, with agents on the libvirt test driver: a
// controller (heartbeat, scheduler, tasks, drain, rebuild, migrate, vms) and three agents
// (heartbeat, vms), each agent's domains defined by a node file of its own. Drain with the node
// up and down, rebuild (refused unless drained; local-disk VMs skipped; records and generations
// move), stale copies removed when the old node returns, locks, dry runs that change nothing,
// every refusal's code, a rebuild step the target's domain policy refuses, a controller killed in
// the middle of a rebuild that finishes it, and a local-disk VM a rebuild leaves stranded.
//
// The test driver keeps a node's domains in the agent's process: killing the agent is the
// node's power loss, and starting it again brings back the domains of its node file, running,
// as a node that returns with its old VMs would.
#include "bus.h"
#include "cli_run.h"
#include "host_process.h"
#include "nats_server.h"
#include "test_nodes.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>

namespace nodeha::test {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

class Operations : public ::testing::Test {
 protected:
  void SetUp() override {
    bus_ = nats_.client();
    ASSERT_TRUE(bus_);
    ASSERT_TRUE(bus_->subscribe("nodeha.evt.>", "", [this](Message m) {
      auto j = json::parse(m.data, nullptr, false);
      if (!j.is_object()) return;
      j["subject"] = m.subject;
      std::lock_guard lock(mu_);
      events_.push_back(std::move(j));
    }).is_ok());
  }

  std::string controller_config(const std::string& extra = "") const {
    return host_tables("controller", "ctl", nats_.url()) +
           "[[plugin]]\nlibrary = \"heartbeat\"\ninterval = \"1s\"\nmisses = 2\nping_timeout = \"300ms\"\n"
           "[[plugin]]\nlibrary = \"scheduler\"\nreserve_vcpus = 0\nreserve_memory_mib = 0\ncpu_ratio = 32.0\n"
           "[[plugin]]\nlibrary = \"tasks\"\n"
           "[[plugin]]\nlibrary = \"vms\"\n"
           "[[plugin]]\nlibrary = \"drain\"\nstop_timeout = \"0s\"\nretry_every = \"300ms\"\n"
           "[[plugin]]\nlibrary = \"migrate\"\n" + extra;
  }

  // Writes the node's file once; later starts reuse it (the node "returns" with its domains).
  std::unique_ptr<HostProcess> start_agent(const std::string& node, const std::vector<Vm>& vms = {}, int memory_mib = 16384) {
    std::string path = files_.file(node + ".xml");
    if (!written_.count(node)) {
      std::ofstream(path) << node_xml(vms, memory_mib);
      written_.insert(node);
    }
    auto a = std::make_unique<HostProcess>(test_agent_config(node, path, {nats_.url()}));
    EXPECT_TRUE(a->wait_ready()) << a->log();
    return a;
  }

  std::string rebuild_config() const { return controller_config("[[plugin]]\nlibrary = \"rebuild\"\nparallel = 1\n"); }
  // A controller (rebuild_config()) and node-b, empty; node-a with `vms` recorded, then lost
  // and drained: a rebuild of node-a may start.
  void lose_and_drain_node_a(const std::vector<Vm>& vms, std::unique_ptr<HostProcess>& ctl,
                             std::unique_ptr<HostProcess>& b) {
    ctl = std::make_unique<HostProcess>(rebuild_config());
    ASSERT_TRUE(ctl->wait_ready()) << ctl->log();
    auto a = start_agent("node-a", vms);
    b = start_agent("node-b");
    ASSERT_TRUE(wait_until([&] { return normal("node-a") && normal("node-b") && recorded(vms, "node-a"); }, 20s))
        << ctl->log() << a->log();
    a.reset();
    ASSERT_TRUE(wait_until([&] { return unreachable("node-a"); }, 10s));
    ASSERT_TRUE(command("node.drain", {{"node", "node-a"}})["ok"]);
    ASSERT_TRUE(wait_until([&] { return node_record("node-a")["lock"].is_null(); }));
  }

  json command(const std::string& op, const json& body) {
    auto r = bus_->request("nodeha.cmd." + op, body.dump(), 10s);
    EXPECT_TRUE(r.is_ok()) << op << ": " << r.status().message();
    return r ? json::parse(r.value()) : json();
  }
  std::string refusal(const std::string& op, const std::string& body) {
    auto r = bus_->request("nodeha.cmd." + op, body, 10s);
    if (!r) return "no answer: " + r.status().message();
    auto j = json::parse(r.value());
    EXPECT_FALSE(j["ok"]) << op << " " << body << " -> " << j;
    return j["ok"] ? "accepted" : j["error"]["code"].get<std::string>();
  }
  json node_record(const std::string& node) {
    auto e = bus_->kv_get("nodes", node);
    return e ? json::parse(e->value) : json::object();
  }
  json vm_record(const std::string& uuid) {
    auto e = bus_->kv_get("vms", uuid);
    return e ? json::parse(e->value) : json::object();
  }
  json task(const std::string& id) {
    auto e = bus_->kv_get("tasks", id);
    return e ? json::parse(e->value) : json::object();
  }
  std::string task_state(const std::string& id) { return task(id).value("state", ""); }
  // The agent's domains as it reports them: uuid -> state; empty when it does not answer.
  std::map<std::string, std::string> domains(const std::string& node) {
    std::map<std::string, std::string> out;
    auto r = bus_->request("nodeha.agent." + node + ".vm.list", "{}", 2s);
    if (!r) return out;
    auto j = json::parse(r.value());
    if (!j["ok"]) return out;
    for (const auto& v : j["result"]["vms"]) out[v["uuid"]] = v["state"];
    return out;
  }
  // Normal in the controller's stored record, which the commands read.
  bool normal(const std::string& node) { return node_record(node).value("monitor", "") == "normal"; }
  bool recorded(const std::vector<Vm>& vms, const std::string& node) {
    for (const auto& v : vms)
      if (vm_record(v.uuid).value("node", "") != node) return false;
    return true;
  }
  bool unreachable(const std::string& node) { return node_record(node).value("monitor", "") == "unreachable"; }

  // Samples every agent's domains until stopped: a VM running on two nodes at once is recorded.
  class Invariant {
   public:
    Invariant(Operations* t, std::vector<std::string> nodes) : t_(t), nodes_(std::move(nodes)) {
      thread_ = std::thread([this] {
        while (!stop_) {
          std::map<std::string, std::vector<std::string>> where;
          for (const auto& n : nodes_)
            for (const auto& [uuid, state] : t_->domains(n))
              if (state == "running") where[uuid].push_back(n);
          std::lock_guard lock(mu_);
          ++samples_;
          for (const auto& [uuid, nodes] : where)
            if (nodes.size() > 1) violations_.push_back(uuid + " runs on " + nodes[0] + " and " + nodes[1]);
        }
      });
    }
    ~Invariant() { finish(); }
    std::vector<std::string> finish() {
      stop_ = true;
      if (thread_.joinable()) thread_.join();
      std::lock_guard lock(mu_);
      EXPECT_GT(samples_, 3) << "the invariant was hardly sampled";
      return violations_;
    }

   private:
    Operations* t_;
    std::vector<std::string> nodes_;
    std::atomic<bool> stop_{false};
    std::mutex mu_;
    int samples_ = 0;
    std::vector<std::string> violations_;
    std::thread thread_;
  };

  // Where each VM runs now (uuid -> nodes).
  std::map<std::string, std::set<std::string>> running_on(const std::vector<std::string>& nodes) {
    std::map<std::string, std::set<std::string>> out;
    for (const auto& n : nodes)
      for (const auto& [uuid, state] : domains(n))
        if (state == "running") out[uuid].insert(n);
    return out;
  }

  NatsServer nats_;
  std::unique_ptr<host::Bus> bus_;
  TempDir files_;
  std::set<std::string> written_;
  std::mutex mu_;
  std::vector<json> events_;
};


TEST_F(Operations, DrainOfAReachableNodeStopsEveryVm) {
  auto vms = vms_of(1, 4);
  HostProcess ctl(controller_config());
  ASSERT_TRUE(ctl.wait_ready()) << ctl.log();
  auto a = start_agent("node-a", vms);
  ASSERT_TRUE(wait_until([&] { return normal("node-a") && recorded(vms, "node-a"); })) << ctl.log() << a->log();

  // A dry run answers the plan and changes nothing.
  auto dry = command("node.drain", {{"node", "node-a"}, {"dry_run", true}});
  ASSERT_TRUE(dry["ok"]) << dry;
  EXPECT_EQ(dry["result"]["plan"].size(), 4u);
  EXPECT_FALSE(dry["result"].contains("task"));
  EXPECT_EQ(node_record("node-a")["management"], "enabled");
  EXPECT_EQ(domains("node-a").size(), 4u);
  for (const auto& [uuid, state] : domains("node-a")) EXPECT_EQ(state, "running");

  auto r = command("node.drain", {{"node", "node-a"}});
  ASSERT_TRUE(r["ok"]) << r;
  std::string id = r["result"]["task"];
  EXPECT_EQ(node_record("node-a")["management"], "drained");  // at once, before any VM stops
  ASSERT_TRUE(wait_until([&] { return task_state(id) == "succeeded"; }, 20s)) << task(id).dump(2) << ctl.log();
  for (const auto& [uuid, state] : domains("node-a")) EXPECT_EQ(state, "shutoff") << uuid;
  for (const auto& v : vms) EXPECT_EQ(vm_record(v.uuid)["desired"], "stopped");
  EXPECT_TRUE(node_record("node-a")["lock"].is_null());
  auto drained = task(id);  // a named record: a range over a temporary's member would dangle
  for (const auto& s : drained["steps"]) EXPECT_EQ(s["state"], "succeeded") << s;
  EXPECT_TRUE(wait_until([&] { return ctl.metric("nodeha_tasks_total{kind=\"drain\",result=\"succeeded\"}") == 1; }));

  // Progress was published on the task's subject, and the drained node is never placed on.
  std::lock_guard lock(mu_);
  bool finished = false;
  for (const auto& e : events_) finished |= e["subject"] == "nodeha.evt.task." + id && e["event"] == "finished";
  EXPECT_TRUE(finished);
}

TEST_F(Operations, DrainAndRebuildOfADeadNodeAndItsReturn) {
  auto vms = vms_of(1, 5, /*local=*/1);  // vm-1-0 has a local disk
  HostProcess ctl(controller_config("[[plugin]]\nlibrary = \"rebuild\"\n"));
  ASSERT_TRUE(ctl.wait_ready()) << ctl.log();
  auto a = start_agent("node-a", vms);
  auto b = start_agent("node-b");
  auto c = start_agent("node-c");
  ASSERT_TRUE(wait_until([&] { return normal("node-a") && normal("node-b") && normal("node-c") && recorded(vms, "node-a"); }))
      << ctl.log();
  EXPECT_TRUE(vm_record(vms[0].uuid)["local_disk"]);
  EXPECT_FALSE(vm_record(vms[1].uuid)["local_disk"]);
  Invariant invariant(this, {"node-a", "node-b", "node-c"});

  // Rebuild is only for drained nodes.
  EXPECT_EQ(refusal("node.rebuild", R"({"node":"node-a"})"), "node_not_drained");

  // Power loss.
  a.reset();
  ASSERT_TRUE(wait_until([&] { return unreachable("node-a"); }, 10s)) << ctl.log();

  // Drained at once; the task waits for the agent without holding the lock.
  auto d = command("node.drain", {{"node", "node-a"}});
  ASSERT_TRUE(d["ok"]) << d;
  std::string drain_id = d["result"]["task"];
  EXPECT_EQ(node_record("node-a")["management"], "drained");
  ASSERT_TRUE(wait_until([&] {
    auto t = task(drain_id);
    for (const auto& s : t.value("steps", json::array()))
      if (s["state"] == "waiting") return node_record("node-a")["lock"].is_null();
    return false;
  })) << task(drain_id).dump(2);
  EXPECT_EQ(task_state(drain_id), "running");

  // A dry run of the rebuild: the exact plan, nothing moves.
  auto dry = command("node.rebuild", {{"node", "node-a"}, {"dry_run", true}});
  ASSERT_TRUE(dry["ok"]) << dry;
  ASSERT_EQ(dry["result"]["plan"].size(), 5u);
  for (const auto& p : dry["result"]["plan"]) {
    if (p["vm"] == vms[0].uuid) {
      EXPECT_EQ(p["action"], "skip");
      EXPECT_THAT(p["reason"].get<std::string>(), HasSubstr("local disk"));
    } else {
      EXPECT_EQ(p["action"], "rebuild") << p;
      EXPECT_TRUE(p["target"] == "node-b" || p["target"] == "node-c") << p;
    }
  }
  EXPECT_TRUE(recorded(vms, "node-a"));

  auto r = command("node.rebuild", {{"node", "node-a"}});
  ASSERT_TRUE(r["ok"]) << r;
  std::string id = r["result"]["task"];
  ASSERT_TRUE(wait_until([&] { return task_state(id) == "succeeded"; }, 20s)) << task(id).dump(2) << ctl.log();
  auto where = running_on({"node-b", "node-c"});
  for (size_t i = 1; i < vms.size(); ++i) {
    auto rec = vm_record(vms[i].uuid);
    EXPECT_NE(rec["node"], "node-a");
    EXPECT_EQ(rec["generation"], 2) << rec;
    EXPECT_EQ(where[vms[i].uuid], std::set<std::string>{rec["node"].get<std::string>()}) << vms[i].name;
  }
  EXPECT_EQ(vm_record(vms[0].uuid)["node"], "node-a");  // skipped: its disk is on node-a
  EXPECT_EQ(vm_record(vms[0].uuid)["generation"], 1);
  json skipped = task(id)["steps"][0];
  EXPECT_EQ(skipped["state"], "skipped");

  // node-a returns with its old domains running: the rebuilt ones are stale copies, removed
  // before anything else; the drain task then stops the one that stayed.
  a = start_agent("node-a");
  ASSERT_TRUE(wait_until([&] { return task_state(drain_id) == "succeeded"; }, 20s)) << task(drain_id).dump(2) << a->log();
  auto left = domains("node-a");
  EXPECT_EQ(left.size(), 1u);
  EXPECT_EQ(left[vms[0].uuid], "shutoff");
  EXPECT_TRUE(wait_until([&] { return a->metric("nodeha_stale_copies_removed_total") == 4; })) << a->log();
  for (const auto& [uuid, nodes] : running_on({"node-a", "node-b", "node-c"})) EXPECT_EQ(nodes.size(), 1u) << uuid;
  EXPECT_THAT(invariant.finish(), ::testing::IsEmpty());
}

// A recorded definition the target's domain policy refuses (an interface script runs a host
// program): its rebuild step fails with the agent's code and reason, the target defines nothing,
// and the other VM is rebuilt.
TEST_F(Operations, ARebuildTheTargetsPolicyRefusesFailsThatStepAndDefinesNothing) {
  std::vector<Vm> vms = vms_of(1, 1);
  vms.push_back({"scripted", uuid_for(1, 9), false, "<interface type='ethernet'><script path='/tmp/up.sh'/></interface>"});
  std::unique_ptr<HostProcess> ctl, b;
  ASSERT_NO_FATAL_FAILURE(lose_and_drain_node_a(vms, ctl, b));
  auto r = command("node.rebuild", {{"node", "node-a"}, {"target", "node-b"}});
  ASSERT_TRUE(r["ok"]) << r;
  std::string id = r["result"]["task"];
  ASSERT_TRUE(wait_until([&] { return task_state(id) == "partial"; }, 20s)) << task(id).dump(2) << ctl->log();
  for (const auto& step : task(id)["steps"]) {
    if (step["vm"] == vms[1].uuid) {
      EXPECT_EQ(step["state"], "failed") << step;
      EXPECT_THAT(step["error"].get<std::string>(),
                  HasSubstr("define on node-b: policy: domain refused by policy: interface script /tmp/up.sh runs a "
                            "host program (never allowed)"));
    } else {
      EXPECT_EQ(step["state"], "succeeded") << step;
    }
  }
  auto on_b = domains("node-b");
  EXPECT_EQ(on_b.count(vms[0].uuid), 1u);
  EXPECT_EQ(on_b.count(vms[1].uuid), 0u) << "defined despite the policy";
  EXPECT_THAT(b->log(), HasSubstr("vm.define: domain refused by policy: interface script /tmp/up.sh"));
}

TEST_F(Operations, LocksAndRefusals) {
  auto vms = vms_of(1, 2);
  HostProcess ctl(controller_config("[[plugin]]\nlibrary = \"rebuild\"\n"));
  ASSERT_TRUE(ctl.wait_ready()) << ctl.log();
  auto a = start_agent("node-a", vms);
  auto b = start_agent("node-b", {}, /*memory_mib=*/100);  // room for one of node-a's two VMs
  ASSERT_TRUE(wait_until([&] { return normal("node-a") && normal("node-b") && recorded(vms, "node-a"); })) << ctl.log();

  for (const char* op : {"node.drain", "node.rebuild", "node.migrate"}) {
    SCOPED_TRACE(op);
    EXPECT_EQ(refusal(op, R"({"node":)"), "bad_json");
    EXPECT_EQ(refusal(op, R"([1])"), "bad_json");
    EXPECT_EQ(refusal(op, R"({"node":"node-a","force":true})"), "unknown_field");
    EXPECT_EQ(refusal(op, R"({"node":1})"), "bad_type");
    EXPECT_EQ(refusal(op, R"({"dry_run":true})"), "missing_field");
    EXPECT_EQ(refusal(op, R"({"node":"node-zz"})"), "unknown_node");
  }
  EXPECT_EQ(refusal("node.migrate", R"({"node":"node-a","target":"node-zz"})"), "unknown_node");
  EXPECT_EQ(refusal("node.migrate", R"({"node":"node-a","vms":["00000009-0000-4000-8000-000000000009"]})"), "unknown_vm");
  EXPECT_EQ(refusal("node.migrate", R"({"node":"node-a","vms":["nope"]})"), "bad_value");  // not a uuid
  EXPECT_EQ(refusal("node.migrate", R"({"node":"node-a","target":"node-b","network":"business"})"), "unknown_network");
  EXPECT_EQ(refusal("node.migrate", R"({"node":"node-a","network":"wifi"})"), "bad_value");
  EXPECT_EQ(refusal("node.migrate", R"({"node":"node-a","target":"node-b"})"), "no_room");
  EXPECT_EQ(refusal("task.show", R"({"task":"0000000000000000"})"), "unknown_task");
  EXPECT_EQ(refusal("task.cancel", R"({"task":"0000000000000000"})"), "unknown_task");

  // A task holds the node: every other command on it is refused, naming the task.
  auto rec = node_record("node-a");
  rec["lock"] = {{"task", "7f3c000000000001"}, {"kind", "migrate"}, {"since", 1'790'000'000'000}, {"owner", "ctl"}};
  ASSERT_TRUE(bus_->kv_put("nodes", "node-a", rec.dump()).is_ok());
  for (const char* op : {"node.drain", "node.migrate", "node.disable", "node.enable"}) {
    auto j = command(op, {{"node", "node-a"}});
    ASSERT_FALSE(j["ok"]) << j;
    EXPECT_EQ(j["error"]["code"], "node_locked");
    EXPECT_THAT(j["error"]["message"].get<std::string>(), HasSubstr("7f3c000000000001"));
    EXPECT_THAT(j["error"]["message"].get<std::string>(), HasSubstr("nodeha task cancel 7f3c000000000001"));
  }
  EXPECT_EQ(node_record("node-a")["management"], "enabled");  // refused: nothing changed
  EXPECT_TRUE(wait_until([&] { return ctl.metric("nodeha_node_locked_seconds{node=\"node-a\"}") > 1000; }));
  rec["lock"] = nullptr;
  ASSERT_TRUE(bus_->kv_put("nodes", "node-a", rec.dump()).is_ok());

  // Migration of an unreachable node is refused; its VMs stay where they are.
  a.reset();
  ASSERT_TRUE(wait_until([&] { return unreachable("node-a"); }, 10s));
  EXPECT_EQ(refusal("node.migrate", R"({"node":"node-a"})"), "node_unreachable");

  // Drain it, then a rebuild with nowhere to go is refused and changes nothing.
  auto d = command("node.drain", {{"node", "node-a"}});
  ASSERT_TRUE(d["ok"]) << d;
  ASSERT_TRUE(wait_until([&] { return node_record("node-a")["lock"].is_null(); }));  // waiting for the agent
  EXPECT_EQ(refusal("node.rebuild", R"({"node":"node-a","target":"node-b"})"), "no_room");
  EXPECT_EQ(refusal("node.rebuild", R"({"node":"node-a","target":"node-a"})"), "bad_value");
  EXPECT_TRUE(recorded(vms, "node-a"));

  // Cancel: the waiting drain ends with its steps cancelled; a second cancel is refused.
  std::string id = d["result"]["task"];
  auto c = command("task.cancel", {{"task", id}});
  ASSERT_TRUE(c["ok"]) << c;
  ASSERT_TRUE(wait_until([&] { return task_state(id) == "failed"; }, 10s)) << task(id).dump(2);
  auto cancelled = task(id);
  for (const auto& s : cancelled["steps"]) EXPECT_EQ(s["state"], "cancelled");
  EXPECT_EQ(refusal("task.cancel", json{{"task", id}}.dump()), "task_finished");

  auto list = command("task.list", {{"node", "node-a"}});
  ASSERT_TRUE(list["ok"]) << list;
  ASSERT_EQ(list["result"]["tasks"].size(), 1u);
  EXPECT_EQ(list["result"]["tasks"][0]["id"], id);
  EXPECT_EQ(command("task.show", {{"task", id}})["result"]["kind"], "drain");
  EXPECT_EQ(refusal("task.list", R"({"nodes":"x"})"), "unknown_field");
}

TEST_F(Operations, AControllerKilledInTheMiddleOfARebuildFinishesItAfterItsRestart) {
  auto vms = vms_of(1, 120);
  std::string config = rebuild_config();
  std::unique_ptr<HostProcess> ctl, b;
  ASSERT_NO_FATAL_FAILURE(lose_and_drain_node_a(vms, ctl, b));

  auto r = command("node.rebuild", {{"node", "node-a"}, {"target", "node-b"}});
  ASSERT_TRUE(r["ok"]) << r;
  std::string id = r["result"]["task"];
  auto done = [&] {
    int n = 0;
    for (const auto& s : task(id).value("steps", json::array())) n += s["state"] == "succeeded";
    return n;
  };
  ASSERT_TRUE(wait_until([&] { return done() >= 3; }, 20s)) << task(id).dump(2);
  ctl->process().signal(SIGKILL);
  ctl->process().wait_exit(5s);
  ASSERT_EQ(task_state(id), "running") << "the rebuild ended before the controller was killed: nothing to resume";
  EXPECT_LT(done(), 120);

  ctl = std::make_unique<HostProcess>(config);
  ASSERT_TRUE(ctl->wait_ready()) << ctl->log();
  ASSERT_TRUE(wait_until([&] { return task_state(id) == "succeeded"; }, 60s)) << task(id).dump(2) << ctl->log();
  EXPECT_THAT(ctl->log(), HasSubstr("resuming rebuild task " + id));
  auto on_b = domains("node-b");
  EXPECT_EQ(on_b.size(), 120u);
  for (const auto& v : vms) {
    EXPECT_EQ(on_b[v.uuid], "running") << v.name;
    auto rec = vm_record(v.uuid);
    EXPECT_EQ(rec["node"], "node-b");
    EXPECT_EQ(rec["generation"], 2) << v.name;  // moved once, even if its step ran twice
  }
  EXPECT_TRUE(node_record("node-a")["lock"].is_null());
}

// Reservations live in the scheduler's process: a controller that resumes a task holds the room
// of its unfinished steps again (placements meanwhile must not take it), and lets it go when the
// task ends.
TEST_F(Operations, AResumedRebuildHoldsTheRoomOfItsUnfinishedStepsAgain) {
  auto vms = vms_of(1, 3);
  std::string config = rebuild_config();
  std::unique_ptr<HostProcess> ctl, b;
  ASSERT_NO_FATAL_FAILURE(lose_and_drain_node_a(vms, ctl, b));
  // A rebuild step first asks the drained node whether it runs the VM again. Here node-a's
  // subject has a listener that never answers: each step takes that question's 2 s.
  std::atomic<int> asked{0};
  ASSERT_TRUE(bus_->subscribe("nodeha.agent.node-a.vm.list", "", [&](Message) { ++asked; }).is_ok());
  auto reserved = [](HostProcess& c) { return c.metric("nodeha_scheduler_reserved{resource=\"memory_mib\"}"); };

  auto r = command("node.rebuild", {{"node", "node-a"}, {"target", "node-b"}});
  ASSERT_TRUE(r["ok"]) << r;
  std::string id = r["result"]["task"];
  ASSERT_TRUE(wait_until([&] { return asked >= 1; }, 10s)) << task(id).dump(2);
  EXPECT_EQ(reserved(*ctl), 3 * 64) << "the rebuild holds the room of its 3 VMs on node-b";
  ctl->process().signal(SIGKILL);
  ctl->process().wait_exit(5s);
  ASSERT_EQ(task_state(id), "running") << "the rebuild ended before the controller was killed: nothing to resume";
  int left = 0;  // VMs whose records do not name node-b yet: their room is to be held again
  for (const auto& v : vms) left += vm_record(v.uuid)["node"] != "node-b";
  ASSERT_GT(left, 0);

  ctl = std::make_unique<HostProcess>(config);
  ASSERT_TRUE(ctl->wait_ready()) << ctl->log();
  EXPECT_TRUE(wait_until([&] { return reserved(*ctl) == left * 64; }, 5s))
      << reserved(*ctl) << " MiB held, not " << left * 64 << "\n" << ctl->log();
  std::string said = "holding again the room of " + std::to_string(left) + " VM(s) of task " + id;
  EXPECT_TRUE(wait_until([&] { return ctl->log().find(said) != std::string::npos; }, 5s)) << ctl->log();
  ASSERT_TRUE(wait_until([&] { return task_state(id) == "succeeded"; }, 60s)) << task(id).dump(2) << ctl->log();
  EXPECT_TRUE(wait_until([&] { return reserved(*ctl) == 0; }, 5s)) << reserved(*ctl) << " MiB still held";
}

}  // namespace
}  // namespace nodeha::test

namespace nodeha::test {
namespace {

// Steps block for as long as the agent takes (a guest's shutdown lasts up to stop_timeout). They
// must not take the host's shared workers: with 2 workers and 6 stops held by the "agent" (this
// test answers node-a's vm.stop and keeps the answers back), task.show, which runs on a worker,
// still answers at once.
TEST_F(Operations, StepsThatWaitOnAnAgentLeaveTheControllersWorkersFree) {
  HostProcess ctl(controller_config(), {"host.workers=2"});
  ASSERT_TRUE(ctl.wait_ready()) << ctl.log();
  ASSERT_TRUE(wait_until([&] { return ctl.metric("nodeha_plugin_up{plugin=\"drain\"}") == 1; })) << ctl.log();
  ASSERT_TRUE(bus_->kv_put("nodes", "node-a",
                           json{{"node", "node-a"}, {"management", "enabled"}, {"monitor", "normal"}, {"lock", nullptr}}.dump())
                  .is_ok());
  for (int i = 1; i <= 6; ++i) {
    std::string uuid = "5e0c0000-0000-4000-8000-00000000000" + std::to_string(i);
    json vm = {{"uuid", uuid}, {"name", "vm-" + std::to_string(i)}, {"node", "node-a"}, {"generation", 1},
               {"state", "running"}, {"desired", "running"}};
    ASSERT_TRUE(bus_->kv_put("vms", uuid, vm.dump()).is_ok());
  }
  std::mutex mu;
  std::vector<std::pair<std::string, std::string>> held;  // reply, uuid
  ASSERT_TRUE(bus_->subscribe("nodeha.agent.node-a.vm.stop", "", [&](Message m) {
    std::lock_guard lock(mu);
    held.emplace_back(m.reply, json::parse(m.data).value("uuid", ""));
  }));
  auto held_count = [&] {
    std::lock_guard lock(mu);
    return held.size();
  };

  json drain = command("node.drain", {{"node", "node-a"}});
  ASSERT_TRUE(drain.is_object() && drain.value("ok", false)) << drain << "\n" << ctl.log();
  std::string id = drain["result"]["task"];
  ASSERT_TRUE(wait_until([&] { return held_count() == 6; }, 10s)) << held_count() << " stops asked\n" << ctl.log();

  // Six steps wait on the agent; the controller's two workers are free for everything else.
  auto asked = std::chrono::steady_clock::now();
  auto shown = bus_->request("nodeha.cmd.task.show", json{{"task", id}}.dump(), 3s);
  ASSERT_TRUE(shown.is_ok()) << shown.status().message() << "\n" << ctl.log();
  EXPECT_LT(std::chrono::steady_clock::now() - asked, 2s);
  EXPECT_EQ(json::parse(shown.value())["result"]["state"], "running");

  {
    std::lock_guard lock(mu);
    for (const auto& [reply, uuid] : held)
      ASSERT_TRUE(bus_->publish(reply, json{{"ok", true}, {"result", {{"uuid", uuid}, {"state", "shutoff"}, {"forced", true}}}}.dump())
                      .is_ok());
  }
  EXPECT_TRUE(wait_until([&] { return task_state(id) == "succeeded"; }, 10s)) << task(id).dump(2) << "\n" << ctl.log();
}

// A rebuild skips the VM with a local disk and leaves it stranded: its record says where, by which
// task, since when and why; the node's record counts it; `nodeha vm list` and `node list` show it.
// No agent write sets or clears the mark (the record desk keeps it); the node's return, its agent
// reporting the VM there again, ends it, and the count with it.
TEST_F(Operations, AVmWithLocalDisksARebuildSkipsIsStrandedUntilItsNodeReportsItAgain) {
  auto vms = vms_of(1, 2, /*local=*/1);  // vm-1-0 has a local disk, vm-1-1 is on rbd
  std::unique_ptr<HostProcess> ctl, b;
  ASSERT_NO_FATAL_FAILURE(lose_and_drain_node_a(vms, ctl, b));
  auto cli = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"--server", nats_.url()});
    return run_cli(args, files_);
  };

  ASSERT_TRUE(command("node.rebuild", {{"node", "node-a"}, {"dry_run", true}})["ok"]);
  EXPECT_FALSE(vm_record(vms[0].uuid).contains("stranded")) << "a dry run marks nothing";
  auto since = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  auto r = command("node.rebuild", {{"node", "node-a"}});
  ASSERT_TRUE(r["ok"]) << r;
  std::string id = r["result"]["task"];
  ASSERT_TRUE(wait_until([&] { return task_state(id) == "succeeded"; }, 20s)) << task(id).dump(2) << ctl->log();
  auto steps = task(id)["steps"];
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_EQ(steps[0]["vm"], vms[0].uuid);
  EXPECT_EQ(steps[0]["state"], "skipped");
  EXPECT_THAT(steps[0].dump(), HasSubstr("has local disks"));
  EXPECT_EQ(steps[1]["state"], "succeeded");
  EXPECT_EQ(vm_record(vms[1].uuid)["node"], "node-b");
  EXPECT_FALSE(vm_record(vms[1].uuid).contains("stranded"));

  const json mark = vm_record(vms[0].uuid)["stranded"];
  ASSERT_TRUE(mark.is_object()) << vm_record(vms[0].uuid).dump(2);
  EXPECT_EQ(mark["node"], "node-a");
  EXPECT_EQ(mark["task"], id);
  EXPECT_GE(mark["since"].get<int64_t>(), since);
  EXPECT_THAT(mark["reason"].get<std::string>(), HasSubstr("has local disks: its data is on node-a"));
  EXPECT_EQ(vm_record(vms[0].uuid)["node"], "node-a");
  ASSERT_TRUE(wait_until([&] { return node_record("node-a").value("stranded", 0) == 1; })) << node_record("node-a").dump(2);
  EXPECT_FALSE(node_record("node-b").contains("stranded"));

  auto listed = cli({"vm", "list"});
  ASSERT_EQ(listed.status, 0) << listed.err;
  EXPECT_THAT(listed.out, ::testing::ContainsRegex(vms[0].uuid + " +vm-1-0 +node-a +stranded on node-a "));
  EXPECT_THAT(listed.out, ::testing::ContainsRegex(vms[1].uuid + " +vm-1-1 +node-b +running "));
  auto only = cli({"--json", "vm", "list", "--stranded"}).doc();
  ASSERT_EQ(only["vms"].size(), 1u) << only;
  EXPECT_EQ(only["vms"][0]["uuid"], vms[0].uuid);
  EXPECT_EQ(only["vms"][0]["stranded"], mark);
  EXPECT_THAT(cli({"vm", "list", "--node", "node-b", "--stranded"}).out, HasSubstr("No VMs stranded on node-b."));
  EXPECT_EQ(cli({"--json", "vm", "list", "--node", "node-zz", "--stranded"}).doc()["error"]["code"], "unknown_node");
  EXPECT_THAT(cli({"node", "list"}).out, ::testing::ContainsRegex("node-a +drained +unreachable.* \\(1 stranded\\)"));
  EXPECT_EQ(cli({"--json", "node", "show", "node-a"}).doc()["stranded"], 1);
  EXPECT_THAT(cli({"node", "show", "node-a"}).out, HasSubstr("`nodeha vm list --node node-a --stranded`"));

  // The record desk writes for an agent; the mark is the controller's. node-a's own write that
  // drops it while reporting the VM missing keeps it; node-b's write that sets one on its VM is
  // stored without it.
  auto desk_write = [&](const std::string& node, const std::string& uuid, const std::function<void(json&)>& change) {
    json reply;
    EXPECT_TRUE(wait_until([&] {  // an agent may write the same record meanwhile: read again
      auto cur = bus_->kv_get("vms", uuid);
      if (!cur) return false;
      json rec = json::parse(cur->value);
      change(rec);
      auto a = bus_->request("nodeha.ctl." + node + ".vm.write",
                             json{{"uuid", uuid}, {"revision", cur->revision}, {"record", rec}}.dump(), 5s);
      reply = a ? json::parse(a.value()) : json();
      return reply.value("ok", false);
    })) << reply;
  };
  desk_write("node-a", vms[0].uuid, [](json& rec) {
    rec.erase("stranded");
    rec["state"] = "missing";
  });
  EXPECT_EQ(vm_record(vms[0].uuid)["state"], "missing");
  EXPECT_EQ(vm_record(vms[0].uuid)["stranded"], mark);
  desk_write("node-b", vms[1].uuid, [&](json& rec) { rec["stranded"] = {{"node", "node-b"}, {"task", "forged"}}; });
  EXPECT_FALSE(vm_record(vms[1].uuid).contains("stranded")) << vm_record(vms[1].uuid).dump(2);
  EXPECT_FALSE(node_record("node-b").contains("stranded"));

  // node-a returns: its agent has the VM and reports it; the mark and the count go.
  auto a = start_agent("node-a");
  ASSERT_TRUE(wait_until([&] { return !vm_record(vms[0].uuid).contains("stranded"); }, 20s))
      << vm_record(vms[0].uuid).dump(2) << a->log();
  EXPECT_EQ(vm_record(vms[0].uuid)["node"], "node-a");
  EXPECT_NE(vm_record(vms[0].uuid)["state"], "missing");
  ASSERT_TRUE(wait_until([&] { return !node_record("node-a").contains("stranded"); })) << node_record("node-a").dump(2);
  EXPECT_THAT(ctl->log(), HasSubstr("VM " + vms[0].uuid + " is no longer stranded: node-a reports it"));
  EXPECT_THAT(cli({"vm", "list"}).out, ::testing::Not(HasSubstr("stranded")));
  EXPECT_TRUE(cli({"--json", "vm", "list", "--stranded"}).doc()["vms"].empty());
}

// The counts follow the vms bucket whoever changes it, also while no controller runs: a stranded
// VM whose record was removed meanwhile, and a count nobody could explain, are corrected by the
// next controller at its start.
TEST_F(Operations, AControllerCorrectsStrandedCountsThatWentStaleWhileNoneRan) {
  auto vms = vms_of(1, 1, /*local=*/1);
  std::unique_ptr<HostProcess> ctl, b;
  ASSERT_NO_FATAL_FAILURE(lose_and_drain_node_a(vms, ctl, b));
  auto r = command("node.rebuild", {{"node", "node-a"}});
  ASSERT_TRUE(r["ok"]) << r;
  ASSERT_TRUE(wait_until([&] { return node_record("node-a").value("stranded", 0) == 1; })) << node_record("node-a").dump(2);

  ctl->process().signal(SIGKILL);
  ctl->process().wait_exit(5s);
  ASSERT_TRUE(bus_->kv_delete("vms", vms[0].uuid).is_ok());  // removed by hand while no controller ran
  json stale = node_record("node-b");
  stale["stranded"] = 5;
  ASSERT_TRUE(bus_->kv_put("nodes", "node-b", stale.dump()).is_ok());
  ASSERT_EQ(node_record("node-a")["stranded"], 1);

  ctl = std::make_unique<HostProcess>(rebuild_config());
  ASSERT_TRUE(ctl->wait_ready()) << ctl->log();
  EXPECT_TRUE(wait_until([&] { return !node_record("node-a").contains("stranded"); })) << node_record("node-a").dump(2);
  EXPECT_TRUE(wait_until([&] { return !node_record("node-b").contains("stranded"); })) << node_record("node-b").dump(2);
  EXPECT_EQ(node_record("node-a")["management"], "drained");  // every other field kept
}

}  // namespace
}  // namespace nodeha::test
