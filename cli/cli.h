// What every `nodeha` command shares: the global options and the exit codes.
#pragma once

#include <chrono>
#include <functional>
#include <string>

namespace CLI {
class App;
}

namespace nodeha::cli {

// Exit codes, the same for every command (scripts rely on them).
inline constexpr int kExitDone = 0;         // done as asked
inline constexpr int kExitFailed = 1;       // the operation failed or partly failed; or no answer in time
inline constexpr int kExitRefused = 2;      // usage error, or the request was refused (nothing was done)
inline constexpr int kExitUnreachable = 3;  // the local agent (or the plugin serving it) could not be reached

inline constexpr const char* kDefaultLocalSocket = "/var/lib/nodeha/agent/local.sock";
inline constexpr const char* kLocalSocketEnv = "NODEHA_LOCAL_SOCKET";

struct Globals {
  std::string socket;  // the agent's local socket
  bool json = false;   // print the reply's result (or error) as one JSON document
  std::chrono::milliseconds timeout{std::chrono::minutes(30)};
};

// A leaf subcommand, and what runs it once the whole command line is parsed. Returns the exit code.
struct Command {
  CLI::App* app;
  std::function<int(const Globals&)> run;
};

}  // namespace nodeha::cli
