// A task as every consumer reads it (plugins/common/task_steps.h: its head in `tasks`, its steps
// in chunks in `task_steps`), for tests and benchmarks that read the buckets themselves.
#pragma once

#include "bus.h"

#include <nlohmann/json.hpp>

#include <string>

namespace nodeha::test {

// The whole task `id`, steps and all; an empty object when it is not there or cannot be read.
nlohmann::json read_task(host::Bus& bus, const std::string& id);

}  // namespace nodeha::test
