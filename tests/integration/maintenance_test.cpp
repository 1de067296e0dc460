// `cmd.node.maintenance` end to end on a real nats-server, with agents on the libvirt test
// driver (operations_fixture.h): the node becomes disabled in the very record write that takes its
// lock, no placement picks it while the task runs, it stays disabled after the task whatever the
// task came to, a dry run changes nothing, and every refusal changes nothing.
//
// The test driver cannot migrate live (virDomainMigrateToURI3 is not supported there): every
// step fails, the VMs stay where they were, and the node must still end disabled. The migration
// itself is covered by tests/system/node_migration_test.cpp on QEMU.
#include "operations_fixture.h"

#include <atomic>
#include <thread>

namespace nodeha::test {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

bool task_final(const std::string& state) { return state == "succeeded" || state == "failed" || state == "partial"; }

// Where the scheduler places one small VM now, on `target` when one is named (nothing is
// reserved).
std::string placed_on(host::Bus& bus, const std::string& target = "") {
  json vm = {{"uuid", "00000000-0000-4000-8000-0000000000ff"}, {"vcpus", 1}, {"memory_mib", 64}, {"disk_gib", 1},
             {"local_disk", false}};
  json request = {{"vms", {vm}}};
  if (!target.empty()) request["target"] = target;
  auto r = bus.request("nodeha.cmd.sched.place", request.dump(), 5s);
  if (!r) return "no answer";
  auto j = json::parse(r.value(), nullptr, false);
  if (!j.is_object() || !j.value("ok", false)) return "refused: " + r.value();
  return j["result"]["placements"][0].value("node", "unplaced");
}

// A controller, node-a with `vms` recorded, node-b empty; both normal.
class Maintenance : public Operations {
 protected:
  void start(const std::vector<Vm>& vms) {
    ctl_ = std::make_unique<HostProcess>(controller_config());
    ASSERT_TRUE(ctl_->wait_ready()) << ctl_->log();
    a_ = start_agent("node-a", vms);
    b_ = start_agent("node-b");
    ASSERT_TRUE(wait_until([&] { return normal("node-a") && normal("node-b") && recorded(vms, "node-a"); }, 20s))
        << ctl_->log();
  }
  std::unique_ptr<HostProcess> ctl_, a_, b_;
};

TEST_F(Maintenance, DisablesTheNodeInTheLockWriteAndLeavesItDisabled) {
  auto vms = vms_of(1, 3, /*local=*/1);  // vm-1-0 has a local disk: skipped, with the reason
  ASSERT_NO_FATAL_FAILURE(start(vms));
  HostProcess& ctl = *ctl_;
  ASSERT_TRUE(wait_until([&] { return placed_on(*bus_, "node-a") == "node-a"; })) << placed_on(*bus_, "node-a");

  // Every version of node-a's record from here on: none may hold the lock while still enabled.
  std::mutex seen_mu;
  std::vector<json> versions;
  auto watch = bus_->kv_watch("nodes", "node-a", [&](const KvEntry& e) {
    std::lock_guard lock(seen_mu);
    versions.push_back(json::parse(e.value, nullptr, false));
  });
  ASSERT_TRUE(watch.is_ok());

  // A dry run: the plan, and nothing changed (not even the management state).
  auto dry = command("node.maintenance", {{"node", "node-a"}, {"dry_run", true}});
  ASSERT_TRUE(dry["ok"]) << dry;
  EXPECT_FALSE(dry["result"].contains("task"));
  EXPECT_EQ(dry["result"]["management"], "disabled");
  ASSERT_EQ(dry["result"]["plan"].size(), 3u);
  int skipped = 0;
  for (const auto& p : dry["result"]["plan"]) {
    if (p["action"] == "skip") {
      ++skipped;
      EXPECT_THAT(p["reason"].get<std::string>(), HasSubstr("local disks")) << p;
    } else {
      EXPECT_EQ(p["action"], "migrate") << p;
      EXPECT_EQ(p["target"], "node-b") << p;
    }
  }
  EXPECT_EQ(skipped, 1);
  EXPECT_EQ(node_record("node-a")["management"], "enabled");
  EXPECT_TRUE(node_record("node-a")["lock"].is_null());
  EXPECT_TRUE(command("task.list", {{"node", "node-a"}})["result"]["tasks"].empty());

  // Placements on node-a asked for all the time the task runs (from its answer to its end).
  std::atomic<bool> running{true};
  std::atomic<int> asked{0};
  std::vector<std::string> landed;
  std::thread placer;
  auto r = command("node.maintenance", {{"node", "node-a"}});
  ASSERT_TRUE(r["ok"]) << r;
  std::string id = r["result"]["task"];
  placer = std::thread([&] {
    auto bus = nats_.client();
    while (running) {
      landed.push_back(placed_on(*bus, "node-a"));
      ++asked;
    }
  });
  ASSERT_TRUE(wait_until([&] { return task_final(task_state(id)) && asked > 0; }, 30s)) << task(id).dump(2) << ctl.log();
  running = false;
  placer.join();
  for (const auto& n : landed) EXPECT_NE(n, "node-a") << "placed on the node under maintenance";

  auto done = task(id);
  EXPECT_EQ(done["kind"], "maintenance");
  EXPECT_EQ(node_record("node-a")["management"], "disabled");  // whatever the task came to
  EXPECT_TRUE(node_record("node-a")["lock"].is_null());
  // The test driver cannot migrate: the VMs stayed, running, and recorded on node-a.
  EXPECT_TRUE(recorded(vms, "node-a"));
  auto left = domains("node-a");
  EXPECT_EQ(left.size(), vms.size()) << "node-a's agent does not list its VMs after the failed migrations";
  for (const auto& [uuid, state] : left) EXPECT_EQ(state, "running") << uuid;
  EXPECT_TRUE(domains("node-b").empty());
  EXPECT_TRUE(wait_until([&] { return ctl.metric("nodeha_tasks_total{kind=\"maintenance\",result=\"failed\"}") == 1; }))
      << done.dump(2);
  EXPECT_EQ(placed_on(*bus_), "node-b");

  {
    std::lock_guard lock(seen_mu);
    bool locked_once = false;
    for (const auto& v : versions) {
      if (!v.is_object() || !v.contains("lock") || !v["lock"].is_object()) continue;
      locked_once = true;
      EXPECT_EQ(v["management"], "disabled") << "locked while still " << v["management"];
      EXPECT_EQ(v["lock"]["kind"], "maintenance");
    }
    EXPECT_TRUE(locked_once);
  }
  bus_->kv_unwatch(watch.value());
  {
    std::lock_guard lock(mu_);
    bool event = false;
    for (const auto& e : events_)
      event |= e["subject"] == "nodeha.evt.node.node-a" && e.value("event", "") == "management" && e["to"] == "disabled" &&
               e["task"] == id;
    EXPECT_TRUE(event);
  }

  // A second maintenance of the disabled node is fine; enable ends the maintenance.
  auto again = command("node.maintenance", {{"node", "node-a"}, {"dry_run", true}});
  EXPECT_TRUE(again["ok"]) << again;
  ASSERT_TRUE(command("node.enable", {{"node", "node-a"}})["ok"]);
  EXPECT_EQ(node_record("node-a")["management"], "enabled");
}

// Plans (operations.md, "Plans") hold for maintenance as for migrate: a dry run's plan runs
// exactly by its id, once; a plan of another command, or one whose node changed since, is refused
// with plan_drifted and changes nothing (and runs once the change is undone).
TEST_F(Maintenance, APlanRunsExactlyOnceOrIsRefusedWhenItDrifted) {
  auto vms = vms_of(1, 2);
  ASSERT_NO_FATAL_FAILURE(start(vms));
  auto untouched = [&] {
    EXPECT_EQ(node_record("node-a")["management"], "enabled");
    EXPECT_TRUE(node_record("node-a")["lock"].is_null());
    EXPECT_TRUE(command("task.list", {{"node", "node-a"}})["result"]["tasks"].empty());
  };
  auto dry = command("node.maintenance", {{"node", "node-a"}, {"dry_run", true}});
  ASSERT_TRUE(dry["ok"]) << dry;
  std::string id = dry["result"]["plan_id"];
  EXPECT_EQ(id.size(), 32u);

  auto migrate_plan = command("node.migrate", {{"node", "node-a"}, {"dry_run", true}});
  ASSERT_TRUE(migrate_plan["ok"]) << migrate_plan;
  auto other = command("node.maintenance", {{"node", "node-a"}, {"plan", migrate_plan["result"]["plan_id"]}});
  EXPECT_EQ(other["error"]["code"], "plan_drifted") << other;
  untouched();

  ASSERT_TRUE(command("node.disable", {{"node", "node-a"}})["ok"]);
  auto drifted = command("node.maintenance", {{"node", "node-a"}, {"plan", id}});
  EXPECT_EQ(drifted["error"]["code"], "plan_drifted") << drifted;
  ASSERT_TRUE(drifted["error"]["changes"].is_array()) << drifted;
  EXPECT_EQ(drifted["error"]["changes"][0]["what"], "node_state") << drifted;
  EXPECT_TRUE(command("task.list", {{"node", "node-a"}})["result"]["tasks"].empty());
  ASSERT_TRUE(command("node.enable", {{"node", "node-a"}})["ok"]);
  untouched();

  auto r = command("node.maintenance", {{"node", "node-a"}, {"plan", id}});
  ASSERT_TRUE(r["ok"]) << r;
  EXPECT_EQ(r["result"]["plan_id"], id);
  EXPECT_EQ(r["result"]["plan"], dry["result"]["plan"]);
  std::string task_id = r["result"]["task"];
  EXPECT_EQ(task(task_id)["kind"], "maintenance");
  EXPECT_EQ(node_record("node-a")["management"], "disabled");
  ASSERT_TRUE(wait_until([&] { return task_final(task_state(task_id)); }, 30s)) << task(task_id).dump(2);
  auto again = command("node.maintenance", {{"node", "node-a"}, {"plan", id}});
  EXPECT_EQ(again["error"]["code"], "plan_used") << again;
}

TEST_F(Maintenance, RefusalsChangeNothing) {
  auto vms = vms_of(1, 2);
  ASSERT_NO_FATAL_FAILURE(start(vms));
  auto unchanged = [&](const char* management) {
    EXPECT_EQ(node_record("node-a")["management"], management);
    EXPECT_TRUE(command("task.list", {{"node", "node-a"}})["result"]["tasks"].empty());
  };

  EXPECT_EQ(refusal("node.maintenance", R"({"node":)"), "bad_json");
  EXPECT_EQ(refusal("node.maintenance", R"({"node":"node-a","target":"node-b"})"), "unknown_field");
  EXPECT_EQ(refusal("node.maintenance", R"({"node":"node-a","vms":[]})"), "unknown_field");
  EXPECT_EQ(refusal("node.maintenance", R"({"node":1})"), "bad_type");
  EXPECT_EQ(refusal("node.maintenance", R"({"dry_run":true})"), "missing_field");
  EXPECT_EQ(refusal("node.maintenance", R"({"node":"node-zz"})"), "unknown_node");
  EXPECT_EQ(refusal("node.maintenance", R"({"node":"node a"})"), "bad_value");
  EXPECT_EQ(refusal("node.maintenance", R"({"node":"node-a","network":"wifi"})"), "bad_value");
  EXPECT_EQ(refusal("node.maintenance", R"({"node":"node-a","max_parallel":0})"), "bad_value");
  EXPECT_EQ(refusal("node.maintenance", R"({"node":"node-a","network":"business"})"), "unknown_network");
  unchanged("enabled");

  // Locked by another task: refused, naming it.
  auto rec = node_record("node-a");
  rec["lock"] = {{"task", "7f3c000000000001"}, {"kind", "migrate"}, {"since", 1'790'000'000'000}, {"owner", "ctl"}};
  ASSERT_TRUE(bus_->kv_put("nodes", "node-a", rec.dump()).is_ok());
  auto locked = command("node.maintenance", {{"node", "node-a"}});
  ASSERT_FALSE(locked["ok"]) << locked;
  EXPECT_EQ(locked["error"]["code"], "node_locked");
  EXPECT_THAT(locked["error"]["message"].get<std::string>(), HasSubstr("7f3c000000000001"));
  EXPECT_EQ(node_record("node-a")["management"], "enabled");
  rec["lock"] = nullptr;
  ASSERT_TRUE(bus_->kv_put("nodes", "node-a", rec.dump()).is_ok());

  // Unreachable: its VMs cannot move live; the message says what to do instead.
  a_.reset();
  ASSERT_TRUE(wait_until([&] { return unreachable("node-a"); }, 10s));
  auto lost = command("node.maintenance", {{"node", "node-a"}});
  ASSERT_FALSE(lost["ok"]) << lost;
  EXPECT_EQ(lost["error"]["code"], "node_unreachable");
  EXPECT_THAT(lost["error"]["message"].get<std::string>(), HasSubstr("drain and rebuild"));
  unchanged("enabled");
  EXPECT_TRUE(recorded(vms, "node-a"));

  // Drained: nothing runs there to move.
  a_ = start_agent("node-a", vms);
  ASSERT_TRUE(wait_until([&] { return normal("node-a"); }, 10s));
  auto d = command("node.drain", {{"node", "node-a"}});
  ASSERT_TRUE(d["ok"]) << d;
  ASSERT_TRUE(wait_until([&] { return task_final(task_state(d["result"]["task"])); }, 20s));
  auto drained = command("node.maintenance", {{"node", "node-a"}});
  ASSERT_FALSE(drained["ok"]) << drained;
  EXPECT_EQ(drained["error"]["code"], "node_drained");
  EXPECT_THAT(drained["error"]["message"].get<std::string>(), HasSubstr("nodeha node enable node-a"));
  EXPECT_EQ(node_record("node-a")["management"], "drained");
  EXPECT_EQ(command("task.list", {{"node", "node-a"}})["result"]["tasks"].size(), 1u);  // the drain only
}

}  // namespace
}  // namespace nodeha::test
