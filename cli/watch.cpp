#include "watch.h"

#include "table.h"
#include "task_view.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <iostream>

namespace nodeha::cli {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

// The live view on a terminal: each update replaces the previous one (cursor up, clear to the
// end of the screen), its lines cut to the terminal's width so that none wraps.
class LiveView {
 public:
  LiveView() {
    winsize ws{};
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
      cols_ = ws.ws_col;
      rows_ = ws.ws_row;
    }
  }
  void show(const json& task) {
    auto lines = progress_lines(task, rows_ > 8 ? rows_ - 4 : 4);
    clear();
    for (auto& l : lines) std::cout << cut_to_width(l, cols_ - 1) << '\n';
    shown_ = lines.size();
    std::cout.flush();
  }
  void clear() {
    if (shown_) std::cout << "\033[" << shown_ << "A\r\033[J";
    shown_ = 0;
  }

 private:
  size_t cols_ = 80, rows_ = 24, shown_ = 0;
};

}  // namespace

Controller::Outcome fetch_task(Controller& controller, const std::string& id, Controller::Report report) {
  auto first = controller.call("task.show", {{"task", id}}, report);
  if (!first.ok()) return first;
  json& task = first.result;
  // Pages while the steps come in parts, each further on than the last; a page that fails ends it
  // (reported by call). The head is the first page's: steps read later may be a moment newer.
  uint64_t last = 0;
  while (task.contains("next_chunk") && task["next_chunk"].is_number_unsigned() && task["next_chunk"].get<uint64_t>() > last &&
         task["steps"].is_array()) {
    last = task["next_chunk"].get<uint64_t>();
    task.erase("next_chunk");
    auto page = controller.call("task.show", {{"task", id}, {"chunk", last}}, report);
    if (!page.ok()) return page;
    if (page.result.contains("steps") && page.result["steps"].is_array())
      for (auto& s : page.result["steps"]) task["steps"].push_back(std::move(s));
    if (page.result.contains("next_chunk")) task["next_chunk"] = page.result["next_chunk"];
  }
  task.erase("next_chunk");
  return first;
}

std::string apply_event(const std::string& data, const std::string& id, json* task) {
  json j = json::parse(data, nullptr, false);
  if (!j.is_object() || j.value("id", "") != id) return "";
  if (j.value("updated", int64_t{0}) < task->value("updated", int64_t{0})) return "";
  std::string event = j.value("event", "");
  json steps = task->contains("steps") ? std::move((*task)["steps"]) : json::array();
  if (j.contains("steps") && j["steps"].is_array()) steps = std::move(j["steps"]);  // a record with its steps inline
  // A chunk of steps (its index and the head's chunk size place it): laid over the steps held.
  const json chunk = j.value("chunk", json());
  const int64_t size = j.value("chunk_steps", int64_t{0});
  if (chunk.is_object() && chunk.value("chunk", int64_t{-1}) >= 0 && size > 0 && chunk.contains("steps") &&
      chunk["steps"].is_array() && steps.is_array()) {
    size_t at = static_cast<size_t>(chunk["chunk"].get<int64_t>() * size);
    for (const auto& s : chunk["steps"]) {
      if (at < steps.size()) steps[at] = s;
      else if (at == steps.size()) steps.push_back(s);
      ++at;
    }
  }
  for (const char* k : {"event", "chunk"}) j.erase(k);
  j["steps"] = std::move(steps);
  *task = std::move(j);
  return event;
}

int watch_task(Controller& controller, const std::string& id, json* final) {
  const bool quiet = controller.globals().json;
  const bool live = !quiet && isatty(STDOUT_FILENO);
  // Subscribed before the record is read once: no change falls between the two.
  auto events = controller.subscribe("evt.task." + id);
  if (!events) return kExitUnreachable;
  auto first = fetch_task(controller, id);
  if (!first.ok()) return first.exit;
  json task = first.result;
  LiveView view;
  ChangeLog log;
  bool partial = false;
  for (;;) {
    if (live) view.show(task);
    else if (!quiet)
      for (const auto& l : log.update(task)) std::cout << l << '\n' << std::flush;
    // Final, unless chunks of the change that made it so are still to come.
    if (task_final(task.value("state", "")) && !partial) break;
    if (auto data = events->next(2s)) {
      if (auto event = apply_event(*data, id, &task); !event.empty()) partial = event == "steps";
    } else {
      // Quiet for a while: read the record again, in case an event was lost (a NATS reconnect).
      auto again = fetch_task(controller, id, Controller::kQuiet);
      if (again.ok() && again.result.value("updated", int64_t{0}) >= task.value("updated", int64_t{0})) {
        task = again.result;
        partial = false;  // the whole record
      }
    }
  }
  if (live) view.clear();
  if (!quiet)
    for (const auto& l : summary_lines(task)) std::cout << l << '\n';
  *final = task;
  return exit_of_task(task);
}

}  // namespace nodeha::cli
