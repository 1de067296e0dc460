#include "node_record.h"

#include "record_fields.h"

#include <cmath>

namespace nodeha::heartbeat {

nlohmann::json monitor_fields(const NodeState& n, int64_t last_heartbeat_unix_ms) {
  nlohmann::json f = {{"node", n.id},
                      {"monitor", to_string(n.monitor)},
                      {"reason", n.reason},
                      {"boot_id", n.boot_id},
                      {"last_heartbeat", last_heartbeat_unix_ms},
                      {"interval_ms", n.interval.count()}};
  nlohmann::json checks = nlohmann::json::array();
  for (const auto& c : n.checks) checks.push_back({{"name", c.name}, {"ok", c.ok}, {"detail", c.detail}});
  f["checks"] = checks;
  if (n.heartbeat) f.update(heartbeat_fields(*n.heartbeat));
  return f;
}

nlohmann::json heartbeat_fields(const Heartbeat& hb) {
  return {{"capacity", {{"vcpus", hb.capacity.vcpus}, {"memory_mib", hb.capacity.memory_mib}, {"disk_gib", hb.capacity.disk_gib}}},
          {"use",
           {{"vcpus", hb.use.vcpus},
            {"memory_mib", hb.use.memory_mib},
            {"disk_gib", hb.use.disk_gib},
            {"vms_running", hb.use.vms_running}}},
          {"addresses", hb.addresses}};
}

nlohmann::json merge_record(const nlohmann::json& record, const nlohmann::json& fields) {
  nlohmann::json out = record.is_object() ? record : nlohmann::json::object();
  if (!out.contains("management")) out["management"] = "enabled";
  if (!out.contains("lock")) out["lock"] = nullptr;
  for (auto it = fields.begin(); it != fields.end(); ++it) out[it.key()] = it.value();
  return out;
}

bool write_record(const RecordStore& store, const std::string& node, const nlohmann::json& fields,
                  std::optional<StoredRecord> base) {
  std::optional<StoredRecord> cur = std::move(base);
  for (int attempt = 0; attempt < 5; ++attempt) {
    if (attempt > 0 || !cur) {
      auto read = store.get(node);
      if (!read && read.status().code() != NODEHA_ERR_NOT_FOUND) return false;
      cur = read ? std::optional(std::move(read.value())) : std::nullopt;
    }
    nlohmann::json record = cur ? nlohmann::json::parse(cur->text, nullptr, false) : nlohmann::json::object();
    std::string text = merge_record(record, fields).dump();
    auto written = cur ? store.update(node, text, cur->revision) : store.create(node, text);
    if (written) return true;
    if (written.status().code() != NODEHA_ERR_CONFLICT) return false;
  }
  return false;
}

bool moved_beyond(double before, double after, double total, double share) {
  double delta = std::fabs(after - before);
  return total <= 0 ? delta > 0 : delta > share * total;
}

bool heartbeat_changes_record(const Heartbeat* previous, const Heartbeat& next, double share) {
  if (!previous) return true;
  const Heartbeat& p = *previous;
  if (p.boot_id != next.boot_id || p.interval_ms != next.interval_ms || !(p.capacity == next.capacity) ||
      p.addresses != next.addresses || p.checks != next.checks || p.use.vms_running != next.use.vms_running)
    return true;
  const Capacity& cap = next.capacity;
  return moved_beyond(p.use.vcpus, next.use.vcpus, cap.vcpus, share) ||
         moved_beyond(p.use.memory_mib, next.use.memory_mib, cap.memory_mib, share) ||
         moved_beyond(p.use.disk_gib, next.use.disk_gib, cap.disk_gib, share);
}

namespace {
bool moved(const nlohmann::json& a, const nlohmann::json& b, const nlohmann::json& capacity, double share) {
  if (!a.is_object() || !b.is_object()) return a != b;
  for (auto it = b.begin(); it != b.end(); ++it) {
    if (!a.contains(it.key())) return true;
    if (!it.value().is_number() || !a[it.key()].is_number()) {
      if (a[it.key()] != it.value()) return true;
      continue;
    }
    double total = capacity.is_object() && capacity.contains(it.key()) && capacity[it.key()].is_number()
                       ? capacity[it.key()].get<double>()
                       : 0;
    if (moved_beyond(a[it.key()].get<double>(), it.value().get<double>(), total, share)) return true;
  }
  return false;
}
}  // namespace

bool needs_write(const nlohmann::json& written, const nlohmann::json& fields, int64_t refresh_ms, double change_share) {
  if (!written.is_object()) return true;
  for (const char* key : {"monitor", "reason", "boot_id", "interval_ms", "checks", "addresses"}) {
    auto have = written.contains(key) ? written[key] : nlohmann::json();
    auto want = fields.contains(key) ? fields[key] : nlohmann::json();
    if (have != want) return true;
  }
  auto cap = fields.value("capacity", nlohmann::json());
  if (moved(written.value("capacity", nlohmann::json()), cap, cap, change_share)) return true;
  if (moved(written.value("use", nlohmann::json()), fields.value("use", nlohmann::json()), cap, change_share)) return true;
  return refresh_due(record::integer(written, "last_heartbeat", 0), record::integer(fields, "last_heartbeat", 0),
                     refresh_ms);
}

ManagementState management_of(const nlohmann::json& record) {
  if (record.is_object() && record.contains("management") && record["management"].is_string())
    if (auto m = parse_management_state(record["management"].get<std::string>())) return *m;
  return ManagementState::Enabled;
}

KnownNode known_node(const std::string& id, const nlohmann::json& record) {
  KnownNode k;
  k.id = id;
  k.management = management_of(record);
  k.monitor = parse_monitor_state(record::text(record, "monitor", "normal")).value_or(MonitorState::Normal);
  k.reason = record::text(record, "reason");
  k.boot_id = record::text(record, "boot_id");
  k.interval = milliseconds(record::integer(record, "interval_ms", 0));
  return k;
}

}  // namespace nodeha::heartbeat
