#include "task_view.h"

#include "format.h"
#include "table.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace nodeha::cli {

using nlohmann::json;

namespace {

const json& steps_of(const json& task) {
  static const json kNone = json::array();
  auto it = task.find("steps");
  return it != task.end() && it->is_array() ? *it : kNone;
}

bool step_final(const std::string& state) {
  return state == "succeeded" || state == "failed" || state == "skipped" || state == "cancelled";
}

// "120/256 MiB": both in the unit of the larger; one decimal below 10 of it.
std::string bytes_pair(int64_t done, int64_t total) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  done = std::max<int64_t>(done, 0), total = std::max<int64_t>(total, 0);
  double top = static_cast<double>(std::max(done, total)), scale = 1;
  size_t u = 0;
  while (top >= 1024 * scale && u + 1 < std::size(units)) scale *= 1024, ++u;
  double d = static_cast<double>(done) / scale, t = static_cast<double>(total) / scale;
  if (u == 0) return fmt::format("{}/{} B", done, total);
  return top / scale < 10 ? fmt::format("{:.1f}/{:.1f} {}", d, t, units[u]) : fmt::format("{:.0f}/{:.0f} {}", d, t, units[u]);
}

std::string step_progress(const json& step) {
  std::string state = str(step, "state");
  int64_t started = num(step, "started"), finished = num(step, "finished");
  if (step_final(state)) return started > 0 && finished >= started ? format_ms(finished - started) : "-";
  if (state != "running") return "-";
  const json& p = step.contains("progress") ? step["progress"] : json();
  std::string text = moved_text(p);
  int64_t total = num(p, "data_total"), done = num(p, "data_processed");
  if (text.empty() && total > 0)  // data_* alone: an agent from before memory and disk were apart
    text = fmt::format("{} of {} ({:.0f}%)", format_bytes(done), format_bytes(total),
                       std::floor(std::clamp(100.0 * static_cast<double>(done) / static_cast<double>(total), 0.0, 100.0)));
  if (text.empty()) return "-";
  std::string left = time_left_text(p);
  return left.empty() ? text : text + " · " + left;
}

std::string step_detail(const json& step) {
  std::string error = str(step, "error");
  return or_dash(error.empty() ? str(step, "reason") : error);
}

struct Counts {
  size_t succeeded = 0, failed = 0, skipped = 0, cancelled = 0, waiting = 0, running = 0, done = 0, total = 0;
};

Counts count(const json& task) {
  Counts c;
  for (const auto& s : steps_of(task)) {
    std::string state = str(s, "state");
    ++c.total;
    if (step_final(state)) ++c.done;
    if (state == "succeeded") ++c.succeeded;
    else if (state == "failed") ++c.failed;
    else if (state == "skipped") ++c.skipped;
    else if (state == "cancelled") ++c.cancelled;
    else if (state == "waiting") ++c.waiting;
    else if (state == "running") ++c.running;
  }
  return c;
}

}  // namespace

std::string moved_text(const json& progress) {
  int64_t disk = num(progress, "disk_total"), memory = num(progress, "memory_total");
  std::string out;
  if (disk > 0) out = "disk " + bytes_pair(num(progress, "disk_processed"), disk);
  if (memory > 0) out += (out.empty() ? "mem " : " · mem ") + bytes_pair(num(progress, "memory_processed"), memory);
  return out;
}

std::string time_left_text(const json& progress) {
  if (!progress.is_object() || !progress.contains("time_remaining_ms") || !progress["time_remaining_ms"].is_number())
    return "";  // null: unknown
  int64_t ms = num(progress, "time_remaining_ms");
  if (ms < 0) return "";
  if (ms < 1000) return "<1 s left";
  int64_t s = ms / 1000 + (ms % 1000 != 0);
  if (s < 120) return fmt::format("~{} s left", s);
  int64_t min = (s + 30) / 60;
  if (min < 120) return fmt::format("~{} min left", min);
  return fmt::format("~{} h left", (min + 30) / 60);
}

std::string task_title(const json& task) {
  std::string kind = str(task, "kind");
  if (kind == "migrate") kind = "migration";
  else if (kind == "local-migrate") kind = "local migration";
  else if (kind == "local-drain") kind = "local drain";
  else if (kind == "recover") kind = "automatic recovery";
  return fmt::format("{} of {}", or_dash(kind), or_dash(str(task, "node")));
}

bool task_final(const std::string& state) { return state == "succeeded" || state == "failed" || state == "partial"; }

std::vector<std::string> plan_lines(const json& plan) {
  Table table({"VM", "NAME", "ACTION", "TARGET", "WHY"});
  for (const auto& e : plan)
    table.add({str(e, "vm"), or_dash(str(e, "name")), str(e, "action"), or_dash(str(e, "target")), or_dash(str(e, "reason"))});
  return table.lines();
}

std::vector<std::string> step_lines(const json& task, size_t max_steps) {
  const json& steps = steps_of(task);
  bool final = task_final(str(task, "state"));
  std::vector<const json*> shown;
  for (const auto& s : steps) shown.push_back(&s);
  if (shown.size() > max_steps)  // what still moves first; the order of the task otherwise
    std::stable_partition(shown.begin(), shown.end(), [](const json* s) { return !step_final(str(*s, "state")); });
  size_t hidden = shown.size() > max_steps ? shown.size() - max_steps : 0;
  shown.resize(shown.size() - hidden);
  Table table({"VM", "NAME", "TARGET", final ? "RESULT" : "STATE", final ? "DURATION" : "PROGRESS", "DETAIL"});
  for (const json* s : shown)
    table.add({str(*s, "vm"), or_dash(str(*s, "name")), or_dash(str(*s, "target")), str(*s, "state"), step_progress(*s),
               step_detail(*s)});
  auto lines = table.lines();
  if (hidden) lines.push_back(fmt::format("... and {} more step{}", hidden, hidden == 1 ? "" : "s"));
  return lines;
}

std::vector<std::string> progress_lines(const json& task, size_t max_steps) {
  Counts c = count(task);
  std::string extra;
  if (c.running) extra += fmt::format(", {} running", c.running);
  if (c.waiting) extra += fmt::format(", {} waiting", c.waiting);
  if (c.failed) extra += fmt::format(", {} failed", c.failed);
  if (flag(task, "cancel_requested")) extra += ", cancel requested";
  std::vector<std::string> lines{fmt::format("{} (task {}): {}, {}/{} steps done{}", task_title(task), str(task, "id"),
                                             str(task, "state"), c.done, c.total, extra)};
  for (auto& l : step_lines(task, max_steps)) lines.push_back(std::move(l));
  return lines;
}

std::vector<std::string> summary_lines(const json& task) {
  Counts c = count(task);
  std::string state = str(task, "state");
  int64_t started = num(task, "started"), finished = num(task, "finished");
  std::string took = started > 0 && finished >= started ? " in " + format_ms(finished - started) : "";
  std::string cancelled = c.cancelled ? fmt::format(", {} cancelled", c.cancelled) : "";
  std::vector<std::string> lines{fmt::format("{} (task {}): {}{} ({} succeeded, {} failed, {} skipped{})", task_title(task),
                                             str(task, "id"), coloured(state, state), took, c.succeeded, c.failed,
                                             c.skipped, cancelled)};
  if (!str(task, "error").empty()) lines.push_back("error: " + str(task, "error"));
  for (auto& l : step_lines(task)) lines.push_back(std::move(l));
  if (state == "failed" || state == "partial")
    lines.push_back("Each failed step says why; fix that and run the command again for what is left.");
  return lines;
}

int exit_of_task(const json& task) { return str(task, "state") == "succeeded" ? 0 : 1; }

std::vector<std::string> ChangeLog::update(const json& task) {
  std::vector<std::string> out;
  if (!started_) {
    started_ = true;
    out.push_back(fmt::format("{} (task {}): {}, {}", task_title(task), str(task, "id"), str(task, "state"),
                              plural(steps_of(task).size(), "step")));
  }
  for (const auto& s : steps_of(task)) {
    std::string vm = str(s, "vm"), state = str(s, "state"), said;
    if (step_final(state) || state == "waiting") said = state + (step_detail(s) == "-" ? "" : ": " + step_detail(s));
    else if (state == "running" && !printed_.count(vm)) said = "running";
    if (said.empty() || printed_[vm] == said) continue;
    printed_[vm] = said;
    std::string target = str(s, "target");
    out.push_back(fmt::format("  {} {}{}: {}", or_dash(str(s, "name")), vm, target.empty() ? "" : " -> " + target, said));
  }
  return out;
}

}  // namespace nodeha::cli
