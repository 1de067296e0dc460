// How plans and tasks read (docs/node-operations.md: plans, task records): the plan of a dry
// run, a task's steps, the live progress view, the lines a log gets instead, and the summary at
// the end. Records in, lines out: pure, so that what an operator sees is tested without a
// cluster. watch.h puts them on a terminal.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace nodeha::cli {

// "drain of node-b"
std::string task_title(const nlohmann::json& task);
bool task_final(const std::string& state);  // succeeded | failed | partial

// The plan as a table: VM, NAME, ACTION, TARGET, WHY (why skipped or not placed).
std::vector<std::string> plan_lines(const nlohmann::json& plan);

// What a migration moved so far, from a step's `progress` (docs/node-operations.md): "disk
// 120/256 MiB · mem 12/64 MiB", the memory alone when no disk is copied, "" before anything counts.
std::string moved_text(const nlohmann::json& progress);
// "~4 s left", "~3 min left", "<1 s left"; "" when the time is unknown (null or absent).
std::string time_left_text(const nlohmann::json& progress);

// The steps as a table: VM, NAME, TARGET, STATE (or RESULT once final), PROGRESS (a running
// migration's moved_text and time_left_text, or "512.0 MiB of 1.0 GiB (50%)" from data_* alone; a
// finished step's duration), DETAIL (error, or why skipped or waiting).
// At most `max_steps` rows: unfinished steps first, the rest counted on a last line.
std::vector<std::string> step_lines(const nlohmann::json& task, size_t max_steps = SIZE_MAX);

// The live view: "drain of node-b (task 7f3c…): running, 2/5 steps done, 1 waiting" and the steps.
std::vector<std::string> progress_lines(const nlohmann::json& task, size_t max_steps);

// The end: "drain of node-b: partial in 4.2s (3 succeeded, 1 failed, 1 skipped)", the steps, and
// what to do about failed ones.
std::vector<std::string> summary_lines(const nlohmann::json& task);

// 0 when the task succeeded, 1 when it failed or partly failed.
int exit_of_task(const nlohmann::json& task);

// For logs: one line per step change worth reading (started, waiting and why, ended), each
// printed once, and a first line naming the task.
class ChangeLog {
 public:
  std::vector<std::string> update(const nlohmann::json& task);

 private:
  bool started_ = false;
  std::map<std::string, std::string> printed_;  // step vm -> what was said last
};

}  // namespace nodeha::cli
