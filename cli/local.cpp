#include "local.h"

#include "format.h"
#include "local_client.h"
#include "table.h"
#include "task_view.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <iostream>
#include <memory>
#include <optional>

namespace nodeha::cli {
namespace {

using nlohmann::json;

// One local operation: where it goes and how its plan and results read.
struct Operation {
  std::string name;     // "drain", for messages: "nodeha local drain: …"
  std::string subject;  // "local.drain"
  std::string plugin;   // the agent plugin serving it, for advice
  std::string verb;     // "stop", "migrate"
  std::string where;    // " to 10.0.0.3 over eth1"; empty for a drain
  bool destination = false;  // plans and results have a DESTINATION column
};

void print_plan(const Operation& op, const json& plan) {
  size_t acting = 0, skipped = 0;
  bool reasons = false;
  for (const auto& e : plan) {
    (str(e, "action") == "skip" ? skipped : acting)++;
    reasons = reasons || !str(e, "reason").empty();
  }
  if (plan.empty()) {
    std::cout << fmt::format("DRY RUN: nothing to {}: no VMs on this node.\n", op.verb);
    return;
  }
  std::cout << fmt::format("DRY RUN: would {} {}{}{}:\n", op.verb, plural(acting, "VM"), op.where,
                           skipped ? fmt::format(" ({} skipped)", skipped) : "");
  std::vector<std::string> headers{"VM", "NAME"};
  if (op.destination) headers.push_back("DESTINATION");
  headers.push_back("ACTION");
  if (reasons) headers.push_back("REASON");
  Table table(headers);
  for (const auto& e : plan) {
    std::vector<std::string> row{str(e, "vm"), or_dash(str(e, "name"))};
    // A migration plan names the destination address (`dest`) where the node is not known yet.
    if (op.destination) row.push_back(or_dash(str(e, e.contains("target") ? "target" : "dest")));
    row.push_back(str(e, "action"));
    if (reasons) row.push_back(or_dash(str(e, "reason")));
    table.add(row);
  }
  table.print(std::cout);
  std::cout << "Nothing was changed. Run the same command with --confirm to do it.\n";
}

bool step_failed(const json& step) {
  auto state = str(step, "state");
  return state == "failed" || state == "cancelled";
}

json progress_of(const json& step) { return step.is_object() && step.contains("progress") ? step["progress"] : json(); }

// The confirmed result: the task as the agent recorded it in its journal.
void print_result(const Operation& op, const json& result) {
  const json steps = result.value("steps", json::array());
  size_t ok = 0, failed = 0, skipped = 0;
  for (const auto& s : steps) {
    auto state = str(s, "state");
    if (state == "succeeded") ++ok;
    else if (state == "skipped") ++skipped;
    else if (step_failed(s)) ++failed;
  }
  std::string task = str(result, "task");
  std::cout << fmt::format("{}{}: {} ({} succeeded, {} failed, {} skipped)\n", op.name, op.where,
                           or_dash(str(result, "state")), ok, failed, skipped);
  if (!steps.empty()) {
    std::vector<std::string> headers{"VM", "NAME"};
    if (op.destination) headers.push_back("DESTINATION");
    // What each migration moved, disks apart from memory, once an agent reports it.
    bool moved = false;
    for (const auto& s : steps) moved = moved || !moved_text(progress_of(s)).empty();
    for (const char* h : {"RESULT", "DURATION", "MOVED", "ERROR"})
      if (moved || std::string(h) != "MOVED") headers.push_back(h);
    Table table(headers);
    for (const auto& s : steps) {
      std::vector<std::string> row{str(s, "vm"), or_dash(str(s, "name"))};
      if (op.destination) row.push_back(or_dash(str(s, "target")));
      int64_t started = s.value("started", int64_t{0}), finished = s.value("finished", int64_t{0});
      row.push_back(str(s, "state"));
      row.push_back(started > 0 && finished >= started ? format_ms(finished - started) : "-");
      if (moved) row.push_back(or_dash(moved_text(progress_of(s))));
      // A skipped VM has no error, but the reason is what the operator needs to read.
      row.push_back(or_dash(str(s, "state") == "skipped" ? str(s, "reason") : str(s, "error")));
      table.add(row);
    }
    table.print(std::cout);
  }
  std::cout << fmt::format("Journal task {}: reported to the controller when this node is connected.\n", or_dash(task));
}

int exit_of_result(const json& result) {
  auto state = str(result, "state");
  bool failed = state == "failed" || state == "partial";
  for (const auto& s : result.value("steps", json::array())) failed = failed || step_failed(s);
  return failed ? kExitFailed : kExitDone;
}

// Says why, as advice, and returns the exit code. With --json the error is also the document.
int trouble(const Globals& g, const Operation& op, const char* code, const std::string& message, int exit_code) {
  if (g.json) std::cout << json{{"error", {{"code", code}, {"message", message}}}}.dump(2) << '\n';
  std::cerr << "nodeha local " << op.name << ": " << message << '\n';
  return exit_code;
}

// The agent's refusal (or the host's: a subject nobody serves, a plugin stopping, a timeout).
int refused(const Globals& g, const Operation& op, const json& error) {
  std::string code = str(error, "code"), message = str(error, "message");
  if (g.json) std::cout << json{{"error", error}}.dump(2) << '\n';
  int exit_code = kExitRefused;
  if (code == "unknown_subject") {
    message = fmt::format("the agent at {} does not serve {}: is the {} plugin in its config? ({})", g.socket,
                          op.subject, op.plugin, message);
    exit_code = kExitUnreachable;
  } else if (code == "unavailable") {
    message += "; try again in a moment";
    exit_code = kExitUnreachable;
  } else if (code == "timeout") {
    message += "; the operation may have gone on: see this node's journal";
    exit_code = kExitFailed;
  }
  std::cerr << fmt::format("nodeha local {}: refused ({}): {}\n", op.name, or_dash(code), message);
  return exit_code;
}

int run(const Globals& g, const Operation& op, const json& request) {
  LocalReply reply = local_call(g.socket, op.subject, request.dump(), g.timeout);
  if (reply.outcome == LocalReply::kUnreachable)
    return trouble(g, op, "unreachable",
                   fmt::format("cannot reach the local agent at {}: {}; is nodeha-host (agent) running on this node? "
                               "(--socket or {} to point elsewhere)",
                               g.socket, reply.error, kLocalSocketEnv),
                   kExitUnreachable);
  if (reply.outcome == LocalReply::kTimeout)
    return trouble(g, op, "timeout",
                   fmt::format("{} within {} (--timeout); the {} may still be running on the agent: its outcome "
                               "goes to this node's journal",
                               reply.error, format_ms(g.timeout.count()), op.name),
                   kExitFailed);
  json envelope = json::parse(reply.body, nullptr, false);
  if (envelope.is_discarded() || !envelope.is_object() || !envelope.contains("ok"))
    return trouble(g, op, "bad_reply", "the agent's answer is not a reply envelope: " + reply.body.substr(0, 200),
                   kExitFailed);
  if (!envelope.value("ok", false)) return refused(g, op, envelope.value("error", json::object()));
  json result = envelope.value("result", json::object());
  bool confirmed = result.contains("task");
  if (g.json) std::cout << result.dump(2) << '\n';
  else if (confirmed) print_result(op, result);
  else print_plan(op, result.value("plan", json::array()));
  return confirmed ? exit_of_result(result) : kExitDone;
}

void add_drain(CLI::App& local, std::vector<Command>* commands) {
  struct Args {
    bool confirm = false;
    std::optional<int64_t> timeout_vm_s;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = local.add_subcommand("drain", "stop every VM on this node (a dry run unless --confirm)");
  cmd->add_flag("--confirm", args->confirm, "do it; without it, only print what would be done");
  cmd->add_option("--timeout-vm", args->timeout_vm_s, "seconds a VM gets to shut down before it is destroyed")
      ->check(CLI::PositiveNumber);
  commands->push_back({cmd, [args](const Globals& g) {
                         json request{{"confirm", args->confirm}};
                         if (args->timeout_vm_s) request["timeout_ms"] = *args->timeout_vm_s * 1000;
                         return run(g, {"drain", "local.drain", "vms", "stop", "", false}, request);
                       }});
}

void add_migrate(CLI::App& local, std::vector<Command>* commands) {
  struct Args {
    std::string interface, dest;
    bool all = false;
    std::vector<std::string> vms;
    bool confirm = false;
    bool with_local_disks = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = local.add_subcommand("migrate", "live-migrate VMs of this node to another (a dry run unless --confirm)");
  cmd->add_option("--interface", args->interface, "network interface the migration stream goes through")->required();
  cmd->add_option("--dest", args->dest, "the destination node's address on that interface")->required();
  auto* all = cmd->add_flag("--all", args->all, "every VM of this node");
  auto* vm = cmd->add_option("--vm", args->vms, "a VM to migrate (uuid or name; repeatable)");
  all->excludes(vm);
  cmd->add_flag("--confirm", args->confirm, "do it; without it, only print what would be done");
  cmd->add_flag("--with-local-disks", args->with_local_disks, "also VMs with local disks (their disks are copied)");
  commands->push_back({cmd, [args](const Globals& g) {
                         Operation op{"migrate", "local.migrate", "migrate", "migrate",
                                      fmt::format(" to {} over {}", args->dest, args->interface), true};
                         if (!args->all && args->vms.empty())
                           return trouble(g, op, "usage", "say which VMs: --all, or --vm UUID (repeatable)", kExitRefused);
                         json request{{"interface", args->interface}, {"dest", args->dest}, {"confirm", args->confirm},
                                      {"include_local_disk", args->with_local_disks}};
                         if (args->all) request["all"] = true;
                         else request["vms"] = args->vms;
                         return run(g, op, request);
                       }});
}

}  // namespace

void add_local_commands(CLI::App& root, std::vector<Command>* commands) {
  auto* local = root.add_subcommand("local", "act on this node through its agent's local socket, without NATS");
  local->require_subcommand(1);
  add_drain(*local, commands);
  add_migrate(*local, commands);
}

}  // namespace nodeha::cli
