// What every `nodeha` command shares: the global options and the exit codes.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace nodeha::cli {

// Exit codes, the same for every command (scripts rely on them).
inline constexpr int kExitDone = 0;         // done as asked
inline constexpr int kExitFailed = 1;       // the operation failed or partly failed; or no answer in time (local)
inline constexpr int kExitRefused = 2;      // usage error, or the request was refused (nothing was done)
inline constexpr int kExitUnreachable = 3;  // the controller or the local agent could not be reached

inline constexpr const char* kExitCodesHelp =
    "Exit status: 0 done; 1 the operation failed or partly failed (nodeha local: also no answer in time); 2 usage "
    "error or request refused, nothing done; 3 the controller (NATS, nodeha-host) or the local agent could not be "
    "reached.";

inline constexpr const char* kDefaultLocalSocket = "/var/lib/nodeha/agent/local.sock";
inline constexpr const char* kLocalSocketEnv = "NODEHA_LOCAL_SOCKET";
inline constexpr const char* kDefaultServer = "nats://127.0.0.1:4222";
inline constexpr const char* kServerEnv = "NODEHA_SERVER";
inline constexpr const char* kCredsEnv = "NODEHA_CREDS";
inline constexpr const char* kTlsCaEnv = "NODEHA_TLS_CA";

struct Globals {
  std::string socket;                // the agent's local socket
  std::vector<std::string> servers;  // NATS servers of the controller
  std::string creds;                 // NATS credentials file (nodeha credential or .creds), or empty
  std::string tls_ca;                // the bus's CA: TLS on, the server's certificate checked against it
  std::string prefix = "nodeha";     // subject prefix of the cluster
  bool json = false;                 // print the reply's result (or error) as one JSON document
  std::chrono::milliseconds timeout{std::chrono::minutes(30)};          // a local request
  std::chrono::milliseconds request_timeout{std::chrono::seconds(10)};  // a request to the controller
};

// A leaf subcommand, and what runs it once the whole command line is parsed. Returns the exit code.
struct Command {
  CLI::App* app;
  std::function<int(const Globals&)> run;
};

}  // namespace nodeha::cli
