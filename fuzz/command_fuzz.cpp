// Every request a plugin decodes with command::decode: the controller's cmd.* subjects, the
// agents' agent.<node>.* subjects and the node-local local.* ones. The first byte picks the
// handler (the table below copies each handler's field list), the rest is the request body. What
// a handler decodes next from a decoded request is fuzzed after it: node ids, and the scheduler's
// placement request (cmd.sched.place, cmd.sched.hold) and its reply (read by the task engine), and a
// list's page key (`after`).
#include "command.h"
#include "fuzz_check.h"
#include "placement.h"
#include "plan_id.h"

#include <algorithm>
#include <iterator>
#include <span>
#include <vector>

using namespace nodeha;
using command::Field;
using command::Type;

namespace {

struct Handler {
  const char* subject;
  std::vector<Field> fields;
};

// Keep in step with the handlers (grep -rn "command::decode\|accept(m" plugins).
const Handler kHandlers[] = {
    {"cmd.node.list", {{"after", Type::String}, {"ages", Type::Bool}}},
    {"cmd.node.show", {{"node", Type::String, true}}},
    {"cmd.node.enable", {{"node", Type::String, true}}},
    {"cmd.node.drain", {{"node", Type::String, true}, {"dry_run", Type::Bool}, {"plan", Type::String}}},
    {"cmd.node.rebuild", {{"node", Type::String, true}, {"target", Type::String}, {"dry_run", Type::Bool}, {"plan", Type::String}}},
    {"cmd.node.migrate",
     {{"node", Type::String, true}, {"target", Type::String}, {"include_local_disk", Type::Bool}, {"vms", Type::Array},
      {"network", Type::String}, {"max_parallel", Type::Integer}, {"dry_run", Type::Bool}, {"plan", Type::String}}},
    {"cmd.node.maintenance",
     {{"node", Type::String, true}, {"include_local_disk", Type::Bool}, {"network", Type::String},
      {"max_parallel", Type::Integer}, {"dry_run", Type::Bool}, {"plan", Type::String}}},
    {"cmd.vm.list", {{"node", Type::String}, {"stranded", Type::Bool}, {"after", Type::String}}},
    {"cmd.task.list", {{"node", Type::String}, {"state", Type::String}, {"kind", Type::String}, {"after", Type::String}}},
    {"cmd.task.show", {{"task", Type::String, true}}},
    {"cmd.sched.place",
     {{"vms", Type::Array, true}, {"exclude", Type::Array}, {"target", Type::String}, {"policy", Type::String},
      {"groups", Type::Object}, {"reserve", Type::Number}, {"task", Type::String}}},
    {"cmd.sched.release", {{"task", Type::String, true}}},
    {"cmd.sched.place.reply", {}},  // the scheduler's reply, as the task engine reads it (parse_result)
    {"cmd.sched.hold", {{"task", Type::String, true}, {"reserve", Type::Number, true}, {"held", Type::Array, true}}},
    {"agent.vm.list", {}},
    {"agent.vm.define", {{"xml", Type::String, true}}},
    {"agent.vm.start", {{"uuid", Type::String, true}}},
    {"agent.vm.stop", {{"uuid", Type::String, true}, {"timeout_ms", Type::Integer}, {"force", Type::Bool}}},
    {"agent.drain", {{"timeout_ms", Type::Integer}, {"parallel", Type::Integer}}},
    {"agent.migrate.target", {{"network", Type::String, true}}},
    {"agent.vm.migrate",
     {{"uuid", Type::String, true}, {"task", Type::String}, {"dest_node", Type::String, true},
      {"dest_uri", Type::String, true}, {"migrate_uri", Type::String, true}, {"include_local_disk", Type::Bool, true},
      {"timeout_ms", Type::Integer}, {"stall_ms", Type::Integer}}},
    {"local.drain", {{"confirm", Type::Bool}, {"timeout_ms", Type::Integer}}},
    {"local.migrate",
     {{"interface", Type::String, true}, {"dest", Type::String, true}, {"all", Type::Bool}, {"vms", Type::Array},
      {"confirm", Type::Bool}, {"include_local_disk", Type::Bool}}},
    {"cmd.fence.ipmi", {{"node", Type::String, true}, {"timeout_ms", Type::Integer}}},
    {"cmd.vm.set_ha", {{"vm", Type::String, true}, {"ha", Type::StringOrInteger, true}}},
    {"cmd.node.fence_ack", {{"node", Type::String, true}, {"by", Type::String}}},
    {"cmd.node.recover", {{"node", Type::String, true}, {"cause", Type::String, true}}},
};

// command::decode keeps its promise: an object with only the declared fields, each of its type
// (so decoding it again gives it back), every required one present.
void check_decoded(const nlohmann::json& req, std::span<const Field> fields) {
  fuzz::require(req.is_object(), "a decoded request is an object");
  for (auto it = req.begin(); it != req.end(); ++it)
    fuzz::require(std::any_of(fields.begin(), fields.end(), [&](const Field& f) { return it.key() == f.name; }),
                  "a decoded request has only declared fields");
  for (const auto& f : fields) fuzz::require(!f.required || req.contains(f.name), "required fields are present");
  nlohmann::json again;
  fuzz::require(!command::decode_fields(req.dump(), fields, &again) && again == req, "a decoded request decodes again");
}

void check_placement(const Result<scheduler::PlacementRequest>& r) {
  if (!r) {
    fuzz::require(r.status().code() == NODEHA_ERR_INVALID, "a refused placement request is INVALID");
    return;
  }
  for (const auto& vm : r->vms)
    fuzz::require(!vm.uuid.empty() && vm.vcpus >= 1 && vm.memory_mib >= 1 && vm.disk_gib >= 0, "a decoded VM is sane");
  auto again = scheduler::decode_request(scheduler::encode_request(*r));
  fuzz::require(again.is_ok(), "an encoded placement request decodes");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const Handler& h = kHandlers[data[0] % std::size(kHandlers)];
  std::string_view body = fuzz::as_text(data + 1, size - 1);

  if (h.fields.empty() && std::string_view(h.subject) == "cmd.sched.place.reply") {
    if (auto result = scheduler::parse_result(body)) {
      auto again = scheduler::decode_result(scheduler::encode_result(*result));
      fuzz::require(again.is_ok() && *again == *result, "a placement result survives encode and decode");
    }
    return 0;
  }

  nlohmann::json req;
  if (auto e = command::decode_fields(body, h.fields, &req)) {
    fuzz::require(!e->code.empty() && !e->message.empty(), "a refusal has a code and a message");
    (void)command::fail(*e);
    return 0;
  }
  check_decoded(req, h.fields);
  // The id checks the handlers run next (command.h): a refusal names the field.
  std::optional<NodeId> node;
  if (req.contains("node"))
    if (auto e = command::parse_id("node", req["node"], &node)) fuzz::require(e->code == command::kBadValue, "a bad node id is bad_value");
  std::optional<PlanId> plan;
  if (req.contains("plan"))
    if (auto e = command::parse_id("plan", req["plan"], &plan)) fuzz::require(e->code == command::kBadValue, "a bad plan id is bad_value");
  std::optional<TaskId> task;
  if (req.contains("task"))
    if (auto e = command::parse_id("task", req["task"], &task)) fuzz::require(e->code == command::kBadValue, "a bad task id is bad_value");
  // A list's page key (command.h): taken up to its bound, else bad_value, never a throw.
  std::string after;
  if (auto e = command::page_after(req, &after)) fuzz::require(e->code == command::kBadValue, "a long after is bad_value");
  else fuzz::require(after.size() <= command::kMaxAfterBytes, "a taken after is within its bound");
  std::string_view subject = h.subject;
  if (subject == "cmd.sched.place") {
    req.erase("reserve");
    req.erase("task");
    check_placement(scheduler::decode_request(req));
  } else if (subject == "cmd.sched.hold") {
    for (const auto& group : req["held"])
      if (group.is_object() && group.contains("vms")) check_placement(scheduler::decode_request({{"vms", group["vms"]}}));
  }
  (void)command::ok(req);
  return 0;
}
