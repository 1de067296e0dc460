// nodeha: the operator's command line. Global options here; each command group registers its
// own subcommands (node.cpp, task.cpp: the controller over NATS; local.cpp: `nodeha local …` on
// the agent's socket) and runs once everything is parsed.
#include "auth_init.h"
#include "cli.h"
#include "history.h"
#include "local.h"
#include "node.h"
#include "task.h"

#include <CLI/CLI.hpp>
#include <nats/nats.h>

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string_view>
#include <vector>

#ifndef NODEHA_VERSION
#define NODEHA_VERSION "0.0.0"
#endif

namespace {

// "500ms", "90s", "30m", "1h"; a bare number is seconds.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0 || digits > 12) return std::nullopt;
  int64_t n = std::stoll(std::string(text.substr(0, digits)));
  std::string_view unit = text.substr(digits);
  int64_t scale = unit == "ms" ? 1 : unit == "s" || unit.empty() ? 1000 : unit == "m" ? 60'000 : unit == "h" ? 3'600'000 : 0;
  if (scale == 0 || n <= 0) return std::nullopt;
  return std::chrono::milliseconds(n * scale);
}

// --server, else $NODEHA_SERVER (comma-separated), else the local default.
std::vector<std::string> servers_or_default(std::vector<std::string> given) {
  if (!given.empty()) return given;
  const char* env = std::getenv(nodeha::cli::kServerEnv);
  std::string text = env && *env ? env : nodeha::cli::kDefaultServer;
  std::vector<std::string> out;
  for (size_t start = 0; start <= text.size();) {
    size_t comma = std::min(text.find(',', start), text.size());
    if (comma > start) out.push_back(text.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

// Every level's --help ends with the exit codes.
void add_footer(CLI::App* app) {
  app->footer(nodeha::cli::kExitCodesHelp);
  for (auto* sub : app->get_subcommands([](CLI::App*) { return true; })) add_footer(sub);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace nodeha::cli;
  CLI::App app{"nodeha: operate a nodeha cluster"};
  app.set_version_flag("--version", NODEHA_VERSION);
  app.require_subcommand(1);
  app.fallthrough();  // global options also after the command: `nodeha local drain --json`
  Globals globals;
  globals.socket = kDefaultLocalSocket;
  std::string timeout;
  std::vector<std::string> servers;
  app.add_option("--server", servers,
                 std::string("the NATS servers of the cluster: repeatable, or comma-separated (default $") + kServerEnv +
                     ", else " + kDefaultServer + "); tried in the order given")
      ->delimiter(',');
  app.add_option("--creds", globals.creds, "credential file of your identity (from `nodeha auth init`, or a NATS .creds)")
      ->envname(kCredsEnv)
      ->check(CLI::ExistingFile);
  app.add_option("--tls-ca", globals.tls_ca, "the bus's CA certificate: connect with TLS and check the server against it")
      ->envname(kTlsCaEnv)
      ->check(CLI::ExistingFile);
  app.add_option("--prefix", globals.prefix, "the cluster's subject prefix")->capture_default_str();
  app.add_option("--socket", globals.socket, "the local agent's socket ([host] local_socket of its config)")
      ->envname(kLocalSocketEnv)
      ->capture_default_str();
  app.add_flag("--json", globals.json,
               "print one JSON document: the reply's result (with \"final\": the task as it ended, when waited for), "
               "or {\"error\":{\"code\",\"message\"}}");
  app.add_option("--timeout", timeout,
                 "how long to wait for an answer: 90s, 30m, 1h (default 10s for the controller, 30m for the local agent)")
      ->check(CLI::Validator([](std::string& s) { return parse_duration(s) ? "" : "not a duration like 90s, 30m or 1h"; },
                             "DURATION"));
  std::vector<Command> commands;
  add_node_commands(app, &commands);
  add_task_commands(app, &commands);
  add_vm_commands(app, &commands);
  add_history_commands(app, &commands);  // under node and vm
  add_local_commands(app, &commands);
  add_auth_commands(app, &commands);
  add_footer(&app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kExitDone : kExitRefused;
  }
  globals.servers = servers_or_default(servers);
  if (!timeout.empty()) globals.timeout = globals.request_timeout = *parse_duration(timeout);
  for (const auto& c : commands) {
    if (!c.app->parsed()) continue;
    int code = c.run(globals);
    // cnats' threads (a reconnect's TLS handshake, say) may outlive the destroyed connection; one
    // still using OpenSSL while exit() tears OpenSSL down crashes the CLI after its answer.
    nats_CloseAndWait(2000);
    return code;
  }
  return kExitRefused;  // not reached: parse() refuses a command line without a leaf command
}
