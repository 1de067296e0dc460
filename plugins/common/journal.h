// The node-local journal: what `nodeha local` did while the controller may not have been
// reachable, kept in <state_dir>/journal.jsonl and reported into the `tasks` bucket when the
// agent is connected (docs/node-operations.md, "The node-local path").
#pragma once

#include <nodeha/plugin.hpp>

#include <nlohmann/json.hpp>

#include <string>

namespace nodeha::journal {

// Appends a finished local task record (task_record::make + steps, final state) to the journal,
// marked unreported; flushed and fsynced before returning.
Status append(const std::string& state_dir, const nlohmann::json& task);

// Writes every unreported entry into the tasks bucket (kv_create; an existing key counts as
// reported), publishes it on <prefix>.evt.task.<id> and marks it reported in the journal.
// Returns how many were reported now; stops at the first bus error (the rest wait).
Result<int> report(const Host& host);

// Every entry, oldest first (for tests and `nodeha local` listings).
Result<nlohmann::json> entries(const std::string& state_dir);

}  // namespace nodeha::journal
