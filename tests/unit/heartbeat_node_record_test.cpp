// The node record as the heartbeat plugin writes it: fields of others kept, writes only when
// something an operator reads changed.
#include "node_record.h"

#include <gtest/gtest.h>

#include <functional>
#include <map>

namespace nodeha::heartbeat {
namespace {

using json = nlohmann::json;

Heartbeat beat() {
  Heartbeat hb;
  hb.node = "node-a";
  hb.seq = 1;
  hb.boot_id = "b1";
  hb.interval_ms = 1000;
  hb.capacity = {16, 65536, 1000};
  hb.use = {4, 8192, 100, 2};
  hb.addresses = {{"management", "10.0.0.5"}};
  hb.checks = {{"netcheck", true, "ok"}};
  return hb;
}

TEST(NodeRecord, MergeKeepsWhatOthersOwn) {
  json record = {{"node", "node-a"}, {"management", "drained"}, {"lock", {{"task", "t1"}}}, {"monitor", "normal"}};
  auto merged = merge_record(record, {{"monitor", "unreachable"}, {"reason", "silent"}});
  EXPECT_EQ(merged["management"], "drained");
  EXPECT_EQ(merged["lock"]["task"], "t1");
  EXPECT_EQ(merged["monitor"], "unreachable");
  auto fresh = merge_record(json(), {{"node", "node-b"}});
  EXPECT_EQ(fresh["management"], "enabled");
  EXPECT_TRUE(fresh["lock"].is_null());
}

TEST(NodeRecord, ManagementOfAnUnreadableRecordIsEnabled) {
  EXPECT_EQ(management_of(json{{"management", "disabled"}}), ManagementState::Disabled);
  EXPECT_EQ(management_of(json{{"management", 3}}), ManagementState::Enabled);
  EXPECT_EQ(management_of(json()), ManagementState::Enabled);
}

TEST(NodeRecord, NeedsWriteOnlyForWhatOperatorsRead) {
  json written = {{"monitor", "normal"}, {"reason", ""}, {"boot_id", "b1"}, {"interval_ms", 1000},
                  {"checks", json::array()}, {"addresses", {{"management", "10.0.0.5"}}},
                  {"capacity", {{"vcpus", 16}, {"memory_mib", 65536}}}, {"use", {{"vcpus", 4}, {"memory_mib", 8192}}},
                  {"last_heartbeat", 1000}};
  auto fields = written;
  fields["last_heartbeat"] = 5000;
  EXPECT_FALSE(needs_write(written, fields, 60000));  // only time passed
  fields["last_heartbeat"] = 61000;
  EXPECT_TRUE(needs_write(written, fields, 60000));  // the periodic refresh is due
  fields = written;
  fields["use"]["memory_mib"] = 8192 + 3000;  // under 5 % of 65536
  EXPECT_FALSE(needs_write(written, fields, 60000));
  fields["use"]["memory_mib"] = 8192 + 4000;  // over 5 %
  EXPECT_TRUE(needs_write(written, fields, 60000));
  fields = written;
  fields["monitor"] = "error";
  EXPECT_TRUE(needs_write(written, fields, 60000));
  EXPECT_TRUE(needs_write(json(), written, 60000));  // never written
}

TEST(NodeRecord, HeartbeatChangesRecord) {
  Heartbeat prev = beat();
  EXPECT_TRUE(heartbeat_changes_record(nullptr, prev));
  Heartbeat next = beat();
  next.seq = 2;
  next.vms = {{"u1", "vm1", "running"}};  // the inventory is not part of the record
  EXPECT_FALSE(heartbeat_changes_record(&prev, next));
  next.use.memory_mib += 3000;  // under 5 % of 65536 MiB
  EXPECT_FALSE(heartbeat_changes_record(&prev, next));
  next.use.memory_mib += 1000;
  EXPECT_TRUE(heartbeat_changes_record(&prev, next));
  next = beat();
  next.checks[0].ok = false;
  EXPECT_TRUE(heartbeat_changes_record(&prev, next));
  next = beat();
  next.boot_id = "b2";
  EXPECT_TRUE(heartbeat_changes_record(&prev, next));
  next = beat();
  next.use.vms_running = 3;
  EXPECT_TRUE(heartbeat_changes_record(&prev, next));
}

TEST(NodeRecord, MovedBeyond) {
  EXPECT_FALSE(moved_beyond(100, 104, 100));
  EXPECT_TRUE(moved_beyond(100, 106, 100));
  EXPECT_TRUE(moved_beyond(0, 1, 0));  // nothing to compare with: any change counts
  EXPECT_FALSE(moved_beyond(5, 5, 0));
}

// Found by fuzz/node_record_fuzz.cpp: a record with fields of the wrong type made value() throw
// at controller start (restoring nodes) and when deciding a write.
TEST(NodeRecord, RecordsOfAnyShapeAreRead) {
  json odd = {{"management", 1}, {"monitor", true}, {"reason", 2}, {"boot_id", json::array()},
              {"interval_ms", "1s"}, {"last_heartbeat", "x"}, {"use", {{"vcpus", "many"}}}};
  KnownNode k = known_node("node-b", odd);
  EXPECT_EQ(k.id, "node-b");
  EXPECT_EQ(k.management, ManagementState::Enabled);
  EXPECT_EQ(k.monitor, MonitorState::Normal);
  EXPECT_EQ(k.reason, "");
  EXPECT_EQ(k.interval.count(), 0);
  EXPECT_EQ(known_node("node-b", json(5)).management, ManagementState::Enabled);
  NodeState n;
  n.id = "node-b";
  auto fields = monitor_fields(n, 1000);
  EXPECT_TRUE(needs_write(odd, fields, 60000));
}

// A bucket of node records with revisions, as JetStream keeps them; `meanwhile` runs before
// each write, where another writer (a drain, a command) may come in between.
struct FakeStore {
  std::map<std::string, StoredRecord> records;
  uint64_t last_revision = 0;
  int reads = 0, writes = 0;
  std::function<void()> meanwhile;
  Status read_failure;  // set: every read fails so

  void put(const std::string& node, const json& record) { records[node] = StoredRecord{record.dump(), ++last_revision}; }
  json record(const std::string& node) const { return json::parse(records.at(node).text); }

  RecordStore store() {
    return RecordStore{
        [this](const std::string& node) -> Result<StoredRecord> {
          ++reads;
          if (!read_failure.is_ok()) return read_failure;
          auto it = records.find(node);
          if (it == records.end()) return Status(NODEHA_ERR_NOT_FOUND, "no record");
          return it->second;
        },
        [this](const std::string& node, const std::string& text, uint64_t revision) -> Result<uint64_t> {
          if (meanwhile) meanwhile();
          ++writes;
          auto it = records.find(node);
          if (it == records.end() || it->second.revision != revision) return Status(NODEHA_ERR_CONFLICT, "wrong last sequence");
          it->second = StoredRecord{text, ++last_revision};
          return last_revision;
        },
        [this](const std::string& node, const std::string& text) -> Result<uint64_t> {
          if (meanwhile) meanwhile();
          ++writes;
          if (records.count(node)) return Status(NODEHA_ERR_CONFLICT, "key exists");
          records[node] = StoredRecord{text, ++last_revision};
          return last_revision;
        }};
  }
};

const json kFields = {{"node", "node-a"}, {"monitor", "normal"}, {"last_heartbeat", 1700000060000}};

TEST(NodeRecordWrite, ARecordAsWatchedIsUpdatedAtItsRevisionWithoutARead) {
  FakeStore kv;
  kv.put("node-a", {{"node", "node-a"}, {"management", "disabled"}, {"last_heartbeat", 1700000000000}});
  ASSERT_TRUE(write_record(kv.store(), "node-a", kFields, kv.records["node-a"]));
  EXPECT_EQ(kv.reads, 0);
  EXPECT_EQ(kv.writes, 1);
  EXPECT_EQ(kv.record("node-a")["last_heartbeat"], 1700000060000);
  EXPECT_EQ(kv.record("node-a")["management"], "disabled");
}

// The record changed after the watch delivered it: a drain locked the node and drained it. The
// update at the old revision is refused, the record read again, and the lock and management
// stay, with our fields laid over them.
TEST(NodeRecordWrite, AWriteInBetweenIsReadAgainAndKept) {
  FakeStore kv;
  kv.put("node-a", {{"node", "node-a"}, {"management", "enabled"}, {"lock", nullptr}, {"last_heartbeat", 1700000000000}});
  StoredRecord watched = kv.records["node-a"];
  kv.put("node-a", {{"node", "node-a"}, {"management", "drained"}, {"lock", {{"task", "t-9"}}}, {"last_heartbeat", 1700000000000}});
  ASSERT_TRUE(write_record(kv.store(), "node-a", kFields, watched));
  EXPECT_EQ(kv.reads, 1);
  EXPECT_EQ(kv.writes, 2);
  json r = kv.record("node-a");
  EXPECT_EQ(r["management"], "drained");
  EXPECT_EQ(r["lock"]["task"], "t-9");
  EXPECT_EQ(r["last_heartbeat"], 1700000060000);
  EXPECT_EQ(r["monitor"], "normal");
}

TEST(NodeRecordWrite, ANewNodeIsCreatedAndOneCreatedMeanwhileIsUpdated) {
  FakeStore kv;
  ASSERT_TRUE(write_record(kv.store(), "node-a", kFields, std::nullopt));
  EXPECT_EQ(kv.record("node-a")["management"], "enabled");  // a new record: management enabled, no lock
  EXPECT_TRUE(kv.record("node-a")["lock"].is_null());

  // Created by someone else between our read (none) and our create.
  FakeStore raced;
  raced.meanwhile = [&] {
    raced.meanwhile = nullptr;
    raced.put("node-a", {{"node", "node-a"}, {"management", "disabled"}});
  };
  ASSERT_TRUE(write_record(raced.store(), "node-a", kFields, std::nullopt));
  EXPECT_EQ(raced.record("node-a")["management"], "disabled");
  EXPECT_EQ(raced.record("node-a")["monitor"], "normal");
}

// Someone writes before every one of our writes: after 5 tries we give up (the plugin retries
// later), and never overwrite what the other writer wrote.
TEST(NodeRecordWrite, AlwaysRacedGivesUpAfterFiveTriesAndOverwritesNothing) {
  FakeStore kv;
  kv.put("node-a", {{"node", "node-a"}, {"management", "enabled"}});
  int other = 0;
  kv.meanwhile = [&] { kv.put("node-a", {{"node", "node-a"}, {"management", "disabled"}, {"other", ++other}}); };
  EXPECT_FALSE(write_record(kv.store(), "node-a", kFields, kv.records["node-a"]));
  EXPECT_EQ(kv.writes, 5);
  EXPECT_EQ(kv.record("node-a")["other"], 5);
  EXPECT_FALSE(kv.record("node-a").contains("monitor"));
}

TEST(NodeRecordWrite, AReadThatFailsWritesNothing) {
  FakeStore kv;
  kv.read_failure = Status(NODEHA_ERR_UNAVAILABLE, "not connected");
  EXPECT_FALSE(write_record(kv.store(), "node-a", kFields, std::nullopt));
  EXPECT_EQ(kv.writes, 0);
  EXPECT_TRUE(kv.records.empty());
}

}  // namespace
}  // namespace nodeha::heartbeat
