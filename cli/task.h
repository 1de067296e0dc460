// `nodeha task list|show|watch|cancel` (the controller's tasks) and `nodeha vm list` (where
// each VM is recorded).
#pragma once

#include "cli.h"

#include <vector>

namespace nodeha::cli {

// Add `task` and `vm` with their subcommands under `root`; append one Command per leaf.
void add_task_commands(CLI::App& root, std::vector<Command>* commands);
void add_vm_commands(CLI::App& root, std::vector<Command>* commands);

}  // namespace nodeha::cli
