// `nodeha node …`: the nodes as the controller sees them (list, show), their management state
// (enable, disable), and the operations that empty a node (drain, migrate, maintenance, rebuild): a plan with
// --dry-run, a confirmation, then the task followed to its end.
#pragma once

#include "cli.h"

#include <vector>

namespace nodeha::cli {

// Adds `node` and its subcommands under `root`; appends one Command per leaf.
void add_node_commands(CLI::App& root, std::vector<Command>* commands);

}  // namespace nodeha::cli
