#include "task.h"

#include "controller.h"
#include "format.h"
#include "table.h"
#include "task_view.h"
#include "watch.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <iostream>
#include <memory>

namespace nodeha::cli {
namespace {

using nlohmann::json;

// "3 succeeded, 1 failed" from a listed task's step_counts.
std::string counts_text(const json& task) {
  std::string out;
  const json counts = task.value("step_counts", json::object());
  for (const auto& [state, n] : counts.items())
    out += (out.empty() ? "" : ", ") + fmt::format("{} {}", n.is_number() ? n.get<int>() : 0, state);
  return or_dash(out);
}

void print_tasks(const json& result, bool filtered) {
  const json tasks = result.value("tasks", json::array());
  if (tasks.empty()) {
    std::cout << "No tasks" << (filtered ? " match" : "") << ".\n";
    return;
  }
  Table table({"TASK", "KIND", "NODE", "STATE", "STEPS", "CREATED (UTC)", "ERROR / CAUSE"});
  for (const auto& t : tasks) {
    std::string state = str(t, "state");
    // Automatic tasks say why they were started.
    std::string cause = str(t.value("params", json::object()), "cause");
    table.add({str(t, "id"), str(t, "kind") + (cause.empty() ? "" : " (automatic)"), str(t, "node"), coloured(state, state),
               counts_text(t), format_time(num(t, "created")), or_dash(str(t, "error").empty() ? cause : str(t, "error"))});
  }
  table.print(std::cout);
}

void print_task(const json& t) {
  std::string state = str(t, "state");
  Table facts({"task", str(t, "id")});
  facts.add({"operation", task_title(t)});
  facts.add({"state", coloured(state, state) + (t.value("cancel_requested", false) ? " (cancel requested)" : "")});
  facts.add({"created (UTC)", format_time(num(t, "created"))});
  facts.add({"finished (UTC)", format_time(num(t, "finished"))});
  facts.add({"controller", or_dash(str(t, "owner"))});
  facts.add({"request", t.value("params", json::object()).dump()});
  if (!str(t, "error").empty()) facts.add({"error", str(t, "error")});
  facts.print(std::cout);
  std::cout << '\n';
  for (const auto& l : step_lines(t)) std::cout << l << '\n';
}

int watch(const Globals& g, const std::string& id) {
  Controller c(g);
  json final;
  int code = watch_task(c, id, &final);
  if (g.json && (code == kExitDone || code == kExitFailed)) print_document(final);
  return code;
}

void print_cancelled(const json& t) {
  std::string id = str(t, "id");
  std::cout << fmt::format("Cancel requested for task {} ({}): no new step starts, running migrations are aborted.\n"
                           "Follow it to its end with `nodeha task watch {}`.\n",
                           id, task_title(t), id);
}

// A VM a rebuild left behind shows where, in place of its state (which its node last reported).
std::string vm_state_text(const json& v) {
  const json mark = v.value("stranded", json());
  if (mark.is_object() && !str(mark, "node").empty()) return coloured("stranded on " + str(mark, "node"), "failed");
  return str(v, "state");
}

// "off", or the recovery priority.
std::string ha_text(const json& v) {
  const json ha = v.value("ha", json());
  return ha.is_number_integer() ? std::to_string(ha.get<int64_t>()) : "off";
}

void print_vms(const json& result, const std::string& node, bool stranded) {
  const json vms = result.value("vms", json::array());
  if (vms.empty()) {
    std::cout << "No VMs " << (stranded ? "stranded" : "recorded") << (node.empty() ? "" : " on " + node) << ".\n";
    return;
  }
  Table table({"VM", "NAME", "NODE", "STATE", "DESIRED", "HA", "VCPU", "MEMORY", "LOCAL DISK", "GEN"});
  for (const auto& v : vms)
    table.add({str(v, "uuid"), or_dash(str(v, "name")), or_dash(str(v, "node")), vm_state_text(v), str(v, "desired"),
               ha_text(v), std::to_string(num(v, "vcpus")), format_mib(num(v, "memory_mib")),
               v.value("local_disk", false) ? "yes" : "no", std::to_string(num(v, "generation"))});
  table.print(std::cout);
}

}  // namespace

void add_task_commands(CLI::App& root, std::vector<Command>* commands) {
  auto* task = root.add_subcommand("task", "the controller's tasks: node operations and their steps");
  task->require_subcommand(1);
  struct Args {
    std::string id, node, state, kind;
  };
  auto a = std::make_shared<Args>();
  auto* list_cmd = task->add_subcommand("list", "the tasks, newest first");
  list_cmd->add_option("--node", a->node, "only the tasks of this node");
  list_cmd->add_option("--state", a->state, "only tasks in this state: pending, running, succeeded, failed, partial");
  list_cmd->add_option("--kind", a->kind, "only tasks of this kind: migrate, maintenance, drain, rebuild, recover, local-migrate, local-drain");
  commands->push_back({list_cmd, [a](const Globals& g) {
                         json request = json::object();
                         if (!a->node.empty()) request["node"] = a->node;
                         if (!a->state.empty()) request["state"] = a->state;
                         if (!a->kind.empty()) request["kind"] = a->kind;
                         return query_pages(g, "task.list", request, "tasks", [&](const json& r) { print_tasks(r, !request.empty()); });
                       }});
  auto* show_cmd = task->add_subcommand("show", "one task: its request, state, and every step");
  show_cmd->add_option("ID", a->id, "the task id")->required();
  commands->push_back({show_cmd, [a](const Globals& g) {
                         Controller c(g);
                         auto t = fetch_task(c, a->id);
                         if (!t.ok()) return t.exit;
                         if (g.json) print_document(t.result);
                         else print_task(t.result);
                         return kExitDone;
                       }});
  auto* watch_cmd = task->add_subcommand("watch", "follow a task live until it ends (Ctrl-C stops watching, not the task); exit 0 if it succeeded, 1 if not");
  watch_cmd->add_option("ID", a->id, "the task id")->required();
  commands->push_back({watch_cmd, [a](const Globals& g) { return watch(g, a->id); }});
  auto* cancel_cmd = task->add_subcommand("cancel", "stop a task: no new step starts, running migrations are aborted");
  cancel_cmd->add_option("ID", a->id, "the task id")->required();
  commands->push_back(
      {cancel_cmd, [a](const Globals& g) { return query(g, "task.cancel", {{"task", a->id}}, print_cancelled); }});
}

void add_vm_commands(CLI::App& root, std::vector<Command>* commands) {
  auto* vm = root.add_subcommand("vm", "the VMs as the controller records them");
  vm->require_subcommand(1);
  struct Args {
    std::string node, vm, ha;
    bool stranded = false;
  };
  auto a = std::make_shared<Args>();
  auto* list_cmd = vm->add_subcommand("list", "every VM: where it is recorded, its state, its generation");
  list_cmd->add_option("--node", a->node, "only the VMs recorded on this node");
  list_cmd->add_flag("--stranded", a->stranded,
                     "only the VMs a rebuild left behind on their dead node (local disks): bring the node back, or "
                     "restore them");
  commands->push_back({list_cmd, [a](const Globals& g) {
                         json request = json::object();
                         if (!a->node.empty()) request["node"] = a->node;
                         if (a->stranded) request["stranded"] = true;
                         // Pages come by uuid: shown by node, then name.
                         auto by_place = [](json& vms) {
                           std::stable_sort(vms.begin(), vms.end(), [](const json& x, const json& y) {
                             return std::make_pair(str(x, "node"), str(x, "name")) < std::make_pair(str(y, "node"), str(y, "name"));
                           });
                         };
                         return query_pages(g, "vm.list", request, "vms",
                                            [&](const json& r) { print_vms(r, a->node, a->stranded); }, by_place);
                       }});
  auto* ha_cmd = vm->add_subcommand(
      "set-ha", "whether the VM is restarted elsewhere automatically when its node is fenced: off, or a priority "
                "(0-1000, higher first); needs automatic recovery on in the controller's config");
  ha_cmd->add_option("VM", a->vm, "the VM's uuid")->required();
  ha_cmd->add_option("HA", a->ha, "off, or a priority from 0 to 1000")->required();
  commands->push_back({ha_cmd, [a](const Globals& g) {
                         json ha = a->ha;  // "off"; anything else the controller checks as a number
                         if (!a->ha.empty() && a->ha.find_first_not_of("0123456789") == std::string::npos && a->ha.size() < 10)
                           ha = std::stoi(a->ha);
                         return query(g, "vm.set_ha", {{"vm", a->vm}, {"ha", ha}}, [](const json& r) {
                           std::cout << fmt::format("VM {} ({}): ha {}\n", str(r, "uuid"), or_dash(str(r, "name")), ha_text(r));
                         });
                       }});
}

}  // namespace nodeha::cli
