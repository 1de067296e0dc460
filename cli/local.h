// `nodeha local drain|migrate`: the node-local path (docs/node-operations.md), for a node's own
// administrator when the management network is down. Talks to the agent's local socket only.
#pragma once

#include "cli.h"

#include <vector>

namespace nodeha::cli {

// Adds `local` and its subcommands under `root`; appends one Command per leaf.
void add_local_commands(CLI::App& root, std::vector<Command>* commands);

}  // namespace nodeha::cli
