// The controller's record desks (plugins/common/record_desk.h): what an agent, or anyone holding
// an agent's credential, sends on ctl.<node>.vm.write and ctl.<node>.task.report. The first byte
// picks the desk; the rest is the request. A decoded vm write is judged against a stored record
// of its own node and of another (desk_rules.h); a decoded task report is checked as node-a's.
#include "desk_rules.h"
#include "fuzz_check.h"
#include "record_desk.h"
#include "record_fields.h"
#include "task_record.h"

using namespace nodeha;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view body = fuzz::as_text(data + 1, size - 1);
  if (data[0] % 2 == 0) {
    desk::VmWrite w;
    if (desk::decode(body, &w)) return 0;
    fuzz::require(w.remove == w.record.is_null(), "a write carries a record or removes");
    desk::VmWrite again;
    fuzz::require(!desk::decode(desk::encode(w), &again) && again.uuid == w.uuid && again.revision == w.revision &&
                      again.record == w.record && again.remove == w.remove,
                  "a decoded write encodes and decodes to itself");
    const nlohmann::json mine = {{"uuid", w.uuid}, {"node", "node-a"}, {"generation", 3}};
    const nlohmann::json theirs = {{"uuid", w.uuid}, {"node", "node-b"}, {"generation", 3}};
    for (const nlohmann::json* current : {&mine, &theirs}) {
      auto v = vms::judge("node-a", *current, w);
      if (v.kind == vms::DeskVerdict::Kind::Refuse) continue;
      // Whatever the desk lets node-a write leaves the VM on node-a, or moves node-a's own VM.
      bool own = (*current)["node"] == "node-a";
      fuzz::require(own || w.remove == false, "another node's record is never removed");
      fuzz::require(own || record::text(w.record, "node") == "node-a", "another node's record only moves to the writer");
    }
    (void)vms::judge("node-a", nlohmann::json(), w);
  } else {
    desk::TaskReport r;
    if (desk::decode(body, &r)) return 0;
    if (!task_record::check_local_report("node-a", r.task))
      fuzz::require(r.task["node"] == "node-a", "a stored local task is the reporting node's");
  }
  return 0;
}
