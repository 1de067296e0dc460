// `nodeha auth init`: makes the bus's CA, server certificate, nats-server permissions and one
// credential per node, controller and operator (auth/init.h). Needs no cluster: run it once
// where the CA key may live, then hand each file to its host (docs/security.md).
#pragma once

#include "cli.h"

#include <vector>

namespace nodeha::cli {

// Adds `auth` and its subcommands under `root`; appends one Command per leaf.
void add_auth_commands(CLI::App& root, std::vector<Command>* commands);

}  // namespace nodeha::cli
