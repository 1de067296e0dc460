// A record of the `nodes` bucket, through every pure reader of it: the heartbeat controller
// (restoring a node at start, following management, merging its own fields, deciding a write),
// the scheduler's view, the vms agent (drained?) and the lock a task holds on the node.
#include "node_record.h"
#include "record_readers.h"
#include "sync_plan.h"
#include "task_record.h"

using namespace nodeha;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nlohmann::json record = fuzz::parse_record(data, size);

  (void)heartbeat::management_of(record);
  (void)heartbeat::known_node("node-b", record);
  heartbeat::NodeState state;
  state.id = "node-b";
  auto fields = heartbeat::monitor_fields(state, 1700000000000);
  (void)heartbeat::needs_write(record, fields, 60000);
  auto merged = heartbeat::merge_record(record, fields);
  fuzz::require(merged.is_object() && merged["monitor"] == "normal", "a merged record carries the monitor's fields");

  fuzz::place_with(&record, nullptr);
  (void)vms::text(record, "management");
  if (record.is_object() && record.contains("lock") && record["lock"].is_object())
    (void)task_record::locked_message("node-b", record["lock"]);
  return 0;
}
