// Live migration between two real, isolated libvirtd (QEMU driver) daemons, node-a and node-b,
// each with an agent (heartbeat + migrate) on one nats-server, and a controller (heartbeat, so
// that node records carry the nodes' addresses; vms and tasks, whose desks the agents write
// through). An InvariantMonitor samples both daemons throughout:
// no VM may ever run on both.
//
// - vm.migrate: two guests move from node-a to node-b at once; they run on node-b only, their
//   qemu is a new process in node-b's namespace, they never stopped running for long (live),
//   progress was published, their records name node-b with generation 2.
// - local.migrate: the plan changes nothing; confirmed through "lo" to 127.0.0.1 the guest moves,
//   the task is journalled and reported into the tasks bucket.
// - Migrations aborted (timeout, stall, vm.abort) leave the guest running on node-a.
#include "bus.h"
#include "host_process.h"
#include "invariant.h"
#include "libvirtd.h"
#include "nats_server.h"
#include "task_read.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <unistd.h>

#include <cstdio>
#include <future>
#include <mutex>

namespace nodeha::test {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using json = nlohmann::json;

// The heartbeat controller, and the vms and tasks plugins, whose record desks the agents write
// their records and local tasks through.
std::string controller_config(const NatsServer& nats) {
  return host_tables("controller", "ctl", nats.url()) +
         "[[plugin]]\nlibrary = \"heartbeat\"\ninterval = \"1s\"\nmisses = 3\nping_timeout = \"500ms\"\n"
         "[[plugin]]\nlibrary = \"vms\"\n[[plugin]]\nlibrary = \"tasks\"\n";
}

// An agent whose libvirtd peers reach at `own_uri` (a unix socket: both daemons share this
// machine's file system), and whose `nodeha local migrate` goes to `local_peer_uri`.
std::string agent_config(const NatsServer& nats, const std::string& node, const std::string& own_uri,
                         const std::string& local_peer_uri) {
  return host_tables("agent", node, nats.url()) + libvirt_agent_tables(own_uri, "", local_peer_uri);
}

// Prints how long a step took, from the previous mark.
class Stopwatch {
 public:
  double mark(const char* step) {
    auto now = std::chrono::steady_clock::now();
    double s = std::chrono::duration<double>(now - last_).count();
    std::printf("[ timing   ] %-52s %6.2f s\n", step, s);
    std::fflush(stdout);
    last_ = now;
    return s;
  }

 private:
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};

// `base` with the fields of `changes` set.
json with(json base, const json& changes) {
  base.update(changes);
  return base;
}

// The mount namespace of a process ("mnt:[4026532...]"): tells which isolated daemon's guest a
// qemu process is.
std::string mount_ns(pid_t pid) {
  char buf[64] = {};
  ssize_t n = readlink(("/proc/" + std::to_string(pid) + "/ns/mnt").c_str(), buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

class Migration : public ::testing::Test {
 protected:
  void SetUp() override {
    bus_ = nats_.client();
    ASSERT_TRUE(bus_);
    ASSERT_TRUE(a_.running()) << a_.log();
    ASSERT_TRUE(b_.running()) << b_.log();
    watch_.mark("nats-server and two isolated libvirtd up");
    auto sub = bus_->subscribe("nodeha.evt.vm.>", "", [this](Message m) {
      std::lock_guard lock(mu_);
      events_.push_back(json::parse(m.data, nullptr, false));
      events_.back()["subject"] = m.subject;
    });
    ASSERT_TRUE(sub);
    ctl_ = std::make_unique<HostProcess>(controller_config(nats_));
    agent_a_ = std::make_unique<HostProcess>(agent_config(nats_, "node-a", a_.uri(), b_.uri()));
    agent_b_ = std::make_unique<HostProcess>(agent_config(nats_, "node-b", b_.uri(), a_.uri()));
    ASSERT_TRUE(ctl_->wait_ready()) << ctl_->log();
    ASSERT_TRUE(agent_a_->wait_ready()) << agent_a_->log();
    ASSERT_TRUE(agent_b_->wait_ready()) << agent_b_->log();
    monitor_ = std::make_unique<InvariantMonitor>(std::vector<InvariantMonitor::Node>{{"node-a", a_.uri()}, {"node-b", b_.uri()}});
    watch_.mark("controller, two agents and the invariant monitor up");
  }

  void TearDown() override {
    if (HasFailure() && agent_a_) std::printf("---- node-a agent log ----\n%s\n", agent_a_->log().c_str());
    if (monitor_) {
      monitor_->stop();
      EXPECT_THAT(monitor_->violations_text(), IsEmpty()) << "one and only one running copy of a VM, ever";
    }
  }

  // The reply envelope of a request; {"transport": why} when none came.
  json request(const std::string& subject, const json& body, std::chrono::milliseconds timeout = 5s) {
    auto r = bus_->request("nodeha." + subject, body.dump(), timeout);
    if (!r) return json{{"transport", r.status().message()}};
    return json::parse(r.value(), nullptr, false);
  }

  // Starts a guest on node-a and gives it a record naming node-a (generation 1), as the vms
  // plugin would.
  void start_guest(const std::string& name, const std::string& uuid) {
    std::string error;
    ASSERT_TRUE(a_.define_and_start(name, uuid, 64, &error)) << error << "\n" << a_.log();
    json record = {{"uuid", uuid}, {"name", name}, {"node", "node-a"}, {"generation", 1}, {"state", "running"},
                   {"desired", "running"}, {"vcpus", 1}, {"memory_mib", 64}, {"disk_gib", 0}, {"local_disk", false},
                   {"local_disks", json::array()}, {"group", ""}, {"xml", ""}, {"updated", 0}};
    ASSERT_TRUE(bus_->kv_put("vms", uuid, record.dump())) << "cannot write the record of " << uuid;
  }

  json record(const std::string& uuid) {
    auto e = bus_->kv_get("vms", uuid);
    return e ? json::parse(e->value, nullptr, false) : json();
  }

  std::vector<json> events_for(const std::string& uuid, const std::string& event) {
    std::lock_guard lock(mu_);
    std::vector<json> out;
    for (const auto& e : events_)
      if (e.value("subject", "") == "nodeha.evt.vm." + uuid && e.value("event", "") == event) out.push_back(e);
    return out;
  }

  // The guest's qemu processes and the namespaces they run in.
  static std::string qemu_of(const std::string& uuid, pid_t* pid) {
    auto pids = Libvirtd::processes_with(uuid);
    if (pids.size() != 1) return "";
    *pid = pids[0];
    return mount_ns(pids[0]);
  }

  // Asserts that `uuid` moved live from node-a to node-b: defined and running on node-b only, its
  // qemu a new process in node-b's namespace, and it ran somewhere throughout.
  void expect_moved_live(const std::string& uuid, pid_t qemu_before) {
    EXPECT_EQ(b_.domain_state(uuid), "running");
    EXPECT_EQ(a_.domain_state(uuid), "") << "undefined on node-a";
    pid_t after = 0;
    std::string ns = qemu_of(uuid, &after);
    EXPECT_EQ(ns, mount_ns(b_.pid())) << "one qemu for the guest, node-b's";
    EXPECT_NE(after, qemu_before);
    EXPECT_EQ(Libvirtd::processes_with(uuid).size(), 1u);
    // Live: the sampler never saw it run nowhere for long (a restart takes seconds).
    EXPECT_LT(monitor_->longest_gap(uuid).count(), 1000) << monitor_->timeline_text(uuid);
    auto timeline = monitor_->timeline(uuid);
    ASSERT_FALSE(timeline.empty());
    EXPECT_EQ(timeline.front().nodes, std::vector<std::string>{"node-a"}) << monitor_->timeline_text(uuid);
    EXPECT_EQ(timeline.back().nodes, std::vector<std::string>{"node-b"}) << monitor_->timeline_text(uuid);
  }

  Stopwatch watch_;
  NatsServer nats_;
  Libvirtd a_;
  Libvirtd b_;
  std::unique_ptr<host::Bus> bus_;
  std::unique_ptr<HostProcess> ctl_, agent_a_, agent_b_;
  std::unique_ptr<InvariantMonitor> monitor_;
  std::mutex mu_;
  std::vector<json> events_;
};

const std::string kGuest1 = Libvirtd::guest_uuid(1);
const std::string kGuest2 = Libvirtd::guest_uuid(2);
const std::string kGuest3 = Libvirtd::guest_uuid(3);

TEST_F(Migration, TwoGuestsMoveLiveToThePeer) {
  start_guest("tiny-1", kGuest1);
  start_guest("tiny-2", kGuest2);
  pid_t qemu1 = 0, qemu2 = 0;
  ASSERT_EQ(qemu_of(kGuest1, &qemu1), mount_ns(a_.pid()));
  ASSERT_EQ(qemu_of(kGuest2, &qemu2), mount_ns(a_.pid()));
  ASSERT_TRUE(monitor_->wait_rounds(2));
  watch_.mark("two guests running on node-a");

  // Where node-b takes migrations, as a controller would ask.
  json target = request("agent.node-b.migrate.target", {{"network", "management"}});
  ASSERT_TRUE(target.value("ok", false)) << target;
  EXPECT_EQ(target["result"]["libvirt_uri"], b_.uri());
  EXPECT_EQ(target["result"]["migrate_uri"], "tcp://127.0.0.1");
  EXPECT_EQ(target["result"]["address"], "127.0.0.1");
  json unknown = request("agent.node-b.migrate.target", {{"network", "storage"}});
  EXPECT_EQ(unknown["error"]["code"], "unknown_network") << unknown;

  auto migrate = [&](const std::string& uuid, const std::string& task = "0000000000000011") {
    return request("agent.node-a.vm.migrate",
                   {{"uuid", uuid}, {"task", task}, {"dest_node", "node-b"},
                    {"dest_uri", target["result"]["libvirt_uri"]}, {"migrate_uri", target["result"]["migrate_uri"]},
                    {"include_local_disk", false}},
                   60s);
  };
  // NATS keeps one connection's messages in order and the agent decides on its event thread: the
  // second request for guest 1 meets the first one in flight.
  auto first = std::async(std::launch::async, [&] { return migrate(kGuest1); });
  auto second = std::async(std::launch::async, [&] { return migrate(kGuest2); });
  json r1 = first.get(), r2 = second.get();
  double took = watch_.mark("vm.migrate x2 (in parallel)");
  ASSERT_TRUE(r1.value("ok", false)) << r1 << "\n" << agent_a_->log();
  ASSERT_TRUE(r2.value("ok", false)) << r2 << "\n" << agent_a_->log();
  for (const json& r : {r1, r2}) {
    std::printf("[ measured ] %s: duration_ms=%lld data_total=%llu\n", r["result"]["uuid"].get<std::string>().c_str(),
                r["result"]["duration_ms"].get<long long>(), r["result"]["data_total"].get<unsigned long long>());
    EXPECT_GT(r["result"]["duration_ms"].get<int64_t>(), 0);
    EXPECT_LE(r["result"]["duration_ms"].get<double>() / 1000.0, took + 0.1);
    EXPECT_GT(r["result"]["data_total"].get<uint64_t>(), 0u) << "a 64 MiB guest has data to move";
    EXPECT_EQ(r["result"]["record"]["moved"], true) << r;
  }
  ASSERT_TRUE(monitor_->wait_rounds(2));
  expect_moved_live(kGuest1, qemu1);
  expect_moved_live(kGuest2, qemu2);

  for (const auto& uuid : {kGuest1, kGuest2}) {
    json rec = record(uuid);
    EXPECT_EQ(rec.value("node", ""), "node-b") << rec;
    EXPECT_EQ(rec.value("generation", 0), 2) << rec;
    ASSERT_TRUE(wait_until([&] { return !events_for(uuid, "migrated").empty(); }, 5s));
    auto progress = events_for(uuid, "migration_progress");
    // While the destination starts, nothing is counted yet (zeros): the events say it lives.
    ASSERT_FALSE(progress.empty()) << "no migration_progress event for " << uuid;
    EXPECT_EQ(progress.front()["task"], "0000000000000011");
    EXPECT_EQ(progress.front()["node"], "node-a");
    EXPECT_EQ(progress.front()["dest_node"], "node-b");
    for (const char* field : {"data_total", "data_processed", "data_remaining", "time"})
      EXPECT_TRUE(progress.front()[field].is_number()) << field << " in " << progress.front();
    json migrated = events_for(uuid, "migrated").front();
    EXPECT_GT(migrated["data_total"].get<uint64_t>(), 0u) << migrated;
  }
  // The same task asking again (as the controller does while it waits, in case a nats-server
  // restart lost the answer) gets the same answer; another migration finds nothing to move, and
  // an abort nothing to abort.
  json asked_again = migrate(kGuest1);
  ASSERT_EQ(asked_again["ok"], true) << asked_again;
  EXPECT_EQ(asked_again["result"]["duration_ms"], r1["result"]["duration_ms"]) << asked_again;
  json again = migrate(kGuest1, "0000000000000012");
  EXPECT_EQ(again["error"]["code"], "unknown_vm") << again;
  json abort = request("agent.node-a.vm.abort", {{"uuid", kGuest1}});
  EXPECT_EQ(abort["error"]["code"], "unknown_vm") << abort;
  json idle = request("agent.node-b.vm.abort", {{"uuid", kGuest1}});
  ASSERT_TRUE(idle.value("ok", false)) << idle;
  EXPECT_EQ(idle["result"]["aborted"], false) << "no job to abort";
  monitor_->expect_all_running({kGuest1, kGuest2});
}

TEST_F(Migration, ASecondRequestForAMigratingGuestIsRefused) {
  start_guest("tiny-1", kGuest1);
  json body = {{"uuid", kGuest1}, {"dest_node", "node-b"}, {"dest_uri", b_.uri()}, {"migrate_uri", "tcp://127.0.0.1"},
               {"include_local_disk", false}};
  std::promise<std::string> first;
  auto token = bus_->request_async("nodeha.agent.node-a.vm.migrate", body.dump(), [&](nodeha_status s, std::string data) {
    first.set_value(s == NODEHA_OK ? data : std::string("transport failure"));
  });
  ASSERT_TRUE(token);
  json second = request("agent.node-a.vm.migrate", body, 10s);
  EXPECT_EQ(second["error"]["code"], "bad_value") << second;
  EXPECT_THAT(second["error"]["message"].get<std::string>(), HasSubstr("already migrating"));
  auto future = first.get_future();
  ASSERT_EQ(future.wait_for(60s), std::future_status::ready);
  json r1 = json::parse(future.get(), nullptr, false);
  EXPECT_TRUE(r1.value("ok", false)) << r1;
  watch_.mark("one migration, its duplicate refused");
  // Malformed requests are refused before anything happens.
  json missing = request("agent.node-a.vm.migrate", {{"uuid", kGuest1}});
  EXPECT_EQ(missing["error"]["code"], "missing_field") << missing;
  json self = request("agent.node-b.vm.migrate", with(body, {{"dest_node", "node-b"}}));
  EXPECT_EQ(self["error"]["code"], "bad_value") << self;
  monitor_->expect_all_running({kGuest1});
}

// A guest with a disk in a local file does not migrate unless its disks are to be copied: the
// refusal names the disk, and nothing moves.
TEST_F(Migration, AGuestWithALocalDiskIsRefusedWithoutIncludeLocalDisk) {
  TempDir images;
  std::string disk = images.write("local.img", std::string(1 << 20, '\0'));
  std::string xml = std::string("<domain type='") + (access("/dev/kvm", R_OK | W_OK) == 0 ? "kvm" : "qemu") +
                    "'><name>disky</name><uuid>" + kGuest3 + "</uuid><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
                    "<os><type arch='x86_64' machine='pc'>hvm</type></os><devices>"
                    "<emulator>/usr/bin/qemu-system-x86_64</emulator>"
                    "<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='" + disk +
                    "'/><target dev='vda' bus='virtio'/></disk>"
                    "<controller type='usb' model='none'/><memballoon model='none'/></devices></domain>";
  virConnectPtr c = virConnectOpen(a_.uri().c_str());
  ASSERT_TRUE(c);
  virDomainPtr d = virDomainDefineXML(c, xml.c_str());
  ASSERT_TRUE(d) << virGetLastErrorMessage();
  EXPECT_EQ(virDomainCreate(d), 0) << virGetLastErrorMessage();
  virDomainFree(d);
  virConnectClose(c);
  ASSERT_EQ(a_.domain_state(kGuest3), "running");
  json r = request("agent.node-a.vm.migrate",
                   {{"uuid", kGuest3}, {"dest_node", "node-b"}, {"dest_uri", b_.uri()}, {"migrate_uri", "tcp://127.0.0.1"},
                    {"include_local_disk", false}},
                   30s);
  EXPECT_EQ(r["error"]["code"], "bad_value") << r;
  EXPECT_THAT(r.dump(), HasSubstr("has local disks (" + disk + ")"));
  json plan = agent_a_->local("local.migrate", {{"interface", "lo"}, {"dest", "127.0.0.1"}, {"vms", {"disky"}}});
  ASSERT_TRUE(plan.value("ok", false)) << plan;
  EXPECT_EQ(plan["result"]["plan"][0]["action"], "skip") << plan;
  EXPECT_THAT(plan["result"]["plan"][0]["reason"].get<std::string>(), HasSubstr("local disks"));
  EXPECT_EQ(a_.domain_state(kGuest3), "running");
  EXPECT_EQ(b_.domains().size(), 0u);
  EXPECT_TRUE(a_.domains().size() == 1 && a_.domains()[0].name == "disky");
  // Destroyed before the TempDir with its disk goes (the daemon's destructor would come later).
  c = virConnectOpen(a_.uri().c_str());
  d = virDomainLookupByUUIDString(c, kGuest3.c_str());
  EXPECT_EQ(virDomainDestroy(d), 0);
  virDomainFree(d);
  virConnectClose(c);
}

TEST_F(Migration, LocalMigratePlansThenMovesThroughTheInterface) {
  start_guest("tiny-1", kGuest1);
  start_guest("tiny-2", kGuest2);
  // Guest 2 is shut off: the plan skips it.
  {
    virConnectPtr c = virConnectOpen(a_.uri().c_str());
    ASSERT_TRUE(c);
    virDomainPtr d = virDomainLookupByUUIDString(c, kGuest2.c_str());
    ASSERT_TRUE(d);
    EXPECT_EQ(virDomainDestroy(d), 0);
    virDomainFree(d);
    virConnectClose(c);
  }
  pid_t qemu1 = 0;
  ASSERT_EQ(qemu_of(kGuest1, &qemu1), mount_ns(a_.pid()));
  // The controller has node-b's addresses from its heartbeats: the agent can name the
  // destination node of 127.0.0.1 (node-a has it too, but that is itself).
  ASSERT_TRUE(wait_until([&] {
    auto n = bus_->kv_get("nodes", "node-b");
    return n && json::parse(n->value, nullptr, false).value("addresses", json()).is_object();
  }, 15s)) << ctl_->log();
  ASSERT_TRUE(monitor_->wait_rounds(2));

  json base = {{"interface", "lo"}, {"dest", "127.0.0.1"}, {"all", true}};
  json plan = agent_a_->local("local.migrate", base, 10s);
  ASSERT_TRUE(plan.value("ok", false)) << plan << "\n" << agent_a_->log();
  EXPECT_EQ(plan["result"]["confirmed"], false);
  ASSERT_EQ(plan["result"]["plan"].size(), 2u) << plan;
  EXPECT_EQ(plan["result"]["plan"][0]["vm"], kGuest1);
  EXPECT_EQ(plan["result"]["plan"][0]["action"], "migrate");
  EXPECT_EQ(plan["result"]["plan"][0]["dest"], "127.0.0.1");
  EXPECT_EQ(plan["result"]["plan"][1]["vm"], kGuest2);
  EXPECT_EQ(plan["result"]["plan"][1]["action"], "skip");
  EXPECT_THAT(plan["result"]["plan"][1]["reason"].get<std::string>(), HasSubstr("not running"));
  ASSERT_TRUE(monitor_->wait_rounds(2));
  pid_t still = 0;
  EXPECT_EQ(qemu_of(kGuest1, &still), mount_ns(a_.pid())) << "a plan moves nothing";
  EXPECT_EQ(still, qemu1);
  EXPECT_EQ(b_.domains().size(), 0u);

  // Refusals: an interface that does not exist, a destination not routed through it, both
  // all and vms, a VM not here.
  json no_if = agent_a_->local("local.migrate", with(base, {{"interface", "nodeha-none0"}}));
  EXPECT_EQ(no_if["error"]["code"], "bad_value") << no_if;
  json off_route = agent_a_->local("local.migrate", with(base, {{"dest", "192.0.2.1"}}));
  EXPECT_EQ(off_route["error"]["code"], "bad_value") << off_route;
  EXPECT_THAT(off_route.dump(), HasSubstr("192.0.2.1"));
  json both = agent_a_->local("local.migrate", with(base, {{"vms", {kGuest1}}}));
  EXPECT_EQ(both["error"]["code"], "bad_value") << both;
  json stranger = agent_a_->local("local.migrate", {{"interface", "lo"}, {"dest", "127.0.0.1"}, {"vms", {"nope"}}});
  EXPECT_EQ(stranger["error"]["code"], "unknown_vm") << stranger;

  watch_.mark("guests, node records, the plan and five refusals");
  json done = agent_a_->local("local.migrate", with(base, {{"confirm", true}}), 120s);
  double took = watch_.mark("local.migrate confirmed (one guest)");
  ASSERT_TRUE(done.value("ok", false)) << done << "\n" << agent_a_->log();
  const json& res = done["result"];
  std::printf("[ measured ] local.migrate: %s\n", res["results"].dump().c_str());
  EXPECT_EQ(res["confirmed"], true);
  EXPECT_EQ(res["state"], "succeeded") << res;
  EXPECT_EQ(res["dest_node"], "node-b") << res;
  EXPECT_EQ(res["journal"], "appended");
  ASSERT_EQ(res["results"].size(), 2u);
  EXPECT_EQ(res["results"][0]["result"], "migrated") << res;
  EXPECT_EQ(res["results"][1]["result"], "skipped") << res;
  EXPECT_LE(res["results"][0]["duration_ms"].get<double>() / 1000.0, took + 0.1);
  ASSERT_TRUE(monitor_->wait_rounds(2));
  expect_moved_live(kGuest1, qemu1);
  EXPECT_EQ(a_.domain_state(kGuest2), "shutoff") << "a skipped VM stays";
  json rec = record(kGuest1);
  EXPECT_EQ(rec.value("node", ""), "node-b") << rec;
  EXPECT_EQ(rec.value("generation", 0), 2) << rec;

  // Journalled on node-a (in the plugin's own state dir, where journal::report reads it), and
  // reported into the tasks bucket since the bus is up.
  std::string id = res["task"];
  ASSERT_EQ(id.size(), 16u);
  std::string journal = agent_a_->dir().file("state/plugins/migrate/journal.jsonl");
  ASSERT_TRUE(wait_until([&] {
    auto line = json::parse(read_file(journal), nullptr, false);
    return line.is_object() && line.value("reported", false);
  }, 15s)) << read_file(journal) << "\n" << agent_a_->log();
  json entry = json::parse(read_file(journal));
  EXPECT_EQ(entry["task"]["id"], id);
  EXPECT_EQ(entry["task"]["kind"], "local-migrate");
  EXPECT_EQ(entry["task"]["node"], "node-a");
  json t = read_task(*bus_, id);  // its head and its steps' chunks
  ASSERT_FALSE(t.empty()) << "task " << id << " not in the tasks bucket";
  EXPECT_EQ(t["kind"], "local-migrate");
  EXPECT_EQ(t["state"], "succeeded");
  ASSERT_EQ(t["steps"].size(), 2u);
  EXPECT_EQ(t["steps"][0]["state"], "succeeded");
  EXPECT_EQ(t["steps"][0]["target"], "node-b");
  EXPECT_GT(t["steps"][0]["progress"]["data_total"].get<uint64_t>(), 0u) << t;
  EXPECT_EQ(t["steps"][1]["state"], "skipped");
  monitor_->expect_all_running({kGuest1});
}

// Three ways a migration is aborted, each deterministic: a timeout of 1 ms, a stall limit of 1 ms
// (nothing is counted while the destination starts), and vm.abort right behind the request
// (NATS keeps one connection's messages in order). Each time the guest keeps running on node-a,
// in the same qemu, its record untouched, and node-b lets go of its incoming copy.
TEST_F(Migration, AbortedMigrationsLeaveTheGuestWhereItWas) {
  start_guest("tiny-3", kGuest3);
  pid_t qemu = 0;
  ASSERT_EQ(qemu_of(kGuest3, &qemu), mount_ns(a_.pid()));
  ASSERT_TRUE(monitor_->wait_rounds(2));
  json body = {{"uuid", kGuest3}, {"dest_node", "node-b"}, {"dest_uri", b_.uri()}, {"migrate_uri", "tcp://127.0.0.1"},
               {"include_local_disk", false}};
  auto expect_stayed = [&](const char* why) {
    SCOPED_TRACE(why);
    EXPECT_EQ(a_.domain_state(kGuest3), "running");
    pid_t after = 0;
    EXPECT_EQ(qemu_of(kGuest3, &after), mount_ns(a_.pid()));
    EXPECT_EQ(after, qemu);
    EXPECT_TRUE(wait_until([&] { return b_.domain_state(kGuest3).empty(); }, 10s)) << b_.domain_state(kGuest3);
    json rec = record(kGuest3);
    EXPECT_EQ(rec.value("node", ""), "node-a") << rec;
    EXPECT_EQ(rec.value("generation", 0), 1) << rec;
  };

  json timeout = request("agent.node-a.vm.migrate", with(body, {{"timeout_ms", 1}}), 60s);
  watch_.mark("vm.migrate with timeout_ms 1: aborted");
  EXPECT_EQ(timeout["error"]["code"], "migration_timeout") << timeout << "\n" << agent_a_->log();
  EXPECT_THAT(timeout.dump(), HasSubstr("took longer than 1 ms"));
  EXPECT_THAT(timeout.dump(), HasSubstr("still here (running)"));
  expect_stayed("timeout");

  json stall = request("agent.node-a.vm.migrate", with(body, {{"stall_ms", 1}}), 60s);
  watch_.mark("vm.migrate with stall_ms 1: aborted");
  EXPECT_EQ(stall["error"]["code"], "migration_stalled") << stall << "\n" << agent_a_->log();
  EXPECT_THAT(stall.dump(), HasSubstr("did not decrease for 1 ms"));
  expect_stayed("stall");

  std::promise<std::string> migrating;
  auto token = bus_->request_async("nodeha.agent.node-a.vm.migrate", body.dump(), [&](nodeha_status s, std::string data) {
    migrating.set_value(s == NODEHA_OK ? data : std::string("transport failure"));
  });
  ASSERT_TRUE(token);
  json abort = request("agent.node-a.vm.abort", {{"uuid", kGuest3}});
  ASSERT_TRUE(abort.value("ok", false)) << abort;
  EXPECT_EQ(abort["result"]["aborted"], true) << abort;
  auto future = migrating.get_future();
  ASSERT_EQ(future.wait_for(60s), std::future_status::ready);
  json aborted = json::parse(future.get(), nullptr, false);
  watch_.mark("vm.migrate, then vm.abort: aborted");
  EXPECT_EQ(aborted["error"]["code"], "migration_aborted") << aborted << "\n" << agent_a_->log();
  expect_stayed("vm.abort");

  ASSERT_TRUE(wait_until([&] { return events_for(kGuest3, "migration_failed").size() == 3; }, 5s));
  EXPECT_EQ(events_for(kGuest3, "migration_failed").front()["code"], "migration_timeout");
  ASSERT_TRUE(monitor_->wait_rounds(2));
  EXPECT_EQ(monitor_->longest_gap(kGuest3).count(), 0) << monitor_->timeline_text(kGuest3);
  std::string metrics = agent_a_->metrics();
  for (const char* result : {"timeout", "stalled", "aborted"})
    EXPECT_NE(metrics.find("nodeha_migrate_migrations_total{result=\"" + std::string(result) + "\"} 1"), std::string::npos)
        << result << "\n" << metrics;
  monitor_->expect_all_running({kGuest3});
}

}  // namespace
}  // namespace nodeha::test
