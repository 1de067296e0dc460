// The nodeha CLI (NODEHA_CLI_BIN) run to its end, as a script would: stdin from /dev/null (no
// terminal), stdout and stderr kept apart.
#pragma once

#include "wait.h"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace nodeha::test {

struct CliRun {
  int status = -1;  // exit status; -1 when it did not end within the timeout
  std::string out, err;
  // stdout as the one JSON document of --json (discarded when it is not one).
  nlohmann::json doc() const { return nlohmann::json::parse(out, nullptr, false); }
};

// Runs `nodeha args...`, its output kept in files under `dir`; inside network namespace `netns`
// when one is given (netns.h).
CliRun run_cli(const std::vector<std::string>& args, const TempDir& dir, std::chrono::milliseconds timeout = 60s,
               const std::string& netns = "");

}  // namespace nodeha::test
