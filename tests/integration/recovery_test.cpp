// Automatic recovery on test-driver agents (plugins/recovery/): the `ha` priority and its command,
// the fence ladder's operator rung (ack), the recover task, and the budget. Power fencing through
// a BMC simulator and real QEMU guests: tests/integration/fence_ipmi_test.cpp and
// tests/system/recovery_test.cpp.
#include "operations_fixture.h"

namespace nodeha::test {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

class Recovery : public Operations {
 protected:
  // A controller with automatic recovery on, fenced by the operator's ack only.
  std::string recovery_config(const std::string& settings = "") const {
    return controller_config("[[plugin]]\nlibrary = \"rebuild\"\nparallel = 2\n"
                             "[[plugin]]\nlibrary = \"recovery\"\nenabled = true\nmax_auto_share = 0.5\n" +
                             settings + "[[plugin.fence]]\nmethod = \"ack\"\n");
  }
  CliRun cli(std::vector<std::string> args) {
    args.insert(args.begin(), {"--server", nats_.url()});
    return run_cli(args, files_);
  }
  json recovery(const std::string& node) { return node_record(node).value("recovery", json::object()); }
  bool all_on(const std::vector<Vm>& vms, const std::string& node) { return recorded(vms, node); }
};

TEST_F(Recovery, TheHaPriorityIsSetByCommandAndCheckedAndAgentsCannotChangeIt) {
  auto vms = vms_of(1, 2);
  HostProcess ctl(recovery_config());
  ASSERT_TRUE(ctl.wait_ready()) << ctl.log();
  auto a = start_agent("node-a", vms);
  ASSERT_TRUE(wait_until([&] { return normal("node-a") && recorded(vms, "node-a"); })) << ctl.log();

  auto set = cli({"vm", "set-ha", vms[0].uuid, "700"});
  EXPECT_EQ(set.status, 0) << set.err;
  EXPECT_THAT(set.out, HasSubstr("ha 700"));
  EXPECT_EQ(vm_record(vms[0].uuid)["ha"], 700);
  auto list = cli({"vm", "list"});
  EXPECT_THAT(list.out, HasSubstr(" HA "));
  EXPECT_THAT(list.out, HasSubstr("700"));

  for (const char* bad : {R"({"vm":"%s","ha":1001})", R"({"vm":"%s","ha":-1})", R"({"vm":"%s","ha":"on"})",
                          R"({"vm":"%s","ha":1.5})", R"({"vm":"%s"})", R"({"vm":"%s","ha":1,"x":1})"}) {
    char body[256];
    std::snprintf(body, sizeof body, bad, vms[0].uuid.c_str());
    std::string code = refusal("vm.set_ha", body);
    EXPECT_THAT(code, ::testing::AnyOf("bad_value", "bad_type", "missing_field", "unknown_field")) << body;
  }
  EXPECT_EQ(refusal("vm.set_ha", R"({"vm":"00000009-0000-4000-8000-000000000009","ha":1})"), "unknown_vm");
  EXPECT_EQ(refusal("vm.set_ha", R"({"vm":"not-a-uuid","ha":1})"), "bad_value");
  EXPECT_EQ(vm_record(vms[0].uuid)["ha"], 700);  // the refusals changed nothing

  // The agent rewrites its VMs' records (here: the VM stopped); the priority stays.
  ASSERT_TRUE(command("vm.set_ha", {{"vm", vms[1].uuid}, {"ha", "off"}})["ok"]);
  auto stop = bus_->request("nodeha.agent.node-a.vm.stop", json{{"uuid", vms[0].uuid}, {"force", true}}.dump(), 10s);
  ASSERT_TRUE(stop.is_ok());
  ASSERT_TRUE(wait_until([&] { return vm_record(vms[0].uuid).value("state", "") == "shutoff"; })) << a->log();
  EXPECT_EQ(vm_record(vms[0].uuid)["ha"], 700);
  EXPECT_EQ(vm_record(vms[1].uuid)["ha"], "off");
}

// Power loss of node-a, fenced by the operator: its HA VMs run elsewhere, highest priority first;
// the one with ha off and the one with a local disk stay, stopped, on node-a, which stays drained
// when it returns and removes its stale copies.
TEST_F(Recovery, AFencedNodesHaVmsRunElsewhereAndTheOthersStayDown) {
  auto vms = vms_of(1, 4, /*local=*/1);  // vm-1-0 has a local disk
  HostProcess ctl(recovery_config());
  ASSERT_TRUE(ctl.wait_ready()) << ctl.log();
  auto a = start_agent("node-a", vms);
  auto b = start_agent("node-b");
  auto c = start_agent("node-c");
  ASSERT_TRUE(wait_until([&] { return normal("node-a") && normal("node-b") && normal("node-c") && recorded(vms, "node-a"); }))
      << ctl.log();
  for (auto [i, ha] : std::vector<std::pair<int, json>>{{0, 10}, {1, 5}, {2, 100}, {3, "off"}})
    ASSERT_TRUE(command("vm.set_ha", {{"vm", vms[i].uuid}, {"ha", ha}})["ok"]);
  Invariant invariant(this, {"node-a", "node-b", "node-c"});

  // A reachable node is not off: no ack.
  EXPECT_EQ(refusal("node.fence_ack", R"({"node":"node-a"})"), "node_reachable");
  EXPECT_EQ(refusal("node.fence_ack", R"({"node":"node-a","by":"x\u0001"})"), "bad_value");
  EXPECT_FALSE(node_record("node-a").contains("fence"));

  a.reset();  // power loss
  ASSERT_TRUE(wait_until([&] { return recovery("node-a").value("state", "") == "fencing"; }, 15s)) << ctl.log();
  EXPECT_EQ(recovery("node-a")["method"], "ack");
  EXPECT_THAT(recovery("node-a")["reason"].get<std::string>(), HasSubstr("fence-ack node-a"));
  // Not fenced: nothing moves, the node is not even drained.
  EXPECT_TRUE(recorded(vms, "node-a"));
  EXPECT_EQ(node_record("node-a")["management"], "enabled");
  auto show = cli({"node", "show", "node-a"});
  EXPECT_THAT(show.out, HasSubstr("recovery"));
  EXPECT_THAT(show.out, HasSubstr("waiting for an operator"));

  auto no_yes = cli({"node", "fence-ack", "node-a"});
  EXPECT_EQ(no_yes.status, 2) << no_yes.out << no_yes.err;  // no terminal to confirm on: nothing done
  EXPECT_FALSE(node_record("node-a").contains("fence"));
  auto ack = cli({"node", "fence-ack", "node-a", "--yes"});
  ASSERT_EQ(ack.status, 0) << ack.out << ack.err;
  EXPECT_THAT(ack.out, HasSubstr("recovery of its HA VMs starts now"));

  ASSERT_TRUE(wait_until([&] { return recovery("node-a").value("state", "") == "recovered"; }, 20s))
      << node_record("node-a").dump(2) << ctl.log();
  json rec = node_record("node-a");
  EXPECT_EQ(rec["management"], "drained");
  EXPECT_EQ(rec["fence"]["method"], "ack");
  EXPECT_FALSE(rec["fence"]["by"].get<std::string>().empty());
  std::string id = rec["recovery"]["task"];
  json t = task(id);
  EXPECT_EQ(t["kind"], "recover");
  EXPECT_THAT(t["params"]["cause"].get<std::string>(), HasSubstr("fenced"));
  // Highest priority first; the others skipped with why.
  ASSERT_EQ(t["steps"].size(), 4u) << t.dump(2);
  EXPECT_EQ(t["steps"][0]["vm"], vms[2].uuid);
  EXPECT_EQ(t["steps"][1]["vm"], vms[0].uuid);
  EXPECT_EQ(t["steps"][1]["state"], "skipped");
  EXPECT_EQ(t["steps"][2]["vm"], vms[1].uuid);
  EXPECT_EQ(t["steps"][3]["vm"], vms[3].uuid);
  EXPECT_EQ(t["steps"][3]["state"], "skipped");
  EXPECT_THAT(t["steps"][3]["reason"].get<std::string>(), HasSubstr("ha off"));
  auto where = running_on({"node-b", "node-c"});
  for (int i : {1, 2}) {
    auto v = vm_record(vms[i].uuid);
    EXPECT_NE(v["node"], "node-a");
    EXPECT_EQ(v["generation"], 2);
    EXPECT_EQ(where[vms[i].uuid], std::set<std::string>{v["node"].get<std::string>()});
  }
  for (int i : {0, 3}) {
    EXPECT_EQ(vm_record(vms[i].uuid)["node"], "node-a");
    EXPECT_EQ(vm_record(vms[i].uuid)["stranded"]["node"], "node-a");
    EXPECT_FALSE(where.count(vms[i].uuid));
  }
  auto tasks = cli({"task", "list"});
  EXPECT_THAT(tasks.out, HasSubstr("recover (automatic)"));
  EXPECT_THAT(cli({"node", "show", "node-a"}).out, HasSubstr("fenced"));
  EXPECT_EQ(ctl.metric("nodeha_recoveries_total{result=\"succeeded\"}"), 1);
  // The node's history: the fence and each recovery state with its evidence, and the task's outcome.
  std::string history;
  EXPECT_TRUE(wait_until([&] { return (history = cli({"node", "history", "node-a"}).out).find("recover task " + id) != std::string::npos; }))
      << history;
  EXPECT_THAT(history, HasSubstr("fenced by ack: confirmed off by "));
  EXPECT_THAT(history, HasSubstr("recovery fencing: "));
  EXPECT_THAT(history, HasSubstr("recovery recovered: "));
  EXPECT_THAT(history, HasSubstr("drained by recover task " + id));

  // node-a returns with its domains running (the test driver's node file: as if the ack had been
  // wrong): the moved ones are stale copies, removed at once; the two others are their only copies
  // and are left as they are, on a node that stays drained; the priorities are kept.
  a = start_agent("node-a");
  ASSERT_TRUE(wait_until([&] { return normal("node-a") && a->metric("nodeha_stale_copies_removed_total") == 2; }))
      << a->log();
  EXPECT_EQ(node_record("node-a")["management"], "drained");
  // Asked until it answers: under load one list can outlast its 2 s.
  std::optional<std::map<std::string, std::string>> back;
  ASSERT_TRUE(wait_until([&] { return (back = listed("node-a")).has_value(); })) << a->log();
  EXPECT_EQ(back->size(), 2u);
  EXPECT_TRUE(back->count(vms[0].uuid) && back->count(vms[3].uuid));
  EXPECT_EQ(vm_record(vms[0].uuid)["ha"], 10);
  EXPECT_EQ(vm_record(vms[3].uuid)["ha"], "off");
  for (const auto& [uuid, nodes] : running_on({"node-a", "node-b", "node-c"})) EXPECT_EQ(nodes.size(), 1u) << uuid;
  EXPECT_THAT(invariant.finish(), IsEmpty());

  // Back in service: the fence and the recovery are history.
  ASSERT_TRUE(command("node.enable", {{"node", "node-a"}})["ok"]);
  EXPECT_TRUE(wait_until([&] { auto r = node_record("node-a"); return !r.contains("fence") && !r.contains("recovery"); }))
      << node_record("node-a").dump(2);
}

// Two of three nodes lost at once: more than the budget, so neither is fenced or recovered, and
// the gauge the alarm reads says why. An operator's ack recovers the one acknowledged.
TEST_F(Recovery, TheBudgetHoldsWhenManyNodesAreLostAtOnceAndAnAckRecoversOne) {
  auto va = vms_of(1, 2), vb = vms_of(2, 2);
  HostProcess ctl(recovery_config());
  ASSERT_TRUE(ctl.wait_ready()) << ctl.log();
  auto a = start_agent("node-a", va);
  auto b = start_agent("node-b", vb);
  auto c = start_agent("node-c");
  ASSERT_TRUE(wait_until([&] {
    return normal("node-a") && normal("node-b") && normal("node-c") && recorded(va, "node-a") && recorded(vb, "node-b");
  })) << ctl.log();
  for (const auto& v : va) ASSERT_TRUE(command("vm.set_ha", {{"vm", v.uuid}, {"ha", 1}})["ok"]);
  for (const auto& v : vb) ASSERT_TRUE(command("vm.set_ha", {{"vm", v.uuid}, {"ha", 1}})["ok"]);

  a.reset();
  b.reset();
  ASSERT_TRUE(wait_until([&] {
    return recovery("node-a").value("held", "") == "budget" && recovery("node-b").value("held", "") == "budget";
  }, 15s)) << node_record("node-a").dump(2) << node_record("node-b").dump(2) << ctl.log();
  EXPECT_THAT(recovery("node-a")["reason"].get<std::string>(), HasSubstr("2 of 3 nodes are unreachable or silent"));
  EXPECT_TRUE(wait_until([&] { return ctl.metric("nodeha_recovery_held_nodes{reason=\"budget\"}") == 2; })) << ctl.log();
  EXPECT_TRUE(recorded(va, "node-a"));
  EXPECT_TRUE(recorded(vb, "node-b"));
  EXPECT_FALSE(node_record("node-a").contains("fence"));
  EXPECT_EQ(node_record("node-a")["management"], "enabled");

  ASSERT_TRUE(command("node.fence_ack", {{"node", "node-a"}, {"by", "alice"}})["ok"]);
  ASSERT_TRUE(wait_until([&] { return recovery("node-a").value("state", "") == "recovered"; }, 20s))
      << node_record("node-a").dump(2) << ctl.log();
  EXPECT_EQ(node_record("node-a")["fence"]["by"], "alice");
  for (const auto& v : va) EXPECT_EQ(vm_record(v.uuid)["node"], "node-c");
  // node-a's recovery is over; node-b alone is unreachable, within the budget: it now waits for
  // its fence (ack), and nothing of it moved.
  ASSERT_TRUE(wait_until([&] { return recovery("node-b").value("state", "") == "fencing"; }, 10s))
      << node_record("node-b").dump(2);
  EXPECT_TRUE(wait_until([&] { return ctl.metric("nodeha_recovery_held_nodes{reason=\"budget\"}") == 0; }));
  EXPECT_TRUE(recorded(vb, "node-b"));
}

// The leader's lease desk (self-fencing, plugins/recovery/lease_desk.h): a renewal is answered
// with a grant; hostile ones, by anyone on the bus, are refused with the reason and change nothing.
TEST_F(Recovery, LeaseRenewalsAreCheckedThenGranted) {
  HostProcess ctl(recovery_config("fence_after = \"4s\"\nisolation_response = \"stop\"\n[[plugin.fence]]\nmethod = \"lease\"\n"));
  ASSERT_TRUE(ctl.wait_ready()) << ctl.log();
  auto a = start_agent("node-a");
  auto b = start_agent("node-b");
  ASSERT_TRUE(wait_until([&] { return normal("node-a") && normal("node-b"); })) << ctl.log();
  auto renew = [&](const std::string& subject_node, const std::string& body) {
    auto r = bus_->request("nodeha.ctl." + subject_node + ".lease", body, 10s);
    EXPECT_TRUE(r.is_ok()) << r.status().message();
    return r ? json::parse(r.value(), nullptr, false) : json();
  };
  auto code = [](const json& reply) { return reply.value("ok", true) ? "accepted" : reply["error"]["code"].get<std::string>(); };
  EXPECT_EQ(code(renew("node-a", "not json")), "bad_value");
  EXPECT_EQ(code(renew("node-a", R"({"node":"node-a","x":1})")), "bad_value");
  EXPECT_EQ(code(renew("node-a", R"({"node":"node-a","watchdog_ms":-1})")), "bad_value");
  EXPECT_EQ(code(renew("node-a", R"({"node":"node-b"})")), "bad_value");  // another node's lease
  EXPECT_EQ(code(renew("node-z", R"({"node":"node-z"})")), "unknown_node");
  auto refused = renew("node-a", R"({"node":"node-a","heard":[{"node":"node-a","any_first_ms":1,"any_last_ms":1}]})");
  EXPECT_THAT(refused["error"]["message"].get<std::string>(), HasSubstr("does not witness itself"));

  auto g1 = renew("node-a", R"({"node":"node-a","watchdog_ms":10000})");
  ASSERT_TRUE(g1.value("ok", false)) << g1;
  const json& grant = g1["result"];
  EXPECT_EQ(grant["fence_after_ms"], 4000);
  EXPECT_EQ(grant["response"], "stop");
  EXPECT_EQ(grant["self_fence"], true);
  EXPECT_EQ(grant["key"].get<std::string>().size(), 64u);
  ASSERT_TRUE(grant.contains("peers")) << grant;  // the agent held no peer list
  // The same peer list again: not sent; each grant has a new number.
  auto g2 = renew("node-a", json{{"node", "node-a"}, {"peers_rev", grant["peers_rev"]}, {"seq", grant["seq"]}}.dump());
  ASSERT_TRUE(g2.value("ok", false)) << g2;
  EXPECT_FALSE(g2["result"].contains("peers")) << g2;
  EXPECT_GT(g2["result"]["seq"].get<uint64_t>(), grant["seq"].get<uint64_t>());
  EXPECT_EQ(g2["result"]["key"], grant["key"]);
  EXPECT_TRUE(ctl.process().running());
}

// An agent killed and restarted within its lease goes on with that lease (kept in its state
// directory with its end on the monotonic clock): a restart during a partition must not make an
// ended lease look like none.
TEST_F(Recovery, ARestartedAgentGoesOnWithItsLease) {
  HostProcess ctl(recovery_config("fence_after = \"30s\"\n[[plugin.fence]]\nmethod = \"lease\"\n"));
  ASSERT_TRUE(ctl.wait_ready()) << ctl.log();
  const std::string config = test_agent_config("node-a", nodes_.path("node-a"), {nats_.url()}) +
                             "[[plugin]]\nlibrary = \"selffence\"\naddress = \"127.0.0.1\"\nport = 27480\n";
  std::string state = files_.file("node-a-state");
  std::filesystem::create_directories(state);
  auto a = std::make_unique<HostProcess>(config, std::vector<std::string>{}, "", state);
  ASSERT_TRUE(a->wait_ready()) << a->log();
  ASSERT_TRUE(wait_until([&] { return a->metric("nodeha_lease_valid") == 1; }, 15s)) << a->log() << ctl.log();
  a->process().signal(SIGKILL);
  a->process().wait_exit(10s);
  // Back without the controller: the lease it held is still valid, and it says so.
  ctl.process().signal(SIGSTOP);
  struct Resume {
    HostProcess& p;
    ~Resume() { p.process().signal(SIGCONT); }
  } resume{ctl};
  auto b = std::make_unique<HostProcess>(config, std::vector<std::string>{}, "", state);
  ASSERT_TRUE(b->wait_ready()) << b->log();
  EXPECT_THAT(b->log(), HasSubstr("lease of the previous process taken over: valid"));
  EXPECT_TRUE(wait_until([&] { return b->metric("nodeha_lease_valid") == 1; }, 5s)) << b->log();
}

// Self-fencing's late word (plugins/recovery/lease_desk.h; this test plays node-a's and node-b's
// lease clients on the bus). node-a, cut off, was heard by node-b while node-b's own lease had
// ended (or its leader held recovery): it may have kept its VMs, so the lease rung refuses and the
// recovery waits for the operator. node-a then fences itself after all and says so through node-b:
// its word, on its last grant, ends the wait, with no operator.
TEST_F(Recovery, ANodeThatFencesItselfAfterTheLeaseRungRefusedIsRecoveredOnItsWord) {
  auto va = vms_of(1, 2);
  HostProcess ctl(recovery_config("fence_after = \"1s\"\nlease_margin = \"0s\"\nisolation_response = \"stop\"\n"
                                  "[[plugin.fence]]\nmethod = \"lease\"\n"));
  ASSERT_TRUE(ctl.wait_ready()) << ctl.log();
  // node-a and node-b have a business address: each is the other's peer. node-c has none.
  auto witness_agent = [&](const std::string& node, const std::vector<Vm>& vms, const std::string& address) {
    std::string config = test_agent_config(node, nodes_.path(node, vms, 16384), {nats_.url()});
    const std::string at = "disk_path = \"/\"\n";
    config.replace(config.find(at), at.size(), at + "addresses = { business = \"" + address + "\" }\n");
    auto a = std::make_unique<HostProcess>(config);
    EXPECT_TRUE(a->wait_ready()) << a->log();
    return a;
  };
  auto a = witness_agent("node-a", va, "127.0.0.1");
  auto b = witness_agent("node-b", {}, "127.0.0.2");
  auto c = start_agent("node-c");
  ASSERT_TRUE(wait_until([&] { return normal("node-a") && normal("node-b") && normal("node-c") && recorded(va, "node-a"); }))
      << ctl.log();
  for (const auto& v : va) ASSERT_TRUE(command("vm.set_ha", {{"vm", v.uuid}, {"ha", 1}})["ok"]);

  auto renew = [&](const std::string& node, const json& heard) {
    json body = {{"node", node}, {"watchdog_ms", 1000}, {"incarnation", 7}, {"heard", heard}};
    auto r = bus_->request("nodeha.ctl." + node + ".lease", body.dump(), 10s);
    EXPECT_TRUE(r.is_ok()) << r.status().message();
    json reply = r ? json::parse(r.value(), nullptr, false) : json();
    EXPECT_TRUE(reply.value("ok", false)) << reply;
    return reply.value("result", json::object()).value("seq", uint64_t{0});
  };
  uint64_t seq = renew("node-a", json::array());
  ASSERT_NE(seq, 0u);
  auto cut = std::chrono::steady_clock::now();
  a.reset();
  // node-b hears node-a all along, its own lease ended: node-a may have kept its VMs.
  auto heard_by_b = [&](uint64_t fenced_seq) {
    int64_t age = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - cut).count() + 1000;
    json heard = {{"node", "node-a"}, {"any_first_ms", age}, {"any_last_ms", 0}, {"invalid_first_ms", age},
                  {"invalid_last_ms", 0}, {"fenced_seq", fenced_seq}};
    return json::array({heard});
  };
  ASSERT_TRUE(wait_until([&] {
    renew("node-b", heard_by_b(0));
    return recovery("node-a").value("method", "") == "ack";
  }, 30s)) << node_record("node-a").dump(2) << ctl.log();
  EXPECT_THAT(recovery("node-a")["reason"].get<std::string>(), HasSubstr("a peer whose own lease had ended heard it"));
  EXPECT_FALSE(node_record("node-a").contains("fence"));
  EXPECT_TRUE(recorded(va, "node-a"));

  // node-a fenced itself under its last grant and told node-b.
  ASSERT_TRUE(wait_until([&] {
    renew("node-b", heard_by_b(seq));
    return recovery("node-a").value("state", "") == "recovered";
  }, 20s)) << node_record("node-a").dump(2) << ctl.log();
  json fence = node_record("node-a")["fence"];
  EXPECT_EQ(fence["method"], "lease");
  EXPECT_THAT(fence["detail"].get<std::string>(), HasSubstr("said so to its peers"));
  for (const auto& v : va) EXPECT_NE(vm_record(v.uuid)["node"], "node-a");
  EXPECT_TRUE(ctl.process().running());
}

}  // namespace
}  // namespace nodeha::test
