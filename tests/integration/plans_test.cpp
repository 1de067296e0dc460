// Plans that run exactly as shown (plugins/tasks/plans.h), end to end on a real nats-server with
// agents on the libvirt test driver: a rebuild plan runs onto its planned target even when a new
// empty node would now be preferred; each drift (a VM added on the node, the node's state, a
// target disabled or filled) is refused with plan_drifted naming the change, and nothing changes;
// a plan expires, runs once, and a bad, unknown or foreign plan id is refused.
#include "operations_fixture.h"

#include <regex>

namespace nodeha::test {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

class Plans : public Operations {
 protected:
  // The dry run's plan id (ok asserted).
  std::string dry_run(const std::string& op, json body, int64_t* expires_at = nullptr) {
    body["dry_run"] = true;
    auto r = command(op, body);
    EXPECT_TRUE(r["ok"]) << r;
    EXPECT_TRUE(r["result"]["plan_id"].is_string()) << r;
    EXPECT_GT(r["result"].value("expires_at", int64_t{0}), 0) << r;
    if (expires_at) *expires_at = r["result"].value("expires_at", int64_t{0});
    return r["result"].value("plan_id", "");
  }
  // The error of a refused command (ok must be false).
  json refused(const std::string& op, const json& body) {
    auto r = command(op, body);
    EXPECT_FALSE(r["ok"]) << r;
    return r.value("error", json::object());
  }
  std::vector<std::string> whats(const json& error) {
    std::vector<std::string> out;
    for (const auto& c : error.value("changes", json::array())) out.push_back(c["what"]);
    return out;
  }
  size_t task_count() {
    auto all = bus_->kv_list("tasks");
    return all ? all->size() : 0;
  }
};

TEST_F(Plans, ARebuildPlanRunsOntoItsTargetsEvenWhenANewNodeWouldNowBePreferredAndOnlyOnce) {
  auto vms = vms_of(1, 3);
  std::unique_ptr<HostProcess> ctl, b;
  ASSERT_NO_FATAL_FAILURE(lose_and_drain_node_a(vms, ctl, b));
  std::string id = dry_run("node.rebuild", {{"node", "node-a"}});
  auto kept = bus_->kv_get("plans", id);
  ASSERT_TRUE(kept) << "the plan is kept in bucket plans";
  EXPECT_EQ(json::parse(kept->value)["basis"]["targets"][0]["node"], "node-b");

  // An empty node-c appears: the scheduler (spread) would now put VMs there.
  auto c = start_agent("node-c");
  ASSERT_TRUE(wait_until([&] { return normal("node-c"); })) << ctl->log();
  json fresh;
  ASSERT_TRUE(wait_until([&] {  // once the scheduler counts node-c's capacity
    fresh = command("node.rebuild", {{"node", "node-a"}, {"dry_run", true}});
    for (const auto& step : fresh["result"]["plan"])
      if (step["target"] == "node-c") return true;
    return false;
  })) << "the test needs a cluster where a new plan differs: " << fresh;

  auto r = command("node.rebuild", {{"node", "node-a"}, {"plan", id}});
  ASSERT_TRUE(r["ok"]) << r;
  EXPECT_EQ(r["result"]["plan_id"], id);
  std::string task_id = r["result"]["task"];
  for (const auto& step : r["result"]["plan"]) EXPECT_EQ(step["target"], "node-b") << step;
  ASSERT_TRUE(wait_until([&] { return task_state(task_id) == "succeeded"; }, 30s)) << task(task_id).dump(2) << ctl->log();
  for (const auto& v : vms) EXPECT_EQ(vm_record(v.uuid)["node"], "node-b") << v.uuid;
  EXPECT_TRUE(domains("node-c").empty());

  auto again = refused("node.rebuild", {{"node", "node-a"}, {"plan", id}});
  EXPECT_EQ(again["code"], "plan_used") << again;
  EXPECT_THAT(again["message"].get<std::string>(), HasSubstr("ran already, as task " + task_id));
}

TEST_F(Plans, ARebuildPlanWhoseTargetIsDisabledOrFullIsRefusedAndChangesNothing) {
  auto vms = vms_of(1, 2);
  std::unique_ptr<HostProcess> ctl, b;
  ASSERT_NO_FATAL_FAILURE(lose_and_drain_node_a(vms, ctl, b));
  std::string id = dry_run("node.rebuild", {{"node", "node-a"}, {"target", "node-b"}});
  auto nothing_changed = [&] {
    EXPECT_TRUE(node_record("node-a")["lock"].is_null());
    EXPECT_TRUE(recorded(vms, "node-a"));
    EXPECT_EQ(task_count(), 1u);  // the drain's only
    EXPECT_TRUE(domains("node-b").empty());
  };

  ASSERT_TRUE(command("node.disable", {{"node", "node-b"}})["ok"]);
  auto e = refused("node.rebuild", {{"node", "node-a"}, {"plan", id}});
  EXPECT_EQ(e["code"], "plan_drifted") << e;
  EXPECT_EQ(whats(e), std::vector<std::string>{"target_state"}) << e;
  EXPECT_EQ(e["changes"][0]["node"], "node-b");
  EXPECT_THAT(e["message"].get<std::string>(), HasSubstr("target node-b was enabled/normal, now disabled/normal"));
  nothing_changed();
  ASSERT_TRUE(command("node.enable", {{"node", "node-b"}})["ok"]);

  // Filled: another placement holds all of node-b's memory (16 GiB).
  json fill = {{"vms", {{{"uuid", "0f000000-0000-4000-8000-000000000001"}, {"vcpus", 1}, {"memory_mib", 16384},
                         {"disk_gib", 0}, {"local_disk", false}}}},
               {"target", "node-b"}, {"reserve", 120}, {"task", "0f0f0f0f0f0f0f0f"}};
  auto held = command("sched.place", fill);
  ASSERT_TRUE(held["ok"] && held["result"]["placements"][0].contains("node")) << held;
  e = refused("node.rebuild", {{"node", "node-a"}, {"plan", id}});
  EXPECT_EQ(e["code"], "plan_drifted") << e;
  EXPECT_EQ(whats(e), (std::vector<std::string>{"target_full", "target_full"})) << e;
  EXPECT_THAT(e["message"].get<std::string>(), HasSubstr("target node-b no longer fits VM"));
  nothing_changed();

  // Room again: the same plan runs.
  ASSERT_TRUE(command("sched.release", {{"task", "0f0f0f0f0f0f0f0f"}})["ok"]);
  auto r = command("node.rebuild", {{"node", "node-a"}, {"plan", id}});
  ASSERT_TRUE(r["ok"]) << r;
  ASSERT_TRUE(wait_until([&] { return recorded(vms, "node-b"); }, 30s)) << ctl->log();
}

TEST_F(Plans, ADrainPlanIsRefusedWhenAVmIsAddedOrTheNodesStateChanged) {
  auto vms = vms_of(1, 2);
  HostProcess ctl(controller_config());
  ASSERT_TRUE(ctl.wait_ready()) << ctl.log();
  auto a = start_agent("node-a", vms);
  ASSERT_TRUE(wait_until([&] { return normal("node-a") && recorded(vms, "node-a"); })) << ctl.log();
  auto untouched = [&](const std::string& management) {
    EXPECT_EQ(node_record("node-a")["management"], management);
    EXPECT_TRUE(node_record("node-a")["lock"].is_null());
    EXPECT_EQ(task_count(), 0u);
    for (const auto& v : vms) EXPECT_EQ(domains("node-a")[v.uuid], "running");
  };

  // A VM defined on node-a after the dry run.
  std::string id = dry_run("node.drain", {{"node", "node-a"}});
  const std::string added = "0a000000-0000-4000-8000-0000000000a1";
  std::string xml = "<domain type='test'><name>added</name><uuid>" + added +
                    "</uuid><memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os></domain>";
  ASSERT_TRUE(wait_until([&] {  // once the agent serves (after its first inventory sync)
    auto r = bus_->request("nodeha.agent.node-a.vm.define", json{{"xml", xml}}.dump(), 5s);
    return r && json::parse(r.value(), nullptr, false).value("ok", false);
  })) << a->log();
  ASSERT_TRUE(wait_until([&] { return vm_record(added).value("node", "") == "node-a"; })) << ctl.log();
  auto e = refused("node.drain", {{"node", "node-a"}, {"plan", id}});
  EXPECT_EQ(e["code"], "plan_drifted") << e;
  EXPECT_EQ(whats(e), std::vector<std::string>{"vm_added"}) << e;
  EXPECT_EQ(e["changes"][0]["vm"], added);
  EXPECT_THAT(e["message"].get<std::string>(), HasSubstr("VM " + added + " (added shutoff) is now on node-a"));
  untouched("enabled");

  // The node disabled after the dry run (the plan said enabled).
  id = dry_run("node.drain", {{"node", "node-a"}});
  ASSERT_TRUE(command("node.disable", {{"node", "node-a"}})["ok"]);
  e = refused("node.drain", {{"node", "node-a"}, {"plan", id}});
  EXPECT_EQ(whats(e), std::vector<std::string>{"node_state"}) << e;
  untouched("disabled");

  // A plan for another command, or another node, is no plan for this one.
  e = refused("node.migrate", {{"node", "node-a"}, {"plan", id}});
  EXPECT_EQ(e["code"], "plan_drifted");
  EXPECT_EQ(whats(e), std::vector<std::string>{"command"}) << e;
  e = refused("node.drain", {{"node", "node-b"}, {"plan", id}});
  EXPECT_EQ(whats(e), std::vector<std::string>{"request"}) << e;
  untouched("disabled");
}

TEST_F(Plans, APlanExpiresAndABadOrUnknownIdChangesNothing) {
  auto vms = vms_of(1, 1);
  HostProcess ctl(controller_config(), {"plugin.drain.plan_ttl=\"1s\""});
  ASSERT_TRUE(ctl.wait_ready()) << ctl.log();
  auto a = start_agent("node-a", vms);
  ASSERT_TRUE(wait_until([&] { return normal("node-a") && recorded(vms, "node-a"); })) << ctl.log();

  int64_t expires_at = 0;
  std::string id = dry_run("node.drain", {{"node", "node-a"}}, &expires_at);
  auto unix_ms = [] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  };
  EXPECT_LE(expires_at, unix_ms() + 1000);
  ASSERT_TRUE(wait_until([&] { return unix_ms() > expires_at + 50; }, 5s));  // the plan's time is up
  std::string code = refused("node.drain", {{"node", "node-a"}, {"plan", id}}).value("code", "");
  EXPECT_TRUE(code == "plan_expired" || code == "unknown_plan") << code;  // refused, or swept already
  EXPECT_TRUE(wait_until([&] { return !bus_->kv_get("plans", id); }, 5s)) << "the expired plan is removed";
  EXPECT_EQ(refused("node.drain", {{"node", "node-a"}, {"plan", id}})["code"], "unknown_plan");

  EXPECT_EQ(refused("node.drain", {{"node", "node-a"}, {"plan", "0123456789abcdef0123456789abcdef"}})["code"], "unknown_plan");
  auto bad = refused("node.drain", {{"node", "node-a"}, {"plan", "../../nodes/node-a"}});
  EXPECT_EQ(bad["code"], "bad_value");
  EXPECT_THAT(bad["message"].get<std::string>(), HasSubstr("is not a plan id: 32 hex digits"));
  EXPECT_EQ(refused("node.drain", {{"node", "node-a"}, {"plan", 7}})["code"], "bad_type");
  id = dry_run("node.drain", {{"node", "node-a"}});
  EXPECT_EQ(refused("node.drain", {{"node", "node-a"}, {"plan", id}, {"dry_run", true}})["code"], "bad_value");
  EXPECT_EQ(node_record("node-a")["management"], "enabled");
  EXPECT_EQ(task_count(), 0u);

  // plan_ttl is bounded.
  for (const char* ttl : {"0s", "25h"}) {
    auto run = run_host(controller_config(), {std::string("plugin.drain.plan_ttl=\"") + ttl + "\""});
    EXPECT_NE(run.status, 0) << ttl;
    EXPECT_THAT(run.output, HasSubstr("plan_ttl must be from 1s to 24h")) << run.output;
  }
}

// Migrate's live steps do not run on the test driver (the agents serve no migrate plugin): what
// is checked is the task a plan makes, each step pinned to its planned target although a new
// node would now be chosen, and a migrate plan refused when a VM is no longer on the node.
TEST_F(Plans, AMigratePlanMakesATaskPinnedToItsTargetsOrIsRefusedWhenAVmLeft) {
  auto vms = vms_of(1, 2);
  HostProcess ctl(controller_config());
  ASSERT_TRUE(ctl.wait_ready()) << ctl.log();
  auto a = start_agent("node-a", vms);
  auto b = start_agent("node-b");
  ASSERT_TRUE(wait_until([&] { return normal("node-a") && normal("node-b") && recorded(vms, "node-a"); })) << ctl.log();
  std::string id = dry_run("node.migrate", {{"node", "node-a"}, {"max_parallel", 1}});
  std::string one = dry_run("node.migrate", {{"node", "node-a"}, {"vms", {vms[1].uuid}}});
  auto c = start_agent("node-c");
  json fresh;
  ASSERT_TRUE(wait_until([&] {
    fresh = command("node.migrate", {{"node", "node-a"}, {"dry_run", true}});
    for (const auto& step : fresh["result"]["plan"])
      if (step["target"] == "node-c") return true;
    return false;
  })) << fresh;

  // Only node and plan: the rest (max_parallel) comes from the plan; a field that differs is refused.
  auto e = refused("node.migrate", {{"node", "node-a"}, {"plan", id}, {"max_parallel", 2}});
  EXPECT_EQ(whats(e), std::vector<std::string>{"request"}) << e;
  auto r = command("node.migrate", {{"node", "node-a"}, {"plan", id}});
  ASSERT_TRUE(r["ok"]) << r;
  std::string task_id = r["result"]["task"];
  auto made = task(task_id);
  EXPECT_EQ(made["params"]["max_parallel"], 1);
  ASSERT_EQ(made["steps"].size(), 2u) << made;
  for (const auto& step : made["steps"]) EXPECT_EQ(step["target"], "node-b") << step;
  ASSERT_TRUE(wait_until([&] { return task_state(task_id) == "failed"; }, 20s)) << task(task_id).dump(2);

  // The one-VM plan: its VM's record is moved away meanwhile (as a rebuild elsewhere would).
  auto record = vm_record(vms[1].uuid);
  record["node"] = "node-c";
  record["generation"] = record.value("generation", 0) + 1;
  ASSERT_TRUE(bus_->kv_put("vms", vms[1].uuid, record.dump()));
  e = refused("node.migrate", {{"node", "node-a"}, {"plan", one}});
  EXPECT_EQ(e["code"], "plan_drifted");
  EXPECT_EQ(whats(e), std::vector<std::string>{"vm_gone"}) << e;
  EXPECT_THAT(e["message"].get<std::string>(), HasSubstr("VM " + vms[1].uuid + " is no longer on node-a"));
}

}  // namespace
}  // namespace nodeha::test
