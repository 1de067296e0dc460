// Node migration as an operator does it, on real parts: nats-server, a controller (heartbeat,
// scheduler, tasks, vms, migrate) and two agents (heartbeat, vms, migrate), each on its own
// isolated libvirtd with tiny QEMU guests. An InvariantMonitor samples both daemons throughout:
// no guest ever runs on both.
//
// - `cmd.node.migrate` moves every guest of node-a to node-b live, through the task engine:
//   records follow (generation 2), the task succeeds and shows each step's migration.
// - `cmd.node.maintenance` disables node-a in the write that locks it, moves every guest live,
//   and leaves node-a disabled.
// - A named target without room refuses the command; nothing moves, nothing is locked.
// - `nodeha local migrate --confirm` on node-a with nats-server stopped moves the guests over the
//   interface it names; when nats-server is back, the journal reaches the tasks bucket and the
//   records name node-b, with no operator action.
#include "bus.h"
#include "disk_guest.h"
#include "host_process.h"
#include "invariant.h"
#include "libvirtd.h"
#include "nats_server.h"
#include "process.h"
#include "task_read.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>

namespace nodeha::test {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using json = nlohmann::json;

const std::string kGuest1 = Libvirtd::guest_uuid(1);
const std::string kGuest2 = Libvirtd::guest_uuid(2);
const std::string kDisky = Libvirtd::guest_uuid(3);

std::string controller_config(const NatsServer& nats, const std::string& scheduler_extra = "") {
  return host_tables("controller", "ctl", nats.url()) +
         "[[plugin]]\nlibrary = \"heartbeat\"\ninterval = \"1s\"\nmisses = 3\nping_timeout = \"500ms\"\n"
         "[[plugin]]\nlibrary = \"scheduler\"\nreserve_vcpus = 0\nreserve_memory_mib = 0\n" + scheduler_extra +
         "[[plugin]]\nlibrary = \"tasks\"\n"
         "[[plugin]]\nlibrary = \"vms\"\n"
         "[[plugin]]\nlibrary = \"migrate\"\ntimeout = \"2m\"\n";
}

// peers reach a daemon's unix socket (both share this machine's file system); `nodeha local
// migrate` from this node goes to `local_peer_uri`.
std::string agent_config(const NatsServer& nats, const std::string& node, const std::string& own_uri,
                         const std::string& local_peer_uri) {
  return host_tables("agent", node, nats.url()) +
         libvirt_agent_tables(own_uri, "[[plugin]]\nlibrary = \"vms\"\nsync_every = \"500ms\"\n", local_peer_uri);
}

class NodeMigration : public ::testing::Test {
 protected:
  void SetUp() override {
    bus_ = nats_.client();
    ASSERT_TRUE(bus_);
    ASSERT_TRUE(a_.running()) << a_.log();
    ASSERT_TRUE(b_.running()) << b_.log();
    std::string error;
    ASSERT_TRUE(a_.define_and_start("guest-1", kGuest1, 64, &error)) << error;
    ASSERT_TRUE(a_.define_and_start("guest-2", kGuest2, 64, &error)) << error;
    monitor_ = std::make_unique<InvariantMonitor>(std::vector<InvariantMonitor::Node>{{"node-a", a_.uri()}, {"node-b", b_.uri()}});
  }

  void start(const std::string& scheduler_extra = "") {
    ctl_ = std::make_unique<HostProcess>(controller_config(nats_, scheduler_extra));
    agent_a_ = std::make_unique<HostProcess>(agent_config(nats_, "node-a", a_.uri(), b_.uri()));
    agent_b_ = std::make_unique<HostProcess>(agent_config(nats_, "node-b", b_.uri(), a_.uri()));
    ASSERT_TRUE(ctl_->wait_ready()) << ctl_->log();
    ASSERT_TRUE(agent_a_->wait_ready()) << agent_a_->log();
    ASSERT_TRUE(agent_b_->wait_ready()) << agent_b_->log();
    ASSERT_TRUE(wait_until([&] {
      return record_of("nodes", "node-a").value("monitor", "") == "normal" &&
             record_of("nodes", "node-b").value("monitor", "") == "normal" &&
             record_of("vms", kGuest1).value("node", "") == "node-a" && record_of("vms", kGuest2).value("node", "") == "node-a";
    }, 20s)) << ctl_->log() << agent_a_->log();
  }

  void TearDown() override {
    if (HasFailure() && agent_a_) std::printf("---- node-a agent ----\n%s\n---- controller ----\n%s\n",
                                              agent_a_->log().c_str(), ctl_ ? ctl_->log().c_str() : "");
    monitor_->stop();
    EXPECT_THAT(monitor_->violations_text(), IsEmpty()) << "one and only one running copy of a VM, ever";
  }

  json command(const std::string& op, const json& body) {
    auto r = bus_->request("nodeha.cmd." + op, body.dump(), 30s);
    EXPECT_TRUE(r.is_ok()) << op << ": " << r.status().message();
    return r ? json::parse(r.value()) : json::object();
  }
  json record_of(const std::string& bucket, const std::string& key) {
    if (bucket == "tasks") return read_task(*bus_, key);
    auto e = bus_->kv_get(bucket, key);
    return e ? json::parse(e->value, nullptr, false) : json::object();
  }
  void expect_on_b_only() {
    for (const auto& uuid : {kGuest1, kGuest2}) {
      EXPECT_EQ(b_.domain_state(uuid), "running") << uuid;
      EXPECT_EQ(a_.domain_state(uuid), "") << uuid << " is still defined on node-a";
      EXPECT_LT(monitor_->longest_gap(uuid).count(), 1000) << "not live: " << monitor_->timeline_text(uuid);
    }
  }

  NatsServer nats_;
  Libvirtd a_;
  Libvirtd b_;
  std::unique_ptr<host::Bus> bus_;
  std::unique_ptr<InvariantMonitor> monitor_;
  std::unique_ptr<HostProcess> ctl_, agent_a_, agent_b_;
};

TEST_F(NodeMigration, TheControllerMovesEveryGuestLive) {
  start();
  auto dry = command("node.migrate", {{"node", "node-a"}, {"dry_run", true}});
  ASSERT_TRUE(dry["ok"]) << dry;
  ASSERT_EQ(dry["result"]["plan"].size(), 2u);
  for (const auto& p : dry["result"]["plan"]) {
    EXPECT_EQ(p["action"], "migrate");
    EXPECT_EQ(p["target"], "node-b");
  }
  EXPECT_EQ(a_.domain_state(kGuest1), "running");

  auto started = std::chrono::steady_clock::now();
  auto r = command("node.migrate", {{"node", "node-a"}});
  ASSERT_TRUE(r["ok"]) << r;
  std::string id = r["result"]["task"];
  EXPECT_EQ(record_of("nodes", "node-a")["lock"]["task"], id);
  ASSERT_TRUE(wait_until([&] { return record_of("tasks", id).value("state", "") == "succeeded"; }, 120s))
      << record_of("tasks", id).dump(2);
  std::printf("[ timing   ] node.migrate of 2 guests: %.2f s\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  expect_on_b_only();
  for (const auto& uuid : {kGuest1, kGuest2}) {
    auto rec = record_of("vms", uuid);
    EXPECT_EQ(rec["node"], "node-b");
    EXPECT_EQ(rec["generation"], 2) << rec;
  }
  auto finished = record_of("tasks", id);  // named: a range over a temporary's member would dangle
  for (const auto& s : finished["steps"]) {
    EXPECT_EQ(s["state"], "succeeded") << s;
    // What QEMU moved: every guest's RAM was copied at least once.
    EXPECT_GT(s["progress"].value("data_processed", int64_t{0}), 0) << s;
    EXPECT_EQ(s["progress"].value("data_remaining", int64_t{-1}), 0) << s;
    EXPECT_GT(s.value("duration_ms", int64_t{0}), 0) << s;
  }
  EXPECT_TRUE(record_of("nodes", "node-a")["lock"].is_null());
  EXPECT_TRUE(wait_until([&] { return ctl_->metric("nodeha_tasks_total{kind=\"migrate\",result=\"succeeded\"}") == 1; }));
}

// A guest with a local disk moves only when the command says include_local_disk: the dry run
// without it skips the guest and says why; with it the disk is copied with every write the guest
// made, and the task's step counts the disk apart from the memory.
TEST_F(NodeMigration, IncludeLocalDiskCopiesTheDiskWithItsGuest) {
  const std::string image = "/var/lib/libvirt/images/disky.raw";
  std::string error;
  ASSERT_TRUE(make_raw_disk(a_, image, 64, true, &error)) << error;
  ASSERT_TRUE(a_.define_and_start_with_disk("disky", kDisky, 64, {image, "raw"}, &error)) << error;
  start();
  ASSERT_TRUE(wait_until([&] { return record_of("vms", kDisky).value("local_disk", false); }, 20s)) << record_of("vms", kDisky);
  auto dry = command("node.migrate", {{"node", "node-a"}, {"vms", {kDisky}}, {"dry_run", true}});
  ASSERT_TRUE(dry["ok"]) << dry;
  EXPECT_EQ(dry["result"]["plan"][0]["action"], "skip") << dry;
  EXPECT_THAT(dry["result"]["plan"][0]["reason"].get<std::string>(), HasSubstr("include_local_disk"));

  uint64_t before = 0;
  ASSERT_TRUE(wait_until([&] { return (before = read_disk_writes(a_, image, GuestIs::kRunning).highest_seq) > 0; }, 30s))
      << "the guest never wrote";
  auto r = command("node.migrate", {{"node", "node-a"}, {"vms", {kDisky}}, {"include_local_disk", true}});
  ASSERT_TRUE(r["ok"]) << r;
  std::string id = r["result"]["task"];
  ASSERT_TRUE(wait_until([&] { return record_of("tasks", id).value("state", "") == "succeeded"; }, 120s))
      << record_of("tasks", id).dump(2) << agent_a_->log();
  EXPECT_EQ(b_.domain_state(kDisky), "running");
  EXPECT_EQ(a_.domain_state(kDisky), "");
  EXPECT_LT(monitor_->longest_gap(kDisky).count(), 1000) << "not live: " << monitor_->timeline_text(kDisky);
  auto task = record_of("tasks", id);
  ASSERT_EQ(task["steps"].size(), 1u) << task.dump(2);
  const json& progress = task["steps"][0]["progress"];
  EXPECT_GE(progress.value("disk_total", uint64_t{0}), uint64_t{64} << 20) << progress;
  EXPECT_GT(progress.value("memory_total", uint64_t{0}), 0u) << progress;
  EXPECT_THAT(task["steps"][0].value("images", ""), HasSubstr("source images removed")) << task.dump(2);
  ASSERT_TRUE(b_.suspend(kDisky, &error)) << error;
  DiskWrites w = read_disk_writes(b_, image, GuestIs::kStopped);
  ASSERT_TRUE(b_.resume(kDisky, &error)) << error;
  EXPECT_TRUE(w.consistent) << w.problem;
  EXPECT_GT(w.highest_seq, before);
  EXPECT_NE(a_.run_in_mounts({"test", "-e", image}), 0) << "node-a's image is removed";
  EXPECT_TRUE(wait_until([&] { return record_of("vms", kDisky).value("node", "") == "node-b"; }, 10s));
}

TEST_F(NodeMigration, ANamedTargetWithoutRoomIsRefusedAndNothingMoves) {
  start("memory_ratio = 0.001\n");  // a few MiB of schedulable memory per node: no room for a 64 MiB guest
  auto r = command("node.migrate", {{"node", "node-a"}, {"target", "node-b"}});
  ASSERT_FALSE(r["ok"]) << r;
  EXPECT_EQ(r["error"]["code"], "no_room");
  EXPECT_THAT(r["error"]["message"].get<std::string>(), HasSubstr("node-b"));
  EXPECT_TRUE(record_of("nodes", "node-a")["lock"].is_null());
  EXPECT_EQ(a_.domain_state(kGuest1), "running");
  EXPECT_EQ(a_.domain_state(kGuest2), "running");
  EXPECT_EQ(b_.domain_state(kGuest1), "");
  auto tasks = command("task.list", json::object());
  EXPECT_TRUE(tasks["result"]["tasks"].empty()) << tasks;
}

TEST_F(NodeMigration, LocalMigrateWorksWithNatsDownAndIsReportedWhenItIsBack) {
  start();
  nats_.stop();
  std::string socket = agent_a_->dir().file("state") + "/local.sock";
  int runs = 0;
  auto run = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {NODEHA_CLI_BIN, "--socket", socket, "--json"});
    Process cli(args, agent_a_->dir().file("cli-" + std::to_string(++runs) + ".log"));
    auto status = cli.wait_exit(180s);
    return std::make_pair(status.value_or(-1), cli.output());
  };
  auto [dry_status, dry] = run({"local", "migrate", "--interface", "lo", "--dest", "127.0.0.1", "--all"});
  EXPECT_EQ(dry_status, 0) << dry;
  EXPECT_EQ(a_.domain_state(kGuest1), "running") << "a dry run moves nothing";

  auto started = std::chrono::steady_clock::now();
  auto [status, out] = run({"local", "migrate", "--interface", "lo", "--dest", "127.0.0.1", "--all", "--confirm"});
  ASSERT_EQ(status, 0) << out << agent_a_->log();
  std::printf("[ timing   ] local migrate of 2 guests with NATS down: %.2f s\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  expect_on_b_only();
  auto reply = json::parse(out.substr(out.find('{')), nullptr, false);
  ASSERT_TRUE(reply.is_object()) << out;
  std::string id = reply.value("task", "");
  ASSERT_FALSE(id.empty()) << out;

  // NATS back: the journal is reported and the records catch up, with no operator.
  nats_.start();
  ASSERT_TRUE(wait_until([&] {
    auto t = record_of("tasks", id);
    return t.value("kind", "") == "local-migrate" && t.value("node", "") == "node-a";
  }, 30s)) << agent_a_->log();
  EXPECT_EQ(record_of("tasks", id)["state"], "succeeded") << record_of("tasks", id).dump(2);
  ASSERT_TRUE(wait_until([&] {
    return record_of("vms", kGuest1).value("node", "") == "node-b" && record_of("vms", kGuest2).value("node", "") == "node-b";
  }, 30s)) << agent_b_->log();
  EXPECT_EQ(record_of("vms", kGuest1)["generation"], 2);
}

}  // namespace
}  // namespace nodeha::test
