// nodeha: the operator's command line. Global options here; each command group registers its
// own subcommands (local.cpp: `nodeha local …`) and runs once everything is parsed.
#include "cli.h"
#include "local.h"

#include <CLI/CLI.hpp>

#include <cstdlib>
#include <iostream>
#include <optional>
#include <string_view>

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

}  // namespace

int main(int argc, char** argv) {
  using namespace nodeha::cli;
  CLI::App app{"nodeha: operate a nodeha cluster"};
  app.set_version_flag("--version", NODEHA_VERSION);
  app.require_subcommand(1);
  app.fallthrough();  // global options also after the command: `nodeha local drain --json`
  Globals globals;
  globals.socket = kDefaultLocalSocket;
  std::string timeout = "30m";
  app.add_option("--socket", globals.socket, "the local agent's socket ([host] local_socket of its config)")
      ->envname(kLocalSocketEnv)
      ->capture_default_str();
  app.add_flag("--json", globals.json, "print the reply's result (or error) as one JSON document");
  app.add_option("--timeout", timeout, "how long to wait for the answer: 90s, 30m, 1h")
      ->check(CLI::Validator([](std::string& s) { return parse_duration(s) ? "" : "not a duration like 90s, 30m or 1h"; },
                             "DURATION"))
      ->capture_default_str();
  std::vector<Command> commands;
  add_local_commands(app, &commands);
  app.footer(
      "Exit status: 0 done; 1 the operation failed or partly failed (or no answer in time); 2 usage error or "
      "request refused, nothing done; 3 the local agent could not be reached.");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kExitDone : kExitRefused;
  }
  globals.timeout = *parse_duration(timeout);
  for (const auto& c : commands)
    if (c.app->parsed()) return c.run(globals);
  return kExitRefused;  // not reached: parse() refuses a command line without a leaf command
}
