// Following a task to its end: events on `<prefix>.evt.task.<id>`, shown live on a terminal
// (redrawn in place) or as one line per change in a log, then the summary.
#pragma once

#include "controller.h"

#include <nlohmann/json.hpp>

#include <string>

namespace nodeha::cli {

// Follows task `id` until it is final and returns the exit code (exit_of_task, or the failure to
// reach the controller). With --json nothing is shown; `*final` gets the record as it ended.
int watch_task(Controller& controller, const std::string& id, nlohmann::json* final);

}  // namespace nodeha::cli
