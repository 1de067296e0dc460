// The record desks' pure parts: what the controller writes of the vms bucket for a node's agent
// (desk_rules.h), which local tasks it stores for it (task_record::check_local_report), and the
// codec both sides share (record_desk.h).
#include "desk_rules.h"
#include "record_desk.h"
#include "task_record.h"
#include "vm_record.h"

#include <gtest/gtest.h>

namespace nodeha::vms {
namespace {

using json = nlohmann::json;
using Kind = DeskVerdict::Kind;

const std::string kVm = "0a000000-0000-4000-8000-000000000001";

json record(const std::string& node, int generation) {
  return {{"uuid", kVm}, {"name", "web-1"}, {"node", node}, {"generation", generation}, {"desired", "running"}};
}
desk::VmWrite put(json r) { return {kVm, 7, std::move(r), false}; }
std::string code(const DeskVerdict& v) { return v.kind == Kind::Refuse ? v.code : v.kind == Kind::Write ? "write" : "ask"; }

TEST(DeskRules, ANewRecordNamesTheWritingNodeAtGenerationOne) {
  EXPECT_EQ(code(judge("node-a", nullptr, put(record("node-a", 1)))), "write");
  EXPECT_EQ(code(judge("node-a", nullptr, put(record("node-b", 1)))), "not_yours");
  EXPECT_EQ(code(judge("node-a", nullptr, put(record("node-a", 3)))), "not_yours");
}

TEST(DeskRules, TheOwnerChangesItsRecordAndHandsItOnWithOneMoreGeneration) {
  auto changed = record("node-a", 3);
  changed["desired"] = "stopped";
  EXPECT_EQ(code(judge("node-a", record("node-a", 3), put(changed))), "write");
  EXPECT_EQ(code(judge("node-a", record("node-a", 3), put(record("node-a", 4)))), "bad_value");
  EXPECT_EQ(code(judge("node-a", record("node-a", 3), put(record("node-b", 4)))), "write");  // migrated away
  EXPECT_EQ(code(judge("node-a", record("node-a", 3), put(record("node-b", 3)))), "bad_value");
}

TEST(DeskRules, AnotherNodesRecordIsOnlyClaimedAndOnlyAfterItsNodeIsAsked) {
  auto v = judge("node-a", record("node-b", 3), put(record("node-a", 4)));
  EXPECT_EQ(code(v), "ask");
  EXPECT_EQ(v.owner, "node-b");
  auto rewritten = record("node-b", 3);
  rewritten["desired"] = "stopped";
  EXPECT_EQ(code(judge("node-a", record("node-b", 3), put(rewritten))), "not_yours");
  EXPECT_EQ(code(judge("node-a", record("node-b", 3), put(record("node-c", 4)))), "not_yours");
  EXPECT_EQ(code(judge("node-a", record("node-b", 3), put(record("node-a", 9)))), "bad_value");
  EXPECT_EQ(code(judge("node-a", record("", 2), put(record("node-a", 3)))), "write");  // named no node
}

TEST(DeskRules, OnlyTheOwnerRemovesAndAMalformedRecordIsRefused) {
  EXPECT_EQ(code(judge("node-a", record("node-a", 2), {kVm, 7, nullptr, true})), "write");
  EXPECT_EQ(code(judge("node-a", record("node-b", 2), {kVm, 7, nullptr, true})), "not_yours");
  EXPECT_EQ(code(judge("node-a", nullptr, {kVm, 7, nullptr, true})), "write");  // nothing to remove
  auto other_uuid = record("node-a", 1);
  other_uuid["uuid"] = "0a000000-0000-4000-8000-000000000002";
  EXPECT_EQ(code(judge("node-a", nullptr, put(other_uuid))), "bad_value");
  auto bad_node = record("node-a", 1);
  bad_node["node"] = "node.a";
  EXPECT_EQ(code(judge("node-a", nullptr, put(bad_node))), "bad_value");
  auto no_generation = record("node-a", 1);
  no_generation["generation"] = "1";
  EXPECT_EQ(code(judge("node-a", nullptr, put(no_generation))), "bad_value");
  EXPECT_EQ(code(judge("node-a", nullptr, put(json::array()))), "bad_value");
}

TEST(DeskRules, ARecordWhoseFieldsReadersWouldMisreadIsRefused) {
  for (auto [field, value] : {std::pair<const char*, json>{"name", 5}, {"desired", "maybe"}, {"vcpus", -1},
                              {"memory_mib", "64"}, {"local_disk", 1}, {"local_disks", {1}}, {"xml", json::object()},
                              {"group", std::string(300, 'g')}, {"updated", 1.5}}) {
    auto r = record("node-a", 1);
    r[field] = value;
    EXPECT_EQ(code(judge("node-a", nullptr, put(r))), "bad_value") << field;
  }
}

json stranded_record(const std::string& node, const std::string& state) {
  auto r = record(node, 1);
  r["state"] = state;
  r["stranded"] = vm_record::encode({node, "t1", 1700000000000, "has local disks"});
  return r;
}

// The stranded mark is the controller's (vm_record.h): no agent sets, keeps or clears it by what
// it writes; the write of the node it is stranded on, reporting the VM there, ends it.
TEST(DeskRules, OnlyTheStrandedNodesReportEndsTheMarkAndNoAgentSetsIt) {
  const auto current = stranded_record("node-a", "running");
  const json mark = current["stranded"];
  auto write = [&](const std::string& writer, const json& stored, json r) { return stranded_after(writer, stored, put(std::move(r))); };

  auto set_by_agent = record("node-a", 1);  // an agent's own mark is ignored: none is stored
  set_by_agent["stranded"] = mark;
  EXPECT_TRUE(write("node-a", record("node-a", 1), set_by_agent).is_null());
  EXPECT_TRUE(write("node-a", nullptr, set_by_agent).is_null());

  auto dropped = current;  // the owner writes without it while it reports the VM missing: kept
  dropped.erase("stranded");
  dropped["state"] = "missing";
  EXPECT_EQ(write("node-a", current, dropped), mark);
  dropped.erase("state");
  EXPECT_EQ(write("node-a", current, dropped), mark);
  auto forged = current;  // another mark in its place: the stored one stays
  forged["stranded"] = vm_record::encode({"node-b", "t9", 1, "x"});
  forged["state"] = "missing";
  EXPECT_EQ(write("node-a", current, forged), mark);

  for (const char* state : {"running", "shutoff", "paused"}) {  // the node is back and has it
    auto reported = current;
    reported["state"] = state;
    reported["stranded"] = nullptr;
    EXPECT_TRUE(write("node-a", current, reported).is_null()) << state;
  }
  EXPECT_TRUE(write("node-b", current, record("node-b", 2)).is_null());  // claimed: it runs on node-b
  EXPECT_TRUE(write("node-a", current, record("node-b", 2)).is_null());  // handed on by a migration
  EXPECT_TRUE(stranded_after("node-a", current, {kVm, 7, nullptr, true}).is_null());  // removed

  auto odd = current;  // a mark no reader could use is no mark
  odd["stranded"] = {{"task", "t1"}};
  EXPECT_TRUE(write("node-a", odd, dropped).is_null());
}

TEST(StrandedMark, RoundTripsAndReadsLeniently) {
  vm_record::Stranded s{"node-a", "t1", 1700000000000, "has local disks"};
  auto back = vm_record::stranded_of(json{{"stranded", vm_record::encode(s)}});
  ASSERT_TRUE(back);
  EXPECT_EQ(back->node, "node-a");
  EXPECT_EQ(back->task, "t1");
  EXPECT_EQ(back->since, 1700000000000);
  EXPECT_EQ(back->reason, "has local disks");
  for (const json& bad : {json(nullptr), json::array(), json{{"stranded", "node-a"}}, json{{"stranded", {{"node", 3}}}},
                          json{{"stranded", {{"node", ""}}}}})
    EXPECT_FALSE(vm_record::stranded_of(bad)) << bad;
  auto partial = vm_record::stranded_of(json{{"stranded", {{"node", "node-a"}, {"since", "soon"}}}});
  ASSERT_TRUE(partial);
  EXPECT_EQ(partial->since, 0);
}

// Replies come from other processes (an agent, or whoever holds its credential): read without
// trusting any field's type.
// A long error message is cut to kMaxDetailLength on a character boundary: the step or task that
// keeps it must still dump as JSON (a split "é" would make nlohmann's dump throw).
TEST(Envelope, ALongMessageIsCutWhereJsonStaysValid) {
  std::string long_text;
  for (int i = 0; i < 700; ++i) long_text += "é";  // 1,400 bytes, two per character
  json reply = {{"ok", false}, {"error", {{"code", "migration_failed"}, {"message", "x" + long_text}}}};
  auto e = command::parse_envelope(reply.dump());
  EXPECT_LE(e.message.size(), kMaxDetailLength);
  EXPECT_GE(e.message.size(), kMaxDetailLength - 1);
  json kept = {{"error", e.message}};
  EXPECT_NO_THROW((void)kept.dump());
  EXPECT_EQ(cut_text("é", 1), "") << "never half a character";
  EXPECT_EQ(cut_text("abc", 5), "abc");
}

TEST(Envelope, AnyBytesReadAsAReplyOrAsMalformed) {
  auto ok = command::parse_envelope(R"({"ok":true,"result":{"vms":[]}})");
  EXPECT_TRUE(ok.ok);
  EXPECT_FALSE(ok.malformed);
  EXPECT_TRUE(ok.result.contains("vms"));
  for (const char* bad : {R"({"ok":"yes"})", "[]", "", "nul", R"({"result":{}})", "{\"ok\":1}"}) {
    auto e = command::parse_envelope(bad);
    EXPECT_FALSE(e.ok) << bad;
    EXPECT_TRUE(e.malformed) << bad;
    EXPECT_EQ(e.code, "internal") << bad;
  }
  auto refused = command::parse_envelope(R"({"ok":false,"error":{"code":5,"message":["x"]}})");
  EXPECT_FALSE(refused.malformed);
  EXPECT_EQ(refused.code, "internal");
  EXPECT_EQ(refused.message, "");
  EXPECT_TRUE(command::parse_envelope(R"({"ok":true,"result":7})").result.empty());
  EXPECT_EQ(command::parse_envelope(R"({"ok":false,"error":{"code":"unavailable","message":"later"}})").code, "unavailable");

  EXPECT_TRUE(vm_record::listed_states(json::parse(R"({"vms":"all"})")).empty());
  auto states = vm_record::listed_states(json::parse(R"({"vms":[7,{"uuid":5},{"uuid":"a","state":1},{"uuid":"b","state":"running"}]})"));
  EXPECT_EQ(states, (std::map<std::string, std::string>{{"a", "defined"}, {"b", "running"}}));
}

TEST(DeskCodec, RoundTripsAndRefusesWhatIsNotOneWrite) {
  desk::VmWrite in{kVm, 12, record("node-a", 2), false}, out;
  ASSERT_FALSE(desk::decode(desk::encode(in), &out));
  EXPECT_EQ(out.uuid, kVm);
  EXPECT_EQ(out.revision, 12u);
  EXPECT_EQ(out.record, in.record);
  EXPECT_FALSE(out.remove);
  ASSERT_FALSE(desk::decode(desk::encode({kVm, 3, nullptr, true}), &out));
  EXPECT_TRUE(out.remove);
  for (const char* bad : {R"({"uuid":"x","revision":1,"remove":true})",
                          R"({"uuid":"0a000000-0000-4000-8000-000000000001","revision":-1,"remove":true})",
                          R"({"uuid":"0a000000-0000-4000-8000-000000000001","revision":1})",
                          R"({"uuid":"0a000000-0000-4000-8000-000000000001","revision":1,"remove":true,"record":{}})",
                          R"({"uuid":"0a000000-0000-4000-8000-000000000001","revision":1,"remove":true,"extra":1})", "[]"}) {
    desk::VmWrite w;
    EXPECT_TRUE(desk::decode(bad, &w)) << bad;
  }
}

TEST(DeskCodec, AVmEventNamesItsVmAndWhatHappened) {
  desk::VmEvent e;
  ASSERT_FALSE(desk::decode(desk::encode({kVm, {{"event", "restarted"}, {"reason", "crashed"}}}), &e));
  EXPECT_EQ(e.uuid, kVm);
  EXPECT_EQ(e.event["reason"], "crashed");
  for (const char* bad : {R"({"uuid":"x","event":{"event":"restarted"}})",
                          R"({"uuid":"0a000000-0000-4000-8000-000000000001","event":{"event":""}})",
                          R"({"uuid":"0a000000-0000-4000-8000-000000000001","event":{"event":5}})",
                          R"({"uuid":"0a000000-0000-4000-8000-000000000001","event":[]})",
                          R"({"uuid":"0a000000-0000-4000-8000-000000000001"})"})
    EXPECT_TRUE(desk::decode(bad, &e)) << bad;
}

TEST(DeskTasks, OnlyAFinishedLocalTaskOfTheNodeItself) {
  json t = task_record::make("00112233aabbccdd", "local-drain", "node-a", json::object(), "node-a", 1);
  t["state"] = "succeeded";
  EXPECT_FALSE(task_record::check_local_report("node-a", t));
  EXPECT_EQ(task_record::check_local_report("node-b", t)->code, "not_yours");
  for (auto [field, value] : {std::pair<const char*, json>{"kind", "drain"}, {"state", "running"}, {"id", "../x"},
                              {"steps", json::object()}, {"steps", {7}}, {"steps", {{{"state", 5}}}}, {"created", "now"}}) {
    json bad = t;
    bad[field] = value;
    EXPECT_EQ(task_record::check_local_report("node-a", bad)->code, "bad_value") << field;
  }
}

TEST(DeskTasks, ALocalMigrationsStepsCarryDiskAndMemoryFigures) {
  json t = task_record::make("00112233aabbccde", "local-migrate", "node-a", json::object(), "node-a", 1);
  t["state"] = "succeeded";
  json step = task_record::make_step(kVm, "db-1", "node-b");
  step["state"] = "succeeded";
  step["progress"] = {{"data_total", 320}, {"data_processed", 320}, {"data_remaining", 0},
                      {"memory_total", 64}, {"memory_processed", 64}, {"memory_remaining", 0},
                      {"disk_total", 256},  {"disk_processed", 256},  {"disk_remaining", 0},
                      {"time_remaining_ms", nullptr}};
  t["steps"].push_back(step);
  desk::TaskReport r;
  ASSERT_FALSE(desk::decode(desk::encode(desk::TaskReport{t}), &r));
  EXPECT_FALSE(task_record::check_local_report("node-a", r.task));
  EXPECT_EQ(r.task["steps"][0]["progress"]["disk_total"], 256);
}

}  // namespace
}  // namespace nodeha::vms
