#include "task_record.h"

#include "record_desk.h"
#include "record_fields.h"

#include <cinttypes>
#include <cstdio>
#include <ctime>
#include <random>

namespace nodeha::task_record {
using record::integer;
using record::text;

std::string new_id() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  char id[17];
  std::snprintf(id, sizeof id, "%016" PRIx64, static_cast<uint64_t>(rng()));
  return id;
}

nlohmann::json make(const std::string& id, const std::string& kind, const std::string& node,
                    const nlohmann::json& params, const std::string& owner, int64_t now_ms) {
  return {{"id", id},          {"kind", kind},         {"node", node},   {"params", params},
          {"state", "pending"}, {"created", now_ms},    {"started", 0},   {"finished", 0},
          {"updated", now_ms},  {"owner", owner},       {"cancel_requested", false},
          {"error", ""},        {"steps", nlohmann::json::array()}};
}

nlohmann::json make_step(const std::string& vm, const std::string& name, const nlohmann::json& target,
                         const std::string& skip_reason) {
  return {{"vm", vm},
          {"name", name},
          {"target", target},
          {"state", skip_reason.empty() ? "pending" : "skipped"},
          {"reason", skip_reason},
          {"error", ""},
          {"started", 0},
          {"finished", 0},
          {"progress", {{"data_total", 0}, {"data_processed", 0}, {"data_remaining", 0}}}};
}

bool task_final(const std::string& state) { return state == "succeeded" || state == "failed" || state == "partial"; }

bool step_final(const std::string& state) {
  return state == "succeeded" || state == "failed" || state == "skipped" || state == "cancelled";
}

std::optional<command::Error> check_local_report(const std::string& node, const nlohmann::json& task) {
  auto bad = [](std::string why) { return command::Error{command::kBadValue, "the local task " + why}; };
  if (auto id = TaskId::parse(text(task, "id")); !id) return bad("\"id\": " + id.status().message());
  const std::string kind = text(task, "kind");
  if (kind != "local-drain" && kind != "local-migrate")
    return bad("\"kind\" must be local-drain or local-migrate, not " + echo_value(kind));
  if (text(task, "node") != node)
    return command::Error{desk::kNotYours, "the local task names node " + echo_value(text(task, "node")) +
                                           "; the agent of " + node + " reports only its own"};
  if (!task_final(text(task, "state"))) return bad("is not finished (\"state\" " + echo_value(text(task, "state")) + ")");
  if (task.contains("steps") && !task["steps"].is_array()) return bad("\"steps\" must be an array");
  return std::nullopt;
}

std::string final_state(const nlohmann::json& task) {
  int succeeded = 0, unsuccessful = 0;
  auto steps = task.is_object() ? task.find("steps") : task.end();
  for (const auto& s : steps != task.end() && steps->is_array() ? *steps : nlohmann::json::array()) {
    std::string st = text(s, "state");
    if (st == "succeeded") ++succeeded;
    else if (st != "skipped") ++unsuccessful;  // failed, cancelled, or never finished
  }
  if (!text(task, "error").empty()) return succeeded ? "partial" : "failed";
  if (unsuccessful == 0) return "succeeded";
  return succeeded ? "partial" : "failed";
}

std::string locked_message(const std::string& node, const nlohmann::json& lock) {
  std::string id = text(lock, "task", "?");
  std::time_t since = integer(lock, "since") / 1000;
  char when[32] = "?";
  std::tm tm{};
  if (gmtime_r(&since, &tm)) std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return node + " is locked by task " + id + " (" + text(lock, "kind", "?") + ", running since " + when +
         "); wait for it or cancel it with `nodeha task cancel " + id + "`";
}

}  // namespace nodeha::task_record
