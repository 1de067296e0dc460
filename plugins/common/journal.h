// The node-local journal: what `nodeha local` did while the controller may not have been
// reachable, kept in <state_dir>/journal.jsonl and reported to the controller when the
// agent is connected (docs/node-operations.md, "The node-local path").
#pragma once

#include <nodeha/plugin.hpp>

#include <nlohmann/json.hpp>

#include <string>

namespace nodeha::journal {

// Appends a finished local task record (task_record::make + steps, final state) to the journal,
// marked unreported; flushed and fsynced before returning.
Status append(const std::string& state_dir, const nlohmann::json& task);

// Sends every unreported entry to the controller's task desk (record_desk.h), which stores it in
// the tasks bucket and publishes it on <prefix>.evt.task.<id>, and marks it reported in the
// journal (one the controller refuses too, with its reason under "refused"). Returns how many
// were reported now; stops when no controller answers (the rest wait).
Result<int> report(const Host& host);

// Every entry, oldest first (for tests and `nodeha local` listings).
Result<nlohmann::json> entries(const std::string& state_dir);

}  // namespace nodeha::journal
