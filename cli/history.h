// `nodeha node history NODE` and `nodeha vm history VM`: a node's or a VM's events, read from the
// events stream (event_log.h), as a timeline with the evidence of every verdict, or --json.
#pragma once

#include "cli.h"

#include <vector>

namespace nodeha::cli {

// Adds `history` under the `node` and `vm` commands (add them first); one Command each.
void add_history_commands(CLI::App& root, std::vector<Command>* commands);

}  // namespace nodeha::cli
