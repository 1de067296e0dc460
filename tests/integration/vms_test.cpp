// The vms plugin end to end on a real nats-server: an agent (libvirt test driver, the node file
// tests/fixtures/vms_node.xml, shared_paths = ["/srv/shared"]) keeps the vms bucket true for its
// node; stale copies go at the first sync; a claim follows a VM that arrives and runs; supervision
// restarts a VM that died (the vm_crash fixture destroys it inside the agent's process) unless the
// node is drained; the VM operations, the drain and the local drain (on the node-local socket
// only, with NATS up and down) and their refusals; the domain policy of vm.define (a domain on the
// host's /dev/vda or with qemu:commandline refused, nothing defined; the keys that widen it);
// cmd.vm.list on a controller; the controller's record desk, through which the agent writes its
// records (a controller runs beside the agent in every test), refusing what is not node-a's.
//
// The test driver keeps the domains in the agent's process: each agent starts from the node file.
#include "bus.h"
#include "cli_run.h"
#include "list_pages.h"
#include "host_process.h"
#include "nats_server.h"
#include "task_read.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>


#include <algorithm>
#include <cstdio>
#include <map>
#include <mutex>
#include <set>

namespace nodeha::test {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using json = nlohmann::json;

// The node file's domains (see its header).
const std::string kWeb = "0a000000-0000-4000-8000-000000000001";    // running, rbd disk
const std::string kDb = "0a000000-0000-4000-8000-000000000002";     // running, local file disk
const std::string kApp = "0a000000-0000-4000-8000-000000000003";    // running, file under /srv/shared, empty CD
const std::string kBatch = "0a000000-0000-4000-8000-000000000004";  // running, block disk + shared file
const std::string kIdle = "0a000000-0000-4000-8000-000000000005";   // shut off, no disk
const std::vector<std::string> kAll = {kWeb, kDb, kApp, kBatch, kIdle};

std::string domain_xml(const std::string& name, const std::string& uuid) {
  return "<domain type='test'><name>" + name + "</name><uuid>" + uuid +
         "</uuid><memory unit='MiB'>64</memory>"
         "<vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os></domain>";
}

class Vms : public ::testing::Test {
 protected:
  void SetUp() override {
    bus_ = nats_.client();
    ASSERT_TRUE(bus_);
    // The agent writes its records and reports its local tasks through the controller's desks.
    controller_ = std::make_unique<HostProcess>(host_tables("controller", "ctl", nats_.url()) +
                                                "[[plugin]]\nlibrary = \"vms\"\n[[plugin]]\nlibrary = \"tasks\"\n");
    ASSERT_TRUE(controller_->wait_ready()) << controller_->log();
    ASSERT_TRUE(bus_->subscribe("nodeha.evt.>", "",
                                [this](Message m) {
                                  auto j = json::parse(m.data, nullptr, false);
                                  if (!j.is_object()) return;
                                  j["subject"] = m.subject;
                                  std::lock_guard lock(mu_);
                                  events_.push_back(std::move(j));
                                })
                    .is_ok());
  }

  std::string agent_config(const std::string& vms_keys = "") const {
    return "[host]\nrole = \"agent\"\nnode_id = \"node-a\"\nplugin_path = [\"{plugins}\", \"{fixtures}\"]\n"
           "[nats]\nservers = [\"" +
           nats_.url() +
           "\"]\nreconnect_wait = \"100ms\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n"
           "[libvirt]\nuri = \"test://" NODEHA_SOURCE_DIR
           "/tests/fixtures/vms_node.xml\"\n"
           "[[plugin]]\nlibrary = \"vms\"\nsync_every = \"200ms\"\nstop_timeout = \"2s\"\n"
           "shared_paths = [\"/srv/shared\"]\n" +
           vms_keys +
           "\n"
           "[[plugin]]\nlibrary = \"vm_crash\"\n";
  }
  // Started, and in sync (it answers vm.list).
  std::unique_ptr<HostProcess> start_agent(const std::string& vms_keys = "") {
    auto a = std::make_unique<HostProcess>(agent_config(vms_keys));
    EXPECT_TRUE(a->wait_ready()) << a->log();
    EXPECT_TRUE(wait_until([&] { return listed().size() > 0; })) << a->log();
    return a;
  }

  json ask(const std::string& subject, const std::string& body) {
    auto r = bus_->request(subject, body, 10s);
    EXPECT_TRUE(r.is_ok()) << subject << ": " << r.status().message();
    return r ? json::parse(r.value(), nullptr, false) : json();
  }
  // An agent op that must succeed: its result.
  json op(const std::string& name, const json& body) {
    auto j = ask("nodeha.agent.node-a." + name, body.dump());
    EXPECT_EQ(j["ok"], true) << name << " " << body << " -> " << j;
    return j["result"];
  }
  // An agent op that must be refused: its code.
  std::string refusal(const std::string& name, const std::string& body) {
    auto j = ask("nodeha.agent.node-a." + name, body);
    EXPECT_EQ(j["ok"], false) << name << " " << body << " -> " << j;
    return j["ok"] == false ? j["error"]["code"].get<std::string>() : "accepted";
  }
  // vm.list as uuid -> entry; empty when the agent does not answer or is not in sync.
  std::map<std::string, json> listed() {
    std::map<std::string, json> out;
    auto r = bus_->request("nodeha.agent.node-a.vm.list", "{}", 2s);
    auto j = r ? json::parse(r.value(), nullptr, false) : json();
    if (!j.is_object() || j["ok"] != true) return out;
    for (const auto& v : j["result"]["vms"]) out[v["uuid"]] = v;
    return out;
  }
  std::string state(const std::string& uuid) {
    auto all = listed();
    return all.count(uuid) ? all[uuid]["state"].get<std::string>() : "";
  }
  json record(const std::string& uuid) {
    auto e = bus_->kv_get("vms", uuid);
    return e ? json::parse(e->value) : json();
  }
  uint64_t revision(const std::string& uuid) {
    auto e = bus_->kv_get("vms", uuid);
    return e ? e->revision : 0;
  }
  bool recorded_here(const std::vector<std::string>& uuids) {
    for (const auto& u : uuids)
      if (record(u).value("node", "") != "node-a") return false;
    return true;
  }
  void put_node(const std::string& management) {
    ASSERT_TRUE(bus_->kv_put("nodes", "node-a",
                             json{{"node", "node-a"}, {"management", management}, {"lock", nullptr}}.dump()));
  }
  // Waits until the agent finished `n` more inventory syncs than now.
  bool syncs_pass(HostProcess& agent, int n = 3) {
    auto synced = [&] { return agent.metric("nodeha_vms_syncs_total{result=\"ok\"}"); };
    double start = synced();
    return wait_until([&] { return synced() >= start + n; });
  }
  bool crash(const std::string& uuid) {
    auto r = bus_->request("nodeha.test.node-a.destroy", uuid, 5s);
    return r && r.value() == "ok";
  }
  std::vector<json> events(const std::string& event) {
    std::lock_guard lock(mu_);
    std::vector<json> out;
    for (const auto& e : events_)
      if (e.value("event", "") == event) out.push_back(e);
    return out;
  }

  // Answers `agent.<node>.vm.list` as that node's agent would, with these domains (uuid -> state):
  // what an agent asks the owner of a domain it never owned.
  void answer_as(const std::string& node, std::map<std::string, std::string> domains) {
    auto sub = bus_->subscribe("nodeha.agent." + node + ".vm.list", "", [this, domains](Message m) {
      json vms = json::array();
      for (const auto& [uuid, state] : domains) vms.push_back({{"uuid", uuid}, {"state", state}});
      (void)bus_->publish(m.reply, json{{"ok", true}, {"result", {{"vms", vms}}}}.dump());
    });
    ASSERT_TRUE(sub);
  }

  NatsServer nats_;
  std::unique_ptr<host::Bus> bus_;
  std::unique_ptr<HostProcess> controller_;
  std::mutex mu_;
  std::vector<json> events_;
};

TEST_F(Vms, InventoryRecordsEveryDomainOnceWithItsDisksClassified) {
  auto a = start_agent();
  ASSERT_TRUE(wait_until([&] { return recorded_here(kAll); })) << a->log();

  auto web = record(kWeb);
  EXPECT_EQ(web["generation"], 1);
  EXPECT_EQ(web["name"], "web-1");
  EXPECT_EQ(web["state"], "running");
  EXPECT_EQ(web["desired"], "running");
  EXPECT_EQ(web["vcpus"], 2);
  EXPECT_EQ(web["memory_mib"], 512);
  EXPECT_EQ(web["group"], "");
  EXPECT_THAT(web["xml"].get<std::string>(), HasSubstr("<name>web-1</name>"));
  EXPECT_FALSE(web["local_disk"]);  // rbd
  EXPECT_TRUE(record(kDb)["local_disk"]);
  EXPECT_THAT(record(kDb)["local_disks"], ElementsAre("/var/lib/libvirt/images/db-1.qcow2"));
  EXPECT_FALSE(record(kApp)["local_disk"]);  // under /srv/shared; the empty CD-ROM is ignored
  EXPECT_THAT(record(kBatch)["local_disks"], ElementsAre("/dev/sdz"));  // its other disk is shared
  auto idle = record(kIdle);
  EXPECT_EQ(idle["state"], "shutoff");
  EXPECT_EQ(idle["desired"], "stopped");
  EXPECT_FALSE(idle["local_disk"]);

  // Nothing changes, so nothing is written again.
  std::map<std::string, uint64_t> before;
  for (const auto& u : kAll) before[u] = revision(u);
  ASSERT_TRUE(syncs_pass(*a));
  for (const auto& u : kAll) EXPECT_EQ(revision(u), before[u]) << u;

  auto vms = listed();
  ASSERT_EQ(vms.size(), 5u);
  EXPECT_EQ(vms[kDb]["name"], "db-1");
  EXPECT_EQ(vms[kDb]["local_disk"], true);
  EXPECT_EQ(vms[kDb]["vcpus"], 4);
  EXPECT_EQ(vms[kDb]["memory_mib"], 1024);
  EXPECT_EQ(vms[kIdle]["state"], "shutoff");
  EXPECT_EQ(vms[kIdle]["reason"], "unknown");  // the test driver gives no reason for its node file's domains
  EXPECT_EQ(a->metric("nodeha_node_vms{node=\"node-a\",state=\"running\"}"), 4);
}

TEST_F(Vms, StaleCopiesAreGoneBeforeAnyOperationIsServed) {
  answer_as("node-b", {{kWeb, "running"}, {kDb, "running"}});  // rebuilt there while this node was down
  for (const auto& u : {kWeb, kDb})
    ASSERT_TRUE(bus_->kv_create(
        "vms", u,
        json{{"uuid", u}, {"node", "node-b"}, {"generation", 2}, {"desired", "running"}, {"state", "running"}}.dump()));
  uint64_t web_revision = revision(kWeb);
  HostProcess a(agent_config());
  ASSERT_TRUE(a.wait_ready()) << a.log();
  // The first answer to vm.list already comes without them: nothing is served before the first sync.
  std::map<std::string, json> first;
  ASSERT_TRUE(wait_until([&] { return !(first = listed()).empty(); })) << a.log();
  EXPECT_EQ(first.count(kWeb), 0u);
  EXPECT_EQ(first.count(kDb), 0u);
  EXPECT_EQ(first.size(), 3u);

  EXPECT_EQ(a.metric("nodeha_stale_copies_removed_total"), 2);
  EXPECT_EQ(record(kWeb)["node"], "node-b");  // the records are the owner's: untouched
  EXPECT_EQ(record(kWeb)["generation"], 2);
  EXPECT_EQ(revision(kWeb), web_revision);
  ASSERT_TRUE(wait_until([&] { return events("stale_copy_removed").size() == 2; }));
  auto e = events("stale_copy_removed")[0];
  EXPECT_EQ(e["node"], "node-a");
  EXPECT_EQ(e["owner"], "node-b");
  EXPECT_EQ(e["generation"], 2);
  EXPECT_THAT(e["subject"].get<std::string>(), HasSubstr("nodeha.evt.vm."));
  EXPECT_TRUE(wait_until([&] { return recorded_here({kApp, kBatch, kIdle}); }));
}

TEST_F(Vms, AVmMovedAwayWhileHereIsAStaleCopy) {
  auto a = start_agent();
  ASSERT_TRUE(wait_until([&] { return recorded_here(kAll); }));
  // Rebuilt on node-b meanwhile: the record moved, the copy here must go.
  auto moved = record(kWeb);
  moved["node"] = "node-b";
  moved["generation"] = 2;
  ASSERT_TRUE(bus_->kv_put("vms", kWeb, moved.dump()));
  ASSERT_TRUE(wait_until([&] { return a->metric("nodeha_stale_copies_removed_total") == 1; })) << a->log();
  EXPECT_EQ(listed().count(kWeb), 0u);
  EXPECT_EQ(record(kWeb)["node"], "node-b");
  EXPECT_EQ(listed().size(), 4u);
}

// Claimed by node-b while node-a could not answer (the desk's mark): node-a's copy still runs, so
// node-b's word is not enough to remove it. While node-b says it runs it too, both are left alone
// and the operator is told; once node-b says it has none, node-a takes its record back.
TEST_F(Vms, ACopyClaimedAwayWhileSilentStaysWhileItRuns) {
  std::map<std::string, std::string> on_b = {{kWeb, "running"}};
  std::mutex b_mu;
  auto sub = bus_->subscribe("nodeha.agent.node-b.vm.list", "", [&](Message m) {
    json vms = json::array();
    {
      std::lock_guard lock(b_mu);
      for (const auto& [uuid, state] : on_b) vms.push_back({{"uuid", uuid}, {"state", state}});
    }
    (void)bus_->publish(m.reply, json{{"ok", true}, {"result", {{"vms", vms}}}}.dump());
  });
  ASSERT_TRUE(sub);
  auto a = start_agent();
  ASSERT_TRUE(wait_until([&] { return recorded_here(kAll); }));
  auto taken = record(kWeb);
  taken["node"] = "node-b";
  taken["generation"] = taken["generation"].get<int>() + 1;
  taken["claim"] = {{"from", "node-a"}, {"answered", false}};
  ASSERT_TRUE(bus_->kv_put("vms", kWeb, taken.dump()));
  ASSERT_TRUE(wait_until([&] { return !events("claim_contested").empty(); })) << a->log();
  EXPECT_EQ(events("claim_contested")[0]["claimed_by"], "node-b");
  ASSERT_TRUE(syncs_pass(*a));
  EXPECT_EQ(state(kWeb), "running");
  EXPECT_EQ(a->metric("nodeha_stale_copies_removed_total"), 0);
  EXPECT_EQ(record(kWeb)["node"], "node-b");

  {
    std::lock_guard lock(b_mu);
    on_b.clear();  // node-b has no copy: the claim was wrong
  }
  ASSERT_TRUE(wait_until([&] { return record(kWeb).value("node", "") == "node-a"; })) << a->log();
  EXPECT_EQ(state(kWeb), "running");
  EXPECT_EQ(record(kWeb)["claim"]["answered"], true);
  EXPECT_EQ(a->metric("nodeha_stale_copies_removed_total"), 0);
}

TEST_F(Vms, ACopyWhoseOwnerCannotTellIsLeftAloneUntilItCan) {
  auto a = start_agent();
  const std::string uuid = "0a000000-0000-4000-8000-0000000000dd";
  ASSERT_TRUE(bus_->kv_create("vms", uuid,
                              json{{"uuid", uuid},
                                   {"name", "parked"},
                                   {"node", "node-x"},
                                   {"generation", 1},
                                   {"desired", "running"},
                                   {"state", "running"}}
                                  .dump()));
  op("vm.define", {{"xml", domain_xml("parked", uuid)}});
  // Defined here, never ours, recorded on node-x that does not answer: no claim and no removal.
  ASSERT_TRUE(syncs_pass(*a));
  EXPECT_EQ(state(uuid), "shutoff");
  EXPECT_EQ(a->metric("nodeha_stale_copies_removed_total"), 0);
  EXPECT_EQ(record(uuid)["node"], "node-x");

  // Through a bus outage, and node-x answers once it is back: it has the VM, ours goes.
  double failed = a->metric("nodeha_vms_syncs_total{result=\"failed\"}");
  nats_.stop();
  ASSERT_TRUE(wait_until([&] { return a->metric("nodeha_vms_syncs_total{result=\"failed\"}") > failed; })) << a->log();
  nats_.start();
  answer_as("node-x", {{uuid, "running"}});
  ASSERT_TRUE(wait_until([&] { return a->metric("nodeha_stale_copies_removed_total") == 1; }, 20s)) << a->log();
  EXPECT_TRUE(wait_until([&] { return listed().size() == 5u && !listed().count(uuid); }));
  EXPECT_EQ(record(uuid)["node"], "node-x");
}

TEST_F(Vms, TheOnlyCopyOfAVmIsClaimedWhenItsRecordedNodeDoesNotHaveIt) {
  const std::string uuid = "0a000000-0000-4000-8000-0000000000ee";
  ASSERT_TRUE(bus_->kv_create("vms", uuid,
                              json{{"uuid", uuid}, {"name", "came"}, {"node", "node-y"}, {"generation", 1},
                                   {"desired", "running"}, {"state", "running"}}
                                  .dump()));
  answer_as("node-y", {});  // migrated away from node-y with `nodeha local migrate`
  auto a = start_agent();
  op("vm.define", {{"xml", domain_xml("came", uuid)}});
  ASSERT_TRUE(wait_until([&] { return record(uuid).value("node", "") == "node-a"; })) << a->log();
  EXPECT_EQ(record(uuid)["generation"], 2);
  EXPECT_EQ(a->metric("nodeha_stale_copies_removed_total"), 0);
}

TEST_F(Vms, AVmRecordedElsewhereThatArrivesAndRunsIsClaimed) {
  auto a = start_agent();
  const std::string uuid = "0a000000-0000-4000-8000-0000000000aa";
  ASSERT_TRUE(bus_->kv_create("vms", uuid,
                              json{{"uuid", uuid},
                                   {"name", "mover"},
                                   {"node", "node-x"},
                                   {"generation", 3},
                                   {"desired", "running"},
                                   {"state", "running"}}
                                  .dump()));
  EXPECT_EQ(op("vm.define", {{"xml", domain_xml("mover", uuid)}})["uuid"], uuid);
  EXPECT_EQ(op("vm.start", {{"uuid", uuid}})["state"], "running");
  ASSERT_TRUE(wait_until([&] { return record(uuid).value("node", "") == "node-a"; })) << a->log();
  EXPECT_EQ(record(uuid)["generation"], 4);
  ASSERT_TRUE(syncs_pass(*a));
  EXPECT_EQ(record(uuid)["generation"], 4);  // claimed once
  EXPECT_EQ(record(uuid)["state"], "running");
  EXPECT_THAT(record(uuid)["xml"].get<std::string>(), HasSubstr("<name>mover</name>"));
  EXPECT_EQ(state(uuid), "running");  // a claim is no stale copy
  EXPECT_EQ(a->metric("nodeha_stale_copies_removed_total"), 0);
  ASSERT_TRUE(wait_until([&] { return !events("claimed").empty(); }));
  EXPECT_EQ(events("claimed")[0]["from"], "node-x");
}

TEST_F(Vms, SupervisionRestartsAVmThatDied) {
  auto a = start_agent();
  ASSERT_TRUE(wait_until([&] { return recorded_here(kAll); }));
  ASSERT_TRUE(crash(kWeb));
  ASSERT_TRUE(wait_until([&] { return a->metric("nodeha_vm_restarts_total") == 1; })) << a->log();
  EXPECT_TRUE(wait_until([&] { return state(kWeb) == "running"; }));
  ASSERT_TRUE(wait_until([&] { return !events("restarted").empty(); }));
  auto e = events("restarted")[0];
  EXPECT_EQ(e["node"], "node-a");
  EXPECT_EQ(e["reason"], "destroyed");
  EXPECT_EQ(e["subject"], "nodeha.evt.vm." + kWeb);
  EXPECT_EQ(record(kWeb)["desired"], "running");
  EXPECT_EQ(state(kIdle), "shutoff");  // desired stopped: left alone
}

TEST_F(Vms, ADrainedNodeStartsNothing) {
  put_node("drained");
  auto a = start_agent();
  ASSERT_TRUE(wait_until([&] { return recorded_here(kAll); }));
  ASSERT_TRUE(crash(kWeb));
  ASSERT_TRUE(syncs_pass(*a));
  EXPECT_EQ(state(kWeb), "shutoff");
  EXPECT_EQ(a->metric("nodeha_vm_restarts_total"), 0);
  EXPECT_EQ(refusal("vm.start", json{{"uuid", kWeb}}.dump()), "node_drained");
  EXPECT_EQ(state(kWeb), "shutoff");

  put_node("enabled");  // supervision takes over again
  ASSERT_TRUE(wait_until([&] { return a->metric("nodeha_vm_restarts_total") == 1; })) << a->log();
  EXPECT_TRUE(wait_until([&] { return state(kWeb) == "running"; }));
}

TEST_F(Vms, StopRecordsDesiredStoppedAndTheVmStaysStopped) {
  auto a = start_agent();
  ASSERT_TRUE(wait_until([&] { return recorded_here(kAll); }));
  auto stopped = op("vm.stop", {{"uuid", kWeb}, {"timeout_ms", 5000}});
  EXPECT_EQ(stopped["uuid"], kWeb);
  EXPECT_EQ(stopped["state"], "shutoff");
  EXPECT_EQ(stopped["forced"], false);  // the test driver's guests shut down at once
  EXPECT_EQ(listed()[kWeb]["reason"], "shutdown");
  EXPECT_EQ(record(kWeb)["desired"], "stopped");
  ASSERT_TRUE(syncs_pass(*a));
  EXPECT_EQ(state(kWeb), "shutoff");
  EXPECT_EQ(record(kWeb)["state"], "shutoff");
  EXPECT_EQ(a->metric("nodeha_vm_restarts_total"), 0);
  EXPECT_EQ(op("vm.stop", {{"uuid", kWeb}})["state"], "shutoff");  // already stopped: success

  EXPECT_EQ(op("vm.start", {{"uuid", kWeb}})["state"], "running");
  EXPECT_EQ(record(kWeb)["desired"], "running");
  EXPECT_EQ(op("vm.start", {{"uuid", kWeb}})["state"], "running");  // already running: success
  auto forced = op("vm.stop", {{"uuid", kWeb}, {"force", true}});
  EXPECT_EQ(forced["forced"], true);
  EXPECT_EQ(forced["state"], "shutoff");
  EXPECT_EQ(listed()[kWeb]["reason"], "destroyed");
  ASSERT_TRUE(syncs_pass(*a));
  EXPECT_EQ(state(kWeb), "shutoff");  // destroyed by nodeha, desired stopped: not restarted
  EXPECT_EQ(a->metric("nodeha_vm_restarts_total"), 0);
}

TEST_F(Vms, DrainStopsEveryDomainAndReportsEach) {
  auto a = start_agent();
  ASSERT_TRUE(wait_until([&] { return recorded_here(kAll); }));
  auto drained = op("drain", {{"parallel", 2}, {"timeout_ms", 5000}});
  ASSERT_EQ(drained["vms"].size(), 5u) << drained;
  for (const auto& v : drained["vms"]) {
    EXPECT_EQ(v["result"], "stopped") << v;
    EXPECT_EQ(v["error"], "") << v;
    EXPECT_EQ(record(v["uuid"])["desired"], "stopped") << v;
  }
  for (const auto& [uuid, v] : listed()) EXPECT_EQ(v["state"], "shutoff") << uuid;
  ASSERT_TRUE(syncs_pass(*a));
  EXPECT_EQ(a->metric("nodeha_vm_restarts_total"), 0);
  for (const auto& [uuid, v] : listed()) EXPECT_EQ(v["state"], "shutoff") << uuid;
}

TEST_F(Vms, UndefineForgetsTheVmAndItsRecord) {
  auto a = start_agent();
  ASSERT_TRUE(wait_until([&] { return recorded_here(kAll); }));
  EXPECT_EQ(refusal("vm.undefine", json{{"uuid", kWeb}}.dump()), "bad_value");  // it runs
  EXPECT_EQ(op("vm.undefine", {{"uuid", kIdle}})["uuid"], kIdle);
  EXPECT_TRUE(record(kIdle).is_null());
  EXPECT_EQ(listed().count(kIdle), 0u);
  ASSERT_TRUE(syncs_pass(*a));
  EXPECT_TRUE(record(kIdle).is_null());                            // neither recorded again nor marked missing
  EXPECT_EQ(op("vm.undefine", {{"uuid", kIdle}})["uuid"], kIdle);  // absent: success
}

TEST_F(Vms, ADomainGoneBehindNodehasBackIsMarkedMissing) {
  auto a = start_agent();
  ASSERT_TRUE(wait_until([&] { return recorded_here(kAll); }));
  std::string xml = record(kDb)["xml"];
  // A VM recorded here whose domain libvirt does not have (gone without nodeha undefining it):
  const std::string ghost = "0a000000-0000-4000-8000-0000000000bb";
  ASSERT_TRUE(bus_->kv_create("vms", ghost,
                              json{{"uuid", ghost},
                                   {"name", "ghost"},
                                   {"node", "node-a"},
                                   {"generation", 1},
                                   {"desired", "running"},
                                   {"state", "running"},
                                   {"xml", xml}}
                                  .dump()));
  ASSERT_TRUE(wait_until([&] { return record(ghost).value("state", "") == "missing"; })) << a->log();
  EXPECT_EQ(record(ghost)["node"], "node-a");  // kept for a rebuild
  EXPECT_EQ(record(ghost)["xml"], xml);
}

TEST_F(Vms, Refusals) {
  auto a = start_agent();
  EXPECT_EQ(refusal("vm.start", "{"), "bad_json");
  EXPECT_EQ(refusal("vm.start", "[]"), "bad_json");
  EXPECT_EQ(refusal("vm.start", json{{"uuid", kWeb}, {"now", true}}.dump()), "unknown_field");
  EXPECT_EQ(refusal("vm.list", R"({"all":true})"), "unknown_field");
  EXPECT_EQ(refusal("vm.stop", json{{"uuid", kWeb}, {"timeout_ms", "5s"}}.dump()), "bad_type");
  EXPECT_EQ(refusal("vm.stop", json{{"uuid", kWeb}, {"timeout_ms", -1}}.dump()), "bad_value");
  EXPECT_EQ(refusal("vm.stop", "{}"), "missing_field");
  EXPECT_EQ(refusal("vm.start", R"({"uuid":"0a000000-0000-4000-8000-00000000ffff"})"), "unknown_vm");
  EXPECT_EQ(refusal("vm.stop", R"({"uuid":"0a000000-0000-4000-8000-00000000ffff"})"), "unknown_vm");
  EXPECT_EQ(refusal("vm.define", R"({"xml":"<domain>"})"), "bad_value");
  EXPECT_EQ(refusal("vm.define", R"({"xml":""})"), "bad_value");
  EXPECT_EQ(refusal("drain", R"({"parallel":0})"), "bad_value");
  auto local = a->local("local.drain", {{"confirm", "yes"}});
  EXPECT_EQ(local["error"]["code"], "bad_type");
  // Refused requests changed nothing.
  for (const auto& u : {kWeb, kDb}) EXPECT_EQ(state(u), "running");
}

// What an agent defines is checked (plugins/vms/domain_policy.h): a domain on the hypervisor's own
// disk, or with QEMU command-line passthrough, is refused with the reason and is not defined; a
// domain within the policy still is.
TEST_F(Vms, DefineRefusesADomainOutsideThePolicyAndDefinesNothing) {
  auto a = start_agent();
  const std::string host_disk = "0a000000-0000-4000-8000-0000000000b1", passthrough = "0a000000-0000-4000-8000-0000000000b2",
                    compliant = "0a000000-0000-4000-8000-0000000000b3";
  auto with = [](const std::string& xml, const std::string& inside, const std::string& head = "<domain type='test'>") {
    std::string out = xml;
    out.replace(out.find("</domain>"), 9, inside + "</domain>");
    return out.replace(0, std::string("<domain type='test'>").size(), head);
  };
  auto disk = [](const std::string& type, const std::string& attr, const std::string& path) {
    return "<devices><disk type='" + type + "' device='disk'><source " + attr + "='" + path +
           "'/><target dev='vda' bus='virtio'/></disk></devices>";
  };
  auto refused = [&](const std::string& xml) {
    auto j = ask("nodeha.agent.node-a.vm.define", json{{"xml", xml}}.dump());
    EXPECT_EQ(j["ok"], false) << j;
    return j["ok"] == false ? j["error"]["code"].get<std::string>() + ": " + j["error"]["message"].get<std::string>() : "accepted";
  };

  EXPECT_EQ(refused(with(domain_xml("steal", host_disk), disk("block", "dev", "/dev/vda"))),
            "policy: domain refused by policy: disk source /dev/vda is a host block device (allow_block_devices = false)");
  EXPECT_EQ(refused(with(domain_xml("shell", passthrough),
                         "<qemu:commandline><qemu:arg value='-chardev'/><qemu:arg value='socket,id=x,path=/tmp/x'/>"
                         "</qemu:commandline>",
                         "<domain type='test' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>")),
            "policy: domain refused by policy: element <qemu:commandline> is in libvirt's driver namespace "
            "http://libvirt.org/schemas/domain/qemu/1.0, which passes options straight to the hypervisor (never allowed)");
  EXPECT_EQ(refused("<?xml version='1.0'?><!DOCTYPE d [<!ENTITY x SYSTEM 'file:///etc/passwd'>]>" +
                    domain_xml("&x;", host_disk)),
            "bad_value: the domain XML has a <!DOCTYPE> (DTDs and entity declarations are not accepted)");
  EXPECT_THAT(a->log(), HasSubstr("vm.define: domain refused by policy: disk source /dev/vda"));
  // Nothing was defined: libvirt (the test driver lives in the agent) knows neither.
  auto all = listed();
  EXPECT_EQ(all.size(), kAll.size());
  EXPECT_FALSE(all.count(host_disk) || all.count(passthrough));
  EXPECT_EQ(refusal("vm.start", json{{"uuid", host_disk}}.dump()), "unknown_vm");

  // Within the policy (a disk under the default storage path): defined.
  EXPECT_EQ(op("vm.define", {{"xml", with(domain_xml("fine", compliant),
                                          disk("file", "file", "/var/lib/libvirt/images/fine.qcow2"))}})["uuid"],
            compliant);
  EXPECT_TRUE(listed().count(compliant));
}

// The policy is the operator's: with allow_block_devices and another storage path, such disks define.
TEST_F(Vms, DefineFollowsThePolicyInTheConfig) {
  auto a = start_agent("allow_block_devices = true\nstorage_paths = [\"/srv/shared\"]\n");
  const std::string block = "0a000000-0000-4000-8000-0000000000b4", image = "0a000000-0000-4000-8000-0000000000b5";
  auto with_disk = [](const std::string& xml, const std::string& type, const std::string& attr, const std::string& path) {
    std::string out = xml;
    return out.replace(out.find("</domain>"), 9,
                       "<devices><disk type='" + type + "' device='disk'><source " + attr + "='" + path +
                           "'/><target dev='vda' bus='virtio'/></disk></devices></domain>");
  };
  EXPECT_EQ(op("vm.define", {{"xml", with_disk(domain_xml("lun", block), "block", "dev", "/dev/sdq")}})["uuid"], block);
  EXPECT_EQ(op("vm.define", {{"xml", with_disk(domain_xml("shared", image), "file", "file", "/srv/shared/s.qcow2")}})["uuid"],
            image);
  // The default storage path is no longer in the policy.
  EXPECT_EQ(refusal("vm.define", json{{"xml", with_disk(domain_xml("old", "0a000000-0000-4000-8000-0000000000b6"), "file",
                                                         "file", "/var/lib/libvirt/images/old.qcow2")}}
                                      .dump()),
            "policy");
}

TEST_F(Vms, LocalDrainPlansThenStopsAndJournals) {
  auto a = start_agent();
  ASSERT_TRUE(wait_until([&] { return recorded_here(kAll); }));
  auto plan = a->local("local.drain", json::object());
  ASSERT_EQ(plan["ok"], true) << plan;
  ASSERT_EQ(plan["result"]["plan"].size(), 5u);
  for (const auto& p : plan["result"]["plan"]) {
    EXPECT_EQ(p["action"], "stop");
    EXPECT_TRUE(p["target"].is_null());
  }
  EXPECT_FALSE(plan["result"].contains("task"));
  EXPECT_EQ(state(kWeb), "running");  // a plan changes nothing
  EXPECT_EQ(record(kWeb)["desired"], "running");

  auto done = a->local("local.drain", {{"confirm", true}, {"timeout_ms", 5000}});
  ASSERT_EQ(done["ok"], true) << done;
  std::string id = done["result"]["task"];
  EXPECT_EQ(id.size(), 16u);
  EXPECT_EQ(done["result"]["state"], "succeeded");
  ASSERT_EQ(done["result"]["steps"].size(), 5u);
  for (const auto& s : done["result"]["steps"]) EXPECT_EQ(s["state"], "succeeded") << s;
  for (const auto& [uuid, v] : listed()) EXPECT_EQ(v["state"], "shutoff") << uuid;
  EXPECT_EQ(record(kWeb)["desired"], "stopped");

  ASSERT_TRUE(wait_until([&] { return bus_->kv_get("tasks", id).is_ok(); })) << a->log();
  auto task = read_task(*bus_, id);  // its head and its chunk of steps
  EXPECT_EQ(task["kind"], "local-drain");
  EXPECT_EQ(task["node"], "node-a");
  EXPECT_EQ(task["state"], "succeeded");
  EXPECT_EQ(task["steps"].size(), 5u);
  for (const auto& s : task["steps"]) {  // decided on the node: the controller says so, and by whom
    EXPECT_EQ(s["evidence"]["by"], "node-a") << s;
    EXPECT_EQ(s["evidence"]["summary"], "local-drain on node-a (its local socket): " + s["vm"].get<std::string>() + " succeeded");
  }
}

TEST_F(Vms, LocalDrainWorksWithTheBusDownAndIsReportedWhenItReturns) {
  auto a = start_agent();
  ASSERT_TRUE(wait_until([&] { return recorded_here(kAll); }));
  nats_.stop();
  auto reply = a->local("local.drain", {{"confirm", true}});
  ASSERT_TRUE(reply.is_object() && reply["ok"] == true) << reply << a->log();
  std::string id = reply["result"]["task"];
  EXPECT_EQ(reply["result"]["state"], "succeeded");

  nats_.start();
  ASSERT_TRUE(wait_until([&] { return bus_->kv_get("tasks", id).is_ok(); }, 20s)) << a->log();
  EXPECT_EQ(json::parse(bus_->kv_get("tasks", id)->value)["kind"], "local-drain");
  // The records could not say so while the bus was down: they do now, and nothing was restarted.
  ASSERT_TRUE(wait_until([&] { return record(kWeb).value("desired", "") == "stopped"; })) << a->log();
  ASSERT_TRUE(syncs_pass(*a));
  for (const auto& [uuid, v] : listed()) EXPECT_EQ(v["state"], "shutoff") << uuid;
  EXPECT_EQ(a->metric("nodeha_vm_restarts_total"), 0);
}

// What a stolen node-a credential could ask of the desk (docs/security.md): the server lets it
// publish only on ctl.node-a.> (BusAuth.AnAgentWritesOnlyItsOwnNodesVmRecordsAndSpeaksForItsOwnNode);
// here, what the controller refuses on that subject. Every refusal leaves node-b's record as it was.
TEST_F(Vms, TheDeskWritesOnlyWhatIsTheWritingNodes) {
  const std::string theirs = "0a000000-0000-4000-8000-0000000000dd";
  const json stored = {{"uuid", theirs}, {"name", "theirs"}, {"node", "node-b"}, {"generation", 4}, {"desired", "running"}};
  auto rev = bus_->kv_create("vms", theirs, stored.dump());
  ASSERT_TRUE(rev);
  answer_as("node-b", {{theirs, "running"}});
  auto write = [&](const json& w) { return ask("nodeha.ctl.node-a.vm.write", w.dump()); };
  auto code = [](const json& reply) { return reply["ok"] == false ? reply["error"]["code"].get<std::string>() : "ok"; };

  json rewritten = stored;
  rewritten["desired"] = "stopped";  // node-b's supervision would not restart it any more
  EXPECT_EQ(code(write({{"uuid", theirs}, {"revision", rev.value()}, {"record", rewritten}})), "not_yours");
  json moved = stored;
  moved["node"] = "node-c";
  moved["generation"] = 5;
  EXPECT_EQ(code(write({{"uuid", theirs}, {"revision", rev.value()}, {"record", moved}})), "not_yours");
  json claimed = stored;
  claimed["node"] = "node-a";
  claimed["generation"] = 5;
  auto refused = write({{"uuid", theirs}, {"revision", rev.value()}, {"record", claimed}});
  EXPECT_EQ(code(refused), "claim_refused");
  EXPECT_THAT(refused["error"]["message"].get<std::string>(), HasSubstr("running on node-b"));
  EXPECT_EQ(code(write({{"uuid", theirs}, {"revision", rev.value()}, {"remove", true}})), "not_yours");
  EXPECT_EQ(code(write({{"uuid", theirs}, {"revision", rev.value() - 1}, {"record", claimed}})), "conflict");
  EXPECT_EQ(code(write({{"uuid", theirs}, {"revision", rev.value()}})), "bad_value");
  EXPECT_EQ(code(write({{"uuid", "0a000000-0000-4000-8000-dd"}, {"revision", rev.value()}, {"record", claimed}})),
            "bad_value");
  auto other = ask("nodeha.ctl." + std::string(70, 'n') + ".vm.write",
                   json{{"uuid", theirs}, {"revision", rev.value()}, {"remove", true}}.dump());
  EXPECT_EQ(code(other), "bad_value");  // a subject whose node is no node id
  const std::string fresh = "0a000000-0000-4000-8000-0000000000de";
  json planted = {{"uuid", fresh}, {"name", "planted"}, {"node", "node-b"}, {"generation", 1}};
  EXPECT_EQ(code(write({{"uuid", fresh}, {"revision", 0}, {"record", planted}})), "not_yours");

  auto now = bus_->kv_get("vms", theirs);
  ASSERT_TRUE(now);
  EXPECT_EQ(now->revision, rev.value());
  EXPECT_FALSE(bus_->kv_get("vms", fresh));
  EXPECT_EQ(controller_->metric("nodeha_record_desk_refused_total"), 8);  // a conflict is no refusal

  // What is node-a's it writes: a new record of its own, then a change to it.
  planted["node"] = "node-a";
  auto created = write({{"uuid", fresh}, {"revision", 0}, {"record", planted}});
  ASSERT_EQ(code(created), "ok") << created;
  planted["desired"] = "stopped";
  auto changed = write({{"uuid", fresh}, {"revision", created["result"]["revision"]}, {"record", planted}});
  EXPECT_EQ(code(changed), "ok") << changed;
  EXPECT_EQ(record(fresh)["desired"], "stopped");
}

// A claim of a node that does not answer is taken (a live migration from a cut-off node lands
// so), and marked: the node it was taken from keeps a copy that still runs (sync_plan.h). The
// claimer's later writes cannot drop the mark.
TEST_F(Vms, AClaimNobodyContradictedIsMarkedAndTheMarkStays) {
  const std::string silent = "0a000000-0000-4000-8000-0000000000df";
  const json stored = {{"uuid", silent}, {"name", "silent"}, {"node", "node-s"}, {"generation", 2}};
  auto rev = bus_->kv_create("vms", silent, stored.dump());
  ASSERT_TRUE(rev);
  json claimed = stored;
  claimed["node"] = "node-a";
  claimed["generation"] = 3;
  auto taken = ask("nodeha.ctl.node-a.vm.write", json{{"uuid", silent}, {"revision", rev.value()}, {"record", claimed}}.dump());
  ASSERT_EQ(taken["ok"], true) << taken;
  EXPECT_EQ(record(silent)["claim"], (json{{"from", "node-s"}, {"answered", false}}));
  claimed["desired"] = "running";  // an owner's write without the mark
  auto kept = ask("nodeha.ctl.node-a.vm.write",
                  json{{"uuid", silent}, {"revision", taken["result"]["revision"]}, {"record", claimed}}.dump());
  ASSERT_EQ(kept["ok"], true) << kept;
  EXPECT_EQ(record(silent)["desired"], "running");
  EXPECT_EQ(record(silent)["claim"], (json{{"from", "node-s"}, {"answered", false}}));
}

TEST_F(Vms, ControllerListsTheRecords) {
  auto a = start_agent();
  ASSERT_TRUE(wait_until([&] { return recorded_here(kAll); }));
  const std::string other = "0a000000-0000-4000-8000-0000000000cc";
  ASSERT_TRUE(bus_->kv_create(
      "vms", other,
      json{{"uuid", other}, {"name", "aaa"}, {"node", "node-b"}, {"generation", 1}, {"xml", "<domain/>"}}.dump()));
  // node-b's record is only a record: node-a's agent has no such domain and leaves it alone.
  auto all = ask("nodeha.cmd.vm.list", "{}");
  ASSERT_EQ(all["ok"], true) << all;
  std::vector<std::string> order;
  for (const auto& v : all["result"]["vms"]) {
    order.push_back(v["node"].get<std::string>() + "/" + v["name"].get<std::string>());
    EXPECT_FALSE(v.contains("xml")) << v;
  }
  // By uuid, the order of its pages (the CLI shows them by node and name).
  EXPECT_THAT(order, ElementsAre("node-a/web-1", "node-a/db-1", "node-a/app-1", "node-a/batch-1", "node-a/idle-1",
                                 "node-b/aaa"));
  EXPECT_FALSE(all["result"].contains("next")) << "six records fit in one page";
  auto mine = ask("nodeha.cmd.vm.list", R"({"node":"node-b"})");
  ASSERT_EQ(mine["result"]["vms"].size(), 1u) << mine;
  EXPECT_EQ(ask("nodeha.cmd.vm.list", R"({"node":"node-zz"})")["error"]["code"], "unknown_node");
  EXPECT_EQ(ask("nodeha.cmd.vm.list", R"({"nodes":"node-a"})")["error"]["code"], "unknown_field");
  EXPECT_EQ(ask("nodeha.cmd.vm.list", R"({"node":"a.b"})")["error"]["code"], "bad_value");
}

// 12,000 VM records are several MiB, over nats-server's 1 MiB max_payload for one reply: vm.list
// answers in pages by uuid, each under the limit, every VM in exactly one page; the CLI asks for
// every page and shows them all, by node and name.
TEST_F(Vms, TwelveThousandRecordsComeInPagesAndTheCliShowsThemAll) {
  constexpr uint32_t kCount = 12000;
  const std::string xml = "<domain type='kvm'>" + std::string(900, ' ') + "</domain>";
  std::vector<std::string> uuids;
  for (uint32_t i = 0; i < kCount; ++i) {
    char uuid[37];
    // The uuid's order is not the node's and name's: the CLI's order must be its own.
    std::snprintf(uuid, sizeof uuid, "%08x-0000-4000-8000-%012x", i * 2654435761u, i);
    uuids.push_back(uuid);
    json record = {{"uuid", uuid},       {"name", "vm-" + std::to_string(i)}, {"node", "node-" + std::to_string(i % 40)},
                   {"state", "running"}, {"desired", "running"},              {"generation", 1},
                   {"vcpus", 2},         {"memory_mib", 2048},                {"local_disk", false},
                   {"xml", xml}};
    ASSERT_TRUE(bus_->kv_create("vms", uuid, record.dump())) << i;
  }
  std::sort(uuids.begin(), uuids.end());

  auto pages = list_pages(*bus_, "nodeha.cmd.vm.list", json::object(), "vms");
  ASSERT_TRUE(pages.ok) << pages.error;
  EXPECT_GT(pages.pages, 1);
  EXPECT_LT(pages.largest, 1u << 20);
  std::vector<std::string> listed_uuids;
  for (const auto& v : pages.items) listed_uuids.push_back(v["uuid"]);
  EXPECT_EQ(listed_uuids, uuids);  // each once, in uuid order

  // Past the last key: nothing, and no next. One node's VMs fit in a page.
  auto end = ask("nodeha.cmd.vm.list", json{{"after", uuids.back()}}.dump());
  EXPECT_EQ(end["result"]["vms"], json::array()) << end;
  EXPECT_FALSE(end["result"].contains("next"));
  auto one = ask("nodeha.cmd.vm.list", R"({"node":"node-7"})");
  EXPECT_EQ(one["result"]["vms"].size(), kCount / 40);
  EXPECT_EQ(ask("nodeha.cmd.vm.list", json{{"after", std::string(300, 'f')}}.dump())["error"]["code"], "bad_value");
  EXPECT_EQ(ask("nodeha.cmd.vm.list", R"({"after":7})")["error"]["code"], "bad_type");

  TempDir dir;
  auto cli = run_cli({"--server", nats_.url(), "--json", "vm", "list"}, dir);
  ASSERT_EQ(cli.status, 0) << cli.err;
  const auto doc = cli.doc();
  const auto& vms = doc["vms"];
  ASSERT_EQ(vms.size(), kCount) << cli.err;
  EXPECT_FALSE(doc.contains("next"));
  std::set<std::string> shown;
  for (size_t i = 0; i < vms.size(); ++i) {
    shown.insert(vms[i]["uuid"].get<std::string>());
    if (i == 0) continue;
    auto place = [&](size_t k) { return std::make_pair(vms[k]["node"].get<std::string>(), vms[k]["name"].get<std::string>()); };
    ASSERT_LT(place(i - 1), place(i)) << "not by node and name at " << i;
  }
  EXPECT_EQ(shown.size(), kCount);
  auto table = run_cli({"--server", nats_.url(), "vm", "list"}, dir);
  ASSERT_EQ(table.status, 0) << table.err;
  EXPECT_EQ(std::count(table.out.begin(), table.out.end(), '\n'), static_cast<long>(kCount + 1));  // a header, a line a VM
}

}  // namespace
}  // namespace nodeha::test
