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

// Applies an event (the whole record plus "event") when it is not older than what we have.
void apply_event(const std::string& data, const std::string& id, json* task) {
  json j = json::parse(data, nullptr, false);
  if (!j.is_object() || j.value("id", "") != id) return;
  if (j.value("updated", int64_t{0}) < task->value("updated", int64_t{0})) return;
  j.erase("event");
  *task = std::move(j);
}

}  // namespace

int watch_task(Controller& controller, const std::string& id, json* final) {
  const bool quiet = controller.globals().json;
  const bool live = !quiet && isatty(STDOUT_FILENO);
  // Subscribed before the record is read once: no change falls between the two.
  auto events = controller.subscribe("evt.task." + id);
  if (!events) return kExitUnreachable;
  auto first = controller.call("task.show", {{"task", id}});
  if (!first.ok()) return first.exit;
  json task = first.result;
  LiveView view;
  ChangeLog log;
  for (;;) {
    if (live) view.show(task);
    else if (!quiet)
      for (const auto& l : log.update(task)) std::cout << l << '\n' << std::flush;
    if (task_final(task.value("state", ""))) break;
    if (auto data = events->next(2s)) {
      apply_event(*data, id, &task);
    } else {
      // Quiet for a while: read the record again, in case an event was lost (a NATS reconnect).
      auto again = controller.call("task.show", {{"task", id}}, Controller::kQuiet);
      if (again.ok() && again.result.value("updated", int64_t{0}) >= task.value("updated", int64_t{0})) task = again.result;
    }
  }
  if (live) view.clear();
  if (!quiet)
    for (const auto& l : summary_lines(task)) std::cout << l << '\n';
  *final = task;
  return exit_of_task(task);
}

}  // namespace nodeha::cli
