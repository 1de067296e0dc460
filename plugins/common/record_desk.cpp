#include "record_desk.h"

#include "vm_record.h"

namespace nodeha::desk {
namespace {

using command::Error;
using command::Type;

// A record carries a domain's XML (vm.define takes up to kMaxDomainCommandBytes, and libvirt's
// inactive XML adds its defaults): twice that is more than NATS's default max_payload anyway.
constexpr size_t kMaxVmWriteBytes = 2 * kMaxDomainCommandBytes;
// A local task has one step per VM of the node.
constexpr size_t kMaxTaskReportBytes = kMaxBulkCommandBytes;
constexpr auto kAnswerWithin = Millis(5000);  // a claim makes the controller ask the owner (1 s)

// The controller's envelope as a Result: ok -> result; refused -> Status with "code: message".
Result<nlohmann::json> answer_of(const Result<std::string>& reply, const std::string& what) {
  if (!reply) {
    auto code = reply.status().code();
    return Status(code == NODEHA_ERR_NO_RESPONDERS || code == NODEHA_ERR_TIMEOUT ? NODEHA_ERR_UNAVAILABLE : code,
                  "no controller took " + what + ": " + reply.status().message());
  }
  auto e = command::parse_envelope(reply.value());
  if (e.malformed) return Status(NODEHA_ERR_INTERNAL, "the controller's answer to " + what + " is no reply envelope");
  if (e.ok) return std::move(e.result);
  if (e.code == kConflict) return Status(NODEHA_ERR_CONFLICT, e.message);
  if (e.code == command::kUnavailable) return Status(NODEHA_ERR_UNAVAILABLE, e.message);
  return Status(NODEHA_ERR_INVALID, e.code + ": " + e.message);
}

}  // namespace

std::string vm_write_subject(const Host& host, const std::string& node) {
  return host.subject("ctl." + node + ".vm.write");
}
std::string task_report_subject(const Host& host, const std::string& node) {
  return host.subject("ctl." + node + ".task.report");
}
std::string vm_event_subject(const Host& host, const std::string& node) { return host.subject("ctl." + node + ".vm.event"); }

std::optional<Error> node_of(const Host& host, const std::string& subject, std::string* node) {
  const std::string head = host.subject("ctl.");
  size_t end = subject.find('.', head.size());
  if (subject.rfind(head, 0) != 0 || end == std::string::npos)
    return Error{command::kBadValue, "not a desk subject: " + echo_value(subject)};
  std::optional<NodeId> id;
  if (auto e = command::parse_id("node", subject.substr(head.size(), end - head.size()), &id)) return e;
  *node = id->str();
  return std::nullopt;
}

std::string encode(const VmWrite& w) {
  nlohmann::json j = {{"uuid", w.uuid}, {"revision", w.revision}};
  if (w.remove)
    j["remove"] = true;
  else
    j["record"] = w.record;
  return j.dump();
}

std::optional<Error> decode(std::string_view body, VmWrite* out) {
  nlohmann::json j;
  if (auto e = command::decode(body,
                               {{"uuid", Type::String, true},
                                {"revision", Type::Integer, true},
                                {"record", Type::Object},
                                {"remove", Type::Bool}},
                               &j, kMaxVmWriteBytes))
    return e;
  std::optional<VmUuid> uuid;
  if (auto e = command::parse_id("uuid", j["uuid"], &uuid)) return e;
  if (!j["revision"].is_number_unsigned())  // JSON's non-negative integers read as unsigned
    return Error{command::kBadValue, "field \"revision\" must not be negative"};
  VmWrite w;
  w.uuid = uuid->str();
  w.revision = j["revision"].get<uint64_t>();
  w.remove = j.value("remove", false);
  if (w.remove == j.contains("record"))
    return Error{command::kBadValue, "give either \"record\" or \"remove\": true"};
  if (!w.remove) w.record = std::move(j["record"]);
  *out = std::move(w);
  return std::nullopt;
}

std::string encode(const VmEvent& e) { return nlohmann::json{{"uuid", e.uuid}, {"event", e.event}}.dump(); }

std::optional<Error> decode(std::string_view body, VmEvent* out) {
  nlohmann::json j;
  if (auto e = command::decode(body, {{"uuid", Type::String, true}, {"event", Type::Object, true}}, &j)) return e;
  std::optional<VmUuid> uuid;
  if (auto e = command::parse_id("uuid", j["uuid"], &uuid)) return e;
  const auto& kind = j["event"].contains("event") ? j["event"]["event"] : nlohmann::json();
  if (!kind.is_string() || kind.get_ref<const std::string&>().empty() || kind.get_ref<const std::string&>().size() > kMaxNameLength)
    return Error{command::kBadValue, "the event's \"event\" must be a name (a string of 1 to 256 bytes)"};
  out->uuid = uuid->str();
  out->event = std::move(j["event"]);
  return std::nullopt;
}

std::string encode(const TaskReport& r) { return nlohmann::json{{"task", r.task}}.dump(); }

std::optional<Error> decode(std::string_view body, TaskReport* out) {
  nlohmann::json j;
  if (auto e = command::decode(body, {{"task", Type::Object, true}}, &j, kMaxTaskReportBytes)) return e;
  out->task = std::move(j["task"]);
  return std::nullopt;
}

Status ensure_bucket(const Host& host, const std::string& bucket) {
  auto probe = host.kv_get(bucket, "nodeha-bucket-check");  // any key: the bucket is bound or made first
  return probe || probe.status().code() == NODEHA_ERR_NOT_FOUND ? Status::ok() : probe.status();
}

Result<uint64_t> send(const Host& host, const VmWrite& w) {
  std::string what = "the write of VM " + w.uuid + "'s record";
  auto answer = answer_of(host.request(vm_write_subject(host, host.node_id()), encode(w), kAnswerWithin), what);
  if (!answer) return answer.status();
  const auto& rev = answer->contains("revision") ? (*answer)["revision"] : nlohmann::json();
  if (!rev.is_number_unsigned()) return Status(NODEHA_ERR_INTERNAL, "the controller took " + what + " but gave no revision");
  return rev.get<uint64_t>();
}

void publish(const Host& host, const std::string& uuid, nlohmann::json event) {
  event["time"] = vm_record::unix_ms();
  (void)host.publish(vm_event_subject(host, host.node_id()), encode(VmEvent{uuid, std::move(event)}));
}

Status send(const Host& host, const TaskReport& r) {
  std::string id = r.task.is_object() && r.task.contains("id") && r.task["id"].is_string() ? r.task["id"].get<std::string>() : "?";
  auto answer = answer_of(host.request(task_report_subject(host, host.node_id()), encode(r), kAnswerWithin),
                          "the report of local task " + id);
  return answer ? Status::ok() : answer.status();
}

}  // namespace nodeha::desk
