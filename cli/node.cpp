#include "node.h"

#include "controller.h"
#include "credential.h"
#include "format.h"
#include "table.h"
#include "task_view.h"
#include "watch.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <fstream>
#include <iostream>
#include <sstream>
#include <memory>
#include <optional>
#include <unistd.h>

namespace nodeha::cli {
namespace {

using nlohmann::json;

std::string monitor_text(const json& n) {
  std::string state = str(n, "monitor"), reason = str(n, "reason");
  return coloured(or_dash(state), state) + (reason.empty() ? "" : " (" + reason + ")");
}

std::string used_of(const json& n, const char* key, bool memory) {
  if (!n.contains("capacity") || !n.contains("use")) return "-";
  int64_t used = num(n["use"], key), total = num(n["capacity"], key);
  return memory ? format_mib(used) + "/" + format_mib(total) : fmt::format("{}/{}", used, total);
}

std::string age_text(const json& n) {
  auto it = n.find("heartbeat_age_s");
  if (it == n.end() || !it->is_number()) return "never";
  return format_ms(static_cast<int64_t>(it->get<double>() * 1000)) + " ago";
}

std::string lock_text(const json& n) {
  auto it = n.find("lock");
  if (it == n.end() || !it->is_object()) return "-";
  return fmt::format("{} ({})", str(*it, "task"), or_dash(str(*it, "kind")));
}

// Running VMs, and those a rebuild left behind there (local disks): "0 (2 stranded)".
std::string vms_text(const json& n) {
  std::string running = n.contains("use") ? std::to_string(num(n["use"], "vms_running")) : "-";
  int64_t stranded = num(n, "stranded");
  return stranded > 0 ? running + " (" + coloured(std::to_string(stranded) + " stranded", "failed") + ")" : running;
}

// A following controller answered (docs/architecture.md, "Leadership"): it runs no monitor.
void note_follower(const json& result) {
  if (std::string by = str(result, "follower"); !by.empty())
    std::cerr << fmt::format("note: answered by {}, a following controller: monitor states are those the leader last "
                             "recorded\n",
                             by);
}

void print_list(const json& result) {
  note_follower(result);
  const json listed = result.value("nodes", json::array());
  std::vector<json> nodes(listed.begin(), listed.end());
  std::sort(nodes.begin(), nodes.end(), [](const json& a, const json& b) { return str(a, "node") < str(b, "node"); });
  if (nodes.empty()) {
    std::cout << "No nodes yet: an agent registers its node with its first heartbeat.\n";
    return;
  }
  Table table({"NODE", "MANAGEMENT", "MONITOR", "VMS", "VCPU", "MEMORY", "HEARTBEAT", "LOCK"});
  for (const auto& n : nodes) {
    std::string management = str(n, "management");
    table.add({str(n, "node"), coloured(or_dash(management), management), monitor_text(n), vms_text(n), used_of(n, "vcpus", false),
               used_of(n, "memory_mib", true), age_text(n), lock_text(n)});
  }
  table.print(std::cout);
}

void print_node(const json& n) {
  note_follower(n);
  Table facts({"node", str(n, "node")});
  facts.add({"management", coloured(or_dash(str(n, "management")), str(n, "management"))});
  facts.add({"monitor", monitor_text(n)});
  facts.add({"heartbeat", age_text(n) + (num(n, "interval_ms") ? fmt::format(" (every {})", format_ms(num(n, "interval_ms"))) : "")});
  facts.add({"boot id", or_dash(str(n, "boot_id"))});
  facts.add({"vCPU used", used_of(n, "vcpus", false)});
  facts.add({"memory used", used_of(n, "memory_mib", true)});
  facts.add({"disk used (GiB)", used_of(n, "disk_gib", false)});
  std::string addresses;
  const json listed = n.value("addresses", json::object());
  for (const auto& [name, address] : listed.items())
    addresses += (addresses.empty() ? "" : ", ") + name + " " + (address.is_string() ? address.get<std::string>() : address.dump());
  facts.add({"addresses", or_dash(addresses)});
  facts.add({"lock", lock_text(n)});
  if (int64_t stranded = num(n, "stranded"); stranded > 0)
    facts.add({"stranded VMs", fmt::format("{} (left behind by a rebuild: `nodeha vm list --node {} --stranded`)", stranded,
                                           str(n, "node"))});
  const json fence = n.value("fence", json());
  if (fence.is_object())
    facts.add({"fenced", coloured(fmt::format("by {} at {} UTC: {}", str(fence, "method"), format_time(num(fence, "at")),
                                              or_dash(str(fence, "detail"))), "failed")});
  const json recovery = n.value("recovery", json());
  if (recovery.is_object()) {
    std::string state = str(recovery, "state");
    if (!str(recovery, "held").empty()) state += " (" + str(recovery, "held") + ")";
    if (!str(recovery, "task").empty()) state += ", task " + str(recovery, "task");
    facts.add({"recovery", fmt::format("{} since {} UTC: {}", state, format_time(num(recovery, "since")),
                                       or_dash(str(recovery, "reason")))});
  }
  facts.print(std::cout);
  if (!n.value("checks", json::array()).empty()) {
    std::cout << "\nChecks:\n";
    Table checks({"CHECK", "OK", "DETAIL"});
    for (const auto& ch : n["checks"])
      checks.add({str(ch, "name"), ch.value("ok", false) ? "yes" : coloured("no", "failed"), or_dash(str(ch, "detail"))});
    checks.print(std::cout);
  }
  std::cout << "\nVMs (as its last heartbeat reported them):\n";
  Table vms({"VM", "NAME", "STATE"});
  for (const auto& v : n.value("vms", json::array())) vms.add({str(v, "uuid"), or_dash(str(v, "name")), str(v, "state")});
  vms.print(std::cout);
}

// Whether to go on with `title` (it changes a node): --yes, or the operator's answer to
// `question` on a terminal. nullopt: go on; otherwise the exit code (refused, nothing sent).
std::optional<int> confirm(const Controller& c, bool yes, const std::string& title,
                           const std::function<std::string()>& question) {
  if (yes) return std::nullopt;
  if (!isatty(STDIN_FILENO))
    return c.fail("not_confirmed",
                  fmt::format("the {} needs a confirmation, and stdin is not a terminal to ask on: add --yes to do it "
                              "(nothing was done)",
                              title),
                  kExitRefused);
  std::cerr << question() << " [y/N] " << std::flush;
  std::string answer;
  std::getline(std::cin, answer);
  if (answer == "y" || answer == "Y" || answer == "yes") return std::nullopt;
  return c.fail("not_confirmed", "not confirmed: nothing was done", kExitRefused);
}

// Who confirms, as recorded with a fence-ack: the credential's identity, else the login and host.
std::string operator_name(const Globals& g) {
  std::ifstream in(g.creds);
  std::stringstream text;
  text << in.rdbuf();
  if (auto c = auth::parse_credential(text.str()); c && !c->identity.empty()) return c->identity;
  char host[256] = {};
  (void)gethostname(host, sizeof host - 1);
  const char* user = std::getenv("USER");
  return std::string(user ? user : "unknown") + "@" + host;
}

int set_management(const Globals& g, const std::string& node, bool enable, bool yes) {
  if (!enable)
    if (auto refused = confirm(Controller(g), yes, "disabling of " + node,
                               [&] { return fmt::format("Disable {}: place no new VMs on it?", node); }))
      return *refused;
  return query(g, enable ? "node.enable" : "node.disable", {{"node", node}}, [&](const json& result) {
    std::string management = str(result, "management");
    bool changed = result.value("changed", false);
    std::cout << fmt::format("{} is {} {}{}\n", node, changed ? "now" : "already", coloured(management, management),
                             changed ? "." : "; nothing changed.");
  });
}

// What drain, migrate and rebuild share.
struct OperationArgs {
  std::string node;
  std::string plan;  // --plan: a dry run's plan id, run exactly
  bool dry_run = false, yes = false, no_wait = false;
};

struct Operation {
  std::string op;  // "node.drain"
  std::string title;  // "drain of node-b"
  std::function<std::string(const json& plan)> question;  // "Drain node-b: stop its 3 VMs?"
};

void add_operation_flags(CLI::App* cmd, OperationArgs* args) {
  cmd->add_option("NODE", args->node, "the node")->required();
  cmd->add_flag("--dry-run", args->dry_run, "only print the plan (VM, action, target, why skipped); change nothing");
  cmd->add_flag("-y,--yes", args->yes, "do it without asking (needed when stdin is not a terminal)");
  cmd->add_flag("--no-wait", args->no_wait, "print the task id and return instead of following the task");
  cmd->add_option("--plan", args->plan,
                  "run exactly the plan a --dry-run printed (its id), or nothing if the cluster changed since; the "
                  "other options come from the plan")
      ->excludes(cmd->get_option("--dry-run"));
}

void print_plan(const std::string& headline, const json& plan) {
  std::cout << headline << '\n';
  if (plan.empty()) std::cout << "(no VMs)\n";
  else
    for (const auto& l : plan_lines(plan)) std::cout << l << '\n';
}

// The dry run's plan, its id and how to run exactly it.
void print_dry_run(const OperationArgs& a, const Operation& op, const json& result) {
  print_plan("DRY RUN: the " + op.title + " would do:", result.value("plan", json::array()));
  std::string id = str(result, "plan_id");
  std::cout << "Nothing was changed.";
  if (!id.empty())
    std::cout << fmt::format(" Plan {} (kept until {} UTC). To run exactly this plan:\n  nodeha node {} {} --plan {}\n"
                             "It is refused, changing nothing, if the cluster changed meanwhile.",
                             id, format_time(num(result, "expires_at")), op.op.substr(op.op.find('.') + 1), a.node, id);
  std::cout << '\n';
}

int run_operation(const Globals& g, const OperationArgs& a, const Operation& op, json request) {
  Controller c(g);
  if (!a.plan.empty()) {
    // Naming the plan is the confirmation: the operator read it. The rest comes from the plan.
    request = {{"node", a.node}, {"plan", a.plan}};
  } else if (a.dry_run || !a.yes) {
    json dry = request;
    dry["dry_run"] = true;
    if (!a.dry_run && !isatty(STDIN_FILENO)) return *confirm(c, false, op.title, {});
    auto plan = c.call(op.op, dry);
    if (!plan.ok()) return plan.exit;
    json steps = plan.result.value("plan", json::array());
    if (a.dry_run) {
      if (g.json) return print_document(plan.result), kExitDone;
      print_dry_run(a, op, plan.result);
      return kExitDone;
    }
    if (!g.json) print_plan("The " + op.title + " will do:", steps);
    if (auto refused = confirm(c, false, op.title, [&] { return op.question(steps); })) return *refused;
    // What runs is what was shown: a change between the question and the answer refuses it.
    if (!str(plan.result, "plan_id").empty()) request = {{"node", a.node}, {"plan", str(plan.result, "plan_id")}};
  }
  auto r = c.call(op.op, request);
  if (!r.ok()) return r.exit;
  std::string id = str(r.result, "task");
  if (a.no_wait) {
    if (g.json) return print_document(r.result), kExitDone;
    std::cout << id << '\n';
    std::cerr << fmt::format("Started the {} as task {}; follow it with `nodeha task watch {}`.\n", op.title, id, id);
    return kExitDone;
  }
  json final;
  int code = watch_task(c, id, &final);
  if (g.json && (code == kExitDone || code == kExitFailed)) {
    r.result["final"] = final;
    print_document(r.result);
  }
  return code;
}

size_t acting(const json& plan) {
  return std::count_if(plan.begin(), plan.end(), [](const json& e) { return str(e, "action") != "skip"; });
}

std::string skipped(const json& plan) {
  size_t n = plan.size() - acting(plan);
  return n ? fmt::format(" ({} skipped)", n) : "";
}

void add_drain(CLI::App& node, std::vector<Command>* commands) {
  auto a = std::make_shared<OperationArgs>();
  auto* cmd = node.add_subcommand("drain", "stop every VM of a node and mark it drained (nothing runs or lands there)");
  add_operation_flags(cmd, a.get());
  commands->push_back({cmd, [a](const Globals& g) {
                         Operation op{"node.drain", "drain of " + a->node, [a](const json& plan) {
                                        return fmt::format("Drain {}: stop its {}?", a->node, plural(plan.size(), "VM"));
                                      }};
                         return run_operation(g, *a, op, {{"node", a->node}});
                       }});
}

// What migrate and maintenance share: how the VMs move live.
struct MoveArgs : OperationArgs {
  std::string network;
  bool with_local_disks = false;
  int parallel = 0;
};

void add_move_flags(CLI::App* cmd, MoveArgs* a) {
  add_operation_flags(cmd, a);
  cmd->add_flag("--with-local-disks", a->with_local_disks, "also VMs with local disks (their disks are copied)");
  cmd->add_option("--network", a->network, "the network the migration stream uses: management (default), business, storage");
  cmd->add_option("--parallel", a->parallel, "migrations at a time (default: the controller's max_parallel)")
      ->check(CLI::Range(1, 64));
}

json move_request(const MoveArgs& a) {
  json request{{"node", a.node}, {"include_local_disk", a.with_local_disks}};
  if (!a.network.empty()) request["network"] = a.network;
  if (a.parallel) request["max_parallel"] = a.parallel;
  return request;
}

void add_migrate(CLI::App& node, std::vector<Command>* commands) {
  struct Args : MoveArgs {
    std::string target;
    std::vector<std::string> vms;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = node.add_subcommand("migrate", "live-migrate the VMs of a node to other nodes");
  add_move_flags(cmd, a.get());
  cmd->add_option("--target", a->target, "the node to move them to (default: the scheduler picks, per VM)");
  cmd->add_option("--vm", a->vms, "only this VM (uuid; repeatable)");
  commands->push_back({cmd, [a](const Globals& g) {
                         json request = move_request(*a);
                         if (!a->target.empty()) request["target"] = a->target;
                         if (!a->vms.empty()) request["vms"] = a->vms;
                         Operation op{"node.migrate", "migration of " + a->node, [a](const json& plan) {
                                        return fmt::format("Migrate {}: move {} live{}{}?", a->node, plural(acting(plan), "VM"),
                                                           a->target.empty() ? "" : " to " + a->target, skipped(plan));
                                      }};
                         return run_operation(g, *a, op, request);
                       }});
}

void add_maintenance(CLI::App& node, std::vector<Command>* commands) {
  auto a = std::make_shared<MoveArgs>();
  auto* cmd = node.add_subcommand("maintenance",
                                  "disable a node and live-migrate every VM away; it stays disabled until `node enable`");
  add_move_flags(cmd, a.get());
  commands->push_back({cmd, [a](const Globals& g) {
                         Operation op{"node.maintenance", "maintenance of " + a->node, [a](const json& plan) {
                                        return fmt::format("Maintenance of {}: disable it and move {} live{}? It stays "
                                                           "disabled until `nodeha node enable {}`",
                                                           a->node, plural(acting(plan), "VM"), skipped(plan), a->node);
                                      }};
                         int code = run_operation(g, *a, op, move_request(*a));
                         // The task ended (or runs on): whatever it came to, the node was disabled.
                         if (!a->dry_run && (code == kExitDone || code == kExitFailed))
                           std::cerr << fmt::format("{} stays disabled until `nodeha node enable {}`.\n", a->node, a->node);
                         return code;
                       }});
}

void add_rebuild(CLI::App& node, std::vector<Command>* commands) {
  struct Args : OperationArgs {
    std::string target;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = node.add_subcommand("rebuild", "recreate the VMs of a drained (lost) node on other nodes");
  add_operation_flags(cmd, a.get());
  cmd->add_option("--target", a->target, "the node to recreate them on (default: the scheduler picks, per VM)");
  commands->push_back({cmd, [a](const Globals& g) {
                         json request{{"node", a->node}};
                         if (!a->target.empty()) request["target"] = a->target;
                         Operation op{"node.rebuild", "rebuild of " + a->node, [a](const json& plan) {
                                        return fmt::format("Rebuild {}: recreate {} on {}{}?", a->node, plural(acting(plan), "VM"),
                                                           a->target.empty() ? "other nodes" : a->target, skipped(plan));
                                      }};
                         return run_operation(g, *a, op, request);
                       }});
}

}  // namespace

void add_node_commands(CLI::App& root, std::vector<Command>* commands) {
  auto* node = root.add_subcommand("node", "the nodes: their state, and the operations that empty them");
  node->require_subcommand(1);
  commands->push_back({node->add_subcommand("list", "every node: states, VMs, use, heartbeat, lock"),
                       [](const Globals& g) { return query_pages(g, "node.list", json::object(), "nodes", print_list); }});
  struct Args {
    std::string node;
    bool yes = false;
  };
  auto a = std::make_shared<Args>();
  auto* show_cmd = node->add_subcommand("show", "one node in detail: capacity, addresses, checks, VMs, lock");
  show_cmd->add_option("NODE", a->node, "the node")->required();
  commands->push_back({show_cmd, [a](const Globals& g) { return query(g, "node.show", {{"node", a->node}}, print_node); }});
  auto* enable = node->add_subcommand("enable", "return a node to service (also a drained one): it takes VMs again");
  enable->add_option("NODE", a->node, "the node")->required();
  commands->push_back({enable, [a](const Globals& g) { return set_management(g, a->node, true, true); }});
  auto* disable = node->add_subcommand("disable", "keep a node's VMs running but place no new ones on it");
  disable->add_option("NODE", a->node, "the node")->required();
  disable->add_flag("-y,--yes", a->yes, "do it without asking (needed when stdin is not a terminal)");
  commands->push_back({disable, [a](const Globals& g) { return set_management(g, a->node, false, a->yes); }});
  add_drain(*node, commands);
  add_migrate(*node, commands);
  add_maintenance(*node, commands);
  add_rebuild(*node, commands);
  auto* ack = node->add_subcommand(
      "fence-ack", "confirm that an unreachable node is powered off (you checked): automatic recovery then recreates "
                   "its HA VMs elsewhere. Wrong, this runs them twice");
  ack->add_option("NODE", a->node, "the node")->required();
  ack->add_flag("-y,--yes", a->yes, "do it without asking (needed when stdin is not a terminal)");
  commands->push_back({ack, [a](const Globals& g) {
                         if (auto refused = confirm(Controller(g), a->yes, "fence acknowledgement of " + a->node, [&] {
                               return fmt::format("Is {} powered off, for certain? Its VMs will be started elsewhere", a->node);
                             }))
                           return *refused;
                         return query(g, "node.fence_ack", {{"node", a->node}, {"by", operator_name(g)}}, [](const json& r) {
                           std::cout << fmt::format("{} is recorded as fenced by {}: {}.\n", str(r, "node"),
                                                    str(r.value("fence", json::object()), "by"), str(r, "recovery"));
                         });
                       }});
}

}  // namespace nodeha::cli
