// Following a task to its end: events on `<prefix>.evt.task.<id>`, shown live on a terminal
// (redrawn in place) or as one line per change in a log, then the summary.
#pragma once

#include "controller.h"

#include <nlohmann/json.hpp>

#include <string>

namespace nodeha::cli {

// Task `id` with every step (docs/operations.md, task.show): a task whose steps do not fit in
// one reply is asked for again, page by page (`chunk`, while the reply names a `next_chunk`).
Controller::Outcome fetch_task(Controller& controller, const std::string& id,
                               Controller::Report report = Controller::kReport);

// Applies an event of evt.task.<id> (the task's head, with a chunk of its steps when they
// changed) to `*task` when it is not older than what it holds. Returns its `event` (`steps`: more
// chunks of the same change follow), or "" when it was not applied.
std::string apply_event(const std::string& data, const std::string& id, nlohmann::json* task);

// Follows task `id` until it is final and returns the exit code (exit_of_task, or the failure to
// reach the controller). With --json nothing is shown; `*final` gets the record as it ended.
int watch_task(Controller& controller, const std::string& id, nlohmann::json* final);

}  // namespace nodeha::cli
