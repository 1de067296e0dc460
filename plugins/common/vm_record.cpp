#include "vm_record.h"

#include "record_desk.h"
#include "record_fields.h"

#include <chrono>

namespace nodeha::vm_record {
namespace {

// An agent writes through the controller's record desk (record_desk.h); a controller writes the
// bucket itself. Either way the write holds only if the record is still at `revision`.
Result<uint64_t> write(const Host& host, const std::string& uuid, const nlohmann::json& record, uint64_t revision) {
  if (host.is_agent()) return desk::send(host, desk::VmWrite{uuid, revision, record, false});
  return revision ? host.kv_update(kBucket, uuid, record.dump(), revision) : host.kv_create(kBucket, uuid, record.dump());
}

}  // namespace

int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

Result<nlohmann::json> modify(const Host& host, const std::string& uuid,
                              const std::function<bool(nlohmann::json& record)>& change, int attempts) {
  for (int attempt = 0; attempt < attempts; ++attempt) {
    auto cur = host.kv_get(kBucket, uuid);
    if (!cur && cur.status().code() != NODEHA_ERR_NOT_FOUND) return cur.status();
    nlohmann::json record = cur ? nlohmann::json::parse(cur->value, nullptr, false) : nlohmann::json();
    if (record.is_discarded()) record = nlohmann::json();
    if (!change(record)) return record;
    if (record.is_null()) return record;  // nothing to create
    auto written = write(host, uuid, record, cur ? cur->revision : 0);
    if (written) return record;
    if (written.status().code() != NODEHA_ERR_CONFLICT) return written.status();
    // Another writer won: read again and decide again on what it wrote.
  }
  return Status(NODEHA_ERR_CONFLICT, "the record of VM " + uuid + " kept changing under us; try again");
}

Result<nlohmann::json> move(const Host& host, const std::string& uuid, const std::string& node,
                            const std::string& desired) {
  bool missing = false;
  auto r = modify(host, uuid, [&](nlohmann::json& record) {
    missing = !record.is_object();
    if (missing) return false;
    bool changed = false;
    if (record.value("node", std::string()) != node) {
      record["node"] = node;
      record["generation"] = record.value("generation", int64_t{0}) + 1;
      record.erase("claim");  // a claim's mark is the record desk's, for this move only
      record.erase(kStranded);  // it runs elsewhere now
      changed = true;
    }
    if (!desired.empty() && record.value("desired", std::string()) != desired) {
      record["desired"] = desired;
      changed = true;
    }
    if (changed) record["updated"] = unix_ms();
    return changed;
  });
  if (r && missing) return Status(NODEHA_ERR_NOT_FOUND, "no record of VM " + uuid);
  return r;
}

nlohmann::json encode(const Stranded& s) {
  return {{"node", s.node}, {"task", s.task}, {"since", s.since}, {"reason", s.reason}};
}

std::optional<Stranded> stranded_of(const nlohmann::json& record) {
  const auto& mark = record::field(record, kStranded);
  std::string node = record::text(mark, "node");
  if (node.empty()) return std::nullopt;
  return Stranded{node, record::text(mark, "task"), record::integer(mark, "since", 0), record::text(mark, "reason")};
}

Result<bool> mark_stranded(const Host& host, const std::string& uuid, const Stranded& s) {
  bool marked = false;
  auto r = modify(host, uuid, [&](nlohmann::json& record) {
    marked = record::text(record, "node") == s.node;
    if (!marked) return false;  // moved, or gone, meanwhile: nothing left behind
    if (auto had = stranded_of(record); had && had->node == s.node) return false;
    record[kStranded] = encode(s);
    record["updated"] = unix_ms();
    return true;
  });
  if (!r) return r.status();
  return marked;
}

namespace {
// Sets one field of an existing record when it differs. NOT_FOUND when there is no record.
Result<nlohmann::json> set_field(const Host& host, const std::string& uuid, const char* field, const nlohmann::json& value) {
  bool missing = false;
  auto r = modify(host, uuid, [&](nlohmann::json& record) {
    missing = !record.is_object();
    if (missing || (record.contains(field) && record[field] == value)) return false;
    record[field] = value;
    record["updated"] = unix_ms();
    return true;
  });
  if (r && missing) return Status(NODEHA_ERR_NOT_FOUND, "no record of VM " + uuid);
  return r;
}
}  // namespace

Result<nlohmann::json> set_desired(const Host& host, const std::string& uuid, const std::string& desired) {
  return set_field(host, uuid, "desired", desired);
}

std::optional<int> ha_priority(const nlohmann::json& record) {
  const auto& v = record::field(record, kHa);
  if (!v.is_number_integer()) return std::nullopt;
  auto n = v.get<int64_t>();
  if (n < 0 || n > kMaxHa) return std::nullopt;
  return static_cast<int>(n);
}

Result<nlohmann::json> set_ha(const Host& host, const std::string& uuid, std::optional<int> priority) {
  return set_field(host, uuid, kHa, priority ? nlohmann::json(*priority) : nlohmann::json("off"));
}

Status remove_own(const Host& host, const std::string& uuid) {
  for (int attempt = 0; attempt < 8; ++attempt) {
    auto cur = host.kv_get(kBucket, uuid);
    if (!cur) return cur.status().code() == NODEHA_ERR_NOT_FOUND ? Status::ok() : cur.status();
    auto record = nlohmann::json::parse(cur->value, nullptr, false);
    if (!record.is_object() || !record.contains("node") || record["node"] != host.node_id()) return Status::ok();
    if (!host.is_agent()) return host.kv_delete(kBucket, uuid);
    auto removed = desk::send(host, desk::VmWrite{uuid, cur->revision, nullptr, true});
    if (removed || removed.status().code() != NODEHA_ERR_CONFLICT) return removed.status();
  }
  return Status(NODEHA_ERR_CONFLICT, "the record of VM " + uuid + " kept changing under us; try again");
}

std::map<std::string, std::string> listed_states(const nlohmann::json& result) {
  std::map<std::string, std::string> out;
  const auto& vms = record::field(result, "vms");
  if (!vms.is_array()) return out;
  for (const auto& v : vms)
    if (std::string uuid = record::text(v, "uuid"); !uuid.empty()) out[uuid] = record::text(v, "state", "defined");
  return out;
}

nlohmann::json summary(const nlohmann::json& record) {
  nlohmann::json out = record;
  if (out.is_object()) out.erase("xml");
  return out;
}

}  // namespace nodeha::vm_record
