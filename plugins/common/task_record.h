// Task records of the `tasks` bucket (docs/node-operations.md): ids, steps, final states. Pure,
// except new_id (random).
#pragma once

#include "command.h"

#include <nlohmann/json.hpp>

#include <optional>

#include <string>

namespace nodeha::task_record {

inline constexpr const char* kBucket = "tasks";

// 16 lower-case hex digits, random.
std::string new_id();

// A task record in state "pending" with no steps.
nlohmann::json make(const std::string& id, const std::string& kind, const std::string& node,
                    const nlohmann::json& params, const std::string& owner, int64_t now_ms);

// A step in state "pending" (or "skipped" with `reason` when `skip_reason` is not empty).
nlohmann::json make_step(const std::string& vm, const std::string& name, const nlohmann::json& target,
                         const std::string& skip_reason = "");

// Whether a task or step state is final.
bool task_final(const std::string& state);  // succeeded | failed | partial
bool step_final(const std::string& state);  // succeeded | failed | skipped | cancelled

// The task's final state from its steps: succeeded when every step succeeded or was skipped;
// failed when none succeeded and one failed or was cancelled (or there is a task error);
// partial otherwise.
std::string final_state(const nlohmann::json& task);

// Whether `task` is a finished local task of `node` (local-drain, local-migrate), as the agent of
// `node` may report it (record_desk.h): its own node, a task id, a final state. bad_value or
// not_yours with the reason otherwise.
std::optional<command::Error> check_local_report(const std::string& node, const nlohmann::json& task);

// Why a command is refused on a locked node, as advice: "node-b is locked by task 7f3c… (drain,
// running since 2026-11-22 12:01:07 UTC); wait for it or cancel it with `nodeha task cancel 7f3c…`".
std::string locked_message(const std::string& node, const nlohmann::json& lock);

}  // namespace nodeha::task_record
