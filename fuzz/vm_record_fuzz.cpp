// A record of the `vms` bucket, through every pure reader of it: the vms agent's inventory sync
// (whose is the domain, what changed, restart or not), the scheduler's view, and listings.
#include "record_readers.h"
#include "sync_plan.h"
#include "vm_record.h"

using namespace nodeha;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nlohmann::json record = fuzz::parse_record(data, size);

  fuzz::place_with(nullptr, &record);
  (void)vm_record::summary(record);

  vms::Domain d;
  d.uuid = "vm-2";
  d.name = "web-2";
  d.state = 5;  // shut off
  d.vcpus = 2;
  d.memory_mib = 2048;
  (void)vms::owner_changes(record, d);
  (void)vms::needs_restart(record, d);
  for (bool first : {true, false}) {
    vms::SyncInput in;
    in.node = "node-a";
    in.first = first;
    in.domains[d.uuid] = d;
    in.records[d.uuid] = record;
    in.records["vm-9"] = record;  // a record whose domain is not here
    in.owned = {"vm-2"};
    in.seen = {"vm-9"};
    for (const auto& uuid : vms::needs_owner_view(in)) in.owners[uuid] = vms::OwnerView::Unknown;
    (void)vms::plan_sync(in);
  }
  return 0;
}
