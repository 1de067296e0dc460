// `nodeha node|task|vm`, the built binary against a real cluster: nats-server, a controller
// (heartbeat, scheduler, tasks, vms, drain, rebuild, migrate) and agents on the libvirt test
// driver, built the way operations_test.cpp builds them. Every command in table and --json form,
// every exit code (0, 1 for a task that ends failed, partial or cancelled, 2 for refused input
// and for a missing --yes without a terminal, 3 without NATS or without a controller), dry runs
// that change nothing, and on a pseudo-terminal (tmux): the confirmation prompt, the live
// progress display redrawn in place until the summary, and colour. A migration's figures (disk
// apart from memory, the time left) from the agent's event to the task's step and the live view.
#include "bus.h"
#include "cli_run.h"
#include "host_process.h"
#include "nats_server.h"
#include "task_read.h"
#include "test_nodes.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <fstream>
#include <iostream>
#include <regex>
#include <mutex>
#include <set>

namespace nodeha::test {
namespace {

using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::Not;
using json = nlohmann::json;

// A pseudo-terminal: a tmux server of its own (socket in a temp dir, no user config) running
// one shell command in a detached 200x50 session.
class Terminal {
 public:
  Terminal(const TempDir& dir, const std::string& command) : dir_(dir), socket_(dir.file("tmux.sock")) {
    EXPECT_EQ(tmux({"new-session", "-d", "-x", "200", "-y", "50", command}), 0) << read_file(dir_.file("tmux.out"));
  }
  ~Terminal() { tmux({"kill-server"}); }
  // What the pane shows; with `escapes`, its colours as ANSI sequences too.
  std::string screen(bool escapes = false) {
    tmux(escapes ? std::vector<std::string>{"capture-pane", "-p", "-e"} : std::vector<std::string>{"capture-pane", "-p"});
    return read_file(dir_.file("tmux.out"));
  }
  void type(const std::string& line) { tmux({"send-keys", line, "Enter"}); }
  // Waits until the screen shows `text`; the screen as last seen goes to `*seen`.
  bool shows(const std::string& text, std::string* seen, std::chrono::milliseconds timeout = 20s) {
    return wait_until([&] { return (*seen = screen()).find(text) != std::string::npos; }, timeout);
  }

 private:
  int tmux(std::vector<std::string> args) {
    std::vector<std::string> argv{"tmux", "-f", "/dev/null", "-S", socket_};
    argv.insert(argv.end(), args.begin(), args.end());
    std::remove(dir_.file("tmux.out").c_str());
    Process p(argv, dir_.file("tmux.out"));
    return p.wait_exit(10s).value_or(-1);
  }
  const TempDir& dir_;
  std::string socket_;
};

size_t occurrences(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t pos = 0; (pos = text.find(what, pos)) != std::string::npos; pos += what.size()) ++n;
  return n;
}

class CliCluster : public ::testing::Test {
 protected:
  void SetUp() override {
    bus_ = nats_.client();
    ASSERT_TRUE(bus_);
  }

  void start_controller() {
    controller_ = std::make_unique<HostProcess>(
        host_tables("controller", "ctl", nats_.url()) +
        "[[plugin]]\nlibrary = \"heartbeat\"\ninterval = \"1s\"\nmisses = 2\nping_timeout = \"300ms\"\n"
        "[[plugin]]\nlibrary = \"scheduler\"\nreserve_vcpus = 0\nreserve_memory_mib = 0\ncpu_ratio = 32.0\n"
        "[[plugin]]\nlibrary = \"tasks\"\n"
        "[[plugin]]\nlibrary = \"vms\"\n"
        "[[plugin]]\nlibrary = \"drain\"\nstop_timeout = \"0s\"\nretry_every = \"300ms\"\n"
        "[[plugin]]\nlibrary = \"rebuild\"\n"
        "[[plugin]]\nlibrary = \"migrate\"\n");
    ASSERT_TRUE(controller_->wait_ready()) << controller_->log();
  }

  // Writes the node's file once; later starts reuse it (the node "returns" with its domains).
  std::unique_ptr<HostProcess> start_agent(const std::string& node, const std::vector<Vm>& vms = {}, int memory_mib = 16384) {
    std::string path = nodes_.path(node, vms, memory_mib);
    auto a = std::make_unique<HostProcess>(test_agent_config(node, path, {nats_.url()}));
    EXPECT_TRUE(a->wait_ready()) << a->log();
    return a;
  }

  // A controller, node-a with `vms`, node-b empty; both normal, the VMs recorded.
  void start_two_nodes(const std::vector<Vm>& vms, int node_b_memory_mib = 16384) {
    ASSERT_NO_FATAL_FAILURE(start_controller());
    a_ = start_agent("node-a", vms);
    b_ = start_agent("node-b", {}, node_b_memory_mib);
    ASSERT_TRUE(wait_until([&] { return ready("node-a", vms) && ready("node-b"); })) << controller_->log();
  }

  // Runs `nodeha --server <the cluster's> args...` to the end, without a terminal.
  CliRun run(std::vector<std::string> args, bool with_server = true) {
    if (with_server) args.insert(args.begin(), {"--server", nats_.url()});
    return run_cli(args, files_);
  }

  json node_record(const std::string& node) {
    auto e = bus_->kv_get("nodes", node);
    return e ? json::parse(e->value) : json::object();
  }
  std::string vm_node(const std::string& uuid) {
    auto e = bus_->kv_get("vms", uuid);
    return e ? json::parse(e->value).value("node", "") : "";
  }
  size_t task_count() {
    auto all = bus_->kv_list("tasks");
    return all ? all->size() : 0;
  }
  // The agent's domains as it reports them: uuid -> state.
  std::map<std::string, std::string> domains(const std::string& node) {
    std::map<std::string, std::string> out;
    auto r = bus_->request("nodeha.agent." + node + ".vm.list", "{}", 2s);
    if (!r) return out;
    auto j = json::parse(r.value());
    for (const auto& v : j["result"]["vms"]) out[v["uuid"]] = v["state"];
    return out;
  }
  bool ready(const std::string& node, const std::vector<Vm>& vms = {}) {
    if (node_record(node).value("monitor", "") != "normal") return false;
    for (const auto& v : vms)
      if (vm_node(v.uuid) != node) return false;
    return true;
  }
  // The terminal command that runs the CLI and keeps the pane open with its exit status.
  std::string in_terminal(const std::string& args) const {
    return std::string(NODEHA_CLI_BIN) + " --server " + nats_.url() + " " + args + "; echo \"[exit $?]\"; exec cat";
  }

  NatsServer nats_;
  std::unique_ptr<host::Bus> bus_;
  std::unique_ptr<HostProcess> controller_;
  std::unique_ptr<HostProcess> a_, b_;  // agents of node-a and node-b (start_two_nodes)
  TempDir files_;
  NodeFiles nodes_{files_};
};

TEST_F(CliCluster, NodeVmAndHelpInTableAndJson) {
  auto vms = vms_of(1, 2);
  ASSERT_NO_FATAL_FAILURE(start_two_nodes(vms));

  auto list = run({"node", "list"});
  EXPECT_EQ(list.status, 0) << list.err;
  EXPECT_THAT(list.out, ContainsRegex("NODE +MANAGEMENT +MONITOR +VMS +VCPU +MEMORY +HEARTBEAT +LOCK"));
  EXPECT_THAT(list.out, ContainsRegex("node-a +enabled +normal +2 +2/8 +128M/16.0G +[0-9.]+m?s ago +-"));
  EXPECT_THAT(list.out, ContainsRegex("node-b +enabled +normal +0 +0/8 "));
  EXPECT_LT(list.out.find("node-a"), list.out.find("node-b"));  // sorted
  EXPECT_THAT(list.out, Not(HasSubstr("\033[")));                // no colour without a terminal
  auto nodes = run({"--json", "node", "list"}).doc();
  ASSERT_EQ(nodes["nodes"].size(), 2u) << nodes;
  EXPECT_EQ(nodes["nodes"][0]["management"], "enabled");

  auto show = run({"node", "show", "node-a"});
  EXPECT_EQ(show.status, 0) << show.err;
  EXPECT_THAT(show.out, ContainsRegex("monitor +normal"));
  EXPECT_THAT(show.out, ContainsRegex(vms[1].uuid + " +vm-1-1 +running"));
  auto shown = run({"--json", "node", "show", "node-a"}).doc();
  EXPECT_EQ(shown["node"], "node-a");
  EXPECT_EQ(shown["vms"].size(), 2u);
  auto unknown = run({"node", "show", "node-zz"});
  EXPECT_EQ(unknown.status, 2);
  EXPECT_THAT(unknown.err, HasSubstr("nodeha: refused (unknown_node): no node named \"node-zz\""));
  EXPECT_EQ(run({"--json", "node", "show", "node-zz"}).doc()["error"]["code"], "unknown_node");

  auto vm_list = run({"vm", "list"});
  EXPECT_EQ(vm_list.status, 0) << vm_list.err;
  EXPECT_THAT(vm_list.out, ContainsRegex("VM +NAME +NODE +STATE +DESIRED +HA +VCPU +MEMORY +LOCAL DISK +GEN"));
  EXPECT_THAT(vm_list.out, ContainsRegex(vms[0].uuid + " +vm-1-0 +node-a +running +running +off +1 +64M +no +1"));
  EXPECT_THAT(run({"vm", "list", "--node", "node-b"}).out, HasSubstr("No VMs recorded on node-b."));
  auto vm_doc = run({"vm", "list", "--node", "node-a", "--json"}).doc();
  ASSERT_EQ(vm_doc["vms"].size(), 2u) << vm_doc;
  EXPECT_EQ(vm_doc["vms"][0]["node"], "node-a");
  EXPECT_FALSE(vm_doc["vms"][0].contains("xml"));
  EXPECT_EQ(run({"vm", "list", "--node", "node-zz"}).status, 2);

  // disable needs a confirmation: refused without a terminal and without --yes, nothing sent.
  auto unconfirmed = run({"node", "disable", "node-b"});
  EXPECT_EQ(unconfirmed.status, 2);
  EXPECT_THAT(unconfirmed.err, HasSubstr("stdin is not a terminal to ask on: add --yes to do it"));
  EXPECT_EQ(node_record("node-b")["management"], "enabled");
  auto disabled = run({"node", "disable", "node-b", "--yes"});
  EXPECT_EQ(disabled.status, 0) << disabled.err;
  EXPECT_THAT(disabled.out, HasSubstr("node-b is now disabled."));
  EXPECT_EQ(node_record("node-b")["management"], "disabled");
  EXPECT_THAT(run({"node", "disable", "node-b", "--yes"}).out, HasSubstr("node-b is already disabled; nothing changed."));
  auto enabled = run({"--json", "node", "enable", "node-b"}).doc();
  EXPECT_EQ(enabled["management"], "enabled");
  EXPECT_EQ(enabled["changed"], true);
  EXPECT_EQ(node_record("node-b")["management"], "enabled");

  // --help on every level, each with the exit codes.
  for (std::vector<std::string> args : {std::vector<std::string>{"--help"}, {"node", "--help"}, {"node", "migrate", "--help"},
                                        {"task", "watch", "--help"}, {"vm", "list", "--help"}}) {
    auto help = run(args);
    EXPECT_EQ(help.status, 0) << args.back();
    EXPECT_THAT(help.out, HasSubstr("Exit status: 0 done; 1 the operation failed or partly failed")) << help.out;
  }
  EXPECT_THAT(run({"node", "migrate", "--help"}).out, HasSubstr("--with-local-disks"));
  EXPECT_EQ(run({"node"}).status, 2);
  EXPECT_EQ(run({"node", "drain"}).status, 2);  // no NODE
}

TEST_F(CliCluster, MigrateDryRunThenAMigrationThatFailsExits1) {
  auto vms = vms_of(1, 2);
  ASSERT_NO_FATAL_FAILURE(start_two_nodes(vms));

  auto dry = run({"node", "migrate", "node-a", "--target", "node-b", "--dry-run"});
  EXPECT_EQ(dry.status, 0) << dry.err;
  EXPECT_THAT(dry.out, HasSubstr("DRY RUN: the migration of node-a would do:"));
  EXPECT_THAT(dry.out, ContainsRegex("VM +NAME +ACTION +TARGET +WHY"));
  EXPECT_THAT(dry.out, ContainsRegex(vms[0].uuid + " +vm-1-0 +migrate +node-b +-"));
  auto one = run({"--json", "node", "migrate", "node-a", "--vm", vms[1].uuid, "--dry-run"}).doc();
  ASSERT_EQ(one["plan"].size(), 1u) << one;
  EXPECT_EQ(one["plan"][0]["vm"], vms[1].uuid);
  EXPECT_EQ(task_count(), 0u);
  EXPECT_TRUE(node_record("node-a")["lock"].is_null());

  auto bad_vm = run({"node", "migrate", "node-a", "--vm", "00000009-0000-4000-8000-000000000009", "--yes"});
  EXPECT_EQ(bad_vm.status, 2);
  EXPECT_THAT(bad_vm.err, HasSubstr("refused (unknown_vm)"));
  EXPECT_EQ(run({"node", "migrate", "node-a", "--network", "wifi", "--yes"}).status, 2);
  EXPECT_EQ(run({"node", "migrate", "node-a", "--parallel", "0", "--yes"}).status, 2);  // usage
  auto unconfirmed = run({"node", "migrate", "node-a"});
  EXPECT_EQ(unconfirmed.status, 2);
  EXPECT_THAT(unconfirmed.err, HasSubstr("the migration of node-a needs a confirmation"));
  EXPECT_EQ(task_count(), 0u);

  // The agents serve no migrate plugin: node-b cannot receive, every step fails, the task too.
  auto failed = run({"node", "migrate", "node-a", "--target", "node-b", "--parallel", "1", "--yes"});
  EXPECT_EQ(failed.status, 1) << failed.out << failed.err;
  EXPECT_THAT(failed.out, HasSubstr("migration of node-a (task "));
  EXPECT_THAT(failed.out, ContainsRegex("vm-1-0 " + vms[0].uuid + " -> node-b: failed: node-b cannot receive it"));
  EXPECT_THAT(failed.out, ContainsRegex("\\): failed in [0-9.]+m?s \\(0 succeeded, 2 failed, 0 skipped\\)"));
  EXPECT_THAT(failed.out, HasSubstr("Each failed step says why"));
  EXPECT_EQ(vm_node(vms[0].uuid), "node-a");
  auto doc = run({"--json", "task", "list", "--kind", "migrate"}).doc();
  ASSERT_EQ(doc["tasks"].size(), 1u) << doc;
  EXPECT_EQ(doc["tasks"][0]["state"], "failed");
  EXPECT_EQ(doc["tasks"][0]["step_counts"]["failed"], 2);
}

// Maintenance: the dry run changes nothing (not even the management state); the maintenance
// disables node-a, its steps fail (the agents serve no migrate plugin) and node-a stays disabled.
TEST_F(CliCluster, MaintenanceDryRunThenAMaintenanceThatFailsLeavesTheNodeDisabled) {
  auto vms = vms_of(1, 2);
  ASSERT_NO_FATAL_FAILURE(start_two_nodes(vms));

  auto dry = run({"node", "maintenance", "node-a", "--dry-run"});
  EXPECT_EQ(dry.status, 0) << dry.err;
  EXPECT_THAT(dry.out, HasSubstr("DRY RUN: the maintenance of node-a would do:"));
  EXPECT_THAT(dry.out, ContainsRegex(vms[0].uuid + " +vm-1-0 +migrate +node-b +-"));
  EXPECT_EQ(node_record("node-a")["management"], "enabled");
  auto unconfirmed = run({"node", "maintenance", "node-a"});
  EXPECT_EQ(unconfirmed.status, 2);
  EXPECT_THAT(unconfirmed.err, HasSubstr("the maintenance of node-a needs a confirmation"));
  EXPECT_EQ(run({"node", "maintenance", "node-a", "--target", "node-b", "--yes"}).status, 2);  // usage: no --target
  EXPECT_EQ(task_count(), 0u);
  EXPECT_EQ(node_record("node-a")["management"], "enabled");

  auto failed = run({"node", "maintenance", "node-a", "--yes"});
  EXPECT_EQ(failed.status, 1) << failed.out << failed.err;
  EXPECT_THAT(failed.out, HasSubstr("maintenance of node-a (task "));
  EXPECT_THAT(failed.err, HasSubstr("node-a stays disabled until `nodeha node enable node-a`"));
  EXPECT_EQ(node_record("node-a")["management"], "disabled");
  EXPECT_TRUE(node_record("node-a")["lock"].is_null());
  EXPECT_EQ(vm_node(vms[0].uuid), "node-a");
  auto doc = run({"--json", "task", "list", "--kind", "maintenance"}).doc();
  ASSERT_EQ(doc["tasks"].size(), 1u) << doc;
  EXPECT_EQ(doc["tasks"][0]["state"], "failed");
}

TEST_F(CliCluster, DrainDryRunChangesNothingThenTheDrainAndItsTask) {
  auto vms = vms_of(1, 3);
  ASSERT_NO_FATAL_FAILURE(start_controller());
  auto a = start_agent("node-a", vms);
  ASSERT_TRUE(wait_until([&] { return ready("node-a", vms); })) << controller_->log();

  auto dry = run({"node", "drain", "node-a", "--dry-run"});
  EXPECT_EQ(dry.status, 0) << dry.err;
  EXPECT_THAT(dry.out, HasSubstr("DRY RUN: the drain of node-a would do:"));
  for (const auto& v : vms) EXPECT_THAT(dry.out, ContainsRegex(v.uuid + " +" + v.name + " +stop +- +-"));
  EXPECT_THAT(dry.out, HasSubstr("Nothing was changed."));
  auto dry_doc = run({"--json", "node", "drain", "node-a", "--dry-run"}).doc();
  EXPECT_EQ(dry_doc["plan"].size(), 3u);
  EXPECT_EQ(dry_doc["dry_run"], true);
  EXPECT_FALSE(dry_doc.contains("task"));
  auto unconfirmed = run({"node", "drain", "node-a"});
  EXPECT_EQ(unconfirmed.status, 2);
  EXPECT_THAT(unconfirmed.err, HasSubstr("the drain of node-a needs a confirmation, and stdin is not a terminal"));
  // Nothing changed: the node, its VMs, the tasks.
  EXPECT_EQ(node_record("node-a")["management"], "enabled");
  EXPECT_TRUE(node_record("node-a")["lock"].is_null());
  for (const auto& [uuid, state] : domains("node-a")) EXPECT_EQ(state, "running") << uuid;
  EXPECT_EQ(domains("node-a").size(), 3u);
  EXPECT_EQ(task_count(), 0u);
  EXPECT_THAT(run({"task", "list"}).out, HasSubstr("No tasks."));

  // Without a terminal the progress is one line per change, then the summary.
  auto drain = run({"node", "drain", "node-a", "--yes"});
  EXPECT_EQ(drain.status, 0) << drain.out << drain.err;
  EXPECT_THAT(drain.out, HasSubstr("drain of node-a (task "));
  for (const auto& v : vms) EXPECT_THAT(drain.out, HasSubstr("  " + v.name + " " + v.uuid + ": succeeded\n"));
  EXPECT_THAT(drain.out, ContainsRegex("\\): succeeded in [0-9.]+m?s \\(3 succeeded, 0 failed, 0 skipped\\)"));
  EXPECT_THAT(drain.out, ContainsRegex("VM +NAME +TARGET +RESULT +DURATION +DETAIL"));
  EXPECT_THAT(drain.out, Not(HasSubstr("\033[")));
  EXPECT_EQ(node_record("node-a")["management"], "drained");
  for (const auto& [uuid, state] : domains("node-a")) EXPECT_EQ(state, "shutoff") << uuid;

  auto tasks = run({"--json", "task", "list", "--node", "node-a", "--kind", "drain"}).doc();
  ASSERT_EQ(tasks["tasks"].size(), 1u) << tasks;
  std::string id = tasks["tasks"][0]["id"];
  auto table = run({"task", "list"});
  EXPECT_THAT(table.out, ContainsRegex("TASK +KIND +NODE +STATE +STEPS +CREATED \\(UTC\\) +ERROR"));
  EXPECT_THAT(table.out, ContainsRegex(id + " +drain +node-a +succeeded +3 succeeded +[0-9:]{8} +-"));
  EXPECT_THAT(run({"task", "list", "--state", "failed"}).out, HasSubstr("No tasks match."));
  auto show = run({"task", "show", id});
  EXPECT_EQ(show.status, 0) << show.err;
  EXPECT_THAT(show.out, ContainsRegex("operation +drain of node-a"));
  EXPECT_THAT(show.out, ContainsRegex(vms[2].uuid + " +vm-1-2 +- +succeeded +[0-9.]+m?s +-"));
  EXPECT_EQ(run({"--json", "task", "show", id}).doc()["state"], "succeeded");
  auto watched = run({"task", "watch", id});  // already over: the summary at once
  EXPECT_EQ(watched.status, 0) << watched.err;
  EXPECT_THAT(watched.out, HasSubstr("drain of node-a (task " + id + "): succeeded"));
  EXPECT_EQ(run({"--json", "task", "watch", id}).doc()["id"], id);
  auto finished = run({"task", "cancel", id});
  EXPECT_EQ(finished.status, 2);
  EXPECT_THAT(finished.err, HasSubstr("refused (task_finished): task " + id + " already ended succeeded"));
  EXPECT_THAT(finished.err, HasSubstr("hint: `nodeha task show ID` shows how it ended"));
  auto no_task = run({"--json", "task", "show", "0000000000000000"});
  EXPECT_EQ(no_task.status, 2);
  EXPECT_EQ(no_task.doc()["error"]["code"], "unknown_task");

  // A node held by a task: refused with the task named and what to do about it.
  auto rec = node_record("node-a");
  rec["lock"] = {{"task", "7f3c000000000001"}, {"kind", "migrate"}, {"since", 1'790'000'000'000}, {"owner", "ctl"}};
  ASSERT_TRUE(bus_->kv_put("nodes", "node-a", rec.dump()).is_ok());
  auto locked = run({"node", "enable", "node-a"});
  EXPECT_EQ(locked.status, 2);
  EXPECT_THAT(locked.err, HasSubstr("nodeha: refused (node_locked): node-a is locked by task 7f3c000000000001 (migrate"));
  EXPECT_THAT(locked.err, HasSubstr("hint: wait for it (`nodeha task watch 7f3c000000000001`) or cancel it "
                                    "(`nodeha task cancel 7f3c000000000001`)"));
  EXPECT_THAT(run({"node", "list"}).out, ContainsRegex("node-a +drained +normal .* 7f3c000000000001 \\(migrate\\)"));
  rec["lock"] = nullptr;
  ASSERT_TRUE(bus_->kv_put("nodes", "node-a", rec.dump()).is_ok());
  EXPECT_THAT(run({"node", "enable", "node-a"}).out, HasSubstr("node-a is now enabled."));
  auto not_drained = run({"node", "rebuild", "node-a", "--yes"});
  EXPECT_EQ(not_drained.status, 2);
  EXPECT_THAT(not_drained.err, HasSubstr("refused (node_not_drained)"));
}

TEST_F(CliCluster, ARebuildWithoutRoomForEveryVmIsPartialAndExits1) {
  auto vms = vms_of(1, 2);
  ASSERT_NO_FATAL_FAILURE(start_two_nodes(vms, /*node_b_memory_mib=*/100));  // room for one of node-a's two VMs

  auto started = run({"node", "drain", "node-a", "--yes", "--no-wait"});
  EXPECT_EQ(started.status, 0) << started.err;
  std::string drain_id = started.out.substr(0, started.out.find('\n'));
  EXPECT_THAT(drain_id, ContainsRegex("^[0-9a-f]{16}$"));
  EXPECT_THAT(started.err, HasSubstr("follow it with `nodeha task watch " + drain_id + "`"));
  auto watched = run({"task", "watch", drain_id});
  EXPECT_EQ(watched.status, 0) << watched.out << watched.err;
  EXPECT_THAT(watched.out, HasSubstr("drain of node-a (task " + drain_id + "): succeeded"));

  auto dry = run({"node", "rebuild", "node-a", "--dry-run"});
  EXPECT_EQ(dry.status, 0) << dry.err;
  EXPECT_THAT(dry.out, ContainsRegex("rebuild +node-b +-"));
  EXPECT_THAT(dry.out, ContainsRegex("unplaced +- +no room"));
  EXPECT_EQ(vm_node(vms[0].uuid), "node-a");  // nothing moved
  EXPECT_EQ(vm_node(vms[1].uuid), "node-a");
  EXPECT_TRUE(node_record("node-a")["lock"].is_null());

  auto no_room = run({"node", "rebuild", "node-a", "--target", "node-b", "--yes"});
  EXPECT_EQ(no_room.status, 2);
  EXPECT_THAT(no_room.err, HasSubstr("refused (no_room): 1 of 2 VM(s) of node-a cannot be placed on node-b"));
  EXPECT_THAT(no_room.err, HasSubstr("hint: `nodeha node list` shows what each node uses"));

  auto partial = run({"--json", "node", "rebuild", "node-a", "--yes"});
  EXPECT_EQ(partial.status, 1) << partial.out << partial.err;
  auto doc = partial.doc();
  ASSERT_TRUE(doc.is_object()) << partial.out;  // one document, no progress lines
  EXPECT_EQ(doc["plan"].size(), 2u);
  EXPECT_EQ(doc["final"]["state"], "partial");
  EXPECT_EQ(doc["final"]["id"], doc["task"]);
  std::set<std::string> nodes{vm_node(vms[0].uuid), vm_node(vms[1].uuid)};
  EXPECT_EQ(nodes, (std::set<std::string>{"node-a", "node-b"}));  // one moved, one had no room
  auto show = run({"task", "show", doc["task"]});
  EXPECT_THAT(show.out, ContainsRegex("state +partial"));
  EXPECT_THAT(show.out, ContainsRegex("failed +- +no room"));
  auto watched_partial = run({"task", "watch", doc["task"]});
  EXPECT_EQ(watched_partial.status, 1);
  EXPECT_THAT(watched_partial.out, HasSubstr("partial in"));
  EXPECT_THAT(watched_partial.out, HasSubstr("(1 succeeded, 1 failed, 0 skipped)"));
}

TEST_F(CliCluster, ACancelEndsAWaitingDrainAndItsWatcherExits1) {
  auto vms = vms_of(1, 2);
  ASSERT_NO_FATAL_FAILURE(start_controller());
  auto a = start_agent("node-a", vms);
  ASSERT_TRUE(wait_until([&] { return ready("node-a", vms); })) << controller_->log();
  a.reset();  // power loss: the drain waits for the agent until cancelled
  ASSERT_TRUE(wait_until([&] { return node_record("node-a").value("monitor", "") == "unreachable"; }))
      << controller_->log();
  auto started = run({"--json", "node", "drain", "node-a", "--yes", "--no-wait"});
  ASSERT_EQ(started.status, 0) << started.err;
  std::string id = started.doc()["task"];

  TempDir dir;
  Terminal watcher(dir, in_terminal("task watch " + id));
  std::string screen;
  ASSERT_TRUE(watcher.shows("waiting for node-a's agent", &screen)) << screen;
  auto cancel = run({"task", "cancel", id});
  EXPECT_EQ(cancel.status, 0) << cancel.err;
  EXPECT_THAT(cancel.out, HasSubstr("Cancel requested for task " + id + " (drain of node-a)"));
  ASSERT_TRUE(watcher.shows("[exit 1]", &screen)) << screen;
  EXPECT_THAT(screen, HasSubstr("drain of node-a (task " + id + "): failed in"));
  EXPECT_THAT(screen, HasSubstr("(0 succeeded, 0 failed, 0 skipped, 2 cancelled)"));
  EXPECT_THAT(screen, ContainsRegex(vms[0].uuid + " +vm-1-0 +- +cancelled"));
  auto again = run({"--json", "task", "cancel", id});
  EXPECT_EQ(again.status, 2);
  EXPECT_EQ(again.doc()["error"]["code"], "task_finished");
}

TEST_F(CliCluster, NoNatsOrNoControllerExits3) {
  auto no_nats = run({"--server", "nats://127.0.0.1:" + std::to_string(free_port()), "node", "list"}, false);
  EXPECT_EQ(no_nats.status, 3);
  EXPECT_THAT(no_nats.err, HasSubstr("nodeha: cannot connect to NATS at nats://127.0.0.1:"));
  EXPECT_THAT(no_nats.err, HasSubstr("is nats-server running there?"));
  auto no_nats_json = run({"--json", "--server", "nats://127.0.0.1:" + std::to_string(free_port()), "task", "list"}, false);
  EXPECT_EQ(no_nats_json.status, 3);
  EXPECT_EQ(no_nats_json.doc()["error"]["code"], "unreachable");

  // NATS, but no controller; the server from the environment.
  setenv("NODEHA_SERVER", nats_.url().c_str(), 1);
  auto no_controller = run({"node", "drain", "node-a", "--yes"}, false);
  unsetenv("NODEHA_SERVER");
  EXPECT_EQ(no_controller.status, 3);
  EXPECT_THAT(no_controller.err, HasSubstr("nodeha: no controller answers nodeha.cmd.node.drain on " + nats_.url() +
                                           ": is nodeha-host (controller) running"));
  EXPECT_EQ(run({"task", "watch", "0000000000000000"}).status, 3);
  EXPECT_EQ(run({"--prefix", "other", "vm", "list"}).status, 3);
}

TEST_F(CliCluster, LiveProgressOnATerminalAfterAConfirmation) {
  auto vms = vms_of(1, 3);
  ASSERT_NO_FATAL_FAILURE(start_controller());
  auto a = start_agent("node-a", vms);
  ASSERT_TRUE(wait_until([&] { return ready("node-a", vms); })) << controller_->log();
  a.reset();  // power loss: the drain waits for the agent, step by step
  ASSERT_TRUE(wait_until([&] { return node_record("node-a").value("monitor", "") == "unreachable"; }))
      << controller_->log();

  std::string screen;
  {
    TempDir dir;
    Terminal declined(dir, in_terminal("node drain node-a"));
    ASSERT_TRUE(declined.shows("Drain node-a: stop its 3 VMs? [y/N]", &screen)) << screen;
    EXPECT_THAT(screen, HasSubstr("The drain of node-a will do:"));
    declined.type("n");
    ASSERT_TRUE(declined.shows("[exit 2]", &screen)) << screen;
    EXPECT_THAT(screen, HasSubstr("not confirmed: nothing was done"));
    EXPECT_EQ(node_record("node-a")["management"], "enabled");
    EXPECT_EQ(task_count(), 0u);
  }

  TempDir dir;
  Terminal terminal(dir, in_terminal("node drain node-a"));
  ASSERT_TRUE(terminal.shows("[y/N]", &screen)) << screen;
  terminal.type("y");
  ASSERT_TRUE(terminal.shows("waiting for node-a's agent to confirm the VM stopped", &screen)) << screen;
  EXPECT_THAT(screen, HasSubstr("0/3 steps done"));
  EXPECT_THAT(screen, ContainsRegex("VM +NAME +TARGET +STATE +PROGRESS +DETAIL"));
  EXPECT_THAT(screen, ContainsRegex("vm-1-0 +- +(waiting|pending|running) "));
  // Redrawn in place: once every step is seen waiting (updates after the first view; a step that
  // waits again for the same reason is not written again), the view is there once.
  ASSERT_TRUE(wait_until([&] { return task_count() == 1; }));
  std::string id = json::parse(bus_->kv_list("tasks")->at(0).value)["id"];
  ASSERT_TRUE(terminal.shows("3 waiting", &screen)) << screen;
  screen = terminal.screen();
  EXPECT_EQ(occurrences(screen, "drain of node-a (task " + id + ")"), 1u) << screen;
  EXPECT_EQ(occurrences(screen, "steps done"), 1u) << screen;

  a = start_agent("node-a");  // back: the drain stops its VMs and ends
  ASSERT_TRUE(terminal.shows("[exit 0]", &screen, 30s)) << screen << controller_->log();
  EXPECT_THAT(screen, HasSubstr("drain of node-a (task " + id + "): succeeded in"));
  EXPECT_THAT(screen, HasSubstr("(3 succeeded, 0 failed, 0 skipped)"));
  EXPECT_THAT(screen, ContainsRegex("VM +NAME +TARGET +RESULT +DURATION +DETAIL"));
  EXPECT_THAT(screen, Not(HasSubstr("steps done")));  // the live view gave way to the summary
  EXPECT_EQ(occurrences(screen, "drain of node-a (task " + id + ")"), 1u);

  // Colour on a terminal only (the tests above see none without one).
  TempDir list_dir;
  Terminal list(list_dir, in_terminal("node list"));
  ASSERT_TRUE(list.shows("[exit 0]", &screen)) << screen;
  EXPECT_THAT(list.screen(true), ContainsRegex("node-a +\033\\[31mdrained\033\\[(0|39)m"));
}

// The agents here serve no migrate plugin: the test answers for them (node-b's migrate.target,
// node-a's vm.migrate) and says what the agent would while libvirt copies a local disk, as a
// migration_progress event; the real controller turns it into the step's progress.
TEST_F(CliCluster, AMigrationShowsItsDiskApartFromItsMemoryLiveAndInItsTask) {
  constexpr int64_t kMiB = 1 << 20;
  auto vms = vms_of(1, 1);
  const std::string uuid = vms[0].uuid;
  ASSERT_NO_FATAL_FAILURE(start_two_nodes(vms));
  struct Agent {  // shared with the handlers, which may outlive a test that failed early
    std::mutex mu;
    std::string pending_reply, task_id;  // the controller's latest ask, not answered yet
    bool finished = false;
    std::string ok;                      // the reply of a finished migration
  };
  auto agent = std::make_shared<Agent>();
  const json result = {{"uuid", uuid},         {"duration_ms", 2500},      {"data_total", 320 * kMiB},
                       {"data_processed", 326 * kMiB}, {"memory_total", 64 * kMiB}, {"memory_processed", 70 * kMiB},
                       {"disk_total", 256 * kMiB},     {"disk_processed", 256 * kMiB}, {"record", {{"moved", false}}}};
  agent->ok = json{{"ok", true}, {"result", result}}.dump();
  ASSERT_TRUE(bus_->subscribe("nodeha.agent.node-b.migrate.target", "", [this](Message m) {
    json offer = {{"libvirt_uri", "qemu+tcp://10.0.0.2/system"}, {"migrate_uri", "tcp://10.0.0.2"}, {"address", "10.0.0.2"}};
    (void)bus_->publish(m.reply, json{{"ok", true}, {"result", offer}}.dump());
  }).is_ok());
  ASSERT_TRUE(bus_->subscribe("nodeha.agent.node-a.vm.migrate", "", [this, agent, uuid](Message m) {
    auto req = json::parse(m.data, nullptr, false);
    std::lock_guard lock(agent->mu);
    if (agent->finished) return (void)bus_->publish(m.reply, agent->ok);
    agent->pending_reply = m.reply;
    agent->task_id = req.value("task", "");
    json event = {{"event", "migration_progress"}, {"task", agent->task_id}, {"node", "node-a"}, {"dest_node", "node-b"},
                  {"data_total", 320 * kMiB}, {"data_processed", 132 * kMiB}, {"data_remaining", 188 * kMiB},
                  {"memory_total", 64 * kMiB}, {"memory_processed", 12 * kMiB}, {"memory_remaining", 52 * kMiB},
                  {"disk_total", 256 * kMiB}, {"disk_processed", 120 * kMiB}, {"disk_remaining", 136 * kMiB},
                  {"time_remaining_ms", 3200}, {"elapsed_ms", 1000}};
    (void)bus_->publish("nodeha.evt.vm." + uuid, event.dump());
  }).is_ok());

  TempDir dir;
  Terminal terminal(dir, in_terminal("node migrate node-a --target node-b --yes"));
  std::string screen;
  // tmux may draw the separator as '_' without a UTF-8 locale: the figures are read one by one.
  ASSERT_TRUE(terminal.shows("disk 120/256 MiB", &screen)) << screen << controller_->log();
  EXPECT_THAT(screen, HasSubstr("mem 12/64 MiB"));
  EXPECT_THAT(screen, HasSubstr("~4 s left"));
  std::string id;
  {
    std::lock_guard lock(agent->mu);
    id = agent->task_id;
  }
  auto step = [&] { return read_task(*bus_, id).value("steps", json::array({json::object()}))[0]; };
  ASSERT_TRUE(wait_until([&] { return step()["progress"].value("disk_total", int64_t{0}) > 0; })) << step();
  json progress = step()["progress"];
  EXPECT_EQ(progress["disk_processed"], 120 * kMiB) << progress;
  EXPECT_EQ(progress["memory_total"], 64 * kMiB) << progress;
  EXPECT_EQ(progress["time_remaining_ms"], 3200) << progress;

  {
    std::lock_guard lock(agent->mu);
    agent->finished = true;
    (void)bus_->publish(agent->pending_reply, agent->ok);  // a reply that missed its ask is asked again
  }
  ASSERT_TRUE(terminal.shows("[exit 0]", &screen, 30s)) << screen << controller_->log();
  EXPECT_THAT(screen, HasSubstr("(1 succeeded, 0 failed, 0 skipped)"));
  // The reply's totals are the finished step's: nothing remains.
  progress = step()["progress"];
  EXPECT_EQ(progress["disk_total"], 256 * kMiB) << progress;
  EXPECT_EQ(progress["disk_processed"], 256 * kMiB) << progress;
  EXPECT_EQ(progress["memory_processed"], 70 * kMiB) << progress;
  EXPECT_EQ(progress["data_remaining"], 0) << progress;
  EXPECT_EQ(progress["time_remaining_ms"], 0) << progress;
}

// Plans (docs/operations.md, "Plans"): --dry-run prints the plan's id and how to run exactly it;
// --plan runs it once, or refuses when the cluster changed (--json carries the changes); and on
// a terminal, what runs after "proceed?" is the plan shown: a change between the question and
// the answer refuses it.
TEST_F(CliCluster, APlanRunsByItsIdAndAConfirmedPlanThatDriftedIsRefused) {
  auto vms = vms_of(1, 2);
  ASSERT_NO_FATAL_FAILURE(start_controller());
  auto a = start_agent("node-a", vms);
  ASSERT_TRUE(wait_until([&] { return ready("node-a", vms); })) << controller_->log();
  auto set = [&](const std::string& how) {
    auto r = how == "disable" ? run({"node", how, "node-a", "--yes"}) : run({"node", how, "node-a"});
    ASSERT_EQ(r.status, 0) << r.err;
  };

  // On a terminal: the node is disabled while the question waits; "y" sends the plan, refused.
  {
    std::string screen;
    TempDir dir;
    Terminal terminal(dir, in_terminal("node drain node-a"));
    ASSERT_TRUE(terminal.shows("[y/N]", &screen)) << screen;
    ASSERT_NO_FATAL_FAILURE(set("disable"));
    terminal.type("y");
    ASSERT_TRUE(terminal.shows("[exit 2]", &screen)) << screen << controller_->log();
    EXPECT_THAT(screen, HasSubstr("refused (plan_drifted)"));
    EXPECT_THAT(screen, ContainsRegex("node_state +node-a +was enabled/normal, now disabled/normal"));
    EXPECT_EQ(node_record("node-a")["management"], "disabled");  // not drained
    EXPECT_EQ(task_count(), 0u);
    ASSERT_NO_FATAL_FAILURE(set("enable"));
  }

  // --plan with --json, after a change: the error names it as data.
  auto dry = run({"--json", "node", "drain", "node-a", "--dry-run"}).doc();
  ASSERT_TRUE(dry["plan_id"].is_string()) << dry;
  std::string drifted_id = dry["plan_id"];
  EXPECT_THAT(drifted_id, ContainsRegex("^[0-9a-f]{32}$"));
  EXPECT_GT(dry["expires_at"].get<int64_t>(), 0);
  ASSERT_NO_FATAL_FAILURE(set("disable"));
  auto refused = run({"--json", "node", "drain", "node-a", "--plan", drifted_id});
  EXPECT_EQ(refused.status, 2) << refused.out << refused.err;
  auto error = refused.doc()["error"];
  EXPECT_EQ(error["code"], "plan_drifted") << refused.out;
  ASSERT_EQ(error["changes"].size(), 1u) << error;
  EXPECT_EQ(error["changes"][0]["what"], "node_state");
  EXPECT_EQ(error["changes"][0]["now"], "disabled/normal");
  EXPECT_THAT(refused.err, HasSubstr("make a new one with --dry-run"));
  EXPECT_EQ(task_count(), 0u);
  ASSERT_NO_FATAL_FAILURE(set("enable"));

  // Unchanged: the printed command runs it, once.
  auto shown = run({"node", "drain", "node-a", "--dry-run"});
  ASSERT_EQ(shown.status, 0) << shown.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(shown.out, m, std::regex("nodeha node drain node-a --plan ([0-9a-f]{32})"))) << shown.out;
  std::string id = m[1];
  EXPECT_THAT(shown.out, HasSubstr("Plan " + id + " (kept until "));
  auto ran = run({"node", "drain", "node-a", "--plan", id});
  EXPECT_EQ(ran.status, 0) << ran.out << ran.err;
  EXPECT_EQ(node_record("node-a")["management"], "drained");
  EXPECT_EQ(task_count(), 1u);
  auto again = run({"node", "drain", "node-a", "--plan", id});
  EXPECT_EQ(again.status, 2);
  EXPECT_THAT(again.err, HasSubstr("refused (plan_used)"));
  EXPECT_NE(run({"node", "drain", "node-a", "--plan", id, "--dry-run"}).status, 0);  // one or the other
}

}  // namespace
}  // namespace nodeha::test

namespace nodeha::test {
namespace {

// `nodeha node history` and `vm history` read the events stream: every verdict with its evidence.
class CliHistory : public CliCluster {
 protected:
  // The node's (or VM's) history once it shows `text`; the last output otherwise.
  std::string history_showing(const std::vector<std::string>& what, const std::string& text) {
    std::string out;
    wait_until([&] {
      auto r = run(what);
      out = r.out + r.err;
      return r.status == 0 && out.find(text) != std::string::npos;
    }, 15s);
    return out;
  }
};

TEST_F(CliHistory, ANodeKilledDisabledAndDrainedExplainsEachChange) {
  auto vms = vms_of(1, 2);
  ASSERT_NO_FATAL_FAILURE(start_two_nodes(vms));

  // A disable by command says who asked (no auth here: "unauthenticated") and who decided.
  ASSERT_EQ(run({"node", "disable", "node-b", "--yes"}).status, 0);
  std::string b = history_showing({"node", "history", "node-b"}, "enabled -> disabled");
  EXPECT_THAT(b, ContainsRegex("management +enabled -> disabled +disabled by command node.disable from identity "
                               "unauthenticated  \\(by ctl, epoch [1-9][0-9]*\\)"));
  EXPECT_THAT(b, ContainsRegex("registered +-> normal +first heartbeat from a node nobody knew"));

  // The drain: the node drained by its task, each VM stopped by a step, the task's outcome.
  auto drain = run({"node", "drain", "node-a", "--yes"});
  ASSERT_EQ(drain.status, 0) << drain.out << drain.err;
  std::string task = run({"--json", "task", "list", "--node", "node-a"}).doc()["tasks"][0]["id"];
  std::string a = history_showing({"node", "history", "node-a"}, "drain succeeded");
  EXPECT_THAT(a, ContainsRegex("management +enabled -> drained +drained by drain task " + task +
                               ", requested by identity unauthenticated  \\(by ctl, epoch"));
  EXPECT_THAT(a, HasSubstr("drain task " + task + " succeeded (2 succeeded), requested by identity unauthenticated"));
  for (const auto& v : vms)
    EXPECT_THAT(a, HasSubstr("step " + v.name + " (" + v.uuid + ") succeeded: stopped by drain task " + task + " step"));
  std::string vm = history_showing({"vm", "history", vms[0].uuid}, "stopped");
  EXPECT_THAT(vm, ContainsRegex("stopped +node-a +stopped by drain task " + task + " step, node-a being drained  \\(by ctl"));
  auto vm_doc = run({"--json", "vm", "history", vms[0].uuid}).doc();
  ASSERT_TRUE(vm_doc["events"].is_array()) << vm_doc;
  bool stop_seen = false;
  for (const auto& e : vm_doc["events"])
    if (e.value("event", "") == "stopped") {
      stop_seen = true;
      EXPECT_EQ(e["evidence"]["task"], task);
      EXPECT_EQ(e["task"], task);
    }
  EXPECT_TRUE(stop_seen) << vm_doc;
  // The task record's steps carry their evidence too.
  auto shown = run({"--json", "task", "show", task}).doc();
  EXPECT_THAT(shown.dump(), HasSubstr("stopped by drain task " + task + " step")) << shown;

  // node-b loses its agent: unreachable with the silence, the window, the ping and who decided.
  b_.reset();
  ASSERT_TRUE(wait_until([&] { return node_record("node-b").value("monitor", "") == "unreachable"; }, 20s));
  b = history_showing({"node", "history", "node-b"}, "normal -> unreachable");
  EXPECT_THAT(b, ContainsRegex("monitor +normal -> unreachable +silent [0-9.]+ s \\(2 intervals of 1 s\\), ping to "
                               "nodeha.agent.node-b.ping: .* \\(timeout 0.3 s\\)  \\(by ctl, epoch [1-9][0-9]*\\)"))
      << b;
  auto doc = run({"--json", "node", "history", "node-b", "--limit", "1"}).doc();
  ASSERT_EQ(doc["events"].size(), 1u) << doc;
  const auto& facts = doc["events"][0]["evidence"]["facts"];
  EXPECT_EQ(doc["events"][0]["to"], "unreachable");
  EXPECT_EQ(facts["intervals"], 2);
  EXPECT_EQ(facts["interval_s"], 1.0);
  EXPECT_EQ(facts["ping_subject"], "nodeha.agent.node-b.ping");
  EXPECT_GE(facts["silence_s"].get<double>(), 2.0);
  EXPECT_EQ(doc["events"][0]["evidence"]["by"], "ctl");
  EXPECT_EQ(run({"node", "history", "node-b", "--limit", "2"}).out.find("registered"), std::string::npos);
  // --since seeks by bisection over the whole stream: the last hour has it all, a second soon nothing.
  EXPECT_THAT(run({"node", "history", "node-b", "--since", "1h"}).out, HasSubstr("first heartbeat from a node nobody knew"));
  EXPECT_TRUE(wait_until([&] {
    return run({"node", "history", "node-b", "--since", "1s"}).out.find("no events for node node-b in the last 1s") !=
           std::string::npos;
  }, 10s));

  // Nothing yet about a node nobody knew; a bad id is a usage error before any connection.
  EXPECT_THAT(run({"node", "history", "node-zz"}).out, HasSubstr("no events for node node-zz"));
  auto bad = run({"--server", "nats://127.0.0.1:1", "node", "history", "bad_id!"}, false);
  EXPECT_EQ(bad.status, 2) << bad.err;
  EXPECT_THAT(bad.err, HasSubstr("is not a node id"));
  EXPECT_EQ(run({"--server", "nats://127.0.0.1:1", "vm", "history", "not-a-uuid"}, false).status, 2);
  EXPECT_EQ(run({"node", "history", "node-a", "--limit", "0"}).status, 2);
  EXPECT_EQ(run({"node", "history", "node-a", "--since", "1w"}).status, 2);
}

// The demo's story for one node: it loses power, is drained and rebuilt elsewhere, and comes
// back. Its history explains each change: unreachable with the evidence, drained by whom, its
// VMs moved by the rebuild's steps, back to normal, and the drain's steps that found nothing left.
TEST_F(CliHistory, ANodeThatLostPowerWasDrainedRebuiltAndCameBack) {
  auto vms = vms_of(1, 2);
  ASSERT_NO_FATAL_FAILURE(start_two_nodes(vms));
  a_.reset();  // power lost
  ASSERT_TRUE(wait_until([&] { return node_record("node-a").value("monitor", "") == "unreachable"; }, 20s));
  auto drain = run({"node", "drain", "node-a", "--yes", "--no-wait"});
  ASSERT_EQ(drain.status, 0) << drain.err;
  std::string drain_id = drain.out.substr(0, drain.out.find('\n'));
  auto rebuild = run({"--json", "node", "rebuild", "node-a", "--yes"});
  ASSERT_EQ(rebuild.status, 0) << rebuild.out << rebuild.err;
  std::string rebuild_id = rebuild.doc()["task"];
  a_ = start_agent("node-a", vms);  // power back: its copies are stale now
  ASSERT_TRUE(wait_until([&] { return node_record("node-a").value("monitor", "") == "normal"; }, 20s));

  std::string h = history_showing({"node", "history", "node-a"}, "drain succeeded");
  EXPECT_THAT(h, ContainsRegex("monitor +normal -> unreachable +silent [0-9.]+ s \\(2 intervals of 1 s\\), ping to "
                               "nodeha.agent.node-a.ping"));
  EXPECT_THAT(h, ContainsRegex("management +enabled -> drained +drained by drain task " + drain_id +
                               ", requested by identity unauthenticated"));
  EXPECT_THAT(h, ContainsRegex("task +rebuild succeeded +rebuild task " + rebuild_id + " succeeded \\(2 succeeded\\)"));
  for (const auto& v : vms) {
    EXPECT_THAT(h, HasSubstr("step " + v.name + " (" + v.uuid + ") succeeded: rebuild task " + rebuild_id +
                             ": node-a unreachable and drained, record moved to node-b generation 2, started there"));
    EXPECT_THAT(h, HasSubstr("step " + v.name + " (" + v.uuid + ") succeeded: nothing to stop: its record names node-b"));
  }
  EXPECT_THAT(h, ContainsRegex("monitor +unreachable -> normal +"));
  EXPECT_LT(h.find("normal -> unreachable"), h.find("enabled -> drained"));
  EXPECT_LT(h.find("rebuild succeeded"), h.find("unreachable -> normal"));
  std::string vm = history_showing({"vm", "history", vms[0].uuid}, "stale_copy_removed");
  EXPECT_THAT(vm, ContainsRegex("moved +node-a -> node-b +rebuild task " + rebuild_id));
  EXPECT_THAT(vm, ContainsRegex("stale_copy_removed +node-a +stale_copy_removed reported by the agent of node-a: its record "
                                "names node-b \\(generation 2\\)"));
  std::cout << h << vm;  // what the demo will print
}

}  // namespace
}  // namespace nodeha::test
